"""The site agent on the embedded broker, driving simulated miners (the cgminer API on loopback,
tests/agent/simulated_miner.py) through the real asic-rs client (pyasic-rs).

Each test starts the agent in this event loop, publishes decisions the way the worker does, and
waits (bounded) on what the simulated miners were told and what the agent published on
site.telemetry.v1, read back with a plain aiokafka consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from schemas import TelemetryEvent
from streams.agent.config import AgentConfig
from streams.agent.controller import SiteAgent
from streams.agent.gpus import ReplicaHook
from streams.agent.miners import AsicRsMiner, asic_rs_available
from streams.kafka.broker import EmbeddedBroker
from tests.agent.decisions import decision, publish_decisions
from tests.agent.simulated_miner import SimulatedMiner
from tests.agent.waiting import WAIT_S, until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(asic_rs_available() is not None, reason=str(asic_rs_available())),
]

SITE = "site-a"


def agent_config(
    miners: list[tuple[SimulatedMiner, dict[str, Any]]], **sections: Any
) -> AgentConfig:
    """A fast agent: sub-second polls, short miner timeouts, 2 kW ramp steps 0.2 s apart."""
    data: dict[str, Any] = {
        "site_id": SITE,
        "miners": [
            {
                "host": sim.host,
                "name": f"m{i}",
                "max_w": sim.max_w,
                "efficiency_j_per_th": sim.efficiency_j_per_th,
                **extra,
            }
            for i, (sim, extra) in enumerate(miners)
        ],
        "miner_io": {"timeout_s": 1.0, "discovery_timeout_s": 5.0},
        "ramp": {"max_step_mw": 0.002, "batch_delay_s": 0.2},
        "telemetry": {"interval_s": 0.3},
        "watchdog": {"decision_timeout_s": 60.0},
        **sections,
    }
    return AgentConfig.parse(data, "test agent file")


@contextlib.asynccontextmanager
async def simulated(*specs: dict[str, Any]) -> AsyncIterator[list[SimulatedMiner]]:
    """Simulated miners listening on their own loopback addresses, stopped afterwards."""
    sims = [SimulatedMiner(**spec) for spec in specs]
    try:
        for sim in sims:
            await sim.start()
        yield sims
    finally:
        for sim in sims:
            await sim.stop()


@contextlib.asynccontextmanager
async def running(agent: SiteAgent) -> AsyncIterator[SiteAgent]:
    """The agent running in this loop; stopped (and awaited) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    ended = asyncio.Event()
    task.add_done_callback(lambda _: ended.set())
    try:
        await until(lambda: agent.telemetry_sent >= 1 or task.done(), agent.changed, ended)
        if task.done():
            task.result()  # start-up failed: raise its error here
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


def build(config: AgentConfig, bootstrap: str, prefix: str, **kwargs: Any) -> SiteAgent:
    drivers = [
        AsicRsMiner(m, timeout_s=config.miner_io.timeout_s, discovery_timeout_s=5.0)
        for m in config.miners
    ]
    return SiteAgent(config, bootstrap, miners=drivers, topic_prefix=prefix, **kwargs)


async def telemetry_until(
    bootstrap: str, prefix: str, predicate: Callable[[TelemetryEvent], bool]
) -> TelemetryEvent:
    """The first site.telemetry.v1 event (from the start of the topic) that matches."""
    consumer = AIOKafkaConsumer(
        prefix + "site.telemetry.v1",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(WAIT_S):
            async for message in consumer:
                event = TelemetryEvent.model_validate_json(message.value or b"")
                assert message.key == SITE.encode()
                if predicate(event):
                    return event
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


async def test_decision_is_spread_by_efficiency_in_staggered_batches_and_reported(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    """Four 3 kW miners at full power (12 kW) are told 7.5 kW: the two most efficient stay at
    full power, the third gets a 1.5 kW target, the least efficient pauses, in batches of at
    most 2 kW; the GPU MW goes to the replica webhook; telemetry reports the result."""
    received: list[dict[str, Any]] = []
    hook_seen = asyncio.Event()

    async def scale(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer hook-secret"
        received.append(await request.json())
        hook_seen.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/scale", scale)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with simulated(
            {"efficiency_j_per_th": 25.0},
            {"efficiency_j_per_th": 18.0},
            {"efficiency_j_per_th": 22.0},
            {"efficiency_j_per_th": 20.0},
        ) as sims:
            config = agent_config(
                [(sim, {"min_w": 1500.0}) for sim in sims],
                gpu={"hook": {"url": f"http://127.0.0.1:{port}/scale", "token": "hook-secret"}},
            )
            assert config.gpu.hook is not None
            agent = build(config, broker.bootstrap, topic_prefix, hook=ReplicaHook(config.gpu.hook))
            async with running(agent):
                assert agent.commanded == {f"m{i}": 3000.0 for i in range(4)}
                await publish_decisions(
                    broker.bootstrap, topic_prefix, decision(SITE, mining_mw=0.0075, gpu_mw=4.0)
                )
                await until(
                    lambda: (
                        [s.watts for s in sims] == [0.0, 3000.0, 1500.0, 3000.0]
                        and len(agent.batch_totals_w) == 3
                    ),
                    agent.changed,
                    *(s.changed for s in sims),
                )
                await asyncio.wait_for(hook_seen.wait(), WAIT_S)
                seen = await telemetry_until(
                    broker.bootstrap,
                    topic_prefix,
                    lambda e: abs(e.mining_mw - 0.0075) < 1e-9 and e.gpu_mw == 4.0,
                )
            # 12 kW -> 7.5 kW in three batches of 1.5 kW (each within the 2 kW step).
            assert agent.batch_totals_w == [10_500.0, 9_000.0, 7_500.0]
            assert sims[0].commands("ascset")[-1].startswith("0,softoff")  # type: ignore[union-attr]
            assert sims[2].limit_w == 1500.0
            assert seen.miners_online == 3
            assert seen.mining_available_mw == pytest.approx(0.012)
            assert seen.hashrate_th_s == pytest.approx(3000 / 18 + 1500 / 22 + 3000 / 20)
            assert seen.gpu_mw == pytest.approx(4.0)  # what the hook was told (no NVML here)
            assert received[0]["gpu_mw"] == 4.0 and received[0]["site_id"] == SITE
    finally:
        await runner.cleanup()


async def test_silent_miner_is_worked_around_and_refused_power_target_goes_on_off(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    """Three 3 kW miners (9 kW) told 5.5 kW. The most efficient refuses power targets, the
    least efficient stops answering: the agent counts the silent one at its last 3 kW, so the
    other two may draw 2.5 kW; the refuser cannot run at 2.5 kW, so it pauses and the second
    takes 2.5 kW. When the silent miner answers again it rejoins and the plan is remade."""
    async with simulated(
        {"efficiency_j_per_th": 18.0, "refuse_power_target": True},
        {"efficiency_j_per_th": 20.0},
        {"efficiency_j_per_th": 22.0},
    ) as (refuser, steady, silent):
        config = agent_config(
            [
                (refuser, {"min_w": 1500.0}),
                (steady, {"min_w": 1500.0}),
                (silent, {"min_w": 1500.0}),
            ],
            ramp={"max_step_mw": 0.01, "batch_delay_s": 0.1},
        )
        agent = build(config, broker.bootstrap, topic_prefix)
        async with running(agent):
            silent.silent = True
            await publish_decisions(
                broker.bootstrap, topic_prefix, decision(SITE, mining_mw=0.0055)
            )
            await until(
                lambda: not refuser.running and steady.watts == 2500.0,
                refuser.changed,
                steady.changed,
            )
            assert agent.unreachable == {"m2"} and agent.refused == {"m0"}
            assert silent.running  # never told anything it acted on: still drawing 3 kW
            assert any("worklevel" in (p or "") for p in refuser.commands("ascset"))
            assert refuser.limit_w is None  # the refused target was not applied
            silent.silent = False
            # Back in the allocation: the refuser runs whole (3 kW), the second keeps 2.5 kW,
            # the least efficient pauses.
            await until(
                lambda: refuser.running and steady.watts == 2500.0 and not silent.running,
                refuser.changed,
                silent.changed,
            )
            assert agent.unreachable == set()


async def test_watchdog_fails_safe_ignores_a_late_decision_and_restores_on_a_fresh_one(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    """No decision for 1.5 s: the fail-safe pauses both miners one batch at a time. A decision
    whose interval ended ten minutes ago arrives late and is ignored; a current one restores
    both miners, again one batch at a time."""
    async with simulated({"efficiency_j_per_th": 18.0}, {"efficiency_j_per_th": 20.0}) as sims:
        config = agent_config(
            [(sim, {}) for sim in sims],  # on/off miners
            watchdog={"decision_timeout_s": 1.5, "failsafe_mining_fraction": 0.0},
            ramp={"max_step_mw": 0.003, "batch_delay_s": 0.2},
        )
        agent = build(config, broker.bootstrap, topic_prefix)
        async with running(agent):
            await until(
                lambda: not any(s.running for s in sims) and len(agent.batch_totals_w) == 2,
                agent.changed,
                *(s.changed for s in sims),
            )
            assert agent.mode == "fail_safe" and agent.failsafe_trips == 1
            assert agent.batch_totals_w == [3000.0, 0.0]  # one 3 kW miner per batch
            # Least efficient first: the 20 J/TH miner paused a batch before the 18 J/TH one.
            assert sims[1].first("ascset", "0,softoff") < sims[0].first("ascset", "0,softoff")

            stale_start = datetime.now(UTC) - timedelta(minutes=15)
            await publish_decisions(
                broker.bootstrap,
                topic_prefix,
                decision(SITE, mining_mw=0.006, start=stale_start, minutes=5),
            )
            await until(lambda: agent.late_ignored == 1, agent.changed)
            assert agent.mode == "fail_safe" and not any(s.running for s in sims)

            await publish_decisions(broker.bootstrap, topic_prefix, decision(SITE, mining_mw=0.006))
            await until(
                lambda: all(s.running for s in sims) and len(agent.batch_totals_w) >= 4,
                agent.changed,
                *(s.changed for s in sims),
            )
            assert agent.batch_totals_w[2:4] == [3000.0, 6000.0]
            assert agent.latest is not None and agent.latest.mining_mw == 0.006
