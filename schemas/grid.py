"""Grid-side events: node prices (grid.price.v1), carbon intensity (grid.carbon.v1) and grid
signals such as demand response, coincident-peak alerts and emergencies (grid.signal.v1)."""

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


class GridSignalEvent(IntervalEvent):
    """A grid request asserted over [interval_start, interval_end) for a region or one site.

    A signal caps the site's grid import at ``limit_mw`` and/or asks for ``reduction_mw`` below
    its plan; an ``emergency`` level with neither means "curtail everything interruptible".
    """

    kind: Literal["signal"] = "signal"
    signal_id: Identifier
    signal_type: Literal["demand_response", "coincident_peak", "emergency", "curtailment"]
    region: Identifier | None = None
    site_id: Identifier | None = None
    limit_mw: NonNegativeMW | None = None
    reduction_mw: NonNegativeMW | None = None
    incentive_usd_per_mwh: float = Field(default=0.0, ge=0.0, le=100_000.0)

    @model_validator(mode="after")
    def _has_target(self) -> Self:
        if (self.region is None) == (self.site_id is None):
            raise ValueError("exactly one of region or site_id must be set")
        return self
