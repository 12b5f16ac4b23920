"""One valid example event per input topic (used by schema, codec and CLI tests)."""

from __future__ import annotations

from typing import Any

START = "2024-08-21T00:30:00Z"
END = "2024-08-21T00:45:00Z"

VALID: dict[str, dict[str, Any]] = {
    "grid.price.v1": {
        "interval_start": START,
        "interval_end": END,
        "node": "HB_SOUTH",
        "price_usd_per_mwh": 4857.82,
    },
    "grid.carbon.v1": {
        "interval_start": START,
        "interval_end": END,
        "region": "ERCOT",
        "average_intensity_g_per_kwh": 412.38,
    },
    "grid.signal.v1": {
        "interval_start": START,
        "interval_end": END,
        "signal_id": "ercot-eea-1",
        "signal_type": "emergency",
        "region": "ERCOT",
        "limit_mw": 10.0,
    },
    "grid.reserve.v1": {
        "interval_start": "2024-08-21T00:00:00Z",
        "interval_end": "2024-08-21T01:00:00Z",
        "region": "ERCOT",
        "product": "ecrs",
        "price_usd_per_mw_h": 498.0,
    },
    "grid.ppa.v1": {
        "interval_start": "2024-08-21T00:00:00Z",
        "interval_end": "2024-08-21T01:00:00Z",
        "site_id": "site-a",
        "supply_mw": 42.5,
    },
    "site.telemetry.v1": {
        "interval_start": START,
        "interval_end": END,
        "site_id": "site-a",
        "mining_mw": 20.0,
        "gpu_mw": 8.0,
        "miners_online": 5000,
        "mining_available_mw": 20.0,
    },
    "market.hashprice.v1": {
        "interval_start": "2024-08-21T00:00:00Z",
        "interval_end": "2024-08-22T00:00:00Z",
        "hashprice_usd_per_th_day": 0.0443,
    },
    "compute.demand.v1": {
        "interval_start": START,
        "interval_end": END,
        "site_id": "site-a",
        "contracted_floor_mw": 5.0,
        "demand_mw": 8.0,
        "value_usd_per_mwh": 1600.0,
    },
}
