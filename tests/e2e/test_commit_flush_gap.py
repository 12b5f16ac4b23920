"""A faust commit whose offsets were worked out before the broker lost its log, but which reaches
faust's consumer thread only after the loss was told (it waits in the producer's flush first:
a produce pending when the broker went makes the flush outlast the restart), must not land in
the new log: it would carry offsets past the new log's end and the new log's records would be
skipped (found by a review: committed {2: 4} into a log of 1 record, the next price never
decided)."""

from __future__ import annotations

import asyncio

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.worker._transport import started_consumer
from streams.worker.app import required_topics
from tests.e2e.harness import (
    as_json,
    committed_settles_at_end,
    decision_at,
    find_record,
    old_log_decided_and_acked,
    produce,
    until,
    wait_listed,
    worker_on,
    worker_settings,
)
from tests.factories import price

pytestmark = pytest.mark.e2e


@pytest.mark.usefixtures("committing_on_demand")
async def test_a_commit_handed_over_after_a_log_loss_carries_nothing_of_the_old_log(
    topic_prefix: str, one_site_fleet: Fleet
) -> None:
    broker = EmbeddedBroker()
    broker.start()
    prices = topic_prefix + "grid.price.v1"
    decisions = topic_prefix + "dispatch.decision.v1"
    settings = worker_settings(topic_prefix, debounce_ms=0)
    try:
        async with worker_on(broker.bootstrap, one_site_fleet, settings) as worker:
            consumer = started_consumer(worker.app)
            assert consumer is not None
            ledger = worker.planner.ledger
            assert ledger is not None
            await old_log_decided_and_acked(broker.bootstrap, topic_prefix, worker)

            # The producer's flush held until the loss has been told (a stand-in for a produce
            # pending across the restart; the flush itself is faust's real one).
            producer = worker.app.producer
            real_flush = producer.flush
            release = asyncio.Event()
            entered = asyncio.Event()

            async def held_flush() -> None:
                entered.set()
                await release.wait()
                await real_flush()

            producer.flush = held_flush  # type: ignore[method-assign]
            try:
                await asyncio.to_thread(broker.stop)
                await worker.watch.wait_for(up=False, timeout_s=10)
                commit = asyncio.ensure_future(consumer.commit())  # offsets of the old log
                async with asyncio.timeout(10):
                    await entered.wait()
                await asyncio.to_thread(broker.start)
                await wait_listed(broker.bootstrap, required_topics(settings))
                await until(worker.watch.ready.is_set, "the watch ready again")
                assert worker.watch.logs_lost == 1
                release.set()  # the commit worked out before the loss goes to the thread now
                async with asyncio.timeout(30):
                    assert await commit is False  # nothing of the old log sent
            finally:
                release.set()
                producer.flush = real_flush  # type: ignore[method-assign]
            # The new log is read and decided from its start (before the fix: committed at the
            # old log's offset 4, the group skipped this price), and faust's next commit takes
            # the new log's offsets.
            await produce(broker.bootstrap, [(prices, b"HB_SOUTH", as_json(price(5, 30.0)))])
            await find_record(broker.bootstrap, decisions, decision_at(5))
            await until(lambda: ledger.outstanding() == 0, "the new price acked")
            await consumer.commit()
            assert await committed_settles_at_end(broker.bootstrap, settings.app_id, prices)
    finally:
        broker.stop()
