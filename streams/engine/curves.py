"""Time curves built from interval events: the value at an instant, by event time.

An instant is covered by the highest-priority interval containing it; where nothing covers it,
the latest value that started before it is held (and the caller is told it was held).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Point:
    """One interval's value with the priority of its source (real-time beats forecast)."""

    start: datetime
    end: datetime
    value: float
    priority: int


@dataclass(frozen=True, slots=True)
class Lookup:
    """A value read from a curve; ``held`` is True when no interval covered the instant."""

    value: float
    held: bool


class Curve:
    """Interval values keyed by start time, bounded by pruning what lies before a horizon."""

    def __init__(self) -> None:
        self._starts: list[datetime] = []
        self._points: dict[datetime, Point] = {}

    def __len__(self) -> int:
        return len(self._starts)

    def put(self, point: Point) -> bool:
        """Store ``point`` unless a higher-priority value holds its start; True if stored."""
        current = self._points.get(point.start)
        if current is not None and current.priority > point.priority:
            return False
        if current is None:
            bisect.insort(self._starts, point.start)
        self._points[point.start] = point
        return True

    def latest_start(self) -> datetime | None:
        return self._starts[-1] if self._starts else None

    def at(self, instant: datetime) -> Lookup | None:
        """The value in force at ``instant`` using only points that start at or before it."""
        index = bisect.bisect_right(self._starts, instant)
        if index == 0:
            return None
        point = self._points[self._starts[index - 1]]
        return Lookup(point.value, held=not (point.start <= instant < point.end))

    def prune_before(self, instant: datetime) -> None:
        """Forget points that ended before ``instant``, keeping the last one for hold-last."""
        index = bisect.bisect_left(self._starts, instant)
        drop = max(0, index - 1)
        for start in self._starts[:drop]:
            del self._points[start]
        del self._starts[:drop]
