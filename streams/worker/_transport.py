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
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar

import aiokafka
import faust
from aiokafka.errors import IllegalStateError, KafkaError
from faust.exceptions import ConsumerNotStarted
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import LogLoss

log = logging.getLogger(__name__)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    logger = faust_aiokafka.logger  # keep faust's logger name so its verbosity stays tunable

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer: aiokafka.AIOKafkaConsumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when start() builds its Fetcher, after construction.
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", 1500)
        return consumer


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

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # ------------------------------------------------------------------ a lost log
    async def forget_log(self, loss: LogLoss) -> None:
        """The broker lost ``loss.topics`` (their log with them): forget what was read, acked
        and committed there, and read the new log from its start."""
        self.log_generation = max(self.log_generation, loss.generation)
        for topic in loss.topics:
            self._lost_in[topic] = loss.generation
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


class Transport(faust_aiokafka.Transport):
    """aiokafka transport whose worker consumer honours ``App.fetch_max_wait_ms``."""

    Consumer: ClassVar[type[Any]] = _Consumer


class App(faust.App):
    """A faust App that builds :class:`Transport` and carries the consumer fetch wait."""

    logger = logging.getLogger("faust.app.base")

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)


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
