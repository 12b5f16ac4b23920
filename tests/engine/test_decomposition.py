"""Decomposed rounds (independent problems apart, identical sites once, unchanged problems
reused) give the joint solve's plans and decisions, and a coupled fleet is still solved jointly.

Inputs are synthetic (hand-made curves), labelled so."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from optimizer import FleetPlan, Horizon, ReserveSnapshot, SiteSnapshot
from optimizer.decompose import components
from optimizer.spec import PoolSpec
from streams.engine.decider import Decider, Round
from streams.engine.fleet import PoolConfig, SiteConfig
from streams.engine.snapshots import SnapshotView

HORIZON = Horizon((15,) * 8)
NOW = datetime(2024, 8, 1, 5, tzinfo=UTC)
STARTS = HORIZON.starts(NOW)
ENDS = (*STARTS[1:], STARTS[-1] + timedelta(minutes=15))
PLAN_FIELDS = (
    "mining_mw",
    "gpu_mw",
    "routed_gpu_mw",
    "grid_import_mw",
    "battery_charge_mw",
    "battery_discharge_mw",
    "battery_soc_mwh",
    "gpu_shortfall_mw",
    "energy_cost_usd",
    "mining_revenue_usd",
    "gpu_revenue_usd",
    "reserve_revenue_usd",
    "shadow_price_interconnect_usd_per_mwh",
)


def _site(site_id: str, region: str = "ERCOT", **extra: object) -> SiteConfig:
    base: dict[str, object] = {
        "site_id": site_id,
        "price_node": f"N_{region}",
        "carbon_region": region,
        "interconnect_mw": 12.0,
        "pue": 1.2,
        "mining_capacity_mw": 3.0,
        "miner_efficiency_j_per_th": 17.5,
        "gpu_capacity_mw": 8.5,
        "gpu_demand_mw": 7.0,
        "gpu_floor_mw": 5.0,
        "gpu_value_usd_per_mwh": 1500.0,
    }
    return SiteConfig.model_validate(base | extra)


def _view(site: SiteConfig, prices: np.ndarray, *, reserve: bool = False) -> SnapshotView:
    n = HORIZON.n_steps
    ones = np.ones(n)
    snapshot = SiteSnapshot(
        step_hours=np.asarray(HORIZON.step_hours),
        price_usd_per_mwh=prices,
        carbon_g_per_kwh=ones * 400.0,
        hashprice_usd_per_th_day=ones * 0.05,
        gpu_value_usd_per_mwh=ones * site.gpu_value_usd_per_mwh,
        gpu_demand_mw=ones * site.firm_gpu_demand_mw,
        gpu_floor_mw=ones * site.gpu_floor_mw,
        mining_available_mw=ones * site.mining_capacity_mw,
        signal_cap_mw=np.full(n, np.inf),
        onsite_cfe_mw=ones * site.onsite_cfe_mw,
        ppa_mw=ones * site.ppa_mw,
        reserves=(
            {p: ReserveSnapshot(price_usd_per_mw_h=ones * 9.0) for p in site.reserve_products}
            if reserve
            else {}
        ),
    )
    version = f"{abs(hash((site.site_id, prices.tobytes()))) % 16**16:016x}"
    return SnapshotView(site, NOW, STARTS, ENDS, snapshot, (), version)


def _prices(seed: int) -> np.ndarray:
    """SYNTHETIC prices around the mining break-even (~$150/MWh here), spikes included."""
    rng = np.random.default_rng(seed)
    return np.round(rng.choice([20.0, 90.0, 140.0, 260.0, 900.0], HORIZON.n_steps), 2)


def _fleet_views() -> dict[str, SnapshotView]:
    """Identical sites on two nodes, a battery site, a reserve site, a different site."""
    ercot, pjm = _prices(1), _prices(2)
    views = {}
    for i in range(4):
        views[f"tx-{i}"] = _view(_site(f"tx-{i}"), ercot)
    for i in range(3):
        views[f"va-{i}"] = _view(_site(f"va-{i}", "PJM"), pjm)
    views["bat"] = _view(_site("bat", battery_power_mw=2.0, battery_energy_mwh=4.0), ercot)
    views["rsv"] = _view(
        _site("rsv", reserve_products=("ecrs",), reserve_max_mw=2.0), ercot, reserve=True
    )
    views["big"] = _view(_site("big", mining_capacity_mw=6.0, interconnect_mw=14.0), pjm)
    return views


def _assert_same(a: FleetPlan, b: FleetPlan) -> None:
    assert set(a.sites) == set(b.sites)
    for site_id in a.sites:
        pa, pb = a.sites[site_id], b.sites[site_id]
        for name in PLAN_FIELDS:
            np.testing.assert_allclose(
                getattr(pa, name), getattr(pb, name), atol=1e-6, err_msg=f"{site_id}.{name}"
            )
        assert pa.binding_first_step == pb.binding_first_step, site_id
        assert pa.slacks_used.keys() == pb.slacks_used.keys(), site_id
        assert pa.cfe_score == pytest.approx(pb.cfe_score, abs=1e-9)
    assert a.objective_usd == pytest.approx(b.objective_usd, rel=1e-7)
    assert a.fleet_cfe_score == pytest.approx(b.fleet_cfe_score, abs=1e-9)
    assert a.shadow_price_carbon_usd_per_t == pytest.approx(b.shadow_price_carbon_usd_per_t)


def _only(plan: FleetPlan, site_ids: list[str]) -> FleetPlan:
    return replace(
        plan, sites={s: plan.sites[s] for s in site_ids}, objective_usd=0.0, fleet_cfe_score=0.0
    )


def _solve_both(
    views: dict[str, SnapshotView], **kw: object
) -> tuple[Decider, FleetPlan, FleetPlan]:
    split = Decider(HORIZON, decompose=True, **kw)  # type: ignore[arg-type]
    joint = Decider(HORIZON, decompose=False, **kw)  # type: ignore[arg-type]
    return split, split.solve(views), joint.solve(views)


def test_identical_sites_are_solved_once_and_plans_equal_the_joint_solve() -> None:
    views = _fleet_views()
    split, plan, joint = _solve_both(views)
    _assert_same(plan, joint)
    # tx-0..3 and va-0..2 are one problem each: 5 distinct problems for 10 sites.
    assert len(split._parts) == 5
    assert plan.sites["tx-0"] is plan.sites["tx-3"]
    assert plan.sites["tx-0"] is not plan.sites["bat"]
    # Something was really decided: mining follows the (synthetic) price.
    assert plan.sites["tx-0"].mining_mw.max() > 1.0 > plan.sites["tx-0"].mining_mw.min()


def test_an_unchanged_problem_reuses_the_last_plan_and_a_changed_one_is_solved() -> None:
    views = _fleet_views()
    split = Decider(HORIZON)
    first = split.solve(views)
    again = split.solve(views)
    assert again.sites["va-1"] is first.sites["va-1"]  # bit-identical inputs: reused
    assert again.solve_time_s == 0.0
    changed = dict(views)
    pjm = _prices(3)
    for site_id in ("va-0", "va-1", "va-2"):
        changed[site_id] = _view(views[site_id].site, pjm)
    third = split.solve(changed)
    assert third.sites["va-1"] is not first.sites["va-1"]
    assert third.sites["tx-2"] is first.sites["tx-2"]
    _assert_same(third, Decider(HORIZON, decompose=False).solve(changed))


def test_a_fleet_carbon_budget_couples_every_site_into_one_joint_solve() -> None:
    views = _fleet_views()
    split, plan, joint = _solve_both(views, carbon_budget_t_per_day=20.0)
    _assert_same(plan, joint)
    assert len(split._parts) == 1  # one problem: the whole fleet
    assert plan.shadow_price_carbon_usd_per_t > 0.0  # the budget binds (and is reported)


def test_a_pool_couples_its_eligible_sites_and_leaves_the_others_apart() -> None:
    views = _fleet_views()
    pool = PoolConfig(pool_id="chat", demand_mw=3.0, value_usd_per_mwh=900.0, regions={"PJM": 0.0})
    split, plan, joint = _solve_both(views, pools=(pool,))
    pooled = ("va-0", "va-1", "va-2")
    apart = [s for s in views if s not in pooled]
    _assert_same(_only(plan, apart), _only(joint, apart))
    # Which of three identical sites serves the pool is a tie (a degenerate LP): the pooled
    # sites' totals per step and the objective are what both solves must agree on.
    for name in ("mining_mw", "gpu_mw", "routed_gpu_mw", "grid_import_mw"):
        np.testing.assert_allclose(
            sum(getattr(plan.sites[s], name) for s in pooled),
            sum(getattr(joint.sites[s], name) for s in pooled),
            atol=1e-6,
        )
    assert plan.objective_usd == pytest.approx(joint.objective_usd, rel=1e-7)
    # The PJM sites (va-0..2) are one problem; tx x4 one; bat; rsv; big (ERCOT): 5 problems.
    assert len(split._parts) == 5
    routed = sum(plan.sites[s].routed_gpu_mw for s in views)
    assert float(np.max(routed)) == pytest.approx(3.0)  # the pool is served where it pays


def test_a_pool_only_one_site_may_serve_is_served_by_it() -> None:
    # A group of one, but not a lone problem: solved anonymously (without pools), the pool
    # went unserved while the joint solve (and the baselines) served it.
    views = _fleet_views()
    pool = PoolConfig(pool_id="solo", demand_mw=1.5, value_usd_per_mwh=900.0, sites={"big": 0.0})
    split, plan, joint = _solve_both(views, pools=(pool,))
    _assert_same(plan, joint)
    assert float(np.max(plan.sites["big"].routed_gpu_mw)) == pytest.approx(1.5)  # where it pays
    # The other sites are still lone problems, shared as before: big is its own.
    assert plan.sites["tx-0"] is plan.sites["tx-3"]
    assert len(split._parts) == 5


def test_components_follow_pools_transitively() -> None:
    pools = [PoolSpec("p", (("a", 0.0), ("b", 0.0))), PoolSpec("q", (("b", 0.0), ("c", 1.0)))]
    ids = ["a", "b", "c", "d"]
    assert components(ids, pools, carbon_budget=False) == [("a", "b", "c"), ("d",)]
    assert components(ids, [], carbon_budget=True) == [("a", "b", "c", "d")]
    assert components(ids, [], carbon_budget=False) == [("a",), ("b",), ("c",), ("d",)]


def test_decisions_of_identical_sites_equal_the_ones_built_one_by_one() -> None:
    views = _fleet_views()
    triggers = dict.fromkeys(views, "price")
    sites = {s: v.site for s, v in views.items()}
    split, joint = Decider(HORIZON), Decider(HORIZON, decompose=False)
    mine = split.decisions(Round(views, sorted(views), triggers, sites), split.solve(views))  # type: ignore[arg-type]
    theirs = joint.decisions(Round(views, sorted(views), triggers, sites), joint.solve(views))  # type: ignore[arg-type]
    for a, b in zip(mine, theirs, strict=True):
        da, db = a.model_dump(), b.model_dump()
        for d in (da, db):  # timings differ by nature
            d.pop("solver")
        assert da.keys() == db.keys()
        assert da["site_id"] == db["site_id"] and da["decision_id"] == db["decision_id"]
        for key in ("mining_mw", "gpu_mw", "grid_import_mw", "binding_constraints", "notes"):
            assert da[key] == pytest.approx(db[key], abs=1e-6), key
        assert [s["mining_mw"] for s in da["horizon"]] == pytest.approx(
            [s["mining_mw"] for s in db["horizon"]], abs=1e-6
        )
