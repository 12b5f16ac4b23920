"""The ingest agents: decode -> validate -> fold into state -> mark sites dirty, with manual
acks. Site-keyed inputs are decided where they are read; fleet-level inputs (prices, carbon,
signals, hashprice) are routed to each site's partition first
(``streams/worker/routing.py``), so each worker decides only the sites of its partitions.
Anything unusable goes to the dead-letter topic with its bytes and reason, and the agent carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import faust

from schemas import SITE_KEYED_INPUTS, Trigger
from streams.engine.codec import Rejection, dead_letter
from streams.engine.ingest import ingest
from streams.engine.state import FleetState
from streams.settings import Settings
from streams.worker.acks import AckLedger
from streams.worker.metrics import Metrics
from streams.worker.replanner import Replanner
from streams.worker.routing import RoutingError, by_partition, frame, unframe

log = logging.getLogger(__name__)

Agent = Callable[[faust.StreamT[Any]], Coroutine[Any, Any, None]]


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
    _forwarding: set[asyncio.Task[None]] = field(default_factory=set)

    def source(self, name: str) -> Agent:
        """The agent of contract input topic ``name``."""
        topic_name = self.settings.topic(name)

        async def agent(stream: faust.StreamT[Any]) -> None:
            # Manual acks: an input is acked once what it caused is delivered to Kafka.
            manual = cast("faust.Stream[Any]", stream).noack()
            async for event in manual.events():
                outcome = ingest(self.state, name, event.value, self.settings.max_message_bytes)
                if isinstance(outcome, Rejection):
                    self.metrics.count_in(name)
                    await self.reject(topic_name, event.message, outcome)
                    await manual.ack(event)
                    continue
                self.metrics.count_in(name, applied=1)
                if name in SITE_KEYED_INPUTS and outcome.sites:
                    self.ledger.park(manual, event)
                    self.planner.mark_dirty(outcome.sites, outcome.trigger)
                elif outcome.sites:
                    await self._fan_out(name, event, manual, outcome.sites, outcome.trigger)
                else:
                    await manual.ack(event)  # changes nothing any site of this fleet decides

        return agent

    async def routed_inputs(self, stream: faust.StreamT[Any]) -> None:
        """Routed inputs for the sites of this worker's partitions."""
        manual = cast("faust.Stream[Any]", stream).noack()
        async for event in manual.events():
            try:
                name, sites, raw = unframe(event.value)
            except RoutingError as exc:
                topic = self.routed.get_topic_name()
                await self.reject(topic, event.message, Rejection("schema_violation", str(exc)))
                await manual.ack(event)
                continue
            outcome = ingest(self.state, name, raw, self.settings.max_message_bytes)
            if isinstance(outcome, Rejection) or not (mine := sites & outcome.sites):
                await manual.ack(event)  # validated when it was routed; nothing to decide here
                continue
            self.ledger.park(manual, event)
            self.planner.mark_dirty(mine, outcome.trigger)

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
        partitions = self.settings.topic_partitions
        deliveries = [
            await self.routed.send(
                key=group[0].encode(), value=frame(name, group, event.value), partition=partition
            )
            for partition, group in by_partition(sites, partitions).items()
        ]
        task = asyncio.create_task(_ack_when_delivered(deliveries, manual, event))
        self._forwarding.add(task)
        task.add_done_callback(self._forwarding.discard)

    async def reject(self, topic: str, message: Any, rejection: Rejection) -> None:
        """Dead-letter ``message`` (a faust or aiokafka record: partition, offset, key, value)
        with its reason; delivered before its offset may commit."""
        self.metrics.dead_lettered.labels(rejection.reason).inc()
        log.warning(
            "dead-lettered",
            extra={
                "topic": topic,
                "offset": message.offset,
                "reason": rejection.reason,
                "error": rejection.error,
            },
        )
        record = dead_letter(
            topic=topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            rejection=rejection,
        )
        delivery = await self.dead_letters.send(key=message.key, value=record)
        await delivery


async def _ack_when_delivered(
    deliveries: list[Any], manual: faust.StreamT[Any], event: Any
) -> None:
    await asyncio.gather(*deliveries)
    await manual.ack(event)
