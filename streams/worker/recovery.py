"""Rebuilding a worker's state after a restart or crash, before it starts consuming.

The state (curves, telemetry, signals) lives in memory. On start, every input topic (and the
routed site-keyed copies of fleet-level inputs) is read from
its beginning up to the offsets the consumer group has committed, and folded into the state
without deciding anything; the faust consumer then resumes at those offsets, so what was not yet
committed is read again and decided (at-least-once). Retention on Apache Kafka bounds how far
back this reaches; the embedded broker keeps everything until it stops.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import INPUT_TOPICS, SITE_KEYED_INPUTS
from streams.engine.ingest import ingest
from streams.engine.state import Applied, FleetState
from streams.kafka.connection import KafkaConnection
from streams.settings import Settings
from streams.worker.routing import ROUTED_TOPIC, RoutingError, unframe
from streams.worker.telemetry import TELEMETRY, lane_group

log = logging.getLogger(__name__)


async def rebuild_state(
    settings: Settings,
    connection: KafkaConnection,
    state: FleetState,
    *,
    timeout_s: float = 120.0,
    only_partitions: frozenset[int] | None = None,
) -> int:
    """Fold every committed input into ``state``; return how many were applied.

    With ``only_partitions``, only those partitions of the site-keyed topics (telemetry, compute
    demand, routed inputs) are read, and the fleet-level topics in full (a worker that owned
    every site of an input decided it without routing it): catching up handed-over sites.
    """
    names = {settings.topic(name): name for name in (*INPUT_TOPICS, ROUTED_TOPIC)}
    site_keyed = {settings.topic(name) for name in (*SITE_KEYED_INPUTS, ROUTED_TOPIC)}
    probe = AIOKafkaConsumer(
        **connection.client(
            group_id=settings.app_id, enable_auto_commit=False, auto_offset_reset="earliest"
        )
    )
    await probe.start()
    try:
        existing = await probe.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in names
            if topic in existing
            for p in sorted(probe.partitions_for_topic(topic) or ())
            if only_partitions is None or topic not in site_keyed or p in only_partitions
        ]
        telemetry = settings.topic(TELEMETRY)
        targets = await _committed(probe, [tp for tp in partitions if tp.topic != telemetry])
        # The telemetry lane keeps its offsets under its own group (streams/worker/telemetry.py).
        lane = AIOKafkaConsumer(
            **connection.client(group_id=lane_group(settings.app_id), enable_auto_commit=False)
        )
        await lane.start()
        try:
            targets.update(
                await _committed(lane, [tp for tp in partitions if tp.topic == telemetry])
            )
        finally:
            await lane.stop()
        if not targets:
            return 0
        probe.assign(list(targets))
        await probe.seek_to_beginning(*targets)
        return await asyncio.wait_for(_replay(probe, targets, names, state, settings), timeout_s)
    finally:
        await probe.stop()


async def _committed(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The partitions with a committed offset past 0, and that offset."""
    found = {}
    for tp in partitions:
        offset = await consumer.committed(tp)
        if offset:
            found[tp] = offset
    return found


async def _replay(
    probe: AIOKafkaConsumer,
    targets: dict[TopicPartition, int],
    names: dict[str, str],
    state: FleetState,
    settings: Settings,
) -> int:
    applied = 0
    remaining = set(targets)
    while remaining:
        batch = await probe.getmany(*remaining, timeout_ms=500)
        for tp, messages in batch.items():
            for message in messages:
                if message.offset >= targets[tp]:
                    break
                name, raw = names[tp.topic], message.value
                if name == ROUTED_TOPIC:
                    try:
                        name, _, raw = unframe(raw)
                    except RoutingError:
                        continue  # dead-lettered when it was first read
                outcome = ingest(state, name, raw, settings.max_message_bytes)
                applied += isinstance(outcome, Applied)
        for tp in list(remaining):
            if await probe.position(tp) >= targets[tp]:
                remaining.discard(tp)
    return applied
