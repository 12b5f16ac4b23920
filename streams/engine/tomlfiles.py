"""Reading the project's TOML files strictly: every mistake becomes one line that says what is
wrong and how to fix it.

Owns what every strict file loader shares (sites, scenario, mapping, sweep, agent, OpenADR VEN,
sources): reading and parsing a file (a missing file or bad TOML is one line naming the file,
and for bad TOML the line and column), the keys a pydantic model allows at a place in a file
(to name them when a key is unknown), the known key a typo most likely meant, and one problem
of a :class:`ValidationError` as ``key.path: message``. Each loader keeps its own wording around
these (users and tests rely on it): ``streams.backtest.mistakes`` (several problems at once,
``sites[0]``-style paths) and ``streams.sources.config`` (``[table]``-style places).
"""

from __future__ import annotations

import difflib
import tomllib
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from streams.errors import GridshiftError

#: A place in a file as pydantic names it: table keys and array indices.
Location = tuple[int | str, ...]


def read_toml(path: Path, kind: str, hint: str = "") -> dict[str, Any]:
    """The parsed file, or a :class:`GridshiftError` naming the ``kind`` of file and the fault
    (tomllib's message ends with the line and column)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GridshiftError(f"{kind} file not found: {path}{hint}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise GridshiftError(f"{kind} file {path} is not valid TOML: {exc}") from exc


def first_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first problem of ``exc`` as one line (see :func:`describe`)."""
    return describe(exc.errors()[0], model)


def describe(error: ErrorDetails, model: type[BaseModel] | None = None) -> str:
    """``key.path: message``; an unknown key names the closest key ``model`` knows there, or
    lists them all when none is close."""
    location = tuple(error["loc"])
    path = ".".join(str(part) for part in location) or "(root)"
    if error["type"] != "extra_forbidden" or model is None:
        return f"{path}: {error['msg']}"
    known = keys_at(model, location[:-1])
    guess = closest(str(location[-1]), known)
    if guess is not None:
        return f"{path}: unknown key (did you mean '{guess}'?)"
    if known:
        return f"{path}: unknown key; known keys: {', '.join(sorted(known))}"
    return f"{path}: unknown key"


def closest(word: str, choices: Sequence[str], cutoff: float = 0.5) -> str | None:
    """The choice ``word`` most likely misspells, if any is close enough (ignoring case)."""
    lowered = {choice.lower(): choice for choice in choices}
    matches = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[matches[0]] if matches else None


def keys_at(model: type[BaseModel], location: Location) -> list[str]:
    """The keys the table at ``location`` of a ``model`` file may hold: a section's fields, or
    the names a table keyed by a ``Literal`` allows; [] where any key goes or it is no table."""
    annotation: Any = model
    for part in location:
        annotation = _inside(annotation, part)
        if annotation is None:
            return []
    return _allowed(annotation) or []


@dataclass(frozen=True)
class UnknownKey:
    """A key the file's model does not allow: the table it is in (() for the top level), the
    key, and the keys that table may hold (in the model's order)."""

    table: Location
    key: str
    known: tuple[str, ...]


def first_unknown_key(data: Any, annotation: Any, table: Location = ()) -> UnknownKey | None:
    """The first key of the parsed file ``data`` (file order, depth first) that its model
    (``annotation``) does not allow, including a table name outside a ``Literal`` (e.g.
    ``[iso.ERCTO]``). Unlike a :class:`ValidationError`, this finds an unknown key before any
    other problem, and the first one in the file."""
    items: Any
    if isinstance(data, dict):
        items, known = data.items(), _allowed(annotation)
    elif isinstance(data, list):  # an array of tables: the same check for every item
        items, known = enumerate(data), None
    else:
        return None  # a value: a wrong type is pydantic's to report, with the value
    for key, value in items:
        if known is not None and key not in known:
            return UnknownKey(table, str(key), tuple(known))
        inner = _inside(annotation, key)
        found = None if inner is None else first_unknown_key(value, inner, (*table, key))
        if found is not None:
            return found
    return None


def _allowed(annotation: Any) -> list[str] | None:
    """The keys a table of type ``annotation`` may hold; None where any key goes (or no table)."""
    for option in _options(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return list(option.model_fields)
        if get_origin(option) is dict and get_args(option):
            names = [
                str(name)
                for key_type in _options(get_args(option)[0])
                if get_origin(key_type) is Literal
                for name in get_args(key_type)
            ]
            if names:
                return names
    return None


def _inside(annotation: Any, part: int | str) -> Any:
    """The type of item ``part`` of a value of type ``annotation`` (None if it has no items)."""
    for option in _options(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            field = option.model_fields.get(str(part))
            if field is not None:
                return field.annotation
        elif get_origin(option) is dict and get_args(option):
            return get_args(option)[1]
        elif get_origin(option) in (list, tuple) and get_args(option) and isinstance(part, int):
            items = get_args(option)
            if get_origin(option) is list or items[-1] is Ellipsis:
                return items[0]
            if part < len(items):
                return items[part]
    return None


def _options(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of ``X | Y | None`` (without None), unwrapping ``Annotated``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _options(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return tuple(
            option
            for argument in get_args(annotation)
            if argument is not type(None)
            for option in _options(argument)
        )
    return (annotation,)
