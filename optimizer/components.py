"""Optional parts of the fleet LP, each owning its variables, parameters, constraints and
objective term: routable GPU pools, deferrable batch work, batteries, reserves and the carbon
budget.

A part exists only when the spec asks for it (it changes the problem's shape). Each part adds
into the shared load expressions through constant sparse maps and assigns its own parameters
from the snapshot, so the fleet model stays a short list of parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from optimizer.errors import SpecError
from optimizer.params import set_value
from optimizer.snapshot import PoolSnapshot, SiteSnapshot
from optimizer.spec import BatterySpec, FleetSpec
from optimizer.value import FloatArray

BATCH_PENALTY_USD_PER_MWH = 1.0e4
CARBON_BUDGET_PENALTY_USD_PER_T = 1.0e4


@dataclass(frozen=True, slots=True)
class Layout:
    """Index maps of the flat vectors: rows are site-major (site s, step t -> s*T + t)."""

    n_sites: int
    n_steps: int
    battery_sites: tuple[int, ...]
    batch_sites: tuple[int, ...]  # one entry per batch slot: the site it belongs to
    pairs: tuple[tuple[int, int, float], ...]  # (pool, site, latency penalty $/MWh)
    #: One entry per (site, reserve product) the site is qualified for, site-major.
    reserve_slots: tuple[tuple[int, str], ...] = ()

    @classmethod
    def of(cls, spec: FleetSpec, n_steps: int) -> Layout:
        sites = spec.sites
        return cls(
            n_sites=len(sites),
            n_steps=n_steps,
            battery_sites=tuple(i for i, s in enumerate(sites) if s.battery is not None),
            batch_sites=tuple(i for i, s in enumerate(sites) for _ in range(s.batch_slots)),
            pairs=tuple(
                (k, spec.site_index[site_id], penalty)
                for k, pool in enumerate(spec.pools)
                for site_id, penalty in pool.eligible
            ),
            reserve_slots=tuple((i, r.product) for i, s in enumerate(sites) for r in s.reserves),
        )

    @property
    def reserve_sites(self) -> tuple[int, ...]:
        """The sites with at least one reserve product, in site order."""
        return tuple(dict.fromkeys(site for site, _ in self.reserve_slots))

    def rows(self, site: int) -> slice:
        return slice(site * self.n_steps, (site + 1) * self.n_steps)


def block_rows(owners: tuple[int, ...], n_owners_total: int, n_steps: int) -> sp.csr_matrix:
    """Matrix adding each owned block of T rows into its owner's T rows (owner-major)."""
    if not owners:
        return sp.csr_matrix((n_owners_total * n_steps, 0))
    selector = sp.csr_matrix(
        (np.ones(len(owners)), (list(owners), range(len(owners)))),
        shape=(n_owners_total, len(owners)),
    )
    return sp.kron(selector, sp.eye(n_steps), format="csr")


def clean(values: FloatArray | None) -> FloatArray:
    """Solver output as floats, with round-off negatives and dust clipped to zero."""
    from optimizer.errors import SolverFailed  # noqa: PLC0415 - avoid a cycle at import

    if values is None:
        raise SolverFailed("no_values", "solver reported optimal but returned no values")
    array = np.asarray(values, dtype=float)
    return np.where(np.abs(array) < 1e-9, 0.0, np.maximum(array, 0.0))


@dataclass
class Contribution:
    """What a part adds to the shared expressions of the model."""

    constraints: dict[str, cp.Constraint] = field(default_factory=dict)
    objective: cp.Expression | float = 0.0
    it_load: cp.Expression | float = 0.0  # MW of IT load per site row (scaled by PUE)
    gpu_load: cp.Expression | float = 0.0  # MW on the site's GPUs
    facility: cp.Expression | float = 0.0  # MW at the meter not scaled by PUE


class Routing:
    """Flexible inference pools: flows per (pool, site) pair, valued net of latency penalty."""

    def __init__(self, spec: FleetSpec, layout: Layout) -> None:
        t, npairs, npools = layout.n_steps, len(layout.pairs), len(spec.pools)
        self.spec, self.layout = spec, layout
        self.flow = cp.Variable(npairs * t, nonneg=True, name="routed_gpu_mw")
        self.to_site = block_rows(tuple(s for _, s, _ in layout.pairs), layout.n_sites, t)
        self.demand = cp.Parameter(npools * t, nonneg=True, name="pool_demand_mw")
        self.route_value = cp.Parameter(npairs * t, name="route_usd_per_mw_step")
        to_pool = block_rows(tuple(p for p, _, _ in layout.pairs), npools, t)
        per_site = self.to_site @ self.flow
        self.contribution = Contribution(
            constraints={"pool_demand": to_pool @ self.flow <= self.demand},
            objective=self.route_value @ self.flow,
            it_load=per_site,
            gpu_load=per_site,
        )

    def assign(self, pools: Mapping[str, PoolSnapshot], hours: FloatArray) -> None:
        t = self.layout.n_steps
        demand, value = [], []
        for pool in self.spec.pools:
            snap = pools.get(pool.pool_id)
            if snap is None:
                raise SpecError(f"pools.{pool.pool_id}", "missing from the snapshot")
            for name in ("demand_mw", "value_usd_per_mwh"):
                curve = np.asarray(getattr(snap, name), dtype=float)
                if curve.shape != (t,) or not np.isfinite(curve).all() or (curve < 0).any():
                    raise SpecError(f"pools.{pool.pool_id}.{name}", f"needs {t} finite values >= 0")
            demand.append(np.asarray(snap.demand_mw, dtype=float))
            value.append(np.asarray(snap.value_usd_per_mwh, dtype=float))
        set_value(self.demand, np.concatenate(demand))
        set_value(
            self.route_value,
            np.concatenate(
                [
                    hours[self.layout.rows(site)] * (value[pool] - penalty)
                    for pool, site, penalty in self.layout.pairs
                ]
            ),
        )

    def per_site_mw(self) -> FloatArray:
        return np.asarray(self.to_site @ clean(self.flow.value), dtype=float)

    def per_site_value_usd(self) -> FloatArray:
        flows = clean(self.flow.value) * np.asarray(self.route_value.value)
        return np.asarray(self.to_site @ flows, dtype=float)


class BatchWork:
    """Deferrable batch jobs: energy by a deadline, at most ``max_mw``, in any step before it."""

    def __init__(self, spec: FleetSpec, layout: Layout) -> None:
        t, nj = layout.n_steps, len(layout.batch_sites)
        self.spec, self.layout = spec, layout
        self.power = cp.Variable(nj * t, nonneg=True, name="batch_mw")
        self.shortfall = cp.Variable(nj, nonneg=True, name="batch_shortfall_mwh")
        self.to_site = block_rows(layout.batch_sites, layout.n_sites, t)
        self.rate = cp.Parameter(nj * t, nonneg=True, name="batch_max_mw")
        self.hours = cp.Parameter(nj * t, nonneg=True, name="batch_step_hours")
        self.energy = cp.Parameter(nj, nonneg=True, name="batch_energy_mwh")
        per_job_sum = sp.kron(sp.eye(nj), np.ones((1, t)), format="csr")
        per_site = self.to_site @ self.power
        self.contribution = Contribution(
            constraints={
                "batch_rate": self.power <= self.rate,
                "batch_energy": per_job_sum @ cp.multiply(self.hours, self.power) + self.shortfall
                >= self.energy,
            },
            objective=-BATCH_PENALTY_USD_PER_MWH * cp.sum(self.shortfall),
            it_load=per_site,
            gpu_load=per_site,
        )

    def assign(self, snaps: list[SiteSnapshot], hours: FloatArray) -> None:
        t = self.layout.n_steps
        rate, job_hours, energy = [], [], []
        for position, site in enumerate(self.spec.sites):
            jobs = snaps[position].batch_jobs
            for slot in range(site.batch_slots):
                job = jobs[slot] if slot < len(jobs) else None
                open_steps = np.arange(t) <= (job.deadline_step if job else -1)
                rate.append(np.where(open_steps, job.max_mw if job else 0.0, 0.0))
                job_hours.append(hours[self.layout.rows(position)])
                energy.append(job.energy_mwh if job else 0.0)
        set_value(self.rate, np.concatenate(rate))
        set_value(self.hours, np.concatenate(job_hours))
        set_value(self.energy, np.asarray(energy))

    def per_site_mw(self) -> FloatArray:
        return np.asarray(self.to_site @ clean(self.power.value), dtype=float)

    def shortfall_by_site(self) -> FloatArray:
        out = np.zeros(self.layout.n_sites)
        for slot, owner in enumerate(self.layout.batch_sites):
            out[owner] += clean(self.shortfall.value)[slot]
        return out


class Batteries:
    """Batteries at the meter: state of charge after each step, cycling cost on discharge."""

    def __init__(self, spec: FleetSpec, layout: Layout) -> None:
        t, nb = layout.n_steps, len(layout.battery_sites)
        self.layout = layout
        self.specs: list[BatterySpec] = [
            b for b in (spec.sites[i].battery for i in layout.battery_sites) if b is not None
        ]
        self.charge = cp.Variable(nb * t, nonneg=True, name="battery_charge_mw")
        self.discharge = cp.Variable(nb * t, nonneg=True, name="battery_discharge_mw")
        self.soc = cp.Variable(nb * t, nonneg=True, name="battery_soc_mwh")
        self.charge_gain = cp.Parameter(nb * t, nonneg=True, name="charge_mwh_per_mw")
        self.discharge_loss = cp.Parameter(nb * t, nonneg=True, name="discharge_mwh_per_mw")
        self.soc_start = cp.Parameter(nb * t, nonneg=True, name="soc_start_mwh")
        self.cycling_cost = cp.Parameter(nb * t, nonneg=True, name="cycling_usd_per_mw_step")
        power = np.repeat([b.power_mw for b in self.specs], t)
        energy = np.repeat([b.energy_mwh for b in self.specs], t)
        soc_diff = sp.kron(sp.eye(nb), sp.eye(t) - sp.eye(t, k=-1), format="csr")
        self.contribution = Contribution(
            constraints={
                "battery_soc": soc_diff @ self.soc
                - cp.multiply(self.charge_gain, self.charge)
                + cp.multiply(self.discharge_loss, self.discharge)
                == self.soc_start,
                "battery_energy": self.soc <= energy,
                "battery_charge": self.charge <= power,
                "battery_discharge": self.discharge <= power,
            },
            objective=-(self.cycling_cost @ self.discharge),
            facility=block_rows(layout.battery_sites, layout.n_sites, t)
            @ (self.charge - self.discharge),
        )

    def assign(self, snaps: list[SiteSnapshot], hours: FloatArray) -> None:
        t = self.layout.n_steps
        gain, loss, start, cycling = [], [], [], []
        for position, battery in zip(self.layout.battery_sites, self.specs, strict=True):
            one_way = np.sqrt(battery.round_trip_efficiency)
            site_hours = hours[self.layout.rows(position)]
            gain.append(site_hours * one_way)
            loss.append(site_hours / one_way)
            soc0 = np.zeros(t)
            soc0[0] = min(snaps[position].battery_soc_mwh, battery.energy_mwh)
            start.append(soc0)
            cycling.append(site_hours * battery.cycling_cost_usd_per_mwh)
        set_value(self.charge_gain, np.concatenate(gain))
        set_value(self.discharge_loss, np.concatenate(loss))
        set_value(self.soc_start, np.concatenate(start))
        set_value(self.cycling_cost, np.concatenate(cycling))

    def rows_of(self, position: int) -> tuple[FloatArray, FloatArray, FloatArray] | None:
        if position not in self.layout.battery_sites:
            return None
        k = self.layout.battery_sites.index(position)
        rows = slice(k * self.layout.n_steps, (k + 1) * self.layout.n_steps)
        return (
            clean(self.charge.value)[rows],
            clean(self.discharge.value)[rows],
            clean(self.soc.value)[rows],
        )


class CarbonBudget:
    """A fleet-wide emissions cap over the horizon (tonnes), softened by a priced excess."""

    def __init__(self, n_rows: int, carbon_basis: cp.Variable) -> None:
        self.excess = cp.Variable(nonneg=True, name="carbon_budget_excess_t")
        self.tonnes_per_mw = cp.Parameter(n_rows, nonneg=True, name="t_co2_per_mw_step")
        self.budget = cp.Parameter(nonneg=True, name="carbon_budget_t")
        self.contribution = Contribution(
            constraints={
                "carbon_budget": self.tonnes_per_mw @ carbon_basis - self.excess <= self.budget
            },
            objective=-CARBON_BUDGET_PENALTY_USD_PER_T * self.excess,
        )

    def assign(self, budget_t: float | None, hours: FloatArray, intensity: FloatArray) -> None:
        if budget_t is None or not np.isfinite(budget_t) or budget_t < 0:
            raise SpecError("carbon_budget_t", "the fleet has a carbon budget: give one >= 0")
        set_value(self.tonnes_per_mw, hours * intensity / 1000.0)
        set_value(self.budget, budget_t)

    def shadow_price_usd_per_t(self) -> float:
        dual = self.contribution.constraints["carbon_budget"].dual_value
        return float(np.abs(dual)) if dual is not None else 0.0

    def excess_t(self) -> float:
        return float(self.excess.value) if self.excess.value is not None else 0.0
