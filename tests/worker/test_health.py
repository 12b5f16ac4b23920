"""The worker's health checks without Kafka: each problem is found, named and worded from the
facts a part reports, at the thresholds the settings give; what a site waits for is said."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from streams.engine.fleet import Fleet
from streams.engine.state import FleetState
from streams.worker.health import CHECKS, Faults, WorkerHealth, waiting_for
from streams.worker.http import DecisionHub
from streams.worker.metrics import Metrics
from tests.factories import T0, hashprice, mining_site, price


@dataclass
class FakeWatch:
    up: bool = True
    missing: frozenset[str] = frozenset()
    misshapen: dict[str, int] = field(default_factory=dict)
    partitions_by_topic: dict[str, int] = field(default_factory=dict)
    outages: int = 0
    logs_lost: int = 0


@dataclass
class FakePlanner:
    unanswered_since: float | None = None
    owned: frozenset[str] | None = None


def two_sites() -> FleetState:
    return FleetState(
        Fleet(
            sites=(
                mining_site(site_id="site-a"),
                mining_site(site_id="site-b", price_node="HB_WEST"),
            )
        )
    )


def health(**overrides: object) -> WorkerHealth:
    values: dict[str, object] = {
        "broker": ("127.0.0.1", 9092),
        "hub": DecisionHub(),
        "sites": 2,
        "state": two_sites(),
        "watch": FakeWatch(),
        "faults": Faults(),
        "metrics": Metrics(),
        "planner": FakePlanner(),
        "wall": lambda: T0 + timedelta(minutes=20),
    }
    values.update(overrides)
    return WorkerHealth(**values)  # type: ignore[arg-type]


def test_a_worker_with_nothing_wrong_is_healthy_and_says_what_it_waits_for() -> None:
    report = health().check(reachable=True)
    assert report.healthy
    assert report.body()["status"] == "ok"
    assert report.facts["waiting_for"] == {
        "no real-time price for node HB_SOUTH yet": ["site-a"],
        "no real-time price for node HB_WEST yet": ["site-b"],
    }
    sample = health().sample()
    assert set(sample.checks) == set(CHECKS) and all(sample.checks.values())
    assert sample.sites_waiting == {"grid.price.v1": 2}


def test_waiting_for_follows_the_inputs() -> None:
    state = two_sites()
    site = state.sites["site-a"]
    assert waiting_for(state, site) is not None
    state.apply(price(0, 30.0))
    why = waiting_for(state, site)
    assert why is not None and (why.input, why.reason) == (
        "market.hashprice.v1",
        "no hashprice yet",
    )
    state.apply(hashprice())
    assert waiting_for(state, site) is None
    assert waiting_for(state, state.sites["site-b"]) is not None  # its node has no price


async def test_each_part_that_fails_is_named() -> None:
    faults = Faults()
    faults.fail("decision rounds", ConnectionError("broker unreachable"))
    faults.fail("decision rounds", ConnectionError("broker unreachable"))
    faults.crash("agent gridshift.ingest.grid.carbon.v1", ZeroDivisionError("bug"))
    stopped: asyncio.Task[None] = asyncio.create_task(asyncio.sleep(0))
    await stopped
    watch = FakeWatch(
        missing=frozenset({"p.dispatch.decision.v1"}),
        misshapen={"p.grid.price.v1": 1},
        partitions_by_topic={"p.grid.price.v1": 4},
    )
    report = health(faults=faults, watch=watch, tasks={"telemetry lane": stopped}).check(False)
    assert not report.healthy
    lines = "\n".join(report.problems)
    assert "broker 127.0.0.1:9092: unreachable" in lines
    assert "telemetry lane: stopped (returned)" in lines
    assert (
        "agent gridshift.ingest.grid.carbon.v1: crashed" in lines and "ZeroDivisionError" in lines
    )
    assert (
        "decision rounds: failing for 0 s (2 times): ConnectionError: broker unreachable" in lines
    )
    assert "topic p.dispatch.decision.v1: missing" in lines
    assert "topic p.grid.price.v1: 1 partitions, expected 4" in lines
    assert len(report.problems) == 6  # one line each
    faults.ok("decision rounds")
    assert not any("decision rounds" in p for p in health(faults=faults).check(True).problems)


def test_the_decision_clock_is_checked_against_wall_clock_both_ways() -> None:
    state = two_sites()
    state.apply(price(0, 30.0))  # HB_SOUTH at T0
    lagging = health(state=state, max_clock_lag_s=600.0)  # wall is T0 + 20 min
    assert lagging.check(True).problems == (
        "decision clock of node HB_SOUTH: 2024-08-20T17:00:00+00:00 is 20 min behind wall "
        "clock (limit 600 s)",
    )
    assert lagging.check(True).facts["clock_lag_s"] == pytest.approx(1200.0)
    assert health(state=state, max_clock_lag_s=1800.0).check(True).healthy
    ahead = health(state=state, max_clock_skew_s=60.0, wall=lambda: T0 - timedelta(hours=1))
    assert "ahead of wall clock" in ahead.check(True).problems[0]


def test_inputs_left_undecided_too_long_are_a_problem_that_says_why() -> None:
    state = two_sites()
    state.apply(price(0, 30.0))
    planner = FakePlanner(unanswered_since=time.monotonic() - 5.0)
    report = health(state=state, planner=planner, decision_silence_s=2.0).check(True)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("decisions: none for 5 s although inputs arrived")
    assert (
        "waiting for: no hashprice yet (site-a); no real-time price for node HB_WEST"
        in (report.problems[0])
    )
    assert health(state=state, planner=planner, decision_silence_s=10.0).check(True).healthy
    assert health(state=state, planner=FakePlanner(), decision_silence_s=2.0).check(True).healthy


def test_only_the_sites_decided_here_count() -> None:
    state = two_sites()
    planner = FakePlanner(owned=frozenset({"site-a"}))
    report = health(state=state, planner=planner).check(True)
    assert report.facts["waiting_for"] == {"no real-time price for node HB_SOUTH yet": ["site-a"]}


def test_unmatched_inputs_are_counted_per_topic_and_each_key_remembered_once() -> None:
    metrics = Metrics()
    assert metrics.unmatched("grid.price.v1", "HB_NOWHERE") is True
    assert metrics.unmatched("grid.price.v1", "HB_NOWHERE") is False
    assert metrics.unmatched("grid.carbon.v1", "NOWHERE") is True
    report = health(metrics=metrics).check(True)
    assert report.facts["unmatched_inputs"] == {
        "grid.carbon.v1": {"events": 1, "keys": ["NOWHERE"]},
        "grid.price.v1": {"events": 2, "keys": ["HB_NOWHERE"]},
    }
