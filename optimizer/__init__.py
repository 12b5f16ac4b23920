"""The dispatch core: a pure function of a snapshot. No clock, environment, files or Kafka, and
no imports from ``schemas`` or ``streams``: the stream shell translates events into these types."""

from optimizer.errors import OptimizerError, SolverFailed, SpecError
from optimizer.fleet import FleetModel
from optimizer.horizon import Horizon
from optimizer.model import DispatchModel
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
