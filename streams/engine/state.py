"""Per-fleet input state of one worker: latest curves (prices, carbon, hashprice, reserve prices,
each site's PPA supply), telemetry, GPU demand windows, active signals, and the event-time clocks.

Applying an event updates the state and says which sites it affects (so they re-plan). State is
bounded: curves are pruned behind each site's event-time clock.

The clock rule (DESIGN.md, "Event time rules"): only observed real-time information moves the
decision clock, i.e. real-time prices (a node's clock is its newest real-time interval; the
fleet's clock is the newest of those). Day-ahead and forecast prices, reserve prices, carbon, PPA
supply,
signals announced ahead, compute-demand windows and telemetry fill their curves and records,
never the clock.
Bounds: live, :attr:`FleetState.admission` turns away inputs dated absurdly far ahead of the
wall clock (see :mod:`streams.engine.admission`); optionally, :attr:`FleetState.max_clock_jump`
bounds a real-time price against the other feeds, so that no single event moves the clock far
ahead. This module never reads the wall clock itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas import (
    CarbonEvent,
    ComputeDemandEvent,
    GridSignalEvent,
    HashpriceEvent,
    PpaSupplyEvent,
    PriceEvent,
    ReservePriceEvent,
    TelemetryEvent,
    Trigger,
)
from streams.engine.admission import Admission, AdmissionLimits, WallClock, system_wall
from streams.engine.codec import Rejection
from streams.engine.curves import Curve, Point, Windows
from streams.engine.fleet import Fleet, SiteConfig

InputEvent = (
    PriceEvent
    | CarbonEvent
    | GridSignalEvent
    | TelemetryEvent
    | HashpriceEvent
    | ComputeDemandEvent
    | ReservePriceEvent
    | PpaSupplyEvent
)

_MARKET_PRIORITY = {"real_time": 2, "day_ahead": 1, "forecast": 0}
#: The curve priority of a real-time price point (it beats any forecast for its interval).
REAL_TIME_PRIORITY = _MARKET_PRIORITY["real_time"]
_BASIS_PRIORITY = {"actual": 1, "forecast": 0}
#: How much history behind the newest event each curve keeps.
RETENTION = timedelta(days=2)
#: Event-time age after which a site's telemetry no longer anchors its ramp or reductions (the
#: live worker passes ``Settings.stale_telemetry_after_s``).
STALE_TELEMETRY_AFTER = timedelta(minutes=15)
#: Real-time prices held back by :attr:`FleetState.max_clock_jump` awaiting confirmation (a bound:
#: a feed of garbage must not grow the state).
_MAX_PENDING = 64


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
    #: The wall-clock door (live worker only); None admits everything (backtest, offline).
    admission: Admission | None = None
    #: Telemetry older than this (event time, behind the decision's now) is not trusted as a
    #: measurement of now: ramps and reductions fall back, and the plan says so.
    stale_telemetry_after: timedelta | None = STALE_TELEMETRY_AFTER
    #: A real-time price starting further than this ahead of the fleet clock moves no clock
    #: until a second, distinct real-time price near it confirms it; None = no such bound.
    max_clock_jump: timedelta | None = None
    prices: dict[str, Curve] = field(default_factory=dict)
    #: Day-ahead and forecast prices only, by node (``prices`` holds them beneath real time).
    price_forecasts: dict[str, Curve] = field(default_factory=dict)
    carbon: dict[str, Curve] = field(default_factory=dict)
    hashprice: Curve = field(default_factory=Curve)
    #: Reserve capacity prices by (region, product): day-ahead clearing prices, $/MW-h.
    reserve_prices: dict[tuple[str, str], Curve] = field(default_factory=dict)
    #: Contracted carbon-free (PPA) supply by site, MW: forecast beneath actual.
    ppa: dict[str, Curve] = field(default_factory=dict)
    signals: dict[str, GridSignalEvent] = field(default_factory=dict)
    telemetry: dict[str, TelemetryEvent] = field(default_factory=dict)
    demand: dict[str, Windows[ComputeDemandEvent]] = field(default_factory=dict)
    node_clock: dict[str, datetime] = field(default_factory=dict)
    #: The fleet's decision clock: the newest real-time price interval start on any node. Other
    #: inputs never move it (a forecast for tomorrow is foresight, not a sign tomorrow has come).
    event_clock: datetime | None = None

    def __post_init__(self) -> None:
        self.sites: dict[str, SiteConfig] = self.fleet.by_id()
        self._by_node: dict[str, frozenset[str]] = _index(self.fleet, "price_node")
        self._by_region: dict[str, frozenset[str]] = _index(self.fleet, "carbon_region")
        # A reserve price concerns only the sites of its region that may sell reserve.
        self._reserve_by_region = {
            region: frozenset(s for s in ids if self.sites[s].reserve_products)
            for region, ids in self._by_region.items()
        }
        # Telemetry is folded tens of thousands of times a second: its answers are built once.
        self._telemetry_changed = {s: Applied(frozenset({s}), "telemetry") for s in self.sites}
        # Real-time prices held back by ``max_clock_jump``: (node, start), oldest first.
        self._pending: dict[tuple[str, datetime], None] = {}

    @classmethod
    def live(
        cls,
        fleet: Fleet,
        *,
        max_clock_skew_s: float | None,
        max_lookahead_s: float | None,
        stale_telemetry_after_s: float | None,
        max_clock_jump_s: float | None = None,
        wall: WallClock = system_wall,
    ) -> FleetState:
        """The live worker's state: inputs are admitted against ``wall`` (see ``Settings``)."""
        return cls(
            fleet,
            admission=Admission(
                AdmissionLimits.of_seconds(max_clock_skew_s, max_lookahead_s), wall
            ),
            stale_telemetry_after=_seconds(stale_telemetry_after_s),
            max_clock_jump=_seconds(max_clock_jump_s),
        )

    def admit(self, event: InputEvent) -> Rejection | None:
        """Why ``event`` may not enter (dated too far ahead of the wall clock), or None."""
        return None if self.admission is None else self.admission.check(event)

    def apply(self, event: InputEvent) -> Applied:
        """Fold ``event`` into the state; :class:`UnknownSiteError` for an unknown site id.

        A rejected event changes nothing, the event-time clock included. Call :meth:`admit`
        first where inputs come from outside (:func:`~streams.engine.ingest.ingest` does).
        """
        return self._fold(event)

    def _fold(self, event: InputEvent) -> Applied:  # noqa: PLR0911 - one case per input kind
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
                    # Only real-time intervals move the clock: a day-ahead price for tomorrow
                    # is foresight, not a sign that tomorrow has come.
                    self._tick(event.node, event.interval_start)
                else:
                    # Kept apart too: the real-time price replaces it in ``prices``, yet the
                    # forecast's error at that interval is what corrects the steps after it.
                    _put(
                        self.price_forecasts.setdefault(event.node, Curve()),
                        event.interval_start,
                        event.interval_end,
                        event.price_usd_per_mwh,
                        _MARKET_PRIORITY[event.market],
                    )
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
            case ReservePriceEvent():
                _put(
                    self.reserve_prices.setdefault((event.region, event.product), Curve()),
                    event.interval_start,
                    event.interval_end,
                    event.price_usd_per_mw_h,
                    0,  # day-ahead only, one price per product and interval
                )
                return Applied(self._reserve_by_region.get(event.region, frozenset()), "reserve")
            case PpaSupplyEvent():
                _put(
                    self.ppa.setdefault(self._known(event.site_id), Curve()),
                    event.interval_start,
                    event.interval_end,
                    event.supply_mw,
                    _BASIS_PRIORITY[event.basis],
                )
                return Applied(frozenset({event.site_id}), "ppa")
            case ComputeDemandEvent():
                self._known(event.site_id)
                # A window applies over its own interval only (a window for tomorrow leaves
                # today's floor alone): kept beside the others, read per step.
                windows = self.demand.setdefault(event.site_id, Windows())
                windows.put(event.interval_start, event.interval_end, event)
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

    def _tick(self, node: str, start: datetime) -> None:
        """A real-time price for ``node`` starting at ``start``: move the clocks if it may."""
        clock = self.node_clock.get(node)
        if clock is not None and start <= clock:
            return
        jump = self.max_clock_jump
        if jump is None or self.event_clock is None or start <= self.event_clock + jump:
            self._move(node, start)
            return
        # Far ahead of every feed. One event alone (a wrong clock, a typo in a replayed file)
        # may not move the clock; a second distinct real-time price near it (the feed really
        # jumped, e.g. after an outage) confirms both. Meanwhile it is only a point of its curve.
        key = (node, start)
        confirming = [k for k in self._pending if k != key and abs(k[1] - start) <= jump]
        if not confirming:
            self._pending[key] = None
            while len(self._pending) > _MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            return
        for pending in confirming:
            self._pending.pop(pending, None)  # an earlier move may have cleared it already
            self._move(*pending)
        self._move(node, start)

    def _move(self, node: str, start: datetime) -> None:
        clock = self.node_clock.get(node)
        if clock is None or start > clock:
            self.node_clock[node] = start
        if self.event_clock is None or start > self.event_clock:
            self.event_clock = start
        if self._pending:
            # What the clock has passed needs no confirmation any more: it is history.
            self._pending = {k: None for k in self._pending if k[1] > self.event_clock}

    def clock(self, site: SiteConfig) -> datetime | None:
        """The site's event-time now: the start of the newest real-time price interval."""
        return self.node_clock.get(site.price_node)

    def demand_at(self, site_id: str, instant: datetime) -> ComputeDemandEvent | None:
        """The compute-demand window in force at ``instant`` for the site, if any."""
        windows = self.demand.get(site_id)
        return None if windows is None else windows.at(instant)

    def active_signals(self, site: SiteConfig) -> list[GridSignalEvent]:
        return [
            s
            for s in self.signals.values()
            if s.site_id == site.site_id or (s.site_id is None and s.region == site.carbon_region)
        ]

    def prune(self, now: datetime) -> None:
        """Drop what lies further than :data:`RETENTION` behind ``now`` (bounded memory)."""
        horizon = now - RETENTION
        curves = (
            *self.prices.values(),
            *self.price_forecasts.values(),
            *self.carbon.values(),
            *self.reserve_prices.values(),
            *self.ppa.values(),
        )
        for curve in (*curves, self.hashprice):
            curve.prune_before(horizon)
        for windows in self.demand.values():
            windows.prune_before(horizon)
        expired = [sid for sid, s in self.signals.items() if s.interval_end < horizon]
        for signal_id in expired:
            del self.signals[signal_id]

    def _known(self, site_id: str) -> str:
        if site_id not in self.sites:
            raise UnknownSiteError.of(site_id)
        return site_id


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _put(curve: Curve, start: datetime, end: datetime, value: float, priority: int) -> None:
    curve.put(Point(start=start, end=end, value=value, priority=priority))


def _index(fleet: Fleet, attribute: str) -> dict[str, frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for site in fleet.sites:
        groups.setdefault(getattr(site, attribute), set()).add(site.site_id)
    return {key: frozenset(ids) for key, ids in groups.items()}
