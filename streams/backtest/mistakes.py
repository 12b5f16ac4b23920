"""Config mistakes in scenario and mapping files, told in one line.

A validation error becomes ``path.to.key: what is wrong``, with ``sites[0]``-style indices, and
an unknown key names the closest key the file format knows (a typo such as ``step_minute`` is
the usual cause). It reads the model classes only to list the keys known at a path; it never
validates anything itself.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

#: How many problems one line names (more would not fit on a line; fixing these shows the rest).
SHOWN = 3


def one_line(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """Up to :data:`SHOWN` problems of ``exc`` (raised validating ``model``), ``; ``-separated."""
    errors = exc.errors()
    # An error inside an item also fails its list (e.g. "at least 1 item"): name the cause only.
    locs = [tuple(e["loc"]) for e in errors]
    causes = [
        e
        for e, loc in zip(errors, locs, strict=True)
        if not any(other[: len(loc)] == loc and len(other) > len(loc) for other in locs)
    ]
    problems = [_problem(error, model, prefix) for error in causes]
    unique = list(dict.fromkeys(problems))
    more = len(unique) - SHOWN
    text = "; ".join(unique[:SHOWN])
    return f"{text} (and {more} more)" if more > 0 else text


def closest(word: str, choices: Sequence[str], cutoff: float = 0.5) -> str | None:
    """The choice ``word`` most likely misspells, if any is close enough (ignoring case)."""
    lowered = {choice.lower(): choice for choice in choices}
    matches = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[matches[0]] if matches else None


def _problem(error: Any, model: type[BaseModel], prefix: str) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    path = _path(prefix, loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _keys_at(model, loc[:-1])
        guess = closest(str(loc[-1]), known) if known else None
        if guess is not None:
            return f"{path}: unknown key (did you mean {guess}?)"
        listed = ", ".join(known) if known else "none"
        return f"{path}: unknown key (known keys here: {listed})"
    if kind == "missing":
        return f"{path}: required key missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    text = prefix
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model found at ``loc`` under ``model`` (empty if not a model)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) in (tuple, list):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X`` (the model inside an optional field)."""
    if get_origin(annotation) in (Union, types.UnionType):
        models = [a for a in get_args(annotation) if a is not type(None)]
        return models[0] if len(models) == 1 else annotation
    return annotation
