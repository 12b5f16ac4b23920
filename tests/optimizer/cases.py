"""Hand-checkable inputs for optimizer tests.

At 20 J/TH one MW computes 50,000 TH/s; at 0.048 $/TH/day that earns $2,400/day = $100/MWh,
so with PUE 1 and no carbon price the mining break-even is exactly $100/MWh.
"""

from __future__ import annotations

import numpy as np

from optimizer import SiteSnapshot, SiteSpec
from schemas import PriceEvent

HASHPRICE_100 = 0.048
#: The highest price the wire contract accepts (schemas/base.py: PriceUSDPerMWh), $/MWh.
SCHEMA_MAX_PRICE: float = next(
    bound.le
    for bound in PriceEvent.model_fields["price_usd_per_mwh"].metadata
    if getattr(bound, "le", None) is not None
)
SPEC = SiteSpec(
    site_id="a",
    interconnect_mw=30.0,
    mining_capacity_mw=25.0,
    miner_efficiency_j_per_th=20.0,
    gpu_capacity_mw=10.0,
)


def snapshot(
    n: int = 4,
    *,
    price: float = 50.0,
    carbon: float = 400.0,
    gpu_demand: float = 8.0,
    gpu_floor: float = 5.0,
    signal_cap: float = np.inf,
    mining_available: float = 25.0,
    carbon_price: float = 0.0,
) -> SiteSnapshot:
    ones = np.ones(n)
    return SiteSnapshot(
        step_hours=ones * 0.25,
        price_usd_per_mwh=ones * price,
        carbon_g_per_kwh=ones * carbon,
        hashprice_usd_per_th_day=ones * HASHPRICE_100,
        gpu_value_usd_per_mwh=ones * 1600.0,
        gpu_demand_mw=ones * gpu_demand,
        gpu_floor_mw=ones * gpu_floor,
        mining_available_mw=ones * mining_available,
        signal_cap_mw=ones * signal_cap,
        carbon_price_usd_per_t=carbon_price,
    )
