"""Offline backtests: the live decision code walked through history, beside baselines and a
perfect-foresight oracle, all scored with the optimizer's own value functions.

Strategies:

- ``gridshift``: :class:`~streams.engine.decider.Decider` on a
  :class:`~streams.engine.state.FleetState` fed the same events a replay would publish.
  At decision time t it holds only what was available by t:
  an interval's price is available ``price_lag_intervals`` interval lengths after it starts
  (0: ex-ante real-time prices; 1: settled prices, known when the interval ends).
- ``always_on``: GPUs at demand, mining fills the rest of the interconnect, always.
- ``threshold``: as always-on, but mining stops while the last known price is above the miners'
  break-even (what mining fleets do today).
- ``oracle``: the same engine round planning a day at a time with that day's actual prices and
  carbon known in advance (perfect foresight); the bound against which regret is measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from optimizer import Horizon
from optimizer.value import (
    FloatArray,
    carbon_cost_usd_per_mwh,
    emissions_kg,
    energy_cost_usd,
    mining_revenue_usd_per_mwh,
)
from schemas import DispatchDecision
from streams.backtest.events import history_intervals
from streams.backtest.history import GridHistory
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.state import FleetState

Progress = Callable[[int], object]


@dataclass
class Actuals:
    """What really happened, per site (rows) and backtest interval (columns)."""

    starts: list[datetime]
    hours: float
    price: FloatArray
    carbon: FloatArray
    hashprice: FloatArray
    mining_revenue: FloatArray  # $/MWh of mining IT energy
    breakeven: FloatArray  # node price above which mining loses money


@dataclass
class Dispatch:
    """Set-points per site and interval (MW)."""

    mining: FloatArray
    gpu: FloatArray  # firm inference and batch work on the site's own GPUs
    grid_import: FloatArray
    routed: FloatArray  # flexible pool inference served at the site
    routed_revenue_usd: FloatArray  # what that routed work earned (pool value less latency)
    decisions: list[DispatchDecision] = field(default_factory=list)

    @classmethod
    def empty(cls, n_sites: int, n_steps: int) -> Dispatch:
        def zeros() -> FloatArray:
            return np.zeros((n_sites, n_steps))

        return cls(zeros(), zeros(), zeros(), zeros(), zeros())

    def undecided_intervals(self, n_sites: int, n_steps: int) -> int:
        """Site-intervals that ran the fail-safe because nothing was known yet."""
        return n_sites * n_steps - len(self.decisions) if self.decisions else 0


@dataclass
class Score:
    """Realised results of one strategy over the period, fleet totals."""

    energy_cost_usd: float
    mining_revenue_usd: float
    gpu_revenue_usd: float
    sla_shortfall_mwh: float
    mining_mwh: float
    gpu_mwh: float
    mwh_shed_in_spikes: float
    emissions_location_t: float
    emissions_market_t: float
    cfe_score: float
    margin_by_interval: FloatArray

    @property
    def net_margin_usd(self) -> float:
        return self.mining_revenue_usd + self.gpu_revenue_usd - self.energy_cost_usd


def timeline(start: datetime, end: datetime, step_minutes: int) -> list[datetime]:
    step = timedelta(minutes=step_minutes)
    count = int((end - start) / step)
    return [start + k * step for k in range(count)]


def actuals(
    history: GridHistory, fleet: Fleet, starts: list[datetime], step_minutes: int
) -> Actuals:
    """Align every site's node price, region carbon and the hashprice to the backtest grid."""
    grid = pd.DataFrame({"at": pd.DatetimeIndex(starts).tz_convert("UTC").as_unit("ns")})
    frame = history.frame

    def aligned(key: str, value: str, name: str) -> FloatArray:
        rows = frame[frame[key] == name][["interval_start_utc", value]].dropna()
        rows["interval_start_utc"] = (
            rows["interval_start_utc"].dt.tz_convert("UTC").dt.as_unit("ns")
        )
        if rows.empty:
            return np.full(len(starts), np.nan)
        joined = pd.merge_asof(
            grid,
            rows.sort_values("interval_start_utc"),
            left_on="at",
            right_on="interval_start_utc",
            direction="backward",
        )
        values: FloatArray = joined[value].to_numpy(dtype=float)
        return values

    sites = fleet.sites
    price = np.vstack([aligned("node", "price_usd_per_mwh", s.price_node) for s in sites])
    carbon = np.vstack(
        [
            np.nan_to_num(aligned("region", "carbon_g_per_kwh", s.carbon_region), nan=0.0)
            if "carbon_g_per_kwh" in frame.columns
            else np.zeros(len(starts))
            for s in sites
        ]
    )
    hashprice = aligned("node", "hashprice_usd_per_th_day", sites[0].price_node)
    revenue = np.vstack(
        [
            np.asarray(
                mining_revenue_usd_per_mwh(hashprice, s.miner_efficiency_j_per_th), dtype=float
            )
            for s in sites
        ]
    )
    carbon_cost = np.vstack(
        [carbon_cost_usd_per_mwh(carbon[i], s.carbon_price_usd_per_t) for i, s in enumerate(sites)]
    )
    pue = np.array([[s.pue] for s in sites])
    return Actuals(
        starts, step_minutes / 60.0, price, carbon, hashprice, revenue, revenue / pue - carbon_cost
    )


def _static_routing(fleet: Fleet, n: int, hours: float) -> tuple[FloatArray, FloatArray]:
    """How a naive operator serves pools: an even split over eligible sites with spare GPUs."""
    index = {s.site_id: i for i, s in enumerate(fleet.sites)}
    spare = np.array([s.gpu_capacity_mw - s.firm_gpu_demand_mw for s in fleet.sites])
    routed = np.zeros(len(fleet.sites))
    revenue = np.zeros(len(fleet.sites))
    for pool in fleet.pools:
        eligible = pool.eligible(fleet.sites)
        share = pool.demand_mw / len(eligible)
        for site_id, penalty in eligible:
            i = index[site_id]
            served = min(share, spare[i] - routed[i])
            routed[i] += served
            revenue[i] += served * hours * (pool.value_usd_per_mwh - penalty)
    return np.repeat(routed[:, None], n, axis=1), np.repeat(revenue[:, None], n, axis=1)


def _baseline(fleet: Fleet, act: Actuals) -> tuple[Dispatch, FloatArray]:
    """GPUs at firm demand, pools split statically, and the mining room beside them."""
    n = len(act.starts)
    routed, revenue = _static_routing(fleet, n, act.hours)
    gpu = np.array([[s.firm_gpu_demand_mw] * n for s in fleet.sites])
    envelope = np.array([[(s.interconnect_mw + s.onsite_cfe_mw) / s.pue] for s in fleet.sites])
    capacity = np.array([[s.mining_capacity_mw] for s in fleet.sites])
    room = np.clip(envelope - gpu - routed, 0.0, capacity)
    dispatch = Dispatch(room, gpu, np.zeros_like(gpu), routed, revenue)
    return dispatch, room


def _facility_import(fleet: Fleet, mining: FloatArray, gpu: FloatArray) -> FloatArray:
    pue = np.array([[s.pue] for s in fleet.sites])
    onsite = np.array([[s.onsite_cfe_mw] for s in fleet.sites])
    facility_import: FloatArray = np.maximum(0.0, pue * (mining + gpu) - onsite)
    return facility_import


def run_always_on(fleet: Fleet, act: Actuals) -> Dispatch:
    dispatch, _ = _baseline(fleet, act)
    dispatch.grid_import = _facility_import(fleet, dispatch.mining, dispatch.gpu + dispatch.routed)
    return dispatch


def run_threshold(fleet: Fleet, act: Actuals, lag: int) -> Dispatch:
    dispatch, room = _baseline(fleet, act)
    known = np.roll(act.price, lag, axis=1)
    if lag:
        known[:, :lag] = act.price[:, :1]  # nothing earlier is known: assume the first price
    dispatch.mining = np.where(known > act.breakeven, 0.0, room)
    dispatch.grid_import = _facility_import(fleet, dispatch.mining, dispatch.gpu + dispatch.routed)
    return dispatch


def run_gridshift(
    fleet: Fleet,
    history: GridHistory,
    starts: list[datetime],
    horizon: Horizon,
    *,
    lag: int,
    carbon_budget_t_per_day: float | None = None,
    progress: Progress | None = None,
) -> Dispatch:
    """The live decision code, fed history in event time with past data only."""
    state = FleetState(fleet)
    decider = Decider(horizon, pools=fleet.pools, carbon_budget_t_per_day=carbon_budget_t_per_day)
    index = {s.site_id: i for i, s in enumerate(fleet.sites)}
    n, k_total = len(fleet.sites), len(starts)
    # Until a site can be planned (no price or hashprice known yet) it runs the fail-safe:
    # mining off, GPUs at their contracted floor.
    out = Dispatch.empty(n, k_total)
    out.gpu[:] = np.array([[s.gpu_floor_mw] for s in fleet.sites])
    out.grid_import[:] = _facility_import(fleet, out.mining, out.gpu)
    gpu_value = {s.site_id: s.gpu_value_usd_per_mwh for s in fleet.sites}
    feed = []
    for batch in history_intervals(history):
        for _, event in batch.events:
            length = event.interval_end - event.interval_start  # type: ignore[attr-defined]
            price_like = event.kind == "price"  # type: ignore[attr-defined]
            available = batch.start + (length * lag if price_like else timedelta(0))
            feed.append((available, event))
    feed.sort(key=lambda item: item[0])
    pointer = 0
    triggers = {s.site_id: "price" for s in fleet.sites}
    for k, now in enumerate(starts):
        while pointer < len(feed) and feed[pointer][0] <= now:
            state.apply(feed[pointer][1])  # type: ignore[arg-type]
            pointer += 1
        for decision in decider.decide(state, triggers, now=now):  # type: ignore[arg-type]
            i = index[decision.site_id]
            out.mining[i, k] = decision.mining_mw
            out.gpu[i, k] = decision.gpu_mw + decision.batch_mw
            out.routed[i, k] = decision.routed_gpu_mw
            hours = (decision.interval_end - decision.interval_start) / timedelta(hours=1)
            out.routed_revenue_usd[i, k] = decision.economics.gpu_revenue_usd - (
                decision.gpu_mw * hours * gpu_value[decision.site_id]
            )
            out.grid_import[i, k] = decision.grid_import_mw
            out.decisions.append(decision)
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
) -> Dispatch:
    """Perfect foresight: each day planned at once, knowing that day's actual prices and carbon.

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
    events = [event for batch in history_intervals(history) for _, event in batch.events]
    state = FleetState(fleet)
    pointer = 0
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
            ),
        )
        begin, end = starts[first], starts[first] + timedelta(minutes=step_minutes * length)
        while pointer < len(events) and events[pointer].interval_start < end:  # type: ignore[attr-defined]
            state.apply(events[pointer])  # type: ignore[arg-type]
            pointer += 1
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
    return out


def score(fleet: Fleet, act: Actuals, dispatch: Dispatch) -> Score:
    """Realised money and emissions of a dispatch at actual prices (optimizer value terms)."""
    sites = fleet.sites
    hours = np.full(len(act.starts), act.hours)
    gpu_value = np.array([[s.gpu_value_usd_per_mwh] for s in sites])
    floor = np.array([[s.gpu_floor_mw] for s in sites])
    ppa = np.array([[s.ppa_mw] for s in sites])
    pue = np.array([[s.pue] for s in sites])
    imp = dispatch.grid_import
    energy = energy_cost_usd(imp, hours, act.price)
    mining_revenue = dispatch.mining * hours * act.mining_revenue
    gpu_revenue = dispatch.gpu * hours * gpu_value + dispatch.routed_revenue_usd
    unmatched = np.maximum(0.0, imp - ppa)
    facility = pue * (dispatch.mining + dispatch.gpu + dispatch.routed)
    _, room = _baseline(fleet, act)
    spikes = act.price > act.breakeven
    margin = (mining_revenue + gpu_revenue - energy).sum(axis=0)
    facility_mwh = float((facility * hours).sum())
    return Score(
        energy_cost_usd=float(energy.sum()),
        mining_revenue_usd=float(mining_revenue.sum()),
        gpu_revenue_usd=float(gpu_revenue.sum()),
        sla_shortfall_mwh=float((np.maximum(0.0, floor - dispatch.gpu) * hours).sum()),
        mining_mwh=float((dispatch.mining * hours).sum()),
        gpu_mwh=float(((dispatch.gpu + dispatch.routed) * hours).sum()),
        mwh_shed_in_spikes=float((np.maximum(0.0, room - dispatch.mining) * hours)[spikes].sum()),
        emissions_location_t=float(emissions_kg(imp, hours, act.carbon).sum()) / 1000.0,
        emissions_market_t=float(emissions_kg(unmatched, hours, act.carbon).sum()) / 1000.0,
        cfe_score=(
            1.0 - float((unmatched * hours).sum()) / facility_mwh if facility_mwh > 0 else 1.0
        ),
        margin_by_interval=margin,
    )
