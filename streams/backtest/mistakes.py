"""Config mistakes in scenario, mapping and sweep files, told in one line.

A validation error becomes ``path.to.key: what is wrong``, with ``sites[0]``-style indices, up to
:data:`SHOWN` problems at once; an unknown key names the closest key the file format knows (a
typo such as ``step_minute`` is the usual cause). This module owns only that wording: finding
the known keys and the closest one is ``streams.engine.tomlfiles``'s, shared with every strict
file. It never validates anything itself.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from streams.engine.tomlfiles import Location, closest, keys_at

__all__ = ["SHOWN", "one_line"]

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


def _problem(error: ErrorDetails, model: type[BaseModel], prefix: str) -> str:
    loc: Location = tuple(error["loc"])
    path = _path(prefix, loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        known = keys_at(model, loc[:-1])
        guess = closest(str(loc[-1]), known)
        if guess is not None:
            return f"{path}: unknown key (did you mean {guess}?)"
        listed = ", ".join(known) if known else "none"
        return f"{path}: unknown key (known keys here: {listed})"
    if kind == "missing":
        return f"{path}: required key missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


def _path(prefix: str, loc: Location) -> str:
    text = prefix
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
