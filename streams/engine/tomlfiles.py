"""Reading the project's TOML files (fleet, scenario, mapping): one clear line per mistake."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streams.errors import GridshiftError


def read_toml(path: Path, kind: str, hint: str = "") -> dict[str, Any]:
    """The parsed file, or a :class:`GridshiftError` naming the ``kind`` of file and the fault."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GridshiftError(f"{kind} file not found: {path}{hint}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise GridshiftError(f"{kind} file {path} is not valid TOML: {exc}") from exc


def first_error(exc: ValidationError) -> str:
    """``field.path: message`` of a validation error's first problem."""
    error = exc.errors()[0]
    return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
