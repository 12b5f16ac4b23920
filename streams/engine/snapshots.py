"""Translation from the state to the core: one site's optimizer snapshot at ``now``.

Only past data is used: a snapshot at ``now`` reads curve points that start at or before each
step, and says in ``notes`` which values were held or assumed. Compute-demand windows apply
per step, over their own interval only, and so does a site's PPA supply (the flat ``ppa_mw``
where no PPA event covers a step). What the site draws now (the mining ramp's anchor, the
baseline a ``reduction_mw`` signal is measured from, the battery's charge) comes from telemetry
only while it is fresh (``FleetState.stale_telemetry_after``); otherwise from the site's last
decision for an earlier interval (what it was told to run), else a stated assumption. It must
not read a clock or change the state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from optimizer import Horizon, SiteSnapshot
from schemas import ComputeDemandEvent, DispatchDecision, GridSignalEvent, TelemetryEvent
from streams.engine.curves import Curve, Lookup
from streams.engine.fleet import SiteConfig
from streams.engine.reserves import (
    DAY,
    CommitmentBook,
    ReserveInputs,
    hour_of,
    price_path,
    reserve_inputs,
)
from streams.engine.state import REAL_TIME_PRIORITY, FleetState

#: How fast a day-ahead forecast's error at the last real-time price fades over the steps after it.
FORECAST_ERROR_DECAY = timedelta(hours=2)
#: Steps starting up to this long after the last real-time interval starts hold its price, the
#: forecast only after: on ERCOT's 15-minute prices (HB_SOUTH, June-December 2024) the held price
#: decides mining better than the corrected day-ahead price 15 and 30 minutes on, and worse from
#: 45 minutes on, in most months (docs/OPTIMIZER.md, "Price path").
FORECAST_PERSISTENCE = timedelta(minutes=30)
_NO_CURVE = Curve()  # read where a region has no carbon data yet; never written
_FLOAT = np.dtype(float)


class RoundReads:
    """Curve reads, and what is made of them, shared by the sites of one decision round.

    Hundreds of sites share a few price nodes, a carbon region and the hashprice, and the sites
    of one node share its clock, hence the step grid: each curve is read at each step once per
    round instead of once per site (a 200-site round read 21,000 points for 210 distinct ones).
    What is computed from those reads alone is kept too: a node's price path (from its prices,
    its forecast and its last real-time price), a carbon or hashprice curve filled over the
    steps, the step lengths, the flat curves. Those were ~45 % of building a 120-site round's
    snapshots when each site redid them. Arrays are handed out as copies, so a site (or the
    optimizer) changing its snapshot cannot change another site's. Keys are the curves' ids: a
    curve outlives the round, so its id cannot be reused meanwhile. Valid for one round only:
    the state must not change while it is in use.
    """

    def __init__(self, horizon: Horizon) -> None:
        self.horizon = horizon
        self._starts: dict[datetime, tuple[datetime, ...]] = {}
        self._ends: dict[datetime, tuple[datetime, ...]] = {}
        self._reads: dict[tuple[int, datetime], list[Lookup | None]] = {}
        self._hours: dict[datetime, tuple[datetime, ...]] = {}
        self._reserve_paths: dict[tuple[int, datetime], tuple[np.ndarray, np.ndarray]] = {}
        self._price_paths: dict[tuple[int, int | None, datetime], tuple[np.ndarray, int, int]] = {}
        self._filled: dict[tuple[int, datetime, float | None], np.ndarray] = {}
        self._held: dict[tuple[int, datetime], int] = {}
        self._step_hours = np.asarray(horizon.step_hours)
        self._constants: dict[tuple[float, float], np.ndarray] = {}

    def starts(self, now: datetime) -> tuple[datetime, ...]:
        starts = self._starts.get(now)
        if starts is None:
            starts = self._starts[now] = self.horizon.starts(now)
        return starts

    def ends(self, now: datetime) -> tuple[datetime, ...]:
        """The end of every step of the grid that begins at ``now``."""
        ends = self._ends.get(now)
        if ends is None:
            starts, horizon = self.starts(now), self.horizon
            ends = self._ends[now] = (*starts[1:], starts[-1] + horizon.step(horizon.n_steps - 1))
        return ends

    def step_hours(self) -> np.ndarray:
        """The length of every step in hours (a copy)."""
        return self._step_hours.copy()

    def constant(self, value: float) -> np.ndarray:
        """``value`` at every step (a copy): the few numbers most sites' flat curves hold, made
        once (a copy costs a seventh of ``np.full``). Anything but a float: made as before."""
        if type(value) is not float:
            return np.full(self.horizon.n_steps, value)
        key = (value, math.copysign(1.0, value))  # 0.0 == -0.0, but their bytes differ
        array = self._constants.get(key)
        if array is None:
            array = self._constants[key] = np.full(self.horizon.n_steps, value)
        return array.copy()

    def hours(self, now: datetime) -> tuple[datetime, ...]:
        """The (UTC) hour of every step start of the grid that begins at ``now``."""
        hours = self._hours.get(now)
        if hours is None:
            hours = self._hours[now] = tuple(hour_of(t) for t in self.starts(now))
        return hours

    def reserve_path(self, curve: Curve, now: datetime) -> tuple[np.ndarray, np.ndarray]:
        """A reserve price curve's expected price per step (and its source), once per round."""
        key = (id(curve), now)
        path = self._reserve_paths.get(key)
        if path is None:
            path = self._reserve_paths[key] = price_path(
                self.read(curve, now), self.read(curve, now - DAY)
            )
        return path

    def read(self, curve: Curve, now: datetime) -> list[Lookup | None]:
        """``curve`` at every step start of the grid that begins at ``now``."""
        key = (id(curve), now)  # the curve outlives the round: its id cannot be reused meanwhile
        values = self._reads.get(key)
        if values is None:
            values = self._reads[key] = [curve.at(t) for t in self.starts(now)]
        return values

    def filled(self, curve: Curve, now: datetime, default: float | None = None) -> np.ndarray:
        """``curve`` over the grid that begins at ``now``, gaps held (:func:`_fill`; a copy)."""
        key = (id(curve), now, default)
        values = self._filled.get(key)
        if values is None:
            values = self._filled[key] = _fill(self.read(curve, now), default)
        return values.copy()

    def held(self, curve: Curve, now: datetime) -> int:
        """How many steps of the grid that begins at ``now`` hold a value of ``curve`` past
        its own interval (steps before its first point are not counted: nothing is held)."""
        key = (id(curve), now)
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = sum(
                1 for v in self.read(curve, now) if v is not None and v.held
            )
        return held

    def price_path(
        self, prices: Curve, forecasts: Curve | None, now: datetime
    ) -> tuple[np.ndarray, int, int]:
        """:func:`_price_path` of a price curve and its forecast over the grid that begins at
        ``now``, anchored at the curve's last real-time price at ``now`` (which depends on
        nothing else); the path is a copy, for the site to change."""
        key = (id(prices), None if forecasts is None else id(forecasts), now)
        path = self._price_paths.get(key)
        if path is None:
            path = self._price_paths[key] = _price_path(
                self.read(prices, now),
                self,
                forecasts,
                self.starts(now),
                anchor=prices.newest_of(now, REAL_TIME_PRIORITY),
            )
        return path[0].copy(), path[1], path[2]


@dataclass(frozen=True, slots=True)
class SnapshotView:
    """A snapshot with the event times of its steps and a digest of everything in it."""

    site: SiteConfig
    now: datetime
    step_starts: tuple[datetime, ...]
    step_ends: tuple[datetime, ...]
    snapshot: SiteSnapshot
    notes: tuple[str, ...]
    input_version: str


def build_snapshot(
    state: FleetState,
    site: SiteConfig,
    horizon: Horizon,
    *,
    now: datetime | None = None,
    mining_cap_mw: float | None = None,
    reads: RoundReads | None = None,
    decided: Sequence[DispatchDecision] = (),
    book: CommitmentBook | None = None,
) -> SnapshotView | None:
    """The site's snapshot at ``now`` (default: its event-time clock), or None until price and
    hashprice are known. Only points that start at or before each step are read. A round
    building many snapshots passes one ``reads`` to all of them. ``decided`` is the site's
    recent decisions, newest first: the fallback for what it draws when telemetry is stale.
    ``book`` is the reserve sold so far (the decider's; default: nothing sold)."""
    now = now or state.clock(site)
    price_curve = state.prices.get(site.price_node)
    if now is None or price_curve is None:
        return None
    reads = reads or RoundReads(horizon)
    starts, ends = reads.starts(now), reads.ends(now)
    if reads.read(price_curve, now)[0] is None or reads.read(state.hashprice, now)[0] is None:
        return None
    notes: list[str] = []
    price_values, forecast_steps, held = reads.price_path(
        price_curve, state.price_forecasts.get(site.price_node), now
    )
    if forecast_steps:
        notes.append(
            f"price: {forecast_steps} of {horizon.n_steps} steps from the day-ahead forecast, "
            "corrected by its error at the last real-time price"
        )
    if held:
        notes.append(f"price: {held} of {horizon.n_steps} steps held at the last known value")
    carbon_curve = state.carbon.get(site.carbon_region) or _NO_CURVE
    carbon_values = reads.read(carbon_curve, now)
    if carbon_values[0] is None:
        notes.append(f"carbon intensity unknown for {site.carbon_region}: emissions assumed 0")
    # A held intensity (stale, or not yet renewed for later steps) sets the emissions as surely
    # as a measured one: said like a held price, so no figure rests on it silently.
    carbon_held = reads.held(carbon_curve, now)
    if carbon_held:
        notes.append(
            f"carbon: {carbon_held} of {horizon.n_steps} steps held at the last known value "
            f"for {site.carbon_region}"
        )

    telemetry = state.telemetry.get(site.site_id)
    draw = SiteDraw.at(state, site, now, decided, notes)
    caps, peaks = _signal_curves(state, site, starts, ends, reads.constant(math.inf), draw=draw)
    value, demand, floor = _demand_curves(state, site, starts, reads)
    reserve = _reserve_inputs(
        state, site, now=now, starts=starts, ends=ends, reads=reads, book=book
    )
    if reserve is not None:
        notes.extend(reserve.notes)
    snapshot = SiteSnapshot(
        step_hours=reads.step_hours(),
        price_usd_per_mwh=price_values,
        carbon_g_per_kwh=reads.filled(carbon_curve, now, default=0.0),
        hashprice_usd_per_th_day=reads.filled(state.hashprice, now),
        gpu_value_usd_per_mwh=value,
        gpu_demand_mw=demand,
        gpu_floor_mw=floor,
        mining_available_mw=reads.constant(
            min(
                # Even when stale, the last count of miners online is the best bound there is.
                telemetry.mining_available_mw if telemetry else site.mining_capacity_mw,
                site.mining_capacity_mw if mining_cap_mw is None else mining_cap_mw,
            )
        ),
        signal_cap_mw=caps,
        carbon_price_usd_per_t=site.carbon_price_usd_per_t,
        onsite_cfe_mw=reads.constant(site.onsite_cfe_mw),
        ppa_mw=_ppa_supply(state, site, now, reads, notes),
        peak_cost_usd_per_mw=peaks,
        mining_now_mw=draw.mining_now_mw,
        battery_soc_mwh=draw.battery_soc_mwh,
        reserves=reserve.reserves if reserve is not None else {},
        reserve_deployed_mw=reserve.deployed_mw if reserve is not None else None,
    )
    return SnapshotView(
        site=site,
        now=now,
        step_starts=starts,
        step_ends=ends,
        snapshot=snapshot,
        notes=tuple(notes),
        input_version=_digest(site.site_id, now, snapshot),
    )


def _price_path(
    prices: list[Lookup | None],
    reads: RoundReads,
    forecasts: Curve | None,
    starts: tuple[datetime, ...],
    *,
    anchor: Lookup | None,
) -> tuple[np.ndarray, int, int]:
    """The price of every step, how many came from the day-ahead forecast and how many were held.

    A step covered by a real-time price takes it. Beyond the last real-time price (``anchor``:
    the newest real-time interval at or before now, even where a day-ahead interval starting
    later covers now), a step starting within :data:`FORECAST_PERSISTENCE` of the anchor holds
    the anchor's price (persistence); a later step covered by a day-ahead (or other forecast)
    price takes that forecast plus the forecast's error at the anchor, an error that decays with
    e-folding time :data:`FORECAST_ERROR_DECAY`: the steps after a spike stay near the spike,
    hours later they follow the day-ahead shape. A step that nothing covers holds the last value.
    """
    path = _fill(prices)
    held = sum(1 for p in prices if p is None or p.held)
    if forecasts is None:
        return path, 0, held
    error = 0.0
    if anchor is not None and anchor.start is not None:
        expected = forecasts.at(anchor.start)
        if expected is not None and not expected.held:
            error = anchor.value - expected.value
    origin = anchor.start if anchor is not None and anchor.start is not None else None
    ahead = reads.read(forecasts, starts[0])
    used = 0
    for k, (lookup, forecast) in enumerate(zip(prices, ahead, strict=True)):
        covered = lookup is not None and not lookup.held and lookup.priority == REAL_TIME_PRIORITY
        if covered or forecast is None or forecast.held:
            continue
        since = starts[k] - (origin or starts[0])
        if anchor is not None and origin is not None and since <= FORECAST_PERSISTENCE:
            # Held at the last real-time price (counted as held, not as forecast).
            held += lookup is not None and not lookup.held
            path[k] = anchor.value
            continue
        path[k] = forecast.value + error * math.exp(-since / FORECAST_ERROR_DECAY)
        used += 1
        held -= lookup is None or lookup.held
    return path, used, held


def _reserve_inputs(
    state: FleetState,
    site: SiteConfig,
    *,
    now: datetime,
    starts: tuple[datetime, ...],
    ends: tuple[datetime, ...],
    reads: RoundReads,
    book: CommitmentBook | None,
) -> ReserveInputs | None:
    """The reserve part of the snapshot (None at a site that sells no reserve)."""
    if not site.reserve_products:
        return None
    prices: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for product in site.reserve_products:
        curve = state.reserve_prices.get((site.carbon_region, product))
        if curve is not None:
            prices[product] = reads.reserve_path(curve, now)
    deployments = [
        (s.interval_start, s.interval_end, s.reduction_mw or 0.0)
        for s in state.active_signals(site)
        if s.signal_type == "reserve_deployment"
    ]
    return reserve_inputs(
        site,
        now=now,
        starts=starts,
        ends=ends,
        hours=reads.hours(now),
        prices=prices,
        book=book or CommitmentBook(),
        deployments=deployments,
    )


def _ppa_supply(
    state: FleetState, site: SiteConfig, now: datetime, reads: RoundReads, notes: list[str]
) -> np.ndarray:
    """Per step: the site's contracted carbon-free MW, from the PPA supply events covering the
    step, else the sites file's flat ``ppa_mw``.

    A shaped PPA's MW is never held beyond its interval (last hour's solar says nothing about
    the night): a step no event covers takes the flat value, and the notes say how many did.
    A site that never received a PPA event plans with its flat contract, as configured.
    """
    curve = state.ppa.get(site.site_id)
    n = reads.horizon.n_steps
    if curve is None:
        return reads.constant(site.ppa_mw)
    lookups = reads.read(curve, now)
    supply = [site.ppa_mw if v is None or v.held else v.value for v in lookups]
    assumed = sum(1 for v in lookups if v is None or v.held)
    if assumed:
        notes.append(
            f"ppa: {assumed} of {n} steps at the flat ppa_mw {site.ppa_mw:.1f} MW "
            "(no PPA supply event covers them)"
        )
    return np.asarray(supply, dtype=float)


def _fill(values: list[Lookup | None], default: float | None = None) -> np.ndarray:
    """Forward-fill missing values (hold last); leading gaps take ``default`` or the first value."""
    known = [v.value for v in values if v is not None]
    last = default if default is not None else (known[0] if known else 0.0)
    out = []
    for value in values:
        last = value.value if value is not None else last
        out.append(last)
    return np.asarray(out, dtype=float)


def _demand_curves(
    state: FleetState, site: SiteConfig, starts: tuple[datetime, ...], reads: RoundReads
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step: GPU value, firm demand and contracted floor, from the compute-demand window in
    force at the step's start, else the sites file."""
    if site.site_id not in state.demand:  # most sites: no window ever received
        return (
            reads.constant(site.gpu_value_usd_per_mwh),
            reads.constant(site.firm_gpu_demand_mw),
            reads.constant(site.gpu_floor_mw),
        )
    windows: list[ComputeDemandEvent | None] = [state.demand_at(site.site_id, t) for t in starts]
    return (
        np.array([w.value_usd_per_mwh if w else site.gpu_value_usd_per_mwh for w in windows]),
        np.array([w.demand_mw if w else site.firm_gpu_demand_mw for w in windows]),
        np.array([w.contracted_floor_mw if w else site.gpu_floor_mw for w in windows]),
    )


@dataclass(frozen=True, slots=True)
class SiteDraw:
    """What the site draws at ``now``, as far as the snapshot can tell, and from what.

    ``measured`` is fresh telemetry (None when there is none or it is stale); ``earlier`` is
    the site's newest decision for an interval before ``now``: the set-points it was told to
    run, which is the best estimate once telemetry is stale. A decision for ``now`` itself is
    never used: re-planning the same interval from its own plan would ratchet the ramp.
    """

    site: SiteConfig
    measured: TelemetryEvent | None
    earlier: DispatchDecision | None
    mining_now_mw: float | None
    battery_soc_mwh: float
    notes: list[str]

    @classmethod
    def at(
        cls,
        state: FleetState,
        site: SiteConfig,
        now: datetime,
        decided: Sequence[DispatchDecision],
        notes: list[str],
    ) -> SiteDraw:
        """Read the telemetry's age and pick the anchors; assumptions go to ``notes``."""
        telemetry = state.telemetry.get(site.site_id)
        age = None if telemetry is None else now - telemetry.interval_end
        limit = state.stale_telemetry_after
        stale = age is not None and limit is not None and age > limit
        measured = None if stale else telemetry
        earlier = next((d for d in decided if d.interval_start < now), None)
        if stale and age is not None and limit is not None:
            notes.append(
                f"telemetry {_minutes(age)} old (stale after {_minutes(limit)}): "
                "not taken as what the site draws now"
            )
        mining_now = measured.mining_mw if measured is not None else None
        if measured is None and site.mining_ramp_up_mw_per_min is not None:
            # Without a measurement, assume the site runs what it was last told to, else that
            # its miners are off: a restart is then ramp-limited (staggered), never a jump.
            if earlier is not None:
                mining_now = earlier.mining_mw
                notes.append(
                    f"mining ramp from the last decided {earlier.mining_mw:.1f} MW "
                    f"({earlier.interval_start.isoformat()}), no fresh telemetry"
                )
            else:
                mining_now = 0.0
                notes.append("mining ramp from 0 MW: no fresh telemetry or earlier decision")
        soc = measured.battery_soc_mwh if measured is not None else None
        # The sites file's rule for a battery (SiteConfig.spec): power and energy both set.
        if soc is None and site.battery_power_mw > 0 and site.battery_energy_mwh > 0:
            why = "not reported" if telemetry is not None and not stale else "no fresh telemetry"
            notes.append(f"battery charge unknown ({why}): assumed empty")
        return cls(site, measured, earlier, mining_now, soc or 0.0, notes)

    def reduction_baseline_mw(self, signal: GridSignalEvent) -> float:
        """The import a ``reduction_mw`` signal is measured from, noting any assumption."""
        measured, earlier = self.measured, self.earlier
        if measured is not None:
            if measured.meter_mw is not None:
                return measured.meter_mw
            return measured.mining_mw + measured.gpu_mw + measured.cooling_mw
        where = f"reduction baseline for signal {signal.signal_id}"
        if earlier is None:
            baseline = self.site.interconnect_mw
            self.notes.append(
                f"{where}: the interconnect {baseline:.1f} MW (no fresh telemetry or earlier plan)"
            )
            return baseline
        if earlier.interval_start < signal.interval_start:
            self.notes.append(f"{where}: last plan's import {earlier.grid_import_mw:.1f} MW")
            return earlier.grid_import_mw
        # The last plan was made during the signal and so already met the reduction: measuring
        # from its import would reduce again at every re-plan. Hold that import instead.
        self.notes.append(
            f"{where}: import held at the last plan's {earlier.grid_import_mw:.1f} MW"
        )
        return earlier.grid_import_mw + (signal.reduction_mw or 0.0)


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:.0f} min"


def _signal_curves(
    state: FleetState,
    site: SiteConfig,
    starts: tuple[datetime, ...],
    ends: tuple[datetime, ...],
    caps: np.ndarray,
    *,
    draw: SiteDraw,
) -> tuple[np.ndarray, np.ndarray]:
    """Per step: the tightest import cap (MW, +inf when none) and the expected peak charge.
    ``caps`` is +inf at every step, and is filled in place.

    A coincident-peak alert without a MW number carries its expected charge as
    ``incentive_usd_per_mwh``: it prices import during the alert instead of capping it, for the
    hours the alert and the step overlap (an hourly step holding a 15-minute alert pays a
    quarter of the hour's worth, not all of it).
    """
    peaks = np.zeros(len(starts))
    for signal in state.active_signals(site):
        baseline: float | None = None  # read once per signal, only if it reaches the horizon
        for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
            if signal.interval_end <= start or signal.interval_start >= end:
                continue
            if signal.limit_mw is not None:
                caps[k] = min(caps[k], signal.limit_mw)
            if signal.reduction_mw is not None:
                if baseline is None:
                    baseline = draw.reduction_baseline_mw(signal)
                caps[k] = min(caps[k], max(0.0, baseline - signal.reduction_mw))
            if signal.limit_mw is None and signal.reduction_mw is None:
                if signal.signal_type == "coincident_peak":
                    overlap = min(end, signal.interval_end) - max(start, signal.interval_start)
                    peaks[k] += signal.incentive_usd_per_mwh * overlap / timedelta(hours=1)
                else:
                    # An emergency with no number: keep only the contracted GPU floor running.
                    caps[k] = min(caps[k], site.pue * site.gpu_floor_mw)
    return caps, peaks


def _digest(site_id: str, now: datetime, snapshot: SiteSnapshot) -> str:
    # One SHA-256 over the parts joined (the same digest as feeding them one by one, fewer
    # calls: this was ~20 % of building a snapshot).
    parts = [f"{site_id}|{now.isoformat()}".encode()]
    for name in snapshot.__slots__:
        value = getattr(snapshot, name)
        if isinstance(value, np.ndarray):
            # tobytes() is C order whatever the layout; only another dtype needs converting.
            same = value.dtype == _FLOAT
            parts.append(value.tobytes() if same else np.asarray(value, dtype=float).tobytes())
        elif name == "reserves":
            # Arrays in full: their repr would round them, and a changed commitment or price
            # must change the version.
            for product in sorted(snapshot.reserves):
                reserve = snapshot.reserves[product]
                parts.append(product.encode())
                for curve in (reserve.price_usd_per_mw_h, reserve.max_mw, reserve.committed_mw):
                    parts.append(b"-" if curve is None else np.asarray(curve, float).tobytes())
                # Added later: only when given, so the versions of snapshots without it (every
                # hourly market's) stay what they were.
                if reserve.same_sale_as_previous is not None:
                    tied = np.asarray(reserve.same_sale_as_previous, float)
                    parts.append(b"same-sale" + tied.tobytes())
        else:
            parts.append(repr(value).encode())
    return hashlib.sha256(b"".join(parts)).hexdigest()[:16]
