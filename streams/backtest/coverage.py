"""What the data covers inside a backtest window, and what is assumed where it does not.

A backtest reads a few series: each price node's prices, each region's carbon intensity and the
fleet-wide hashprice. For each, on the backtest's interval grid, an interval is

- **observed**: a row covers its start;
- **held**: it lies in a gap no longer than the series' hold limit (``[hold]`` in the scenario):
  the last value is carried through it, and counted;
- **missing**: before the first row, after the last, or in a longer gap.

A window that starts before or ends after what a price or the hashprice covers is refused in
one line naming the data's range (or clipped to it on request); inside the window, an interval
missing a price or the hashprice is not scored for any strategy. Carbon never stops a run: an
interval without it is left out of the emissions, and the report says how many were.

This module decides coverage and holds; it reads no files and runs no strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from optimizer.value import FloatArray
from streams.backtest.history import duration, utc_values
from streams.errors import GridshiftError

Kind = Literal["price", "carbon", "hashprice"]
CLIPPED = "clipped to the data: "  # how a clipped window's statement begins
BoolArray = np.ndarray  # of bool


class HoldRules(BaseModel):
    """How long a value is carried through a gap before the intervals in it count as missing."""

    # strict: a value of the wrong TOML type is refused, not converted (true is no minute).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    price_minutes: int = Field(
        default=60, ge=0, le=24 * 60, description="Longest price gap held (minutes)."
    )
    carbon_minutes: int = Field(
        default=180, ge=0, le=7 * 24 * 60, description="Longest carbon gap held (minutes)."
    )
    hashprice_days: float = Field(
        default=2.0, ge=0.0, le=31.0, description="Longest hashprice gap held (days)."
    )

    def limit(self, kind: Kind) -> timedelta:
        if kind == "price":
            return timedelta(minutes=self.price_minutes)
        if kind == "carbon":
            return timedelta(minutes=self.carbon_minutes)
        return timedelta(days=self.hashprice_days)


@dataclass(frozen=True)
class Series:
    """One input series: what it is, where it came from, and its rows (UTC, sorted by start).

    A constant series (an assumed hashprice) covers every instant.
    """

    kind: Kind
    key: str  # the node or region; "" for the hashprice
    source: str  # e.g. "own.csv", "column of own.csv", "constant 0.05 $/TH/day (assumed)"
    starts: np.ndarray  # datetime64[ns], UTC
    ends: np.ndarray
    values: FloatArray
    constant: bool = False

    @property
    def label(self) -> str:
        return {"price": f"{self.key} price", "carbon": f"{self.key} carbon"}.get(
            self.kind, "hashprice"
        )

    @classmethod
    def of(cls, kind: Kind, key: str, source: str, frame: pd.DataFrame, column: str) -> Series:
        """The rows of ``frame`` with a value in ``column`` (sorted, one per interval start)."""
        rows = frame[["interval_start_utc", "interval_end_utc", column]].dropna()
        rows = rows.sort_values("interval_start_utc", kind="stable").drop_duplicates(
            "interval_start_utc"
        )
        return cls(
            kind,
            key,
            source,
            utc_values(rows["interval_start_utc"]),
            utc_values(rows["interval_end_utc"]),
            rows[column].to_numpy(dtype=float),
        )

    @classmethod
    def constant_value(cls, kind: Kind, key: str, source: str, value: float) -> Series:
        never = np.array([], dtype="datetime64[ns]")
        return cls(kind, key, source, never, never, np.array([value]), constant=True)

    @property
    def empty(self) -> bool:
        return not self.constant and len(self.starts) == 0

    def span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First instant covered and the end of the last row."""
        return _ts(self.starts[0]), _ts(np.max(self.ends))


@dataclass
class Alignment:
    """A series on the backtest grid: the value used per interval, and how it was obtained."""

    series: Series
    values: FloatArray  # observed or held value; NaN where missing
    observed: BoolArray
    held: BoolArray
    #: Stretches of missing intervals within the grid: from, to, and how many intervals.
    long_gaps: list[tuple[pd.Timestamp, pd.Timestamp, int]]

    @property
    def missing(self) -> BoolArray:
        missing: BoolArray = ~(self.observed | self.held)
        return missing


def align(series: Series, grid: np.ndarray, step: timedelta, limit: timedelta) -> Alignment:
    """``series`` at each interval start of ``grid`` (datetime64[ns], UTC, sorted, ``step``
    apart)."""
    n = len(grid)
    if series.constant:
        return Alignment(
            series, np.full(n, series.values[0]), np.ones(n, bool), np.zeros(n, bool), []
        )
    if series.empty:
        return Alignment(series, np.full(n, np.nan), np.zeros(n, bool), np.zeros(n, bool), [])
    starts, ends = series.starts, np.maximum.accumulate(series.ends)
    row = np.searchsorted(starts, grid, side="right") - 1
    known = row >= 0
    safe = np.clip(row, 0, len(starts) - 1)
    observed = known & (grid < ends[safe])
    following = np.minimum(safe + 1, len(starts) - 1)
    has_next = known & (safe + 1 < len(starts))
    gap = np.where(has_next, starts[following] - ends[safe], np.timedelta64(10**18, "ns"))
    held = known & ~observed & has_next & (gap <= np.timedelta64(limit))
    values = np.where(observed | held, series.values[safe], np.nan)
    missing = ~(observed | held)
    long_gaps = []
    if missing.any() and n:
        # Stretches of missing intervals, reported by the data's own gap bounds within the grid.
        edges = np.flatnonzero(np.diff(np.concatenate([[0], missing.astype(int), [0]])))
        grid_end = grid[-1] + np.timedelta64(step)
        for first, stop in zip(edges[::2], edges[1::2], strict=True):
            k = int(first)
            begin = ends[safe[k]] if known[k] else grid[0]
            end = starts[safe[k] + 1] if has_next[k] else grid_end
            long_gaps.append((_ts(max(begin, grid[0])), _ts(min(end, grid_end)), int(stop - first)))
    return Alignment(series, values, observed, held, long_gaps)


@dataclass(frozen=True)
class Known:
    """What a strategy deciding at each grid instant can have seen of a series: the newest value
    already known, and the start of the row it came from (NaN / NaT until the first)."""

    values: FloatArray
    since: np.ndarray  # datetime64[ns]


def known_at(series: Series, grid: np.ndarray, lag: int) -> Known:
    """The newest row known at each grid instant, when a row becomes known ``lag`` row lengths
    after it starts (a settled price is known when its interval ends)."""
    if series.constant:
        return Known(np.full(len(grid), series.values[0]), np.full(len(grid), grid[0]))
    available = series.starts + lag * (series.ends - series.starts)
    order = np.argsort(available, kind="stable")
    row = np.searchsorted(available[order], grid, side="right") - 1
    safe = order[np.clip(row, 0, None)]
    values: FloatArray = np.where(row >= 0, series.values[safe], np.nan)
    since = np.where(row >= 0, series.starts[safe], np.datetime64("NaT"))
    return Known(values, since)


@dataclass(frozen=True)
class Window:
    """The backtest period actually run, and what was cut from the period asked."""

    start: datetime
    end: datetime
    clipped: str | None = None  # said at the top of the report when set


def window(
    series: list[Series],
    start: datetime,
    end: datetime,
    step_minutes: int,
    *,
    clip: bool,
) -> Window:
    """The period to run: ``[start, end)`` if every series covers it, else a refusal naming
    the data's range, or with ``clip`` the covered part (on the grid that starts at ``start``)."""
    bounded = [s for s in series if not s.constant]
    for s in bounded:
        if s.empty:
            raise GridshiftError(f"{s.label}: no rows with a value in {s.source}")
    if not bounded:
        return Window(start, end)
    first = max(bounded, key=lambda s: s.span()[0])
    last = min(bounded, key=lambda s: s.span()[1])
    covered_from, covered_to = first.span()[0], last.span()[1]
    asked_from, asked_to = pd.Timestamp(start), pd.Timestamp(end)
    if covered_from <= asked_from and asked_to <= covered_to:
        return Window(start, end)
    late = covered_from > asked_from
    culprit = first if late else last
    begin, stop = culprit.span()
    covers = f"{culprit.label} in {culprit.source} covers {_at(begin)} to {_at(stop)}"
    if covered_to <= asked_from or covered_from >= asked_to or covered_from >= covered_to:
        raise GridshiftError(
            f"{covers}: no data in the period asked ({_at(asked_from)} to {_at(asked_to)}); "
            f"choose --start/--end inside {_at(covered_from)} to {_at(covered_to)}"
        )
    if not clip:
        if late:
            advice = f"pass --start {_flag(covered_from)}"
            asked = f"the period asked starts {_at(asked_from)}"
        else:
            advice = f"pass --end {_flag(covered_to)}"
            asked = f"the period asked runs to {_at(asked_to)}"
        raise GridshiftError(
            f"{covers}; {asked} ({advice}, or --clip-to-data to score only the covered part)"
        )
    step = pd.Timedelta(minutes=step_minutes)
    new_start = asked_from + step * int(
        np.ceil(max(covered_from - asked_from, pd.Timedelta(0)) / step)
    )
    new_end = new_start + step * int((min(asked_to, covered_to) - new_start) // step)
    if new_end <= new_start:
        raise GridshiftError(f"{covers}: less than one interval of the period asked is covered")
    note = (
        f"{CLIPPED}the period asked was {_at(asked_from)} to {_at(asked_to)}; "
        f"the data covers {_at(covered_from)} to {_at(covered_to)}, so only "
        f"{_at(new_start)} to {_at(new_end)} is run and scored"
    )
    return Window(new_start.to_pydatetime(), new_end.to_pydatetime(), note)


def stretches(
    flags: BoolArray, grid: np.ndarray, step: timedelta
) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """The runs of consecutive flagged intervals of ``grid`` (datetime64[ns], UTC, ``step``
    apart): from the first one's start to the last one's end, and how many intervals."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(flags, dtype=int), [0]])))
    return [
        (_ts(grid[first]), _ts(grid[stop - 1] + np.timedelta64(step)), int(stop - first))
        for first, stop in zip(edges[::2], edges[1::2], strict=True)
    ]


def describe_gap(begin: pd.Timestamp, end: pd.Timestamp) -> str:
    return f"{_at(begin)} to {_at(end)} ({duration(end - begin)})"


def _ts(value: np.datetime64) -> pd.Timestamp:
    return pd.Timestamp(value, tz="UTC")


def _at(when: pd.Timestamp) -> str:
    return f"{when:%Y-%m-%d %H:%M}Z"


def _flag(when: pd.Timestamp) -> str:
    return f"{when:%Y-%m-%dT%H:%M}"
