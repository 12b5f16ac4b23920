"""A clearly labelled SYNTHETIC grid week, used only when the real data folder is absent.

Deterministic (no randomness): a daily price shape with an evening peak, one scarcity spike on
day three, a carbon curve that follows the day, and a flat hashprice. Never presented as real.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pandas as pd

from streams.backtest.history import GridHistory

SYNTHETIC_LABEL = "SYNTHETIC DATA (no data folder found): not a real market"


def synthetic_week(start: datetime, node: str = "HB_SOUTH", region: str = "ERCOT") -> GridHistory:
    """Seven days of 15-minute SYNTHETIC rows starting at ``start``."""
    rows = []
    for k in range(7 * 96):
        when = start + k * timedelta(minutes=15)
        hour = (when.hour - 5) % 24 + when.minute / 60.0  # roughly Texas local time
        daily = 25.0 + 20.0 * math.sin(math.pi * (hour - 7.0) / 12.0) ** 2
        spike = 2500.0 if k // 96 == 2 and 19.0 <= hour < 20.5 else 0.0
        rows.append(
            {
                "interval_start_utc": pd.Timestamp(when),
                "interval_end_utc": pd.Timestamp(when + timedelta(minutes=15)),
                "node": node,
                "region": region,
                "price_usd_per_mwh": round(daily + spike, 2),
                "carbon_g_per_kwh": round(330.0 + 60.0 * math.sin(math.pi * hour / 24.0), 1),
                "hashprice_usd_per_th_day": 0.045,
            }
        )
    return GridHistory(pd.DataFrame(rows), 15, [SYNTHETIC_LABEL], "synthetic")
