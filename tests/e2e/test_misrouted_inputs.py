"""Site-keyed inputs on the wrong worker's partition: two worker processes in one consumer group,
and a plain confluent-kafka producer (librdkafka, whose default partitioner is CRC32, not the
murmur2 the workers assume) puts a site's telemetry and compute demand on a partition of the
worker that does NOT own the site (chosen with ``partition=``, so the test is deterministic).

The non-owner forwards both to the owner on the routed topic and commits them (its lag back to
0); the owner decides the site with them. Before, the non-owner applied them to its own state,
parked them in its ack ledger for good (never committed: read again at every start, and every
stop waited its whole grace for them), and the owner never saw them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from confluent_kafka import Producer

from schemas import ComputeDemandEvent, DispatchDecision
from streams.kafka.broker import EmbeddedBroker
from streams.worker.routing import partition_of
from streams.worker.telemetry import lane_group
from tests.e2e.harness import (
    as_json,
    decided_at,
    get_metrics,
    wait_committed,
)
from tests.e2e.test_scale_out import two_workers, wait_owned
from tests.factories import T0, Q, hashprice, price, telemetry

pytestmark = pytest.mark.e2e
TELEMETRY = "site.telemetry.v1"
DEMAND = "compute.demand.v1"


def produce_to(bootstrap: str, topic: str, partition: int, key: bytes, value: bytes) -> None:
    """One record with a plain librdkafka producer (default config) to ``partition``."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(30) == 0, "not acknowledged"


async def forwarded_total(session: aiohttp.ClientSession, port: int, topic: str) -> float:
    text = await get_metrics(session, f"http://127.0.0.1:{port}")
    prefix = f'gridshift_inputs_forwarded_total{{topic="{topic}"}} '
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(found[0].removeprefix(prefix)) if found else 0.0


def knows_both(site_id: str) -> Callable[[DispatchDecision], bool]:
    """The decision of interval 0 at ``site_id`` made with the misrouted telemetry (12 MW of
    mining ready) and compute demand (3 MW of GPUs)."""
    at = decided_at(site_id, T0)
    return lambda d: at(d) and d.mining_mw == pytest.approx(12.0) and d.gpu_mw == pytest.approx(3.0)


async def test_site_keyed_inputs_on_another_workers_partition_reach_the_owner(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    async with two_workers(broker.bootstrap, topic_prefix, tmp_path, "misrouted") as pair:
        session, publisher, log, ports = pair.session, pair.publisher, pair.log, pair.ports
        owner_sites, other_sites = await wait_owned(session, ports)
        site = sorted(owner_sites)[0]
        # A partition the other worker holds: where its owner never reads.
        wrong = min(partition_of(s, 4) for s in other_sites)
        assert wrong != partition_of(site, 4)

        await publisher.publish("market.hashprice.v1", hashprice())
        await publisher.publish("grid.price.v1", price(0, 25.0))
        await publisher.flush()
        readings = as_json(telemetry(site, 0, mining_available_mw=12.0))
        demand = as_json(
            ComputeDemandEvent(
                interval_start=T0,
                interval_end=T0 + Q,
                site_id=site,
                contracted_floor_mw=3.0,
                demand_mw=3.0,
                value_usd_per_mwh=1600.0,
            )
        )
        for topic, value in ((TELEMETRY, readings), (DEMAND, demand)):
            await asyncio.to_thread(
                produce_to, broker.bootstrap, topic_prefix + topic, wrong, site.encode(), value
            )

        decision: DispatchDecision = await log.wait_for(knows_both(site), timeout_s=60)
        assert decision.site_id in owner_sites
        # The non-owner committed both (nothing parked for good): its lag is back to 0.
        app_id = f"{topic_prefix}misrouted"
        await wait_committed(
            broker.bootstrap, lane_group(app_id), topic_prefix + TELEMETRY, 1, partition=wrong
        )
        await wait_committed(broker.bootstrap, app_id, topic_prefix + DEMAND, 1, wrong)
        # Counted where an operator looks for a producer with the wrong partitioner.
        assert await forwarded_total(session, ports[1], TELEMETRY) == 1.0
        assert await forwarded_total(session, ports[1], DEMAND) == 1.0
        assert await forwarded_total(session, ports[0], TELEMETRY) == 0.0

        # Nothing in flight on the non-owner: its stop does not wait out the grace.
        pair.processes[1].send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(pair.processes[1].wait, 60) == 0
