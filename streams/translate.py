"""Translation between the wire and the core: state -> optimizer snapshot, plan -> decision.

Only past data is used: a snapshot at ``now`` reads curve points that start at or before each
step, and says in ``notes`` which values were held or assumed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from optimizer import Plan, SiteSnapshot
from schemas import DispatchDecision, Economics, PlanStep, SolverReport, Trigger
from streams.sites import SiteConfig
from streams.state import FleetState


@dataclass(frozen=True, slots=True)
class SnapshotView:
    """A snapshot with the event times of its steps and a digest of everything in it."""

    site: SiteConfig
    now: datetime
    step_starts: tuple[datetime, ...]
    step: timedelta
    snapshot: SiteSnapshot
    notes: tuple[str, ...]
    input_version: str


def build_snapshot(
    state: FleetState, site: SiteConfig, n_steps: int, step: timedelta
) -> SnapshotView | None:
    """The site's snapshot at its event-time clock, or None until price and hashprice are known."""
    now = state.clock(site)
    price_curve = state.prices.get(site.price_node)
    if now is None or price_curve is None:
        return None
    starts = tuple(now + k * step for k in range(n_steps))
    prices = [price_curve.at(t) for t in starts]
    hashprices = [state.hashprice.at(t) for t in starts]
    if prices[0] is None or hashprices[0] is None:
        return None
    notes: list[str] = []
    held = sum(1 for p in prices if p is None or p.held)
    if held:
        notes.append(f"price: {held} of {n_steps} steps held at the last known value")
    carbon_curve = state.carbon.get(site.carbon_region)
    carbon_values = [carbon_curve.at(t) if carbon_curve else None for t in starts]
    if carbon_values[0] is None:
        notes.append(f"carbon intensity unknown for {site.carbon_region}: emissions assumed 0")

    demand = state.demand.get(site.site_id)
    gpu_demand = demand.demand_mw if demand else site.gpu_capacity_mw
    gpu_floor = demand.contracted_floor_mw if demand else site.gpu_floor_mw
    gpu_value = demand.value_usd_per_mwh if demand else site.gpu_value_usd_per_mwh
    telemetry = state.telemetry.get(site.site_id)
    mining_available = telemetry.mining_available_mw if telemetry else site.mining_capacity_mw

    ones = np.ones(n_steps)
    snapshot = SiteSnapshot(
        step_hours=ones * (step.total_seconds() / 3600.0),
        price_usd_per_mwh=_fill([p.value if p else None for p in prices]),
        carbon_g_per_kwh=_fill([c.value if c else None for c in carbon_values], default=0.0),
        hashprice_usd_per_th_day=_fill([h.value if h else None for h in hashprices]),
        gpu_value_usd_per_mwh=ones * gpu_value,
        gpu_demand_mw=ones * gpu_demand,
        gpu_floor_mw=ones * gpu_floor,
        mining_available_mw=ones * mining_available,
        signal_cap_mw=np.array([_signal_cap(state, site, t, t + step) for t in starts]),
        carbon_price_usd_per_t=site.carbon_price_usd_per_t,
    )
    return SnapshotView(
        site=site,
        now=now,
        step_starts=starts,
        step=step,
        snapshot=snapshot,
        notes=tuple(notes),
        input_version=_digest(site.site_id, now, snapshot),
    )


def _fill(values: list[float | None], default: float | None = None) -> np.ndarray:
    """Forward-fill missing values (hold last); leading gaps take ``default`` or the first value."""
    known = [v for v in values if v is not None]
    last = default if default is not None else (known[0] if known else 0.0)
    out = []
    for value in values:
        last = value if value is not None else last
        out.append(last)
    return np.asarray(out, dtype=float)


def _signal_cap(state: FleetState, site: SiteConfig, start: datetime, end: datetime) -> float:
    """The tightest grid-import cap (MW) asserted over [start, end), +inf when none."""
    cap = float("inf")
    for signal in state.active_signals(site):
        if signal.interval_end <= start or signal.interval_start >= end:
            continue
        if signal.limit_mw is not None:
            cap = min(cap, signal.limit_mw)
        if signal.reduction_mw is not None:
            cap = min(cap, max(0.0, _baseline_import_mw(state, site) - signal.reduction_mw))
        if signal.limit_mw is None and signal.reduction_mw is None:
            # An emergency with no number: keep only the contracted GPU floor running.
            cap = min(cap, site.pue * site.gpu_floor_mw)
    return cap


def _baseline_import_mw(state: FleetState, site: SiteConfig) -> float:
    telemetry = state.telemetry.get(site.site_id)
    if telemetry is None:
        return site.interconnect_mw
    if telemetry.meter_mw is not None:
        return telemetry.meter_mw
    return telemetry.mining_mw + telemetry.gpu_mw + telemetry.cooling_mw


def _digest(site_id: str, now: datetime, snapshot: SiteSnapshot) -> str:
    digest = hashlib.sha256(f"{site_id}|{now.isoformat()}".encode())
    for name in snapshot.__slots__:
        digest.update(np.ascontiguousarray(getattr(snapshot, name), dtype=float).tobytes())
    return digest.hexdigest()[:16]


def decision_id(site_id: str, interval_start: datetime, input_version: str) -> str:
    """Deterministic id: the same site, interval and inputs always give the same id."""
    key = f"{site_id}|{interval_start.isoformat()}|{input_version}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def to_decision(view: SnapshotView, plan: Plan, trigger: Trigger) -> DispatchDecision:
    """The wire form of a plan."""
    snap = view.snapshot
    steps = tuple(
        PlanStep(
            interval_start=start,
            interval_end=start + view.step,
            mining_mw=float(plan.mining_mw[k]),
            gpu_mw=float(plan.gpu_mw[k]),
            grid_import_mw=float(plan.grid_import_mw[k]),
            price_usd_per_mwh=float(snap.price_usd_per_mwh[k]),
            carbon_intensity_g_per_kwh=float(snap.carbon_g_per_kwh[k]),
        )
        for k, start in enumerate(view.step_starts)
    )
    return DispatchDecision(
        interval_start=view.now,
        interval_end=view.now + view.step,
        decision_id=decision_id(view.site.site_id, view.now, view.input_version),
        site_id=view.site.site_id,
        trigger=trigger,
        input_version=view.input_version,
        mining_mw=float(plan.mining_mw[0]),
        gpu_mw=float(plan.gpu_mw[0]),
        grid_import_mw=float(plan.grid_import_mw[0]),
        mining_breakeven_usd_per_mwh=float(plan.mining_breakeven_usd_per_mwh[0]),
        shadow_price_interconnect_usd_per_mwh=float(plan.shadow_price_interconnect_usd_per_mwh[0]),
        gpu_shortfall_mw=float(plan.gpu_shortfall_mw[0]),
        signal_excess_mw=float(plan.signal_excess_mw[0]),
        binding_constraints=plan.binding_first_step,
        notes=view.notes,
        economics=Economics(
            energy_cost_usd=float(plan.energy_cost_usd[0]),
            mining_revenue_usd=float(plan.mining_revenue_usd[0]),
            gpu_revenue_usd=float(plan.gpu_revenue_usd[0]),
            net_margin_usd=float(plan.net_margin_usd[0]),
            emissions_kg_co2=float(plan.emissions_kg[0]),
        ),
        solver=SolverReport(
            status="optimal" if plan.status == "optimal" else "optimal_inaccurate",
            solver=plan.solver,
            solve_time_ms=plan.solve_time_s * 1000.0,
            wall_time_ms=plan.wall_time_s * 1000.0,
        ),
        horizon=steps,
    )
