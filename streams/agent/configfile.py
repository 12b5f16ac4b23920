"""Strict TOML configuration models: unknown keys are errors that suggest the closest known key,
and every mistake is one line naming the file, the key path and what is wrong.

Shared by the site agent and the OpenADR VEN (``streams.openadr.config``). Secrets are declared
as ``SecretStr`` by the models, so ``repr``, logs and these error lines never show them.
Must not read the environment or know about Kafka.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from streams.errors import GridshiftError


class StrictConfig(BaseModel):
    """Base of every section of a configuration file: frozen, closed, finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @classmethod
    def load(cls, path: Path, kind: str) -> Self:
        """The model read from the TOML file at ``path``; a :class:`GridshiftError` otherwise."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise GridshiftError(f"{kind} file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise GridshiftError(f"{kind} file {path} is not valid TOML: {exc}") from exc
        return cls.parse(data, f"{kind} file {path}")

    @classmethod
    def parse(cls, data: dict[str, Any], where: str) -> Self:
        """The model validated from ``data``; the first problem as one line otherwise."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise GridshiftError(f"{where}: {describe(cls, exc.errors()[0])}") from exc


def describe(model: type[BaseModel], error: ErrorDetails) -> str:
    """``key.path: message``, with a closest-key suggestion for an unknown key."""
    location = tuple(error["loc"])
    path = ".".join(str(part) for part in location) or "(root)"
    if error["type"] == "extra_forbidden":
        known = _fields_at(model, location[:-1])
        close = difflib.get_close_matches(str(location[-1]), known, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        options = f"; known keys: {', '.join(sorted(known))}" if known and not close else ""
        return f"{path}: unknown key{hint}{options}"
    return f"{path}: {error['msg']}"


def _fields_at(model: type[BaseModel], parents: tuple[int | str, ...]) -> list[str]:
    """The field names of the (nested) model that ``parents`` leads to, or [] if unknown."""
    current: Any = model
    for part in parents:
        if isinstance(part, int):  # an item of a list of sections: same model as the list's
            continue
        field = current.model_fields.get(str(part)) if _is_model(current) else None
        if field is None:
            return []
        current = _section_model(field.annotation)
    return list(current.model_fields) if _is_model(current) else []


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _section_model(annotation: Any) -> Any:
    """The model inside ``annotation`` (``M``, ``M | None``, ``tuple[M, ...]``, ``list[M]``)."""
    if _is_model(annotation):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _section_model(argument)
        if found is not None:
            return found
    return None
