"""Property tests on random valid snapshots: limits hold, no NaN, plan length = horizon, and the
objective equals an independent solve of the same LP built directly for scipy's HiGHS."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.sparse import eye, hstack, vstack

from optimizer import DispatchModel, SiteSnapshot, SiteSpec
from optimizer.model import GPU_FLOOR_PENALTY_USD_PER_MWH, SIGNAL_PENALTY_USD_PER_MWH

N = 6
TOL = 1e-6

finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def cases(draw: st.DrawFn) -> tuple[SiteSpec, SiteSnapshot]:
    spec = SiteSpec(
        site_id="p",
        interconnect_mw=draw(st.floats(1.0, 500.0)),
        mining_capacity_mw=draw(st.floats(0.0, 400.0)),
        miner_efficiency_j_per_th=draw(st.floats(12.0, 60.0)),
        gpu_capacity_mw=draw(st.floats(0.0, 300.0)),
        pue=draw(st.floats(1.0, 1.6)),
    )

    def curve(low: float, high: float) -> np.ndarray:
        return np.array(draw(st.lists(st.floats(low, high), min_size=N, max_size=N)))

    demand = curve(0.0, 300.0)
    caps = np.array(
        draw(st.lists(st.one_of(st.just(np.inf), st.floats(0.0, 600.0)), min_size=N, max_size=N))
    )
    snap = SiteSnapshot(
        step_hours=np.array(
            draw(st.lists(st.sampled_from([1 / 12, 0.25, 1.0]), min_size=N, max_size=N))
        ),
        price_usd_per_mwh=curve(-200.0, 5000.0),
        carbon_g_per_kwh=curve(0.0, 900.0),
        hashprice_usd_per_th_day=curve(0.01, 0.2),
        gpu_value_usd_per_mwh=curve(0.0, 3000.0),
        gpu_demand_mw=demand,
        gpu_floor_mw=demand * np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=N, max_size=N))),
        mining_available_mw=curve(0.0, 400.0),
        signal_cap_mw=caps,
        carbon_price_usd_per_t=draw(st.floats(0.0, 200.0)),
    )
    return spec, snap


def independent_objective(spec: SiteSpec, s: SiteSnapshot) -> float:
    """The same LP written out by hand for scipy (no cvxpy), maximised via -min."""
    h = s.step_hours
    revenue = s.hashprice_usd_per_th_day * 1e6 / (spec.miner_efficiency_j_per_th * 24.0)
    grid = spec.pue * (s.price_usd_per_mwh + s.carbon_g_per_kwh * s.carbon_price_usd_per_t / 1e3)
    c = -np.concatenate(
        [
            h * (revenue - grid),
            h * (s.gpu_value_usd_per_mwh - grid),
            -h * GPU_FLOOR_PENALTY_USD_PER_MWH,
            -h * SIGNAL_PENALTY_USD_PER_MWH,
        ]
    )
    i, z = eye(N), eye(N) * 0.0
    a_ub = vstack(
        [
            hstack([z, -i, -i, z]),  # gpu + shortfall >= floor
            hstack([spec.pue * i, spec.pue * i, z, z]),  # import <= interconnect
            hstack([spec.pue * i, spec.pue * i, z, -i]),  # import - excess <= signal cap
        ]
    )
    b_ub = np.concatenate(
        [
            -s.gpu_floor_mw,
            np.full(N, spec.interconnect_mw),
            np.minimum(s.signal_cap_mw, 2 * spec.interconnect_mw + 1),
        ]
    )
    bounds = (
        [(0, min(a, spec.mining_capacity_mw)) for a in s.mining_available_mw]
        + [(0, min(d, spec.gpu_capacity_mw)) for d in s.gpu_demand_mw]
        + [(0, None)] * (2 * N)
    )
    result = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert result.status == 0, result.message
    return float(-result.fun)


@settings(max_examples=60, deadline=None)
@given(cases())
def test_limits_hold_and_objective_matches_an_independent_solve(
    case: tuple[SiteSpec, SiteSnapshot],
) -> None:
    spec, snap = case
    plan = DispatchModel(spec, N).plan(snap)
    for series in (plan.mining_mw, plan.gpu_mw, plan.grid_import_mw, plan.gpu_shortfall_mw):
        assert series.shape == (N,)
        assert np.isfinite(series).all()
    assert (
        plan.mining_mw <= np.minimum(snap.mining_available_mw, spec.mining_capacity_mw) + TOL
    ).all()
    assert (plan.gpu_mw <= np.minimum(snap.gpu_demand_mw, spec.gpu_capacity_mw) + TOL).all()
    assert (plan.grid_import_mw <= spec.interconnect_mw + TOL).all()
    assert (plan.gpu_mw + plan.gpu_shortfall_mw >= snap.gpu_floor_mw - TOL).all()
    assert (plan.grid_import_mw - plan.signal_excess_mw <= snap.signal_cap_mw + TOL).all()
    assert plan.grid_import_mw == pytest.approx(spec.pue * (plan.mining_mw + plan.gpu_mw))
    expected = independent_objective(spec, snap)
    assert plan.objective_usd == pytest.approx(expected, rel=1e-6, abs=1e-6)
