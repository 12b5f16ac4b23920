"""Rebuilding a worker's state after a restart or crash, before it starts consuming.

The state (curves, telemetry, signals) lives in memory. On start, every input topic (and the
routed site-keyed copies of fleet-level inputs) is read from
its beginning up to the offsets the consumer group has committed, and folded into the state
without deciding anything; the faust consumer then resumes at those offsets, so what was not yet
committed is read again and decided (at-least-once). Retention on Apache Kafka bounds how far
back this reaches; the embedded broker keeps everything until it stops.

Reserve sold day-ahead is not an input: it is what the worker itself decided. So the reserve
book (:class:`~streams.engine.reserves.CommitmentBook`) is rebuilt from the worker's own
published decisions (``dispatch.decision.v1``, every one lists the sold hours of its horizon):
an hour sold before a restart stays sold, and is held, after it (:func:`restore_commitments`).
Sites handed over by another worker get both (:func:`catch_up`).

A record that cannot be read (a record batch its consumer cannot decode: corrupt, or compressed
with a codec whose library is missing) stops the start with one line naming its topic,
partition and offset and how to skip it (:class:`UnreadableRecordError`), when it lies below the
committed offset (the state would silently miss it) or at it (the live consumer would stop
there: faust's fetcher crashes, the telemetry lane fails on it for ever). Nothing is skipped
without the operator: the record stays where it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas import DECISION_TOPIC, INPUT_TOPICS, SITE_KEYED_INPUTS, DispatchDecision
from streams.engine.ingest import ingest
from streams.engine.reserves import CommitmentBook
from streams.engine.state import Applied, FleetState
from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.settings import Settings
from streams.worker.health import describe
from streams.worker.routing import ROUTED_TOPIC, RoutingError, owned_sites, unframe
from streams.worker.telemetry import TELEMETRY, lane_group

log = logging.getLogger(__name__)

#: How long one fetch of the replay waits for records (the replay ends at known offsets).
FETCH_WAIT_MS = 500


class UnreadableRecordError(GridshiftError):
    """A record the start cannot read: where it is, why, and how to skip it."""

    def __init__(
        self, tp: TopicPartition, offset: int, error: BaseException, group: str, bootstrap: str
    ) -> None:
        self.tp, self.offset, self.error = tp, offset, error
        skip = offset + 1
        super().__init__(
            f"cannot start: {tp.topic} partition {tp.partition} offset {offset}: the record "
            f"there cannot be read ({describe(error)}), nor anything after it on that partition. "
            "If the error names a compression codec, reinstall gridshift (it depends on "
            "aiokafka[lz4,snappy,zstd]); if the record is corrupt, skip it by committing offset "
            f"{skip} for consumer group {group} on that partition, every worker of the group "
            "stopped (Apache Kafka: kafka-consumer-groups.sh "
            f"--bootstrap-server {bootstrap} --group {group} --topic {tp.topic}:{tp.partition} "
            f"--reset-offsets --to-offset {skip} --execute; the embedded broker takes the commit "
            "only from a consumer that has joined the group) and start again"
        )


async def rebuild_state(
    settings: Settings,
    connection: KafkaConnection,
    state: FleetState,
    *,
    timeout_s: float = 120.0,
    only_partitions: frozenset[int] | None = None,
) -> int:
    """Fold every committed input into ``state``; return how many were applied. A record it
    cannot read there, or where the worker resumes reading, raises UnreadableRecordError.

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
        if not partitions:
            return 0
        # Every partition, not only those with a commit: the live consumer resumes at the
        # committed offset or the log's start, and the record there must be readable.
        probe.assign(partitions)
        await probe.seek_to_beginning(*partitions)
        starts = await probe.beginning_offsets(partitions)
        resume = {tp: max(targets.get(tp, 0), starts[tp]) for tp in partitions}
        ends = await probe.end_offsets(partitions)

        def fold(topic: str, raw: bytes | None) -> bool:
            name = names[topic]
            if name == ROUTED_TOPIC:
                try:
                    name, _, raw = unframe(raw)
                except RoutingError:
                    return False  # dead-lettered when it was first read
            return isinstance(ingest(state, name, raw, settings.max_message_bytes), Applied)

        def unreadable(
            tp: TopicPartition, offset: int, error: BaseException
        ) -> UnreadableRecordError:
            group = lane_group(settings.app_id) if tp.topic == telemetry else settings.app_id
            return UnreadableRecordError(tp, offset, error, group, connection.bootstrap)

        replay = _Replay(probe, fold, unreadable)
        return await asyncio.wait_for(replay.run(resume, ends), timeout_s)
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


class _Replay:
    """Reads the partitions one by one from the log's start up to where the worker resumes,
    folding each record (``fold``: True when applied), and checks that the record it resumes at
    can be read.

    One partition at a time: aiokafka drops the records of every partition it had drained in a
    call when a later partition's batch cannot be decoded, and the error names no partition.
    """

    def __init__(
        self,
        probe: AIOKafkaConsumer,
        fold: Callable[[str, bytes | None], bool],
        unreadable: Callable[[TopicPartition, int, BaseException], UnreadableRecordError],
    ) -> None:
        self.probe, self.fold, self.unreadable = probe, fold, unreadable

    async def run(self, resume: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> int:
        """Every partition up to its ``resume`` offset; how many records were applied."""
        applied = 0
        for tp in sorted(resume, key=lambda tp: (tp.topic, tp.partition)):
            applied += await self.partition(tp, resume[tp])
            if ends.get(tp, 0) > resume[tp]:
                await self.check_readable(tp, resume[tp], ends[tp])
        return applied

    async def partition(
        self, tp: TopicPartition, target: int, *, fold: bool = True, careful: bool = False
    ) -> int:
        """Read ``tp`` up to ``target`` (folding each record unless told not to); a batch that
        cannot be read raises UnreadableRecordError naming it."""
        applied = 0
        position = await self.probe.position(tp)
        while position < target:  # bounded by the caller's timeout and the target
            try:
                # Careful (after a fetch failed to decode): one record per call, since aiokafka
                # dropped that fetch's records before the bad batch; it then stands on it.
                batch = await self.probe.getmany(
                    tp, timeout_ms=FETCH_WAIT_MS, max_records=1 if careful else None
                )
            except Exception as exc:
                if careful:
                    raise self.unreadable(tp, position, exc) from exc
                careful = True
                self.probe.seek(tp, position)
                continue
            for message in batch.get(tp, ()):
                if message.offset >= target:
                    break
                if fold:
                    applied += self.fold(tp.topic, message.value)
            position = await self.probe.position(tp)
        return applied

    async def check_readable(self, tp: TopicPartition, resume: int, end: int) -> None:
        """The first fetch the worker makes at ``resume`` can be decoded: the live consumer
        would stop there otherwise, with nothing that says where. When it cannot, the records
        up to ``end`` are read one by one to the one that fails (UnreadableRecordError)."""
        if await self.probe.position(tp) != resume:
            return  # read past it already
        try:
            await self.probe.getmany(tp, timeout_ms=FETCH_WAIT_MS)
        except Exception:
            self.probe.seek(tp, resume)
            await self.partition(tp, end, fold=False, careful=True)


async def restore_commitments(
    settings: Settings,
    connection: KafkaConnection,
    book: CommitmentBook,
    *,
    site_ids: Collection[str] | None = None,
    timeout_s: float = 120.0,
) -> int:
    """Put the reserve the published decisions of ``site_ids`` (None: every site) say was sold
    back into ``book``; return how many decisions listed sold hours.

    Reads the decision topic from its beginning to its end as of the call, without a consumer
    group (nothing is committed). A site's decisions share a partition (keyed by site), so they
    are restored in the order they were made; a sold hour never changes, so the newest listing
    of it is the one that was sold.
    """
    topic = settings.topic(DECISION_TOPIC)
    wanted = None if site_ids is None else {site_id.encode() for site_id in site_ids}
    reader = AIOKafkaConsumer(
        **connection.client(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    )
    await reader.start()
    try:
        if topic not in await reader.topics():
            return 0
        partitions = [
            TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())
        ]
        ends = {tp: end for tp, end in (await reader.end_offsets(partitions)).items() if end > 0}
        if not ends:
            return 0
        reader.assign(list(ends))
        await reader.seek_to_beginning(*ends)
        decisions = await asyncio.wait_for(_read_decisions(reader, ends, wanted), timeout_s)
    finally:
        await reader.stop()
    book.restore(decisions)
    if decisions:
        sites = {d.site_id for d in decisions}
        log.info(
            "reserve commitments restored from published decisions",
            extra={
                "decisions": len(decisions),
                "sites": len(sites),
                "sold_hours": sum(len(book.sold.get(s, {})) for s in sites),
            },
        )
    return len(decisions)


async def _read_decisions(
    reader: AIOKafkaConsumer, ends: dict[TopicPartition, int], wanted: set[bytes] | None
) -> list[DispatchDecision]:
    """The decisions up to ``ends`` that list sold hours (of the ``wanted`` site keys)."""
    out: list[DispatchDecision] = []
    skipped = 0
    remaining = set(ends)
    while remaining:  # bounded by the caller's timeout and the end offsets taken at the start
        batch = await reader.getmany(*remaining, timeout_ms=500)
        for tp, messages in batch.items():
            for message in messages:
                if message.offset >= ends[tp]:
                    break
                if message.value is None or (wanted is not None and message.key not in wanted):
                    continue
                try:
                    decision = DispatchDecision.model_validate_json(message.value)
                except ValidationError:
                    skipped += 1  # not ours to judge here; the worker only writes valid ones
                    continue
                if decision.reserve_commitments and (
                    wanted is None or decision.site_id.encode() in wanted
                ):
                    out.append(decision)
        for tp in list(remaining):
            if await reader.position(tp) >= ends[tp]:
                remaining.discard(tp)
    if skipped:
        log.warning("unreadable records on the decision topic skipped", extra={"records": skipped})
    return out


async def catch_up(
    settings: Settings,
    connection: KafkaConnection,
    state: FleetState,
    book: CommitmentBook,
    *,
    gained: frozenset[int],
) -> int:
    """Sites handed over on the ``gained`` partitions: their committed inputs into ``state``
    (:func:`rebuild_state`) and the reserve they sold into ``book``; returns the inputs applied."""
    applied = await rebuild_state(settings, connection, state, only_partitions=gained)
    sites = owned_sites(state.sites, settings.topic_partitions, gained)
    await restore_commitments(settings, connection, book, site_ids=sites)
    return applied
