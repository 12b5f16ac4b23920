"""Splitting a fleet LP into the independent problems it is made of, and putting their plans
back together.

Sites are coupled in the fleet LP only by the flexible pools routed between them (a pool's
demand is shared by its eligible sites) and by the fleet carbon budget (one cap over every
site). Everything else (limits, values, ramps, batteries, batch work, reserves, penalties) is
per site. The LP is therefore separable: its optimum is the union of the optima of its
connected components, and two components with the same shape and the same numbers have the
same optimum. :func:`components` finds the components; :func:`site_key` is the identity of a
lone site's problem without its id (so identical sites are solved once); :func:`merge` builds
the fleet-level plan from the parts.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from optimizer.plan import FleetPlan, Plan
from optimizer.snapshot import SiteSnapshot
from optimizer.spec import PoolSpec, SiteSpec

__all__ = ["ANONYMOUS", "components", "merge", "site_key"]

#: The site id a lone site's problem is solved under (so one compiled model serves every site of
#: the same shape). Not a valid fleet site id (they are identifiers), so it never collides.
ANONYMOUS = "\x00site"


def components(
    site_ids: Sequence[str], pools: Sequence[PoolSpec], *, carbon_budget: bool
) -> list[tuple[str, ...]]:
    """The groups of sites that must be solved together, in ``site_ids`` order.

    A carbon budget couples every site; a pool couples the sites eligible for it (transitively,
    through sites eligible for several pools). Every other site is a group of one.
    """
    if carbon_budget:
        return [tuple(site_ids)] if site_ids else []
    parent = {site_id: site_id for site_id in site_ids}

    def root(site_id: str) -> str:
        while parent[site_id] != site_id:
            parent[site_id] = parent[parent[site_id]]
            site_id = parent[site_id]
        return site_id

    for pool in pools:
        members = [site_id for site_id, _ in pool.eligible if site_id in parent]
        for other in members[1:]:
            parent[root(other)] = root(members[0])
    groups: dict[str, list[str]] = {}
    for site_id in site_ids:
        groups.setdefault(root(site_id), []).append(site_id)
    return [tuple(group) for group in groups.values()]


def _array_key(value: object) -> bytes | None:
    if value is None:
        return None
    return np.ascontiguousarray(value, dtype=float).tobytes()


def site_key(spec: SiteSpec, snapshot: SiteSnapshot) -> Hashable:
    """Everything a lone site's problem is made of except its id: equal keys, equal problems.
    ``spec`` is the site's spec under :data:`ANONYMOUS` (callers keep it, it is asked often).

    Arrays count by their bytes (bit-identical, no rounding); a NaN scalar never equals itself,
    which at worst costs a solve, never reuses a wrong plan.
    """
    curves = tuple(
        _array_key(getattr(snapshot, name))
        for name in (
            "step_hours",
            "price_usd_per_mwh",
            "carbon_g_per_kwh",
            "hashprice_usd_per_th_day",
            "gpu_value_usd_per_mwh",
            "gpu_demand_mw",
            "gpu_floor_mw",
            "mining_available_mw",
            "signal_cap_mw",
            "onsite_cfe_mw",
            "ppa_mw",
            "peak_cost_usd_per_mw",
            "reserve_deployed_mw",
        )
    )
    reserves = tuple(
        (
            product,
            _array_key(reserve.price_usd_per_mw_h),
            _array_key(reserve.max_mw),
            _array_key(reserve.committed_mw),
        )
        for product, reserve in sorted(snapshot.reserves.items())
    )
    scalars = (
        snapshot.carbon_price_usd_per_t,
        snapshot.mining_now_mw,
        snapshot.battery_soc_mwh,
        snapshot.batch_jobs,
    )
    return spec, curves, reserves, scalars


def merge(
    sites: Mapping[str, Plan],
    parts: Sequence[tuple[FleetPlan, int, bool]],
    step_hours: Mapping[str, np.ndarray],
) -> FleetPlan:
    """The fleet plan of independent parts: ``sites`` maps every site to its plan, ``parts``
    are the part plans with how many times each stands in the fleet (identical sites share one
    part) and whether it was solved in this round (else reused), ``step_hours`` each site's
    step lengths (to weigh the fleet's CFE score).

    Objective and times add up (a part reused from an earlier round counts its objective, not
    its time: it was not solved again). A fleet with a carbon budget is one part, whose budget
    excess and shadow price are the fleet's. A part solved "optimal_inaccurate" makes the fleet
    so.
    """
    objective = sum(part.objective_usd * count for part, count, _ in parts)
    statuses = {part.status for part, _, _ in parts}
    status = "optimal" if statuses <= {"optimal"} else "optimal_inaccurate"
    load = unmatched = 0.0
    for site_id, plan in sites.items():
        facility = float(np.dot(plan.grid_import_mw + plan.onsite_cfe_used_mw, step_hours[site_id]))
        load += facility
        unmatched += (1.0 - plan.cfe_score) * facility
    return FleetPlan(
        sites=dict(sites),
        objective_usd=float(objective),
        # A budget couples every site: then there is one part, and these are its own.
        carbon_budget_excess_t=sum(part.carbon_budget_excess_t for part, _, _ in parts),
        shadow_price_carbon_usd_per_t=max(
            (part.shadow_price_carbon_usd_per_t for part, _, _ in parts), default=0.0
        ),
        fleet_cfe_score=1.0 - unmatched / load if load > 0 else 1.0,
        status=status,
        solver=parts[0][0].solver if parts else "HIGHS",
        solve_time_s=sum(part.solve_time_s for part, _, fresh in parts if fresh),
        wall_time_s=sum(part.wall_time_s for part, _, fresh in parts if fresh),
    )
