"""Stand-ins for what the ack ledger holds: a faust event (only its message's topic and offset
are read) and a faust stream (records what is acked). Not Kafka: the tests that use them check
the ledger's bookkeeping; the end-to-end tests run the real consumer on the embedded broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Message:
    topic: str
    offset: int


@dataclass(frozen=True)
class Event:
    """Stands in for a faust event: the ledger reads its message's topic."""

    message: Message


class Stream:
    """Stands in for a faust stream: records what the ledger acks."""

    def __init__(self) -> None:
        self.acked: list[Any] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event)
