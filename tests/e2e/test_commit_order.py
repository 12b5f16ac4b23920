"""Inputs are acked out of order (each once what it caused is delivered), and a commit never
passes an input still unacked: not a reject whose dead letter is on its way, not an input parked
for its round, when a later input of the same partition (one matching no site) is acked at once.

faust commits the first run of consecutive acked offsets; its own check for an unacked offset
before that run is off by one (``streams/worker/_transport.py``, ``_Consumer._new_offset``).
Found by a reviewer: the first case committed past a bad record whose dead letter was never
sent, the second past a price whose decision was not delivered. Both deliveries are held back
by a STAND-IN that waits until the test lets it go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from confluent_kafka import Producer

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.worker.app import Worker
from tests.e2e.harness import as_json, committed, until, worker_on, worker_settings
from tests.factories import hashprice, price

pytestmark = pytest.mark.e2e
PRICES = "grid.price.v1"


def held_back(real: Callable[..., Awaitable[Any]], release: asyncio.Event) -> Any:
    """``real``, but not before ``release`` is set (a delivery not acknowledged yet)."""

    async def waiting(*args: Any, **kwargs: Any) -> Any:
        await release.wait()
        return await real(*args, **kwargs)

    return waiting


@asynccontextmanager
async def one_price_committed(
    broker: EmbeddedBroker, prefix: str, fleet: Fleet
) -> AsyncIterator[tuple[Worker, Producer, Callable[[], int]]]:
    """A worker whose first price (partition 0, offset 0) is decided and committed; a plain
    producer; and what the group has committed on partition 0 of the prices."""
    settings = worker_settings(prefix)
    topic = prefix + PRICES
    async with worker_on(broker.bootstrap, fleet, settings) as worker:
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        producer.produce(prefix + "market.hashprice.v1", value=as_json(hashprice()))
        producer.produce(topic, value=as_json(price(0, 25.0)), partition=0)
        assert await asyncio.to_thread(producer.flush, 30) == 0

        def on_partition_0() -> int:
            return committed(broker.bootstrap, settings.app_id, topic).get(0, 0)

        await until(lambda: "site-a" in worker.hub.latest, "a first decision", 60)
        await worker.app.consumer.commit()
        await until(lambda: on_partition_0() == 1, "the first price committed", 30)
        yield worker, producer, on_partition_0


async def then_unmatched_acked(worker: Worker, producer: Producer, prefix: str) -> None:
    """A price for a node no site has at offset 2: acked as soon as it is read."""
    producer.produce(prefix + PRICES, value=as_json(price(1, 30.0, node="NOWHERE")), partition=0)
    assert await asyncio.to_thread(producer.flush, 30) == 0
    await until(
        lambda: worker.metrics.unmatched_by_topic().get(PRICES, 0) == 1, "offset 2 read", 30
    )


async def committed_in_order(
    worker: Worker, on_partition_0: Callable[[], int], release: asyncio.Event
) -> None:
    """Offset 1 unacked, 2 acked: a commit stays at 1; once 1 is delivered, both go (3)."""
    await worker.app.consumer.commit()
    assert on_partition_0() == 1
    release.set()
    await until(
        lambda: worker.agents.in_flight() == 0 and worker.planner.ledger_outstanding() == 0,
        "offset 1's output delivered",
        30,
    )
    await worker.app.consumer.commit()
    await until(lambda: on_partition_0() == 3, "both committed once it is", 30)


async def test_no_commit_passes_a_reject_whose_dead_letter_is_on_its_way(
    broker: EmbeddedBroker, topic_prefix: str, one_site_fleet: Fleet
) -> None:
    async with one_price_committed(broker, topic_prefix, one_site_fleet) as (
        worker,
        producer,
        on_partition_0,
    ):
        release = asyncio.Event()
        worker.agents._dead_letter_all = held_back(worker.agents._dead_letter_all, release)  # type: ignore[method-assign]
        producer.produce(topic_prefix + PRICES, value=b'{"not json', partition=0)  # offset 1
        await then_unmatched_acked(worker, producer, topic_prefix)
        assert worker.agents.in_flight() == 1  # the reject, waiting for its dead letter
        # Not 3: the bad record would never be dead-lettered.
        await committed_in_order(worker, on_partition_0, release)


async def test_no_commit_passes_an_input_waiting_for_its_decision(
    broker: EmbeddedBroker, topic_prefix: str, one_site_fleet: Fleet
) -> None:
    async with one_price_committed(broker, topic_prefix, one_site_fleet) as (
        worker,
        producer,
        on_partition_0,
    ):
        release = asyncio.Event()
        worker.planner._deliver = held_back(worker.planner._deliver, release)  # type: ignore[method-assign]
        producer.produce(topic_prefix + PRICES, value=as_json(price(1, 30.0)), partition=0)
        await until(lambda: worker.planner.ledger_outstanding() == 1, "offset 1 parked", 30)
        await then_unmatched_acked(worker, producer, topic_prefix)
        # Not 3: a restart would not decide offset 1.
        await committed_in_order(worker, on_partition_0, release)
