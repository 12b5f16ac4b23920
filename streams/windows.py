"""What a command's ``--start``/``--end`` accepts and how it becomes UTC: one rule for
``backtest``, ``sweep`` and ``replay``, so a time copied from a scenario file works in each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

#: A date, a UTC time, or a time with its offset (as scenario files write them:
#: 2024-11-04T04:00Z, 2024-11-03T01:00-05:00), with or without seconds.
WINDOW_FORMATS = [
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%MZ",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%z",
]


@overload
def utc_bound(when: datetime) -> datetime: ...
@overload
def utc_bound(when: None) -> None: ...
def utc_bound(when: datetime | None) -> datetime | None:
    """A window bound in UTC: naive values are UTC, offsets are honoured."""
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
