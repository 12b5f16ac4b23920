"""What the optimizer knows at one decision time: per-step curves over the horizon.

A snapshot is plain data built by the stream shell from past events only. Every curve has one
value per horizon step; ``signal_cap_mw`` is +inf where no grid signal is active. Optional inputs
default to "none": no on-site carbon-free supply, no PPA, no peak charge, no batch work, no
reserve offered, committed or deployed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
_OPTIONAL_NONNEGATIVE = ("onsite_cfe_mw", "ppa_mw", "peak_cost_usd_per_mw", "reserve_deployed_mw")
_ALL_CURVES = (*_CURVES_NONNEGATIVE, "price_usd_per_mwh", "signal_cap_mw", *_OPTIONAL_NONNEGATIVE)


@dataclass(frozen=True, slots=True)
class BatchJob:
    """Deferrable GPU work: ``energy_mwh`` of IT energy by the end of step ``deadline_step``."""

    energy_mwh: float
    deadline_step: int
    max_mw: float


@dataclass(frozen=True, slots=True)
class ReserveSnapshot:
    """One reserve product at one site over the horizon, per step.

    ``price_usd_per_mw_h`` is the capacity price (paid per MW held, per hour). ``max_mw`` is what
    may be offered in each step (``None`` or +inf: the qualified maximum of the spec; the
    stream shell puts 0 where the market for that hour has closed unsold and the committed MW
    where it has closed sold). ``committed_mw`` is what was sold: held unless a grid signal or
    the GPU floor forbids it (a penalised shortfall, never infeasible).
    ``same_sale_as_previous`` is 1 where the step is sold in the same market interval as the
    step before it (a 15-minute step inside an hour of an hourly market): the plan then holds
    the same MW in both, as the market sells them; ``None``: every step on its own.
    """

    price_usd_per_mw_h: FloatArray
    max_mw: FloatArray | None = None
    committed_mw: FloatArray | None = None
    same_sale_as_previous: FloatArray | None = None

    def validate(self, n_steps: int, where: str) -> None:
        tied = self.same_sale_as_previous
        if tied is not None:
            flags = np.asarray(tied, dtype=float)
            if flags.shape != (n_steps,):
                raise SpecError(
                    where + "same_sale_as_previous",
                    f"expected {n_steps} steps, got shape {flags.shape}",
                )
            if not np.isin(flags, (0.0, 1.0)).all() or (n_steps and flags[0] != 0.0):
                raise SpecError(
                    where + "same_sale_as_previous", "must be 0 or 1, and 0 at the first step"
                )
        for name in ("price_usd_per_mw_h", "max_mw", "committed_mw"):
            raw = getattr(self, name)
            if raw is None:
                continue
            curve = np.asarray(raw, dtype=float)
            if curve.shape != (n_steps,):
                raise SpecError(where + name, f"expected {n_steps} steps, got shape {curve.shape}")
            # +inf is a limit that does not bind (the qualified MW still applies).
            finite = np.isfinite(curve) | ((curve == np.inf) & (name == "max_mw"))
            bad = ~finite | (curve < 0)
            if bad.any():
                raise SpecError(
                    where + name, f"non-finite or negative at step {int(np.argmax(bad))}"
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
    onsite_cfe_mw: FloatArray | None = None
    ppa_mw: FloatArray | None = None
    peak_cost_usd_per_mw: FloatArray | None = None
    mining_now_mw: float | None = None
    battery_soc_mwh: float = 0.0
    batch_jobs: tuple[BatchJob, ...] = ()
    #: Per reserve product of the site's spec (every one, no other).
    reserves: Mapping[str, ReserveSnapshot] = field(default_factory=dict)
    #: Reserve being deployed (curtailed on the grid's instruction) per step: counted as held,
    #: since the MW it stops drawing are the reserve delivered.
    reserve_deployed_mw: FloatArray | None = None

    @property
    def n_steps(self) -> int:
        return len(self.step_hours)

    def curve(self, name: str) -> FloatArray:
        """An optional curve, zeros when absent."""
        value = getattr(self, name)
        if value is None:
            return np.zeros(self.n_steps)
        return np.asarray(value, dtype=float)

    def validate(self, n_steps: int, where: str = "") -> None:
        """Raise :class:`SpecError` naming the first malformed input (prefixed by ``where``)."""
        for name in _ALL_CURVES:
            raw = getattr(self, name)
            if raw is None:
                continue
            curve = np.asarray(raw, dtype=float)
            if curve.shape != (n_steps,):
                raise SpecError(where + name, f"expected {n_steps} steps, got shape {curve.shape}")
            # +inf is how "no signal active" is spelled; every other curve must be finite.
            infinite_ok = name == "signal_cap_mw"
            bad = (np.isnan(curve) | (curve < 0)) if infinite_ok else ~np.isfinite(curve)
            if bad.any():
                step = int(np.argmax(bad))
                raise SpecError(where + name, f"non-finite or invalid value at step {step}")
            if name in (*_CURVES_NONNEGATIVE, *_OPTIONAL_NONNEGATIVE) and (curve < 0).any():
                raise SpecError(where + name, f"negative value at step {int(np.argmax(curve < 0))}")
        if (np.asarray(self.step_hours) <= 0).any():
            raise SpecError(where + "step_hours", "every step must be longer than zero")
        self._validate_scalars(n_steps, where)
        # Checked here one site at a time; the fleet model checks the stacked curves at once
        # and comes here only to name a culprit.
        for product, reserve in self.reserves.items():
            reserve.validate(n_steps, f"{where}reserves.{product}.")

    def _validate_scalars(self, n_steps: int, where: str) -> None:
        for name in ("carbon_price_usd_per_t", "battery_soc_mwh"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise SpecError(where + name, "must be finite and >= 0")
        if self.mining_now_mw is not None and not (
            np.isfinite(self.mining_now_mw) and self.mining_now_mw >= 0
        ):
            raise SpecError(where + "mining_now_mw", "must be finite and >= 0")
        for k, job in enumerate(self.batch_jobs):
            label = f"{where}batch_jobs.{k}"
            if not 0 <= job.deadline_step < n_steps:
                raise SpecError(label + ".deadline_step", f"must be in [0, {n_steps - 1}]")
            if not (np.isfinite(job.energy_mwh) and job.energy_mwh >= 0):
                raise SpecError(label + ".energy_mwh", "must be finite and >= 0")
            if not (np.isfinite(job.max_mw) and job.max_mw >= 0):
                raise SpecError(label + ".max_mw", "must be finite and >= 0")


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """Flexible inference demand (MW) and its value ($/MWh) per step."""

    demand_mw: FloatArray
    value_usd_per_mwh: FloatArray


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """Every site's snapshot, every pool's demand, and the fleet carbon budget for the horizon."""

    sites: Mapping[str, SiteSnapshot]
    pools: Mapping[str, PoolSnapshot] = field(default_factory=dict)
    carbon_budget_t: float | None = None


def validate_all(snapshots: Sequence[SiteSnapshot], labels: Sequence[str], n_steps: int) -> None:
    """Validate many site snapshots at once; the error names the site and field.

    The common case (all valid) is checked on the stacked curves in a few vector operations;
    only when something is wrong are the sites walked one by one to name the culprit.
    """
    for snap, label in zip(snapshots, labels, strict=True):
        snap._validate_scalars(n_steps, label)
    healthy = True
    for name in _ALL_CURVES:
        curves = [getattr(s, name) for s in snapshots]
        present = [np.asarray(c, dtype=float) for c in curves if c is not None]
        if any(c.shape != (n_steps,) for c in present):
            healthy = False
            break
        if not present:
            continue
        stacked = np.concatenate(present)
        if name == "signal_cap_mw":
            bad = bool(np.isnan(stacked).any() or (stacked < 0).any())
        else:
            bad = not np.isfinite(stacked).all() or (
                name != "price_usd_per_mwh" and bool((stacked < 0).any())
            )
        if bad or (name == "step_hours" and bool((stacked <= 0).any())):
            healthy = False
            break
    if not healthy:
        for snap, label in zip(snapshots, labels, strict=True):
            snap.validate(n_steps, where=label)
