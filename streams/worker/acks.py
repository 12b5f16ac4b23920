"""At-least-once bookkeeping: an input's offset is released for commit only after every
decision it can have caused was delivered to Kafka.

The ingest agents read with manual acks and park each applied event here; a planner round
takes the events parked before it starts and acks them once its decisions are delivered. A
crash before that leaves the offsets uncommitted, so the inputs are read again after a restart
(duplicate decisions carry the same deterministic id and are dropped by consumers).

Delivered means more than acknowledged: :func:`deliver` sends only while the broker watch says
the broker and every topic are there, and counts the send only when a topic listing after the
acknowledgement still shows its topic with no outage in between (a broker that lost the topic may
acknowledge records no one can read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

#: How long a send waits for the broker and its topics before it fails (and is retried).
ADMIT_TIMEOUT_S = 30.0


class Gate(Protocol):
    """Says when a send may go out and whether its acknowledgement can be trusted
    (:class:`~streams.kafka.watch.BrokerWatch`)."""

    async def admit(self, timeout_s: float) -> int: ...

    async def confirm(self, topic: str, epoch: int) -> None: ...


async def deliver(gate: Gate, topic: Any, *, key: bytes | None, value: Any) -> None:
    """Send ``value`` to faust topic ``topic`` and return once it is delivered: acknowledged,
    and confirmed on a topic that exists. Raises (the caller retries) otherwise."""
    epoch = await gate.admit(ADMIT_TIMEOUT_S)
    sent = await topic.send(key=key, value=value)
    await sent
    await gate.confirm(topic.get_topic_name(), epoch)


@dataclass
class AckLedger:
    """Applied events waiting for their decisions to be delivered."""

    pending: list[tuple[Any, Any]] = field(default_factory=list)  # (faust stream, event)
    acked: int = 0
    #: Events taken by a round that has not released or restored them yet.
    in_flight: int = 0

    def park(self, stream: Any, event: Any) -> None:
        self.pending.append((stream, event))

    def take(self) -> list[tuple[Any, Any]]:
        """The events a round answers: everything parked so far."""
        taken, self.pending = self.pending, []
        self.in_flight += len(taken)
        return taken

    def restore(self, taken: list[tuple[Any, Any]]) -> None:
        """Give back events whose round failed, ahead of those parked since."""
        self.in_flight -= len(taken)
        self.pending[:0] = taken

    async def release(self, taken: list[tuple[Any, Any]]) -> None:
        """Ack events whose decisions were delivered (their offsets may now be committed)."""
        self.in_flight -= len(taken)
        for stream, event in taken:
            await stream.ack(event)
        self.acked += len(taken)

    def outstanding(self) -> int:
        """Events not acked yet: parked, or in a round under way."""
        return len(self.pending) + self.in_flight
