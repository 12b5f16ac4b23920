"""Decisions when there is no optimal plan: a site never goes without a decision.

- ``hold_last_plan``: the solver failed, and the site's last plan still has a step covering the
  interval: that step's set-points are republished, flagged.
- ``fail_safe``: no usable plan (solver failed with nothing to hold, or the site's price feed is
  stale): mining shed to a safe level, GPUs kept at their contracted floor, flagged.

Ids stay deterministic (site + interval + a digest of the reason and basis), so redelivery
duplicates are still dropped by id.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Literal

from schemas import DispatchDecision, Economics, PlanStep, SolverReport, Trigger
from streams.engine.decisions import decision_id
from streams.engine.fleet import SiteConfig

#: Said on every fallback decision: its economics (money and emissions) are zeros, not an
#: estimate.
FALLBACK_ECONOMICS_NOTE = "economics not estimated (fallback): money and emissions reported as 0"


def _flagged(
    site_id: str,
    step: PlanStep,
    *,
    trigger: Trigger,
    kind: Literal["hold_last_plan", "fail_safe"],
    reason: str,
    basis: str,
    breakeven: float = 0.0,
) -> DispatchDecision:
    """A single-step decision from ``step``, flagged as a fallback of ``kind``."""
    version = hashlib.sha256(
        f"{kind}|{site_id}|{step.interval_start.isoformat()}|{basis}".encode()
    ).hexdigest()[:16]
    return DispatchDecision(
        interval_start=step.interval_start,
        interval_end=step.interval_end,
        decision_id=decision_id(site_id, step.interval_start, version),
        site_id=site_id,
        trigger=trigger,
        input_version=version,
        mining_mw=step.mining_mw,
        gpu_mw=step.gpu_mw,
        grid_import_mw=step.grid_import_mw,
        mining_breakeven_usd_per_mwh=breakeven,
        shadow_price_interconnect_usd_per_mwh=0.0,
        gpu_shortfall_mw=0.0,
        signal_excess_mw=0.0,
        binding_constraints=(),
        economics=Economics(
            energy_cost_usd=0.0,
            mining_revenue_usd=0.0,
            gpu_revenue_usd=0.0,
            net_margin_usd=0.0,
            emissions_kg_co2=0.0,
        ),
        solver=SolverReport(
            status="not_solved", solver="none", solve_time_ms=0.0, wall_time_ms=0.0
        ),
        horizon=(step,),
        fallback=kind,
        fallback_reason=reason,
        # A fallback solves nothing: its zeros are not an estimate, and the reader is told so.
        notes=(FALLBACK_ECONOMICS_NOTE,),
    )


def hold_last_plan(
    last: DispatchDecision, now: datetime, trigger: Trigger, reason: str
) -> DispatchDecision | None:
    """The last plan's step covering ``now``, republished as a flagged decision (or None)."""
    for step in last.horizon:
        if step.interval_start <= now < step.interval_end:
            held = step.model_copy(update={"interval_start": now})
            return _flagged(
                last.site_id,
                held,
                trigger=trigger,
                kind="hold_last_plan",
                reason=reason,
                basis=last.decision_id,
                breakeven=last.mining_breakeven_usd_per_mwh,
            )
    return None


def fail_safe(
    site: SiteConfig,
    now: datetime,
    step: timedelta,
    trigger: Trigger,
    reason: str,
    *,
    mining_fraction: float = 0.0,
) -> DispatchDecision:
    """Mining shed to ``mining_fraction`` of capacity, GPUs at their contracted floor."""
    mining = site.mining_capacity_mw * mining_fraction
    gpu = site.gpu_floor_mw
    grid_import = min(
        site.interconnect_mw, max(0.0, site.pue * (mining + gpu) - site.onsite_cfe_mw)
    )
    plan_step = PlanStep(
        interval_start=now,
        interval_end=now + step,
        mining_mw=mining,
        gpu_mw=gpu,
        grid_import_mw=grid_import,
        price_usd_per_mwh=0.0,
        carbon_intensity_g_per_kwh=0.0,
    )
    return _flagged(
        site.site_id, plan_step, trigger=trigger, kind="fail_safe", reason=reason, basis=reason
    )
