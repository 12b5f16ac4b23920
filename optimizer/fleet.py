"""The fleet dispatch LP: every site's mining, firm GPU and grid import over a rolling horizon,
plus the optional parts (routable GPU pools, batch work, batteries, carbon budget) in
:mod:`optimizer.components` and reserves in :mod:`optimizer.reserves`.

Shape (sites, steps, parts) is fixed at construction; :meth:`FleetModel.plan` only assigns
parameter values and re-solves. Every parameter is a flat vector multiplied into a variable
(``c @ x``) or added to a constraint's right-hand side, which keeps the problem DPP and cvxpy's
per-solve work to one sparse product. Contradictory inputs never make the problem infeasible:
tiered penalty slacks absorb them, in this order of priority:

1. grid-signal compliance (import above an asserted cap): ``SIGNAL_PENALTY_USD_PER_MWH``, and
   always ``SIGNAL_OVER_FLOOR`` times the floor's penalty
2. the contracted GPU floor: ``GPU_FLOOR_PENALTY_USD_PER_MWH``, raised per site and solve above
   anything shedding it could gain (:func:`floor_penalty_usd_per_mwh`) and above the reserve
   commitment's penalty, so the floor yields to grid signals and physical limits only, never to
   a price
3. committed reserve held: ``RESERVE_COMMIT_PENALTY_USD_PER_MWH``, raised per site and solve
   above anything breaking the commitment could gain (:func:`commitment_penalty_usd_per_mwh`)
4. batch work finished by its deadline: ``BATCH_PENALTY_USD_PER_MWH``
5. the fleet carbon budget: ``CARBON_BUDGET_PENALTY_USD_PER_T``
"""

from __future__ import annotations

import time
from dataclasses import replace

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from optimizer.components import (
    BATCH_PENALTY_USD_PER_MWH,
    CARBON_BUDGET_PENALTY_USD_PER_T,
    BatchWork,
    Batteries,
    CarbonBudget,
    Contribution,
    Layout,
    Routing,
    clean,
)
from optimizer.errors import SolverFailed, SpecError
from optimizer.highs import HighsRunner
from optimizer.params import set_value
from optimizer.plan import FleetPlan, Plan
from optimizer.reserves import RESERVE_COMMIT_PENALTY_USD_PER_MWH, Reserves
from optimizer.snapshot import FleetSnapshot, SiteSnapshot, validate_all
from optimizer.spec import FleetSpec, SiteSpec
from optimizer.value import (
    FloatArray,
    carbon_cost_usd_per_mwh,
    emissions_kg,
    energy_cost_usd,
    mining_revenue_usd_per_mwh,
)

__all__ = [
    "BATCH_PENALTY_USD_PER_MWH",
    "CARBON_BUDGET_PENALTY_USD_PER_T",
    "GPU_FLOOR_PENALTY_USD_PER_MWH",
    "RESERVE_COMMIT_PENALTY_USD_PER_MWH",
    "SIGNAL_PENALTY_USD_PER_MWH",
    "FleetModel",
    "commitment_penalty_usd_per_mwh",
    "floor_penalty_usd_per_mwh",
]

SIGNAL_PENALTY_USD_PER_MWH = 1.0e6
GPU_FLOOR_PENALTY_USD_PER_MWH = 1.0e5
#: The signal penalty is at least this many times the floor's (signals outrank the floor).
SIGNAL_OVER_FLOOR = 10.0
#: How far the floor's penalty stays above the most that shedding a floor MWh could gain.
FLOOR_MARGIN_USD_PER_MWH = 1_000.0
#: A constraint counts as binding when its slack is below this (MW).
BINDING_TOLERANCE_MW = 1e-6

_SITE_LIMITS = (
    "mining_available",
    "gpu_demand",
    "gpu_capacity",
    "gpu_floor",
    "interconnect",
    "signal_cap",
)


def _per_row(sites: tuple[SiteSpec, ...], attribute: str, n_steps: int) -> FloatArray:
    return np.repeat([float(getattr(s, attribute)) for s in sites], n_steps)


def floor_penalty_usd_per_mwh(
    *,
    pue: float,
    energy_usd_per_mwh: FloatArray,
    mining_revenue_usd_per_mwh: FloatArray,
    other_gpu_value_usd_per_mwh: float = 0.0,
    commitment_usd_per_mwh: float = 0.0,
) -> float:
    """The penalty per MWh of GPU floor left unserved at one site over one horizon.

    Shedding a floor MWh can gain at most: the facility energy it avoids (``pue`` x the energy
    cost, i.e. price where positive, peak charge, carbon price and budget penalty per MWh),
    taken at the horizon's dearest step because a battery moves energy between steps; plus the
    IT room it frees for mining or other GPU work; or, where the site sold reserve, the room
    it frees for committed mining (``commitment_usd_per_mwh``, that shortfall's penalty). The
    penalty is the fixed tier (``GPU_FLOOR_PENALTY_USD_PER_MWH``) until that sum comes near it
    (prices at the schema's $100,000/MWh bound, PUE up to 3), and stays above it beyond: the
    contracted floor is never the cheapest thing to give up. At ordinary prices nothing changes.
    """
    worst = (
        pue * float(np.max(energy_usd_per_mwh, initial=0.0))
        + float(np.max(mining_revenue_usd_per_mwh, initial=0.0))
        + other_gpu_value_usd_per_mwh
    )
    return max(
        GPU_FLOOR_PENALTY_USD_PER_MWH,
        worst + FLOOR_MARGIN_USD_PER_MWH,
        commitment_usd_per_mwh + FLOOR_MARGIN_USD_PER_MWH,
    )


def commitment_penalty_usd_per_mwh(
    *, pue: float, energy_usd_per_mwh: FloatArray, gpu_value_usd_per_mwh: float
) -> float:
    """The penalty per MWh of committed reserve not held at one site over one horizon.

    Letting a committed MW go (the mining behind it stops) can gain at most: the facility
    energy it avoids (``pue`` x the dearest step's energy cost, as for the floor), plus the IT
    room it frees for GPU work (the best GPU value, firm or pooled) or for batch work due (its
    penalty). The penalty is the fixed tier (``RESERVE_COMMIT_PENALTY_USD_PER_MWH``) or that sum
    plus a margin, whichever is higher: a sold MW is never given up for a price, only for a
    grid signal, the GPU floor (whose penalty is kept above this one) or a physical limit.
    """
    worst = (
        pue * float(np.max(energy_usd_per_mwh, initial=0.0))
        + max(0.0, gpu_value_usd_per_mwh)
        + BATCH_PENALTY_USD_PER_MWH
    )
    return max(RESERVE_COMMIT_PENALTY_USD_PER_MWH, worst + FLOOR_MARGIN_USD_PER_MWH)


class FleetModel:
    """Compiled LP for a fleet over ``n_steps`` horizon steps."""

    def __init__(
        self,
        spec: FleetSpec,
        n_steps: int,
        *,
        warm_start: bool = True,
        time_limit_s: float | None = None,
    ) -> None:
        if n_steps < 1:
            raise SpecError("n_steps", "must be >= 1")
        self.spec = spec
        self._runner = HighsRunner(warm_start=warm_start, time_limit_s=time_limit_s)
        self.n_steps = n_steps
        self.layout = layout = Layout.of(spec, n_steps)
        rows = layout.n_sites * n_steps

        def variable(name: str) -> cp.Variable:
            return cp.Variable(rows, nonneg=True, name=name)

        def parameter(name: str, *, nonneg: bool = True) -> cp.Parameter:
            return cp.Parameter(rows, nonneg=nonneg, name=name)

        self.mining = variable("mining_mw")
        self.gpu = variable("gpu_mw")
        self.shortfall = variable("gpu_shortfall_mw")
        self.excess = variable("signal_excess_mw")
        self.grid_import = variable("grid_import_mw")
        self.onsite = variable("onsite_cfe_used_mw")
        self.unmatched = variable("unmatched_grid_mw")
        self.p = {
            name: parameter(name)
            for name in (
                "mining_available_mw",
                "gpu_demand_mw",
                "gpu_floor_mw",
                "signal_cap_mw",
                "onsite_cfe_mw",
                "ppa_mw",
                "mining_ramp_rhs_mw",
                "carbon_usd_per_mw_step",
                "shortfall_usd_per_mw_step",
                "excess_usd_per_mw_step",
            )
        }
        for name in ("mining_usd_per_mw_step", "gpu_usd_per_mw_step", "import_usd_per_mw_step"):
            self.p[name] = parameter(name, nonneg=False)

        carbon_basis = self.unmatched if spec.carbon_accounting == "market" else self.grid_import
        self.routing = Routing(spec, layout) if layout.pairs else None
        self.batch = BatchWork(spec, layout) if layout.batch_sites else None
        self.batteries = Batteries(spec, layout) if layout.battery_sites else None
        self.budget = CarbonBudget(rows, carbon_basis) if spec.carbon_budget else None
        self.reserves = Reserves(spec, layout, self.mining) if layout.reserve_slots else None
        parts = [self._core(carbon_basis)] + [
            part.contribution
            for part in (self.routing, self.batch, self.batteries, self.budget, self.reserves)
            if part is not None
        ]
        it_load: cp.Expression = sum((part.it_load for part in parts), start=self.mining + self.gpu)
        gpu_load: cp.Expression = sum((part.gpu_load for part in parts), start=self.gpu)
        facility = sum((part.facility for part in parts), start=cp.Constant(0.0))
        pue = sp.diags(_per_row(spec.sites, "pue", n_steps))
        self.constraints: dict[str, cp.Constraint] = {}
        for part in parts:
            self.constraints.update(part.constraints)
        self.constraints["gpu_capacity"] = gpu_load <= _per_row(
            spec.sites, "gpu_capacity_mw", n_steps
        )
        self.constraints["balance"] = self.grid_import + self.onsite == pue @ it_load + facility
        objective = sum((part.objective for part in parts), start=0.0)
        self.problem = cp.Problem(cp.Maximize(objective), list(self.constraints.values()))

    def _core(self, carbon_basis: cp.Variable) -> Contribution:
        """Limits and values every site has."""
        p, t, lay = self.p, self.n_steps, self.layout
        within_site_diff = sp.kron(sp.eye(lay.n_sites), sp.eye(t) - sp.eye(t, k=-1), format="csr")
        return Contribution(
            constraints={
                "mining_available": self.mining <= p["mining_available_mw"],
                "gpu_demand": self.gpu <= p["gpu_demand_mw"],
                "gpu_floor": self.gpu + self.shortfall >= p["gpu_floor_mw"],
                "interconnect": self.grid_import <= _per_row(self.spec.sites, "interconnect_mw", t),
                "signal_cap": self.grid_import - self.excess <= p["signal_cap_mw"],
                "onsite_supply": self.onsite <= p["onsite_cfe_mw"],
                "ppa_matching": self.unmatched >= self.grid_import - p["ppa_mw"],
                "mining_ramp": within_site_diff @ self.mining <= p["mining_ramp_rhs_mw"],
            },
            objective=p["mining_usd_per_mw_step"] @ self.mining
            + p["gpu_usd_per_mw_step"] @ self.gpu
            - p["import_usd_per_mw_step"] @ self.grid_import
            - p["carbon_usd_per_mw_step"] @ carbon_basis
            - p["shortfall_usd_per_mw_step"] @ self.shortfall
            - p["excess_usd_per_mw_step"] @ self.excess,
        )

    # ---------------------------------------------------------------------------- assignment
    def _site_snapshots(self, snapshot: FleetSnapshot) -> list[SiteSnapshot]:
        snaps = []
        for site in self.spec.sites:
            snap = snapshot.sites.get(site.site_id)
            if snap is None:
                raise SpecError(f"sites.{site.site_id}", "missing from the snapshot")
            if len(snap.batch_jobs) > site.batch_slots:
                raise SpecError(
                    f"sites.{site.site_id}.batch_jobs",
                    f"{len(snap.batch_jobs)} jobs > {site.batch_slots} batch slots",
                )
            snaps.append(snap)
        validate_all(snaps, [f"sites.{s.site_id}." for s in self.spec.sites], self.n_steps)
        return snaps

    def _assign(self, snapshot: FleetSnapshot) -> dict[str, FloatArray]:
        """Write the snapshot into the parameters; return the per-row arrays reused for outputs."""
        snaps = self._site_snapshots(snapshot)
        sites, t, p = self.spec.sites, self.n_steps, self.p

        def stack(name: str) -> FloatArray:
            return np.concatenate([s.curve(name) for s in snaps])

        arrays = {
            "hours": stack("step_hours"),
            "price": stack("price_usd_per_mwh"),
            "intensity": stack("carbon_g_per_kwh"),
            "peak": stack("peak_cost_usd_per_mw"),
            "gpu_value": stack("gpu_value_usd_per_mwh"),
            "carbon_price": np.repeat([s.carbon_price_usd_per_t for s in snaps], t),
            "revenue": np.concatenate(
                [
                    np.asarray(
                        mining_revenue_usd_per_mwh(
                            s.hashprice_usd_per_th_day, site.miner_efficiency_j_per_th
                        ),
                        dtype=float,
                    )
                    for s, site in zip(snaps, sites, strict=True)
                ]
            ),
        }
        hours = arrays["hours"]
        mining_cap = np.minimum(
            stack("mining_available_mw"), _per_row(sites, "mining_capacity_mw", t)
        )
        set_value(p["mining_available_mw"], mining_cap)
        set_value(p["gpu_demand_mw"], stack("gpu_demand_mw"))
        set_value(p["gpu_floor_mw"], stack("gpu_floor_mw"))
        # No active signal is +inf. Keep that row strictly slack, so the interconnect alone
        # carries the dual (the shadow price we report).
        set_value(
            p["signal_cap_mw"],
            np.minimum(stack("signal_cap_mw"), 2.0 * _per_row(sites, "interconnect_mw", t) + 1.0),
        )
        set_value(p["onsite_cfe_mw"], stack("onsite_cfe_mw"))
        set_value(p["ppa_mw"], stack("ppa_mw"))
        set_value(p["mining_ramp_rhs_mw"], self._ramp_rhs(snaps, hours, mining_cap))
        set_value(p["mining_usd_per_mw_step"], hours * arrays["revenue"])
        set_value(p["gpu_usd_per_mw_step"], hours * arrays["gpu_value"])
        set_value(p["import_usd_per_mw_step"], hours * arrays["price"] + arrays["peak"])
        set_value(
            p["carbon_usd_per_mw_step"],
            (hours * carbon_cost_usd_per_mwh(arrays["intensity"], 1.0) * arrays["carbon_price"]),
        )
        if self.routing is not None:
            self.routing.assign(snapshot.pools, hours)
        if self.batch is not None:
            self.batch.assign(snaps, hours)
        if self.batteries is not None:
            self.batteries.assign(snaps, hours)
        if self.budget is not None:
            self.budget.assign(snapshot.carbon_budget_t, hours, arrays["intensity"])
        floor, commitment = self._penalties(arrays, snapshot)
        if self.reserves is not None:
            self.reserves.assign(snaps, hours, commitment)
        set_value(p["shortfall_usd_per_mw_step"], hours * floor)
        set_value(
            p["excess_usd_per_mw_step"],
            hours * np.maximum(SIGNAL_PENALTY_USD_PER_MWH, SIGNAL_OVER_FLOOR * floor),
        )
        return arrays

    def _penalties(
        self, arrays: dict[str, FloatArray], snapshot: FleetSnapshot
    ) -> tuple[FloatArray, FloatArray]:
        """Per row: each site's GPU floor and reserve commitment penalties for this solve
        ($/MWh; the commitment's is 0 at sites without reserve products)."""
        t = self.n_steps
        energy = (
            np.maximum(arrays["price"], 0.0)
            + arrays["peak"] / arrays["hours"]
            + carbon_cost_usd_per_mwh(arrays["intensity"], 1.0) * arrays["carbon_price"]
        )
        if self.budget is not None:
            energy = energy + carbon_cost_usd_per_mwh(
                arrays["intensity"], CARBON_BUDGET_PENALTY_USD_PER_T
            )
        pools = 0.0
        if self.routing is not None:
            pools = max(
                (float(np.max(p.value_usd_per_mwh, initial=0.0)) for p in snapshot.pools.values()),
                default=0.0,
            )
        floors, commitments = [], []
        for position, site in enumerate(self.spec.sites):
            rows = self.layout.rows(position)
            commitment = 0.0
            if site.reserves:
                commitment = commitment_penalty_usd_per_mwh(
                    pue=site.pue,
                    energy_usd_per_mwh=energy[rows],
                    gpu_value_usd_per_mwh=max(
                        float(np.max(arrays["gpu_value"][rows], initial=0.0)), pools
                    ),
                )
            commitments.append(commitment)
            floors.append(
                floor_penalty_usd_per_mwh(
                    pue=site.pue,
                    energy_usd_per_mwh=energy[rows],
                    mining_revenue_usd_per_mwh=arrays["revenue"][rows],
                    other_gpu_value_usd_per_mwh=pools,
                    commitment_usd_per_mwh=commitment,
                )
            )
        return np.repeat(floors, t), np.repeat(commitments, t)

    def _ramp_rhs(
        self, snaps: list[SiteSnapshot], hours: FloatArray, mining_cap: FloatArray
    ) -> FloatArray:
        """Per-step ramp-up allowance; step 0 is relative to what the miners draw now."""
        rhs = np.empty(len(hours))
        for position, site in enumerate(self.spec.sites):
            rows = self.layout.rows(position)
            if site.mining_ramp_up_mw_per_min is None:
                rhs[rows] = site.mining_capacity_mw  # never binding: m_t - m_(t-1) <= capacity
                continue
            step_ramp = site.mining_ramp_up_mw_per_min * hours[rows] * 60.0
            rhs[rows] = step_ramp
            now = snaps[position].mining_now_mw
            rhs[rows.start] = mining_cap[rows.start] if now is None else now + step_ramp[0]
        return rhs

    # ---------------------------------------------------------------------------- solve
    def plan(self, snapshot: FleetSnapshot) -> FleetPlan:
        """Assign the snapshot to the parameters, solve, and read every site's plan back."""
        started = time.perf_counter()
        arrays = self._assign(snapshot)
        try:
            solve_time = self._runner.solve(self.problem)
        except (cp.error.SolverError, ValueError) as exc:
            raise SolverFailed("solver_error", str(exc)) from exc
        status = str(self.problem.status)
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise SolverFailed(status)
        plans = self._read_plans(arrays)
        wall = time.perf_counter() - started
        objective, solver = float(self.problem.value), "HIGHS"
        hours = arrays["hours"]
        facility = clean(self.grid_import.value) + clean(self.onsite.value)
        load_mwh = float(hours @ facility)
        unmatched_mwh = float(hours @ np.minimum(clean(self.unmatched.value), facility))
        return FleetPlan(
            sites={
                site_id: replace(
                    plan,
                    objective_usd=objective,
                    status=status,
                    solver=solver,
                    solve_time_s=solve_time,
                    wall_time_s=wall,
                )
                for site_id, plan in plans.items()
            },
            carbon_budget_excess_t=self.budget.excess_t() if self.budget else 0.0,
            shadow_price_carbon_usd_per_t=(
                self.budget.shadow_price_usd_per_t() if self.budget else 0.0
            ),
            fleet_cfe_score=1.0 - unmatched_mwh / load_mwh if load_mwh > 0 else 1.0,
            objective_usd=objective,
            status=status,
            solver=solver,
            solve_time_s=solve_time,
            wall_time_s=wall,
        )

    def _read_plans(self, arrays: dict[str, FloatArray]) -> dict[str, Plan]:
        lay, t = self.layout, self.n_steps
        hours, intensity = arrays["hours"], arrays["intensity"]
        rows = lay.n_sites * t
        v = {
            "mining": clean(self.mining.value),
            "gpu": clean(self.gpu.value),
            "import": clean(self.grid_import.value),
            "onsite": clean(self.onsite.value),
            "shortfall": clean(self.shortfall.value),
            "excess": clean(self.excess.value),
            "routed": self.routing.per_site_mw() if self.routing else np.zeros(rows),
            "routed_usd": self.routing.per_site_value_usd() if self.routing else np.zeros(rows),
            "batch": self.batch.per_site_mw() if self.batch else np.zeros(rows),
            "interconnect_dual": np.abs(np.asarray(self.constraints["interconnect"].dual_value)),
            "breakeven": arrays["revenue"] / _per_row(self.spec.sites, "pue", t)
            - carbon_cost_usd_per_mwh(intensity, 1.0) * arrays["carbon_price"],
        }
        v["unmatched"] = np.minimum(clean(self.unmatched.value), v["import"])
        held = self.reserves.held() if self.reserves else np.zeros(0)
        v["reserve_usd"] = self.reserves.revenue_usd(held) if self.reserves else np.zeros(rows)
        v["reserve_short"] = self.reserves.shortfall_mw() if self.reserves else np.zeros(rows)
        batch_short = self.batch.shortfall_by_site() if self.batch else np.zeros(lay.n_sites)
        binding = self._binding_first_step(v["mining"], held)
        plans = {}
        for position, site in enumerate(self.spec.sites):
            r = lay.rows(position)
            h = hours[r]
            facility_mwh = float(np.sum((v["import"][r] + v["onsite"][r]) * h))
            unmatched_mwh = float(np.sum(v["unmatched"][r] * h))
            battery = self.batteries.rows_of(position) if self.batteries else None
            charge, discharge, soc = battery or (np.zeros(t), np.zeros(t), np.zeros(t))
            plans[site.site_id] = Plan(
                mining_mw=v["mining"][r],
                gpu_mw=v["gpu"][r],
                routed_gpu_mw=v["routed"][r],
                batch_mw=v["batch"][r],
                grid_import_mw=v["import"][r],
                onsite_cfe_used_mw=v["onsite"][r],
                battery_charge_mw=charge,
                battery_discharge_mw=discharge,
                battery_soc_mwh=soc,
                gpu_shortfall_mw=v["shortfall"][r],
                signal_excess_mw=v["excess"][r],
                batch_shortfall_mwh=float(batch_short[position]),
                reserve_mw=self.reserves.by_product(position, held) if self.reserves else {},
                reserve_shortfall_mw=v["reserve_short"][r],
                reserve_revenue_usd=v["reserve_usd"][r],
                energy_cost_usd=energy_cost_usd(v["import"][r], h, arrays["price"][r]),
                peak_cost_usd=v["import"][r] * arrays["peak"][r],
                mining_revenue_usd=v["mining"][r] * h * arrays["revenue"][r],
                gpu_revenue_usd=v["gpu"][r] * h * arrays["gpu_value"][r] + v["routed_usd"][r],
                emissions_kg=emissions_kg(v["import"][r], h, intensity[r]),
                emissions_market_kg=emissions_kg(v["unmatched"][r], h, intensity[r]),
                cfe_score=1.0 - unmatched_mwh / facility_mwh if facility_mwh > 0 else 1.0,
                shadow_price_interconnect_usd_per_mwh=v["interconnect_dual"][r] / h,
                mining_breakeven_usd_per_mwh=v["breakeven"][r],
                binding_first_step=binding[position],
                objective_usd=0.0,
                status="",
                solver="",
                solve_time_s=0.0,
                wall_time_s=0.0,
            )
        return plans

    def _binding_first_step(self, mining: FloatArray, held: FloatArray) -> list[tuple[str, ...]]:
        """Per site, the limits that hold with no slack at step 0 (the committed interval)."""
        slacks = {name: _slack(self.constraints[name]) for name in _SITE_LIMITS}
        ramp_slack = _slack(self.constraints["mining_ramp"])
        reserve, coupling = self.reserves.coupling(held) if self.reserves else (None, None)
        out = []
        for position, site in enumerate(self.spec.sites):
            first = self.layout.rows(position).start
            names = [n for n in _SITE_LIMITS if slacks[n][first] <= BINDING_TOLERANCE_MW]
            if site.mining_ramp_up_mw_per_min is not None and (
                ramp_slack[first] <= BINDING_TOLERANCE_MW
            ):
                names.append("mining_ramp")
            if mining[first] <= BINDING_TOLERANCE_MW:
                names.append("mining_off")
            if (
                reserve is not None
                and coupling is not None
                and reserve[first] > BINDING_TOLERANCE_MW
                and coupling[first] <= BINDING_TOLERANCE_MW
            ):
                names.append("reserve_mining")  # mining runs to hold the reserve
            out.append(tuple(names))
        return out


def _slack(constraint: cp.Constraint) -> FloatArray:
    """Non-negative slack of an inequality constraint (cvxpy stores ``lhs - rhs <= 0``)."""
    return np.asarray(-np.atleast_1d(constraint.expr.value), dtype=float)
