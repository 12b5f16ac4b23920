"""Faults seen from outside (issue #11, items 2, 3 and 6): a plain Kafka client (confluent-kafka)
publishes and reads, plain HTTP asks /health and /metrics, and the worker runs on the embedded
broker.

- Every topic the worker reads or writes exists as soon as it has started, before any input.
- A large reject (a dead letter would be ~4/3 its size, above the produce request limit) is
  dead-lettered, cut to fit, with its size and digest, on the telemetry lane and on an agent;
  later inputs still get through and the offsets move past it.
- A dead letter that cannot be delivered keeps its input uncommitted and /health says so; once
  delivery works again it arrives and the offset commits.
- Inputs for a node no site uses are counted, logged once per key, and shown by /health.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest
from aiokafka.errors import KafkaConnectionError

from schemas import TOPICS, CarbonEvent
from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.logs import fields
from streams.worker.app import Worker, required_topics
from streams.worker.routing import ROUTED_TOPIC
from streams.worker.telemetry import lane_group
from tests.e2e.harness import (
    as_json,
    committed,
    find_record,
    get_metrics,
    healthy,
    listed_topics,
    produce,
    read_records,
    unhealthy_with,
    wait_committed,
    wait_health,
    worker_on,
    worker_settings,
)
from tests.factories import T0, Q, hashprice, price, telemetry

pytestmark = pytest.mark.e2e
BIG = 2_000_000  # librdkafka's own limit for the large test records


@pytest.fixture
async def worker(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> AsyncIterator[Worker]:
    settings = worker_settings(topic_prefix, http_enabled=True, http_port=0)
    async with worker_on(broker.bootstrap, one_site_fleet, settings) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def base(worker: Worker) -> str:
    return f"http://127.0.0.1:{worker.http_port}"


async def broker_produce(
    broker: EmbeddedBroker, records: Sequence[tuple[str, bytes | None, bytes]]
) -> None:
    """Produce with a plain client that accepts records up to 2 MB."""
    await produce(broker.bootstrap, records, **{"message.max.bytes": BIG})


async def test_every_topic_exists_before_the_first_input(
    broker: EmbeddedBroker, worker: Worker, topic_prefix: str
) -> None:
    """An early subscriber finds the decision and dead-letter topics at once."""
    listed = listed_topics(broker.bootstrap)
    required = required_topics(worker_settings(topic_prefix))
    # Every contract topic (the inputs, decisions, dead letters) and the routed copies.
    assert set(required) == {topic_prefix + t.name for t in TOPICS} | {topic_prefix + ROUTED_TOPIC}
    assert {t: listed.get(t) for t in required} == required  # all there, four partitions each


async def test_a_large_telemetry_reject_is_dead_lettered_and_the_lane_goes_on(
    broker: EmbeddedBroker,
    worker: Worker,
    topic_prefix: str,
    session: aiohttp.ClientSession,
) -> None:
    big = b"x" * 900_000  # not JSON; its dead letter in full would be 1.2 MB
    telemetry_topic = topic_prefix + "site.telemetry.v1"
    ready = telemetry("site-a", 1, mining_available_mw=12.0)
    await broker_produce(
        broker,
        [
            (telemetry_topic, b"site-a", big),
            (telemetry_topic, b"site-a", as_json(ready)),
            (topic_prefix + "market.hashprice.v1", None, as_json(hashprice())),
            (topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(1, 30.0))),
        ],
    )
    letter = (await read_records(broker.bootstrap, topic_prefix + "gridshift.deadletter.v1", 1))[0]
    dead = json.loads(letter.value)
    assert dead["original_topic"] == telemetry_topic
    assert dead["reason"] == "not_json"
    assert dead["raw_value_size_bytes"] == len(big)
    assert dead["raw_value_sha256"] == hashlib.sha256(big).hexdigest()
    assert dead["raw_value_truncated"] is True
    assert len(letter.value) < 100_000
    # The telemetry after it was read and used: the miners online bound the decision.
    decision = await find_record(
        broker.bootstrap,
        topic_prefix + "dispatch.decision.v1",
        lambda d: "mining_available" in d["binding_constraints"],
    )
    assert decision["mining_mw"] == pytest.approx(12.0)
    # The lane committed past both records (same key, same partition) and is still running.
    await wait_committed(broker.bootstrap, lane_group(f"{topic_prefix}worker"), telemetry_topic, 2)
    body = await wait_health(session, base(worker), healthy)
    assert body["tasks"]["telemetry lane"] == "running"


async def test_twelve_large_rejects_on_an_agent_all_reach_the_dead_letter_topic(
    broker: EmbeddedBroker,
    worker: Worker,
    topic_prefix: str,
    session: aiohttp.ClientSession,
) -> None:
    carbon = topic_prefix + "grid.carbon.v1"
    bad = [b"[" + bytes([65 + i]) * 800_000 for i in range(12)]  # not JSON, 800 kB each
    await broker_produce(broker, [(carbon, b"ERCOT", value) for value in bad])
    records = await read_records(broker.bootstrap, topic_prefix + "gridshift.deadletter.v1", 12)
    letters = [json.loads(r.value) for r in records]
    assert sorted(d["raw_value_sha256"] for d in letters) == sorted(
        hashlib.sha256(v).hexdigest() for v in bad
    )
    assert all(d["raw_value_truncated"] and d["original_topic"] == carbon for d in letters)
    text = await get_metrics(session, base(worker))
    assert 'gridshift_dead_lettered_total{reason="not_json"} 12.0' in text
    # And the agent still applies what comes next.
    event = CarbonEvent(
        interval_start=T0, interval_end=T0 + Q, region="ERCOT", average_intensity_g_per_kwh=400.0
    )
    await broker_produce(broker, [(carbon, b"ERCOT", as_json(event))])
    await worker.metrics.wait_consumed(13, timeout_s=30)
    assert worker.metrics.applied() == 1
    await wait_health(session, base(worker), healthy)


async def test_an_undeliverable_dead_letter_keeps_its_input_uncommitted_until_it_is_delivered(
    broker: EmbeddedBroker,
    worker: Worker,
    topic_prefix: str,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refused(*_: object, **__: object) -> None:
        raise KafkaConnectionError("dead-letter topic unreachable (injected)")

    monkeypatch.setattr(worker.agents.dead_letters, "send", refused)
    carbon = topic_prefix + "grid.carbon.v1"
    await broker_produce(broker, [(carbon, b"ERCOT", b"{not json")])
    body = await wait_health(
        session, base(worker), unhealthy_with(f"dead-letter delivery ({carbon})", "failing")
    )
    assert body["failures"]["dead-letter delivery"] >= 1
    text = await get_metrics(session, base(worker))
    assert "gridshift_dead_lettered_total{" not in text  # not counted before it is delivered
    assert 'gridshift_health_check{check="failures"} 0.0' in text
    assert "gridshift_healthy 0.0" in text
    group = f"{topic_prefix}worker"
    assert all(o == 0 for o in committed(broker.bootstrap, group, carbon).values())

    monkeypatch.undo()  # delivery works again
    letter = await find_record(
        broker.bootstrap, topic_prefix + "gridshift.deadletter.v1", lambda d: True
    )
    assert letter["original_topic"] == carbon
    assert letter["raw_value_truncated"] is False
    await wait_health(session, base(worker), healthy)
    partition = letter["original_partition"]
    await wait_committed(broker.bootstrap, group, carbon, 1, partition)


async def test_inputs_for_unknown_nodes_are_counted_and_logged_once_per_key(
    broker: EmbeddedBroker,
    worker: Worker,
    topic_prefix: str,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = [
        (topic_prefix + "grid.price.v1", b"HB_NOWHERE", as_json(price(k, 30.0, "HB_NOWHERE")))
        for k in range(3)
    ]
    nowhere = CarbonEvent(
        interval_start=T0, interval_end=T0 + Q, region="NOWHERE", average_intensity_g_per_kwh=1.0
    )
    records.append((topic_prefix + "grid.carbon.v1", b"NOWHERE", as_json(nowhere)))
    with caplog.at_level(logging.INFO, logger="streams.worker.agents"):
        await broker_produce(broker, records)
        await worker.metrics.wait_consumed(4, timeout_s=30)
    said = [fields(r) for r in caplog.records if r.getMessage().startswith("input matches no")]
    assert sorted((f["topic"], f["key"]) for f in said) == [
        ("grid.carbon.v1", "NOWHERE"),
        ("grid.price.v1", "HB_NOWHERE"),
    ]
    text = await get_metrics(session, base(worker))
    assert 'gridshift_inputs_unmatched_total{topic="grid.price.v1"} 3.0' in text
    assert 'gridshift_inputs_unmatched_total{topic="grid.carbon.v1"} 1.0' in text
    body = await wait_health(session, base(worker), healthy)
    assert body["unmatched_inputs"] == {
        "grid.carbon.v1": {"events": 1, "keys": ["NOWHERE"]},
        "grid.price.v1": {"events": 3, "keys": ["HB_NOWHERE"]},
    }
    # Still waiting for its own node's price.
    assert body["waiting_for"] == {"no real-time price for node HB_SOUTH yet": ["site-a"]}
