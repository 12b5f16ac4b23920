"""Strict TOML configuration models: unknown keys are errors that suggest the closest known key,
and every mistake is one line naming the file, the key path and what is wrong.

Shared by the site agent and the OpenADR VEN (``streams.openadr.config``). Secrets are declared
as ``SecretStr`` by the models, so ``repr``, logs and these error lines never show them.
Reading the file and wording a mistake are ``streams.engine.tomlfiles``'s (shared with every
other strict file). Must not read the environment or know about Kafka.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from streams.engine.tomlfiles import first_error, read_toml
from streams.errors import GridshiftError


class StrictConfig(BaseModel):
    """Base of every section of a configuration file: frozen, closed, finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @classmethod
    def load(cls, path: Path, kind: str) -> Self:
        """The model read from the TOML file at ``path``; a :class:`GridshiftError` otherwise."""
        return cls.parse(read_toml(path, kind), f"{kind} file {path}")

    @classmethod
    def parse(cls, data: dict[str, Any], where: str) -> Self:
        """The model validated from ``data``; the first problem as one line otherwise."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise GridshiftError(f"{where}: {first_error(exc, cls)}") from exc
