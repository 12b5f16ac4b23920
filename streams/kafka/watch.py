"""Broker outages: notice them, say so once in the log, and put the worker's topics back.

aiokafka reconnects on its own, but while the broker is away it logs every failed attempt (tens of
lines a second) and says nothing when it recovers. :class:`BrokerWatch` probes the broker on its
own schedule and logs one line when it goes away and one when it returns, with the outage length;
``streams/logs.py``'s :class:`~streams.logs.RepeatFilter` folds the client's repeated error lines.

A broker that kept nothing across its restart (the embedded broker, or Kafka without a volume)
returns without the worker's topics. Producers would then auto-create them with the broker's
defaults, so on every reconnect the watch creates whatever is missing with the declared partition
count first, and logs which topics it had to recreate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streams.kafka.broker import kafka_api_versions_ok
from streams.kafka.connection import KafkaConnection

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
Probe = Callable[[], Awaitable[bool]]


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
    """Tracks whether the broker answers; on each return, restores missing topics."""

    connection: KafkaConnection
    probe: Probe
    partitions_by_topic: Mapping[str, int]
    interval_s: float = 0.25
    on_change: Callable[[bool], None] | None = None
    up: bool = True
    outages: int = 0
    topics_recreated: int = 0
    _down_since: float | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Probe forever (cancel to stop)."""
        while True:
            await self.check()
            await asyncio.sleep(self.interval_s)  # the probe cadence, not a synchronisation

    async def check(self) -> None:
        """One probe, and the transition it implies."""
        reachable = await self.probe()
        if reachable == self.up:
            return
        if not reachable:
            self._down_since = time.monotonic()
            self.outages += 1
            log.warning(
                "broker unreachable: inputs stay in Kafka, decisions wait; "
                "reconnecting (client errors are summarised below)",
                extra={"bootstrap": self.connection.bootstrap},
            )
        else:
            outage_s = time.monotonic() - (self._down_since or time.monotonic())
            recreated = await self._restore_topics()
            log.warning(
                "broker reachable again"
                + (" (it kept nothing across its restart: topics recreated)" if recreated else ""),
                extra={
                    "bootstrap": self.connection.bootstrap,
                    "after_s": round(outage_s, 1),
                    "topics_recreated": recreated,
                },
            )
        self.up = reachable
        if self.on_change is not None:
            self.on_change(reachable)
        self._changed.set()

    async def _restore_topics(self) -> list[str]:
        try:
            recreated = await create_missing_topics(self.connection, self.partitions_by_topic)
        except KafkaError as exc:
            log.warning("could not check topics after reconnect", extra={"error": str(exc)})
            return []
        self.topics_recreated += len(recreated)
        return recreated

    async def wait_for(self, up: bool, timeout_s: float) -> None:
        """Wait until the watch has seen the broker ``up`` (or not), else TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while self.up != up:
                self._changed.clear()
                await self._changed.wait()
