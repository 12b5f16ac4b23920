"""``DispatchModel``: the single-site face of :class:`~optimizer.fleet.FleetModel`.

One site, one compiled problem; :meth:`plan` takes a :class:`SiteSnapshot` and returns that
site's :class:`Plan`. The fleet model underneath carries every feature (ramps, battery, batch,
PPA, signals); a one-site fleet simply has no coupling.
"""

from __future__ import annotations

import cvxpy as cp

from optimizer.fleet import (
    GPU_FLOOR_PENALTY_USD_PER_MWH,
    SIGNAL_PENALTY_USD_PER_MWH,
    FleetModel,
)
from optimizer.plan import Plan
from optimizer.snapshot import FleetSnapshot, SiteSnapshot
from optimizer.spec import FleetSpec, SiteSpec

__all__ = [
    "GPU_FLOOR_PENALTY_USD_PER_MWH",
    "SIGNAL_PENALTY_USD_PER_MWH",
    "DispatchModel",
]


class DispatchModel:
    """Compiled LP for one site over ``n_steps`` horizon steps."""

    def __init__(self, spec: SiteSpec, n_steps: int) -> None:
        self.spec = spec
        self.n_steps = n_steps
        self.fleet = FleetModel(FleetSpec(sites=(spec,)), n_steps)

    @property
    def problem(self) -> cp.Problem:
        return self.fleet.problem

    def plan(self, snapshot: SiteSnapshot) -> Plan:
        """Assign the snapshot, solve, and return the site's plan."""
        return self.fleet.plan(FleetSnapshot(sites={self.spec.site_id: snapshot})).sites[
            self.spec.site_id
        ]
