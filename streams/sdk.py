"""The Python SDK: an async publisher of input events and an async subscriber of decisions.

Publisher: validates every event against its topic's model before sending, batches sends, and
awaits broker acknowledgement (``flush``). At most ``max_in_flight`` events wait for
acknowledgement: past that, ``publish`` waits (back-pressure, bounded memory while the broker is
away) and reconnection is aiokafka's. Subscriber: yields typed decisions, optionally for a
set of sites, and drops duplicate decision ids (at-least-once delivery upstream).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from schemas import DECISION_TOPIC, INPUT_TOPICS, TOPICS_BY_NAME, DispatchDecision
from schemas.keys import event_key
from streams.engine.codec import encode
from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection

log = logging.getLogger(__name__)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class PublishError(GridshiftError):
    """An event failed validation or the broker did not acknowledge it."""


async def _start(client: AIOKafkaProducer | AIOKafkaConsumer, error: type[GridshiftError]) -> None:
    """Start an aiokafka client; an unreachable broker is one clear error, nothing left open."""
    try:
        await client.start()
    except KafkaError as exc:
        await client.stop()
        raise error(f"cannot reach Kafka: {exc}") from exc


def validate_event(topic: str, event: BaseModel | Mapping[str, Any]) -> BaseModel:
    """``event`` as the model of ``topic`` (an input topic), or :class:`PublishError`."""
    contract = TOPICS_BY_NAME.get(topic)
    if contract is None or not contract.is_input:
        raise PublishError(f"not an input topic: {topic!r} (choose from {', '.join(INPUT_TOPICS)})")
    if isinstance(event, contract.model):
        return event
    payload = event.model_dump(mode="json") if isinstance(event, BaseModel) else dict(event)
    try:
        # The same strict JSON validation the worker applies, so what passes here is accepted.
        return contract.model.model_validate_json(
            json.dumps(payload, default=_json_default), strict=True
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise PublishError(f"invalid {topic} event: {where}: {first['msg']}") from exc


class _Record(NamedTuple):
    """An encoded event as sent, kept until the broker acknowledges it."""

    topic: str
    key: bytes | None
    value: bytes


class Publisher:
    """Publishes validated input events. Use as ``async with Publisher(bootstrap) as pub``."""

    def __init__(
        self,
        bootstrap: str | KafkaConnection,
        *,
        topic_prefix: str = "",
        linger_ms: int = 2,
        max_in_flight: int = 10_000,
        slow_ack_warning_s: float = 5.0,
        resend_attempts: int = 3,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic_prefix = topic_prefix
        self.slow_ack_warning_s = slow_ack_warning_s
        self.resend_attempts = resend_attempts
        self.max_in_flight = max_in_flight
        self._producer = AIOKafkaProducer(
            **_client(bootstrap, client_options, linger_ms=linger_ms, acks="all")
        )
        self._pending: list[tuple[asyncio.Future[Any], _Record]] = []
        self.sent = 0

    async def __aenter__(self) -> Self:
        await _start(self._producer, PublishError)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                await self.flush()
        finally:
            await self._producer.stop()

    async def publish(self, topic: str, event: BaseModel | Mapping[str, Any]) -> None:
        """Validate and queue one event; at most ``max_in_flight`` await acknowledgement."""
        model = validate_event(topic, event)
        await self._send(_Record(self.topic_prefix + topic, event_key(model), encode(model)))
        if len(self._pending) >= self.max_in_flight:
            await self.flush()

    async def _send(self, record: _Record) -> None:
        future = await self._producer.send(record.topic, value=record.value, key=record.key)
        self._pending.append((future, record))

    async def publish_many(
        self, topic: str, events: Iterable[BaseModel | Mapping[str, Any]]
    ) -> int:
        """Validate and publish a batch, then wait until the broker has acknowledged it all."""
        count = 0
        for event in events:
            await self.publish(topic, event)
            count += 1
        await self.flush()
        return count

    async def flush(self) -> None:
        """Wait for every queued event to be acknowledged by the broker.

        While the broker is away this waits (aiokafka reconnects and resends) up to the client's
        ``request_timeout_ms``; after ``slow_ack_warning_s`` it says so in the log, once. Events
        the broker refused right after coming back are sent again, up to ``resend_attempts``
        times (so they may land after later events: consumers fold by event time).
        """
        for attempt in range(self.resend_attempts + 1):
            failed = await self._await_pending()
            if not failed:
                return
            error = failed[0][1]
            if attempt == self.resend_attempts:
                raise PublishError(
                    f"broker did not acknowledge {len(failed)} events: {error}"
                ) from error
            log.warning(
                "broker refused events; sending them again",
                extra={"events": len(failed), "error": str(error)},
            )
            for record, _ in failed:
                await self._send(record)

    async def _await_pending(self) -> list[tuple[_Record, KafkaError]]:
        pending, self._pending = self._pending, []
        if not pending:
            return []
        futures = [future for future, _ in pending]
        _, waiting = await asyncio.wait(futures, timeout=self.slow_ack_warning_s)
        if waiting:
            log.warning(
                "waiting for the broker to acknowledge events; "
                "is it reachable? (aiokafka keeps reconnecting)",
                extra={
                    "waiting": len(waiting),
                    "pending": len(pending),
                    "waited_s": self.slow_ack_warning_s,
                },
            )
            await asyncio.wait(futures)
            log.warning("broker answered the delayed events", extra={"events": len(waiting)})
        failed: list[tuple[_Record, KafkaError]] = []
        for future, record in pending:
            exc = future.exception()
            if isinstance(exc, KafkaError):
                failed.append((record, exc))
            elif exc is not None:
                raise exc
        self.sent += len(pending) - len(failed)
        return failed


class DecisionSubscriber:
    """Async iterator of :class:`DispatchDecision`, deduplicated by ``decision_id``."""

    def __init__(
        self,
        bootstrap: str | KafkaConnection,
        *,
        topic_prefix: str = "",
        sites: Iterable[str] | None = None,
        from_beginning: bool = False,
        group_id: str | None = None,
        fetch_max_wait_ms: int = 20,
        remember_ids: int = 100_000,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.sites = frozenset(sites) if sites else None
        self.remember_ids = remember_ids
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.duplicates_dropped = 0
        self.invalid_skipped = 0
        self._consumer = AIOKafkaConsumer(
            topic_prefix + DECISION_TOPIC,
            **_client(
                bootstrap,
                client_options,
                group_id=group_id,
                auto_offset_reset="earliest" if from_beginning else "latest",
                enable_auto_commit=group_id is not None,
                fetch_max_wait_ms=fetch_max_wait_ms,
            ),
        )

    async def __aenter__(self) -> Self:
        await _start(self._consumer, GridshiftError)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._consumer.stop()

    def __aiter__(self) -> AsyncIterator[DispatchDecision]:
        return self._decisions()

    async def _decisions(self) -> AsyncIterator[DispatchDecision]:
        async for message in self._consumer:
            if self.sites is not None and (message.key or b"").decode(errors="replace") not in (
                self.sites
            ):
                continue
            try:
                decision = DispatchDecision.model_validate_json(message.value or b"")
            except ValidationError as exc:
                self.invalid_skipped += 1
                log.warning(
                    "skipping invalid decision", extra={"offset": message.offset, "error": str(exc)}
                )
                continue
            if self._is_duplicate(decision.decision_id):
                self.duplicates_dropped += 1
                continue
            yield decision

    def _is_duplicate(self, decision_id: str) -> bool:
        if decision_id in self._seen:
            return True
        self._seen[decision_id] = None
        if len(self._seen) > self.remember_ids:
            self._seen.popitem(last=False)
        return False


def _client(
    bootstrap: str | KafkaConnection, options: Mapping[str, Any] | None, **kwargs: Any
) -> dict[str, Any]:
    """aiokafka client arguments from a bootstrap string (plus options) or a resolved
    :class:`KafkaConnection`."""
    if isinstance(bootstrap, KafkaConnection):
        return bootstrap.client(**(options or {}), **kwargs)
    return {"bootstrap_servers": bootstrap, **(options or {}), **kwargs}
