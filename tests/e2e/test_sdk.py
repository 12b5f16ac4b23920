"""The SDK on the embedded broker: the publisher refuses invalid events before sending, and the
subscriber filters by site and drops duplicate decision ids (at-least-once upstream)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from optimizer import DispatchModel, Horizon
from schemas import DispatchDecision
from streams.engine.codec import encode
from streams.engine.decisions import to_decision
from streams.engine.fleet import Fleet
from streams.engine.snapshots import build_snapshot
from streams.engine.state import FleetState
from streams.kafka.broker import EmbeddedBroker
from streams.sdk import DecisionSubscriber, Publisher, PublishError
from tests.e2e.harness import DecisionLog
from tests.factories import hashprice, mining_site, price

pytestmark = pytest.mark.e2e


def decision_for(site_id: str, k: int) -> DispatchDecision:
    state = FleetState(Fleet(sites=(mining_site(site_id=site_id),)))
    state.apply(hashprice())
    state.apply(price(k, 30.0))
    view = build_snapshot(state, state.sites[site_id], Horizon((15, 15)))
    assert view is not None
    return to_decision(view, DispatchModel(view.site.spec(), 2).plan(view.snapshot), "price")


async def test_subscriber_drops_duplicates_and_filters_sites(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    a0, a1, b0 = decision_for("site-a", 0), decision_for("site-a", 1), decision_for("site-b", 0)
    a2 = decision_for("site-a", 2)  # a sentinel: once it is read, everything before it was too
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for decision in (a0, a0, b0, a1, a0, a2):  # a redelivered twice, b for another site
            await producer.send_and_wait(
                topic_prefix + "dispatch.decision.v1",
                encode(decision),
                key=decision.site_id.encode(),
            )
    finally:
        await producer.stop()
    async with DecisionSubscriber(
        broker.bootstrap, topic_prefix=topic_prefix, sites=["site-a"], from_beginning=True
    ) as subscriber:
        log = DecisionLog(aiter(subscriber))
        await log.wait_for(lambda d: d.decision_id == a2.decision_id)
        await log.close()
    assert [d.decision_id for d in log.seen] == [a0.decision_id, a1.decision_id, a2.decision_id]
    assert subscriber.duplicates_dropped == 2


async def test_publisher_validates_before_sending(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    async with Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher:
        with pytest.raises(PublishError, match=r"invalid grid\.price\.v1 event: price_usd_per_mwh"):
            await publisher.publish(
                "grid.price.v1",
                {**price(0, 1.0).model_dump(mode="json"), "price_usd_per_mwh": "expensive"},
            )
        with pytest.raises(PublishError, match="not an input topic"):
            await publisher.publish("dispatch.decision.v1", decision_for("site-a", 0))
        assert await publisher.publish_many("grid.price.v1", [price(0, 1.0), price(1, 2.0)]) == 2
        assert publisher.sent == 2
