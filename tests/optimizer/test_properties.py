"""Property tests on random valid snapshots: limits and balances hold within 1e-6, no NaN, plan
length = horizon, and the objective equals an independent solve of the same LP built directly
for scipy's HiGHS (no cvxpy), with PPA, on-site supply, peak charges and ramp limits in play."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.sparse import csr_matrix, eye, hstack, vstack

from optimizer import DispatchModel, SiteSnapshot, SiteSpec
from optimizer.fleet import GPU_FLOOR_PENALTY_USD_PER_MWH, SIGNAL_PENALTY_USD_PER_MWH
from tests.optimizer.cases import SCHEMA_MAX_PRICE

N = 6
TOL = 1e-6


@st.composite
def cases(draw: st.DrawFn) -> tuple[SiteSpec, SiteSnapshot]:
    spec = SiteSpec(
        site_id="p",
        interconnect_mw=draw(st.floats(1.0, 500.0)),
        mining_capacity_mw=draw(st.floats(0.0, 400.0)),
        miner_efficiency_j_per_th=draw(st.floats(12.0, 60.0)),
        gpu_capacity_mw=draw(st.floats(0.0, 300.0)),
        pue=draw(st.floats(1.0, 1.6)),
        mining_ramp_up_mw_per_min=draw(st.one_of(st.none(), st.floats(0.0, 5.0))),
    )

    def curve(low: float, high: float) -> np.ndarray:
        return np.array(draw(st.lists(st.floats(low, high), min_size=N, max_size=N)))

    demand = curve(0.0, 300.0)
    caps = np.array(
        draw(st.lists(st.one_of(st.just(np.inf), st.floats(0.0, 600.0)), min_size=N, max_size=N))
    )
    hours = draw(st.lists(st.sampled_from([1 / 12, 0.25, 1.0]), min_size=N, max_size=N))
    snap = SiteSnapshot(
        step_hours=np.array(hours),
        price_usd_per_mwh=curve(-200.0, 5000.0),
        carbon_g_per_kwh=curve(0.0, 900.0),
        hashprice_usd_per_th_day=curve(0.01, 0.2),
        gpu_value_usd_per_mwh=curve(0.0, 3000.0),
        gpu_demand_mw=demand,
        gpu_floor_mw=demand * curve(0.0, 1.0),
        mining_available_mw=curve(0.0, 400.0),
        signal_cap_mw=caps,
        carbon_price_usd_per_t=draw(st.floats(0.0, 200.0)),
        onsite_cfe_mw=curve(0.0, 50.0),
        ppa_mw=curve(0.0, 300.0),
        peak_cost_usd_per_mw=curve(0.0, 500.0),
        mining_now_mw=draw(st.one_of(st.none(), st.floats(0.0, 400.0))),
    )
    return spec, snap


def independent_objective(spec: SiteSpec, s: SiteSnapshot) -> float:
    """The same LP written out by hand for scipy: x = [m, g, short, excess, imp, onsite, unm]."""
    h = s.step_hours
    revenue = s.hashprice_usd_per_th_day * 1e6 / (spec.miner_efficiency_j_per_th * 24.0)
    carbon = h * s.carbon_g_per_kwh * s.carbon_price_usd_per_t / 1e3
    import_cost = h * s.price_usd_per_mwh + s.curve("peak_cost_usd_per_mw")
    c = -np.concatenate(
        [
            h * revenue,
            h * s.gpu_value_usd_per_mwh,
            -h * GPU_FLOOR_PENALTY_USD_PER_MWH,
            -h * SIGNAL_PENALTY_USD_PER_MWH,
            -import_cost,
            np.zeros(N),
            -carbon,  # market-based accounting: the carbon price applies to unmatched energy
        ]
    )
    i, z = eye(N), csr_matrix((N, N))
    diff = eye(N) - eye(N, k=-1)
    if spec.mining_ramp_up_mw_per_min is None:
        ramp = np.full(N, spec.mining_capacity_mw)
    else:
        ramp = spec.mining_ramp_up_mw_per_min * h * 60.0
        first_cap = min(s.mining_available_mw[0], spec.mining_capacity_mw)
        ramp[0] = first_cap if s.mining_now_mw is None else s.mining_now_mw + ramp[0]
    a_ub = vstack(
        [
            hstack([z, -i, -i, z, z, z, z]),  # gpu + shortfall >= floor
            hstack([z, z, z, -i, i, z, z]),  # import - excess <= signal cap
            hstack([z, z, z, z, i, z, -i]),  # import - unmatched <= ppa
            hstack([diff, z, z, z, z, z, z]),  # mining ramp-up
        ]
    )
    b_ub = np.concatenate(
        [
            -s.gpu_floor_mw,
            np.minimum(s.signal_cap_mw, 2 * spec.interconnect_mw + 1),
            s.curve("ppa_mw"),
            ramp,
        ]
    )
    a_eq = hstack([-spec.pue * i, -spec.pue * i, z, z, i, i, z])  # import + onsite = facility
    bounds = (
        [(0, min(a, spec.mining_capacity_mw)) for a in s.mining_available_mw]
        + [(0, min(d, spec.gpu_capacity_mw)) for d in s.gpu_demand_mw]
        + [(0, None)] * (2 * N)
        + [(0, spec.interconnect_mw)] * N
        + [(0, o) for o in s.curve("onsite_cfe_mw")]
        + [(0, None)] * N
    )
    result = linprog(
        c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.zeros(N), bounds=bounds, method="highs"
    )
    assert result.status == 0, result.message
    return float(-result.fun)


@settings(max_examples=60, deadline=None)
@given(cases())
def test_limits_hold_and_objective_matches_an_independent_solve(
    case: tuple[SiteSpec, SiteSnapshot],
) -> None:
    spec, snap = case
    plan = DispatchModel(spec, N).plan(snap)
    for series in (
        plan.mining_mw,
        plan.gpu_mw,
        plan.grid_import_mw,
        plan.gpu_shortfall_mw,
        plan.onsite_cfe_used_mw,
        plan.emissions_market_kg,
    ):
        assert series.shape == (N,)
        assert np.isfinite(series).all()
    cap = np.minimum(snap.mining_available_mw, spec.mining_capacity_mw)
    assert (plan.mining_mw <= cap + TOL).all()
    assert (plan.gpu_mw <= np.minimum(snap.gpu_demand_mw, spec.gpu_capacity_mw) + TOL).all()
    assert (plan.grid_import_mw <= spec.interconnect_mw + TOL).all()
    assert (plan.gpu_mw + plan.gpu_shortfall_mw >= snap.gpu_floor_mw - TOL).all()
    assert (plan.grid_import_mw - plan.signal_excess_mw <= snap.signal_cap_mw + TOL).all()
    assert (plan.onsite_cfe_used_mw <= snap.curve("onsite_cfe_mw") + TOL).all()
    facility = spec.pue * (plan.mining_mw + plan.gpu_mw)
    assert plan.grid_import_mw + plan.onsite_cfe_used_mw == pytest.approx(facility, abs=TOL)
    assert (plan.emissions_market_kg <= plan.emissions_kg + TOL).all()
    assert 0.0 <= plan.cfe_score <= 1.0 + TOL
    if spec.mining_ramp_up_mw_per_min is not None and snap.mining_now_mw is not None:
        allowed = snap.mining_now_mw + spec.mining_ramp_up_mw_per_min * snap.step_hours[0] * 60
        assert plan.mining_mw[0] <= allowed + TOL
    expected = independent_objective(spec, snap)
    assert plan.objective_usd == pytest.approx(expected, rel=1e-6, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    price=st.lists(st.floats(-SCHEMA_MAX_PRICE, SCHEMA_MAX_PRICE), min_size=N, max_size=N),
    pue=st.floats(1.0, 3.0),
    carbon_price=st.floats(0.0, 1_000.0),
    hashprice=st.floats(0.01, 0.2),
    floor=st.floats(0.0, 50.0),
)
def test_without_a_grid_signal_the_gpu_floor_is_never_shed_for_a_price(
    price: list[float], pue: float, carbon_price: float, hashprice: float, floor: float
) -> None:
    """Any price the contract accepts, any PUE a site may have: no floor MW is left unserved
    while the interconnect can carry it."""
    spec = SiteSpec(
        site_id="p",
        interconnect_mw=3.0 * 50.0 + 1.0,  # room for any floor at any PUE
        mining_capacity_mw=100.0,
        miner_efficiency_j_per_th=20.0,
        gpu_capacity_mw=60.0,
        pue=pue,
    )
    ones = np.ones(N)
    snap = SiteSnapshot(
        step_hours=ones * 0.25,
        price_usd_per_mwh=np.array(price),
        carbon_g_per_kwh=ones * 900.0,
        hashprice_usd_per_th_day=ones * hashprice,
        gpu_value_usd_per_mwh=ones * 1600.0,
        gpu_demand_mw=ones * 60.0,
        gpu_floor_mw=ones * floor,
        mining_available_mw=ones * 100.0,
        signal_cap_mw=np.full(N, np.inf),
        carbon_price_usd_per_t=carbon_price,
    )
    plan = DispatchModel(spec, N).plan(snap)
    assert (plan.gpu_shortfall_mw <= TOL).all()
    assert (plan.gpu_mw >= floor - TOL).all()
