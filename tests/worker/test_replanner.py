"""The re-planner without Kafka: debounced batches, one joint solve, decisions only for sites
whose inputs changed, and the fleet carbon budget carried into decisions."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from optimizer import Horizon
from schemas import CarbonEvent, DispatchDecision
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.state import FleetState
from streams.logs import fields
from streams.worker.acks import AckLedger
from streams.worker.health import Faults
from streams.worker.replanner import Replanner
from tests.factories import T0, Q, hashprice, mining_site, price, telemetry

H4 = Horizon((15, 15, 15, 15))


class Collector:
    def __init__(self) -> None:
        self.decisions: list[DispatchDecision] = []
        self.arrived = asyncio.Event()

    async def publish(self, decision: DispatchDecision) -> None:
        self.decisions.append(decision)
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.decisions) < count:
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def running(planner: Replanner) -> AsyncIterator[None]:
    task = asyncio.create_task(planner.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def feed(state: FleetState, planner: Replanner, *events: object) -> None:
    for event in events:
        applied = state.apply(event)  # type: ignore[arg-type]
        planner.mark_dirty(applied.sites, applied.trigger)


async def test_bursts_coalesce_into_one_decision_on_the_latest_snapshot() -> None:
    state = FleetState(Fleet(sites=(mining_site(),)))
    out = Collector()
    planner = Replanner(state, out.publish, Decider(H4), debounce_s=0.05)
    async with running(planner):
        feed(state, planner, hashprice(), price(0, 20.0), price(1, 30.0), price(2, 500.0))
        await out.wait_for(1)
        # Same inputs again: nothing new to decide.
        planner.mark_dirty(frozenset({"site-a"}), "timer")
        feed(state, planner, price(3, 40.0))
        await out.wait_for(2)
    first, second = out.decisions
    assert first.interval_start == T0 + timedelta(minutes=30)
    assert first.mining_mw == 0.0  # the latest price (500) is above break-even
    assert second.interval_start == T0 + timedelta(minutes=45)
    assert planner.decisions_published == 2


async def test_a_price_cuts_the_telemetry_window_short() -> None:
    """Telemetry waits its own (here: hour-long) window; a price starts the round at once, and
    that round answers the waiting telemetry too."""
    state = FleetState(Fleet(sites=(mining_site(),)))
    out = Collector()
    planner = Replanner(
        state, out.publish, Decider(H4), debounce_s=0.0, telemetry_debounce_s=3600.0
    )
    async with running(planner):
        feed(state, planner, hashprice(), price(0, 20.0))
        await out.wait_for(1)
        out.arrived.clear()
        feed(state, planner, telemetry("site-a", 0, mining_available_mw=7.0))
        # Asserting an absence: a round on the telemetry alone would come within milliseconds.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(out.arrived.wait(), 0.3)
        feed(state, planner, price(1, 21.0))
        await out.wait_for(2)  # bounded at 20 s, far inside the telemetry's hour
    first, second = out.decisions
    assert first.mining_mw == pytest.approx(22.0)  # the envelope: no telemetry yet
    assert second.interval_start == T0 + Q
    assert second.mining_mw == pytest.approx(7.0)  # the telemetry rode along with the price


async def test_a_new_fleet_model_is_taken_out_of_later_collections() -> None:
    """Full garbage collections walking the compiled models stalled in-flight prices (~60 ms):
    after the round that compiles a model, the heap is settled (collected, then frozen)."""
    state = FleetState(Fleet(sites=(mining_site(),)))
    out = Collector()
    decider = Decider(H4)
    planner = Replanner(state, out.publish, decider, debounce_s=0.0)
    gc.unfreeze()
    try:
        async with running(planner):
            feed(state, planner, hashprice(), price(0, 20.0))
            await out.wait_for(1)
            feed(state, planner, price(1, 21.0))  # the next round starts after the settling
            await out.wait_for(2)
        assert decider.compiled_models == 1
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_fleet_carbon_budget_reaches_the_decision() -> None:
    state = FleetState(Fleet(sites=(mining_site(), mining_site(site_id="site-b"))))
    out = Collector()
    # 30 MW x 1 h x 0.5 t/MWh = 15 t per site per hour; allow 24 t/day = 1 t over this hour.
    decider = Decider(H4, carbon_budget_t_per_day=24.0)
    planner = Replanner(state, out.publish, decider, debounce_s=0.0)

    carbon = CarbonEvent(
        interval_start=T0,
        interval_end=T0 + timedelta(hours=2),
        region="ERCOT",
        average_intensity_g_per_kwh=500.0,
    )
    async with running(planner):
        feed(state, planner, hashprice(), carbon, price(0, 20.0))
        await out.wait_for(2)
    assert decider.carbon_budget_t == pytest.approx(1.0)
    assert {d.site_id for d in out.decisions} == {"site-a", "site-b"}
    for decision in out.decisions:
        assert decision.shadow_price_carbon_usd_per_t > 0
        # 1 t cannot cover even the GPU floors (5 MW x 2 sites x 0.5 t/MWh = 5 t): GPUs drop to
        # the floor, which outranks the budget, and the rest is budget excess.
        assert decision.gpu_mw == pytest.approx(5.0)
        assert decision.mining_mw == 0.0


async def test_a_round_that_cannot_be_delivered_is_retried_not_dropped() -> None:
    state = FleetState(Fleet(sites=(mining_site(),)))
    out = Collector()
    attempts = 0

    async def flaky_publish(decision: DispatchDecision) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:  # the broker is away for the first two attempts
            raise ConnectionError("broker unreachable")
        await out.publish(decision)

    ledger = AckLedger()
    stream = AckRecorder()
    planner = Replanner(
        state,
        flaky_publish,
        Decider(H4),
        debounce_s=0.0,
        ledger=ledger,
        retry_initial_s=0.01,
    )
    async with running(planner):
        ledger.park(stream, "price-0")
        feed(state, planner, hashprice(), price(0, 20.0))
        await out.wait_for(1)
        await stream.wait_for(1)
    assert planner.rounds_failed == 2
    assert attempts == 3
    assert out.decisions[0].interval_start == T0
    assert stream.acked == ["price-0"]  # acked once, after the delivered retry


async def test_failing_rounds_are_reported_until_one_succeeds() -> None:
    state = FleetState(Fleet(sites=(mining_site(),)))
    out = Collector()
    faults = Faults()
    retried = asyncio.Event()  # a second attempt: the first failure has been handled
    healed = asyncio.Event()
    attempts = 0

    async def publish(decision: DispatchDecision) -> None:
        nonlocal attempts
        attempts += 1
        if not healed.is_set():
            if attempts > 1:
                retried.set()
            raise ConnectionError("broker unreachable")
        await out.publish(decision)

    ledger, stream = AckLedger(), AckRecorder()
    planner = Replanner(
        state,
        publish,
        Decider(H4),
        debounce_s=0.0,
        retry_initial_s=0.01,
        faults=faults,
        ledger=ledger,
    )
    async with running(planner):
        ledger.park(stream, "price-0")
        feed(state, planner, hashprice(), price(0, 20.0))
        async with asyncio.timeout(20):
            await retried.wait()
        assert faults.failing["decision rounds"].error == "ConnectionError: broker unreachable"
        assert planner.unanswered_since is not None  # the price is not answered yet
        healed.set()
        await stream.wait_for(1)  # acked: the round is over
    assert out.decisions
    assert "decision rounds" not in faults.failing
    assert planner.unanswered_since is None


async def test_a_site_that_cannot_be_decided_says_what_it_waits_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = FleetState(Fleet(sites=(mining_site(),)))
    out = Collector()
    ledger, stream = AckLedger(), AckRecorder()
    planner = Replanner(state, out.publish, Decider(H4), debounce_s=0.0, ledger=ledger)
    with caplog.at_level(logging.INFO, logger="streams.worker.replanner"):
        planner.own(frozenset({"site-a"}))  # the assignment: says what it waits for
        feed(state, planner, price(0, 20.0))
        assert planner.note_waiting() == {"no hashprice yet": ["site-a"]}
        assert planner.note_waiting() == {"no hashprice yet": ["site-a"]}  # said once
        assert planner.unanswered_since is not None  # an input came, no decision yet
        async with running(planner):
            ledger.park(stream, "hashprice")
            feed(state, planner, hashprice())
            await stream.wait_for(1)  # acked: the round is over
        assert planner.note_waiting() == {}
    said = [
        fields(r).get("waiting_for") for r in caplog.records if r.name == "streams.worker.replanner"
    ]
    assert said == [
        {"no real-time price for node HB_SOUTH yet": 1},
        {"no hashprice yet": 1},
        None,  # "every site has the inputs it needs to be decided"
    ]
    assert planner.unanswered_since is None


class AckRecorder:
    """Stands in for a faust stream: records what the ledger acks."""

    def __init__(self) -> None:
        self.acked: list[object] = []
        self.changed = asyncio.Event()

    async def ack(self, event: object) -> None:
        self.acked.append(event)
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.acked) < count:
                self.changed.clear()
                await self.changed.wait()
