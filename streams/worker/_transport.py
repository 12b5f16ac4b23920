"""faust's aiokafka transport with the consumer fetch wait made configurable, a consumer that
can forget a log the broker lost, and the faust form of the Kafka connection's credentials.

faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for worker consumers; against a broker whose
long-poll sleeps instead of waking on data (Tansu) that puts every decision ~1 s late. This module
keeps faust's consumer and only overrides that one number, read from the app.

faust keeps per-partition bookkeeping in memory (read offset, acked and committed offsets, gaps).
After a broker restart that kept nothing (the embedded broker), that bookkeeping describes a log
that no longer exists: an input read before the restart and acked after it would commit its old
offset into the new log, and the group would resume past records the new log holds below it.
:meth:`_Consumer.forget_log` (called by the broker watch, before deliveries resume) clears that
bookkeeping for the lost topics, seeks them to the start of the new log, and from then on ignores
the ack of any message fetched before the loss (it is let go without an offset).

Stopping never waits on a broker that is gone. faust's stop commits the acked offsets (twice:
the app's last ``wait_empty``, then the consumer's own stop), flushes the producer and stops its
clients, and aiokafka retries each of those for as long as the broker is away: a commit without
end (``GroupCoordinator.commit_offsets`` retries while no coordinator answers), a flush until
the producer's request timeout (faust: 20 min), and the consumer thread's shutdown until mode's
``ServiceThread.shutdown_timeout`` (60 s; see ``streams/worker/_client_stop.py`` for why it got
there). Once the app is stopping, each is bounded here (``STOP_COMMIT_TIMEOUT_S``,
``STOP_FLUSH_TIMEOUT_S``, ``CLIENT_STOP_TIMEOUT_S``); what could not be committed is said in one
log line, and is read again at the next start (at-least-once).

A crashed faust service is told, not left silent. faust's fetcher is one task that reads every
faust-read topic; when it raises (a record batch its aiokafka consumer cannot decode, say) mode
marks it crashed and nothing restarts it, so no input of those topics is read again. The fetcher
here tells the app at once (:meth:`App.service_crashed`, which the worker wires to its
:class:`~streams.worker.health.Faults`), and :meth:`App.crashed_services` lists every crashed
service the worker depends on for /health to poll.

faust's data folder (``datadir``: its table stores; the worker keeps no tables) is a temporary
folder made when the app first starts and removed when it stops: faust's default,
``<app_id>-data`` in the working directory, left a folder behind at every start.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar

import aiokafka
import faust
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from faust.exceptions import ConsumerNotStarted
from faust.transport.consumer import Fetcher
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import LogLoss
from streams.worker._client_stop import CLIENT_STOP_TIMEOUT_S, stop_consumer
from streams.worker.health import FETCHER

log = logging.getLogger(__name__)

#: Longest :meth:`_Consumer.forget_log` waits for the new log's start to be committed (it holds
#: the broker watch's ``ready`` until then).
COMMIT_RESET_TIMEOUT_S = 10.0
#: The log generation a faust commit's offsets were worked out in (set by
#: :meth:`_Consumer._commit_offsets` for the task that commits; read after its producer flush).
_COMMIT_GENERATION: ContextVar[int | None] = ContextVar("gridshift_commit_generation", default=None)
#: Longest a stopping worker waits for its last commit of faust's offsets (milliseconds with a
#: live broker; past it the broker is taken as gone and the offsets are left uncommitted).
STOP_COMMIT_TIMEOUT_S = 3.0
#: Longest a stopping worker waits for the producer to deliver what it still holds.
STOP_FLUSH_TIMEOUT_S = 3.0
#: Longest the worker waits for faust's consumer thread to say it has shut down (mode's default is
#: 60 s); the thread's own steps are bounded below this (its method queue, then the consumer).
THREAD_SHUTDOWN_TIMEOUT_S = 2 * CLIENT_STOP_TIMEOUT_S + 1.0


class _StampedOffsets(dict[TP, int]):
    """Offsets to commit, with the log generation they were worked out in: the consumer thread
    checks them again against losses told meanwhile (faust hands a commit to its thread after a
    producer flush that may outlast a broker restart)."""

    def __init__(self, offsets: Mapping[TP, int], generation: int) -> None:
        super().__init__(offsets)
        self.generation = generation


def _not_lost(
    offsets: Mapping[TP, int], lost_in: Mapping[str, int], generation: int
) -> dict[TP, int]:
    """``offsets`` less those of topics whose log was lost after ``generation``."""
    return {tp: o for tp, o in offsets.items() if lost_in.get(tp.topic, -1) <= generation}


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread (its own event loop runs the aiokafka consumer), with the commits
    in flight kept so that a lost log can stop them."""

    logger = faust_aiokafka.logger  # keep faust's logger name so its verbosity stays tunable
    #: mode's wait for this thread's shutdown (its default: 60 s).
    shutdown_timeout = THREAD_SHUTDOWN_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Commits sent and not answered yet, with their partitions (only the thread's loop
        #: touches this).
        self._commits: dict[asyncio.Task[bool], frozenset[TP]] = {}
        #: Commits stopped because the log they were for was lost meanwhile.
        self.commits_dropped = 0

    async def on_thread_stop(self) -> None:
        """faust's stop of its thread (the method queue, then the aiokafka consumer), each step
        bounded, and the consumer stopped by :func:`stop_consumer`: with the broker gone,
        aiokafka's stop raised a stray cancel that ended this before the thread said it was
        done, and the worker waited 60 s for it."""
        try:
            async with asyncio.timeout(CLIENT_STOP_TIMEOUT_S):
                # mode's QueueServiceThread step (faust's own override adds the consumer stop,
                # done below instead); a commit still queued was given up by its caller.
                await super(faust_aiokafka.AIOKafkaConsumerThread, self).on_thread_stop()
        except TimeoutError:
            log.warning(
                "faust consumer thread's method queue not stopped in time",
                extra={"timeout_s": CLIENT_STOP_TIMEOUT_S},
            )
        if self._consumer is not None:
            await stop_consumer(self._consumer, "faust")

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer: aiokafka.AIOKafkaConsumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when start() builds its Fetcher, after construction.
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", 1500)
        return consumer

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """faust's commit (on the thread's loop), as a task :meth:`stop_commits` can end; offsets
        of a log lost since they were worked out are never sent (the hand-off to this thread
        may come after :meth:`stop_commits` ran here)."""
        generation = getattr(offsets, "generation", None)
        lost_in = getattr(self.consumer, "_lost_in", None)
        if generation is not None and isinstance(lost_in, dict):
            kept = _not_lost(offsets, lost_in, generation)
            if len(kept) < len(offsets):
                self.commits_dropped += 1
                log.info(
                    "faust commit of a lost log dropped at hand-off",
                    extra={"partitions": len(offsets) - len(kept)},
                )
            if not kept:
                return False
            offsets = kept
        task = asyncio.ensure_future(super()._commit(offsets))
        self._commits[task] = frozenset(offsets)
        try:
            # Shielded: only ``stop_commits`` ends the client's retries.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this commit itself is being cancelled (faust stops)
            # Stopped by a lost log: offsets of that log, rightly never committed.
            self.commits_dropped += 1
            log.info(
                "faust commit dropped: its log was lost",
                extra={"offsets": {f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()}},
            )
            return False
        finally:
            self._commits.pop(task, None)

    async def stop_commits(self, topics: frozenset[str]) -> frozenset[TP]:
        """End the commits in flight that write to ``topics`` (on the thread's loop); return
        the partitions they were writing. An attempt already sent is not recalled."""
        written: set[TP] = set()
        for task, tps in list(self._commits.items()):
            if any(tp.topic in topics for tp in tps):
                written |= tps
                task.cancel()
        return frozenset(tp for tp in written if tp.topic in topics)

    async def commit_start(self, tps: Iterable[TP]) -> frozenset[TP]:
        """Commit offset 0 (a new log's start) over those of ``tps`` assigned here (on the
        thread's loop); return the partitions committed."""
        consumer = self._ensure_consumer()
        assigned = consumer.assignment()
        offsets = {
            atp: OffsetAndMetadata(0, "")
            for atp in (faust_aiokafka.ensure_aiokafka_TP(tp) for tp in tps)
            if atp in assigned
        }
        if offsets:
            async with asyncio.timeout(COMMIT_RESET_TIMEOUT_S):
                await consumer.commit(offsets)
        return frozenset(TP(tp.topic, tp.partition) for tp in offsets)

    async def on_thread(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Run ``work`` on the thread's loop directly (not through faust's method queue, whose
        few workers a commit retried without end may hold); TimeoutError (and ``work``
        cancelled) past ``COMMIT_RESET_TIMEOUT_S``, so a stopping thread never holds the broker
        watch."""
        future = asyncio.run_coroutine_threadsafe(work, self.thread_loop)
        async with asyncio.timeout(COMMIT_RESET_TIMEOUT_S):
            return await asyncio.wrap_future(future)


class _Consumer(faust_aiokafka.Consumer):
    logger = faust_aiokafka.logger

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The broker watch's log generation as last told (``forget_log``).
        self.log_generation = 0
        #: Messages let go without an offset: fetched from a log lost since.
        self.forgotten = 0
        self._lost_in: dict[str, int] = {}  # topic -> log generation that began with its loss
        # The log generation each message was fetched in (weak: faust drops its messages).
        self._fetched_in: weakref.WeakKeyDictionary[Message, int] = weakref.WeakKeyDictionary()
        self._batch_generation = 0
        # Lost partitions whose read offset is cleared again before the first message of the
        # new log reaches faust (a message of the old log in flight at the loss sets it after).
        self._reread: set[TP] = set()
        #: The stop's commit overran once: the broker is taken as gone for the rest of the stop.
        self._stop_commit_given_up = False
        #: The offsets of the last commit that did not go through (under way, failed or ended):
        #: said if the stop gives up on committing.
        self._offsets_tried: dict[TP, int] = {}

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # ------------------------------------------------------------------ stopping
    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """faust's commit; once the app stops, bounded by ``STOP_COMMIT_TIMEOUT_S``: past it
        the offsets stay uncommitted (said once) and later commits of this stop are skipped."""
        if not (self.app.should_stop or self.should_stop):
            return bool(await super().commit(topics, start_new_transaction=start_new_transaction))
        if self._stop_commit_given_up:
            return False
        try:
            async with asyncio.timeout(STOP_COMMIT_TIMEOUT_S):
                return bool(
                    await super().commit(topics, start_new_transaction=start_new_transaction)
                )
        except TimeoutError:
            self._stop_commit_given_up = True
            log.warning(
                "stopping without committing the last offsets: the broker did not answer within "
                f"{STOP_COMMIT_TIMEOUT_S:g} s; the inputs after the last committed offsets are "
                "read again at the next start (at-least-once)",
                extra={
                    "uncommitted": {
                        f"{tp.topic}/{tp.partition}": offset
                        for tp, offset in sorted(self._offsets_tried.items())
                    },
                    "committed": {
                        f"{tp.topic}/{tp.partition}": offset
                        for tp, offset in sorted(self._committed_offset.items())
                        if offset is not None
                    },
                    "timeout_s": STOP_COMMIT_TIMEOUT_S,
                },
            )
            return False

    # ------------------------------------------------------------------ a lost log
    async def forget_log(self, loss: LogLoss) -> None:
        """The broker lost ``loss.topics`` (their log with them): forget what was read, acked
        and committed there, and read the new log from its start; stop the commits in flight
        there, and commit the new log's start over any partition an old offset may have
        reached."""
        self.log_generation = max(self.log_generation, loss.generation)
        for topic in loss.topics:
            self._lost_in[topic] = loss.generation
        # Partitions an old-log offset may have reached the new log on: committed before (a
        # commit that went out while the broker was away lands after its restart) or now.
        written = {
            tp
            for tp, offset in self._committed_offset.items()
            if tp.topic in loss.topics and offset is not None
        }
        written |= await self._stop_commits(loss.topics)
        known = (
            set(self._read_offset) | set(self._committed_offset) | set(self._acked) | set(self._gap)
        )
        for tp in known:
            if tp.topic in loss.topics:
                self._forget_tp(tp)
        try:
            assigned = [tp for tp in self.assignment() if tp.topic in loss.topics]
        except ConsumerNotStarted:
            return  # nothing read yet: the first assignment reads the new log
        if not assigned:
            return
        self._reread.update(assigned)
        await self._seek_to_start(assigned)
        restart = [tp for tp in assigned if tp in written]
        if restart:
            await self._commit_start(restart)

    async def _stop_commits(self, topics: frozenset[str]) -> frozenset[TP]:
        thread = self._running_thread()
        if thread is None:
            return frozenset()
        try:
            stopped: frozenset[TP] = await thread.on_thread(thread.stop_commits(topics))
        except TimeoutError:
            log.warning("faust commits in flight not stopped: its consumer thread is stuck")
            return frozenset()
        return stopped

    async def _commit_start(self, tps: list[TP]) -> None:
        """The new log's start committed over ``tps``: whatever of the old log reached it is
        overwritten (the worker has read nothing there yet, so nothing is lost)."""
        thread = self._running_thread()
        if thread is None:
            return
        try:
            done = await thread.on_thread(thread.commit_start(tps))
        except (KafkaError, IllegalStateError, ConsumerNotStarted, TimeoutError) as exc:
            # A rebalance under way (its assignment reads the group's offsets) or the broker
            # gone again (its next loss comes here again): said, not fatal.
            log.warning(
                "the new log's start not committed over the lost partitions",
                extra={
                    "partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in tps),
                    "error": repr(exc),
                },
            )
            return
        log.info(
            "the new log's start committed over the lost partitions",
            extra={"partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in done)},
        )

    @property
    def commits_dropped(self) -> int:
        """faust commits stopped because their log was lost meanwhile."""
        thread = getattr(self, "_thread", None)
        return thread.commits_dropped if isinstance(thread, _ConsumerThread) else 0

    def _running_thread(self) -> _ConsumerThread | None:
        thread = getattr(self, "_thread", None)
        if not isinstance(thread, _ConsumerThread) or not thread.thread_loop.is_running():
            return None
        return thread

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        generation = self.log_generation
        self._offsets_tried = dict(offsets)
        token = _COMMIT_GENERATION.set(generation)
        committed = False
        try:
            committed = await super()._commit_offsets(
                offsets, start_new_transaction=start_new_transaction
            )
            if committed:
                self._offsets_tried = {}
        finally:
            _COMMIT_GENERATION.reset(token)
            if self.log_generation != generation:
                # Ended after a loss: faust recorded these offsets as committed whether or not
                # they were. Of a lost log they would hold back the new log's commits (faust
                # commits only forward); of a commit stopped or dropped, the other topics'
                # offsets were not committed either, so faust must commit them again.
                for tp in offsets:
                    if not committed or self._lost_in.get(tp.topic, -1) > generation:
                        self._committed_offset.pop(tp, None)
        return committed

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """faust's hand-off of a commit to its consumer thread, after the producer flush: the
        offsets of a log lost since they were worked out are dropped here, and the rest go
        stamped with that generation for the thread to check again."""
        generation = _COMMIT_GENERATION.get()
        if generation is None:
            return bool(await super()._commit(offsets))
        kept = _not_lost(offsets, self._lost_in, generation)
        if not kept:
            return False
        return bool(await super()._commit(_StampedOffsets(kept, generation)))

    def _forget_tp(self, tp: TP) -> None:
        self._gap.pop(tp, None)
        self._acked.pop(tp, None)
        self._acked_index.pop(tp, None)
        self._read_offset.pop(tp, None)
        self._committed_offset.pop(tp, None)

    def read_before_loss(self, message: Message) -> bool:
        """Whether ``message`` was fetched from a log the broker has lost since."""
        fetched_in = self._fetched_in.get(message)
        return fetched_in is not None and self._lost_in.get(message.topic, -1) > fetched_in

    def forget_message(self, message: Message) -> None:
        """Let ``message`` go without an offset: faust stops waiting for its ack (its stop and
        rebalances wait for every unacked message) and commits nothing for it."""
        with ack_lock:
            if not message.acked:
                message.acked = True
                self.forgotten += 1
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)

    def _new_offset(self, tp: TP) -> int | None:
        """faust's next offset to commit for ``tp``, never past an input still unacked.

        faust commits the first run of consecutive acked offsets; its check for an unacked
        offset before that run is off by one (a single one at the head passes) and skipped for
        a group with nothing committed yet. Inputs are acked out of order here (an input is
        acked once what it caused is delivered: a reject still being dead-lettered, an input
        parked for its round, while a later one is acked at once), so faust would commit past
        them, and a restart would skip them."""
        acked = self._acked[tp]
        if acked:
            first = min(acked)
            committed = self._committed_offset[tp]
            for message in list(self._unacked_messages):
                if (
                    message.tp == tp
                    and not message.acked
                    and message.offset < first
                    and (committed is None or message.offset >= committed)
                ):
                    return None  # committed once that one is acked (the run then joins it)
        offset: int | None = super()._new_offset(tp)
        return offset

    def ack(self, message: Message) -> bool:
        if self.read_before_loss(message):
            # Its offset belongs to the lost log: committing it would skip the new one's.
            self.forget_message(message)
            return False
        return super().ack(message)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        # faust clears the revoked partitions' bookkeeping itself; the new assignment seeks.
        self._reread.difference_update(revoked)
        await super().on_partitions_revoked(revoked)

    async def _getmany(
        self,
        active_partitions: set[TP] | None,
        timeout: float,  # noqa: ASYNC109 (faust's signature)
    ) -> Any:
        generation = self.log_generation
        records = await super()._getmany(active_partitions, timeout)
        if self.log_generation != generation:
            # Fetched across a loss, from the old log or already from the new one (the fetch
            # may have waited for the consumer thread): the lost partitions' records are dropped
            # and read again from the new log's start (the fetch moved their position past them).
            dropped = [tp for tp in records if self._lost_in.get(tp.topic, -1) > generation]
            records = {tp: batch for tp, batch in records.items() if tp not in dropped}
            if dropped:
                await self._seek_to_start(dropped)
        self._batch_generation = generation
        return records

    async def _seek_to_start(self, tps: Iterable[TP]) -> None:
        try:
            # On faust's consumer thread (its aiokafka consumer lives there).
            await self._thread.seek_to_beginning(
                *(aiokafka.TopicPartition(tp.topic, tp.partition) for tp in tps)
            )
        except (IllegalStateError, KafkaError, ConsumerNotStarted) as exc:
            # A rebalance is under way: its assignment seeks to the new log's committed offsets.
            log.info("lost partitions not sought to the start", extra={"error": repr(exc)})

    def _to_message(self, tp: TP, record: Any) -> Any:
        message = super()._to_message(tp, record)
        self._fetched_in[message] = self._batch_generation
        return message

    async def getmany(
        self,
        timeout: float,  # noqa: ASYNC109 (faust's signature)
    ) -> AsyncIterator[tuple[TP, Message]]:
        async for tp, message in super().getmany(timeout):
            if self.read_before_loss(message):
                continue  # of a batch fetched before the loss: the new log is read instead
            if tp in self._reread:
                self._reread.discard(tp)
                self._read_offset.pop(tp, None)
                self._gap.pop(tp, None)
            yield tp, message


class _Producer(faust_aiokafka.Producer):
    """faust's producer, whose stop (aiokafka's, which waits for every record it holds to be
    delivered) is bounded: with the broker gone, records still held are dropped, said once."""

    logger = faust_aiokafka.logger

    async def on_stop(self) -> None:
        try:
            async with asyncio.timeout(CLIENT_STOP_TIMEOUT_S):
                await super().on_stop()
        except TimeoutError:
            log.warning(
                "kafka producer not stopped in time: records it still held are not delivered "
                "(their inputs were not acked, so they are read again at the next start)",
                extra={"timeout_s": CLIENT_STOP_TIMEOUT_S},
            )


class _Fetcher(Fetcher):
    """faust's fetcher, which tells the app when it crashes: mode restarts it only on a
    rebalance (where faust itself cancels it), so until then no faust-read input is read."""

    async def crash(self, reason: BaseException) -> None:
        await super().crash(reason)
        # A cancel during a rebalance is faust's own restart of the fetcher, not a fault.
        if not isinstance(reason, asyncio.CancelledError) and isinstance(self.app, App):
            self.app.service_crashed(FETCHER, reason)


class Transport(faust_aiokafka.Transport):
    """aiokafka transport whose worker consumer honours ``App.fetch_max_wait_ms``, whose
    clients stop within bounds and whose fetcher says when it crashes."""

    Consumer: ClassVar[type[Any]] = _Consumer
    Producer: ClassVar[type[Any]] = _Producer
    Fetcher: ClassVar[type[Any]] = _Fetcher


class App(faust.App):
    """A faust App that builds :class:`Transport`, carries the consumer fetch wait, tells of
    its crashed services, and keeps its data folder in a temporary folder while it runs."""

    logger = logging.getLogger("faust.app.base")

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        #: Told ``(part, error)`` when a faust service crashes (the worker's faults).
        self.on_service_crash: Callable[[str, BaseException], None] | None = None
        #: faust's data folder while the app runs (None before its first start, after its stop).
        self.temporary_datadir: Path | None = None

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    # ------------------------------------------------------------------ crashes
    def service_crashed(self, part: str, reason: BaseException) -> None:
        """``part`` (a faust service) crashed: said in the log and told to whoever listens."""
        log.error(
            "faust service crashed: the worker reads or delivers nothing more through it until "
            "it is restarted",
            extra={"part": part, "error": repr(reason)},
        )
        if self.on_service_crash is not None:
            self.on_service_crash(part, reason)

    def crashed_services(self) -> dict[str, BaseException]:
        """The faust services the worker depends on that have crashed, with why: the fetcher,
        the consumer, the producer, the app itself (a crash marks the services above it too:
        only the first named of those that share a reason is listed)."""
        found: dict[str, BaseException] = {}
        fetcher = self.__dict__.get("_fetcher")  # faust builds it on first use; not here
        for part, service in (
            (FETCHER, fetcher),
            ("faust consumer", self._consumer),
            ("faust producer", self._producer),
            ("faust app", self),
        ):
            reason = _crash_reason(service)
            if reason is not None and all(reason is not seen for seen in found.values()):
                found[part] = reason
        return found

    # ------------------------------------------------------------------ data folder
    async def on_first_start(self) -> None:
        """faust's data folder in a fresh temporary folder (faust makes its subfolders)."""
        self.temporary_datadir = Path(tempfile.mkdtemp(prefix=f"gridshift-{self.conf.id}-faust-"))
        self.conf.datadir = self.temporary_datadir
        await super().on_first_start()

    async def on_stop(self) -> None:
        try:
            await super().on_stop()
        finally:
            self.remove_datadir()

    def remove_datadir(self) -> None:
        """Remove the temporary data folder (nothing in it outlives the app: no tables)."""
        if self.temporary_datadir is not None:
            shutil.rmtree(self.temporary_datadir, ignore_errors=True)
            self.temporary_datadir = None

    async def _producer_flush(self, logger: Any) -> None:
        """faust's last producer flush of the app's stop, bounded by ``STOP_FLUSH_TIMEOUT_S``."""
        try:
            async with asyncio.timeout(STOP_FLUSH_TIMEOUT_S):
                await super()._producer_flush(logger)
        except TimeoutError:
            log.warning(
                "producer not flushed at stop: the broker did not take the records it held "
                "within the bound; their inputs were not acked and are read again at the next "
                "start (at-least-once)",
                extra={"timeout_s": STOP_FLUSH_TIMEOUT_S},
            )


def _crash_reason(service: Any) -> BaseException | None:
    """Why a mode service crashed (None: it did not, or a rebalance's cancel restarted it)."""
    if service is None or not getattr(service, "crashed", False):
        return None
    reason = getattr(service, "crash_reason", None)
    if isinstance(reason, asyncio.CancelledError):
        return None
    return reason if isinstance(reason, BaseException) else RuntimeError("crashed")


def started_consumer(app: faust.App) -> _Consumer | None:
    """The app's worker consumer once faust has built it (None before)."""
    consumer = getattr(app, "_consumer", None)
    return consumer if isinstance(consumer, _Consumer) else None


def faust_credentials(connection: KafkaConnection) -> Any:
    """``broker_credentials`` for the faust app (None for plaintext)."""
    if connection.sasl is not None:
        return faust.SASLCredentials(
            username=connection.sasl.username,
            password=connection.sasl.password,
            ssl_context=connection.ssl_context,
            mechanism=connection.sasl.mechanism,
        )
    if connection.ssl_context is not None:
        return faust.SSLCredentials(connection.ssl_context)
    return None
