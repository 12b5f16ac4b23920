"""The batched telemetry lane on a real broker: it reads only the partitions it is given, folds
valid events into the state, sends the rest to ``reject``, parks what it read until the decisions
are delivered, and then commits under its own group."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas import DispatchDecision
from streams.engine.codec import Rejection, encode
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.state import FleetState
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import create_missing_topics
from streams.settings import load_settings
from streams.worker._background import background
from streams.worker.acks import AckLedger
from streams.worker.replanner import Replanner
from streams.worker.routing import partition_of
from streams.worker.telemetry import TelemetryLane
from tests.factories import mining_site, telemetry


async def test_lane_folds_rejects_parks_and_commits_after_delivery(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap
    topic = f"{topic_prefix}site.telemetry.v1"
    await create_missing_topics(KafkaConnection(bootstrap), {topic: 4})
    fleet = Fleet(sites=(mining_site(site_id="site-a"), mining_site(site_id="site-b")))
    state = FleetState(fleet)

    async def publish(_: DispatchDecision) -> None:
        return None

    ledger = AckLedger()
    planner = Replanner(state, publish, Decider(load_settings().horizon()), debounce_s=0.0)
    rejected: list[Rejection] = []
    read = asyncio.Event()

    async def reject(_topic: str, _message: object, why: Rejection) -> None:
        rejected.append(why)

    lane = TelemetryLane(
        topic=topic,
        connection=KafkaConnection(bootstrap),
        group=f"{topic_prefix}lane",
        state=state,
        planner=planner,
        ledger=ledger,
        reject=reject,
        count=lambda consumed, applied: read.set(),
        max_bytes=100_000,
    )
    await lane.start()
    try:
        await lane.assign(frozenset())  # more workers than partitions: idle, no crash
        assert lane.lag() == 0
        mine = partition_of("site-a", 4)
        await lane.assign(frozenset({mine}))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for event in (telemetry("site-a", 0), telemetry("site-a", 1), telemetry("site-b", 0)):
                await producer.send_and_wait(topic, encode(event), key=event.site_id.encode())
            await producer.send_and_wait(topic, b"{not json", key=b"site-a")
        finally:
            await producer.stop()
        # On the lane's partition: site-a twice, the garbage (keyed site-a), maybe site-b.
        expected = 3 + (partition_of("site-b", 4) == mine)
        async with background(lane.run(), "lane"), asyncio.timeout(30):
            while lane.consumed < expected:
                read.clear()
                await read.wait()
        assert [r.reason for r in rejected] == ["not_json"]
        assert state.telemetry["site-a"].interval_start == telemetry("site-a", 1).interval_start
        taken = ledger.take()
        assert len(taken) >= 1  # parked until the decisions are delivered
        tp = TopicPartition(topic, mine)
        await ledger.release(taken)
        probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{topic_prefix}lane")
        await probe.start()
        try:
            # Whatever order the batches were acked in, the commit never goes back.
            assert await probe.committed(tp) == expected
            await lane.ack({tp: 1})
            assert await probe.committed(tp) == expected
        finally:
            await probe.stop()
    finally:
        await lane.stop()
