"""Grid-side events: node prices (grid.price.v1), carbon intensity (grid.carbon.v1), grid
signals such as demand response, coincident-peak alerts, emergencies and reserve deployments
(grid.signal.v1), reserve (ancillary service) capacity prices (grid.reserve.v1), and a site's
contracted carbon-free (PPA) supply (grid.ppa.v1)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.base import Identifier, IntervalEvent, NonNegativeMW, PriceUSDPerMWh


class PriceEvent(IntervalEvent):
    """A settlement or forecast price at one price node for one interval."""

    kind: Literal["price"] = "price"
    node: Identifier = Field(description="Price node, e.g. ERCOT HB_SOUTH.")
    market: Literal["real_time", "day_ahead", "forecast"] = "real_time"
    price_usd_per_mwh: PriceUSDPerMWh


class CarbonEvent(IntervalEvent):
    """Grid carbon intensity of one region for one interval (actual or forecast)."""

    kind: Literal["carbon"] = "carbon"
    region: Identifier = Field(description="Grid region, e.g. ERCOT.")
    basis: Literal["actual", "forecast"] = "actual"
    average_intensity_g_per_kwh: float = Field(ge=0.0, le=5_000.0)
    marginal_intensity_g_per_kwh: float | None = Field(default=None, ge=0.0, le=5_000.0)


#: Reserve (ancillary service) products, ERCOT's names: regulation up and down, responsive
#: reserve, contingency reserve, non-spinning reserve.
ReserveProduct = Literal["reg_up", "reg_down", "rrs", "ecrs", "non_spin"]


class ReservePriceEvent(IntervalEvent):
    """The clearing price of one reserve product in one region for one interval (usually an hour).

    A capacity price: paid per MW held ready over the interval ($/MW per hour, ERCOT's MCPC),
    whether or not the reserve is deployed. Only day-ahead prices for now.
    """

    kind: Literal["reserve_price"] = "reserve_price"
    region: Identifier = Field(description="Grid region, e.g. ERCOT (a site's carbon_region).")
    product: ReserveProduct
    market: Literal["day_ahead"] = "day_ahead"
    price_usd_per_mw_h: float = Field(
        ge=0.0, le=100_000.0, description="Capacity price, $ per MW held per hour."
    )


class GridSignalEvent(IntervalEvent):
    """A grid request asserted over [interval_start, interval_end) for a region or one site.

    A signal caps the site's grid import at ``limit_mw`` and/or asks for ``reduction_mw`` below
    its plan; an ``emergency`` level with neither means "curtail everything interruptible". A
    ``reserve_deployment`` calls on reserve the site sold: it curtails ``reduction_mw`` at once
    (required), and those MW count as the reserve delivered.
    """

    kind: Literal["signal"] = "signal"
    signal_id: Identifier
    signal_type: Literal[
        "demand_response", "coincident_peak", "emergency", "curtailment", "reserve_deployment"
    ]
    region: Identifier | None = None
    site_id: Identifier | None = None
    limit_mw: NonNegativeMW | None = None
    reduction_mw: NonNegativeMW | None = None
    incentive_usd_per_mwh: float = Field(default=0.0, ge=0.0, le=100_000.0)

    @model_validator(mode="after")
    def _has_target(self) -> Self:
        if (self.region is None) == (self.site_id is None):
            raise ValueError("exactly one of region or site_id must be set")
        if self.signal_type == "reserve_deployment" and self.reduction_mw is None:
            raise ValueError("a reserve_deployment needs reduction_mw (the MW deployed)")
        return self


class PpaSupplyEvent(IntervalEvent):
    """A site's contracted carbon-free supply (a PPA) over one interval, MW.

    A shaped PPA (wind, solar) delivers a different MW every hour: ``forecast`` is the supply
    expected (e.g. the contract's profile or a generation forecast, published ahead), ``actual``
    the metered delivery, which replaces the forecast of its interval. Hourly CFE matching counts
    the site's grid import up to this MW as carbon-free. Where no event covers an interval, the
    engine plans with the site's flat ``ppa_mw`` from the sites file, and says so.
    """

    kind: Literal["ppa_supply"] = "ppa_supply"
    site_id: Identifier
    basis: Literal["actual", "forecast"] = "forecast"
    supply_mw: NonNegativeMW = Field(description="Carbon-free MW contracted to the site.")
