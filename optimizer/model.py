"""The single-site dispatch LP: mining MW vs GPU MW under the interconnect, a grid-signal cap and
the GPU contract floor, valued at hashprice and GPU value against node price and carbon price.

Built once per (spec, horizon length) with flat vector ``cp.Parameter``s (DPP); :meth:`plan`
only assigns values and re-solves, so cvxpy canonicalizes once. Contradictory inputs never make
the problem infeasible: tiered penalty slacks absorb them, signal compliance first, then the
GPU floor.
"""

from __future__ import annotations

import time

import cvxpy as cp
import numpy as np

from optimizer.errors import SolverFailed
from optimizer.plan import Plan
from optimizer.snapshot import SiteSnapshot
from optimizer.spec import SiteSpec
from optimizer.value import (
    FloatArray,
    carbon_cost_usd_per_mwh,
    emissions_kg,
    energy_cost_usd,
    mining_revenue_usd_per_mwh,
)

#: $/MWh charged for import above an asserted grid-signal cap: compliance comes first.
SIGNAL_PENALTY_USD_PER_MWH = 1.0e6
#: $/MWh charged for GPU contract floor not served: above any plausible GPU value or price spike.
GPU_FLOOR_PENALTY_USD_PER_MWH = 1.0e5
#: A constraint counts as binding when its slack is below this (MW).
BINDING_TOLERANCE_MW = 1e-6


class DispatchModel:
    """Compiled LP for one site over ``n_steps`` horizon steps."""

    def __init__(self, spec: SiteSpec, n_steps: int) -> None:
        if n_steps < 1:
            raise ValueError("n_steps must be >= 1")
        self.spec = spec
        self.n_steps = n_steps
        n = n_steps
        self._mining = cp.Variable(n, nonneg=True, name="mining_mw")
        self._gpu = cp.Variable(n, nonneg=True, name="gpu_mw")
        self._shortfall = cp.Variable(n, nonneg=True, name="gpu_shortfall_mw")
        self._excess = cp.Variable(n, nonneg=True, name="signal_excess_mw")

        # $ earned by 1 MW held over each step, net of energy and carbon (flat vectors: DPP-fast).
        self._mining_coef = cp.Parameter(n, name="mining_usd_per_mw_step")
        self._gpu_coef = cp.Parameter(n, name="gpu_usd_per_mw_step")
        self._shortfall_coef = cp.Parameter(n, nonneg=True, name="shortfall_usd_per_mw_step")
        self._excess_coef = cp.Parameter(n, nonneg=True, name="excess_usd_per_mw_step")
        self._mining_cap = cp.Parameter(n, nonneg=True, name="mining_available_mw")
        self._gpu_cap = cp.Parameter(n, nonneg=True, name="gpu_capacity_mw")
        self._gpu_floor = cp.Parameter(n, nonneg=True, name="gpu_floor_mw")
        self._signal_cap = cp.Parameter(n, nonneg=True, name="signal_cap_mw")

        grid_import = spec.pue * (self._mining + self._gpu)
        self._constraints: dict[str, cp.Constraint] = {
            "mining_available": self._mining <= self._mining_cap,
            "gpu_capacity": self._gpu <= self._gpu_cap,
            "gpu_floor": self._gpu + self._shortfall >= self._gpu_floor,
            "interconnect": grid_import <= spec.interconnect_mw,
            "signal_cap": grid_import - self._excess <= self._signal_cap,
        }
        objective = cp.Maximize(
            self._mining_coef @ self._mining
            + self._gpu_coef @ self._gpu
            - self._shortfall_coef @ self._shortfall
            - self._excess_coef @ self._excess
        )
        self.problem = cp.Problem(objective, list(self._constraints.values()))

    def plan(self, snapshot: SiteSnapshot) -> Plan:
        """Assign the snapshot to the parameters, solve, and read the plan back."""
        started = time.perf_counter()
        snapshot.validate(self.n_steps)
        spec = self.spec
        hours = np.asarray(snapshot.step_hours, dtype=float)
        price = np.asarray(snapshot.price_usd_per_mwh, dtype=float)
        carbon_cost = carbon_cost_usd_per_mwh(
            snapshot.carbon_g_per_kwh, snapshot.carbon_price_usd_per_t
        )
        grid_cost_per_it_mwh = spec.pue * (price + carbon_cost)
        mining_rev = np.asarray(
            mining_revenue_usd_per_mwh(
                snapshot.hashprice_usd_per_th_day, spec.miner_efficiency_j_per_th
            ),
            dtype=float,
        )
        self._mining_coef.value = hours * (mining_rev - grid_cost_per_it_mwh)
        self._gpu_coef.value = hours * (snapshot.gpu_value_usd_per_mwh - grid_cost_per_it_mwh)
        self._shortfall_coef.value = hours * GPU_FLOOR_PENALTY_USD_PER_MWH
        self._excess_coef.value = hours * SIGNAL_PENALTY_USD_PER_MWH
        self._mining_cap.value = np.minimum(snapshot.mining_available_mw, spec.mining_capacity_mw)
        self._gpu_cap.value = np.minimum(snapshot.gpu_demand_mw, spec.gpu_capacity_mw)
        self._gpu_floor.value = np.asarray(snapshot.gpu_floor_mw, dtype=float)
        # No active signal is +inf in the snapshot. Keep the row strictly slack then, so the
        # interconnect alone carries the dual (the shadow price we report).
        self._signal_cap.value = np.minimum(
            snapshot.signal_cap_mw, 2.0 * spec.interconnect_mw + 1.0
        )

        try:
            self.problem.solve(solver=cp.HIGHS)  # type: ignore[no-untyped-call]
        except cp.error.SolverError as exc:
            raise SolverFailed("solver_error", str(exc)) from exc
        status = self.problem.status
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise SolverFailed(str(status))

        mining = _clean(self._mining.value)
        gpu = _clean(self._gpu.value)
        grid_import = spec.pue * (mining + gpu)
        intensity = np.asarray(snapshot.carbon_g_per_kwh, dtype=float)
        stats = self.problem.solver_stats
        interconnect_dual = np.asarray(self._constraints["interconnect"].dual_value, dtype=float)
        return Plan(
            mining_mw=mining,
            gpu_mw=gpu,
            grid_import_mw=grid_import,
            gpu_shortfall_mw=_clean(self._shortfall.value),
            signal_excess_mw=_clean(self._excess.value),
            energy_cost_usd=energy_cost_usd(grid_import, hours, price),
            mining_revenue_usd=mining * hours * mining_rev,
            gpu_revenue_usd=gpu * hours * np.asarray(snapshot.gpu_value_usd_per_mwh, dtype=float),
            emissions_kg=emissions_kg(grid_import, hours, intensity),
            shadow_price_interconnect_usd_per_mwh=np.abs(interconnect_dual) / hours,
            mining_breakeven_usd_per_mwh=(
                mining_rev / spec.pue
                - carbon_cost_usd_per_mwh(intensity, snapshot.carbon_price_usd_per_t)
            ),
            binding_first_step=self._binding_first_step(),
            objective_usd=float(self.problem.value),
            status=str(status),
            solver=str(stats.solver_name),
            solve_time_s=float(stats.solve_time or 0.0),
            wall_time_s=time.perf_counter() - started,
        )

    def _binding_first_step(self) -> tuple[str, ...]:
        """Names of the limits that hold with no slack at step 0 (the committed interval)."""
        binding = [
            name
            for name, constraint in self._constraints.items()
            if _slack(constraint)[0] <= BINDING_TOLERANCE_MW
        ]
        mining = self._mining.value
        if mining is not None and mining[0] <= BINDING_TOLERANCE_MW:
            binding.append("mining_off")
        return tuple(binding)


def _slack(constraint: cp.Constraint) -> FloatArray:
    """Non-negative slack of an inequality constraint (rhs - lhs for ``<=``)."""
    expr = constraint.expr  # cvxpy stores "lhs - rhs <= 0"
    return np.asarray(-np.atleast_1d(expr.value), dtype=float)


def _clean(values: FloatArray | None) -> FloatArray:
    """Solver output as a float array with tiny negatives from round-off clipped to zero."""
    if values is None:
        raise SolverFailed("no_values", "solver reported optimal but returned no values")
    array = np.asarray(values, dtype=float)
    return np.where(np.abs(array) < 1e-9, 0.0, np.maximum(array, 0.0))
