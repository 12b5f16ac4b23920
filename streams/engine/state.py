"""Per-fleet input state of one worker: latest curves, telemetry, GPU demand and active signals.

Applying an event updates the state and says which sites it affects (so they re-plan). State is
bounded: curves are pruned behind each site's event-time clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas import (
    CarbonEvent,
    ComputeDemandEvent,
    GridSignalEvent,
    HashpriceEvent,
    PriceEvent,
    TelemetryEvent,
    Trigger,
)
from streams.engine.curves import Curve, Point
from streams.engine.fleet import Fleet, SiteConfig

InputEvent = (
    PriceEvent
    | CarbonEvent
    | GridSignalEvent
    | TelemetryEvent
    | HashpriceEvent
    | ComputeDemandEvent
)

_MARKET_PRIORITY = {"real_time": 2, "day_ahead": 1, "forecast": 0}
_BASIS_PRIORITY = {"actual": 1, "forecast": 0}
#: How much history behind the newest event each curve keeps.
RETENTION = timedelta(days=2)


class UnknownSiteError(LookupError):
    """A site-scoped event names a site that is not in the fleet file."""

    @classmethod
    def of(cls, site_id: str) -> UnknownSiteError:
        return cls(f"unknown site {site_id!r}: not in the sites file")


@dataclass(frozen=True, slots=True)
class Applied:
    """Which sites an event affects and why they re-plan."""

    sites: frozenset[str]
    trigger: Trigger


_TELEMETRY_UNCHANGED = Applied(frozenset(), "telemetry")


@dataclass
class FleetState:
    """Everything a worker knows, by event time."""

    fleet: Fleet
    prices: dict[str, Curve] = field(default_factory=dict)
    carbon: dict[str, Curve] = field(default_factory=dict)
    hashprice: Curve = field(default_factory=Curve)
    signals: dict[str, GridSignalEvent] = field(default_factory=dict)
    telemetry: dict[str, TelemetryEvent] = field(default_factory=dict)
    demand: dict[str, ComputeDemandEvent] = field(default_factory=dict)
    node_clock: dict[str, datetime] = field(default_factory=dict)
    event_clock: datetime | None = None  # the newest interval start seen on any input

    def __post_init__(self) -> None:
        self.sites: dict[str, SiteConfig] = self.fleet.by_id()
        self._by_node: dict[str, frozenset[str]] = _index(self.fleet, "price_node")
        self._by_region: dict[str, frozenset[str]] = _index(self.fleet, "carbon_region")
        # Telemetry is folded tens of thousands of times a second: its answers are built once.
        self._telemetry_changed = {s: Applied(frozenset({s}), "telemetry") for s in self.sites}

    def apply(self, event: InputEvent) -> Applied:
        """Fold ``event`` into the state; :class:`UnknownSiteError` for an unknown site id.

        A rejected event changes nothing, the event-time clock included.
        """
        applied = self._fold(event)
        self._advance_clock(event)
        return applied

    def _fold(self, event: InputEvent) -> Applied:
        match event:
            case TelemetryEvent():  # first: by far the most frequent input
                return self._telemetry(event)
            case PriceEvent():
                curve = self.prices.setdefault(event.node, Curve())
                _put(
                    curve,
                    event.interval_start,
                    event.interval_end,
                    event.price_usd_per_mwh,
                    _MARKET_PRIORITY[event.market],
                )
                if event.market == "real_time":
                    # Only settled real-time intervals move the clock: a day-ahead price for
                    # tomorrow is foresight, not a sign that tomorrow has come.
                    clock = self.node_clock.get(event.node)
                    if clock is None or event.interval_start > clock:
                        self.node_clock[event.node] = event.interval_start
                return Applied(self._by_node.get(event.node, frozenset()), "price")
            case CarbonEvent():
                curve = self.carbon.setdefault(event.region, Curve())
                _put(
                    curve,
                    event.interval_start,
                    event.interval_end,
                    event.average_intensity_g_per_kwh,
                    _BASIS_PRIORITY[event.basis],
                )
                return Applied(self._by_region.get(event.region, frozenset()), "carbon")
            case HashpriceEvent():
                _put(
                    self.hashprice,
                    event.interval_start,
                    event.interval_end,
                    event.hashprice_usd_per_th_day,
                    0,
                )
                return Applied(frozenset(self.sites), "hashprice")
            case GridSignalEvent():
                if event.site_id is not None:
                    sites = frozenset({self._known(event.site_id)})
                else:
                    sites = self._by_region.get(event.region or "", frozenset())
                self.signals[event.signal_id] = event
                return Applied(sites, "signal")
            case ComputeDemandEvent():
                self._known(event.site_id)
                latest_demand = self.demand.get(event.site_id)
                if latest_demand is None or latest_demand.interval_start <= event.interval_start:
                    self.demand[event.site_id] = event
                return Applied(frozenset({event.site_id}), "compute_demand")

    def _telemetry(self, event: TelemetryEvent) -> Applied:
        changed = self._telemetry_changed.get(event.site_id)
        if changed is None:
            raise UnknownSiteError.of(event.site_id)
        latest = self.telemetry.get(event.site_id)
        if latest is not None and (
            event.interval_start < latest.interval_start
            or (event.interval_start == latest.interval_start and event == latest)
        ):
            # Older than what we hold, or a repeat: nothing the plan reads changed, so no
            # re-plan (high-rate telemetry repeats itself between changes).
            return _TELEMETRY_UNCHANGED
        self.telemetry[event.site_id] = event
        return changed

    def _advance_clock(self, event: InputEvent) -> None:
        """Event-time now of the whole worker (a day's hashprice says nothing of now)."""
        newer = self.event_clock is None or event.interval_start > self.event_clock
        if newer and not isinstance(event, HashpriceEvent):
            self.event_clock = event.interval_start

    def clock(self, site: SiteConfig) -> datetime | None:
        """The site's event-time now: the start of the newest real-time price interval."""
        return self.node_clock.get(site.price_node)

    def active_signals(self, site: SiteConfig) -> list[GridSignalEvent]:
        return [
            s
            for s in self.signals.values()
            if s.site_id == site.site_id or (s.site_id is None and s.region == site.carbon_region)
        ]

    def prune(self, now: datetime) -> None:
        """Drop what lies further than :data:`RETENTION` behind ``now`` (bounded memory)."""
        horizon = now - RETENTION
        for curve in (*self.prices.values(), *self.carbon.values(), self.hashprice):
            curve.prune_before(horizon)
        expired = [sid for sid, s in self.signals.items() if s.interval_end < horizon]
        for signal_id in expired:
            del self.signals[signal_id]

    def _known(self, site_id: str) -> str:
        if site_id not in self.sites:
            raise UnknownSiteError.of(site_id)
        return site_id


def _put(curve: Curve, start: datetime, end: datetime, value: float, priority: int) -> None:
    curve.put(Point(start=start, end=end, value=value, priority=priority))


def _index(fleet: Fleet, attribute: str) -> dict[str, frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for site in fleet.sites:
        groups.setdefault(getattr(site, attribute), set()).add(site.site_id)
    return {key: frozenset(ids) for key, ids in groups.items()}
