"""A run of bad inputs is dead-lettered in a few round trips, not one per record.

2,000 malformed telemetry readings (the batched lane) and 2,000 malformed compute-demand records
(a faust agent, one event at a time), each followed by one valid record on the same partition:
every bad one is dead-lettered, the valid one behind them is decided, and the topic listings
that confirm dead-letter deliveries (one broker round trip each) number a handful, not one per
reject as before (the lane and the agents awaited every dead letter's delivery and listing in
turn: 2,000 listings, and the valid record decided ~9 s later on this machine; the timing is in
``bench/dead_letters.py``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas import ComputeDemandEvent
from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.watch import BrokerWatch
from streams.worker.app import Worker
from streams.worker.routing import partition_of
from tests.e2e.harness import as_json, until, worker_on, worker_settings
from tests.factories import T0, Q, hashprice, price, telemetry

pytestmark = pytest.mark.e2e
BAD = 2_000
#: Listings the flood may take: the lane confirms once per fetch, the agents' dead letters in
#: flight together share one; the watch's own topic checks (every 5 s) and the decisions'
#: confirmations come on top. One per reject (the old way) is 2,000.
MAX_LISTINGS = 100


class ListingCount:
    """Counts the broker watch's topic listings (each one metadata round trip)."""

    def __init__(self, watch: BrokerWatch) -> None:
        self.count = 0
        listing: Callable[[], Awaitable[dict[str, int]]] = watch._list

        async def counted() -> dict[str, int]:
            self.count += 1
            return await listing()

        watch._list = counted  # type: ignore[method-assign]


def flood(bootstrap: str, topic: str, partition: int, bad: bytes, valid: bytes) -> None:
    """``BAD`` copies of ``bad`` then ``valid``, in order on one partition (librdkafka)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for _ in range(BAD):
        producer.produce(topic, key=b"site-a", value=bad, partition=partition)
        producer.poll(0)
    producer.produce(topic, key=b"site-a", value=valid, partition=partition)
    assert producer.flush(30) == 0, "not every record acknowledged"


def dead_lettered(worker: Worker) -> int:
    return sum(worker.metrics.dead_letters_by_reason().values())


async def bad_then_valid(
    worker: Worker, bootstrap: str, topic: str, valid: bytes, decided: Callable[[Any], bool]
) -> tuple[int, float]:
    """Flood ``topic`` and wait for every dead letter and for the decision ``valid`` causes;
    the listings it took and the seconds from the flood's end to that decision."""
    listings = ListingCount(worker.watch)
    before = dead_lettered(worker)
    bad = valid[: len(valid) // 2]  # cut short: not JSON
    await asyncio.to_thread(flood, bootstrap, topic, partition_of("site-a", 4), bad, valid)
    produced = time.monotonic()
    await until(lambda: decided(worker.hub.latest.get("site-a")), "the valid record decided", 60)
    took = time.monotonic() - produced
    await until(lambda: dead_lettered(worker) - before == BAD, "every dead letter delivered", 60)
    return listings.count, took


async def test_runs_of_bad_inputs_are_dead_lettered_together(
    broker: EmbeddedBroker, topic_prefix: str, one_site_fleet: Fleet
) -> None:
    settings = worker_settings(topic_prefix)
    async with worker_on(broker.bootstrap, one_site_fleet, settings) as worker:
        bootstrap = broker.bootstrap
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(topic_prefix + "market.hashprice.v1", value=as_json(hashprice()))
        producer.produce(
            topic_prefix + "grid.price.v1", key=b"HB_SOUTH", value=as_json(price(0, 25.0))
        )
        assert await asyncio.to_thread(producer.flush, 30) == 0
        await until(lambda: "site-a" in worker.hub.latest, "a first decision", 60)

        readings = as_json(telemetry("site-a", 0, mining_available_mw=12.0))
        listings, took = await bad_then_valid(
            worker,
            bootstrap,
            topic_prefix + "site.telemetry.v1",
            readings,
            lambda d: d is not None and d.mining_mw == pytest.approx(12.0),
        )
        print(f"telemetry: {BAD} dead letters, {listings} listings, valid decided in {took:.2f} s")
        assert listings <= MAX_LISTINGS

        demand = ComputeDemandEvent(
            interval_start=T0,
            interval_end=T0 + Q,
            site_id="site-a",
            contracted_floor_mw=3.0,
            demand_mw=3.0,
            value_usd_per_mwh=1600.0,
        )
        listings, took = await bad_then_valid(
            worker,
            bootstrap,
            topic_prefix + "compute.demand.v1",
            as_json(demand),
            lambda d: d is not None and d.gpu_mw == pytest.approx(3.0),
        )
        print(f"compute demand: {BAD} dead letters, {listings} listings, decided in {took:.2f} s")
        assert listings <= MAX_LISTINGS
        await until(lambda: worker.agents.in_flight() == 0, "nothing left in flight")
