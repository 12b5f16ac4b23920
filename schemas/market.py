"""Market-side events: mining revenue (market.hashprice.v1) and GPU compute demand and value
(compute.demand.v1)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.base import Identifier, IntervalEvent, NonNegativeMW


class HashpriceEvent(IntervalEvent):
    """Mining revenue per unit of hashrate, valid over the interval (usually one day)."""

    kind: Literal["hashprice"] = "hashprice"
    hashprice_usd_per_th_day: float = Field(gt=0.0, le=100.0)
    btc_usd: float | None = Field(default=None, gt=0.0, le=1e8)


class ComputeDemandEvent(IntervalEvent):
    """GPU inference demand and value at one site over the interval."""

    kind: Literal["compute_demand"] = "compute_demand"
    site_id: Identifier
    contracted_floor_mw: NonNegativeMW = Field(description="Take-or-pay SLA: MW that must run.")
    demand_mw: NonNegativeMW = Field(description="Firm inference demand, contract plus spot.")
    value_usd_per_mwh: float = Field(ge=0.0, le=100_000.0)

    @model_validator(mode="after")
    def _floor_within_demand(self) -> Self:
        if self.contracted_floor_mw > self.demand_mw:
            raise ValueError("contracted_floor_mw cannot exceed demand_mw")
        return self
