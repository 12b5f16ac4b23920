"""Shared factories for tests at every layer: a hand-checkable site, and input events on a
15-minute grid from a fixed instant (the 2024-08-20 ERCOT scarcity evening)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import HashpriceEvent, PriceEvent, TelemetryEvent
from streams.engine.fleet import SiteConfig

T0 = datetime(2024, 8, 20, 17, 0, tzinfo=UTC)
Q = timedelta(minutes=15)


def mining_site(**overrides: object) -> SiteConfig:
    """A site whose numbers are easy to check by hand: pue 1, 20 J/TH, 30 MW interconnect."""
    values: dict[str, object] = {
        "site_id": "site-a",
        "price_node": "HB_SOUTH",
        "carbon_region": "ERCOT",
        "interconnect_mw": 30.0,
        "pue": 1.0,
        "mining_capacity_mw": 25.0,
        "miner_efficiency_j_per_th": 20.0,
        "gpu_capacity_mw": 8.0,
        "gpu_floor_mw": 5.0,
        "gpu_value_usd_per_mwh": 1600.0,
    }
    values.update(overrides)
    return SiteConfig.model_validate(values)


def price(k: int, value: float, node: str = "HB_SOUTH") -> PriceEvent:
    return PriceEvent(
        interval_start=T0 + k * Q, interval_end=T0 + (k + 1) * Q, node=node, price_usd_per_mwh=value
    )


def hashprice(value: float = 0.048) -> HashpriceEvent:
    day = T0.replace(hour=0)
    return HashpriceEvent(
        interval_start=day, interval_end=day + timedelta(days=1), hashprice_usd_per_th_day=value
    )


def telemetry(site_id: str, k: int, *, t0: datetime = T0, **fields: Any) -> TelemetryEvent:
    """Telemetry for interval k after t0 (defaults: 10 MW mining, 8 MW GPU, 25 MW ready)."""
    values: dict[str, Any] = {
        "mining_mw": 10.0,
        "gpu_mw": 8.0,
        "miners_online": 100,
        "mining_available_mw": 25.0,
        **fields,
    }
    return TelemetryEvent(
        interval_start=t0 + k * Q, interval_end=t0 + (k + 1) * Q, site_id=site_id, **values
    )
