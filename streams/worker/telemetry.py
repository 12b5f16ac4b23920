"""Batched telemetry ingest straight from aiokafka (the fast lane).

Telemetry is the high-rate input (per-device figures at gigawatt scale, tens of thousands of
events a second). faust's per-message path tops out near 6k events/s here, so telemetry skips it:
one aiokafka consumer per worker reads the telemetry partitions this worker owns (the same
partition numbers faust assigned it on the routed topic, so ownership stays co-partitioned),
``getmany`` batches of thousands, folds each event into the state with the same ``ingest``
function as every other input, and marks each touched site dirty once per batch.

Delivery guarantees stay those of the agents: offsets are committed (under the consumer group
``<app id>.telemetry``, which never joins; faust's group owns the assignment) only after the
decisions they caused were delivered, through the same :class:`~streams.worker.acks.AckLedger`;
rejects go to the dead-letter topic first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.engine.codec import Rejection
from streams.engine.ingest import ingest
from streams.engine.state import FleetState
from streams.kafka.connection import KafkaConnection
from streams.worker.acks import AckLedger
from streams.worker.replanner import Replanner

log = logging.getLogger(__name__)

TELEMETRY = "site.telemetry.v1"
Reject = Callable[[str, Any, Rejection], Awaitable[None]]
Count = Callable[[int, int], None]  # (consumed, applied) per partition batch


def lane_group(app_id: str) -> str:
    """The consumer group whose committed offsets the telemetry lane keeps."""
    return f"{app_id}.telemetry"


@dataclass
class TelemetryLane:
    """Consumes owned telemetry partitions in batches; acks through the ledger."""

    topic: str
    connection: KafkaConnection
    group: str
    state: FleetState
    planner: Replanner
    ledger: AckLedger
    reject: Reject
    count: Count
    max_bytes: int
    fetch_max_wait_ms: int = 10
    partition_fetch_bytes: int = 4 * 1024 * 1024
    max_records: int = 10_000
    consumed: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _held: frozenset[int] = frozenset()
    _next: dict[TopicPartition, int] = field(default_factory=dict)
    _committed: dict[TopicPartition, int] = field(default_factory=dict)
    _assigned: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **self.connection.client(
                group_id=self.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=self.fetch_max_wait_ms,
                max_partition_fetch_bytes=self.partition_fetch_bytes,
            )
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def assign(self, partitions: frozenset[int]) -> None:
        """Read these telemetry partitions from their committed offsets (faust's assignment)."""
        consumer = self._require()
        self._held = partitions
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if not tps:
            self._assigned.clear()  # more workers than partitions: this one idles
            return
        for tp in tps:
            committed = await consumer.committed(tp)
            self._committed[tp] = -1 if committed is None else committed
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        self._assigned.set()

    async def run(self) -> None:
        """Consume forever (cancel to stop)."""
        consumer = self._require()
        while True:
            await self._assigned.wait()
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
            except KafkaError as exc:
                # Never let telemetry stop silently: say so and keep trying.
                log.warning("telemetry fetch failed, retrying in 1 s", extra={"error": str(exc)})
                await asyncio.sleep(1.0)  # back-off before the next fetch, not synchronisation
                continue
            if batch:
                await self._fold(batch)

    async def _fold(self, batch: Mapping[TopicPartition, list[Any]]) -> None:
        dirty: set[str] = set()
        offsets: dict[TopicPartition, int] = {}
        for tp, messages in batch.items():
            if tp.partition not in self._held:
                continue  # revoked while the fetch was in flight: the new owner reads it
            applied = 0
            for message in messages:
                outcome = ingest(self.state, TELEMETRY, message.value, self.max_bytes)
                if isinstance(outcome, Rejection):
                    await self.reject(self.topic, message, outcome)
                else:
                    dirty |= outcome.sites
                    applied += 1
            offsets[tp] = self._next[tp] = messages[-1].offset + 1
            self.count(len(messages), applied)
            self.consumed += len(messages)
        if not offsets:
            return
        if dirty:
            self.ledger.park(self, offsets)  # committed once the decisions are delivered
            self.planner.mark_dirty(frozenset(dirty), "telemetry")
        else:
            await self.ack(offsets)  # only rejects: nothing to decide

    def lag(self) -> int:
        """Telemetry events on the owned partitions not read yet (from the last fetch's view)."""
        consumer = self._require()
        total = 0
        for partition in self._held:
            tp = TopicPartition(self.topic, partition)
            highwater = consumer.highwater(tp)
            if highwater is not None:
                total += max(0, highwater - self._next.get(tp, 0))
        return total

    async def ack(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` (the ledger calls this after delivery)."""
        # Only forward: a batch with nothing to decide may be acked before an earlier one
        # whose decisions are still on their way; committing that one after must not go back.
        mine = {
            tp: o
            for tp, o in offsets.items()
            if tp.partition in self._held and o > self._committed.get(tp, -1)
        }
        if not mine:
            return
        self._committed.update(mine)
        try:
            await self._require().commit(mine)
        except KafkaError as exc:
            # Not fatal: the offsets stay uncommitted and are read again after a restart.
            log.warning("telemetry offset commit failed", extra={"error": str(exc)})

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("telemetry lane not started")
        return self._consumer
