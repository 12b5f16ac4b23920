"""The faust agents' rejects: queued so the agent reads on, delivered together by one sender,
each input acked only once its dead letter is delivered, and the queue bounded (past
``MAX_BACKGROUND_DELIVERIES`` the agent waits). Stand-ins for the broker side: the gate admits
only when the test opens it, and every send is acknowledged at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

import streams.worker.agents
from streams.engine.codec import Rejection
from streams.settings import load_settings
from streams.worker.acks import AckLedger
from streams.worker.agents import Agents
from streams.worker.metrics import Metrics
from tests.e2e.harness import until
from tests.worker.standins import Stream

BOUND = 5


class ClosedGate:
    """Admits once opened; counts the confirmations (one topic listing each)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.confirms = 0

    async def admit(self, timeout_s: float) -> int:
        await self.open.wait()
        return 0

    async def confirm(self, topic: str, epoch: int) -> None:
        self.confirms += 1


class DeadLetterTopic:
    """Acknowledges every send at once; counts them."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, key: bytes | None, value: Any) -> asyncio.Future[None]:
        self.sent += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def get_topic_name(self) -> str:
        return "deadletters"


def event(offset: int) -> Any:
    message = SimpleNamespace(topic="t", partition=0, offset=offset, key=b"site-a", value=b"{")
    return SimpleNamespace(message=message)


async def yield_often() -> None:
    """Let every ready task run (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_rejects_are_queued_bounded_and_acked_once_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streams.worker.agents, "MAX_BACKGROUND_DELIVERIES", BOUND)
    gate, topic, stream = ClosedGate(), DeadLetterTopic(), Stream()
    agents = Agents(
        settings=load_settings(),
        state=cast(Any, None),
        planner=cast(Any, None),
        ledger=AckLedger(),
        metrics=Metrics(),
        dead_letters=cast(Any, topic),
        routed=cast(Any, None),
        gate=gate,
    )
    why = Rejection("not_json", "not JSON")
    events = [event(k) for k in range(BOUND + 3)]
    for e in events[:BOUND]:  # the agent reads on: each returns at once
        await agents._reject_in_background("t", cast(Any, stream), e, why)
    await yield_often()
    assert agents.in_flight() == BOUND  # the stop's drain waits for these
    assert stream.acked == []  # nothing acked before its dead letter is delivered

    blocked = asyncio.create_task(
        agents._reject_in_background("t", cast(Any, stream), events[BOUND], why)
    )
    await yield_often()
    assert not blocked.done()  # the queue is full: the agent waits

    gate.open.set()
    await asyncio.wait_for(blocked, 10)
    for e in events[BOUND + 1 :]:
        await agents._reject_in_background("t", cast(Any, stream), e, why)
    await until(lambda: len(stream.acked) == len(events), "every input acked", 10)
    assert stream.acked == events
    assert topic.sent == len(events) and agents.in_flight() == 0
    assert gate.confirms < len(events)  # the first BOUND went out together: one listing
    assert agents.metrics.dead_letters_by_reason() == {"not_json": len(events)}
    await agents.close()
