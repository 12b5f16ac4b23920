"""Plan -> decision: the wire form of a site's plan and its deterministic id."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np

from optimizer import FleetPlan, Plan
from schemas import DispatchDecision, Economics, SolverReport, Trigger
from streams.engine.snapshots import SnapshotView

_HOUR = timedelta(hours=1)


def decision_id(site_id: str, interval_start: datetime, input_version: str) -> str:
    """Deterministic id: the same site, interval and inputs always give the same id."""
    key = f"{site_id}|{interval_start.isoformat()}|{input_version}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def to_decision(
    view: SnapshotView,
    plan: Plan,
    trigger: Trigger,
    fleet: FleetPlan | None = None,
    *,
    sold: Sequence[tuple[datetime, Mapping[str, float]]] = (),
) -> DispatchDecision:
    """The wire form of a site's plan (and the fleet-level results it was solved with).
    ``sold`` is the reserve sold for the hours of the horizon (hour start, MW by product)."""
    snap = view.snapshot
    # Plain floats once per array (indexing numpy element by element is the slow way), and the
    # steps validated as part of the decision in one pass instead of one model call per step.
    mining = plan.mining_mw.tolist()
    gpu = (plan.gpu_mw + plan.routed_gpu_mw + plan.batch_mw).tolist()
    grid = plan.grid_import_mw.tolist()
    price = snap.price_usd_per_mwh.tolist()
    carbon = snap.carbon_g_per_kwh.tolist()
    reserve = plan.reserve_total_mw.tolist()
    steps = [
        {
            "interval_start": start,
            "interval_end": end,
            "mining_mw": mining[k],
            "gpu_mw": gpu[k],
            "grid_import_mw": grid[k],
            "price_usd_per_mwh": price[k],
            "carbon_intensity_g_per_kwh": carbon[k],
            "reserve_mw": reserve[k],
        }
        for k, (start, end) in enumerate(zip(view.step_starts, view.step_ends, strict=True))
    ]
    return DispatchDecision(
        interval_start=view.now,
        interval_end=view.step_ends[0],
        decision_id=decision_id(view.site.site_id, view.now, view.input_version),
        site_id=view.site.site_id,
        trigger=trigger,
        input_version=view.input_version,
        mining_mw=float(plan.mining_mw[0]),
        gpu_mw=float(plan.gpu_mw[0]),
        grid_import_mw=float(plan.grid_import_mw[0]),
        routed_gpu_mw=float(plan.routed_gpu_mw[0]),
        batch_mw=float(plan.batch_mw[0]),
        battery_charge_mw=float(plan.battery_charge_mw[0]),
        battery_discharge_mw=float(plan.battery_discharge_mw[0]),
        onsite_cfe_mw=float(plan.onsite_cfe_used_mw[0]),
        reserve_mw={p: float(mw[0]) for p, mw in plan.reserve_mw.items()},
        reserve_commitments=[
            {"interval_start": hour, "interval_end": hour + _HOUR, "reserve_mw": dict(mw)}
            for hour, mw in sold
        ],
        mining_breakeven_usd_per_mwh=float(plan.mining_breakeven_usd_per_mwh[0]),
        shadow_price_interconnect_usd_per_mwh=float(plan.shadow_price_interconnect_usd_per_mwh[0]),
        shadow_price_carbon_usd_per_t=fleet.shadow_price_carbon_usd_per_t if fleet else 0.0,
        gpu_shortfall_mw=float(plan.gpu_shortfall_mw[0]),
        signal_excess_mw=float(plan.signal_excess_mw[0]),
        slacks_used=plan.slacks_used,
        binding_constraints=plan.binding_first_step,
        notes=view.notes,
        economics=Economics(
            energy_cost_usd=float(plan.energy_cost_usd[0]),
            peak_cost_usd=float(plan.peak_cost_usd[0]),
            mining_revenue_usd=float(plan.mining_revenue_usd[0]),
            gpu_revenue_usd=float(plan.gpu_revenue_usd[0]),
            reserve_revenue_usd=float(plan.reserve_revenue_usd[0]),
            net_margin_usd=float(plan.net_margin_usd[0]),
            emissions_kg_co2=float(plan.emissions_kg[0]),
            emissions_market_kg_co2=float(plan.emissions_market_kg[0]),
            horizon_net_margin_usd=float(np.sum(plan.net_margin_usd)),
            cfe_score=min(1.0, max(0.0, plan.cfe_score)),
        ),
        solver=SolverReport(
            status="optimal" if plan.status == "optimal" else "optimal_inaccurate",
            solver=plan.solver,
            solve_time_ms=plan.solve_time_s * 1000.0,
            wall_time_ms=plan.wall_time_s * 1000.0,
        ),
        horizon=steps,  # validated into PlanStep models here
    )
