"""Turning a grid history into the input events the live pipeline consumes, in event-time order.

For each interval: the day-ahead prices and the PPA supply forecasts released by then (when the
history has them), the day's hashprice (once per day, when that column is present), each
region's carbon intensity (when its value or hour changes), then each node's real-time price. A
replay sends what a live feed would have sent, in the same order.

Day-ahead prices are the forecast beyond the last real-time price. They are released as their
market publishes them (:func:`day_ahead_release`, the one place this rule lives): a market in
:data:`DAY_AHEAD_PUBLICATION` posts the prices of its operating day D (a calendar day in its own
time zone) at a fixed local time on D-1 (ERCOT: 13:30 America/Chicago, when its day-ahead
market results are posted); a region without an entry has a day's prices
:data:`DAY_AHEAD_RELEASE` before that UTC day starts. The first day of a history has its
day-ahead prices from its first interval.

A shaped PPA's expected hourly supply (:attr:`GridHistory.ppa`) is released
:data:`DAY_AHEAD_RELEASE` before its UTC day: a contract profile (or a generation forecast) is
known at least that early, whatever the market.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel

from schemas import CarbonEvent, HashpriceEvent, PpaSupplyEvent, PriceEvent, topic_for
from streams.backtest.history import GridHistory

#: The topics the replayed events go on (named by the contract; looked up once, not per event).
PRICE_TOPIC = topic_for(PriceEvent).name
CARBON_TOPIC = topic_for(CarbonEvent).name
HASHPRICE_TOPIC = topic_for(HashpriceEvent).name
PPA_TOPIC = topic_for(PpaSupplyEvent).name

#: How long before a (UTC) day its day-ahead prices become known, in a region without an entry
#: in :data:`DAY_AHEAD_PUBLICATION` (and its PPA supply forecasts, in every region).
DAY_AHEAD_RELEASE = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Publication:
    """When a market posts its day-ahead prices: at ``posted`` (local time) on the day before
    each operating day, a calendar day in ``zone``."""

    zone: ZoneInfo
    posted: time


#: Day-ahead publication per region (the history's ``region`` column). ERCOT: DAM results are
#: posted about 13:30 Central on the day before the operating day (the market closes at 10:00).
DAY_AHEAD_PUBLICATION: dict[str, Publication] = {
    "ERCOT": Publication(ZoneInfo("America/Chicago"), time(13, 30)),
}


def day_ahead_release(start: datetime, region: str) -> datetime:
    """When the day-ahead price of the interval starting at ``start`` (aware) becomes known."""
    rule = DAY_AHEAD_PUBLICATION.get(region)
    if rule is None:
        return start.replace(hour=0, minute=0, second=0, microsecond=0) - DAY_AHEAD_RELEASE
    day = start.astimezone(rule.zone).date() - timedelta(days=1)
    return datetime.combine(day, rule.posted, rule.zone).astimezone(start.tzinfo)


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
    releases = _day_ahead_releases(
        starts, ends, nodes, regions, _column(frame, "day_ahead_price_usd_per_mwh", n)
    )
    if history.ppa is not None and len(history.ppa):
        releases = sorted(releases + _ppa_releases(history.ppa), key=lambda item: item[0])
    last_day: datetime | None = None
    last_carbon: dict[str, tuple[datetime, float]] = {}
    batch: IntervalBatch | None = None
    for i in range(n):
        start, end, node, region = starts[i], ends[i], nodes[i], regions[i]
        if batch is None or batch.start != start:
            if batch is not None:
                yield batch
            batch = IntervalBatch(start)
            while releases and releases[0][0] <= start:
                batch.events.extend(releases.pop(0)[1])
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        hashprice = hashprices[i]
        if day != last_day and math.isfinite(hashprice) and hashprice > 0:
            last_day = day
            batch.events.append(
                (
                    HASHPRICE_TOPIC,
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
                    CARBON_TOPIC,
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
                PRICE_TOPIC,
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


Release = tuple[datetime, list[tuple[str, BaseModel]]]


def _day_ahead_releases(
    starts: list[datetime],
    ends: list[datetime],
    nodes: list[str],
    regions: list[str],
    prices: list[float],
) -> list[Release]:
    """Day-ahead price events grouped by when they become known, oldest release first."""
    by_release: dict[datetime, list[tuple[str, BaseModel]]] = {}
    for start, end, node, region, price in zip(starts, ends, nodes, regions, prices, strict=True):
        if not math.isfinite(price):
            continue
        by_release.setdefault(day_ahead_release(start, region), []).append(
            (
                PRICE_TOPIC,
                PriceEvent(
                    interval_start=start,
                    interval_end=end,
                    node=node,
                    market="day_ahead",
                    price_usd_per_mwh=price,
                ),
            )
        )
    return sorted(by_release.items(), key=lambda item: item[0])


def _ppa_releases(rows: pd.DataFrame) -> list[Release]:
    """PPA supply forecasts grouped by when they become known (with their day's day-ahead
    prices), oldest release first."""
    by_release: dict[datetime, list[tuple[str, BaseModel]]] = {}
    starts = list(rows["interval_start_utc"].dt.to_pydatetime())
    ends = list(rows["interval_end_utc"].dt.to_pydatetime())
    sites = rows["site_id"].astype(str).tolist()
    supply = rows["supply_mw"].astype(float).tolist()
    for start, end, site_id, mw in zip(starts, ends, sites, supply, strict=True):
        if not math.isfinite(mw):
            continue
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        by_release.setdefault(day - DAY_AHEAD_RELEASE, []).append(
            (
                PPA_TOPIC,
                PpaSupplyEvent(
                    interval_start=start,
                    interval_end=end,
                    site_id=site_id,
                    supply_mw=max(0.0, mw),
                ),
            )
        )
    return sorted(by_release.items(), key=lambda item: item[0])
