"""Time curves built from interval events: the value at an instant, by event time.

A :class:`Curve` (prices, carbon, hashprice): an instant is covered by the highest-priority
interval containing it; where nothing covers it, the latest value that started before it is held
(and the caller is told it was held). :class:`Windows` (compute demand): a record applies over
its own interval only, never before it starts nor after it ends.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

W = TypeVar("W")


@dataclass(frozen=True, slots=True)
class Point:
    """One interval's value with the priority of its source (real-time beats forecast)."""

    start: datetime
    end: datetime
    value: float
    priority: int


@dataclass(frozen=True, slots=True)
class Lookup:
    """A value read from a curve; ``held`` is True when no interval covered the instant.
    ``start`` and ``priority`` are those of the point the value came from."""

    value: float
    held: bool
    start: datetime | None = None
    priority: int = 0


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
        return Lookup(
            point.value,
            held=not (point.start <= instant < point.end),
            start=point.start,
            priority=point.priority,
        )

    def newest_of(self, instant: datetime, priority: int, limit: int = 64) -> Lookup | None:
        """The newest point starting at or before ``instant`` whose priority is at least
        ``priority`` (the last real-time price beneath day-ahead points that start after it),
        looking back over at most ``limit`` points; None when none of them has it."""
        index = bisect.bisect_right(self._starts, instant)
        for back in range(index - 1, max(-1, index - 1 - limit), -1):
            point = self._points[self._starts[back]]
            if point.priority >= priority:
                return Lookup(
                    point.value,
                    held=not (point.start <= instant < point.end),
                    start=point.start,
                    priority=point.priority,
                )
        return None

    def prune_before(self, instant: datetime) -> None:
        """Forget points that ended before ``instant``, keeping the last one for hold-last."""
        index = bisect.bisect_left(self._starts, instant)
        drop = max(0, index - 1)
        for start in self._starts[:drop]:
            del self._points[start]
        del self._starts[:drop]


class Windows(Generic[W]):
    """Interval records (e.g. compute-demand windows) and the one in force at an instant.

    Unlike a :class:`Curve`, nothing is held: a window applies over its own interval only, so a
    window announced for tomorrow says nothing about now, and after a window ends the caller's
    default applies again. Where windows overlap, the one that started last wins (the most
    recent statement about that instant); a window with the same start replaces the old one.
    """

    def __init__(self) -> None:
        self._starts: list[datetime] = []
        self._items: dict[datetime, tuple[datetime, W]] = {}
        # The longest window held: how far back a window may start and still cover an instant,
        # so a lookup walks back over a bounded stretch instead of the whole list.
        self._longest = timedelta(0)

    def __len__(self) -> int:
        return len(self._starts)

    def put(self, start: datetime, end: datetime, item: W) -> None:
        if start not in self._items:
            bisect.insort(self._starts, start)
        self._items[start] = (end, item)
        self._longest = max(self._longest, end - start)

    def at(self, instant: datetime) -> W | None:
        """The window covering ``instant`` (``start <= instant < end``), or None."""
        index = bisect.bisect_right(self._starts, instant)
        earliest = instant - self._longest
        while index > 0:
            index -= 1
            start = self._starts[index]
            if start < earliest:
                break  # too long ago to reach ``instant``: nothing earlier can either
            end, item = self._items[start]
            if instant < end:
                return item
        return None

    def prune_before(self, instant: datetime) -> None:
        """Forget windows that ended at or before ``instant`` (nothing holds past its end)."""
        keep = [s for s in self._starts if self._items[s][0] > instant]
        for start in self._starts:
            if self._items[start][0] <= instant:
                del self._items[start]
        self._starts = keep
        self._longest = max((self._items[s][0] - s for s in keep), default=timedelta(0))
