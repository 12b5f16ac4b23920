"""Offline backtests: the live decision code walked through history, beside baselines and a
perfect-foresight oracle, all scored with the optimizer's own value functions.

Strategies:

- ``gridshift``: :class:`~streams.engine.decider.Decider` on a
  :class:`~streams.engine.state.FleetState` fed the same events a replay would publish.
  At decision time t it holds only what was available by t:
  an interval's price is available ``price_lag_intervals`` interval lengths after it starts
  (0: ex-ante real-time prices; 1: settled prices, known when the interval ends).
- ``always_on``: GPUs at demand (within the interconnect), mining fills the rest of it, always.
- ``threshold``: as always-on, but mining stops while the last known price is above the miners'
  break-even (what mining fleets do today).
- ``oracle``: the same engine round planning a day at a time with that day's actual prices and
  carbon known in advance (perfect foresight); the bound against which regret is measured.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import overload

import numpy as np
from pydantic import BaseModel

from optimizer import Horizon
from optimizer.value import (
    FloatArray,
    carbon_cost_usd_per_mwh,
    emissions_kg,
    energy_cost_usd,
    mining_revenue_usd_per_mwh,
)
from schemas import DispatchDecision, PriceEvent
from streams.backtest.coverage import Alignment, BoolArray, Known
from streams.backtest.events import history_intervals
from streams.backtest.history import GridHistory
from streams.backtest.notes import note_kind
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.state import FleetState

Progress = Callable[[int], object]
#: A round repeats the same few notes for every site (120 sites x 96 rounds a day): classify
#: each distinct note once. Small: notes carry times and numbers, so a note rarely recurs after
#: its round, and a long run must not keep thousands of them (what it keeps per interval is
#: tested).
_note_kind = functools.lru_cache(maxsize=256)(note_kind)


@dataclass
class Actuals:
    """What really happened, per site (rows) and backtest interval (columns), and which
    intervals are scored.

    ``price`` is observed or held within the hold rules; where it is missing it is carried
    forward only so that every strategy can run through the interval, which is then not scored
    (``scored`` is False for every strategy). ``carbon`` is NaN where unknown.
    """

    starts: list[datetime]
    hours: float
    price: FloatArray
    known_price: FloatArray  # the newest price known at decision time (NaN until the first)
    carbon: FloatArray
    hashprice: FloatArray
    mining_revenue: FloatArray  # $/MWh of mining IT energy
    breakeven: FloatArray  # node price above which mining loses money
    scored: BoolArray  # per interval
    warmup: int = 0  # leading intervals before every site's first price is known
    #: Intervals after a long gap, priced again but before a new price is known (not scored).
    relearning: int = 0
    #: Scored intervals left out because gridshift's mining was still coming back in the live
    #: fail-safe's staggered steps after a gap (the baselines restart at once): not a decision
    #: gridshift chose, so no strategy is scored there.
    restoring: int = 0
    #: Contracted PPA MW per site and interval (a shaped PPA, ``[ppa]``); None: each site's
    #: flat ``ppa_mw``.
    ppa: FloatArray | None = None


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What a backtest keeps of one decision: its identity and whether it was a fallback (the
    whole decision, with its horizon, is ~13 KB; a two-year run made 70,000 of them)."""

    site_id: str
    interval_start: datetime
    decision_id: str
    fallback: str


_FALLBACKS = ("none", "hold_last_plan", "fail_safe")


class DecisionLog(Sequence[DecisionRecord]):
    """The decisions of a run, kept in columns: 29 bytes per decision instead of ~200 as
    objects. A year of 120 sites at 15 minutes is 4.2 million decisions: ~120 MB here, ~850 MB
    as a list of records (and as much again while a chunk's list is sent back from a worker).
    Reads give :class:`DecisionRecord` values, built on demand."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._site = array("I")
        self._start = array("d")  # POSIX seconds (UTC)
        self._fallback = array("B")
        self._ids = bytearray()  # 16 bytes per decision (the id is 32 hex digits)

    def append(self, record: DecisionRecord) -> None:
        site = self._index.get(record.site_id)
        if site is None:
            site = self._index[record.site_id] = len(self._names)
            self._names.append(record.site_id)
        self._site.append(site)
        self._start.append(record.interval_start.timestamp())
        self._fallback.append(_FALLBACKS.index(record.fallback))
        self._ids += bytes.fromhex(record.decision_id)

    def extend(self, records: Iterable[DecisionRecord]) -> None:
        if not isinstance(records, DecisionLog):
            for record in records:
                self.append(record)
            return
        remap = []  # another log (a chunk's): its columns appended, site numbers translated
        for name in records._names:
            if name not in self._index:
                self._index[name] = len(self._names)
                self._names.append(name)
            remap.append(self._index[name])
        self._site.extend(remap[site] for site in records._site)
        self._start.extend(records._start)
        self._fallback.extend(records._fallback)
        self._ids += records._ids

    def __len__(self) -> int:
        return len(self._site)

    @overload
    def __getitem__(self, k: int) -> DecisionRecord: ...
    @overload
    def __getitem__(self, k: slice) -> list[DecisionRecord]: ...
    def __getitem__(self, k: int | slice) -> DecisionRecord | list[DecisionRecord]:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        return DecisionRecord(
            self._names[self._site[k]],
            datetime.fromtimestamp(self._start[k], UTC),
            self._ids[16 * k : 16 * (k + 1)].hex(),
            _FALLBACKS[self._fallback[k]],
        )


@dataclass
class Dispatch:
    """Set-points per site and interval (MW), and what the decisions behind them assumed."""

    mining: FloatArray
    gpu: FloatArray  # firm inference and batch work on the site's own GPUs
    grid_import: FloatArray
    routed: FloatArray  # flexible pool inference served at the site
    routed_revenue_usd: FloatArray  # what that routed work earned (pool value less latency)
    decisions: DecisionLog = field(default_factory=DecisionLog)
    #: Decisions per kind of note their plan carried (held prices, assumed battery charge...).
    notes: Counter[str] = field(default_factory=Counter)
    #: Reserve held ready to curtail, MW per product (sites x intervals), where sold.
    reserve: dict[str, FloatArray] = field(default_factory=dict)
    #: Intervals decided while a fail-safe was in force or mining was coming back from one.
    failsafe: BoolArray | None = None

    def hold_reserve(self, product: str, i: int, k: int | slice, mw: float | FloatArray) -> None:
        held = self.reserve.setdefault(product, np.zeros_like(self.mining))
        held[i, k] = mw

    @classmethod
    def empty(cls, n_sites: int, n_steps: int) -> Dispatch:
        def zeros() -> FloatArray:
            return np.zeros((n_sites, n_steps))

        return cls(zeros(), zeros(), zeros(), zeros(), zeros())

    def undecided_intervals(self, n_sites: int, n_steps: int) -> int:
        """Site-intervals that ran the fail-safe because nothing was known yet."""
        return n_sites * n_steps - len(self.decisions) if self.decisions else 0

    def record(self, decision: DispatchDecision) -> None:
        self.decisions.append(
            DecisionRecord(
                decision.site_id,
                decision.interval_start,
                decision.decision_id,
                decision.fallback,
            )
        )
        if decision.fallback != "none":
            self.notes[f"{decision.fallback}: {note_kind(decision.fallback_reason or '')}"] += 1
        for note in decision.notes:
            self.notes[_note_kind(note)] += 1


@dataclass
class Score:
    """Realised results of one strategy over the scored intervals, fleet totals."""

    energy_cost_usd: float
    mining_revenue_usd: float
    gpu_revenue_usd: float
    sla_shortfall_mwh: float
    mining_mwh: float
    gpu_mwh: float
    mwh_shed_in_spikes: float
    emissions_location_t: float  # NaN without carbon data
    emissions_market_t: float
    cfe_score: float
    margin_by_interval: FloatArray  # 0 where not scored
    #: The realised 4CP transmission charge on the import at the realised peaks (0 without a
    #: ``[coincident_peak]`` scenario section).
    peak_charge_usd: float = 0.0
    #: Reserve MW held x hours x the actual clearing price (0 without ``[reserves]``).
    reserve_revenue_usd: float = 0.0
    #: The fleet's grid import (MW) at each realised 4CP interval inside the window.
    demand_at_peaks_mw: list[float] = field(default_factory=list)
    #: Fleet mining-hours given up: (room - mining) x hours, MWh, scored intervals.
    mwh_curtailed: float = 0.0
    #: Hours in which the fleet mined less than its room (by more than 1 %).
    hours_curtailed: float = 0.0

    @property
    def energy_margin_usd(self) -> float:
        return self.mining_revenue_usd + self.gpu_revenue_usd - self.energy_cost_usd

    @property
    def net_margin_usd(self) -> float:
        return self.energy_margin_usd - self.peak_charge_usd + self.reserve_revenue_usd


def timeline(start: datetime, end: datetime, step_minutes: int) -> list[datetime]:
    step = timedelta(minutes=step_minutes)
    count = int((end - start) / step)
    return [start + k * step for k in range(count)]


def actuals(
    fleet: Fleet,
    starts: list[datetime],
    step_minutes: int,
    *,
    prices: dict[str, Alignment],
    carbon: dict[str, Alignment],
    hashprice: Alignment,
    known: dict[str, Known],
    fresh_for: timedelta,
) -> Actuals:
    """Every site's node price, region carbon and the hashprice on the backtest grid, from
    their alignments (:func:`streams.backtest.coverage.align`), and the scored intervals: those
    with every price and the hashprice observed or held, where every site's newest known price
    is at most ``fresh_for`` old (the watchdog's limit)."""
    sites = fleet.sites
    missing = hashprice.missing.copy()
    for node in {s.price_node for s in sites}:
        missing |= prices[node].missing
    price = np.vstack([_carried(prices[s.price_node].values) for s in sites])
    known_price = np.vstack([known[s.price_node].values for s in sites])
    # Where a site has no price yet, or none since a long gap, the strategies do not hold the
    # same information (gridshift fails safe, the baselines run regardless): not scored. At the
    # start that is the warm-up.
    grid = np.array([t.astimezone(UTC).replace(tzinfo=None) for t in starts], "datetime64[ns]")
    informed = np.ones(len(starts), dtype=bool)
    for node in {s.price_node for s in sites}:
        age = grid - known[node].since
        informed &= ~np.isnat(age) & (age <= np.timedelta64(fresh_for))
    warmup = int(np.argmax(informed)) if informed.any() else len(starts)
    scored = ~missing & informed
    relearning = int((~informed[warmup:] & ~missing[warmup:]).sum())
    carbon_values = np.vstack([carbon[s.carbon_region].values for s in sites])
    hp = _carried(hashprice.values)
    revenue = np.vstack(
        [
            np.asarray(mining_revenue_usd_per_mwh(hp, s.miner_efficiency_j_per_th), dtype=float)
            for s in sites
        ]
    )
    # Where carbon is unknown its price cannot be applied: the break-even then ignores it.
    carbon_cost = np.vstack(
        [
            carbon_cost_usd_per_mwh(np.nan_to_num(carbon_values[i]), s.carbon_price_usd_per_t)
            for i, s in enumerate(sites)
        ]
    )
    pue = np.array([[s.pue] for s in sites])
    return Actuals(
        starts,
        step_minutes / 60.0,
        price,
        known_price,
        carbon_values,
        hp,
        revenue,
        revenue / pue - carbon_cost,
        scored,
        warmup,
        relearning,
    )


def _carried(values: FloatArray) -> FloatArray:
    """NaNs replaced by the last value before them (the first value before any): only so the
    arithmetic runs; those intervals are not scored."""
    out = values.copy()
    valid = ~np.isnan(out)
    if not valid.any():
        return np.zeros_like(out)
    index = np.where(valid, np.arange(len(out)), 0)
    np.maximum.accumulate(index, out=index)
    out = out[index]
    out[: int(np.argmax(valid))] = out[int(np.argmax(valid))]
    return out


def _static_routing(fleet: Fleet, n: int, hours: float) -> tuple[FloatArray, FloatArray]:
    """How a naive operator serves pools: an even split over eligible sites with spare GPUs."""
    routed, revenue = _static_routing_per_site(fleet, hours)
    return np.repeat(routed[:, None], n, axis=1), np.repeat(revenue[:, None], n, axis=1)


def _envelope_mw(fleet: Fleet) -> FloatArray:
    """Each site's IT load the interconnect (and on-site supply) can carry, after PUE."""
    return np.array([(s.interconnect_mw + s.onsite_cfe_mw) / s.pue for s in fleet.sites])


def _baseline_gpu_mw(fleet: Fleet) -> FloatArray:
    """The baselines' own GPU load per site: firm demand, within the envelope (a baseline
    holds to the interconnect like every strategy; what does not fit shows as SLA shortfall
    against the floor)."""
    firm = np.array([s.firm_gpu_demand_mw for s in fleet.sites])
    gpu: FloatArray = np.minimum(firm, _envelope_mw(fleet))
    return gpu


def _static_routing_per_site(fleet: Fleet, hours: float) -> tuple[FloatArray, FloatArray]:
    """:func:`_static_routing`'s MW and revenue per site (the same in every interval)."""
    index = {s.site_id: i for i, s in enumerate(fleet.sites)}
    capacity = np.array([s.gpu_capacity_mw for s in fleet.sites])
    spare = np.minimum(capacity, _envelope_mw(fleet)) - _baseline_gpu_mw(fleet)
    routed = np.zeros(len(fleet.sites))
    revenue = np.zeros(len(fleet.sites))
    for pool in fleet.pools:
        eligible = pool.eligible(fleet.sites)
        share = pool.demand_mw / len(eligible)
        for site_id, penalty in eligible:
            i = index[site_id]
            served = max(0.0, min(share, spare[i] - routed[i]))
            routed[i] += served
            revenue[i] += served * hours * (pool.value_usd_per_mwh - penalty)
    return routed, revenue


def _baseline(fleet: Fleet, act: Actuals) -> tuple[Dispatch, FloatArray]:
    """GPUs at firm demand, pools split statically, and the mining room beside them."""
    n = len(act.starts)
    routed, revenue = _static_routing(fleet, n, act.hours)
    gpu = np.repeat(_baseline_gpu_mw(fleet)[:, None], n, axis=1)
    room = _room(fleet, act)
    dispatch = Dispatch(room, gpu, np.zeros_like(gpu), routed, revenue)
    return dispatch, room


def _room(fleet: Fleet, act: Actuals) -> FloatArray:
    """The baseline's mining room per site and interval: the envelope less firm GPUs and the
    static pool split, within the miners' capacity. Worked out per site (it does not change
    with time) from the same numbers, then repeated: element for element what subtracting the
    full arrays gave, without building them."""
    routed, _ = _static_routing_per_site(fleet, act.hours)
    gpu = _baseline_gpu_mw(fleet)[:, None]
    envelope = _envelope_mw(fleet)[:, None]
    capacity = np.array([[s.mining_capacity_mw] for s in fleet.sites])
    room: FloatArray = np.repeat(
        np.clip(envelope - gpu - routed[:, None], 0.0, capacity), len(act.starts), axis=1
    )
    return room


def _facility_import(fleet: Fleet, mining: FloatArray, gpu: FloatArray) -> FloatArray:
    pue = np.array([[s.pue] for s in fleet.sites])
    onsite = np.array([[s.onsite_cfe_mw] for s in fleet.sites])
    facility_import: FloatArray = np.maximum(0.0, pue * (mining + gpu) - onsite)
    return facility_import


def run_always_on(fleet: Fleet, act: Actuals) -> Dispatch:
    dispatch, _ = _baseline(fleet, act)
    dispatch.grid_import = _facility_import(fleet, dispatch.mining, dispatch.gpu + dispatch.routed)
    return dispatch


def run_threshold(
    fleet: Fleet, act: Actuals, lag: int, *, always_on: Dispatch | None = None
) -> Dispatch:
    """Mining off while the newest price known at decision time is above break-even (``lag``
    is already in ``act.known_price``; until a first price is known, mining runs).

    Given the ``always_on`` dispatch, its GPU and pool arrays (the rule runs them the same way)
    and its mining (the room) are reused instead of built again: the arrays are then shared,
    and nothing may write them in place."""
    del lag  # the same information as gridshift: act.known_price was built with the lag
    if always_on is None:
        dispatch, room = _baseline(fleet, act)
    else:
        room = always_on.mining
        dispatch = Dispatch(
            room,
            always_on.gpu,
            always_on.grid_import,
            always_on.routed,
            always_on.routed_revenue_usd,
        )
    with np.errstate(invalid="ignore"):
        above = act.known_price > act.breakeven
    dispatch.mining = np.where(above, 0.0, room)
    dispatch.grid_import = _facility_import(fleet, dispatch.mining, dispatch.gpu + dispatch.routed)
    return dispatch


def _feed(
    history: GridHistory, lag: int, extra: Sequence[tuple[datetime, BaseModel]] = ()
) -> Iterator[tuple[datetime, BaseModel]]:
    """The history's events merged with ``extra`` (events with the instant each is known,
    e.g. 4CP signals at their issue time, reserve prices at their publication), in time order."""
    if not extra:
        return _history_feed(history, lag)
    ordered = sorted(extra, key=lambda item: item[0])
    return heapq.merge(_history_feed(history, lag), ordered, key=lambda item: item[0])


def _history_feed(history: GridHistory, lag: int) -> Iterator[tuple[datetime, BaseModel]]:
    """The history's events with the instant each becomes known, in that order (stable).

    Streamed, not listed: an interval's events are known at its start, a price ``lag`` interval
    lengths later, so no event of a later interval can be known before an earlier interval's
    start; a small heap of pending prices is all that is held.
    """
    pending: list[tuple[datetime, int, BaseModel]] = []
    sequence = 0
    for batch in history_intervals(history):
        while pending and pending[0][0] <= batch.start:
            available, _, event = heapq.heappop(pending)
            yield available, event
        for _, event in batch.events:
            length = event.interval_end - event.interval_start  # type: ignore[attr-defined]
            # Settled real-time prices arrive ``lag`` intervals late; a day-ahead price is
            # known from its release (the batch it comes with).
            settled = isinstance(event, PriceEvent) and event.market == "real_time"
            available = batch.start + (length * lag if settled else timedelta(0))
            heapq.heappush(pending, (available, sequence, event))
            sequence += 1
    while pending:
        available, _, event = heapq.heappop(pending)
        yield available, event


def run_gridshift(
    fleet: Fleet,
    history: GridHistory,
    starts: list[datetime],
    horizon: Horizon,
    *,
    lag: int,
    carbon_budget_t_per_day: float | None = None,
    stale_price_after: timedelta | None = None,
    progress: Progress | None = None,
    extra: Sequence[tuple[datetime, BaseModel]] = (),
    decompose: bool = True,
    keep_from: int = 0,
) -> Dispatch:
    """The live decision code, fed history in event time with past data only.

    ``extra`` are further events with the instant each becomes known (4CP forecast signals,
    reserve prices): each reaches the state at that instant, never before.

    ``stale_price_after`` arms the live watchdog (a site whose price feed is silent that long
    gets the fail-safe, and its mining comes back in steps when the feed returns).

    ``decompose`` is the decider's (independent problems solved apart, identical ones once,
    unchanged ones reused; off: one joint solve per round, the earlier code path).
    ``keep_from`` is the first interval whose decisions are recorded (a chunk's warm-up before
    it is run, not recorded: :mod:`streams.backtest.chunks`).
    """
    state = FleetState(fleet)
    decider = Decider(
        horizon,
        pools=fleet.pools,
        carbon_budget_t_per_day=carbon_budget_t_per_day,
        stale_price_after=stale_price_after,
        decompose=decompose,
    )
    index = {s.site_id: i for i, s in enumerate(fleet.sites)}
    n, k_total = len(fleet.sites), len(starts)
    # Until a site can be planned (no price or hashprice known yet) it runs the fail-safe:
    # mining off, GPUs at their contracted floor (the warm-up, not scored).
    out = Dispatch.empty(n, k_total)
    out.gpu[:] = np.array([[s.gpu_floor_mw] for s in fleet.sites])
    out.grid_import[:] = _facility_import(fleet, out.mining, out.gpu)
    gpu_value = {s.site_id: s.gpu_value_usd_per_mwh for s in fleet.sites}
    feed = _feed(history, lag, extra)
    upcoming = next(feed, None)
    triggers = {s.site_id: "price" for s in fleet.sites}
    out.failsafe = np.zeros(k_total, dtype=bool)
    for k, now in enumerate(starts):
        while upcoming is not None and upcoming[0] <= now:
            state.apply(upcoming[1])  # type: ignore[arg-type]
            upcoming = next(feed, None)
        out.failsafe[k] = bool(decider.restoring)  # mining capped while coming back
        for decision in decider.decide(state, triggers, now=now):  # type: ignore[arg-type]
            out.failsafe[k] |= decision.fallback == "fail_safe"
            i = index[decision.site_id]
            out.mining[i, k] = decision.mining_mw
            out.gpu[i, k] = decision.gpu_mw + decision.batch_mw
            out.routed[i, k] = decision.routed_gpu_mw
            hours = (decision.interval_end - decision.interval_start) / timedelta(hours=1)
            out.routed_revenue_usd[i, k] = decision.economics.gpu_revenue_usd - (
                decision.gpu_mw * hours * gpu_value[decision.site_id]
            )
            out.grid_import[i, k] = decision.grid_import_mw
            for product, mw in decision.reserve_mw.items():
                out.hold_reserve(product, i, k, mw)
            if k >= keep_from:
                out.record(decision)
        if k % 96 == 0:
            state.prune(now)
        if progress is not None:
            progress(1)
    return out


def run_oracle(
    fleet: Fleet,
    history: GridHistory,
    starts: list[datetime],
    step_minutes: int,
    *,
    carbon_budget_t_per_day: float | None = None,
    progress: Progress | None = None,
    extra: Sequence[BaseModel] = (),
    decompose: bool = True,
) -> Dispatch:
    """Perfect foresight: each day planned at once, knowing that day's actual prices and carbon.

    ``extra`` events (realised 4CP peaks, actual reserve prices) are known with their day, like
    the prices; reserve is sold with no commitment lead (the day's prices are known anyway).

    The plan comes from the same engine round as live decisions (snapshots built from a fleet
    state, then the fleet model): only the state differs, holding the whole day in advance.
    Every model feature (batteries, peak charges, pools, carbon budget) therefore reaches the
    oracle exactly as it reaches the live strategy.
    """
    sites = fleet.sites
    n, k_total = len(sites), len(starts)
    out = Dispatch.empty(n, k_total)
    # One state fed in event order: each day's window adds that day (its future included) on top
    # of what came before, so a day without data holds the last values, as the live state would.
    # By interval start, not by release: day-ahead prices and PPA forecasts come in the batch
    # of their release, a day early, and a merge that trusted the batch order would stop at the
    # first of them and leave the rest of the day's real-time prices unread.
    events = iter(
        sorted(
            itertools.chain(
                (event for batch in history_intervals(history) for _, event in batch.events),
                extra,
            ),
            key=lambda e: e.interval_start,  # type: ignore[attr-defined]
        )
    )
    upcoming = next(events, None)
    state = FleetState(fleet)
    window = max(1, (24 * 60) // step_minutes)
    deciders: dict[int, Decider] = {}
    for first in range(0, k_total, window):
        last = min(k_total, first + window)
        length = last - first
        decider = deciders.get(length) or deciders.setdefault(
            length,
            Decider(
                Horizon((step_minutes,) * length),
                pools=fleet.pools,
                carbon_budget_t_per_day=carbon_budget_t_per_day,
                reserve_commit_lead=timedelta(0),
                decompose=decompose,
            ),
        )
        begin, end = starts[first], starts[first] + timedelta(minutes=step_minutes * length)
        while upcoming is not None and upcoming.interval_start < end:  # type: ignore[attr-defined]
            state.apply(upcoming)  # type: ignore[arg-type]
            upcoming = next(events, None)
        state.prune(begin)
        planned = decider.plan_ahead(state, begin)
        if progress is not None:
            progress(length)
        if planned is None:
            continue  # nothing is known of any site's market yet: the oracle idles too
        rnd, plan = planned
        for i, s in enumerate(sites):
            site_plan = plan.sites.get(s.site_id)
            if site_plan is None:
                continue  # nothing known of this site's market that day
            gpu_value = rnd.views[s.site_id].snapshot.gpu_value_usd_per_mwh
            step_hours = rnd.views[s.site_id].snapshot.step_hours
            out.mining[i, first:last] = site_plan.mining_mw
            out.gpu[i, first:last] = site_plan.gpu_mw + site_plan.batch_mw
            out.routed[i, first:last] = site_plan.routed_gpu_mw
            out.routed_revenue_usd[i, first:last] = site_plan.gpu_revenue_usd - (
                site_plan.gpu_mw * step_hours * gpu_value
            )
            out.grid_import[i, first:last] = site_plan.grid_import_mw
            for product, mw in site_plan.reserve_mw.items():
                out.hold_reserve(product, i, slice(first, last), mw)
    return out


def score(fleet: Fleet, act: Actuals, dispatch: Dispatch) -> Score:
    """Realised money and emissions of a dispatch at actual prices (optimizer value terms),
    over the scored intervals only; emissions over those with a known carbon intensity.

    Each sites x intervals term is summed and dropped before the next is built (a year of 120
    sites is 34 MB per array): the parent holds a few of them at a time, not a dozen. Every
    sum is taken over the same full array as before, so the totals are bit-identical."""
    sites = fleet.sites
    hours = np.where(act.scored, act.hours, 0.0)
    gpu_value = np.array([[s.gpu_value_usd_per_mwh] for s in sites])
    floor = np.array([[s.gpu_floor_mw] for s in sites])
    ppa = act.ppa if act.ppa is not None else np.array([[s.ppa_mw] for s in sites])
    pue = np.array([[s.pue] for s in sites])
    imp = dispatch.grid_import
    energy = energy_cost_usd(imp, hours, act.price)
    energy_cost = float(energy.sum())
    mining_revenue = dispatch.mining * hours * act.mining_revenue
    mining_total = float(mining_revenue.sum())
    margin = mining_revenue
    del mining_revenue
    gpu_revenue = dispatch.gpu * hours * gpu_value + dispatch.routed_revenue_usd * act.scored
    gpu_total = float(gpu_revenue.sum())
    margin = (margin + gpu_revenue - energy).sum(axis=0)
    del energy, gpu_revenue
    facility = pue * (dispatch.mining + dispatch.gpu + dispatch.routed)
    facility_mwh = float((facility * hours).sum())
    del facility
    room = _room(fleet, act)
    spikes = act.price > act.breakeven
    short = np.maximum(0.0, room - dispatch.mining) * hours
    shed_in_spikes = float(short[spikes].sum())
    mwh_curtailed = float(short.sum())
    del short, spikes
    curtailed = act.scored & (dispatch.mining.sum(axis=0) < 0.99 * room.sum(axis=0))
    del room
    with_carbon = ~np.isnan(act.carbon) & act.scored
    no_carbon = not with_carbon.any()
    carbon = np.nan_to_num(act.carbon)
    location_kg = float((emissions_kg(imp, hours, carbon) * with_carbon).sum())
    unmatched = np.maximum(0.0, imp - ppa)
    market_kg = float((emissions_kg(unmatched, hours, carbon) * with_carbon).sum())
    del carbon, with_carbon
    unmatched_mwh = float((unmatched * hours).sum())
    del unmatched
    return Score(
        energy_cost_usd=energy_cost,
        mining_revenue_usd=mining_total,
        gpu_revenue_usd=gpu_total,
        sla_shortfall_mwh=float((np.maximum(0.0, floor - dispatch.gpu) * hours).sum()),
        mining_mwh=float((dispatch.mining * hours).sum()),
        gpu_mwh=float(((dispatch.gpu + dispatch.routed) * hours).sum()),
        mwh_shed_in_spikes=shed_in_spikes,
        emissions_location_t=np.nan if no_carbon else location_kg / 1000.0,
        emissions_market_t=np.nan if no_carbon else market_kg / 1000.0,
        cfe_score=1.0 - unmatched_mwh / facility_mwh if facility_mwh > 0 else 1.0,
        margin_by_interval=margin,
        mwh_curtailed=mwh_curtailed,
        hours_curtailed=float((act.hours * curtailed).sum()),
    )
