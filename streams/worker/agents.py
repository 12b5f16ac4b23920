"""The ingest agents: decode -> validate -> fold into state -> mark sites dirty, with manual
acks. Site-keyed inputs are decided where they are read; fleet-level inputs (prices, carbon,
signals, hashprice) are routed to each site's partition first
(``streams/worker/routing.py``), so each worker decides only the sites of its partitions.
Anything unusable goes to the dead-letter topic with its bytes and reason, and the agent carries on.

What must not happen here: a reject that stops an agent or the telemetry lane, or an input
committed before what it caused was delivered. :meth:`Agents.reject` never raises: it retries
until the dead letter (always small enough to send, ``streams/engine/codec.py``) is delivered
to a topic that exists, logging each failure, and only then counts and logs the reject; the
caller acks the input after it returns. An input whose price node or region matches no site is
applied to nothing and counted (once per key in the log). An agent body that crashes anyway is
logged and reported to /health (faust restarts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from aiokafka.errors import MessageSizeTooLargeError

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
from streams.worker.acks import ADMIT_TIMEOUT_S, AckLedger, Gate, deliver
from streams.worker.health import Faults, describe
from streams.worker.metrics import Metrics
from streams.worker.replanner import Replanner
from streams.worker.routing import RoutingError, by_partition, frame, unframe

log = logging.getLogger(__name__)

Agent = Callable[[faust.StreamT[Any]], Coroutine[Any, Any, None]]
#: Parts reported to /health when their deliveries fail.
DEAD_LETTERS = "dead-letter delivery"
ROUTED = "routed delivery"
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0


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
    _forwarding: set[asyncio.Task[None]] = field(default_factory=set)
    #: Dead letters being sent (their inputs wait to be acked).
    rejecting: int = 0

    def __post_init__(self) -> None:
        # Cut so that the whole dead letter fits in one produce request, whatever it rejects.
        self.payload_bytes = dead_letter_payload_limit(
            self.settings.producer_max_request_bytes, self.settings.dead_letter_payload_bytes
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
            await self.reject(topic_name, event.message, outcome)
            await manual.ack(event)
            return
        self.metrics.count_in(name, applied=1)
        if name in SITE_KEYED_INPUTS and outcome.sites:
            self.planner.mark_dirty(outcome.sites, outcome.trigger)
            self.ledger.park(manual, event)
        elif outcome.sites:
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
        """A fleet-level input: decided here when every site it concerns is this worker's (no
        extra hop); otherwise forwarded, one record per destination partition, and acked once
        every copy is delivered (in the background, so the agent keeps reading)."""
        owned = self.planner.owned
        if owned is not None and sites <= owned:
            self.ledger.park(manual, event)
            self.planner.mark_dirty(sites, trigger)
            return
        groups = by_partition(sites, self.settings.topic_partitions)
        # The first copies go out from here, in the order the inputs were read; waiting for
        # their delivery (and any retry) happens in the background.
        first: tuple[int, list[Any]] | None = None
        try:
            epoch = await self.gate.admit(ADMIT_TIMEOUT_S)
            first = (epoch, await self._send_routed(name, groups, event.value))
        except Exception as exc:
            self._not_forwarded(name, exc, 0.0)
        task = asyncio.create_task(self._forward(name, groups, event, manual, first))
        self._forwarding.add(task)
        task.add_done_callback(self._forwarding.discard)

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
        record = dead_letter(
            topic=topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            rejection=rejection,
            max_payload_bytes=self.payload_bytes,
        )
        self.rejecting += 1
        try:
            await self._deliver_dead_letter(topic, message, rejection, record)
        finally:
            self.rejecting -= 1
        self.faults.ok(DEAD_LETTERS, where=topic)
        # Counted and logged only now that it is delivered.
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

    async def _deliver_dead_letter(
        self, topic: str, message: Any, rejection: Rejection, record: DeadLetter
    ) -> None:
        delay = RETRY_INITIAL_S
        while True:
            try:
                await deliver(
                    self.gate, self.dead_letters, key=dead_letter_key(message.key), value=record
                )
            except Exception as exc:
                self._dead_letter_failed(
                    topic,
                    message=message,
                    rejection=rejection,
                    record=record,
                    exc=exc,
                    retry_in_s=delay,
                )
                if _too_large(exc):
                    # Cannot happen with the payload cut to fit; if the producer still refuses,
                    # the digest and size alone must get through.
                    record = _without_payload(record)
                await asyncio.sleep(delay)  # back-off before the retry, not synchronisation
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                return

    def _dead_letter_failed(
        self,
        topic: str,
        *,
        message: Any,
        rejection: Rejection,
        record: DeadLetter,
        exc: Exception,
        retry_in_s: float,
    ) -> None:
        self.faults.fail(DEAD_LETTERS, exc, where=topic)
        log.error(
            "dead letter not delivered; the input stays uncommitted, retrying",
            extra={
                "topic": topic,
                "offset": message.offset,
                "reason": rejection.reason,
                "dead_letter_b64_bytes": len(record.raw_value_b64),
                "error": describe(exc),
                "retry_in_s": retry_in_s,
            },
        )

    async def close(self) -> None:
        """Stop forwarding (the inputs behind unfinished copies stay uncommitted)."""
        for task in list(self._forwarding):
            task.cancel()
        await asyncio.gather(*self._forwarding, return_exceptions=True)


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
