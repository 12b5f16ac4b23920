"""The result of one solve: set-points per site and step, their economics and emissions, and why
they are what they are (binding limits, slacks used, shadow prices)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.value import FloatArray


@dataclass(frozen=True, slots=True)
class Plan:
    """A dispatch plan for one site over the horizon. Step 0 is the committed set-point.

    ``gpu_mw`` is the site's firm GPU load; ``routed_gpu_mw`` is flexible pool demand served
    here and ``batch_mw`` deferrable batch work. Emissions are kg CO2 per step, location-based
    (grid intensity x import) and market-based (grid import not matched by contracted supply).
    ``reserve_mw`` is the reserve held per product (empty at a site without reserve products),
    ``reserve_shortfall_mw`` the committed reserve not held (all products), per step.
    """

    mining_mw: FloatArray
    gpu_mw: FloatArray
    routed_gpu_mw: FloatArray
    batch_mw: FloatArray
    grid_import_mw: FloatArray
    onsite_cfe_used_mw: FloatArray
    battery_charge_mw: FloatArray
    battery_discharge_mw: FloatArray
    battery_soc_mwh: FloatArray
    gpu_shortfall_mw: FloatArray
    signal_excess_mw: FloatArray
    batch_shortfall_mwh: float
    reserve_mw: dict[str, FloatArray]
    reserve_shortfall_mw: FloatArray
    reserve_revenue_usd: FloatArray
    energy_cost_usd: FloatArray
    peak_cost_usd: FloatArray
    mining_revenue_usd: FloatArray
    gpu_revenue_usd: FloatArray
    emissions_kg: FloatArray
    emissions_market_kg: FloatArray
    cfe_score: float
    shadow_price_interconnect_usd_per_mwh: FloatArray
    mining_breakeven_usd_per_mwh: FloatArray
    binding_first_step: tuple[str, ...]
    objective_usd: float
    status: str
    solver: str
    solve_time_s: float
    wall_time_s: float

    @property
    def net_margin_usd(self) -> FloatArray:
        margin: FloatArray = (
            self.mining_revenue_usd
            + self.gpu_revenue_usd
            + self.reserve_revenue_usd
            - self.energy_cost_usd
            - self.peak_cost_usd
        )
        return margin

    @property
    def reserve_total_mw(self) -> FloatArray:
        """Reserve held per step, all products together."""
        total: FloatArray = sum(self.reserve_mw.values(), start=np.zeros(len(self.mining_mw)))
        return total

    @property
    def slacks_used(self) -> dict[str, float]:
        """Penalty slacks that were needed, by name, with the amount at step 0 (MW) or in total."""
        used = {
            "signal_excess_mw": float(self.signal_excess_mw[0]),
            "gpu_shortfall_mw": float(self.gpu_shortfall_mw[0]),
            "batch_shortfall_mwh": self.batch_shortfall_mwh,
            "reserve_commit_shortfall_mw": float(self.reserve_shortfall_mw[0]),
        }
        return {name: amount for name, amount in used.items() if amount > 1e-9}


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """Plans for every site plus the fleet-level results of one joint solve."""

    sites: dict[str, Plan]
    objective_usd: float
    carbon_budget_excess_t: float
    shadow_price_carbon_usd_per_t: float
    fleet_cfe_score: float
    status: str
    solver: str
    solve_time_s: float
    wall_time_s: float
