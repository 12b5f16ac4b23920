"""Dispatch decisions (dispatch.decision.v1): the set-points for one site and the plan behind them.

A decision is keyed by site and carries a deterministic ``decision_id`` (site + decision
interval + digest of the inputs), so consumers drop duplicates under at-least-once delivery.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Identifier, IntervalEvent, NonNegativeMW, PriceUSDPerMWh, StrictModel
from schemas.grid import ReserveProduct

Trigger = Literal[
    "price",
    "carbon",
    "signal",
    "telemetry",
    "hashprice",
    "compute_demand",
    "reserve",
    "ppa",
    "timer",
]


class PlanStep(IntervalEvent):
    """One step of the horizon behind the decision."""

    mining_mw: NonNegativeMW
    gpu_mw: NonNegativeMW
    grid_import_mw: NonNegativeMW
    price_usd_per_mwh: PriceUSDPerMWh
    carbon_intensity_g_per_kwh: float = Field(ge=0.0)
    reserve_mw: NonNegativeMW = Field(default=0.0, description="Reserve held, all products.")


class ReserveCommitment(IntervalEvent):
    """Reserve sold day-ahead for one hour: MW per product, held ready to curtail."""

    reserve_mw: dict[ReserveProduct, NonNegativeMW]


class Economics(StrictModel):
    """Expected money and emissions of the first (committed) interval of the plan."""

    energy_cost_usd: float
    peak_cost_usd: float = Field(default=0.0, description="Expected coincident-peak charge.")
    mining_revenue_usd: float
    gpu_revenue_usd: float
    reserve_revenue_usd: float = Field(
        default=0.0, ge=0.0, description="Reserve capacity payments (MW held x clearing price)."
    )
    net_margin_usd: float
    emissions_kg_co2: float = Field(ge=0.0, description="Location-based: grid intensity x import.")
    emissions_market_kg_co2: float = Field(
        default=0.0, ge=0.0, description="Market-based: import not matched by contracted CFE."
    )
    horizon_net_margin_usd: float = Field(default=0.0, description="Over the whole horizon.")
    cfe_score: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Hourly-matched carbon-free share, horizon."
    )


class SolverReport(StrictModel):
    """How the optimizer got there."""

    status: Literal["optimal", "optimal_inaccurate", "not_solved"]
    solver: str
    solve_time_ms: float = Field(ge=0.0, description="Time the solver itself reported.")
    wall_time_ms: float = Field(ge=0.0, description="Assign parameters + solve + read back.")


class DispatchDecision(IntervalEvent):
    """Set-points for [interval_start, interval_end) at one site, and the horizon behind them."""

    kind: Literal["decision"] = "decision"
    decision_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    site_id: Identifier
    trigger: Trigger
    input_version: str = Field(pattern=r"^[0-9a-f]{16}$", description="Digest of the inputs.")
    mining_mw: NonNegativeMW
    gpu_mw: NonNegativeMW
    grid_import_mw: NonNegativeMW
    mining_breakeven_usd_per_mwh: float = Field(
        description="Node price above which mining loses money at this site (incl. PUE, carbon)."
    )
    shadow_price_interconnect_usd_per_mwh: float = Field(
        description="What one more MW of interconnect is worth in the first interval."
    )
    routed_gpu_mw: NonNegativeMW = Field(default=0.0, description="Flexible pool demand served.")
    batch_mw: NonNegativeMW = Field(default=0.0, description="Deferrable batch work running.")
    battery_charge_mw: NonNegativeMW = 0.0
    battery_discharge_mw: NonNegativeMW = 0.0
    onsite_cfe_mw: NonNegativeMW = Field(default=0.0, description="On-site carbon-free supply.")
    reserve_mw: dict[ReserveProduct, NonNegativeMW] = Field(
        default_factory=dict,
        description="Reserve held ready to curtail in the first interval, MW by product (mining "
        "kept running for it; a reserve_deployment signal curtails it).",
    )
    reserve_commitments: tuple[ReserveCommitment, ...] = Field(
        default=(),
        description="Reserve sold day-ahead for the hours of the horizon (to be held).",
    )
    shadow_price_carbon_usd_per_t: float = Field(
        default=0.0, description="What one more tonne of fleet carbon budget is worth."
    )
    gpu_shortfall_mw: NonNegativeMW = Field(description="GPU floor not served (slack used).")
    signal_excess_mw: NonNegativeMW = Field(description="Import above an active grid-signal cap.")
    slacks_used: dict[str, float] = Field(
        default_factory=dict, description="Penalty slacks the plan needed, by name and amount."
    )
    binding_constraints: tuple[str, ...] = Field(description="Limits that bind in the first step.")
    notes: tuple[str, ...] = Field(
        default=(), description="Inputs that were held at their last value or assumed."
    )
    fallback: Literal["none", "hold_last_plan", "fail_safe"] = Field(
        default="none",
        description="Not an optimal plan: the last plan held, or the fail-safe rule (mining shed "
        "to a safe level, GPU floor kept).",
    )
    fallback_reason: str | None = Field(default=None, description="Why a fallback was used.")
    economics: Economics
    solver: SolverReport
    horizon: tuple[PlanStep, ...] = Field(min_length=1)
