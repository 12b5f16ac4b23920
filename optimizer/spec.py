"""The physical description of a fleet: what each site can draw, what its fleets and battery can
do, and which GPU demand pools may be served where.

A spec fixes the shape of the optimization problem; anything that changes interval to interval
lives in the snapshot instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from optimizer.errors import SpecError


def require_finite(field_name: str, value: float, *, minimum: float | None = None) -> None:
    """Raise :class:`SpecError` naming the field unless ``value`` is finite and >= ``minimum``."""
    if not math.isfinite(value):
        raise SpecError(field_name, f"must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(field_name, f"must be >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class BatterySpec:
    """A battery at the site's meter. Efficiency is round trip (split evenly in and out)."""

    power_mw: float
    energy_mwh: float
    round_trip_efficiency: float = 0.88
    cycling_cost_usd_per_mwh: float = 2.0

    def __post_init__(self) -> None:
        require_finite("battery.power_mw", self.power_mw, minimum=0.0)
        require_finite("battery.energy_mwh", self.energy_mwh, minimum=0.0)
        require_finite("battery.cycling_cost_usd_per_mwh", self.cycling_cost_usd_per_mwh, minimum=0)
        if not 0.0 < self.round_trip_efficiency <= 1.0:
            raise SpecError("battery.round_trip_efficiency", "must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class ReserveSpec:
    """A reserve product the site is qualified to offer with its curtailable load (mining), up to
    ``max_mw``. The product is a name (e.g. ERCOT ``ecrs``); the model does not interpret it:
    every product is capacity held ready to curtail, paid per MW and hour."""

    product: str
    max_mw: float

    def __post_init__(self) -> None:
        if not self.product:
            raise SpecError("reserves.product", "must not be empty")
        require_finite(f"reserves.{self.product}.max_mw", self.max_mw, minimum=0.0)


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """One site behind one grid connection.

    ``pue`` scales IT load to facility load: facility = pue x (mining + GPU + batch).
    ``mining_ramp_up_mw_per_min`` limits how fast miners restart (they stop in seconds, but
    restarts are staggered); ``None`` means no limit. ``batch_slots`` is how many deferrable GPU
    batch jobs the site can carry at once (part of the problem's shape). ``reserves`` are the
    reserve products the site may sell with its mining load (part of the shape too).
    """

    site_id: str
    interconnect_mw: float
    mining_capacity_mw: float
    miner_efficiency_j_per_th: float
    gpu_capacity_mw: float
    pue: float = 1.0
    mining_ramp_up_mw_per_min: float | None = None
    battery: BatterySpec | None = None
    batch_slots: int = 0
    reserves: tuple[ReserveSpec, ...] = ()

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
        if self.mining_ramp_up_mw_per_min is not None:
            require_finite("mining_ramp_up_mw_per_min", self.mining_ramp_up_mw_per_min, minimum=0)
        if self.batch_slots < 0:
            raise SpecError("batch_slots", "must be >= 0")
        products = [r.product for r in self.reserves]
        if len(set(products)) != len(products):
            raise SpecError("reserves", f"a product is listed twice: {products}")

    @property
    def reserve_products(self) -> tuple[str, ...]:
        return tuple(r.product for r in self.reserves)


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """Flexible GPU inference demand that any eligible site may serve.

    ``eligible`` maps site id to a latency penalty in $/MWh (0 for the preferred site), so load
    moves to cheap and clean power unless the latency cost outweighs it.
    """

    pool_id: str
    eligible: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        if not self.pool_id:
            raise SpecError("pool_id", "must not be empty")
        if not self.eligible:
            raise SpecError(f"pools.{self.pool_id}.eligible", "needs at least one site")
        for site_id, penalty in self.eligible:
            require_finite(f"pools.{self.pool_id}.eligible.{site_id}", penalty, minimum=0.0)


CarbonAccounting = Literal["market", "location"]


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """Sites, routable demand pools, and how carbon is counted against price and budget.

    ``carbon_accounting`` picks what the carbon price and budget apply to: ``market`` (grid
    energy not matched by contracted carbon-free supply) or ``location`` (all grid energy).
    ``carbon_budget`` adds a fleet-wide emissions cap over the horizon (its value is an input).
    """

    sites: tuple[SiteSpec, ...]
    pools: tuple[PoolSpec, ...] = ()
    carbon_accounting: CarbonAccounting = "market"
    carbon_budget: bool = False
    site_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.sites:
            raise SpecError("sites", "a fleet needs at least one site")
        index = {}
        for position, site in enumerate(self.sites):
            if site.site_id in index:
                raise SpecError("sites", f"duplicate site_id {site.site_id!r}")
            index[site.site_id] = position
        object.__setattr__(self, "site_index", index)
        pool_ids = [p.pool_id for p in self.pools]
        if len(set(pool_ids)) != len(pool_ids):
            raise SpecError("pools", "duplicate pool_id")
        for pool in self.pools:
            for site_id, _ in pool.eligible:
                if site_id not in index:
                    raise SpecError(f"pools.{pool.pool_id}.eligible", f"unknown site {site_id!r}")
