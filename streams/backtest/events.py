"""Turning a grid history into the input events the live pipeline consumes, in event-time order.

For each interval: the day's hashprice (once per day, when the column is present), each region's
carbon intensity (when its value or hour changes), then each node's real-time price. A replay
sends what a live feed would have sent, in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
from pydantic import BaseModel

from schemas import CarbonEvent, HashpriceEvent, PriceEvent
from streams.backtest.history import GridHistory


@dataclass
class IntervalBatch:
    """Everything to publish for one interval start, and the prices it carries (for display)."""

    start: datetime
    events: list[tuple[str, BaseModel]] = field(default_factory=list)
    prices: dict[str, float] = field(default_factory=dict)


def history_intervals(history: GridHistory) -> Iterator[IntervalBatch]:
    """The history as batches of events, one batch per interval start, in time order."""
    frame = history.frame
    n = len(frame)
    # Plain Python lists: iterating pandas rows (Arrow-backed strings) costs more than the events.
    starts = list(frame["interval_start_utc"].dt.to_pydatetime())
    ends = list(frame["interval_end_utc"].dt.to_pydatetime())
    nodes = frame["node"].astype(str).tolist()
    regions = frame["region"].astype(str).tolist()
    prices = frame["price_usd_per_mwh"].astype(float).tolist()
    carbons = _column(frame, "carbon_g_per_kwh", n)
    hashprices = _column(frame, "hashprice_usd_per_th_day", n)
    last_day: datetime | None = None
    last_carbon: dict[str, tuple[datetime, float]] = {}
    batch: IntervalBatch | None = None
    for i in range(n):
        start, end, node, region = starts[i], ends[i], nodes[i], regions[i]
        if batch is None or batch.start != start:
            if batch is not None:
                yield batch
            batch = IntervalBatch(start)
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        hashprice = hashprices[i]
        if day != last_day and math.isfinite(hashprice) and hashprice > 0:
            last_day = day
            batch.events.append(
                (
                    "market.hashprice.v1",
                    HashpriceEvent(
                        interval_start=day,
                        interval_end=day + timedelta(days=1),
                        hashprice_usd_per_th_day=hashprice,
                    ),
                )
            )
        carbon = carbons[i]
        hour = start.replace(minute=0, second=0, microsecond=0)
        if math.isfinite(carbon) and last_carbon.get(region) != (hour, carbon):
            last_carbon[region] = (hour, carbon)
            batch.events.append(
                (
                    "grid.carbon.v1",
                    CarbonEvent(
                        interval_start=start,
                        interval_end=end,
                        region=region,
                        average_intensity_g_per_kwh=max(0.0, carbon),
                    ),
                )
            )
        batch.events.append(
            (
                "grid.price.v1",
                PriceEvent(
                    interval_start=start, interval_end=end, node=node, price_usd_per_mwh=prices[i]
                ),
            )
        )
        batch.prices[node] = prices[i]
    if batch is not None:
        yield batch


def _column(frame: pd.DataFrame, name: str, n: int) -> list[float]:
    if name not in frame.columns:
        return [math.nan] * n
    values: list[float] = frame[name].astype(float).tolist()
    return values
