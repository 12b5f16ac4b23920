"""ERCOT's day-ahead ancillary-service clearing prices for capacity (MCPC, $/MW per hour) as
``grid.reserve.v1`` events, one per product and hour.

ERCOT clears reserve in the day-ahead market run on D-1 and posts the MCPCs of operating day
D around 13:30 Central on D-1 (report NP4-188-CD). gridstatus reads that document with
``Ercot().get_as_prices(date=D)`` (gridstatus 0.37.0: ``date`` is the *delivery* day; it looks
for the document published on D-1). Its answer, after ``_finalize_as_price_df(pivot=True)``:
``Time``, ``Interval Start``, ``Interval End`` (tz-aware US/Central, hourly), ``Market``
(``"DAM"``), and one float column per product, named as :data:`PRODUCT_COLUMNS` lists (a
product missing from the document, e.g. ECRS before 2023-06-10, is a column of ``None``).

Two feeds poll it: ``today`` (D, published yesterday: its absence is an error) and ``ahead``
(D+1: not asked before ``ahead_from_hour`` Central; "not published yet" until
``ahead_late_hour``, a note rather than an error; after that the poll fails and /health
says so). Their own source rather than a third market of ``gridshift source iso ERCOT``: a
once-a-day document with its own publication clock, ERCOT only, and no price nodes, so its
"not published yet" never backs off the price polling.

:func:`reserve_records` is pure: the frame in, events and rejected rows out. A NaN, ``None``
or negative price, another market or a bad interval is rejected and counted, never published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from schemas import ReservePriceEvent, ReserveProduct, topic_for
from streams.errors import GridshiftError
from streams.sources.checkpoint import Record
from streams.sources.config import ReserveConfig
from streams.sources.iso import (
    call_gridstatus,
    first_error,
    interval_of,
    number_of,
    require_columns,
)
from streams.sources.loop import FeedResult, Rejected

RESERVE_TOPIC = topic_for(ReservePriceEvent).name
METHOD = "get_as_prices"
CENTRAL = ZoneInfo("America/Chicago")
#: gridstatus's column (``Ercot._finalize_as_price_df``) -> the contract's product.
PRODUCT_COLUMNS: dict[str, ReserveProduct] = {
    "Regulation Up": "reg_up",
    "Regulation Down": "reg_down",
    "Responsive Reserves": "rrs",
    "ERCOT Contingency Reserve Service": "ecrs",
    "Non-Spinning Reserves": "non_spin",
}
#: The ``Market`` value gridstatus writes on every row of the day-ahead document.
MARKET_VALUE = "DAM"


def reserve_records(frame: Any, *, region: str, products: Sequence[ReserveProduct]) -> FeedResult:
    """``grid.reserve.v1`` records of ``products`` from a ``get_as_prices`` frame."""
    columns = {product: column for column, product in PRODUCT_COLUMNS.items()}
    wanted = [columns[product] for product in products]
    require_columns(frame, ["Interval Start", "Interval End", "Market", *wanted], METHOD)
    # A whole column of None/NaN: the document has no such product (ECRS before June 2023);
    # a single missing hour of a product the document has is a malformed row.
    present = [column for column in wanted if not frame[column].isna().all()]
    selected = frame[["Interval Start", "Interval End", "Market", *present]]
    result = FeedResult()
    for row in selected.itertuples(index=False, name=None):
        start_raw, end_raw, market, *prices = row
        where = f"{region} {start_raw}"
        if market != MARKET_VALUE:
            result.rejected.append(Rejected("wrong_market", f"{where}: market {market!r}"))
            continue
        times = interval_of(start_raw, end_raw, where, result)
        if times is None:
            continue
        for column, value in zip(present, prices, strict=True):
            product = PRODUCT_COLUMNS[column]
            price = number_of(value, f"{where} {product}", result)
            if price is None:
                continue
            try:
                event = ReservePriceEvent(
                    interval_start=times[0],
                    interval_end=times[1],
                    region=region,
                    product=product,
                    price_usd_per_mw_h=price,
                )
            except ValidationError as exc:
                result.rejected.append(
                    Rejected("invalid_event", f"{where} {product}: {first_error(exc)}")
                )
                continue
            result.records.append(Record(f"{RESERVE_TOPIC}/{region}/{product}", times[0], event))
    return result


def not_published(exc: BaseException) -> bool:
    """Whether gridstatus failed because ERCOT has no such document (yet): its
    ``_get_document`` takes ``max()`` of an empty document list, or a reader raises its
    ``NoDataFoundException``."""
    cause = exc.__cause__ if isinstance(exc, GridshiftError) and exc.__cause__ else exc
    if type(cause).__name__ == "NoDataFoundException":
        return True
    text = str(cause)
    return isinstance(cause, ValueError) and "max()" in text and "empty" in text


def _hour(clock: time) -> float:
    return clock.hour + clock.minute / 60 + clock.second / 3600


def _at(hour: float) -> str:
    minutes = round(hour * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class ReserveFeed:
    """The MCPCs of one operating day relative to now: ``today`` (D) or ``ahead`` (D+1)."""

    topic = RESERVE_TOPIC
    sink = None

    def __init__(
        self,
        *,
        which: Literal["today", "ahead"],
        client: Any,
        config: ReserveConfig,
        executor: Executor,
    ) -> None:
        self.name = which
        self.which = which
        self.client = client
        self.config = config
        self.executor = executor

    def operating_day(self, now: datetime) -> date:
        """D (Central) for ``today``, D+1 for ``ahead``."""
        today = now.astimezone(CENTRAL).date()
        return today + timedelta(days=1) if self.which == "ahead" else today

    async def fetch(self, now: datetime) -> FeedResult:
        """Ask gridstatus for the day's document (``ahead``: only once ERCOT may have it)."""
        day = self.operating_day(now)
        hour = _hour(now.astimezone(CENTRAL).time())
        config = self.config
        if self.which == "ahead" and hour < config.ahead_from_hour:
            return FeedResult(
                note=f"{day} not asked before {_at(config.ahead_from_hour)} Central "
                "(ERCOT posts the day-ahead market ~13:30)"
            )
        loop = asyncio.get_running_loop()
        try:
            frame = await loop.run_in_executor(self.executor, self._call, day)
        except GridshiftError as exc:
            if not not_published(exc):
                raise
            if self.which == "ahead" and hour < config.ahead_late_hour:
                return FeedResult(note=f"ERCOT has not published the {day} MCPCs yet")
            raise GridshiftError(
                f"ERCOT has not published the day-ahead MCPCs of {day}"
                + (f" by {_at(config.ahead_late_hour)} Central" if self.which == "ahead" else "")
            ) from exc
        return reserve_records(frame, region=config.region, products=config.products)

    async def close(self) -> None:
        """Nothing to release (gridstatus opens a connection per call)."""

    def _call(self, day: date) -> Any:
        return call_gridstatus(self.client, METHOD, date=day.isoformat())


def build_feeds(config: ReserveConfig, client: Any, executor: Executor) -> list[ReserveFeed]:
    """The ``today`` and ``ahead`` feeds (one line when gridstatus lacks the method)."""
    if not callable(getattr(client, METHOD, None)):
        raise GridshiftError(f"gridstatus {type(client).__name__} has no method {METHOD}")
    return [
        ReserveFeed(which=which, client=client, config=config, executor=executor)
        for which in ("today", "ahead")
    ]
