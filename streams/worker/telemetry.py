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
rejects go to the dead-letter topic first (``reject_all`` returns once delivered, and never
raises). The rejects of one fetch go out together (all sent, their deliveries awaited once, the
topic confirmed once), not one round trip each: a run of thousands of bad readings no longer
holds the valid ones behind it for seconds.

A reading of a site this worker does not own (its producer did not partition by murmur2 of the
site id, as librdkafka clients do by default, or keyed it by something else) is forwarded to the
owner's partition of the routed topic, the forwards of one fetch together (``forward``: all sent,
then all deliveries awaited), and its offset is done once they are delivered; it is not decided
here. A single worker owns every site: nothing is forwarded, the check costs one set lookup.

A broker that lost the telemetry topic lost its log (the embedded broker keeps nothing across a
restart): :meth:`TelemetryLane.log_lost` forgets the lane's read and committed offsets and reads
the new log from its start, and a batch fetched before the loss is neither parked nor acked (its
offsets belong to the old log; committing them would skip the new log's first records).

An ack already under way may still carry an old offset across the loss: a round with nothing to
deliver acks its inputs without waiting for the broker, and the client retries a commit for as
long as the broker is away, so it lands in the new log once the topic is back (seen: offset 5
committed into a new log of 2 records). So :meth:`~TelemetryLane.log_lost` also stops the
commits in flight, and commits the new log's start (0) over every partition the lane had
committed to or was committing to: whatever of the old log reached the new one is overwritten
(on the same connection, after any attempt of the stopped commit already sent).

No batch stops the lane: whatever a batch raises is logged loudly and reported to /health, the
owned partitions are read again from their committed offsets after a capped back-off, and the
lane carries on; the next batch that goes through clears the report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from schemas import TelemetryEvent, topic_for
from streams.engine.codec import Rejection
from streams.engine.ingest import ingest
from streams.engine.state import FleetState
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import LogLoss
from streams.worker._client_stop import stop_consumer
from streams.worker.acks import AckLedger
from streams.worker.health import Faults, describe
from streams.worker.replanner import Replanner

log = logging.getLogger(__name__)

TELEMETRY = topic_for(TelemetryEvent).name
#: Parts reported to /health.
LANE = "telemetry lane"
COMMITS = "telemetry offset commits"
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
#: Longest :meth:`TelemetryLane.log_lost` waits for the new log's start to be committed (it holds
#: the broker watch's ``ready`` until then).
COMMIT_RESET_TIMEOUT_S = 10.0
Reject = Callable[[str, Any, Rejection], Awaitable[None]]
#: Dead-letter a batch: (topic read, [(record, rejection)]); returns once all are delivered.
RejectAll = Callable[[str, Sequence[tuple[Any, Rejection]]], Awaitable[None]]
#: Forward readings to their sites' owners: (contract topic, [(site id, raw bytes)]); returns
#: once every copy is delivered (``Agents.forward_all``).
Forward = Callable[[str, Sequence[tuple[str, bytes | None]]], Awaitable[None]]
Count = Callable[[int, int], None]  # (consumed, applied) per partition batch


@dataclass
class _Fetch:
    """What one fetch holds, sorted out (:meth:`TelemetryLane._read`)."""

    dirty: set[str] = field(default_factory=set)  # sites to decide here
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # next offset per partition
    starts: dict[TopicPartition, int] = field(default_factory=dict)  # first offset per partition
    rejected: list[tuple[Any, Rejection]] = field(default_factory=list)
    forwards: list[tuple[str, bytes | None]] = field(default_factory=list)  # (site, raw)
    counts: list[tuple[int, int]] = field(default_factory=list)  # (read, applied) per partition


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
    faults: Faults = field(default_factory=Faults)
    #: The rejects of a fetch together (None: one ``reject`` after the other).
    reject_all: RejectAll | None = None
    #: Where readings of sites this worker does not own go (None: decided here, whoever owns
    #: them; only for a lane without the worker's agents).
    forward: Forward | None = None
    #: Readings forwarded to their owner so far.
    forwarded: int = 0
    consumed: int = 0
    failures: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _held: frozenset[int] = frozenset()
    _next: dict[TopicPartition, int] = field(default_factory=dict)
    #: Sites folded in by a fetch whose rejects or forwards failed (it is read again).
    _carried: set[str] = field(default_factory=set)
    _committed: dict[TopicPartition, int] = field(default_factory=dict)
    #: Per partition, the fetches parked for their decisions and not acked yet (next offset ->
    #: first offset): no commit may pass the first offset of one (a restart would skip it).
    _parked: dict[TopicPartition, dict[int, int]] = field(default_factory=dict)
    #: Per partition, the highest offset acked so far (committed once nothing parked is before).
    _wanted: dict[TopicPartition, int] = field(default_factory=dict)
    _assigned: asyncio.Event = field(default_factory=asyncio.Event)
    #: The broker watch's log generation as last told, and the one its topic was last lost in.
    log_generation: int = 0
    _lost_in: int = -1
    #: Batches dropped because they were fetched from a log lost since.
    batches_forgotten: int = 0
    #: Commits sent and not answered yet, with the partitions they write.
    _commits: dict[asyncio.Task[None], frozenset[TopicPartition]] = field(default_factory=dict)
    #: Commits stopped because the log they were for was lost meanwhile.
    commits_dropped: int = 0

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
        # Commits still retrying end with the lane: they would otherwise retry until the event
        # loop closes, and a commit of this worker's offsets after it stopped is no one's.
        if unsent := sorted(
            {f"{tp.topic}/{tp.partition}" for tps in self._commits.values() for tp in tps}
        ):
            log.warning(
                "telemetry offsets not committed at stop: the broker did not confirm them; "
                "those readings are read again at the next start (at-least-once)",
                extra={"partitions": unsent},
            )
        for task in list(self._commits):
            task.cancel()
        if self._consumer is not None:
            # Bounded, and safe from aiokafka's stray cancel when the broker is gone.
            await stop_consumer(self._consumer, "telemetry lane")

    async def assign(self, partitions: frozenset[int]) -> None:
        """Read these telemetry partitions from their committed offsets (faust's assignment)."""
        consumer = self._require()
        self._held = partitions
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        # Acks of fetches read before this assignment commit nothing new (a revoked partition's
        # records are the new owner's; a kept one is read again from its committed offset).
        self._parked.clear()
        self._wanted.clear()
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
        """Consume forever (cancel to stop); no batch, however bad, ends this."""
        consumer = self._require()
        delay = RETRY_INITIAL_S
        while True:
            await self._assigned.wait()
            try:
                generation = self.log_generation
                batch = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if batch:
                    await self._fold(batch, generation)
            except Exception as exc:
                # Never let telemetry stop, or stop silently: say so, read the uncommitted
                # records again, and keep going.
                self.failures += 1
                self.faults.fail(LANE, exc)
                extra = {"error": describe(exc), "retry_in_s": delay}
                if isinstance(exc, KafkaError):
                    log.warning("telemetry fetch failed; retrying", extra=extra)
                else:
                    log.exception(
                        "telemetry batch failed; reading again from the committed offsets",
                        extra=extra,
                    )
                    self._rewind()
                await asyncio.sleep(delay)  # back-off before the retry, not synchronisation
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if delay != RETRY_INITIAL_S or self.faults.failing:
                self.faults.ok(LANE)
                delay = RETRY_INITIAL_S

    def _rewind(self) -> None:
        """Read the owned partitions again from their committed offsets: what a failed batch
        had folded is folded again (telemetry is idempotent in the state), nothing is skipped."""
        consumer = self._require()
        for partition in self._held:
            tp = TopicPartition(self.topic, partition)
            # Nothing committed yet: from the start (an offset gone to retention resets to the
            # earliest, auto_offset_reset).
            committed = max(self._committed.get(tp, -1), 0)
            consumer.seek(tp, committed)
            self._next[tp] = committed

    async def _fold(self, batch: Mapping[TopicPartition, list[Any]], generation: int) -> None:
        """Fold a batch fetched in log ``generation``; park its offsets for the ledger once its
        rejects and forwards are delivered."""
        fetch = self._read(batch)
        # Sites a failed fetch folded in are decided with the fetch that reads it again (in the
        # state already, their readings change nothing the second time).
        fetch.dirty |= self._carried
        self._carried = set(fetch.dirty)
        # Delivered before the offsets go to the ledger: nothing is committed ahead of them.
        await asyncio.gather(self._reject_all(fetch.rejected), self._forward_all(fetch.forwards))
        self._carried = set()
        for consumed, applied in fetch.counts:
            self.count(consumed, applied)
            self.consumed += consumed
        dirty, offsets = fetch.dirty, fetch.offsets
        if self._lost_in > generation:
            # Fetched across the loss, from the old log or already from the new one: read the
            # new log again from its start (this fetch moved the position past what it got).
            # Its sites stay marked: deciding on them is harmless.
            self.batches_forgotten += 1
            self._rewind()
            if dirty:
                self.planner.mark_dirty(frozenset(dirty), "telemetry")
            return
        self._next.update(offsets)
        if not offsets:
            return
        if dirty:
            # Committed once the decisions are delivered (unless the log is lost meanwhile).
            for tp, end in offsets.items():
                self._parked.setdefault(tp, {})[end] = fetch.starts[tp]
            self.ledger.park(self, offsets, generation)
            self.planner.mark_dirty(frozenset(dirty), "telemetry")
        else:
            await self.ack(offsets)  # only rejects or forwards: nothing to decide here

    def _read(self, batch: Mapping[TopicPartition, list[Any]]) -> _Fetch:
        """Fold each record of the held partitions into the state; sort out what is to be
        decided here, rejected, or forwarded to the site's owner."""
        fetch = _Fetch()
        # Sites read here and decided elsewhere are forwarded (None: decide everything read).
        owned = self.planner.owned if self.forward is not None else None
        for tp, messages in batch.items():
            if tp.partition not in self._held:
                continue  # revoked while the fetch was in flight: the new owner reads it
            applied = 0
            for message in messages:
                try:
                    outcome = ingest(self.state, TELEMETRY, message.value, self.max_bytes)
                except Exception as exc:
                    outcome = self._poisoned(message, exc)
                if isinstance(outcome, Rejection):
                    fetch.rejected.append((message, outcome))
                    continue
                applied += 1
                if owned is None or outcome.sites <= owned:
                    fetch.dirty |= outcome.sites
                else:
                    fetch.forwards.extend((site, message.value) for site in sorted(outcome.sites))
            fetch.offsets[tp] = messages[-1].offset + 1
            fetch.starts[tp] = messages[0].offset
            fetch.counts.append((len(messages), applied))
        return fetch

    async def _reject_all(self, rejected: list[tuple[Any, Rejection]]) -> None:
        """Dead-letter a fetch's rejects together; returns once all are delivered."""
        if not rejected:
            return
        if self.reject_all is not None:
            await self.reject_all(self.topic, rejected)
            return
        for message, rejection in rejected:  # one at a time (a lane without the agents)
            await self.reject(self.topic, message, rejection)

    async def _forward_all(self, forwards: list[tuple[str, bytes | None]]) -> None:
        """Forward a fetch's readings of other workers' sites; returns once all are delivered."""
        if forwards and self.forward is not None:
            await self.forward(TELEMETRY, forwards)
            self.forwarded += len(forwards)

    async def log_lost(self, loss: LogLoss) -> None:
        """The broker lost ``loss.topics``: if telemetry is one, forget the offsets read and
        committed in the old log and read the new one from its start."""
        self.log_generation = max(self.log_generation, loss.generation)
        if self.topic not in loss.topics:
            return
        self._lost_in = loss.generation
        # Partitions an old-log offset may have reached the new log on: committed before (a
        # commit that went out while the broker was away lands after its restart) or now.
        written = {tp for tp, offset in self._committed.items() if offset >= 0}
        for task, partitions in list(self._commits.items()):
            written |= partitions
            task.cancel()  # ends the client's retries; an attempt already sent goes first
        self._next.clear()
        self._committed.clear()
        self._parked.clear()
        self._wanted.clear()
        if self._consumer is None or not self._held:
            return
        tps = [TopicPartition(self.topic, p) for p in sorted(self._held)]
        for tp in tps:
            self._committed[tp] = -1
        try:
            await self._consumer.seek_to_beginning(*tps)
        except (IllegalStateError, KafkaError) as exc:
            # Reassigned meanwhile: ``assign`` seeks to the new log's committed offsets.
            log.info("telemetry partitions not sought to the start", extra={"error": repr(exc)})
        restart = {tp: 0 for tp in tps if tp in written}
        if restart:
            # The new log from its start: the lane has read nothing there yet (its own record
            # stays -1, so any first ack commits).
            await self._commit(restart, timeout_s=COMMIT_RESET_TIMEOUT_S)

    def _poisoned(self, message: Any, exc: Exception) -> Rejection:
        """A record the worker failed on (a bug, not bad input): dead-lettered with the error,
        so it can never hold the lane, and reported as a crash (sticky)."""
        self.faults.crash(LANE, exc, note=f"{self.topic} offset {message.offset} dead-lettered")
        log.error(
            "the worker failed on a telemetry record: dead-lettered and skipped (a bug: report it)",
            extra={"topic": self.topic, "offset": message.offset},
            exc_info=exc,
        )
        return Rejection("schema_violation", f"not processed: the worker failed on it: {exc!r}")

    def lag(self) -> int:
        """Telemetry events on the owned partitions not read yet (from the last fetch's view).
        Nothing read there since the start: counted from the committed offset, where reading
        resumes (from the log's start when none is committed)."""
        consumer = self._require()
        total = 0
        for partition in self._held:
            tp = TopicPartition(self.topic, partition)
            highwater = consumer.highwater(tp)
            if highwater is not None:
                resume = max(self._committed.get(tp, -1), 0)
                total += max(0, highwater - self._next.get(tp, resume))
        return total

    async def ack(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` (the ledger calls this after delivery), in order: a fetch with
        nothing to decide (only rejects or forwards, delivered) is acked at once, maybe before
        an earlier fetch whose decisions are still on their way; its commit waits at that one's
        first offset, and goes out whole when that one is acked. Never backwards either."""
        mine: dict[TopicPartition, int] = {}
        for tp, end in offsets.items():
            if tp.partition not in self._held:
                continue
            parked = self._parked.get(tp, {})
            parked.pop(end, None)
            wanted = max(self._wanted.get(tp, -1), end)
            self._wanted[tp] = wanted
            target = min(wanted, *parked.values()) if parked else wanted
            if target > self._committed.get(tp, -1):
                mine[tp] = target
        if not mine:
            return
        self._committed.update(mine)
        await self._commit(mine)

    async def _commit(
        self, offsets: dict[TopicPartition, int], timeout_s: float | None = None
    ) -> None:
        """Commit ``offsets`` as a task :meth:`log_lost` can stop (the client retries a commit
        for as long as the broker is away, into whatever log it finds when it is back)."""
        task = asyncio.ensure_future(self._require().commit(offsets))
        self._commits[task] = frozenset(offsets)
        task.add_done_callback(self._commit_done)
        try:
            async with asyncio.timeout(timeout_s):
                # Shielded: an ack given up on (the worker stops, a time-out) leaves its commit
                # to finish; only ``log_lost`` stops one.
                await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this ack itself is being cancelled (the worker stops)
            # Stopped by ``log_lost``: offsets of a lost log, rightly never committed.
            self.commits_dropped += 1
            log.info(
                "telemetry commit dropped: its log was lost",
                extra={"offsets": {tp.partition: o for tp, o in offsets.items()}},
            )
        except (KafkaError, TimeoutError) as exc:
            if timeout_s is not None:
                # A bounded commit (the new log's start after a loss) that did not go out in time
                # is stopped, not left retrying: landing later, it would move the group back
                # over records committed since.
                task.cancel()
            # Not fatal: the offsets stay uncommitted and are read again after a restart (a later
            # commit covers them).
            self.faults.fail(COMMITS, exc)
            log.warning("telemetry offset commit failed", extra={"error": describe(exc)})
        else:
            self.faults.ok(COMMITS)

    def _commit_done(self, task: asyncio.Task[None]) -> None:
        self._commits.pop(task, None)
        if not task.cancelled():
            task.exception()  # seen: by the ack that waited, or moot for one given up on

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("telemetry lane not started")
        return self._consumer
