"""Broker outages and lost topics: notice them, say so once in the log, put the worker's topics
back, and tell a sender whether what the broker acknowledged can be trusted.

aiokafka reconnects on its own, but while the broker is away it logs every failed attempt (tens of
lines a second) and says nothing when it recovers. :class:`BrokerWatch` probes the broker on its
own schedule and logs one line when it goes away and one when it returns, with the outage length;
``streams/logs.py``'s :class:`~streams.logs.RepeatFilter` folds the client's repeated error lines.

A broker that kept nothing across its restart (the embedded broker, or Kafka without a volume)
returns without the worker's topics. Producers would then auto-create them with the broker's
defaults, so on every reconnect, and every ``topic_check_interval_s`` in between, the watch lists
the topics, creates whatever is missing with the declared partition count, and logs it.

Tansu acknowledges a produce to a topic that does not exist: the records are then readable by no
one. So an acknowledgement alone does not make a delivery. A sender asks :meth:`BrokerWatch.admit`
before sending (it waits while the broker is away or a topic is missing) and
:meth:`BrokerWatch.confirm` after the acknowledgement: a listing started after it must show the
topic, with no outage or lost topic in between (the watch's ``epoch`` did not move). Otherwise the
send raises :class:`DeliveryUncertainError` and the sender retries with its inputs uncommitted.

A topic that was lost took its log with it: the offsets the worker read, acked and committed there
belong to a log that no longer exists, and the new one starts again at 0. Whenever the watch finds
topics lost (recreated after an outage, or missing from a listing) it moves its ``log_generation``,
logs it once, and awaits every ``on_log_lost`` callback with the lost topics *before* it sets
``ready``: the worker forgets its positions on them and reads the new log from its start before
any delivery (and so any ack or commit) is admitted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from streams.errors import GridshiftError
from streams.kafka.broker import kafka_api_versions_ok
from streams.kafka.connection import KafkaConnection

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
#: Longest a topic listing may take before it counts as failed.
LIST_TIMEOUT_S = 5.0
Probe = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class LogLoss:
    """Topics whose log the broker lost, and the log generation that starts with the loss."""

    topics: frozenset[str]
    generation: int


#: Told about a lost log; awaited before deliveries are admitted again.
OnLogLost = Callable[[LogLoss], Awaitable[None]]


class DeliveryUncertainError(GridshiftError):
    """A send that cannot be counted as delivered: the broker was away, a topic was missing, or
    it could not be confirmed that the acknowledged topic exists. The sender retries."""


def api_versions_probe(host: str, port: int, timeout_s: float = 1.0) -> Probe:
    """A probe that asks ``host:port`` for its Kafka API versions (off the event loop)."""

    async def probe() -> bool:
        return await asyncio.to_thread(kafka_api_versions_ok, host, port, timeout_s)

    return probe


async def create_missing_topics(
    connection: KafkaConnection, partitions_by_topic: Mapping[str, int]
) -> list[str]:
    """Create each topic that does not exist (with its partition count); return those created."""
    admin = AIOKafkaAdminClient(**connection.client())
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, count, 1) for name, count in partitions_by_topic.items()]
        )
    finally:
        await admin.close()
    created: list[str] = []
    for topic, code, *_ in response.topic_errors:
        if code == 0:
            created.append(topic)
        elif code != _TOPIC_ALREADY_EXISTS:
            log.warning("could not create topic", extra={"topic": topic, "error_code": code})
    return created


@dataclass
class BrokerWatch:
    """Tracks whether the broker answers and whether every topic of ``partitions_by_topic``
    exists; restores missing topics; gates deliveries (:meth:`admit`, :meth:`confirm`)."""

    connection: KafkaConnection
    probe: Probe
    partitions_by_topic: Mapping[str, int]
    interval_s: float = 0.25
    topic_check_interval_s: float = 5.0
    on_change: Callable[[bool], None] | None = None
    up: bool = True
    outages: int = 0
    topics_recreated: int = 0
    #: Moves on every outage and whenever a listing finds a topic missing: a send that started
    #: in an earlier epoch cannot be trusted.
    epoch: int = 0
    #: Moves whenever the broker is found to have lost topics (their log with them); what was
    #: read from them before belongs to a log that no longer exists.
    log_generation: int = 0
    logs_lost: int = 0
    #: Awaited (in order) with each loss, before ``ready`` is set again.
    on_log_lost: list[OnLogLost] = field(default_factory=list)
    #: Topics the last listing did not show.
    missing: frozenset[str] = frozenset()
    #: Topics whose partition count is not the declared one (topic -> partitions found).
    misshapen: dict[str, int] = field(default_factory=dict)
    #: Set while the broker answers and the last listing showed every topic.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _down_since: float | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _verify_soon: asyncio.Event = field(default_factory=asyncio.Event)
    _client: AIOKafkaClient | None = None
    _queued: asyncio.Task[dict[str, int]] | None = None
    _running: asyncio.Task[dict[str, int]] | None = None
    _closed: bool = False
    #: Topics seen missing whose loss the callbacks have not been told of yet.
    _lost: set[str] = field(default_factory=set)

    async def run(self) -> None:
        """Probe forever, and check the topics every ``topic_check_interval_s`` (cancel to
        stop)."""
        next_verify = time.monotonic()
        while True:
            try:
                await self.check()
                if self.up and (self._verify_soon.is_set() or time.monotonic() >= next_verify):
                    self._verify_soon.clear()
                    await self.verify()
                    next_verify = time.monotonic() + self.topic_check_interval_s
            except Exception:
                # The watch must outlive anything one probe or listing throws at it.
                log.exception("broker watch check failed; checking again")
            # The probe cadence, cut short when a sender found a topic missing.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._verify_soon.wait(), self.interval_s)

    async def check(self) -> None:
        """One probe, and the transition it implies."""
        reachable = await self.probe()
        if reachable == self.up:
            return
        recreated: list[str] = []
        if not reachable:
            self._down_since = time.monotonic()
            self.outages += 1
            self.epoch += 1  # whatever is in flight now may land on a broker that forgets it
            self.ready.clear()
            log.warning(
                "broker unreachable: inputs stay in Kafka, decisions wait; "
                "reconnecting (client errors are summarised below)",
                extra={"bootstrap": self.connection.bootstrap},
            )
        else:
            outage_s = time.monotonic() - (self._down_since or time.monotonic())
            recreated = await self._restore_topics(self.partitions_by_topic)
            self._lost.update(recreated)
            log.warning(
                "broker reachable again"
                + (
                    " (it kept nothing across its restart: topics recreated, their old offsets "
                    "forgotten, the new log read from its start)"
                    if recreated
                    else ""
                ),
                extra={
                    "bootstrap": self.connection.bootstrap,
                    "after_s": round(outage_s, 1),
                    "topics_recreated": recreated,
                },
            )
        self.up = reachable
        if self.on_change is not None:
            self.on_change(reachable)
        if reachable:
            await self._forget_lost(said=bool(recreated))
            self._verify_soon.set()  # confirm the topics before anything is delivered again
        self._changed.set()

    async def verify(self) -> bool:
        """List the topics, create any that is missing, and list again: ready when all exist."""
        try:
            self._observe(await self._fresh_listing())
            if self.missing:
                await self._restore_topics({t: self.partitions_by_topic[t] for t in self.missing})
                self._observe(await self._fresh_listing())
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("could not list topics", extra={"error": repr(exc)})
            return False
        await self._forget_lost()
        if not self.missing and self.up:
            self.ready.set()
        return not self.missing

    async def admit(self, timeout_s: float) -> int:
        """Wait until a send may go out (broker up, every topic listed); return the epoch to
        :meth:`confirm` it with. :class:`DeliveryUncertainError` after ``timeout_s``."""
        if not self.ready.is_set():
            try:
                async with asyncio.timeout(timeout_s):
                    await self.ready.wait()
            except TimeoutError:
                raise DeliveryUncertainError(
                    f"not sent: {self.why_not_ready()} (waited {timeout_s:.0f} s)"
                ) from None
        return self.epoch

    async def confirm(self, topic: str, epoch: int) -> None:
        """After the broker acknowledged a send to ``topic`` (admitted in ``epoch``): a listing
        started after the acknowledgement shows the topic, and no outage or lost topic came in
        between. :class:`DeliveryUncertainError` otherwise."""
        try:
            listed = self._observe(await self._fresh_listing())
        except (KafkaError, OSError, TimeoutError) as exc:
            raise DeliveryUncertainError(f"could not confirm that {topic} exists: {exc!r}") from exc
        if topic not in listed:
            self._verify_soon.set()
            raise DeliveryUncertainError(
                f"acknowledged by the broker, but topic {topic} does not exist"
            )
        if self.epoch != epoch:
            raise DeliveryUncertainError(
                f"the broker went away or lost topics while {topic} was written to"
            )

    def why_not_ready(self) -> str:
        if not self.up:
            return "broker unreachable"
        if self.missing:
            return "topics missing: " + ", ".join(sorted(self.missing))
        return "topics not confirmed yet"

    async def wait_for(self, up: bool, timeout_s: float) -> None:
        """Wait until the watch has seen the broker ``up`` (or not), else TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while self.up != up:
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        """Close the listing client (after the senders have stopped)."""
        self._closed = True
        for task in (self._queued, self._running):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _forget_lost(self, *, said: bool = False) -> None:
        """Tell the callbacks which topics lost their log (a new log generation), before
        ``ready`` may be set again; one log line unless the caller's line ``said`` it."""
        if not self._lost:
            return
        topics, self._lost = frozenset(self._lost), set()
        self.log_generation += 1
        self.logs_lost += 1
        (log.info if said else log.warning)(
            "the broker lost the log of topics the worker uses: their old offsets are forgotten "
            "(nothing read there is committed) and the new log is read from its start",
            extra={"topics": sorted(topics), "log_generation": self.log_generation},
        )
        loss = LogLoss(topics, self.log_generation)
        for callback in self.on_log_lost:
            try:
                await callback(loss)
            except Exception:
                # One part failing to reset must not stop the others (or the watch).
                log.exception("could not forget the lost log", extra={"topics": sorted(topics)})

    # ------------------------------------------------------------------ listing
    def _observe(self, listed: dict[str, int]) -> dict[str, int]:
        """Take in a listing: which declared topics are missing or misshapen."""
        missing = frozenset(t for t in self.partitions_by_topic if t not in listed)
        if missing:
            self.ready.clear()
            # Its log is gone even if someone recreates the topic before the watch does.
            self._lost.update(missing)
        if missing - self.missing:
            # A topic went missing: sends of the epoch before are not to be trusted.
            self.epoch += 1
            log.warning(
                "topics missing: sends to them wait until they exist again",
                extra={"topics": sorted(missing)},
            )
        elif self.missing and not missing:
            log.warning("every topic exists again", extra={"topics": sorted(self.missing)})
        self.missing = missing
        misshapen = {
            t: listed[t]
            for t, count in self.partitions_by_topic.items()
            if t in listed and listed[t] != count
        }
        for topic in misshapen.keys() - self.misshapen.keys():
            log.error(
                "topic has the wrong partition count: sites and their inputs no longer share "
                "partitions; recreate it",
                extra={
                    "topic": topic,
                    "partitions": misshapen[topic],
                    "expected": self.partitions_by_topic[topic],
                },
            )
        self.misshapen = misshapen
        return listed

    async def _fresh_listing(self) -> dict[str, int]:
        """A listing that started after this call (callers waiting together share one)."""
        if self._closed:
            raise DeliveryUncertainError("the broker watch is closed")
        if self._queued is None:
            self._queued = asyncio.ensure_future(self._list_after_current())
        # Shielded: a caller that gives up must not cancel the listing others wait for.
        return await asyncio.shield(self._queued)

    async def _list_after_current(self) -> dict[str, int]:
        running = self._running
        if running is not None:
            with contextlib.suppress(Exception):
                await running
        # From here on, a new caller needs a listing that starts after this one.
        me, self._queued = self._queued, None
        self._running = me
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                return await self._list()
        finally:
            if self._running is me:
                self._running = None

    async def _list(self) -> dict[str, int]:
        """Every topic on the broker with its partition count (a metadata request for all
        topics: naming topics would make Tansu auto-create them)."""
        if self._client is None:
            client = AIOKafkaClient(**self.connection.client())
            await client.bootstrap()
            self._client = client
        metadata = await self._client.fetch_all_metadata()
        return {
            topic: len(metadata.partitions_for_topic(topic) or ()) for topic in metadata.topics()
        }

    async def _restore_topics(self, partitions_by_topic: Mapping[str, int]) -> list[str]:
        try:
            recreated = await create_missing_topics(self.connection, partitions_by_topic)
        except KafkaError as exc:
            log.warning("could not create missing topics", extra={"error": str(exc)})
            return []
        self.topics_recreated += len(recreated)
        if recreated and self.up:
            log.warning("topics recreated", extra={"topics": sorted(recreated)})
        return recreated
