"""The ingest agents: decode -> validate -> fold into state -> mark sites dirty, with manual
acks. Site-keyed inputs are decided where they are read when this worker owns their site;
fleet-level inputs (prices, carbon, signals, hashprice) are routed to each site's partition first
(``streams/worker/routing.py``), so each worker decides only the sites of its partitions.
A site-keyed input read on a partition whose worker does not own its site (produced with
another partitioner than murmur2, say librdkafka's default, or keyed by something other than
its ``site_id``) is forwarded to the owner the same way, counted in
``gridshift_inputs_forwarded_total{topic}`` and logged once per topic.
Anything unusable goes to the dead-letter topic with its bytes and reason, and the agent carries on.

What must not happen here: a reject that stops an agent or the telemetry lane, or an input
committed before what it caused was delivered. :meth:`Agents.reject_all` never raises: it
retries until the dead letters (always small enough to send, ``streams/engine/codec.py``) are
delivered to a topic that exists, logging each failure, and only then counts and logs the
rejects; the caller acks the inputs after it returns. The dead letters of one call go out
together: all sent, their deliveries awaited once, the topic confirmed once. The faust agents
take one event at a time, so each reject is queued and the agent keeps reading while one sender
delivers the queue a batch at a time (each input acked once its dead letter is delivered). At
most :data:`MAX_BACKGROUND_DELIVERIES` dead letters wait in the queue, and as many routed
forwards are under way; past that the agent waits for the sender or a forward to finish. An
input whose price node or region matches no site is applied to nothing and counted (once per
key in the log). An agent body that crashes anyway is logged and reported to /health (faust
restarts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import Counter

from schemas import SITE_KEYED_INPUTS, TOPICS_BY_NAME, DeadLetter, Trigger
from streams.engine.codec import (
    Rejection,
    dead_letter,
    dead_letter_key,
    dead_letter_payload_limit,
)
from streams.engine.ingest import ingest
from streams.engine.state import FleetState
from streams.settings import Settings
from streams.worker.acks import ADMIT_TIMEOUT_S, AckLedger, Gate
from streams.worker.health import Faults, describe
from streams.worker.metrics import Metrics
from streams.worker.replanner import Replanner
from streams.worker.routing import RoutingError, by_partition, frame, partition_of, unframe

log = logging.getLogger(__name__)

Agent = Callable[[faust.StreamT[Any]], Coroutine[Any, Any, None]]
#: Parts reported to /health when their deliveries fail.
DEAD_LETTERS = "dead-letter delivery"
ROUTED = "routed delivery"
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
#: Dead letters queued, and routed forwards under way, that the faust agents leave in the
#: background before an agent waits: bounds the inputs held in memory while the broker is slow.
MAX_BACKGROUND_DELIVERIES = 1_000
#: The hint logged (once per topic) when a site-keyed input had to be forwarded.
PARTITIONER_HINT = (
    "produce with the murmur2 partitioner (Java default; confluent-kafka: "
    "partitioner=murmur2_random), keyed by the payload's site_id, to save a hop"
)
#: A rejected input: its record (partition, offset, key, value) and why.
Rejected = tuple[Any, Rejection]


@dataclass
class Agents:
    """Agent bodies sharing the worker's state, re-planner, ledger and metrics."""

    settings: Settings
    state: FleetState
    planner: Replanner
    ledger: AckLedger
    metrics: Metrics
    dead_letters: faust.TopicT
    routed: faust.TopicT
    gate: Gate
    faults: Faults = field(default_factory=Faults)
    #: Background deliveries (routed copies, dead letters) whose inputs wait to be acked.
    _forwarding: set[asyncio.Task[None]] = field(default_factory=set)
    #: Dead letters being sent (their inputs wait to be acked).
    rejecting: int = 0
    #: Contract topics whose forwarded (misrouted) site-keyed inputs were logged already.
    _misrouted_logged: set[str] = field(default_factory=set)
    #: The faust agents' rejects waiting for their dead letters: (topic, stream, event, why).
    _queued_rejects: list[tuple[str, Any, Any, Rejection]] = field(default_factory=list)
    _reject_sender: asyncio.Task[None] | None = None
    #: Set whenever the sender has delivered a batch (room in the queue).
    _rejects_sent: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        # Cut so that the whole dead letter fits in one produce request, whatever it rejects.
        self.payload_bytes = dead_letter_payload_limit(
            self.settings.producer_max_request_bytes, self.settings.dead_letter_payload_bytes
        )
        self.forwarded = Counter(
            "gridshift_inputs_forwarded",
            "Site-keyed inputs read on a partition whose worker does not own their site "
            "(produced with another partitioner than murmur2, or keyed by something other "
            "than their site_id), forwarded to the owner on the routed topic.",
            ["topic"],
            registry=self.metrics.registry,
        )

    def source(self, name: str) -> Agent:
        """The agent of contract input topic ``name``."""
        topic_name = self.settings.topic(name)
        part = f"agent gridshift.ingest.{name}"

        async def agent(stream: faust.StreamT[Any]) -> None:
            # Manual acks: an input is acked once what it caused is delivered to Kafka.
            manual = cast("faust.Stream[Any]", stream).noack()
            with _crash_reported(part, self.faults):
                async for event in manual.events():
                    try:
                        await self._take(name, topic_name, manual, event)
                    except Exception as exc:
                        self.metrics.count_in(name)
                        await self._poisoned(part, topic_name, manual, event, exc)

        return agent

    async def _take(
        self, name: str, topic_name: str, manual: faust.StreamT[Any], event: Any
    ) -> None:
        """One input: rejected, parked until decided, forwarded, or acked as no site's.
        Parking is the last thing done: nothing raises after the ledger holds the event."""
        outcome = ingest(self.state, name, event.value, self.settings.max_message_bytes)
        if isinstance(outcome, Rejection):
            self.metrics.count_in(name)
            await self._reject_in_background(topic_name, manual, event, outcome)
            return
        self.metrics.count_in(name, applied=1)
        if outcome.sites:
            # Site-keyed or not: decided here when this worker owns every site it concerns,
            # else routed to the owners (a site-keyed input lands elsewhere only when its
            # producer does not partition by murmur2 of the site id).
            await self._fan_out(name, event, manual, outcome.sites, outcome.trigger)
        else:
            self._unmatched(name, event.value)
            await manual.ack(event)  # changes nothing any site of this fleet decides

    async def routed_inputs(self, stream: faust.StreamT[Any]) -> None:
        """Routed inputs for the sites of this worker's partitions."""
        part = "agent gridshift.ingest.routed"
        manual = cast("faust.Stream[Any]", stream).noack()
        with _crash_reported(part, self.faults):
            async for event in manual.events():
                try:
                    await self._take_routed(manual, event)
                except Exception as exc:
                    await self._poisoned(part, self.routed.get_topic_name(), manual, event, exc)

    async def _take_routed(self, manual: faust.StreamT[Any], event: Any) -> None:
        try:
            name, sites, raw = unframe(event.value)
        except RoutingError as exc:
            topic = self.routed.get_topic_name()
            await self.reject(topic, event.message, Rejection("schema_violation", str(exc)))
            await manual.ack(event)
            return
        outcome = ingest(self.state, name, raw, self.settings.max_message_bytes)
        if isinstance(outcome, Rejection) or not (mine := sites & outcome.sites):
            await manual.ack(event)  # validated when it was routed; nothing to decide here
            return
        self.planner.mark_dirty(mine, outcome.trigger)
        self.ledger.park(manual, event)

    async def _poisoned(
        self,
        part: str,
        topic: str,
        manual: faust.StreamT[Any],
        event: Any,
        exc: Exception,
    ) -> None:
        """An input the worker failed on (a bug, not bad input). Left unacked it would hold
        every later commit and faust's stop and rebalances (they wait for it) forever; so it
        is dead-lettered with the error, acked, and the agent reported as crashed (sticky)."""
        self.faults.crash(part, exc, note=f"{topic} offset {event.message.offset} dead-lettered")
        log.error(
            "the worker failed on an input: dead-lettered and skipped (a bug: report it)",
            extra={"agent": part, "topic": topic, "offset": event.message.offset},
            exc_info=exc,
        )
        why = Rejection("schema_violation", f"not processed: the worker failed on it: {exc!r}")
        await self.reject(topic, event.message, why)
        await manual.ack(event)

    def _unmatched(self, name: str, raw: bytes | None) -> None:
        """Count an input whose node or region is no site's; log each new key once."""
        fields = TOPICS_BY_NAME[name].key_fields
        try:
            data = json.loads(raw or b"")  # valid: ingest has just decoded it
            key = next((str(data[f]) for f in fields if data.get(f)), "")
        except (ValueError, TypeError, AttributeError):
            key = ""
        if self.metrics.unmatched(name, key):
            log.info(
                "input matches no site of the fleet: applied to nothing "
                "(logged once per key; counted in gridshift_inputs_unmatched_total)",
                extra={"topic": name, "key": key},
            )

    async def _fan_out(
        self,
        name: str,
        event: Any,
        manual: faust.StreamT[Any],
        sites: frozenset[str],
        trigger: Trigger,
    ) -> None:
        """An input: decided here when every site it concerns is this worker's (no extra hop);
        otherwise forwarded, one record per destination partition, and acked once every copy
        is delivered (in the background, so the agent keeps reading)."""
        owned = self.planner.owned
        if owned is not None and sites <= owned:
            self.ledger.park(manual, event)
            self.planner.mark_dirty(sites, trigger)
            return
        if name in SITE_KEYED_INPUTS:
            self._misrouted(name, 1)
        await self._room_in_background()
        groups = by_partition(sites, self.settings.topic_partitions)
        # The first copies go out from here, in the order the inputs were read; waiting for
        # their delivery (and any retry) happens in the background.
        first: tuple[int, list[Any]] | None = None
        try:
            epoch = await self.gate.admit(ADMIT_TIMEOUT_S)
            first = (epoch, await self._send_routed(name, groups, event.value))
        except Exception as exc:
            self._not_forwarded(name, exc, 0.0)
        self._background(self._forward(name, groups, event, manual, first))

    def _background(self, delivery: Coroutine[Any, Any, None]) -> None:
        """Run ``delivery`` (which acks its input once delivered) beside the agent."""
        task = asyncio.create_task(delivery)
        self._forwarding.add(task)
        task.add_done_callback(self._forwarding.discard)

    async def _room_in_background(self) -> None:
        """Wait until fewer than :data:`MAX_BACKGROUND_DELIVERIES` deliveries are under way:
        each holds its input in memory, and a broker that stops acknowledging must slow the
        agent down, not grow the worker without limit."""
        while len(self._forwarding) >= MAX_BACKGROUND_DELIVERIES:
            await asyncio.wait(set(self._forwarding), return_when=asyncio.FIRST_COMPLETED)

    async def _reject_in_background(
        self, topic: str, manual: faust.StreamT[Any], event: Any, rejection: Rejection
    ) -> None:
        """Queue ``event``'s dead letter and return: the agent reads on. One sender delivers
        the queued dead letters together (:meth:`reject_all`: a batch per round trip, not one
        each) and acks their inputs once they are delivered. At most
        :data:`MAX_BACKGROUND_DELIVERIES` wait; past that the agent waits for the sender."""
        while len(self._queued_rejects) >= MAX_BACKGROUND_DELIVERIES:
            self._rejects_sent.clear()
            await self._rejects_sent.wait()
        self._queued_rejects.append((topic, manual, event, rejection))
        self.rejecting += 1  # counted in flight from now on (the stop's drain waits for it)
        if self._reject_sender is None or self._reject_sender.done():
            self._reject_sender = asyncio.create_task(self._send_queued_rejects())
            self._reject_sender.add_done_callback(self._sender_ended)

    def _sender_ended(self, task: asyncio.Task[None]) -> None:
        """A sender that raised (a bug: delivery itself retries) leaves its inputs unacked
        (read again after a restart): say so on /health, sticky. The next reject starts a new
        sender for what is queued."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        self.faults.crash(DEAD_LETTERS, exc, note="queued dead letters not delivered")
        log.error("dead-letter sender failed (a bug: report it)", exc_info=exc)

    async def _send_queued_rejects(self) -> None:
        """Deliver the queued dead letters, a batch (all queued so far) at a time, then ack
        their inputs; until the queue is empty."""
        while self._queued_rejects:
            batch = self._queued_rejects[:]
            by_topic: dict[str, list[Rejected]] = {}
            for topic, _manual, event, rejection in batch:
                by_topic.setdefault(topic, []).append((event.message, rejection))
            await asyncio.gather(
                *(self._dead_letter_all(topic, items) for topic, items in by_topic.items())
            )  # never raises: each retries until delivered
            del self._queued_rejects[: len(batch)]
            self.rejecting -= len(batch)
            self._rejects_sent.set()
            for _topic, manual, event, _rejection in batch:
                await manual.ack(event)

    def _misrouted(self, name: str, count: int) -> None:
        """Count ``count`` site-keyed inputs of ``name`` forwarded to their owner; say it once
        per topic with the fix (the producer's partitioner)."""
        self.forwarded.labels(name).inc(count)
        if name not in self._misrouted_logged:
            self._misrouted_logged.add(name)
            log.warning(
                "site-keyed input read on a partition whose worker does not own its site: "
                "forwarded to the owner (logged once per topic; counted in "
                "gridshift_inputs_forwarded_total)",
                extra={"topic": name, "hint": PARTITIONER_HINT},
            )

    async def forward_all(self, name: str, records: Sequence[tuple[str, bytes | None]]) -> None:
        """Forward site-keyed inputs of contract topic ``name`` (``(site id, raw bytes)`` each)
        to the partitions of their sites' owners, all together: every copy sent, their
        deliveries awaited once, the routed topic confirmed once. Returns only once all are
        delivered (retrying meanwhile: the inputs must not be committed before), never raises.
        The telemetry lane's forwards of one fetch."""
        if not records:
            return
        self._misrouted(name, len(records))
        partitions = self.settings.topic_partitions
        copies = [
            (partition_of(site, partitions), site.encode(), frame(name, (site,), raw or b""))
            for site, raw in records
        ]
        topic = self.routed.get_topic_name()
        delay = RETRY_INITIAL_S
        while True:
            try:
                epoch = await self.gate.admit(ADMIT_TIMEOUT_S)
                sent = [
                    await self.routed.send(key=key, value=value, partition=partition)
                    for partition, key, value in copies
                ]
                await asyncio.gather(*sent)
                await self.gate.confirm(topic, epoch)
                break
            except Exception as exc:
                self._not_forwarded(name, exc, delay)
                await asyncio.sleep(delay)  # back-off before the retry, not synchronisation
                delay = min(delay * 2, RETRY_MAX_S)
        self.faults.ok(ROUTED)

    async def _send_routed(
        self, name: str, groups: dict[int, list[str]], raw: bytes | None
    ) -> list[Any]:
        return [
            await self.routed.send(
                key=group[0].encode(), value=frame(name, group, raw or b""), partition=partition
            )
            for partition, group in groups.items()
        ]

    async def _forward(
        self,
        name: str,
        groups: dict[int, list[str]],
        event: Any,
        manual: faust.StreamT[Any],
        first: tuple[int, list[Any]] | None,
    ) -> None:
        """Wait until the routed copies are delivered (sending them again on failure, the input
        unacked meanwhile), then ack the input."""
        topic = self.routed.get_topic_name()
        attempt = first
        delay = RETRY_INITIAL_S
        while True:
            try:
                if attempt is None:
                    epoch = await self.gate.admit(ADMIT_TIMEOUT_S)
                    attempt = (epoch, await self._send_routed(name, groups, event.value))
                epoch, sent = attempt
                await asyncio.gather(*sent)
                await self.gate.confirm(topic, epoch)
                break
            except Exception as exc:
                attempt = None
                self._not_forwarded(name, exc, delay)
                await asyncio.sleep(delay)  # back-off before the retry, not synchronisation
                delay = min(delay * 2, RETRY_MAX_S)
        self.faults.ok(ROUTED)
        await manual.ack(event)

    def _not_forwarded(self, name: str, exc: Exception, retry_in_s: float) -> None:
        self.faults.fail(ROUTED, exc)
        log.error(
            "routed copies not delivered; the input stays uncommitted, retrying",
            extra={"topic": name, "error": describe(exc), "retry_in_s": retry_in_s},
        )

    async def reject(self, topic: str, message: Any, rejection: Rejection) -> None:
        """Dead-letter ``message`` (a faust or aiokafka record: partition, offset, key, value)
        with its reason. Returns only once the dead letter is delivered (retrying meanwhile:
        the input must not be committed before), and never raises."""
        await self.reject_all(topic, [(message, rejection)])

    async def reject_all(self, topic: str, rejected: Sequence[Rejected]) -> None:
        """Dead-letter every ``(message, rejection)`` of ``rejected`` (read from ``topic``)
        together: all sent, their deliveries awaited once, the topic confirmed once. Returns
        only once every one is delivered (retrying what was not), and never raises."""
        if not rejected:
            return
        self.rejecting += len(rejected)
        try:
            await self._dead_letter_all(topic, rejected)
        finally:
            self.rejecting -= len(rejected)

    async def _dead_letter_all(self, topic: str, rejected: Sequence[Rejected]) -> None:
        """Deliver the dead letters of ``rejected``, then count and log each."""
        records = [
            dead_letter(
                topic=topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value,
                rejection=rejection,
                max_payload_bytes=self.payload_bytes,
            )
            for message, rejection in rejected
        ]
        await self._deliver_dead_letters(topic, rejected, records)
        self.faults.ok(DEAD_LETTERS, where=topic)
        # Counted and logged only now that they are delivered.
        for (message, rejection), record in zip(rejected, records, strict=True):
            self.metrics.count_dead_letter(rejection.reason)
            log.warning(
                "dead-lettered",
                extra={
                    "topic": topic,
                    "offset": message.offset,
                    "reason": rejection.reason,
                    "error": rejection.error[:500],
                    "bytes": record.raw_value_size_bytes,
                    "truncated": record.raw_value_truncated,
                },
            )

    def in_flight(self) -> int:
        """Inputs read and not acked yet because what they caused is still being sent."""
        return self.rejecting + len(self._forwarding)

    async def _deliver_dead_letters(
        self, topic: str, rejected: Sequence[Rejected], records: list[DeadLetter]
    ) -> None:
        """Send the dead letters not delivered yet, await their acknowledgements, confirm the
        topic once; again (after a back-off) for those that did not make it."""
        todo = list(range(len(records)))
        delay = RETRY_INITIAL_S
        while todo:
            failed, exc = await self._send_dead_letters(
                [(dead_letter_key(rejected[i][0].key), records[i]) for i in todo]
            )
            if exc is None:
                return
            todo = [todo[j] for j in failed]
            first = todo[0]
            self._dead_letter_failed(
                topic,
                message=rejected[first][0],
                rejection=rejected[first][1],
                record=records[first],
                exc=exc,
                retry_in_s=delay,
                count=len(todo),
            )
            if _too_large(exc):
                # Cannot happen with the payload cut to fit; if the producer still refuses,
                # the digest and size alone must get through.
                for i in todo:
                    records[i] = _without_payload(records[i])
            await asyncio.sleep(delay)  # back-off before the retry, not synchronisation
            delay = min(delay * 2, RETRY_MAX_S)

    async def _send_dead_letters(
        self, letters: list[tuple[bytes | None, DeadLetter]]
    ) -> tuple[list[int], Exception | None]:
        """One attempt: the indexes of ``letters`` not delivered, and why (None: all were)."""
        try:
            epoch = await self.gate.admit(ADMIT_TIMEOUT_S)
        except Exception as exc:
            return list(range(len(letters))), exc
        sent: list[Any] = []
        error: BaseException | None = None
        for key, value in letters:
            try:
                sent.append(await self.dead_letters.send(key=key, value=value))
            except Exception as exc:
                error = exc  # this one and the rest are not sent
                break
        outcomes = await asyncio.gather(*sent, return_exceptions=True)
        failed = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)]
        failed += range(len(sent), len(letters))
        error = error or next((o for o in outcomes if isinstance(o, BaseException)), None)
        if len(failed) < len(letters):
            try:
                # One listing for all of them: acknowledged is not delivered on a lost topic.
                await self.gate.confirm(self.dead_letters.get_topic_name(), epoch)
            except Exception as exc:
                return list(range(len(letters))), exc
        if not failed:
            return [], None
        return failed, error if isinstance(error, Exception) else RuntimeError(repr(error))

    def _dead_letter_failed(
        self,
        topic: str,
        *,
        message: Any,
        rejection: Rejection,
        record: DeadLetter,
        exc: Exception,
        retry_in_s: float,
        count: int = 1,
    ) -> None:
        self.faults.fail(DEAD_LETTERS, exc, where=topic)
        log.error(
            "dead letter not delivered; the input stays uncommitted, retrying",
            extra={
                "topic": topic,
                "dead_letters": count,
                "offset": message.offset,
                "reason": rejection.reason,
                "dead_letter_b64_bytes": len(record.raw_value_b64),
                "error": describe(exc),
                "retry_in_s": retry_in_s,
            },
        )

    async def close(self) -> None:
        """Stop the background deliveries (the inputs behind unfinished copies and dead
        letters stay uncommitted)."""
        tasks = [*self._forwarding, *([self._reject_sender] if self._reject_sender else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def _crash_reported(part: str, faults: Faults) -> Iterator[None]:
    """Log and report an agent body that raised, then let it raise (faust restarts it)."""
    try:
        yield
    except Exception as exc:
        faults.crash(part, exc)
        log.exception(
            "ingest agent crashed; faust restarts it, but inputs it had read may be committed past",
            extra={"agent": part, "error": describe(exc)},
        )
        raise


def _too_large(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MessageSizeTooLargeError):
            return True
        seen = seen.__cause__
    return False


def _without_payload(record: DeadLetter) -> DeadLetter:
    return record.model_copy(update={"raw_value_b64": "", "raw_value_truncated": True})
