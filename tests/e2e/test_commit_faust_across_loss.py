"""A faust offset commit under way while the broker loses its log must not land in the new log
(issue #11, fault 2, the faust groups' side of test_log_loss_acked_away).

faust commits acked offsets every ``broker_commit_interval`` through aiokafka, which retries a
commit (every 100 ms, without end) while the broker is away and sends it again, with whatever
group generation it has then, once the broker is back: into the new log, where its offset is
one of the lost log (past the new log's end, or skipping records the new log holds below it).
An ack may come just before the broker goes away and faust's commit just after: here faust's
own periodic commit is moved out of the way (an hour) and the test starts that same commit
(``consumer.commit()``, what faust's commit timer calls) at the moment the broker is away.

Whether a commit retried across the restart lands depends on when it is sent again: Tansu
answers one still carrying the old group member with UNKNOWN_MEMBER_ID (seen here), but once
the consumer has rejoined the new broker's group the retry carries the new member and
generation and is taken. So the test does not wait for that race: the loss is told while the
client is still retrying, and the commit must stop there."""

from __future__ import annotations

import asyncio

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.watch import LogLoss
from streams.worker.app import required_topics
from tests.e2e.harness import (
    NO_PERIODIC_COMMIT_S,
    committed,
    new_log_decided_and_committed,
    until,
    wait_listed,
    worker_past_old_log,
)

pytestmark = pytest.mark.e2e


@pytest.mark.usefixtures("committing_on_demand")
async def test_a_faust_commit_under_way_across_a_log_loss_does_not_land_in_the_new_log(
    topic_prefix: str, one_site_fleet: Fleet, own_broker: EmbeddedBroker
) -> None:
    broker = own_broker
    prices = topic_prefix + "grid.price.v1"
    # The old log: prices 0-3 on one partition, decided and acked, not committed yet.
    async with worker_past_old_log(broker.bootstrap, topic_prefix, one_site_fleet) as parts:
        worker, consumer, settings = parts
        assert consumer.commit_interval == NO_PERIODIC_COMMIT_S
        assert await asyncio.to_thread(committed, broker.bootstrap, settings.app_id, prices) == {}

        await asyncio.to_thread(broker.stop)
        await worker.watch.wait_for(up=False, timeout_s=10)
        # faust's commit of those acks, with the broker away: the client retries it.
        started = dict(consumer._thread.tp_last_committed_at)
        commit = asyncio.ensure_future(consumer.commit())
        await until(
            lambda: consumer._thread.tp_last_committed_at != started,
            "faust's commit handed to the client",
        )
        assert not commit.done()
        # The loss, told while the broker is still away (so the client is sure to be
        # retrying still): it stops that commit.
        loss = LogLoss(frozenset({prices}), worker.watch.log_generation + 1)
        forget = asyncio.ensure_future(consumer.forget_log(loss))
        async with asyncio.timeout(10):
            assert await commit is False  # stopped (before the fix: retried on)
        assert consumer.commits_dropped == 1
        # faust keeps no offset of the lost log as committed (it commits only forward).
        assert all(tp.topic != prices for tp in consumer._committed_offset)

        await asyncio.to_thread(broker.start)  # same port, nothing kept
        await wait_listed(broker.bootstrap, required_topics(settings))
        await until(worker.watch.ready.is_set, "the watch ready again")
        async with asyncio.timeout(30):
            await forget
        assert worker.watch.logs_lost == 1

        # Published after the restart, at offsets 0, 1 of the new log: decided, and faust's
        # next commits take the new log's offsets, never the old log's 4 (past the new log's
        # end of 2, and above everything faust commits there).
        assert await new_log_decided_and_committed(
            broker.bootstrap, topic_prefix, worker, settings, (5, 6)
        )
