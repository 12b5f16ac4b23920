"""Golden cases checked by hand (numbers in tests/optimizer/cases.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from optimizer import DispatchModel, SpecError, mining_revenue_usd_per_mwh
from tests.optimizer.cases import HASHPRICE_100, SCHEMA_MAX_PRICE, SPEC, snapshot


@pytest.fixture
def model() -> DispatchModel:
    return DispatchModel(SPEC, 4)


def test_hashprice_converts_to_100_usd_per_mwh_at_20_j_per_th() -> None:
    assert mining_revenue_usd_per_mwh(HASHPRICE_100, 20.0) == pytest.approx(100.0)


def test_below_break_even_mining_fills_the_envelope_left_by_gpus(model: DispatchModel) -> None:
    plan = model.plan(snapshot(price=50.0))
    assert plan.gpu_mw == pytest.approx(np.full(4, 8.0))
    assert plan.mining_mw == pytest.approx(np.full(4, 22.0))  # 30 MW interconnect - 8 MW GPU
    assert "interconnect" in plan.binding_first_step
    # One more MW of interconnect would run one more MW of mining: worth 100 - 50 $/MWh.
    assert plan.shadow_price_interconnect_usd_per_mwh[0] == pytest.approx(50.0)
    assert plan.mining_breakeven_usd_per_mwh[0] == pytest.approx(100.0)


def test_above_break_even_mining_is_shed_and_gpus_keep_running(model: DispatchModel) -> None:
    plan = model.plan(snapshot(price=150.0))
    assert plan.mining_mw == pytest.approx(np.zeros(4))
    assert plan.gpu_mw == pytest.approx(np.full(4, 8.0))
    assert "mining_off" in plan.binding_first_step


def test_scarcity_price_drops_gpus_to_their_contract_floor(model: DispatchModel) -> None:
    plan = model.plan(snapshot(price=4857.82))
    assert plan.mining_mw == pytest.approx(np.zeros(4))
    assert plan.gpu_mw == pytest.approx(np.full(4, 5.0))
    assert plan.gpu_shortfall_mw == pytest.approx(np.zeros(4))


@pytest.mark.parametrize("pue", [1.0, 1.05, 1.5, 3.0])
def test_the_gpu_floor_is_kept_at_the_highest_price_the_contract_allows(pue: float) -> None:
    # The README: the contracted floor is never shed without a grid signal. A fixed floor
    # penalty of $100,000/MWh lost to price x PUE beyond it; the penalty now stays above.
    spec = dataclasses.replace(SPEC, pue=pue, interconnect_mw=100.0)
    dirty = snapshot(price=SCHEMA_MAX_PRICE, carbon=5_000.0, carbon_price=1_000.0)
    plan = DispatchModel(spec, 4).plan(dirty)
    assert plan.gpu_mw == pytest.approx(np.full(4, 5.0))
    assert plan.gpu_shortfall_mw == pytest.approx(np.zeros(4))
    assert plan.mining_mw == pytest.approx(np.zeros(4))


def test_a_grid_signal_still_outranks_the_floor_at_the_highest_price() -> None:
    spec = dataclasses.replace(SPEC, pue=3.0, interconnect_mw=100.0)
    plan = DispatchModel(spec, 4).plan(snapshot(price=SCHEMA_MAX_PRICE, signal_cap=3.0))
    assert plan.grid_import_mw == pytest.approx(np.full(4, 3.0))
    assert plan.signal_excess_mw == pytest.approx(np.zeros(4))
    assert plan.gpu_mw == pytest.approx(np.full(4, 1.0))  # 3 MW at the meter / PUE 3
    assert plan.gpu_shortfall_mw == pytest.approx(np.full(4, 4.0))


def test_signal_cap_is_met_by_shedding_mining_first(model: DispatchModel) -> None:
    plan = model.plan(snapshot(price=50.0, signal_cap=10.0))
    assert plan.grid_import_mw == pytest.approx(np.full(4, 10.0))
    assert plan.gpu_mw == pytest.approx(np.full(4, 8.0))
    assert plan.mining_mw == pytest.approx(np.full(4, 2.0))
    assert "signal_cap" in plan.binding_first_step


def test_signal_below_gpu_floor_returns_a_plan_with_the_slack_not_an_error(
    model: DispatchModel,
) -> None:
    plan = model.plan(snapshot(price=50.0, signal_cap=3.0))
    # Signal compliance outranks the GPU floor: import obeys the cap, the floor is short by 2 MW.
    assert plan.grid_import_mw == pytest.approx(np.full(4, 3.0))
    assert plan.signal_excess_mw == pytest.approx(np.zeros(4))
    assert plan.gpu_shortfall_mw == pytest.approx(np.full(4, 2.0))
    assert "gpu_floor" in plan.binding_first_step


def test_carbon_price_lowers_the_break_even(model: DispatchModel) -> None:
    # 100 $/t at 500 g/kWh = 50 $/MWh of carbon cost: break-even falls from 100 to 50 $/MWh.
    plan = model.plan(snapshot(price=60.0, carbon=500.0, carbon_price=100.0))
    assert plan.mining_breakeven_usd_per_mwh[0] == pytest.approx(50.0)
    assert plan.mining_mw == pytest.approx(np.zeros(4))


def test_pue_scales_import_and_break_even() -> None:
    spec = dataclasses.replace(SPEC, pue=1.25)
    plan = DispatchModel(spec, 4).plan(snapshot(price=50.0))
    assert plan.grid_import_mw == pytest.approx(np.full(4, 30.0))
    assert plan.mining_mw + plan.gpu_mw == pytest.approx(np.full(4, 24.0))
    assert plan.mining_breakeven_usd_per_mwh[0] == pytest.approx(80.0)


def test_few_miners_online_cap_mining(model: DispatchModel) -> None:
    plan = model.plan(snapshot(price=20.0, mining_available=7.5))
    assert plan.mining_mw == pytest.approx(np.full(4, 7.5))
    assert "mining_available" in plan.binding_first_step


def test_economics_follow_the_set_points(model: DispatchModel) -> None:
    plan = model.plan(snapshot(price=50.0))
    # Step 0: 30 MW import for 0.25 h at 50 $/MWh; 22 MW mining at 100 $/MWh; 8 MW GPU at 1600.
    assert plan.energy_cost_usd[0] == pytest.approx(30 * 0.25 * 50)
    assert plan.mining_revenue_usd[0] == pytest.approx(22 * 0.25 * 100)
    assert plan.gpu_revenue_usd[0] == pytest.approx(8 * 0.25 * 1600)
    assert plan.emissions_kg[0] == pytest.approx(30 * 0.25 * 400)
    assert plan.net_margin_usd[0] == pytest.approx(550 + 3200 - 375)


def test_problem_is_dpp_and_replans_without_recanonicalizing(model: DispatchModel) -> None:
    assert model.problem.is_dpp()
    model.plan(snapshot(price=50.0))
    compiled = model.problem._cache.param_prog
    assert compiled is not None
    model.plan(snapshot(price=150.0))
    assert model.problem._cache.param_prog is compiled


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interconnect_mw", -1.0),
        ("mining_capacity_mw", float("nan")),
        ("miner_efficiency_j_per_th", 0.0),
        ("pue", 0.9),
        ("gpu_capacity_mw", float("inf")),
    ],
)
def test_malformed_spec_raises_a_typed_error_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(SpecError) as caught:
        dataclasses.replace(SPEC, **{field: value})  # type: ignore[arg-type]
    assert caught.value.field == field


def test_snapshot_of_the_wrong_length_names_the_field(model: DispatchModel) -> None:
    with pytest.raises(SpecError, match=r"sites\.a\.step_hours: expected 4 steps"):
        model.plan(snapshot(n=3))


def test_nan_price_names_the_field(model: DispatchModel) -> None:
    bad = dataclasses.replace(snapshot(), price_usd_per_mwh=np.array([1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(SpecError) as caught:
        model.plan(bad)
    assert caught.value.field == "sites.a.price_usd_per_mwh"
