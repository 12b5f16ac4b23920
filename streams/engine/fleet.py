"""The fleet file: which sites exist, their physical limits, price node and carbon region.

Read from TOML (``[[sites]]`` tables) and validated strictly; translated into the optimizer's
:class:`~optimizer.SiteSpec` here, so the optimizer never sees configuration types.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from optimizer import BatterySpec, ReserveSpec, SiteSpec
from schemas import ReserveProduct
from schemas.base import Identifier
from streams.engine.tomlfiles import first_error, read_toml
from streams.errors import GridshiftError


class SiteConfig(BaseModel):
    """One site as the operator describes it."""

    # strict: a value of the wrong TOML type is refused, never converted (interconnect_mw = true
    # is no 1 MW); an integer still reads as a float. A TOML array arrives as a list: a tuple
    # field relaxes only that step (``strict=False``), its items stay strict.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    site_id: Identifier
    description: str = ""
    price_node: Identifier
    carbon_region: Identifier
    interconnect_mw: float = Field(gt=0.0)
    pue: float = Field(default=1.0, ge=1.0, le=3.0)
    mining_capacity_mw: float = Field(ge=0.0)
    miner_efficiency_j_per_th: float = Field(gt=5.0, le=200.0)
    gpu_capacity_mw: float = Field(ge=0.0)
    gpu_floor_mw: float = Field(default=0.0, ge=0.0, description="Contracted take-or-pay MW.")
    gpu_demand_mw: float | None = Field(
        default=None, ge=0.0, description="Firm inference demand until events say otherwise."
    )
    gpu_value_usd_per_mwh: float = Field(default=1600.0, ge=0.0)
    carbon_price_usd_per_t: float = Field(default=0.0, ge=0.0)
    mining_ramp_up_mw_per_min: float | None = Field(
        default=None, ge=0.0, description="Staggered miner restarts; unset = no limit."
    )
    ppa_mw: float = Field(default=0.0, ge=0.0, description="Contracted carbon-free supply (MW).")
    onsite_cfe_mw: float = Field(default=0.0, ge=0.0, description="Behind-the-meter CFE (MW).")
    battery_power_mw: float = Field(default=0.0, ge=0.0)
    battery_energy_mwh: float = Field(default=0.0, ge=0.0)
    battery_round_trip_efficiency: float = Field(default=0.88, gt=0.0, le=1.0)
    reserve_products: tuple[ReserveProduct, ...] = Field(
        default=(),
        strict=False,
        description="Reserve products the site is qualified to sell with its mining load (a "
        "Load Resource: reg_up, rrs, ecrs, non_spin; reg_down would need load to add).",
    )
    reserve_max_mw: float | dict[ReserveProduct, float] | None = Field(
        default=None,
        description="Qualified MW per product: one number for each, or a table by product; "
        "unset = the mining capacity.",
    )

    @model_validator(mode="after")
    def _floor_within_capacity(self) -> Self:
        if self.gpu_floor_mw > self.gpu_capacity_mw:
            raise ValueError("gpu_floor_mw cannot exceed gpu_capacity_mw")
        if self.gpu_demand_mw is not None and self.gpu_demand_mw > self.gpu_capacity_mw:
            raise ValueError("gpu_demand_mw cannot exceed gpu_capacity_mw")
        return self

    @model_validator(mode="after")
    def _reserve_qualification(self) -> Self:
        products = self.reserve_products
        if len(set(products)) != len(products):
            raise ValueError(f"reserve_products lists a product twice: {list(products)}")
        if "reg_down" in products:
            # Regulation down asks a load to draw more; the model's reserve is curtailable
            # mining held running, which can only draw less.
            raise ValueError(
                "reserve_products: reg_down is not offered: mining can only curtail "
                "(a site offers reg_up, rrs, ecrs or non_spin)"
            )
        limits = self.reserve_max_mw
        if limits is not None and not products:
            raise ValueError("reserve_max_mw without reserve_products")
        if isinstance(limits, dict) and set(limits) != set(products):
            raise ValueError(
                "reserve_max_mw: give one MW value for each of reserve_products "
                f"({', '.join(products)}), got {', '.join(limits) or 'none'}"
            )
        for product in products:
            mw = self.reserve_max_for(product)
            if not 0.0 <= mw <= self.mining_capacity_mw:
                raise ValueError(
                    f"reserve_max_mw for {product}: {mw} MW is not within 0 and "
                    f"mining_capacity_mw ({self.mining_capacity_mw} MW)"
                )
        return self

    def reserve_max_for(self, product: str) -> float:
        """The MW the site is qualified to hold of ``product``."""
        limits = self.reserve_max_mw
        if limits is None:
            return self.mining_capacity_mw
        if isinstance(limits, dict):
            return float(limits[product])  # type: ignore[index]
        return limits

    @property
    def firm_gpu_demand_mw(self) -> float:
        """Firm inference demand: as configured, else the whole GPU fleet."""
        return self.gpu_capacity_mw if self.gpu_demand_mw is None else self.gpu_demand_mw

    def spec(self) -> SiteSpec:
        battery = None
        if self.battery_power_mw > 0 and self.battery_energy_mwh > 0:
            battery = BatterySpec(
                power_mw=self.battery_power_mw,
                energy_mwh=self.battery_energy_mwh,
                round_trip_efficiency=self.battery_round_trip_efficiency,
            )
        return SiteSpec(
            site_id=self.site_id,
            interconnect_mw=self.interconnect_mw,
            mining_capacity_mw=self.mining_capacity_mw,
            miner_efficiency_j_per_th=self.miner_efficiency_j_per_th,
            gpu_capacity_mw=self.gpu_capacity_mw,
            pue=self.pue,
            mining_ramp_up_mw_per_min=self.mining_ramp_up_mw_per_min,
            battery=battery,
            reserves=tuple(ReserveSpec(p, self.reserve_max_for(p)) for p in self.reserve_products),
        )


class PoolConfig(BaseModel):
    """Flexible GPU inference that any eligible site may serve (routed to cheap, clean power).

    Sites are eligible by region (``regions``: carbon region -> latency penalty $/MWh) or by id
    (``sites``: site id -> penalty).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    pool_id: Identifier
    demand_mw: float = Field(ge=0.0)
    value_usd_per_mwh: float = Field(ge=0.0)
    regions: dict[str, float] = Field(default_factory=dict)
    sites: dict[str, float] = Field(default_factory=dict)

    def eligible(self, fleet_sites: tuple[SiteConfig, ...]) -> tuple[tuple[str, float], ...]:
        """The sites among ``fleet_sites`` that may serve this pool, with their penalties."""
        out = {
            s.site_id: self.regions[s.carbon_region]
            for s in fleet_sites
            if s.carbon_region in self.regions
        }
        present = {s.site_id for s in fleet_sites}
        # A site named by id that is not in this model (not ready yet, another worker's) cannot
        # serve here: the model would reject an unknown site.
        out.update({site_id: p for site_id, p in self.sites.items() if site_id in present})
        return tuple(sorted(out.items()))


class Fleet(BaseModel):
    """All sites, unique by id, and the inference pools routed between them."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    sites: tuple[SiteConfig, ...] = Field(min_length=1, strict=False)
    pools: tuple[PoolConfig, ...] = Field(default=(), strict=False)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        repeated: set[str] = set()
        for site in self.sites:
            (repeated if site.site_id in seen else seen).add(site.site_id)
        if repeated:
            duplicates = sorted(repeated)
            raise ValueError(f"duplicate site_id: {', '.join(duplicates)}")
        for pool in self.pools:
            unknown = sorted(set(pool.sites) - seen)
            if unknown:
                raise ValueError(f"pool {pool.pool_id}: unknown sites {', '.join(unknown)}")
            if not pool.eligible(self.sites):
                raise ValueError(f"pool {pool.pool_id}: no eligible site")
        return self

    def by_id(self) -> dict[str, SiteConfig]:
        return {site.site_id: site for site in self.sites}


def example_sites_path() -> Path:
    """The two-site example fleet shipped with the package."""
    return Path(str(resources.files("streams").joinpath("examples", "sites.toml")))


def load_fleet(path: Path | None) -> Fleet:
    """Read and validate a fleet file; ``None`` means the shipped example fleet."""
    path = path or example_sites_path()
    raw = read_toml(path, "sites", hint=" (pass --sites FILE)")
    try:
        return Fleet.model_validate(raw)
    except ValidationError as exc:
        raise GridshiftError(f"sites file {path}: {first_error(exc, Fleet)}") from exc
