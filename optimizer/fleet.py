"""The fleet dispatch LP: every site's mining, firm GPU, routed GPU, batch work, battery and grid
import over a rolling horizon, coupled by routable GPU demand and a fleet carbon budget.

Shape (sites, steps, batteries, batch slots, pools) is fixed at construction; :meth:`plan` only
assigns parameter values and re-solves. Every parameter is a flat vector multiplied into a
variable (``c @ x``) or added to a constraint's right-hand side, which keeps the problem DPP and
cvxpy's per-solve work to one sparse product. Contradictory inputs never make the problem
infeasible: tiered penalty slacks absorb them, in this order of priority:

1. grid-signal compliance (import above an asserted cap): ``SIGNAL_PENALTY_USD_PER_MWH``
2. the contracted GPU floor: ``GPU_FLOOR_PENALTY_USD_PER_MWH``
3. batch work finished by its deadline: ``BATCH_PENALTY_USD_PER_MWH``
4. the fleet carbon budget: ``CARBON_BUDGET_PENALTY_USD_PER_T``
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from optimizer.errors import SolverFailed, SpecError
from optimizer.plan import FleetPlan, Plan
from optimizer.snapshot import FleetSnapshot, SiteSnapshot
from optimizer.spec import FleetSpec
from optimizer.value import (
    FloatArray,
    carbon_cost_usd_per_mwh,
    emissions_kg,
    energy_cost_usd,
    mining_revenue_usd_per_mwh,
)

SIGNAL_PENALTY_USD_PER_MWH = 1.0e6
GPU_FLOOR_PENALTY_USD_PER_MWH = 1.0e5
BATCH_PENALTY_USD_PER_MWH = 1.0e4
CARBON_BUDGET_PENALTY_USD_PER_T = 1.0e4
#: A constraint counts as binding when its slack is below this (MW).
BINDING_TOLERANCE_MW = 1e-6

_SITE_INEQUALITIES = (
    "mining_available",
    "gpu_demand",
    "gpu_capacity",
    "gpu_floor",
    "interconnect",
    "signal_cap",
)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Index maps of the flat vectors: rows are site-major (site s, step t -> s*T + t)."""

    n_sites: int
    n_steps: int
    battery_sites: tuple[int, ...]
    batch_sites: tuple[int, ...]  # one entry per batch slot: the site it belongs to
    pairs: tuple[tuple[int, int, float], ...]  # (pool, site, latency penalty)

    def rows(self, site: int) -> slice:
        return slice(site * self.n_steps, (site + 1) * self.n_steps)


def _block_rows(owners: tuple[int, ...], n_owners_total: int, n_steps: int) -> sp.csr_matrix:
    """Matrix adding each owned block of T rows into its owner's T rows (owner-major)."""
    if not owners:
        return sp.csr_matrix((n_owners_total * n_steps, 0))
    selector = sp.csr_matrix(
        (np.ones(len(owners)), (list(owners), range(len(owners)))),
        shape=(n_owners_total, len(owners)),
    )
    return sp.kron(selector, sp.eye(n_steps), format="csr")


class FleetModel:
    """Compiled LP for a fleet over ``n_steps`` horizon steps."""

    def __init__(self, spec: FleetSpec, n_steps: int) -> None:
        if n_steps < 1:
            raise SpecError("n_steps", "must be >= 1")
        self.spec = spec
        self.n_steps = n_steps
        sites = spec.sites
        n, t = len(sites), n_steps
        nt = n * t
        self.layout = lay = _Layout(
            n_sites=n,
            n_steps=t,
            battery_sites=tuple(i for i, s in enumerate(sites) if s.battery is not None),
            batch_sites=tuple(i for i, s in enumerate(sites) for _ in range(s.batch_slots)),
            pairs=tuple(
                (k, spec.site_index[site_id], penalty)
                for k, pool in enumerate(spec.pools)
                for site_id, penalty in pool.eligible
            ),
        )
        nb, nj, npairs = len(lay.battery_sites), len(lay.batch_sites), len(lay.pairs)
        pue = sp.diags(np.repeat([s.pue for s in sites], t))
        within_site_diff = sp.kron(sp.eye(n), sp.eye(t) - sp.eye(t, k=-1), format="csr")

        var = cp.Variable
        self.mining = var(nt, nonneg=True, name="mining_mw")
        self.gpu = var(nt, nonneg=True, name="gpu_mw")
        self.shortfall = var(nt, nonneg=True, name="gpu_shortfall_mw")
        self.excess = var(nt, nonneg=True, name="signal_excess_mw")
        self.grid_import = var(nt, nonneg=True, name="grid_import_mw")
        self.onsite = var(nt, nonneg=True, name="onsite_cfe_used_mw")
        self.unmatched = var(nt, nonneg=True, name="unmatched_grid_mw")

        par = cp.Parameter
        self.p_mining_cap = par(nt, nonneg=True, name="mining_available_mw")
        self.p_gpu_demand = par(nt, nonneg=True, name="gpu_demand_mw")
        self.p_gpu_floor = par(nt, nonneg=True, name="gpu_floor_mw")
        self.p_signal_cap = par(nt, nonneg=True, name="signal_cap_mw")
        self.p_onsite = par(nt, nonneg=True, name="onsite_cfe_mw")
        self.p_ppa = par(nt, nonneg=True, name="ppa_mw")
        self.p_ramp = par(nt, nonneg=True, name="mining_ramp_rhs_mw")
        self.p_mining_value = par(nt, name="mining_usd_per_mw_step")
        self.p_gpu_value = par(nt, name="gpu_usd_per_mw_step")
        self.p_import_cost = par(nt, name="import_usd_per_mw_step")
        self.p_carbon_cost = par(nt, nonneg=True, name="carbon_usd_per_mw_step")
        self.p_shortfall_pen = par(nt, nonneg=True, name="shortfall_usd_per_mw_step")
        self.p_excess_pen = par(nt, nonneg=True, name="excess_usd_per_mw_step")

        it_load = self.mining + self.gpu
        gpu_used = self.gpu
        carbon_basis = self.unmatched if spec.carbon_accounting == "market" else self.grid_import
        objective = (
            self.p_mining_value @ self.mining
            + self.p_gpu_value @ self.gpu
            - self.p_import_cost @ self.grid_import
            - self.p_carbon_cost @ carbon_basis
            - self.p_shortfall_pen @ self.shortfall
            - self.p_excess_pen @ self.excess
        )
        cons: dict[str, cp.Constraint] = {
            "mining_available": self.mining <= self.p_mining_cap,
            "gpu_demand": self.gpu <= self.p_gpu_demand,
            "gpu_floor": self.gpu + self.shortfall >= self.p_gpu_floor,
            "interconnect": self.grid_import <= np.repeat([s.interconnect_mw for s in sites], t),
            "signal_cap": self.grid_import - self.excess <= self.p_signal_cap,
            "onsite_supply": self.onsite <= self.p_onsite,
            "ppa_matching": self.unmatched >= self.grid_import - self.p_ppa,
            "mining_ramp": within_site_diff @ self.mining <= self.p_ramp,
        }
        facility_extra: cp.Expression | float = 0.0

        # Routable GPU demand: flows per (pool, site) pair, valued net of latency penalty.
        self.routed: cp.Variable | None = None
        if npairs:
            self.routed = var(npairs * t, nonneg=True, name="routed_gpu_mw")
            pair_sites = tuple(site for _, site, _ in lay.pairs)
            pair_pools = tuple(pool for pool, _, _ in lay.pairs)
            self._to_site = _block_rows(pair_sites, n, t)
            self.p_pool_demand = par(len(spec.pools) * t, nonneg=True, name="pool_demand_mw")
            self.p_route_value = par(npairs * t, name="route_usd_per_mw_step")
            cons["pool_demand"] = (
                _block_rows(pair_pools, len(spec.pools), t) @ self.routed <= self.p_pool_demand
            )
            gpu_used = gpu_used + self._to_site @ self.routed
            it_load = it_load + self._to_site @ self.routed
            objective = objective + self.p_route_value @ self.routed

        # Deferrable batch work: energy by a deadline, at most max_mw, in any step before it.
        self.batch: cp.Variable | None = None
        self.batch_short: cp.Variable | None = None
        if nj:
            self.batch = var(nj * t, nonneg=True, name="batch_mw")
            self.batch_short = var(nj, nonneg=True, name="batch_shortfall_mwh")
            self._batch_to_site = _block_rows(lay.batch_sites, n, t)
            self.p_batch_rate = par(nj * t, nonneg=True, name="batch_max_mw")
            self.p_batch_hours = par(nj * t, nonneg=True, name="batch_step_hours")
            self.p_batch_energy = par(nj, nonneg=True, name="batch_energy_mwh")
            per_job_sum = sp.kron(sp.eye(nj), np.ones((1, t)), format="csr")
            cons["batch_rate"] = self.batch <= self.p_batch_rate
            cons["batch_energy"] = (
                per_job_sum @ cp.multiply(self.p_batch_hours, self.batch) + self.batch_short
                >= self.p_batch_energy
            )
            gpu_used = gpu_used + self._batch_to_site @ self.batch
            it_load = it_load + self._batch_to_site @ self.batch
            objective = objective - BATCH_PENALTY_USD_PER_MWH * cp.sum(self.batch_short)

        cons["gpu_capacity"] = gpu_used <= np.repeat([s.gpu_capacity_mw for s in sites], t)

        # Batteries at the meter: state of charge after each step.
        self.charge: cp.Variable | None = None
        self.discharge: cp.Variable | None = None
        self.soc: cp.Variable | None = None
        if nb:
            batteries = [sites[i].battery for i in lay.battery_sites]
            assert all(b is not None for b in batteries)  # narrowed by construction
            self.charge = var(nb * t, nonneg=True, name="battery_charge_mw")
            self.discharge = var(nb * t, nonneg=True, name="battery_discharge_mw")
            self.soc = var(nb * t, nonneg=True, name="battery_soc_mwh")
            self.p_charge_gain = par(nb * t, nonneg=True, name="charge_mwh_per_mw")
            self.p_discharge_loss = par(nb * t, nonneg=True, name="discharge_mwh_per_mw")
            self.p_soc_start = par(nb * t, nonneg=True, name="soc_start_mwh")
            self.p_cycling_cost = par(nb * t, nonneg=True, name="cycling_usd_per_mw_step")
            power = np.repeat([b.power_mw for b in batteries if b], t)
            energy = np.repeat([b.energy_mwh for b in batteries if b], t)
            soc_diff = sp.kron(sp.eye(nb), sp.eye(t) - sp.eye(t, k=-1), format="csr")
            cons["battery_soc"] = (
                soc_diff @ self.soc
                - cp.multiply(self.p_charge_gain, self.charge)
                + cp.multiply(self.p_discharge_loss, self.discharge)
                == self.p_soc_start
            )
            cons["battery_energy"] = self.soc <= energy
            cons["battery_charge"] = self.charge <= power
            cons["battery_discharge"] = self.discharge <= power
            to_site = _block_rows(lay.battery_sites, n, t)
            facility_extra = to_site @ (self.charge - self.discharge)
            objective = objective - self.p_cycling_cost @ self.discharge

        cons["balance"] = self.grid_import + self.onsite == pue @ it_load + facility_extra

        # Fleet carbon budget over the horizon (tonnes), softened by a priced excess.
        self.budget_excess: cp.Variable | None = None
        if spec.carbon_budget:
            self.budget_excess = var(nonneg=True, name="carbon_budget_excess_t")
            self.p_tonnes_per_mw = par(nt, nonneg=True, name="t_co2_per_mw_step")
            self.p_budget = par(nonneg=True, name="carbon_budget_t")
            cons["carbon_budget"] = (
                self.p_tonnes_per_mw @ carbon_basis - self.budget_excess <= self.p_budget
            )
            objective = objective - CARBON_BUDGET_PENALTY_USD_PER_T * self.budget_excess

        self.constraints = cons
        self.problem = cp.Problem(cp.Maximize(objective), list(cons.values()))

    # ---------------------------------------------------------------------------- assignment
    def _assign(self, snapshot: FleetSnapshot) -> dict[str, FloatArray]:
        """Write the snapshot into the parameters; return the per-row arrays reused for outputs."""
        spec, lay, t = self.spec, self.layout, self.n_steps
        snaps: list[SiteSnapshot] = []
        for site in spec.sites:
            snap = snapshot.sites.get(site.site_id)
            if snap is None:
                raise SpecError(f"sites.{site.site_id}", "missing from the snapshot")
            snap.validate(t, where=f"sites.{site.site_id}.")
            if len(snap.batch_jobs) > site.batch_slots:
                raise SpecError(
                    f"sites.{site.site_id}.batch_jobs",
                    f"{len(snap.batch_jobs)} jobs > {site.batch_slots} batch slots",
                )
            snaps.append(snap)

        def stack(name: str) -> FloatArray:
            return np.concatenate([s.curve(name) for s in snaps])

        hours = stack("step_hours")
        price = stack("price_usd_per_mwh")
        intensity = stack("carbon_g_per_kwh")
        carbon_price = np.repeat([s.carbon_price_usd_per_t for s in snaps], t)
        revenue = np.concatenate(
            [
                np.asarray(
                    mining_revenue_usd_per_mwh(
                        s.hashprice_usd_per_th_day, site.miner_efficiency_j_per_th
                    ),
                    dtype=float,
                )
                for s, site in zip(snaps, spec.sites, strict=True)
            ]
        )
        mining_cap = np.minimum(
            stack("mining_available_mw"), np.repeat([s.mining_capacity_mw for s in spec.sites], t)
        )
        interconnect = np.repeat([s.interconnect_mw for s in spec.sites], t)

        self.p_mining_cap.value = mining_cap
        self.p_gpu_demand.value = stack("gpu_demand_mw")
        self.p_gpu_floor.value = stack("gpu_floor_mw")
        # No active signal is +inf. Keep that row strictly slack, so the interconnect alone
        # carries the dual (the shadow price we report).
        self.p_signal_cap.value = np.minimum(stack("signal_cap_mw"), 2.0 * interconnect + 1.0)
        self.p_onsite.value = stack("onsite_cfe_mw")
        self.p_ppa.value = stack("ppa_mw")
        self.p_ramp.value = self._ramp_rhs(snaps, hours, mining_cap)
        self.p_mining_value.value = hours * revenue
        self.p_gpu_value.value = hours * stack("gpu_value_usd_per_mwh")
        self.p_import_cost.value = hours * price + stack("peak_cost_usd_per_mw")
        self.p_carbon_cost.value = hours * carbon_cost_usd_per_mwh(intensity, 1.0) * carbon_price
        self.p_shortfall_pen.value = hours * GPU_FLOOR_PENALTY_USD_PER_MWH
        self.p_excess_pen.value = hours * SIGNAL_PENALTY_USD_PER_MWH

        if self.routed is not None:
            demand, value = [], []
            for pool in spec.pools:
                pool_snap = snapshot.pools.get(pool.pool_id)
                if pool_snap is None:
                    raise SpecError(f"pools.{pool.pool_id}", "missing from the snapshot")
                for name in ("demand_mw", "value_usd_per_mwh"):
                    curve = np.asarray(getattr(pool_snap, name), dtype=float)
                    if curve.shape != (t,) or not np.isfinite(curve).all() or (curve < 0).any():
                        raise SpecError(
                            f"pools.{pool.pool_id}.{name}", f"needs {t} finite values >= 0"
                        )
                demand.append(np.asarray(pool_snap.demand_mw, dtype=float))
                value.append(np.asarray(pool_snap.value_usd_per_mwh, dtype=float))
            self.p_pool_demand.value = np.concatenate(demand)
            self.p_route_value.value = np.concatenate(
                [
                    hours[lay.rows(site)] * (value[pool] - penalty)
                    for pool, site, penalty in lay.pairs
                ]
            )

        if self.batch is not None:
            rate, job_hours, energy = [], [], []
            for position, site in enumerate(spec.sites):
                jobs = snaps[position].batch_jobs
                site_hours = hours[lay.rows(position)]
                for slot in range(site.batch_slots):
                    job = jobs[slot] if slot < len(jobs) else None
                    open_steps = np.arange(t) <= (job.deadline_step if job else -1)
                    rate.append(np.where(open_steps, job.max_mw if job else 0.0, 0.0))
                    job_hours.append(site_hours)
                    energy.append(job.energy_mwh if job else 0.0)
            self.p_batch_rate.value = np.concatenate(rate)
            self.p_batch_hours.value = np.concatenate(job_hours)
            self.p_batch_energy.value = np.asarray(energy)

        if self.soc is not None:
            gain, loss, start, cycling = [], [], [], []
            for position in lay.battery_sites:
                battery = spec.sites[position].battery
                assert battery is not None  # battery_sites only lists those
                one_way = np.sqrt(battery.round_trip_efficiency)
                site_hours = hours[lay.rows(position)]
                gain.append(site_hours * one_way)
                loss.append(site_hours / one_way)
                soc0 = np.zeros(t)
                soc0[0] = min(snaps[position].battery_soc_mwh, battery.energy_mwh)
                start.append(soc0)
                cycling.append(site_hours * battery.cycling_cost_usd_per_mwh)
            self.p_charge_gain.value = np.concatenate(gain)
            self.p_discharge_loss.value = np.concatenate(loss)
            self.p_soc_start.value = np.concatenate(start)
            self.p_cycling_cost.value = np.concatenate(cycling)

        if self.budget_excess is not None:
            budget = snapshot.carbon_budget_t
            if budget is None or not np.isfinite(budget) or budget < 0:
                raise SpecError("carbon_budget_t", "the fleet has a carbon budget: give one >= 0")
            self.p_tonnes_per_mw.value = hours * intensity / 1000.0
            self.p_budget.value = budget
        return {
            "hours": hours,
            "price": price,
            "intensity": intensity,
            "revenue": revenue,
            "carbon_price": carbon_price,
        }

    def _ramp_rhs(
        self, snaps: list[SiteSnapshot], hours: FloatArray, mining_cap: FloatArray
    ) -> FloatArray:
        """Per-step ramp-up allowance; step 0 is relative to what the miners draw now."""
        rhs = np.empty(len(hours))
        for position, site in enumerate(self.spec.sites):
            rows = self.layout.rows(position)
            cap = mining_cap[rows]
            if site.mining_ramp_up_mw_per_min is None:
                rhs[rows] = site.mining_capacity_mw  # never binding: m_t - m_(t-1) <= capacity
                continue
            step_ramp = site.mining_ramp_up_mw_per_min * hours[rows] * 60.0
            rhs[rows] = step_ramp
            now = snaps[position].mining_now_mw
            rhs[rows.start] = cap[0] if now is None else now + step_ramp[0]
        return rhs

    # ---------------------------------------------------------------------------- solve
    def plan(self, snapshot: FleetSnapshot) -> FleetPlan:
        """Assign the snapshot to the parameters, solve, and read every site's plan back."""
        started = time.perf_counter()
        arrays = self._assign(snapshot)
        try:
            self.problem.solve(solver=cp.HIGHS)  # type: ignore[no-untyped-call]
        except cp.error.SolverError as exc:
            raise SolverFailed("solver_error", str(exc)) from exc
        status = self.problem.status
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise SolverFailed(str(status))
        stats = self.problem.solver_stats
        solve_time = float(stats.solve_time or 0.0)
        plans = self._read_plans(snapshot, arrays, str(status), str(stats.solver_name), solve_time)
        wall = time.perf_counter() - started
        plans = {k: replace(p, wall_time_s=wall) for k, p in plans.items()}
        budget_dual = 0.0
        if "carbon_budget" in self.constraints:
            budget_dual = float(np.abs(self.constraints["carbon_budget"].dual_value))
        hours = arrays["hours"]
        facility = _clean(self.grid_import.value) + _clean(self.onsite.value)
        load_mwh = float(hours @ facility)
        unmatched_mwh = float(hours @ np.minimum(_clean(self.unmatched.value), facility))
        return FleetPlan(
            sites=plans,
            objective_usd=float(self.problem.value),
            carbon_budget_excess_t=_value(self.budget_excess),
            shadow_price_carbon_usd_per_t=budget_dual,
            fleet_cfe_score=1.0 - unmatched_mwh / load_mwh if load_mwh > 0 else 1.0,
            status=str(status),
            solver=str(stats.solver_name),
            solve_time_s=solve_time,
            wall_time_s=wall,
        )

    def _read_plans(
        self,
        snapshot: FleetSnapshot,
        arrays: dict[str, FloatArray],
        status: str,
        solver: str,
        solve_time: float,
    ) -> dict[str, Plan]:
        lay, t = self.layout, self.n_steps
        hours, price, intensity = arrays["hours"], arrays["price"], arrays["intensity"]
        mining = _clean(self.mining.value)
        gpu = _clean(self.gpu.value)
        grid_import = _clean(self.grid_import.value)
        onsite = _clean(self.onsite.value)
        unmatched = np.minimum(_clean(self.unmatched.value), grid_import)
        routed = (
            (self._to_site @ _clean(self.routed.value))
            if self.routed is not None
            else (np.zeros_like(mining))
        )
        batch = (
            (self._batch_to_site @ _clean(self.batch.value))
            if self.batch is not None
            else (np.zeros_like(mining))
        )
        gpu_value = np.concatenate(
            [snapshot.sites[s.site_id].curve("gpu_value_usd_per_mwh") for s in self.spec.sites]
        )
        route_value = self._routed_value_per_site()
        interconnect_dual = np.abs(np.asarray(self.constraints["interconnect"].dual_value))
        slacks = {name: _slack(self.constraints[name]) for name in _SITE_INEQUALITIES}
        ramp_slack = _slack(self.constraints["mining_ramp"])
        peak = np.concatenate(
            [snapshot.sites[s.site_id].curve("peak_cost_usd_per_mw") for s in self.spec.sites]
        )
        carbon_cost = carbon_cost_usd_per_mwh(intensity, 1.0) * arrays["carbon_price"]
        battery_rows = {site: k for k, site in enumerate(lay.battery_sites)}
        batch_short_by_site = np.zeros(lay.n_sites)
        if self.batch_short is not None:
            for slot, owner in enumerate(lay.batch_sites):
                batch_short_by_site[owner] += _clean(self.batch_short.value)[slot]

        plans = {}
        for position, site in enumerate(self.spec.sites):
            r = lay.rows(position)
            h = hours[r]
            facility = grid_import[r] + onsite[r]
            binding = [
                name for name in _SITE_INEQUALITIES if slacks[name][r.start] <= BINDING_TOLERANCE_MW
            ]
            if site.mining_ramp_up_mw_per_min is not None and (
                ramp_slack[r.start] <= BINDING_TOLERANCE_MW
            ):
                binding.append("mining_ramp")
            if mining[r.start] <= BINDING_TOLERANCE_MW:
                binding.append("mining_off")
            charge, discharge, soc = self._battery_rows(battery_rows.get(position), t)
            total = float(np.sum(facility * h))
            plans[site.site_id] = Plan(
                mining_mw=mining[r],
                gpu_mw=gpu[r],
                routed_gpu_mw=routed[r],
                batch_mw=batch[r],
                grid_import_mw=grid_import[r],
                onsite_cfe_used_mw=onsite[r],
                battery_charge_mw=charge,
                battery_discharge_mw=discharge,
                battery_soc_mwh=soc,
                gpu_shortfall_mw=_clean(self.shortfall.value)[r],
                signal_excess_mw=_clean(self.excess.value)[r],
                batch_shortfall_mwh=float(batch_short_by_site[position]),
                energy_cost_usd=energy_cost_usd(grid_import[r], h, price[r]),
                peak_cost_usd=grid_import[r] * peak[r],
                mining_revenue_usd=mining[r] * h * arrays["revenue"][r],
                gpu_revenue_usd=gpu[r] * h * gpu_value[r] + route_value[r],
                emissions_kg=emissions_kg(grid_import[r], h, intensity[r]),
                emissions_market_kg=emissions_kg(unmatched[r], h, intensity[r]),
                cfe_score=1.0 - float(np.sum(unmatched[r] * h)) / total if total > 0 else 1.0,
                shadow_price_interconnect_usd_per_mwh=interconnect_dual[r] / h,
                mining_breakeven_usd_per_mwh=arrays["revenue"][r] / site.pue - carbon_cost[r],
                binding_first_step=tuple(binding),
                objective_usd=float(self.problem.value),
                status=status,
                solver=solver,
                solve_time_s=solve_time,
                wall_time_s=0.0,
            )
        return plans

    def _routed_value_per_site(self) -> FloatArray:
        if self.routed is None:
            return np.zeros(self.layout.n_sites * self.n_steps)
        value_per_flow = _clean(self.routed.value) * np.asarray(self.p_route_value.value)
        return np.asarray(self._to_site @ value_per_flow, dtype=float)

    def _battery_rows(self, k: int | None, t: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        if k is None or self.charge is None or self.discharge is None or self.soc is None:
            zeros = np.zeros(t)
            return zeros, zeros, zeros
        rows = slice(k * t, (k + 1) * t)
        return (
            _clean(self.charge.value)[rows],
            _clean(self.discharge.value)[rows],
            _clean(self.soc.value)[rows],
        )


def _slack(constraint: cp.Constraint) -> FloatArray:
    """Non-negative slack of an inequality constraint (cvxpy stores ``lhs - rhs <= 0``)."""
    return np.asarray(-np.atleast_1d(constraint.expr.value), dtype=float)


def _value(variable: cp.Variable | None) -> float:
    if variable is None or variable.value is None:
        return 0.0
    return float(variable.value)


def _clean(values: FloatArray | None) -> FloatArray:
    """Solver output as floats, with round-off negatives and dust clipped to zero."""
    if values is None:
        raise SolverFailed("no_values", "solver reported optimal but returned no values")
    array = np.asarray(values, dtype=float)
    return np.where(np.abs(array) < 1e-9, 0.0, np.maximum(array, 0.0))
