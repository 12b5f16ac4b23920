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

import dataclasses
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from optimizer.plan import FleetPlan, Plan
from optimizer.snapshot import ReserveSnapshot, SiteSnapshot
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


def _fields_of(cls: type, kind: str) -> tuple[str, ...]:
    """The fields of dataclass ``cls`` whose annotation names ``kind``."""
    return tuple(f.name for f in dataclasses.fields(cls) if kind in str(f.type))


# Every field of a snapshot counts in a site's key, sorted by kind once here: a curve added to
# the snapshot later is keyed by its bytes without a change here, anything else as its value.
_CURVES = _fields_of(SiteSnapshot, "FloatArray")
_RESERVE_CURVES = _fields_of(ReserveSnapshot, "FloatArray")
_SCALARS = tuple(
    f.name
    for f in dataclasses.fields(SiteSnapshot)
    if f.name not in _CURVES and f.name != "reserves"
)
assert tuple(f.name for f in dataclasses.fields(ReserveSnapshot)) == _RESERVE_CURVES


def _array_key(value: np.ndarray | None) -> bytes | None:
    if value is None:
        return None
    return np.ascontiguousarray(value, dtype=float).tobytes()


def site_key(spec: SiteSpec, snapshot: SiteSnapshot) -> Hashable:
    """Everything a lone site's problem is made of except its id: equal keys, equal problems.
    ``spec`` is the site's spec under :data:`ANONYMOUS` (callers keep it, it is asked often).

    Every field of the snapshot counts; arrays by their bytes (bit-identical, no rounding). A
    NaN scalar never equals itself, which at worst costs a solve, never reuses a wrong plan.
    """
    curves = tuple(_array_key(getattr(snapshot, name)) for name in _CURVES)
    reserves = tuple(
        (product, *(_array_key(getattr(reserve, name)) for name in _RESERVE_CURVES))
        for product, reserve in sorted(snapshot.reserves.items())
    )
    scalars = tuple(getattr(snapshot, name) for name in _SCALARS)
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
