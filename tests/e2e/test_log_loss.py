"""A broker that loses its log (the embedded broker keeps nothing across a restart): the worker
forgets what it read, acked and committed in the old log, reads the new one from its start, and
commits nothing of the old log into the new one, so no record published after the restart is
skipped, by this worker or by the next one (issue #11, fault 2).

Checked from outside, with a plain Kafka client: decisions on the decision topic, the groups'
committed offsets against the new log's end offsets."""

from __future__ import annotations

import asyncio

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.settings import Settings
from streams.worker.app import Worker, required_topics
from streams.worker.telemetry import lane_group
from tests.e2e.harness import (
    as_json,
    committed_settles_at_end,
    decision_at,
    find_record,
    produce,
    until,
    wait_committed,
    wait_listed,
    worker_on,
    worker_settings,
)
from tests.factories import hashprice, price, telemetry

pytestmark = pytest.mark.e2e

PARTITIONS = 4


async def restart(broker: EmbeddedBroker, worker: Worker, settings: Settings) -> None:
    """Stop the broker, let the worker see it, start it again on the same port (empty)."""
    await asyncio.to_thread(broker.stop)
    await worker.watch.wait_for(up=False, timeout_s=10)
    await asyncio.to_thread(broker.start)
    await wait_listed(broker.bootstrap, required_topics(settings))


async def test_a_round_in_flight_across_a_log_loss_commits_nothing_of_the_old_log(
    topic_prefix: str, one_site_fleet: Fleet
) -> None:
    broker = EmbeddedBroker()
    broker.start()
    prices = topic_prefix + "grid.price.v1"
    readings = topic_prefix + "site.telemetry.v1"
    decisions = topic_prefix + "dispatch.decision.v1"
    # A long debounce keeps the round of the last inputs open until the broker is gone.
    settings = worker_settings(topic_prefix, debounce_ms=3000, telemetry_debounce_ms=3000)
    try:
        async with worker_on(broker.bootstrap, one_site_fleet, settings) as worker:
            # The old log: offsets well past 0, decided and committed.
            await produce(
                broker.bootstrap,
                [(topic_prefix + "market.hashprice.v1", None, as_json(hashprice()))]
                + [(prices, b"HB_SOUTH", as_json(price(k, 20.0 + k))) for k in range(4)]
                + [(readings, b"site-a", as_json(telemetry("site-a", k))) for k in range(4)],
            )
            await find_record(broker.bootstrap, decisions, decision_at(3))
            await wait_committed(broker.bootstrap, settings.app_id, prices, 4)
            await wait_committed(broker.bootstrap, lane_group(settings.app_id), readings, 4)
            # A price and a reading read and parked; their round is waiting for its debounce.
            await produce(
                broker.bootstrap,
                [
                    (prices, b"HB_SOUTH", as_json(price(4, 24.0))),
                    (readings, b"site-a", as_json(telemetry("site-a", 4))),
                ],
            )
            await until(lambda: worker.planner.ledger_outstanding() >= 2, "both inputs parked")

            await asyncio.to_thread(broker.stop)
            await worker.watch.wait_for(up=False, timeout_s=10)
            # The round cannot deliver while the broker is away: both inputs are still held.
            assert worker.planner.ledger_outstanding() >= 2
            await asyncio.to_thread(broker.start)  # same port, nothing kept
            await wait_listed(broker.bootstrap, required_topics(settings))
            # Its decision goes out on the new broker, but its inputs' offsets are not acked.
            await find_record(broker.bootstrap, decisions, decision_at(4))
            # Published right after the restart, at offsets 0, 1 of the new log: all decided.
            for k in (5, 6):
                await produce(
                    broker.bootstrap,
                    [
                        (prices, b"HB_SOUTH", as_json(price(k, 30.0 + k))),
                        (readings, b"site-a", as_json(telemetry("site-a", k))),
                    ],
                )
                await find_record(broker.bootstrap, decisions, decision_at(k))
            # What the groups committed in the new log is what was read there, never an offset
            # of the old log (4 and 5 before the fix: past the new log's end).
            assert await committed_settles_at_end(broker.bootstrap, settings.app_id, prices)
            assert await committed_settles_at_end(
                broker.bootstrap, lane_group(settings.app_id), readings
            )
            ledger = worker.planner.ledger
            assert ledger is not None
            await until(lambda: ledger.forgotten == 2, "the price and the readings forgotten")
            assert worker.watch.logs_lost == 1
            assert worker.watch.log_generation == 1

        # The next worker resumes at those offsets: a price published meanwhile is decided (with
        # the day's hashprice again: the one before the restart went with the old log).
        await produce(
            broker.bootstrap,
            [
                (topic_prefix + "market.hashprice.v1", None, as_json(hashprice())),
                (prices, b"HB_SOUTH", as_json(price(7, 37.0))),
            ],
        )
        async with worker_on(broker.bootstrap, one_site_fleet, settings):
            await find_record(broker.bootstrap, decisions, decision_at(7))
            await committed_settles_at_end(broker.bootstrap, settings.app_id, prices)
    finally:
        broker.stop()


async def test_every_input_after_a_log_loss_is_decided_and_survives_a_rebalance(
    topic_prefix: str, one_site_fleet: Fleet
) -> None:
    broker = EmbeddedBroker()
    broker.start()
    prices = topic_prefix + "grid.price.v1"
    decisions = topic_prefix + "dispatch.decision.v1"
    settings = worker_settings(topic_prefix)
    try:
        async with worker_on(broker.bootstrap, one_site_fleet, settings) as worker:
            await produce(
                broker.bootstrap,
                [(topic_prefix + "market.hashprice.v1", None, as_json(hashprice()))]
                + [(prices, b"HB_SOUTH", as_json(price(k, 20.0 + k))) for k in range(5)],
            )
            await find_record(broker.bootstrap, decisions, decision_at(4))
            await wait_committed(broker.bootstrap, settings.app_id, prices, 5)

            await restart(broker, worker, settings)
            # Right after the restart, at offsets 0 and 1 of the new log (below the old 5); the
            # hashprice again, for the worker that joins below (the old one went with the log).
            await produce(
                broker.bootstrap,
                [(topic_prefix + "market.hashprice.v1", None, as_json(hashprice()))],
            )
            for k in (5, 6):
                await produce(broker.bootstrap, [(prices, b"HB_SOUTH", as_json(price(k, 30.0)))])
                await find_record(broker.bootstrap, decisions, decision_at(k))
            await committed_settles_at_end(broker.bootstrap, settings.app_id, prices)

            # A second worker joins: the group rebalances and resumes at the committed offsets.
            async with worker_on(broker.bootstrap, one_site_fleet, settings):
                await produce(broker.bootstrap, [(prices, b"HB_SOUTH", as_json(price(7, 31.0)))])
                await find_record(broker.bootstrap, decisions, decision_at(7))
                await committed_settles_at_end(broker.bootstrap, settings.app_id, prices)
    finally:
        broker.stop()
