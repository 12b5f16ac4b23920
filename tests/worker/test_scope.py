"""A worker of a scaled-out fleet decides only its own sites: it never solves or fail-safes
another worker's site (whose inputs it may never see), and it keeps its share of the fleet-wide
carbon budget and pool demand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from optimizer import Horizon
from schemas import DispatchDecision
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet, PoolConfig
from streams.engine.state import FleetState
from streams.worker.replanner import Replanner
from tests.factories import hashprice, mining_site, price

H4 = Horizon((15, 15, 15, 15))


def two_node_fleet() -> Fleet:
    return Fleet(
        sites=(
            mining_site(),  # HB_SOUTH, 30 MW
            mining_site(site_id="site-b", price_node="HB_NORTH", interconnect_mw=90.0),
        ),
        pools=(
            PoolConfig(
                pool_id="chat", demand_mw=6.0, value_usd_per_mwh=900.0, regions={"ERCOT": 0}
            ),
        ),
    )


def silent_north(state: FleetState) -> None:
    """HB_SOUTH prices for two hours; HB_NORTH's (read by the other worker) stopped at the first."""
    state.apply(hashprice())
    state.apply(price(0, 20.0, node="HB_NORTH"))
    for k in range(8):
        state.apply(price(k, 20.0 + k))


def test_a_worker_never_decides_another_workers_site_not_even_to_fail_safe_it() -> None:
    fleet = two_node_fleet()
    stale_after = timedelta(minutes=30)

    whole = Decider(H4, stale_price_after=stale_after)
    state = FleetState(fleet)
    silent_north(state)
    unscoped = whole.decide(state, {"site-a": "price"})
    # Without a scope, this worker's view of HB_NORTH looks silent and site-b is failed safe.
    assert {d.site_id for d in unscoped} == {"site-a", "site-b"}

    mine = Decider(H4, stale_price_after=stale_after)
    mine.set_scope(frozenset({"site-a"}), state.sites)
    state = FleetState(fleet)
    silent_north(state)
    decisions = mine.decide(state, {"site-a": "price"})
    assert [d.site_id for d in decisions] == ["site-a"]
    assert decisions[0].fallback == "none"


def test_fleet_wide_quantities_are_prorated_to_the_scope() -> None:
    fleet = two_node_fleet()
    decider = Decider(H4, pools=fleet.pools, carbon_budget_t_per_day=24.0)
    assert decider.budget_share == 1.0  # unscoped: the whole fleet
    decider.set_scope(frozenset({"site-a"}), FleetState(fleet).sites)
    assert decider.budget_share == pytest.approx(30.0 / 120.0)  # by interconnect capacity
    assert decider.pool_share == {"chat": pytest.approx(0.5)}  # one of two eligible sites
    decider.set_scope(frozenset({"site-a", "site-b"}), FleetState(fleet).sites)
    assert decider.budget_share == pytest.approx(1.0)
    assert decider.pool_share == {"chat": pytest.approx(1.0)}


async def test_the_planner_hands_its_partitions_sites_to_the_decider() -> None:
    fleet = two_node_fleet()
    state = FleetState(fleet)
    decider = Decider(H4, pools=fleet.pools)

    async def publish(decision: DispatchDecision) -> None:
        raise AssertionError("nothing is decided here")

    planner = Replanner(state, publish, decider, debounce_s=0.0)
    planner.own(frozenset({"site-b"}))
    assert decider.scope == frozenset({"site-b"})
    assert decider.pool_share == {"chat": pytest.approx(0.5)}
