"""What the optimizer knows at one decision time: per-step curves over the horizon.

A snapshot is plain data built by the stream shell from past events only. Every curve has one
value per horizon step; ``signal_cap_mw`` is +inf where no grid signal is active.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.errors import SpecError
from optimizer.value import FloatArray

_CURVES_NONNEGATIVE = (
    "step_hours",
    "carbon_g_per_kwh",
    "hashprice_usd_per_th_day",
    "gpu_value_usd_per_mwh",
    "gpu_demand_mw",
    "gpu_floor_mw",
    "mining_available_mw",
)


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """Inputs for one site over the horizon (arrays of equal length, one entry per step)."""

    step_hours: FloatArray
    price_usd_per_mwh: FloatArray
    carbon_g_per_kwh: FloatArray
    hashprice_usd_per_th_day: FloatArray
    gpu_value_usd_per_mwh: FloatArray
    gpu_demand_mw: FloatArray
    gpu_floor_mw: FloatArray
    mining_available_mw: FloatArray
    signal_cap_mw: FloatArray
    carbon_price_usd_per_t: float = 0.0

    @property
    def n_steps(self) -> int:
        return len(self.step_hours)

    def validate(self, n_steps: int) -> None:
        """Raise :class:`SpecError` naming the first malformed curve."""
        for name in (*_CURVES_NONNEGATIVE, "price_usd_per_mwh", "signal_cap_mw"):
            curve = np.asarray(getattr(self, name), dtype=float)
            if curve.shape != (n_steps,):
                raise SpecError(name, f"expected {n_steps} steps, got shape {curve.shape}")
            # +inf is how "no signal active" is spelled; every other curve must be finite.
            infinite_ok = name == "signal_cap_mw"
            bad = (np.isnan(curve) | (curve < 0)) if infinite_ok else ~np.isfinite(curve)
            if bad.any():
                raise SpecError(name, f"non-finite or invalid value at step {int(np.argmax(bad))}")
            if name in _CURVES_NONNEGATIVE and (curve < 0).any():
                raise SpecError(name, f"negative value at step {int(np.argmax(curve < 0))}")
        if (np.asarray(self.step_hours) <= 0).any():
            raise SpecError("step_hours", "every step must be longer than zero")
        if not np.isfinite(self.carbon_price_usd_per_t) or self.carbon_price_usd_per_t < 0:
            raise SpecError("carbon_price_usd_per_t", "must be finite and >= 0")
