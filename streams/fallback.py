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

from schemas import DispatchDecision, Economics, PlanStep, SolverReport, Trigger
from streams.sites import SiteConfig
from streams.translate import decision_id


def _version(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def hold_last_plan(
    last: DispatchDecision, now: datetime, trigger: Trigger, reason: str
) -> DispatchDecision | None:
    """The last plan's step covering ``now``, republished as a flagged decision (or None)."""
    for step in last.horizon:
        if step.interval_start <= now < step.interval_end:
            version = _version("hold", last.decision_id, now.isoformat())
            return DispatchDecision(
                interval_start=now,
                interval_end=step.interval_end,
                decision_id=decision_id(last.site_id, now, version),
                site_id=last.site_id,
                trigger=trigger,
                input_version=version,
                mining_mw=step.mining_mw,
                gpu_mw=step.gpu_mw,
                grid_import_mw=step.grid_import_mw,
                mining_breakeven_usd_per_mwh=last.mining_breakeven_usd_per_mwh,
                shadow_price_interconnect_usd_per_mwh=0.0,
                gpu_shortfall_mw=0.0,
                signal_excess_mw=0.0,
                binding_constraints=(),
                economics=_no_economics(),
                solver=SolverReport(
                    status="not_solved", solver="none", solve_time_ms=0.0, wall_time_ms=0.0
                ),
                horizon=(step.model_copy(update={"interval_start": now}),),
                fallback="hold_last_plan",
                fallback_reason=reason,
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
    version = _version("fail_safe", site.site_id, now.isoformat(), reason)
    return DispatchDecision(
        interval_start=now,
        interval_end=now + step,
        decision_id=decision_id(site.site_id, now, version),
        site_id=site.site_id,
        trigger=trigger,
        input_version=version,
        mining_mw=mining,
        gpu_mw=gpu,
        grid_import_mw=grid_import,
        mining_breakeven_usd_per_mwh=0.0,
        shadow_price_interconnect_usd_per_mwh=0.0,
        gpu_shortfall_mw=0.0,
        signal_excess_mw=0.0,
        binding_constraints=(),
        economics=_no_economics(),
        solver=SolverReport(
            status="not_solved", solver="none", solve_time_ms=0.0, wall_time_ms=0.0
        ),
        horizon=(
            PlanStep(
                interval_start=now,
                interval_end=now + step,
                mining_mw=mining,
                gpu_mw=gpu,
                grid_import_mw=grid_import,
                price_usd_per_mwh=0.0,
                carbon_intensity_g_per_kwh=0.0,
            ),
        ),
        fallback="fail_safe",
        fallback_reason=reason,
    )


def _no_economics() -> Economics:
    return Economics(
        energy_cost_usd=0.0,
        mining_revenue_usd=0.0,
        gpu_revenue_usd=0.0,
        net_margin_usd=0.0,
        emissions_kg_co2=0.0,
    )
