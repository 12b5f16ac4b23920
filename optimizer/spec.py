"""The physical description of one site: what it can draw and what its fleets can do.

A spec fixes the shape of the optimization problem; anything that changes interval to interval
lives in the snapshot instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optimizer.errors import SpecError


def require_finite(field: str, value: float, *, minimum: float | None = None) -> None:
    """Raise :class:`SpecError` naming ``field`` unless ``value`` is finite and >= ``minimum``."""
    if not math.isfinite(value):
        raise SpecError(field, f"must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(field, f"must be >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """One site behind one grid connection.

    ``pue`` scales IT load to grid import (cooling and losses): import = pue x (mining + GPU).
    """

    site_id: str
    interconnect_mw: float
    mining_capacity_mw: float
    miner_efficiency_j_per_th: float
    gpu_capacity_mw: float
    pue: float = 1.0

    def __post_init__(self) -> None:
        if not self.site_id:
            raise SpecError("site_id", "must not be empty")
        require_finite("interconnect_mw", self.interconnect_mw, minimum=0.0)
        require_finite("mining_capacity_mw", self.mining_capacity_mw, minimum=0.0)
        require_finite("gpu_capacity_mw", self.gpu_capacity_mw, minimum=0.0)
        require_finite("miner_efficiency_j_per_th", self.miner_efficiency_j_per_th)
        if self.miner_efficiency_j_per_th <= 0.0:
            raise SpecError("miner_efficiency_j_per_th", "must be > 0")
        require_finite("pue", self.pue, minimum=1.0)
