"""A log the broker lost (issue #11, fault 2): nothing read from it is acked afterwards, by the
ledger, faust's consumer or the telemetry lane, and the lane reads the new log from its start."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from faust.types import TP

from schemas import DispatchDecision
from streams.engine.codec import Rejection, encode
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.state import FleetState
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import LogLoss, create_missing_topics
from streams.settings import load_settings
from streams.worker._background import background
from streams.worker._transport import App, started_consumer
from streams.worker.acks import AckLedger
from streams.worker.replanner import Replanner
from streams.worker.routing import partition_of
from streams.worker.telemetry import TelemetryLane
from tests.factories import mining_site, telemetry
from tests.worker.standins import Event, Message, Stream


async def test_ledger_never_acks_what_was_read_from_a_lost_log() -> None:
    discarded: list[Any] = []
    ledger = AckLedger(discard=lambda _stream, event: discarded.append(event))
    stream = Stream()
    old_price, old_demand = Event(Message("prices", 7)), Event(Message("demand", 3))
    old_readings = {TopicPartition("telemetry", 0): 12}
    ledger.park(stream, old_price)
    ledger.park(stream, old_demand)
    ledger.park(stream, old_readings)
    taken = ledger.take()  # a round in flight across the loss

    await ledger.log_lost(LogLoss(frozenset({"prices", "telemetry"}), 1))
    new_price = Event(Message("prices", 0))
    ledger.park(stream, new_price)
    # Read before the loss, parked after it (the lane tells the generation it fetched in).
    ledger.park(stream, {TopicPartition("telemetry", 0): 40}, 0)
    await ledger.release(taken)
    await ledger.release(ledger.take())

    # Only what belongs to a log that still exists is acked: the demand (its topic was not
    # lost) and the price read from the new log.
    assert stream.acked == [old_demand, new_price]
    assert discarded == [old_price, old_readings, {TopicPartition("telemetry", 0): 40}]
    assert ledger.forgotten == 3 and ledger.acked == 2 and ledger.outstanding() == 0
    assert ledger.generation == 1

    # A failed round gives its events back with their generation: still not acked later.
    ledger.park(stream, Event(Message("prices", 1)))
    retried = ledger.take()
    await ledger.log_lost(LogLoss(frozenset({"prices"}), 2))
    ledger.restore(retried)
    await ledger.release(ledger.take())
    assert ledger.forgotten == 4 and len(stream.acked) == 2


async def test_faust_consumer_forgets_a_lost_log_and_ignores_its_acks() -> None:
    app = App("log-loss-unit", broker="kafka://127.0.0.1:1", autodiscover=False, store="memory://")
    # Agents subscribing to them would make faust track their acks; no agent runs here.
    app.topics.acking_topics.update({"prices", "demand"})
    app.consumer  # built, not started  # noqa: B018
    consumer = started_consumer(app)
    assert consumer is not None
    lost_tp, kept_tp = TP("prices", 0), TP("demand", 0)

    def fetched(tp: TP, offset: int) -> Any:
        record = _Record(tp.topic, tp.partition, offset)
        return consumer._to_message(tp, record)

    old, kept = fetched(lost_tp, 5), fetched(kept_tp, 2)
    consumer._read_offset[lost_tp] = 5
    consumer._committed_offset[lost_tp] = 5
    consumer._acked[lost_tp].append(4)
    consumer._unacked_messages.add(old)

    await consumer.forget_log(LogLoss(frozenset({"prices"}), 1))
    # Its bookkeeping of the old log is gone (not started: nothing to seek).
    assert lost_tp not in consumer._read_offset and lost_tp not in consumer._committed_offset
    assert lost_tp not in consumer._acked
    # The old message's ack is ignored: nothing to commit, and faust no longer waits for it.
    assert consumer.read_before_loss(old) and not consumer.ack(old)
    assert old.acked and old not in consumer._unacked_messages and consumer.forgotten == 1
    assert consumer._new_offset(lost_tp) is None
    # A message of a topic that was not lost, and one of the new log, are acked as usual.
    assert consumer.ack(kept) and consumer._new_offset(kept_tp) == 3
    consumer._batch_generation = 1  # fetched after the loss
    new = fetched(lost_tp, 0)
    assert not consumer.read_before_loss(new) and consumer.ack(new)
    assert consumer._new_offset(lost_tp) == 1


@dataclass
class _Record:
    """An aiokafka ConsumerRecord's fields that faust reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int = 0
    timestamp_type: int = 0
    headers: tuple[()] = ()
    key: bytes | None = None
    value: bytes | None = b"{}"
    checksum: None = None
    serialized_key_size: int = 0
    serialized_value_size: int = 2


async def test_telemetry_lane_reads_the_new_log_from_its_start(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap
    topic = f"{topic_prefix}site.telemetry.v1"
    await create_missing_topics(KafkaConnection(bootstrap), {topic: 4})
    state = FleetState(Fleet(sites=(mining_site(site_id="site-a"),)))

    async def publish(_: DispatchDecision) -> None:
        return None

    async def reject(_topic: str, _message: object, _why: Rejection) -> None:
        return None

    ledger = AckLedger()
    planner = Replanner(state, publish, Decider(load_settings().horizon()), debounce_s=0.0)
    read = asyncio.Event()
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
    mine = partition_of("site-a", 4)
    tp = TopicPartition(topic, mine)
    await lane.start()
    try:
        await lane.assign(frozenset({mine}))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for k in range(3):
                await producer.send_and_wait(topic, encode(telemetry("site-a", k)), key=b"site-a")
        finally:
            await producer.stop()
        async with background(lane.run(), "lane"), asyncio.timeout(30):
            while lane.consumed < 3:
                read.clear()
                await read.wait()
        parked = ledger.take()
        await ledger.release(parked)
        consumer = lane._consumer
        assert consumer is not None
        assert lane._committed[tp] == 3 and await consumer.committed(tp) == 3

        await lane.log_lost(LogLoss(frozenset({topic}), 1))
        # Forgotten, and positioned at the start of the (new) log; nothing of it committed.
        assert lane._committed[tp] == -1 and lane._next == {}
        assert await consumer.position(tp) == 0
        # A batch fetched across the loss is neither parked nor acked, and what it moved past
        # is read again from the start.
        before = len(ledger.pending)
        await consumer.getmany(timeout_ms=100)  # moves the position, as the fetch did
        await lane._fold({tp: [_Fetched(topic, mine, 2, encode(telemetry("site-a", 9)))]}, 0)
        assert len(ledger.pending) == before and lane.batches_forgotten == 1
        assert lane._next == {tp: 0} and await consumer.position(tp) == 0
        # One fetched after it is parked with the new generation.
        await lane._fold({tp: [_Fetched(topic, mine, 0, encode(telemetry("site-a", 10)))]}, 1)
        assert ledger.pending[-1].generation == 1 and lane._next == {tp: 1}
    finally:
        await lane.stop()


@dataclass
class _Fetched:
    """The fields of an aiokafka record the lane reads."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = b"site-a"
