"""The result of one solve: set-points per step, their economics and why they are what they are."""

from __future__ import annotations

from dataclasses import dataclass

from optimizer.value import FloatArray


@dataclass(frozen=True, slots=True)
class Plan:
    """A dispatch plan for one site over the horizon. Step 0 is the committed set-point."""

    mining_mw: FloatArray
    gpu_mw: FloatArray
    grid_import_mw: FloatArray
    gpu_shortfall_mw: FloatArray
    signal_excess_mw: FloatArray
    energy_cost_usd: FloatArray
    mining_revenue_usd: FloatArray
    gpu_revenue_usd: FloatArray
    emissions_kg: FloatArray
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
        margin: FloatArray = self.mining_revenue_usd + self.gpu_revenue_usd - self.energy_cost_usd
        return margin
