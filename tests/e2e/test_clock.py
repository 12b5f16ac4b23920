"""The decision clock over Kafka: a real-time price dated 2099 is dead-lettered as
``future_dated`` and a day-ahead price for tomorrow only fills the curve, so present prices keep
being decided; and a worker whose committed inputs already hold such a price recovers on
restart without any topic being purged. Inputs go in through an independent client
(confluent-kafka), with no SDK validation in the way."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from schemas import INPUT_TOPICS, DispatchDecision, PriceEvent
from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.sdk import DecisionSubscriber
from streams.settings import Settings
from tests.e2e.harness import DecisionLog, decided_at, read_records, worker_on, worker_settings
from tests.factories import T0, Q, hashprice, price

pytestmark = pytest.mark.e2e
SITE = "site-a"
Y2099 = datetime(2099, 1, 1, tzinfo=UTC)
FLUSH_S = 10.0


def raw_price(start: datetime, market: str, value: float) -> bytes:
    event = PriceEvent(
        interval_start=start,
        interval_end=start + Q,
        node="HB_SOUTH",
        market=market,
        price_usd_per_mwh=value,
    )
    return event.model_dump_json().encode()


async def produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> None:
    """Send raw records with librdkafka, in order, and wait until all are acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for topic, key, value in records:
        producer.produce(topic, key=key, value=value)
    assert await asyncio.to_thread(producer.flush, FLUSH_S) == 0


def the_future_price_and_tomorrow(prefix: str) -> list[tuple[str, bytes | None, bytes]]:
    topic = prefix + "grid.price.v1"
    return [
        (topic, b"HB_SOUTH", raw_price(Y2099, "real_time", 30.0)),
        (topic, b"HB_SOUTH", raw_price(T0 + timedelta(days=1), "day_ahead", 900.0)),
    ]


def decided_now(decision: DispatchDecision, k: int) -> bool:
    return decision.interval_start == T0 + k * Q and decision.fallback == "none"


async def test_a_2099_price_is_dead_lettered_and_present_prices_are_still_decided(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> None:
    settings = worker_settings(topic_prefix)
    async with (
        worker_on(broker.bootstrap, one_site_fleet, settings) as worker,
        DecisionSubscriber(
            broker.bootstrap, topic_prefix=topic_prefix, from_beginning=True
        ) as subscriber,
    ):
        log = DecisionLog(aiter(subscriber))
        prices = topic_prefix + "grid.price.v1"
        await produce(
            broker.bootstrap,
            [
                (
                    topic_prefix + "market.hashprice.v1",
                    None,
                    hashprice().model_dump_json().encode(),
                ),
                (prices, b"HB_SOUTH", price(0, 20.0).model_dump_json().encode()),
                *the_future_price_and_tomorrow(topic_prefix),
                (prices, b"HB_SOUTH", price(1, 21.0).model_dump_json().encode()),
            ],
        )
        await log.wait_for(decided_at(SITE, T0 + Q))
        await produce(
            broker.bootstrap, [(prices, b"HB_SOUTH", price(2, 22.0).model_dump_json().encode())]
        )
        await log.wait_for(decided_at(SITE, T0 + 2 * Q))
        await log.close()
        await worker.metrics.wait_dead_lettered(1, timeout_s=30)  # counted once confirmed
        assert worker.metrics.dead_letters_by_reason() == {"future_dated": 1}

        (record,) = await read_records(
            broker.bootstrap, topic_prefix + "gridshift.deadletter.v1", 1
        )
        letter = json.loads(record.value)
        assert letter["reason"] == "future_dated"
        assert letter["error"].startswith(
            "real_time price for HB_SOUTH starts 2099-01-01T00:00:00+00:00"
        )
        assert "limit 300 s (max_clock_skew_s)" in letter["error"]
        assert letter["original_topic"] == prices
        assert json.loads(base64.b64decode(letter["raw_value_b64"]))["interval_start"].startswith(
            "2099-01-01"
        )
    # Every decision is for a present interval, and none is a fail-safe: the day-ahead price
    # for tomorrow moved nothing, the 2099 price never entered.
    assert all(d.interval_start <= T0 + 2 * Q for d in log.seen), [
        d.interval_start for d in log.seen
    ]
    assert any(decided_now(d, 1) for d in log.seen)
    assert any(decided_now(d, 2) for d in log.seen)
    assert {d.fallback for d in log.seen} == {"none"}


def create_input_topics(bootstrap: str, settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(settings.topic(name), settings.topic_partitions, 1) for name in INPUT_TOPICS]
    )
    for future in futures.values():
        future.result(timeout=FLUSH_S)


def commit_everything(bootstrap: str, settings: Settings, topics: list[str], count: int) -> None:
    """Read the ``count`` records of ``topics`` and commit group ``app_id`` past them: what a
    worker that consumed them in an earlier run leaves behind. (Offsets are found by reading:
    Tansu answers ListOffsets for LATEST wrongly, DESIGN.md.)"""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": settings.app_id, "enable.auto.commit": False}
    )
    try:
        consumer.assign(
            [
                TopicPartition(topic, partition, OFFSET_BEGINNING)
                for topic in topics
                for partition in range(settings.topic_partitions)
            ]
        )
        ends: dict[tuple[str, int], int] = {}
        seen = 0
        deadline = time.monotonic() + FLUSH_S
        while seen < count:
            assert time.monotonic() < deadline, f"read {seen} of {count} records"
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            seen += 1
            where = (message.topic() or "", message.partition() or 0)
            ends[where] = max(ends.get(where, 0), (message.offset() or 0) + 1)
        consumer.commit(
            offsets=[TopicPartition(t, p, offset) for (t, p), offset in ends.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()


async def test_a_worker_that_committed_a_2099_price_recovers_on_restart(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> None:
    """The previous run consumed and committed hashprice, a present price and a 2099 price
    (before admission existed). The restarted worker rebuilds its state from those committed
    inputs through the same ingest path, rejects the 2099 price again, and decides on."""
    settings = worker_settings(topic_prefix)
    await asyncio.to_thread(create_input_topics, broker.bootstrap, settings)
    prices = topic_prefix + "grid.price.v1"
    hashprices = topic_prefix + "market.hashprice.v1"
    await produce(
        broker.bootstrap,
        [
            (hashprices, None, hashprice().model_dump_json().encode()),
            (prices, b"HB_SOUTH", price(0, 20.0).model_dump_json().encode()),
            *the_future_price_and_tomorrow(topic_prefix),
        ],
    )
    await asyncio.to_thread(commit_everything, broker.bootstrap, settings, [prices, hashprices], 4)

    async with (
        worker_on(broker.bootstrap, one_site_fleet, settings) as worker,
        DecisionSubscriber(
            broker.bootstrap, topic_prefix=topic_prefix, from_beginning=True
        ) as subscriber,
    ):
        assert worker.state.event_clock == T0  # rebuilt: the 2099 price did not come back
        log = DecisionLog(aiter(subscriber))
        await produce(
            broker.bootstrap, [(prices, b"HB_SOUTH", price(1, 21.0).model_dump_json().encode())]
        )
        decision = await log.wait_for(decided_at(SITE, T0 + Q))
        await log.close()
    assert decision.fallback == "none"
    assert all(d.interval_start <= T0 + Q for d in log.seen)
