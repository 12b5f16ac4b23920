"""Consumer lag after a restart: a worker restarted over a log it had read and committed in
full reports no lag (on /health and /metrics), not the whole log.

Before, the telemetry lane counted its lag from offset 0 on every partition it had read nothing
from since the start: an idle worker whose committed offsets equalled the end offsets reported
every telemetry record of its partitions as lag (20,009 in an outside tester's run). faust's
agents count from the committed offset already (faust sets its read offset there on assignment);
checked here all the same."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from schemas import ComputeDemandEvent
from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.worker.app import Worker
from streams.worker.routing import partition_of
from streams.worker.service import consumer_lag
from streams.worker.telemetry import lane_group
from tests.e2e.harness import (
    as_json,
    committed_settles_at_end,
    produce,
    until,
    worker_on,
    worker_settings,
)
from tests.factories import T0, Q, hashprice, price, telemetry

pytestmark = pytest.mark.e2e
READINGS = 30  # telemetry and compute-demand records each, all for site-a


def demand(k: int) -> ComputeDemandEvent:
    return ComputeDemandEvent(
        interval_start=T0 + k * Q,
        interval_end=T0 + (k + 1) * Q,
        site_id="site-a",
        contracted_floor_mw=3.0,
        demand_mw=3.0,
        value_usd_per_mwh=1600.0,
    )


def highwaters_known(worker: Worker, prefix: str) -> bool:
    """Both consumers have fetched site-a's partition since the start (a lag needs the high
    watermark; until then none is counted)."""
    mine = partition_of("site-a", 4)
    lane = worker.lane._require()
    faust_consumer = worker.app.consumer
    return (
        lane.highwater(TopicPartition(prefix + "site.telemetry.v1", mine)) is not None
        and faust_consumer.highwater(TopicPartition(prefix + "compute.demand.v1", mine)) is not None
    )


async def test_restarted_worker_over_a_committed_log_has_no_lag(
    broker: EmbeddedBroker, topic_prefix: str, one_site_fleet: Fleet
) -> None:
    settings = worker_settings(topic_prefix)
    bootstrap = broker.bootstrap
    async with worker_on(bootstrap, one_site_fleet, settings) as worker:
        await produce(
            bootstrap,
            [(topic_prefix + "market.hashprice.v1", None, as_json(hashprice()))]
            + [(topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(0, 25.0)))]
            + [
                (topic_prefix + topic, b"site-a", as_json(event))
                for k in range(READINGS)
                for topic, event in (
                    ("site.telemetry.v1", telemetry("site-a", k)),
                    ("compute.demand.v1", demand(k)),
                )
            ],
        )
        await worker.metrics.wait_consumed(2 + 2 * READINGS, timeout_s=30)
        ledger = worker.planner.ledger
        assert ledger is not None
        await until(lambda: ledger.outstanding() == 0, "every input decided and acked")
    # Stopped: everything it read is committed (faust's last commit, the lane's acks).
    for group, topic in (
        (lane_group(settings.app_id), "site.telemetry.v1"),
        (settings.app_id, "compute.demand.v1"),
    ):
        await committed_settles_at_end(bootstrap, group, topic_prefix + topic)

    async with worker_on(bootstrap, one_site_fleet, settings) as worker:
        await until(lambda: highwaters_known(worker, topic_prefix), "both consumers fetched")
        assert worker.lane.lag() == 0
        assert consumer_lag(worker) == 0
