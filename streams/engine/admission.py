"""Admission of inputs by event time against the wall clock: which inputs may be dated ahead of
it, and how far.

The decision path decides by event time only; the wall clock is consulted here, at the door,
and only where the caller provides one (the live worker). A backtest or an offline state has
none and admits every input as before. Two classes of input:

- **observed** inputs describe the present (real-time prices, telemetry, actual carbon
  intensity, metered PPA supply): one dated more than ``max_clock_skew`` ahead of the wall clock
  comes from a wrong clock, and would otherwise become the fleet's "now" or its freshest
  measurement;
- **foresight** may be dated ahead (day-ahead, forecast and reserve prices, carbon and PPA supply
  forecasts, grid signals announced ahead, compute-demand windows, hashprice), up to
  ``max_lookahead``: a bound on how far ahead anything is worth knowing, which also bounds the
  memory future points take (pruning only drops the past).

A rejected input gets reason ``future_dated`` and a one-line error naming its kind, its time and
the limit; it changes nothing. This module owns the rule and nothing else: it does not fold
inputs into the state and reads the clock only in :func:`system_wall`, which the caller chooses
to pass in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from schemas import (
    CarbonEvent,
    ComputeDemandEvent,
    GridSignalEvent,
    HashpriceEvent,
    PpaSupplyEvent,
    PriceEvent,
    ReservePriceEvent,
    TelemetryEvent,
)
from streams.engine.codec import Rejection

#: The inputs admission judges (the state's event union, spelled here to avoid an import cycle).
Input = (
    PriceEvent
    | CarbonEvent
    | GridSignalEvent
    | TelemetryEvent
    | HashpriceEvent
    | ComputeDemandEvent
    | ReservePriceEvent
    | PpaSupplyEvent
)
WallClock = Callable[[], datetime]


def system_wall() -> datetime:
    """The machine's wall clock (UTC): what the live worker admits against."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """How far ahead of the wall clock inputs may start; ``None`` disables that check."""

    max_clock_skew: timedelta | None = timedelta(minutes=5)
    max_lookahead: timedelta | None = timedelta(days=14)

    @classmethod
    def of_seconds(
        cls, max_clock_skew_s: float | None, max_lookahead_s: float | None
    ) -> AdmissionLimits:
        return cls(_seconds(max_clock_skew_s), _seconds(max_lookahead_s))


@dataclass(frozen=True, slots=True)
class Admission:
    """Limits plus where the wall clock is read (a callable, so a test can pass a fixed one)."""

    limits: AdmissionLimits
    wall: WallClock = system_wall

    def check(self, event: Input) -> Rejection | None:
        return admit(event, self.wall(), self.limits)


def is_observed(event: Input) -> bool:
    """True for inputs that describe the present (and so may not run ahead of the wall clock)."""
    # Plain type checks, telemetry first: this runs for every input, tens of thousands a second.
    kind = type(event)
    if kind is TelemetryEvent:
        return True
    if kind is PriceEvent:
        return cast(PriceEvent, event).market == "real_time"
    if kind is CarbonEvent:
        return cast(CarbonEvent, event).basis == "actual"
    if kind is PpaSupplyEvent:
        return cast(PpaSupplyEvent, event).basis == "actual"
    return False


def admit(event: Input, wall: datetime, limits: AdmissionLimits) -> Rejection | None:
    """None when ``event`` may enter at wall-clock time ``wall``, else why not."""
    observed = is_observed(event)
    limit = limits.max_clock_skew if observed else limits.max_lookahead
    if limit is None or event.interval_start <= wall + limit:
        return None
    name = "max_clock_skew_s" if observed else "max_lookahead_s"
    return Rejection(
        "future_dated",
        f"{describe(event)} starts {event.interval_start.isoformat()}, "
        f"{_span(event.interval_start - wall)} after the wall clock "
        f"{wall.isoformat(timespec='seconds')}; limit {_span(limit)} ({name})",
    )


def describe(event: Input) -> str:  # noqa: PLR0911 - one answer per input kind
    """A few words naming the input: its kind, basis and key."""
    match event:
        case PriceEvent():
            return f"{event.market} price for {event.node}"
        case CarbonEvent():
            return f"{event.basis} carbon intensity for {event.region}"
        case GridSignalEvent():
            return f"{event.signal_type} signal {event.signal_id}"
        case TelemetryEvent():
            return f"telemetry from {event.site_id}"
        case ComputeDemandEvent():
            return f"compute demand for {event.site_id}"
        case HashpriceEvent():
            return "hashprice"
        case ReservePriceEvent():
            return f"{event.market} {event.product} reserve price for {event.region}"
        case PpaSupplyEvent():
            return f"{event.basis} PPA supply for {event.site_id}"


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _span(delta: timedelta) -> str:
    """A duration in the largest unit that keeps it readable (``300 s``, ``6.0 h``, ``74.4 y``)."""
    seconds = delta.total_seconds()
    for unit, size in (("y", 365.25 * 86_400), ("d", 86_400.0), ("h", 3_600.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
