"""The notes of decisions, reduced to kinds that can be counted over a backtest.

Each decision says in ``notes`` what its plan held or assumed ("price: 11 of 14 steps held at
the last known value", "battery charge unknown (no fresh telemetry): assumed empty"), and a
fallback says why (``fallback_reason``). A backtest keeps only a count per kind: the numbers,
times and ids in a note are replaced by ``#`` so notes of the same kind count together. Kinds
the engine is known to write are told in words a reader of the report understands, with the
reason that applies offline; any other kind is shown as it is (its numbers written ``n``), so
nothing assumed is silent.
"""

from __future__ import annotations

import re

_TIMES = re.compile(r" ?\(?\d{4}-\d\d-\d\d[T ][\d:.+-]+(?:Z|[+-]\d\d:\d\d)?\)?")
# Numbers standing alone, not digits inside a name such as a node "TH_NP15_GEN-APND".
_NUMBERS = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?!\w)")

#: Known kinds (after :func:`note_kind`) -> what the report says about them.
_TOLD = (
    (
        re.compile(r"^price: # of # steps held at the last known value"),
        "price held at the last known value over later horizon steps (no price forecast covers "
        "them, or they start within 30 minutes of the last real-time price)",
    ),
    (
        re.compile(r"^carbon: # of # steps held at the last known value for (\S+)"),
        r"carbon intensity for \1 held at the last known value over horizon steps no carbon "
        "reading or forecast covers (the plan's emissions use it)",
    ),
    (
        re.compile(r"^economics not estimated"),
        "a fallback's money and emissions were not estimated (reported as 0)",
    ),
    (
        re.compile(r"^carbon intensity unknown for (\S+): emissions assumed #"),
        r"carbon intensity unknown for \1: the plan assumed zero emissions",
    ),
    (
        re.compile(r"^reserve: # of # steps in hours sold day-ahead"),
        "reserve book: the horizon's hours already sold day-ahead, open to sell (starting at "
        "least the commitment lead ahead) or closed unsold (bookkeeping, nothing assumed)",
    ),
    (
        re.compile(r"^price: # of # steps from the day-ahead forecast"),
        "price beyond the last real-time price taken from the day-ahead price, corrected by its "
        "error at the last real-time price (a forecast, not a settled price)",
    ),
    (
        re.compile(r"^reserve price (\S+): # steps from the same hour a day earlier"),
        r"\1 reserve price assumed equal to the same hour a day earlier, or held at the last "
        "known price, where no day-ahead clearing price was published yet",
    ),
    (
        re.compile(r"^reserve price (\S+) unknown in (\S+) for # steps"),
        r"\1 reserve price unknown in \2 over horizon steps no clearing price (published, a "
        r"day earlier or held) covers: the plan valued \1 reserve there at $0",
    ),
    (
        re.compile(r"^reduction baseline for signal .*: the interconnect # MW"),
        "a grid request's reduction measured from the full interconnect (no telemetry or "
        "earlier plan yet)",
    ),
    (
        re.compile(r"^reduction baseline for signal .*: last plan's import # MW"),
        "a grid request's reduction measured from the last plan's import (a backtest has no "
        "telemetry)",
    ),
    (
        re.compile(r"^reduction baseline for signal .*: import held at the last plan's # MW"),
        "a grid request re-planned during it: measured so the import stays at the last "
        "plan's (already reduced) import",
    ),
    (
        re.compile(r"^ppa: # of # steps at the flat ppa_mw # MW"),
        "PPA supply assumed flat (ppa_mw) beyond the released PPA forecasts",
    ),
    (
        re.compile(r"^battery charge unknown"),
        "battery charge assumed empty (a backtest has no telemetry)",
    ),
    (
        re.compile(r"^mining ramp from # MW: no fresh telemetry or earlier decision"),
        "mining ramp started from 0 MW (no telemetry or earlier decision yet)",
    ),
    (
        re.compile(r"^mining ramp from the last decided # MW"),
        "mining ramp from the last decided set-point (a backtest has no telemetry)",
    ),
    (
        re.compile(r"^fail_safe: price feed for (\S+) silent for # min"),
        r"fail-safe (mining off, GPUs at their floor): no \1 price within the hold limit",
    ),
)


def note_kind(note: str) -> str:
    """``note`` with its times and numbers replaced by ``#``."""
    return _NUMBERS.sub("#", _TIMES.sub("", note)).strip()


def tell(kind: str) -> str:
    """What a report says about decisions with notes of ``kind`` (a kind not known here: as it
    is, each number it varies by written ``n``, never the internal ``#``)."""
    for pattern, told in _TOLD:
        match = pattern.match(kind)
        if match:
            return match.expand(told)
    return kind.replace("#", "n")
