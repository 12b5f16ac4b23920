"""Reserve sold before a restart stays sold after it: a worker sells reserve for the coming hours,
stops, and a new worker on the same topics and group (its state rebuilt from the committed
inputs, its reserve book from its own published decisions) still holds the MW sold when those
hours come, although energy is then dear and the reserve price has fallen to nothing.

Every event here is SYNTHETIC (hand-set prices on a hand-checkable site), not market data: the
numbers are chosen so that the two outcomes cannot be confused. The commitment lead is the
worker setting (``GRIDSHIFT_RESERVE_COMMIT_LEAD_H``), shortened so a 6 h horizon can sell."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from schemas import HashpriceEvent, PriceEvent, ReservePriceEvent
from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.sdk import DecisionSubscriber, Publisher
from streams.settings import Settings
from tests.e2e.harness import DecisionLog, find_record, worker_on, worker_settings
from tests.factories import mining_site

pytestmark = pytest.mark.e2e

T0 = datetime(2024, 7, 1, 0, 0, tzinfo=UTC)  # synthetic hours (in the past: admitted as observed)
HOUR = timedelta(hours=1)
LEAD_H = 2  # hours T0+2h .. T0+5h are open to sell at T0 with a 6 h horizon
QUALIFIED_MW = 15.0
# 25 MW of miners at 20 J/TH, pue 1: a hashprice of 0.048 $/TH/day earns 100 $/MWh.
CHEAP, DEAR = 30.0, 500.0  # $/MWh: mining pays / mining loses 400 $/MWh


def reserve_fleet() -> Fleet:
    return Fleet(
        sites=(mining_site(reserve_products=("ecrs",), reserve_max_mw={"ecrs": QUALIFIED_MW}),)
    )


def settings_for(prefix: str) -> Settings:
    return worker_settings(
        prefix,
        horizon_fine_steps=6,
        horizon_fine_minutes=60,
        horizon_coarse_minutes=60,
        horizon_hours=6,
        reserve_commit_lead_h=LEAD_H,
    )


def price(hour: int, value: float) -> PriceEvent:
    start = T0 + hour * HOUR
    return PriceEvent(
        interval_start=start, interval_end=start + HOUR, node="HB_SOUTH", price_usd_per_mwh=value
    )


def reserve_prices(value: float) -> list[ReservePriceEvent]:
    return [
        ReservePriceEvent(
            interval_start=T0 + h * HOUR,
            interval_end=T0 + (h + 1) * HOUR,
            region="ERCOT",
            product="ecrs",
            price_usd_per_mw_h=value,
        )
        for h in range(10)
    ]


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def sold_hours(commitments: Any) -> dict[datetime, float]:
    """A decision's sold hours (JSON or model), as hour -> ECRS MW."""
    out = {}
    for c in commitments:
        row = c if isinstance(c, dict) else c.model_dump(mode="json")
        out[at(row["interval_start"])] = float(row["reserve_mw"].get("ecrs", 0.0))
    return out


async def publish_all(publisher: Publisher, events: Sequence[tuple[str, BaseModel]]) -> None:
    for topic, event in events:
        await publisher.publish(topic, event)
    await publisher.flush()


async def test_reserve_sold_before_a_restart_is_held_after_it(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    fleet = reserve_fleet()
    site = fleet.sites[0].site_id
    settings = settings_for(topic_prefix)
    day = T0.replace(hour=0)
    context: list[tuple[str, BaseModel]] = [
        (
            "market.hashprice.v1",
            HashpriceEvent(
                interval_start=day,
                interval_end=day + timedelta(days=1),
                hashprice_usd_per_th_day=0.048,
            ),
        ),
        *(("grid.reserve.v1", e) for e in reserve_prices(80.0)),
    ]

    # Before the restart: cheap energy, ECRS at 80 $/MW-h: the hours the lead leaves open sell.
    async with (
        worker_on(broker.bootstrap, fleet, settings) as worker,
        DecisionSubscriber(broker.bootstrap, topic_prefix=topic_prefix, from_beginning=True) as sub,
        Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher,
    ):
        log = DecisionLog(aiter(sub))
        # The reserve prices are in before the first round, which sells (a round without them
        # would sell the open hours at 0 MW, closing them).
        await publish_all(publisher, context)
        await worker.metrics.wait_consumed(len(context), timeout_s=30)
        await publish_all(publisher, [("grid.price.v1", price(0, CHEAP))])
        first = await log.wait_for(lambda d: d.site_id == site and d.interval_start == T0)
        await log.close()
    sold = sold_hours(first.reserve_commitments)
    # The lead setting reached the decider: exactly the hours starting 2 h or more ahead and
    # covered whole by the 6 h horizon were sold, each at the qualified MW.
    assert sold == {T0 + h * HOUR: QUALIFIED_MW for h in range(LEAD_H, 6)}, sold

    # After the restart: energy dear, ECRS worth nothing; the clock reaches a sold hour that is
    # now closer than the lead (it could not be sold again) and a new hour at the horizon's end.
    async with (
        worker_on(broker.bootstrap, fleet, settings) as worker,
        Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher,
    ):
        fallen = [("grid.reserve.v1", e) for e in reserve_prices(0.0)]
        await publish_all(publisher, fallen)
        await worker.metrics.wait_consumed(len(fallen), timeout_s=30)
        await publish_all(publisher, [("grid.price.v1", price(LEAD_H, DEAR))])
        # Read back by a plain Kafka consumer, as any client of the decision topic would.
        after = await find_record(
            broker.bootstrap,
            settings.topic("dispatch.decision.v1"),
            lambda d: (
                d["site_id"] == site
                and at(d["interval_start"]) == T0 + LEAD_H * HOUR
                and d["trigger"] == "price"
            ),
        )
    held = after["reserve_mw"].get("ecrs", 0.0)
    assert held == pytest.approx(sold[T0 + LEAD_H * HOUR], abs=1e-3), after["notes"]
    assert after["mining_mw"] >= held - 1e-3  # the reserve is mining kept running
    still = sold_hours(after["reserve_commitments"])
    # Every hour sold before the restart that the new horizon covers is listed as sold, as sold.
    assert {h: mw for h, mw in still.items() if h in sold} == {
        h: mw for h, mw in sold.items() if h >= T0 + LEAD_H * HOUR
    }
    assert after["fallback"] == "none"
