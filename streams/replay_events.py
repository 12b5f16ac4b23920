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

from pydantic import BaseModel

from schemas import CarbonEvent, HashpriceEvent, PriceEvent
from streams.history import GridHistory


@dataclass
class IntervalBatch:
    """Everything to publish for one interval start, and the prices it carries (for display)."""

    start: datetime
    events: list[tuple[str, BaseModel]] = field(default_factory=list)
    prices: dict[str, float] = field(default_factory=dict)


def history_intervals(history: GridHistory) -> Iterator[IntervalBatch]:
    """The history as batches of events, one batch per interval start, in time order."""
    frame = history.frame
    has_carbon = "carbon_g_per_kwh" in frame.columns
    has_hashprice = "hashprice_usd_per_th_day" in frame.columns
    last_day: datetime | None = None
    last_carbon: dict[str, tuple[datetime, float]] = {}
    batch: IntervalBatch | None = None
    for row in frame.itertuples(index=False):
        start: datetime = row.interval_start_utc.to_pydatetime()
        end: datetime = row.interval_end_utc.to_pydatetime()
        if batch is None or batch.start != start:
            if batch is not None:
                yield batch
            batch = IntervalBatch(start)
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        hashprice = float(row.hashprice_usd_per_th_day) if has_hashprice else math.nan
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
        carbon = float(row.carbon_g_per_kwh) if has_carbon else math.nan
        hour = start.replace(minute=0, second=0, microsecond=0)
        if math.isfinite(carbon) and last_carbon.get(row.region) != (hour, carbon):
            last_carbon[row.region] = (hour, carbon)
            batch.events.append(
                (
                    "grid.carbon.v1",
                    CarbonEvent(
                        interval_start=start,
                        interval_end=end,
                        region=row.region,
                        average_intensity_g_per_kwh=max(0.0, carbon),
                    ),
                )
            )
        batch.events.append(
            (
                "grid.price.v1",
                PriceEvent(
                    interval_start=start,
                    interval_end=end,
                    node=row.node,
                    price_usd_per_mwh=float(row.price_usd_per_mwh),
                ),
            )
        )
        batch.prices[row.node] = float(row.price_usd_per_mwh)
    if batch is not None:
        yield batch
