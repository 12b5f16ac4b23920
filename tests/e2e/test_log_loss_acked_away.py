"""A reading whose round ends while the broker is away: nothing of it may land in the new log
the restarted broker starts (issue #11, fault 2; the flaky failure of test_log_loss's round in
flight, where the telemetry group committed 5, an offset of the old log, into a new log holding 2
records).

A round with nothing to deliver used to ack its inputs at once, without waiting for the broker:
the telemetry lane then committed while the broker was away, and aiokafka retries that commit
(every 100 ms, without end) into whatever log it finds when the broker returns. In CI it went on
to a rebalance after the restart: the lane resumed at the committed 5 and, committing only
forward, never committed the new log's 1 and 2. Now the round's acks wait for the broker watch;
it admits only after the loss was told, so the reading (of the lost log) is forgotten, never
acked. Here the broker stays away until the round has taken the reading, on every run."""

from __future__ import annotations

import asyncio

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.worker.app import required_topics
from streams.worker.telemetry import lane_group
from tests.e2e.harness import (
    as_json,
    committed,
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


async def test_a_reading_acked_while_the_broker_is_away_is_not_committed_into_its_new_log(
    topic_prefix: str, one_site_fleet: Fleet
) -> None:
    broker = EmbeddedBroker()
    broker.start()
    prices = topic_prefix + "grid.price.v1"
    readings = topic_prefix + "site.telemetry.v1"
    decisions = topic_prefix + "dispatch.decision.v1"
    # The reading's round starts 3 s after it is read: after the broker has gone.
    settings = worker_settings(topic_prefix, debounce_ms=3000, telemetry_debounce_ms=3000)
    try:
        async with worker_on(broker.bootstrap, one_site_fleet, settings) as worker:
            ledger = worker.planner.ledger
            assert ledger is not None
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
            # One more reading (old offset 4), read and parked; nothing else waits.
            await produce(
                broker.bootstrap, [(readings, b"site-a", as_json(telemetry("site-a", 4)))]
            )
            await until(lambda: ledger.outstanding() == 1, "the reading parked")
            acked, forgotten = ledger.acked, ledger.forgotten

            await asyncio.to_thread(broker.stop)
            await worker.watch.wait_for(up=False, timeout_s=10)
            # Its round has nothing to deliver; the reading's ack waits for the broker (before
            # the fix it was acked here, and the lane's commit of offset 5 retried by the client).
            await until(lambda: not ledger.pending, "the round took the reading")
            await asyncio.to_thread(broker.start)  # same port, nothing kept
            await wait_listed(broker.bootstrap, required_topics(settings))
            # The loss told (the watch is ready only after), and then the round's acks went
            # out: the reading, of the lost log, was let go unacked.
            await until(worker.watch.ready.is_set, "the watch ready again")
            await until(lambda: ledger.outstanding() == 0, "the reading's round over")
            assert ledger.forgotten == forgotten + 1 and ledger.acked == acked
            # Nothing of the old log in the new one, which holds no reading yet: the offset a
            # worker joining now (a rebalance) would resume the new log at (5 before the fix,
            # and the lane, resuming there, then never committed below it again).
            group = lane_group(settings.app_id)
            now = await asyncio.to_thread(committed, broker.bootstrap, group, readings)
            assert all(offset == 0 for offset in now.values()), now

            # Published after the restart, at offsets 0, 1 of the new log: all decided.
            for k in (5, 6):
                await produce(
                    broker.bootstrap,
                    [
                        (prices, b"HB_SOUTH", as_json(price(k, 30.0 + k))),
                        (readings, b"site-a", as_json(telemetry("site-a", k))),
                    ],
                )
                await find_record(broker.bootstrap, decisions, decision_at(k))
            assert worker.watch.logs_lost == 1
            # What the lane committed in the new log is what it read there (2), never the old
            # reading's offset (5).
            assert await committed_settles_at_end(broker.bootstrap, group, readings)
            assert await committed_settles_at_end(broker.bootstrap, settings.app_id, prices)
    finally:
        broker.stop()
