"""The dispatch core: a pure function of a snapshot. No clock, environment, files or Kafka, and
no imports from ``schemas`` or ``streams``: the stream shell translates events into these types."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from optimizer.errors import OptimizerError, SolverFailed, SpecError
from optimizer.horizon import Horizon
from optimizer.plan import FleetPlan, Plan
from optimizer.snapshot import (
    BatchJob,
    FleetSnapshot,
    PoolSnapshot,
    ReserveSnapshot,
    SiteSnapshot,
)
from optimizer.spec import BatterySpec, FleetSpec, PoolSpec, ReserveSpec, SiteSpec
from optimizer.value import mining_revenue_usd_per_mwh

if TYPE_CHECKING:
    from optimizer.fleet import FleetModel
    from optimizer.model import DispatchModel

# The LP models import cvxpy (about a second): only code that builds one pays for it, so
# `gridshift --help`, settings and the schemas stay quick.
_MODELS = {"FleetModel": "optimizer.fleet", "DispatchModel": "optimizer.model"}


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        return getattr(importlib.import_module(_MODELS[name]), name)
    raise AttributeError(f"module 'optimizer' has no attribute {name!r}")


__all__ = [
    "BatchJob",
    "BatterySpec",
    "DispatchModel",
    "FleetModel",
    "FleetPlan",
    "FleetSnapshot",
    "FleetSpec",
    "Horizon",
    "OptimizerError",
    "Plan",
    "PoolSnapshot",
    "PoolSpec",
    "ReserveSnapshot",
    "ReserveSpec",
    "SiteSnapshot",
    "SiteSpec",
    "SolverFailed",
    "SpecError",
    "mining_revenue_usd_per_mwh",
]
