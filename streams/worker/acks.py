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

An ack waits for the broker too (:meth:`AckLedger.release` asks the same gate): an offset commit
sent while the broker is away is retried by the client until it is back, into whatever log it
finds then, and a broker that kept nothing would take an offset of its lost log into the new one.
Once the gate admits, the watch has told the ledger of any loss, so what was read from a lost log
is known and let go; if the broker does not come back in time, nothing is acked: the events go
back to the ledger for a later round (unacked, they are read again after a restart).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.kafka.watch import DeliveryUncertainError, LogLoss

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


@dataclass(frozen=True, slots=True)
class Parked:
    """An applied event (a faust event, or the telemetry lane's offsets) and the log generation
    it was read in."""

    stream: Any  # has ``async ack(event)``: a faust stream, or the telemetry lane
    event: Any
    generation: int


def _topics(event: Any) -> Collection[str]:
    """The topics an event's offsets belong to: a faust event's message topic, or the topics of
    an offsets map (the telemetry lane's); none known for anything else."""
    if isinstance(event, Mapping):
        return {getattr(tp, "topic", "") for tp in event}
    message = getattr(event, "message", None)
    topic = getattr(message, "topic", None)
    return (topic,) if isinstance(topic, str) else ()


@dataclass
class AckLedger:
    """Applied events waiting for their decisions to be delivered."""

    pending: list[Parked] = field(default_factory=list)
    acked: int = 0
    #: Events released but not acked: read from a log the broker lost since.
    forgotten: int = 0
    #: Events taken by a round that has not released or restored them yet.
    in_flight: int = 0
    #: The current log generation (moved by :meth:`log_lost`).
    generation: int = 0
    #: Called with each forgotten ``(stream, event)`` instead of acking it.
    discard: Callable[[Any, Any], None] | None = None
    #: Waited for before acking (the broker watch); None: ack at once (tests without a broker).
    gate: Gate | None = None
    #: Longest :meth:`release` waits for the gate.
    admit_timeout_s: float = ADMIT_TIMEOUT_S
    #: Releases that waited for the broker in vain: their events were given back unacked.
    deferred: int = 0
    #: Why the last of them waited in vain (the gate's words, e.g. which topics are missing).
    why_deferred: str = ""
    _lost_in: dict[str, int] = field(default_factory=dict)  # topic -> generation of its loss

    def park(self, stream: Any, event: Any, generation: int | None = None) -> None:
        """Hold ``event`` until its decisions are delivered; ``generation``: the log generation
        it was read in (default: the current one)."""
        read_in = self.generation if generation is None else generation
        self.pending.append(Parked(stream, event, read_in))

    def take(self) -> list[Parked]:
        """The events a round answers: everything parked so far."""
        taken, self.pending = self.pending, []
        self.in_flight += len(taken)
        return taken

    def restore(self, taken: list[Parked]) -> None:
        """Give back events whose round failed (or whose acks could not go out), ahead of those
        parked since."""
        self.in_flight -= len(taken)
        self.pending[:0] = taken

    async def release(self, taken: list[Parked]) -> bool:
        """Ack events whose decisions were delivered (their offsets may now be committed),
        except those read from a log lost since: their offsets mean nothing in the new one.

        The acks wait for the gate first (up to ``admit_timeout_s``), and the loss check is made
        after that wait: a loss found meanwhile was told before the gate admits. False when the
        gate did not admit in time: nothing was acked and ``taken`` is back in the ledger."""
        if self.gate is not None and not all(self.read_from_lost_log(p) for p in taken):
            try:
                await self.gate.admit(self.admit_timeout_s)
            except DeliveryUncertainError as exc:
                self.deferred += 1
                self.why_deferred = str(exc)
                self.restore(taken)
                return False
        self.in_flight -= len(taken)
        for parked in taken:
            if self.read_from_lost_log(parked):
                self.forgotten += 1
                if self.discard is not None:
                    self.discard(parked.stream, parked.event)
                continue
            await parked.stream.ack(parked.event)
            self.acked += 1
        return True

    async def log_lost(self, loss: LogLoss) -> None:
        """The broker lost these topics' log: what was read there before is never acked."""
        self.generation = max(self.generation, loss.generation)
        for topic in loss.topics:
            self._lost_in[topic] = loss.generation

    def read_from_lost_log(self, parked: Parked) -> bool:
        return any(self._lost_in.get(t, -1) > parked.generation for t in _topics(parked.event))

    def outstanding(self) -> int:
        """Events not acked yet: parked, or in a round under way."""
        return len(self.pending) + self.in_flight
