"""The dispatch core: a pure function of a snapshot. No clock, environment, files or Kafka, and
no imports from ``schemas`` or ``streams``: the stream shell translates events into these types."""

from optimizer.errors import OptimizerError, SolverFailed, SpecError
from optimizer.model import DispatchModel
from optimizer.plan import Plan
from optimizer.snapshot import SiteSnapshot
from optimizer.spec import SiteSpec
from optimizer.value import mining_revenue_usd_per_mwh

__all__ = [
    "DispatchModel",
    "OptimizerError",
    "Plan",
    "SiteSnapshot",
    "SiteSpec",
    "SolverFailed",
    "SpecError",
    "mining_revenue_usd_per_mwh",
]
