"""The batched telemetry lane on a real broker: it reads only the partitions it is given, folds
valid events into the state, sends the rest to ``reject``, parks what it read until the decisions
are delivered, and then commits under its own group; no batch or record stops it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import streams.engine.ingest
import streams.worker.telemetry
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
from streams.worker.health import Faults
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


async def test_no_batch_stops_the_lane(
    broker: EmbeddedBroker, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that raises is read again from the committed offsets (nothing skipped, nothing
    committed early); a record the worker fails on is dead-lettered; the lane keeps running and
    says what happened (issue #11, item 3)."""
    bootstrap = broker.bootstrap
    topic = f"{topic_prefix}site.telemetry.v1"
    await create_missing_topics(KafkaConnection(bootstrap), {topic: 1})
    state = FleetState(Fleet(sites=(mining_site(site_id="site-a"),)))

    async def publish(_: DispatchDecision) -> None:
        return None

    ledger = AckLedger()
    planner = Replanner(state, publish, Decider(load_settings().horizon()), debounce_s=0.0)
    rejected: list[tuple[int, Rejection]] = []
    read = asyncio.Event()

    async def reject(_topic: str, message: Any, why: Rejection) -> None:
        if not rejected:
            rejected.append((-1, why))
            raise RuntimeError("dead-letter topic unreachable (injected)")  # the first time only
        rejected.append((message.offset, why))

    faults = Faults()
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
        faults=faults,
    )
    poison = telemetry("site-a", 1, mining_mw=13.0)
    real_ingest = streams.engine.ingest.ingest

    def ingest(state: FleetState, topic: str, raw: bytes | None, max_bytes: int) -> Any:
        if raw == encode(poison):
            raise ZeroDivisionError("bug on this record (injected)")
        return real_ingest(state, topic, raw, max_bytes)

    monkeypatch.setattr(streams.worker.telemetry, "ingest", ingest)
    monkeypatch.setattr(streams.worker.telemetry, "RETRY_INITIAL_S", 0.01)
    await lane.start()
    try:
        await lane.assign(frozenset({0}))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for raw in (b"{not json", encode(poison), encode(telemetry("site-a", 2))):
                await producer.send_and_wait(topic, raw, key=b"site-a")
        finally:
            await producer.stop()
        async with background(lane.run(), "lane") as task, asyncio.timeout(30):
            while len(rejected) < 3:
                read.clear()
                await read.wait()
            assert not task.done()
        assert lane.failures == 1  # the batch whose reject failed, read again
        assert [(offset, why.reason) for offset, why in rejected[1:]] == [
            (0, "not_json"),
            (1, "schema_violation"),
        ]
        assert "ZeroDivisionError" in rejected[2][1].error
        assert "telemetry lane" not in faults.failing  # it went on: no longer failing
        crash = faults.crashed["telemetry lane"]
        assert crash.note == f"{topic} offset 1 dead-lettered"
        assert state.telemetry["site-a"].interval_start == telemetry("site-a", 2).interval_start
        probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{topic_prefix}lane")
        await probe.start()
        try:
            tp = TopicPartition(topic, 0)
            assert await probe.committed(tp) is None  # parked: not before the decisions
            await ledger.release(ledger.take())
            assert await probe.committed(tp) == 3
        finally:
            await probe.stop()
    finally:
        await lane.stop()


class _Commits:
    """A STAND-IN for the lane's consumer: records the offsets it is told to commit."""

    def __init__(self) -> None:
        self.made: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.made.append(dict(offsets))


class _Message:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value, self.key, self.partition = offset, value, b"site-a", 0
        self.topic, self.timestamp = "t", 0


async def test_a_fetch_with_nothing_to_decide_is_not_committed_past_an_earlier_parked_one() -> None:
    # Fetch 1 (offsets 0-1, valid) is parked for its decisions; fetch 2 (offset 2, garbage) has
    # nothing to decide and is acked once its dead letter is out. Committing 3 then would
    # skip fetch 1 at a restart if its decisions never went out: the commit waits at 0.
    state = FleetState(Fleet(sites=(mining_site(site_id="site-a"),)))

    async def publish(_: DispatchDecision) -> None:
        return None

    async def reject(_topic: str, _message: object, _why: Rejection) -> None:
        return None

    ledger = AckLedger()
    lane = TelemetryLane(
        topic="t",
        connection=KafkaConnection("127.0.0.1:9"),
        group="g",
        state=state,
        planner=Replanner(state, publish, Decider(load_settings().horizon()), debounce_s=0.0),
        ledger=ledger,
        reject=reject,
        count=lambda consumed, applied: None,
        max_bytes=100_000,
    )
    commits = _Commits()
    tp = TopicPartition("t", 0)
    lane._consumer = commits
    lane._held = frozenset({0})
    lane._committed[tp] = 0
    valid = [_Message(k, encode(telemetry("site-a", k))) for k in range(2)]
    await lane._fold({tp: valid}, generation=0)
    await lane._fold({tp: [_Message(2, b"{not json")]}, generation=0)
    assert commits.made == []  # not past offset 0, whose fetch waits for its decisions
    await ledger.release(ledger.take())  # fetch 1's decisions delivered
    assert commits.made == [{tp: 3}]  # now both, in one commit
