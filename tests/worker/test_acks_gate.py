"""An ack waits for the broker (issue #11, fault 2): a round's inputs are acked only once the
broker watch admits, a loss told meanwhile turns them into forgotten events, and when the
broker does not come back in time nothing is acked and the inputs wait for a later round.

The gate is a real :class:`~streams.kafka.watch.BrokerWatch` that is not run: its ``ready``
event is what its probe would set and clear (no broker is needed for the ledger's side)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from optimizer import Horizon
from schemas import DispatchDecision
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.state import FleetState
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import BrokerWatch, LogLoss
from streams.worker.acks import AckLedger
from streams.worker.health import Faults
from streams.worker.replanner import ACKS, Replanner
from tests.factories import hashprice, mining_site, price
from tests.worker.standins import Event, Message, Stream

H4 = Horizon((15, 15, 15, 15))
WAIT_S = 20.0


def gate() -> BrokerWatch:
    """A broker watch that is not run: the broker counts as away until ``ready`` is set."""

    async def unreachable() -> bool:
        return False

    return BrokerWatch(KafkaConnection("127.0.0.1:1"), unreachable, {"prices": 4}, up=False)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {WAIT_S}s: {what}")
        await asyncio.sleep(0.005)  # polling in-process state under a deadline


async def test_an_ack_waits_for_the_broker_and_a_loss_told_meanwhile_forgets_it() -> None:
    watch = gate()
    ledger = AckLedger(gate=watch)
    stream = Stream()
    old, kept = Event(Message("prices", 4)), Event(Message("demand", 2))
    ledger.park(stream, old)
    ledger.park(stream, kept)
    release = asyncio.create_task(ledger.release(ledger.take()))
    await asyncio.sleep(0.05)  # asserting an absence: an ack would come at once
    assert not release.done() and stream.acked == []  # nothing acked while the broker is away
    assert ledger.outstanding() == 2

    # The broker is back without the prices' log: the watch tells the loss, then admits.
    await ledger.log_lost(LogLoss(frozenset({"prices"}), 1))
    watch.ready.set()
    async with asyncio.timeout(WAIT_S):
        assert await release
    assert stream.acked == [kept]  # the demand's log still exists; the old price's does not
    assert ledger.forgotten == 1 and ledger.acked == 1 and ledger.outstanding() == 0


async def test_acks_the_broker_does_not_come_back_for_are_given_back() -> None:
    ledger = AckLedger(gate=gate(), admit_timeout_s=0.05)
    stream = Stream()
    first, second = Event(Message("prices", 0)), Event(Message("prices", 1))
    ledger.park(stream, first)
    taken = ledger.take()
    ledger.park(stream, second)  # parked while the round ran

    async with asyncio.timeout(WAIT_S):
        assert not await ledger.release(taken)
    assert stream.acked == [] and ledger.acked == 0 and ledger.deferred == 1
    # Back in the ledger, ahead of what came since: a later round acks both.
    assert [p.event for p in ledger.pending] == [first, second]
    assert ledger.in_flight == 0 and ledger.outstanding() == 2


async def test_events_of_a_lost_log_alone_do_not_wait_for_the_broker() -> None:
    discarded: list[Any] = []
    ledger = AckLedger(gate=gate(), discard=lambda _stream, event: discarded.append(event))
    old = Event(Message("prices", 3))
    ledger.park(Stream(), old)
    taken = ledger.take()
    await ledger.log_lost(LogLoss(frozenset({"prices"}), 1))
    async with asyncio.timeout(1.0):  # no ack to send: the broker is not waited for
        assert await ledger.release(taken)
    assert discarded == [old] and ledger.forgotten == 1 and ledger.outstanding() == 0


@contextlib.asynccontextmanager
async def running(planner: Replanner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(planner.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_replanner_keeps_deciding_while_acks_wait_and_acks_once_the_broker_is_back() -> (
    None
):
    """A round with decisions delivered while the broker is away (delivered before it went):
    its inputs are not acked, /health says so, the re-planner goes on deciding new inputs, and
    once the broker is back the next round acks them all, with no new input needed."""
    watch = gate()
    ledger = AckLedger(gate=watch, admit_timeout_s=0.05)
    stream = Stream()
    faults = Faults()
    state = FleetState(Fleet(sites=(mining_site(),)))
    decisions: list[DispatchDecision] = []

    async def publish(decision: DispatchDecision) -> None:
        decisions.append(decision)

    planner = Replanner(
        state,
        publish,
        Decider(H4),
        debounce_s=0.0,
        ledger=ledger,
        retry_initial_s=0.01,
        faults=faults,
    )
    async with running(planner) as task:
        ledger.park(stream, "price-0")
        for event in (hashprice(), price(0, 20.0)):
            applied = state.apply(event)
            planner.mark_dirty(applied.sites, applied.trigger)
        await until(lambda: len(decisions) == 1, "the first decision")
        await until(lambda: ledger.deferred >= 2, "the acks given back, and tried again")
        assert stream.acked == [] and ledger.outstanding() == 1
        assert ACKS in faults.failing  # /health: decided, not acked, and why
        assert "not sent" in faults.failing[ACKS].error, faults.failing[ACKS].error
        assert "decision rounds" not in faults.failing  # the round itself did not fail

        ledger.park(stream, "price-1")
        applied = state.apply(price(1, 21.0))
        planner.mark_dirty(applied.sites, applied.trigger)
        await until(lambda: len(decisions) == 2, "a new input decided meanwhile")

        watch.ready.set()  # the broker is back
        await until(lambda: ledger.outstanding() == 0, "the inputs acked")
        assert stream.acked == ["price-0", "price-1"] and ledger.acked == 2
        assert ACKS not in faults.failing
        assert not task.done()
