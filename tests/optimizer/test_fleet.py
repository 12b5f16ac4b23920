"""Golden cases for the fleet features, checked by hand: batch work, routing, batteries, ramps,
PPA and on-site supply, coincident-peak charges and the fleet carbon budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from optimizer import (
    BatchJob,
    BatterySpec,
    FleetModel,
    FleetPlan,
    FleetSnapshot,
    FleetSpec,
    Horizon,
    PoolSnapshot,
    PoolSpec,
    SiteSnapshot,
    SolverFailed,
    SpecError,
)
from tests.optimizer.cases import SCHEMA_MAX_PRICE, SPEC, snapshot

CHEAP_DIRTY_CLEAN: dict[str, Any] = {
    "price": [20.0, 20.0, 60.0, 60.0],
    "carbon": [800.0, 800.0, 100.0, 100.0],
}


ALIASES = {"price": "price_usd_per_mwh", "carbon": "carbon_g_per_kwh"}


def with_curves(n: int = 4, **curves: object) -> SiteSnapshot:
    """The hand-checkable base snapshot with some curves replaced (lists become arrays)."""
    changes = {
        ALIASES.get(name, name): np.asarray(value, dtype=float)
        if isinstance(value, list)
        else value
        for name, value in curves.items()
    }
    return dataclasses.replace(snapshot(n), **changes)  # type: ignore[arg-type]


def solve(
    spec: FleetSpec,
    sites: Mapping[str, SiteSnapshot],
    n: int = 4,
    *,
    pools: Mapping[str, PoolSnapshot] | None = None,
    carbon_budget_t: float | None = None,
) -> FleetPlan:
    snapshot = FleetSnapshot(sites=sites, pools=pools or {}, carbon_budget_t=carbon_budget_t)
    return FleetModel(spec, n).plan(snapshot)


def test_default_horizon_is_twelve_five_minute_steps_then_hourly_to_a_day() -> None:
    horizon = Horizon.mixed()
    assert horizon.n_steps == 12 + 23
    assert horizon.step_minutes[:12] == (5,) * 12
    assert horizon.step_minutes[12:] == (60,) * 23
    assert sum(horizon.step_minutes) == 24 * 60
    assert Horizon.mixed(total_hours=48).n_steps == 12 + 47
    with pytest.raises(SpecError, match="longer than 48 h"):
        Horizon.mixed(total_hours=49)


def test_batch_work_finishes_by_its_deadline_in_the_cheapest_hours() -> None:
    site = dataclasses.replace(SPEC, batch_slots=1, mining_capacity_mw=0.0, gpu_capacity_mw=10.0)
    job = BatchJob(energy_mwh=0.5, deadline_step=2, max_mw=4.0)
    snap = with_curves(
        price=[300.0, 20.0, 500.0, 10.0],
        batch_jobs=(job,),
        gpu_demand_mw=[2.0] * 4,
        gpu_floor_mw=[0.0] * 4,
    )
    plan = solve(FleetSpec(sites=(site,)), {"a": snap}).sites["a"]
    # 0.5 MWh by the end of step 2 at <= 4 MW over 15-min steps: 1 MWh possible per step.
    # The cheapest open step is step 1 ($20); step 3 is cheaper but after the deadline.
    assert plan.batch_mw == pytest.approx([0.0, 2.0, 0.0, 0.0])
    assert plan.batch_shortfall_mwh == pytest.approx(0.0)


def test_batch_work_prefers_clean_hours_under_a_carbon_price() -> None:
    site = dataclasses.replace(SPEC, batch_slots=1, mining_capacity_mw=0.0)
    job = BatchJob(energy_mwh=1.0, deadline_step=3, max_mw=4.0)
    snap = with_curves(
        **CHEAP_DIRTY_CLEAN,
        batch_jobs=(job,),
        carbon_price_usd_per_t=200.0,
        gpu_demand_mw=[0.0] * 4,
        gpu_floor_mw=[0.0] * 4,
    )
    plan = solve(FleetSpec(sites=(site,)), {"a": snap}).sites["a"]
    # Dirty hours cost 20 + 0.8 t/MWh x 200 = 180 $/MWh, clean ones 60 + 20 = 80 $/MWh.
    assert plan.batch_mw == pytest.approx([0.0, 0.0, 4.0, 0.0]) or plan.batch_mw[2:].sum() == (
        pytest.approx(4.0)
    )
    assert plan.batch_mw[:2] == pytest.approx([0.0, 0.0])


def test_impossible_batch_work_is_reported_as_a_shortfall() -> None:
    site = dataclasses.replace(SPEC, batch_slots=1)
    job = BatchJob(energy_mwh=10.0, deadline_step=0, max_mw=4.0)
    plan = solve(FleetSpec(sites=(site,)), {"a": with_curves(batch_jobs=(job,))}).sites["a"]
    assert plan.batch_shortfall_mwh == pytest.approx(9.0)  # only 4 MW x 0.25 h fits
    assert plan.slacks_used == {"batch_shortfall_mwh": pytest.approx(9.0)}


def test_routing_sends_flexible_inference_to_the_cheaper_cleaner_site() -> None:
    a = dataclasses.replace(SPEC, site_id="a", mining_capacity_mw=0.0)
    b = dataclasses.replace(SPEC, site_id="b", mining_capacity_mw=0.0)
    pool = PoolSpec("chat", eligible=(("a", 0.0), ("b", 5.0)))
    spec = FleetSpec(sites=(a, b), pools=(pool,))
    idle: dict[str, Any] = {"gpu_demand_mw": [0.0] * 4, "gpu_floor_mw": [0.0] * 4}
    sites = {
        "a": with_curves(
            price=[200.0] * 4, carbon=[700.0] * 4, carbon_price_usd_per_t=50.0, **idle
        ),
        "b": with_curves(price=[30.0] * 4, carbon=[100.0] * 4, carbon_price_usd_per_t=50.0, **idle),
    }
    pools = {"chat": PoolSnapshot(demand_mw=np.full(4, 6.0), value_usd_per_mwh=np.full(4, 1000.0))}
    plan = solve(spec, sites, pools=pools)
    assert plan.sites["b"].routed_gpu_mw == pytest.approx(np.full(4, 6.0))
    assert plan.sites["a"].routed_gpu_mw == pytest.approx(np.zeros(4))
    assert plan.sites["b"].gpu_revenue_usd[0] == pytest.approx(6 * 0.25 * (1000 - 5))


def test_routing_respects_gpu_capacity_and_splits_the_pool() -> None:
    a = dataclasses.replace(SPEC, site_id="a", mining_capacity_mw=0.0, gpu_capacity_mw=10.0)
    b = dataclasses.replace(SPEC, site_id="b", mining_capacity_mw=0.0, gpu_capacity_mw=4.0)
    spec = FleetSpec(sites=(a, b), pools=(PoolSpec("p", (("a", 0.0), ("b", 0.0))),))
    firm: dict[str, Any] = {"gpu_demand_mw": [2.0] * 4, "gpu_floor_mw": [2.0] * 4}
    sites = {
        "a": with_curves(price=[100.0] * 4, **firm),
        "b": with_curves(price=[10.0] * 4, **firm),
    }
    pools = {"p": PoolSnapshot(demand_mw=np.full(4, 9.0), value_usd_per_mwh=np.full(4, 800.0))}
    plan = solve(spec, sites, pools=pools)
    assert plan.sites["b"].routed_gpu_mw == pytest.approx(np.full(4, 2.0))  # 4 MW cap - 2 firm
    assert plan.sites["a"].routed_gpu_mw == pytest.approx(np.full(4, 7.0))


def test_battery_charges_cheap_and_discharges_into_the_spike() -> None:
    battery = BatterySpec(
        power_mw=4.0, energy_mwh=1.0, round_trip_efficiency=1.0, cycling_cost_usd_per_mwh=0.0
    )
    site = dataclasses.replace(SPEC, battery=battery, mining_capacity_mw=0.0)
    snap = with_curves(price=[10.0, 10.0, 900.0, 900.0], gpu_floor_mw=[8.0] * 4)
    plan = solve(FleetSpec(sites=(site,)), {"a": snap}).sites["a"]
    assert plan.battery_charge_mw[:2].sum() * 0.25 == pytest.approx(1.0)
    assert plan.battery_discharge_mw[2:].sum() * 0.25 == pytest.approx(1.0)
    assert plan.battery_soc_mwh[-1] == pytest.approx(0.0)
    assert plan.grid_import_mw[2:].sum() == pytest.approx(2 * 8.0 - 4.0)


def test_mining_restarts_are_ramp_limited() -> None:
    site = dataclasses.replace(SPEC, mining_ramp_up_mw_per_min=0.4)  # 6 MW per 15-min step
    snap = with_curves(price=[20.0] * 4, mining_now_mw=0.0)
    plan = solve(FleetSpec(sites=(site,)), {"a": snap}).sites["a"]
    assert plan.mining_mw == pytest.approx([6.0, 12.0, 18.0, 22.0])
    assert "mining_ramp" in plan.binding_first_step


def test_mining_can_always_drop_at_once() -> None:
    site = dataclasses.replace(SPEC, mining_ramp_up_mw_per_min=0.1)
    snap = with_curves(price=[900.0] * 4, mining_now_mw=22.0)
    assert solve(FleetSpec(sites=(site,)), {"a": snap}).sites["a"].mining_mw[0] == 0.0


def test_ppa_and_onsite_supply_cut_market_emissions_and_raise_the_cfe_score() -> None:
    snap = with_curves(
        price=[50.0] * 4, carbon=[400.0] * 4, ppa_mw=[10.0] * 4, onsite_cfe_mw=[5.0] * 4
    )
    plan = solve(FleetSpec(sites=(SPEC,)), {"a": snap}).sites["a"]
    # On-site supply lifts the envelope: 25 MW mining + 8 MW GPU = 33 MW facility, of which
    # 5 MW on-site and 28 MW imported (the 30 MW interconnect no longer binds); 10 MW of the
    # import is matched by the PPA, so 18 MW is unmatched.
    assert plan.mining_mw[0] == pytest.approx(25.0)
    assert plan.onsite_cfe_used_mw[0] == pytest.approx(5.0)
    assert plan.grid_import_mw[0] == pytest.approx(28.0)
    assert plan.emissions_kg[0] == pytest.approx(28 * 0.25 * 400)
    assert plan.emissions_market_kg[0] == pytest.approx(18 * 0.25 * 400)
    assert plan.cfe_score == pytest.approx(15.0 / 33.0)


def test_coincident_peak_charge_sheds_mining_in_the_likely_peak_interval() -> None:
    # An expected 4CP charge of $40/MW in step 1 adds 160 $/MWh over a 15-min step.
    snap = with_curves(price=[50.0] * 4, peak_cost_usd_per_mw=[0.0, 40.0, 0.0, 0.0])
    plan = solve(FleetSpec(sites=(SPEC,)), {"a": snap}).sites["a"]
    assert plan.mining_mw == pytest.approx([22.0, 0.0, 22.0, 22.0])
    assert plan.peak_cost_usd[1] == pytest.approx(8.0 * 40.0)


def test_carbon_budget_binds_with_a_shadow_price_and_never_infeasible() -> None:
    spec = FleetSpec(sites=(SPEC,), carbon_budget=True)
    sites = {"a": with_curves(price=[20.0] * 4, carbon=[500.0] * 4)}
    unconstrained = solve(spec, sites, carbon_budget_t=1000.0)
    assert unconstrained.shadow_price_carbon_usd_per_t == pytest.approx(0.0)
    # Without a cap: 30 MW x 1 h x 0.5 t/MWh = 15 t. Allow 10 t: mining gives way first.
    capped = solve(spec, sites, carbon_budget_t=10.0)
    emitted = sum(p.emissions_market_kg.sum() for p in capped.sites.values()) / 1000.0
    assert emitted == pytest.approx(10.0)
    # Mining's margin is 100 - 20 = 80 $/MWh, i.e. 160 $/t at 0.5 t/MWh.
    assert capped.shadow_price_carbon_usd_per_t == pytest.approx(160.0)
    impossible = solve(spec, sites, carbon_budget_t=0.0)
    # A zero budget cannot be met: the 5 MW GPU floor still runs (1 h x 5 MW x 0.5 t/MWh).
    assert impossible.carbon_budget_excess_t == pytest.approx(2.5)
    assert impossible.sites["a"].gpu_mw == pytest.approx(np.full(4, 5.0))  # floor outranks budget


def test_fleet_problem_is_dpp_and_replans_without_recanonicalizing() -> None:
    battery = BatterySpec(power_mw=2.0, energy_mwh=2.0)
    a = dataclasses.replace(SPEC, site_id="a", battery=battery, batch_slots=1)
    b = dataclasses.replace(SPEC, site_id="b", mining_ramp_up_mw_per_min=1.0)
    spec = FleetSpec(
        sites=(a, b), pools=(PoolSpec("p", (("a", 0.0), ("b", 1.0))),), carbon_budget=True
    )
    model = FleetModel(spec, 4)
    assert model.problem.is_dpp()
    pools = {"p": PoolSnapshot(demand_mw=np.full(4, 3.0), value_usd_per_mwh=np.full(4, 900.0))}
    first = FleetSnapshot(
        sites={"a": snapshot(), "b": snapshot()}, pools=pools, carbon_budget_t=50.0
    )
    model.plan(first)
    compiled = model.problem._cache.param_prog
    second = dataclasses.replace(first, sites={"a": snapshot(price=500.0), "b": snapshot()})
    plan = model.plan(second)
    assert model.problem._cache.param_prog is compiled
    assert plan.sites["a"].mining_mw[0] == 0.0


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: FleetSpec(sites=(SPEC, SPEC)), "sites"),
        (
            lambda: FleetSpec(sites=(SPEC,), pools=(PoolSpec("p", (("nowhere", 0.0),)),)),
            "pools.p.eligible",
        ),
        (lambda: BatterySpec(power_mw=-1.0, energy_mwh=1.0), "battery.power_mw"),
        (lambda: Horizon((5, 0)), "horizon.step_minutes"),
    ],
)
def test_malformed_fleet_specs_name_the_field(build: object, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field


def test_snapshot_problems_name_the_site_and_field() -> None:
    model = FleetModel(FleetSpec(sites=(SPEC,), carbon_budget=True), 4)
    with pytest.raises(SpecError, match=r"sites\.a: missing from the snapshot"):
        model.plan(FleetSnapshot(sites={}))
    with pytest.raises(SpecError, match="carbon_budget_t"):
        model.plan(FleetSnapshot(sites={"a": snapshot()}))
    with pytest.raises(SpecError, match=r"sites\.a\.batch_jobs: 1 jobs > 0 batch slots"):
        model.plan(
            FleetSnapshot(
                sites={"a": with_curves(batch_jobs=(BatchJob(1, 1, 1),))}, carbon_budget_t=1.0
            )
        )


def test_warm_started_replans_match_cold_solves() -> None:
    spec = FleetSpec(sites=(SPEC, dataclasses.replace(SPEC, site_id="b")))
    warm, cold = FleetModel(spec, 4), FleetModel(spec, 4, warm_start=False)
    for price in (20.0, 150.0, 4000.0, -30.0, 99.0):
        snap = FleetSnapshot(sites={"a": snapshot(price=price), "b": snapshot(price=price / 2)})
        assert warm.plan(snap).objective_usd == pytest.approx(
            cold.plan(snap).objective_usd, rel=1e-9, abs=1e-9
        )


def test_a_solver_time_out_is_a_typed_failure_not_a_plan() -> None:
    model = FleetModel(FleetSpec(sites=(SPEC,)), 4, time_limit_s=0.0)
    with (
        pytest.warns(UserWarning, match="may be inaccurate"),
        pytest.raises(SolverFailed, match="user_limit"),
    ):
        model.plan(FleetSnapshot(sites={"a": snapshot()}))


def test_the_gpu_floor_is_kept_at_the_highest_price_with_every_part_in_play() -> None:
    """A battery, a carbon budget, a peak charge and a routable pool each add to what shedding
    the floor could gain; none of them makes it worth shedding."""
    battery = BatterySpec(power_mw=4.0, energy_mwh=1.0, round_trip_efficiency=1.0)
    site = dataclasses.replace(SPEC, pue=3.0, interconnect_mw=100.0, battery=battery)
    spec = FleetSpec(
        sites=(site,), pools=(PoolSpec("chat", eligible=(("a", 0.0),)),), carbon_budget=True
    )
    snap = with_curves(
        price=[20.0, 20.0, SCHEMA_MAX_PRICE, SCHEMA_MAX_PRICE],
        carbon=[5_000.0] * 4,
        carbon_price_usd_per_t=1_000.0,
        peak_cost_usd_per_mw=[0.0, 0.0, 25_000.0, 0.0],
    )
    pools = {"chat": PoolSnapshot(demand_mw=np.full(4, 5.0), value_usd_per_mwh=np.full(4, 5e4))}
    plan = solve(spec, {"a": snap}, pools=pools, carbon_budget_t=0.0).sites["a"]
    assert plan.status == "optimal"  # penalties near 1e7 $/MWh leave HiGHS accurate
    assert plan.gpu_mw == pytest.approx(np.full(4, 5.0))
    assert plan.gpu_shortfall_mw == pytest.approx(np.zeros(4))
