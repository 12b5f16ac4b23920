"""At-least-once bookkeeping: an input's offset is released for commit only after every
decision it can have caused was delivered to Kafka.

The ingest agents read with manual acks and park each applied event here; a planner round
takes the events parked before it starts and acks them once its decisions are delivered. A
crash before that leaves the offsets uncommitted, so the inputs are read again after a restart
(duplicate decisions carry the same deterministic id and are dropped by consumers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AckLedger:
    """Applied events waiting for their decisions to be delivered."""

    pending: list[tuple[Any, Any]] = field(default_factory=list)  # (faust stream, event)
    acked: int = 0

    def park(self, stream: Any, event: Any) -> None:
        self.pending.append((stream, event))

    def take(self) -> list[tuple[Any, Any]]:
        """The events a round answers: everything parked so far."""
        taken, self.pending = self.pending, []
        return taken

    def restore(self, taken: list[tuple[Any, Any]]) -> None:
        """Give back events whose round failed, ahead of those parked since."""
        self.pending[:0] = taken

    async def release(self, taken: list[tuple[Any, Any]]) -> None:
        """Ack events whose decisions were delivered (their offsets may now be committed)."""
        for stream, event in taken:
            await stream.ack(event)
        self.acked += len(taken)
