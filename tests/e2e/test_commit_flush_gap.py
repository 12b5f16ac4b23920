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
from streams.worker.app import required_topics
from tests.e2e.harness import (
    new_log_decided_and_committed,
    until,
    wait_listed,
    worker_past_old_log,
)

pytestmark = pytest.mark.e2e


@pytest.mark.usefixtures("committing_on_demand")
async def test_a_commit_handed_over_after_a_log_loss_carries_nothing_of_the_old_log(
    topic_prefix: str, one_site_fleet: Fleet, own_broker: EmbeddedBroker
) -> None:
    broker = own_broker
    async with worker_past_old_log(broker.bootstrap, topic_prefix, one_site_fleet) as parts:
        worker, consumer, settings = parts
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
        assert await new_log_decided_and_committed(
            broker.bootstrap, topic_prefix, worker, settings, (5,)
        )
