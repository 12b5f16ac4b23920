"""A site never goes without a decision: stale price feeds and solver failures give flagged
fallbacks (fail-safe or the last plan held), and mining comes back in staggered steps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from optimizer import Horizon, SolverFailed
from schemas import Trigger
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.state import FleetState
from tests.factories import T0, Q, hashprice, mining_site, price, telemetry

H4 = Horizon((15, 15, 15, 15))
SITE = "site-a"


def test_stale_price_feed_fails_safe_and_mining_returns_in_steps() -> None:
    state = FleetState(Fleet(sites=(mining_site(),)))
    decider = Decider(H4, stale_price_after=timedelta(minutes=30), restore_fraction=0.25)
    triggers: dict[str, Trigger] = {SITE: "price"}
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    first = decider.decide(state, triggers)
    assert [d.fallback for d in first] == ["none"]
    assert first[0].mining_mw == pytest.approx(22.0)

    state.apply(
        telemetry(SITE, 2, mining_mw=0.0)
    )  # telemetry keeps event time moving; prices have gone silent
    (plan,) = decider.decide(state, {SITE: "telemetry"})  # 30 min old: still a normal plan
    assert plan.fallback == "none"
    state.apply(telemetry(SITE, 3, mining_mw=0.0))
    (safe,) = decider.decide(state, {SITE: "telemetry"})
    assert safe.fallback == "fail_safe"
    assert safe.fallback_reason == "price feed for HB_SOUTH silent for 45 min"
    assert (safe.mining_mw, safe.gpu_mw) == (0.0, 5.0)  # mining shed, GPU floor kept
    assert safe.interval_start == T0 + 3 * Q
    assert decider.fallbacks["fail_safe"] == 1
    assert decider.decide(state, {SITE: "telemetry"}) == []  # same moment: no duplicate

    restored = []
    for k in range(5, 10):
        state.apply(price(k, 20.0))
        (decision,) = decider.decide(state, triggers)
        restored.append(decision.mining_mw)
    # 25 MW of miners come back a quarter at a time, then the envelope (22 MW) binds.
    assert restored == pytest.approx([6.25, 12.5, 18.75, 22.0, 22.0])


def test_solver_failure_holds_the_last_plan_while_it_covers_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = FleetState(Fleet(sites=(mining_site(),)))
    decider = Decider(H4)
    triggers: dict[str, Trigger] = {SITE: "price"}
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    (plan,) = decider.decide(state, triggers)

    def broken(*_: object) -> None:
        raise SolverFailed("time_limit")

    monkeypatch.setattr(decider, "solve", broken)
    state.apply(price(1, 500.0))
    (held,) = decider.decide(state, triggers)
    assert held.fallback == "hold_last_plan"
    assert held.fallback_reason == "solver failed: solver status 'time_limit'"
    assert held.mining_mw == plan.horizon[1].mining_mw
    assert held.interval_start == T0 + Q
    assert held.solver.status == "not_solved"

    state.apply(price(6, 500.0))  # beyond the last plan's horizon: nothing left to hold
    (safe,) = decider.decide(state, triggers)
    assert safe.fallback == "fail_safe"
    assert (safe.mining_mw, safe.gpu_mw) == (0.0, 5.0)
    assert decider.fallbacks == {"hold_last_plan": 1, "fail_safe": 1}
