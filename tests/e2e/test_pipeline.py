"""End to end on the embedded broker over real TCP: events in, decisions out.

The worker runs in this event loop; inputs go through the SDK publisher or an independent client
(confluent-kafka), decisions come back through Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import jsonschema
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from schemas import DispatchDecision, json_schemas
from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.sdk import DecisionSubscriber, Publisher
from streams.worker.app import Worker
from tests.e2e.harness import WAIT_S, DecisionLog, read_records, worker_on, worker_settings
from tests.factories import T0, Q, hashprice, price
from tests.schemas.examples import VALID

pytestmark = pytest.mark.e2e


@pytest.fixture
async def worker(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> AsyncIterator[Worker]:
    async with worker_on(
        broker.bootstrap, one_site_fleet, worker_settings(topic_prefix)
    ) as running:
        yield running


@pytest.fixture
async def decisions(
    broker: EmbeddedBroker, topic_prefix: str, worker: Worker
) -> AsyncIterator[DecisionLog]:
    async with DecisionSubscriber(
        broker.bootstrap, topic_prefix=topic_prefix, from_beginning=True
    ) as subscriber:
        log = DecisionLog(aiter(subscriber))
        yield log
        await log.close()


def at(k: int) -> Callable[[DispatchDecision], bool]:
    return lambda d: d.interval_start == T0 + k * Q


async def test_price_above_break_even_sheds_mining_and_below_restores_it(
    broker: EmbeddedBroker, topic_prefix: str, decisions: DecisionLog
) -> None:
    # Break-even is 100 $/MWh (0.048 $/TH/day at 20 J/TH, PUE 1); GPU floor 5 MW, demand 8 MW.
    async with Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher:
        await publisher.publish("market.hashprice.v1", hashprice())
        expectations = [
            (50.0, 22.0, 8.0),
            (150.0, 0.0, 8.0),
            (40.0, 22.0, 8.0),
            (4857.82, 0.0, 5.0),
        ]
        for k, (value, mining, gpu) in enumerate(expectations):
            await publisher.publish("grid.price.v1", price(k, value))
            await publisher.flush()
            decision = await decisions.wait_for(at(k))
            assert decision.mining_mw == pytest.approx(mining, abs=1e-6), value
            assert decision.gpu_mw == pytest.approx(gpu, abs=1e-6), value
            assert decision.gpu_mw >= 5.0 - 1e-6  # the contract floor is always kept
            assert decision.gpu_shortfall_mw == 0.0
            if k > 0:  # the first may answer the hashprice: topics are not ordered among each other
                assert decision.trigger == "price"
    ids = [d.decision_id for d in decisions.seen]
    assert len(ids) == len(set(ids))


async def test_an_independent_client_drives_the_worker(
    broker: EmbeddedBroker, topic_prefix: str, worker: Worker
) -> None:
    """confluent-kafka (librdkafka) publishes; decisions validate against the published schema."""
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    telemetry = {
        **VALID["site.telemetry.v1"],
        "interval_start": T0.isoformat(),
        "interval_end": (T0 + Q).isoformat(),
        "mining_available_mw": 12.0,
    }
    inputs = [
        ("site.telemetry.v1", b"site-a", telemetry),
        ("market.hashprice.v1", None, hashprice().model_dump(mode="json")),
        ("grid.price.v1", b"HB_SOUTH", price(0, 30.0).model_dump(mode="json")),
    ]
    for topic, key, value in inputs:
        producer.produce(topic_prefix + topic, key=key, value=json.dumps(value).encode())
    assert await asyncio.to_thread(producer.flush, 10) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"{topic_prefix}cf",
            "auto.offset.reset": "earliest",
        }
    )
    # Assign partitions directly: no group join (Tansu completes joins only at session timeout).
    decision_topic = topic_prefix + "dispatch.decision.v1"
    partitions = worker_settings(topic_prefix).topic_partitions
    consumer.assign(
        [TopicPartition(decision_topic, p, OFFSET_BEGINNING) for p in range(partitions)]
    )
    validator = jsonschema.Draft202012Validator(
        json_schemas()["dispatch.decision.v1"], format_checker=jsonschema.FormatChecker()
    )
    try:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        decision = None
        # Topics carry no order between them: the price may be decided before the telemetry is
        # read; the decision that has seen both comes next.
        while asyncio.get_running_loop().time() < deadline:
            message = await asyncio.to_thread(consumer.poll, 0.5)
            if message is None or message.error():
                continue
            payload = json.loads(message.value() or b"")
            validator.validate(payload)
            assert message.key() == b"site-a"
            decision = DispatchDecision.model_validate(payload)
            if "mining_available" in decision.binding_constraints:
                break
    finally:
        await asyncio.to_thread(consumer.close)
    assert decision is not None, "no decision reached the confluent-kafka consumer"
    assert decision.mining_mw == pytest.approx(12.0)  # capped by the miners online
    assert "mining_available" in decision.binding_constraints


async def test_bad_input_is_dead_lettered_and_the_worker_keeps_deciding(
    broker: EmbeddedBroker, topic_prefix: str, decisions: DecisionLog, worker: Worker
) -> None:
    garbage = b"\x00\xffnot json at all"
    wrong_schema = json.dumps({"region": "ERCOT", "intensity": "high"}).encode()
    unknown_site = json.dumps({**VALID["site.telemetry.v1"], "site_id": "ghost-site"}).encode()
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic_prefix + "grid.price.v1", key=b"HB_SOUTH", value=garbage)
    producer.produce(topic_prefix + "grid.carbon.v1", key=b"ERCOT", value=wrong_schema)
    producer.produce(topic_prefix + "site.telemetry.v1", key=b"ghost-site", value=unknown_site)
    assert await asyncio.to_thread(producer.flush, 10) == 0

    async with Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher:
        await publisher.publish("market.hashprice.v1", hashprice())
        await publisher.publish("grid.price.v1", price(0, 20.0))
    decision = await decisions.wait_for(at(0))
    assert decision.mining_mw > 0

    records = await read_records(broker.bootstrap, topic_prefix + "gridshift.deadletter.v1", 3)
    letters = {json.loads(r.value)["reason"]: json.loads(r.value) for r in records}
    assert set(letters) == {"not_json", "schema_violation", "unknown_site"}
    assert base64.b64decode(letters["not_json"]["raw_value_b64"]) == garbage
    assert base64.b64decode(letters["schema_violation"]["raw_value_b64"]) == wrong_schema
    assert "average_intensity_g_per_kwh" in letters["schema_violation"]["error"]
    assert "ghost-site" in letters["unknown_site"]["error"]
    assert letters["unknown_site"]["original_topic"] == topic_prefix + "site.telemetry.v1"
    await worker.metrics.wait_dead_lettered(3, timeout_s=30)  # counted once confirmed
    assert sum(worker.metrics.dead_letters_by_reason().values()) == 3


async def test_consumer_fetch_wait_is_the_configured_one(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> None:
    settings = worker_settings(topic_prefix, consumer_fetch_max_wait_ms=37)
    async with worker_on(broker.bootstrap, one_site_fleet, settings) as running:
        consumer: Any = running.app.consumer._thread._consumer  # type: ignore[attr-defined]
        assert consumer._fetch_max_wait_ms == 37
        assert consumer._fetcher._fetch_max_wait_ms == 37


async def test_a_fuzzed_batch_through_kafka_loses_nothing(
    broker: EmbeddedBroker, topic_prefix: str, one_site_fleet: Fleet
) -> None:
    """Generated garbage and near-valid events interleaved with valid ones, over real TCP:
    every invalid one is dead-lettered with its reason, every valid one applied."""
    import random  # noqa: PLC0415

    from tests.engine.fuzzcases import MAX_BYTES, case  # noqa: PLC0415

    rng = random.Random(2024)
    cases = [case(rng) for _ in range(150)]
    invalid = [c for c in cases if c[2] != "ok"]
    expected: dict[str, int] = {}
    for _, _, reason in invalid:
        expected[reason] = expected.get(reason, 0) + 1
    settings = worker_settings(topic_prefix, max_message_bytes=MAX_BYTES)
    async with worker_on(broker.bootstrap, one_site_fleet, settings) as worker:
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for topic, raw, _ in cases:
            producer.produce(topic_prefix + topic, value=raw)
        assert await asyncio.to_thread(producer.flush, 10) == 0
        await worker.metrics.wait_consumed(len(cases), timeout_s=60)
        await worker.metrics.wait_dead_lettered(len(invalid), timeout_s=60)
        assert worker.metrics.dead_letters_by_reason() == expected
        assert worker.metrics.applied() == len(cases) - len(invalid)
        records = await read_records(
            broker.bootstrap, topic_prefix + "gridshift.deadletter.v1", len(invalid)
        )
        assert sorted(json.loads(r.value)["reason"] for r in records) == sorted(
            reason for _, _, reason in invalid
        )
        # And the worker still decides.
        async with DecisionSubscriber(
            broker.bootstrap, topic_prefix=topic_prefix, from_beginning=True
        ) as subscriber:
            log = DecisionLog(aiter(subscriber))
            async with Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher:
                await publisher.publish("market.hashprice.v1", hashprice())
                # Later than anything in the batch (which spans August 2024).
                await publisher.publish("grid.price.v1", price(2000, 25.0))
            await log.wait_for(at(2000))
            await log.close()
