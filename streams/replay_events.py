"""Turning history rows into the input events the live pipeline consumes, in event-time order.

Carbon is published per hour and hashprice per day (their native resolution in the data), each
when it first changes, so a replay sends what a live feed would have sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from pydantic import BaseModel

from schemas import CarbonEvent, HashpriceEvent, PriceEvent
from streams.history import ERCOT_STEP, GridRow


def row_events(
    rows: list[GridRow], node: str, region: str
) -> Iterator[tuple[GridRow, list[tuple[str, BaseModel]]]]:
    """For each row, the (topic, event) pairs to publish before its decision is due."""
    last_hour = None
    last_day = None
    for row in rows:
        events: list[tuple[str, BaseModel]] = []
        start = row.interval_start
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        if day != last_day:
            last_day = day
            events.append(
                (
                    "market.hashprice.v1",
                    HashpriceEvent(
                        interval_start=day,
                        interval_end=day + timedelta(days=1),
                        hashprice_usd_per_th_day=row.hashprice_usd_per_th_day,
                        btc_usd=row.btc_usd,
                    ),
                )
            )
        hour = start.replace(minute=0, second=0, microsecond=0)
        if hour != last_hour:
            last_hour = hour
            events.append(
                (
                    "grid.carbon.v1",
                    CarbonEvent(
                        interval_start=hour,
                        interval_end=hour + timedelta(hours=1),
                        region=region,
                        average_intensity_g_per_kwh=row.carbon_g_per_kwh,
                    ),
                )
            )
        events.append(
            (
                "grid.price.v1",
                PriceEvent(
                    interval_start=start,
                    interval_end=start + ERCOT_STEP,
                    node=node,
                    price_usd_per_mwh=row.rt_price_usd_per_mwh,
                ),
            )
        )
        yield row, events
