"""Reserve co-optimization, golden cases checked by hand, a property on random snapshots, and
compile-once.

Numbers (tests/optimizer/cases.py): 15-minute steps, mining break-even $100/MWh at PUE 1, a
30 MW interconnect, GPU demand 8 MW (floor 5) at $1,600/MWh, mining up to 25 MW. At a node
price of $150/MWh every MW of mining loses $50/MWh; a reserve price above $50/MW-h pays more
than that loss, so holding the MW (mining running) is worth it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import (
    DispatchModel,
    FleetModel,
    FleetSnapshot,
    FleetSpec,
    ReserveSnapshot,
    ReserveSpec,
    SiteSnapshot,
    SiteSpec,
    SpecError,
)
from optimizer.fleet import (
    GPU_FLOOR_PENALTY_USD_PER_MWH,
    RESERVE_COMMIT_PENALTY_USD_PER_MWH,
    commitment_penalty_usd_per_mwh,
    floor_penalty_usd_per_mwh,
)
from tests.optimizer.cases import SCHEMA_MAX_PRICE, SPEC, snapshot

N = 4
TOL = 1e-6
QUALIFIED = (ReserveSpec("ecrs", 10.0), ReserveSpec("rrs", 4.0))
SELLER = dataclasses.replace(SPEC, reserves=QUALIFIED)


def offer(
    ecrs: float,
    rrs: float = 0.0,
    *,
    committed_ecrs: float = 0.0,
    deployed: float | None = None,
    **curves: float,
) -> SiteSnapshot:
    """The hand-checkable snapshot with reserve prices (flat), an ECRS commitment, a deployment."""
    base = snapshot(N, **curves)
    return dataclasses.replace(
        base,
        reserves={
            "ecrs": ReserveSnapshot(np.full(N, ecrs), committed_mw=np.full(N, committed_ecrs)),
            "rrs": ReserveSnapshot(np.full(N, rrs)),
        },
        reserve_deployed_mw=None if deployed is None else np.full(N, deployed),
    )


@pytest.fixture
def model() -> DispatchModel:
    return DispatchModel(SELLER, N)


def test_reserve_is_held_above_break_even_when_its_price_pays_more_than_the_loss(
    model: DispatchModel,
) -> None:
    plan = model.plan(offer(ecrs=80.0, rrs=30.0, price=150.0))
    # ECRS pays 80 > the 50 $/MWh mining loses: all 10 qualified MW held, mining runs for
    # them. RRS pays 30 < 50: none. No mining beyond the reserve (each MW would lose 50).
    assert plan.reserve_mw["ecrs"] == pytest.approx(np.full(N, 10.0))
    assert plan.reserve_mw["rrs"] == pytest.approx(np.zeros(N))
    assert plan.mining_mw == pytest.approx(np.full(N, 10.0))
    assert plan.reserve_revenue_usd == pytest.approx(np.full(N, 10 * 0.25 * 80.0))  # $200
    # GPU 8 x 0.25 x 1600 + mining 10 x 0.25 x 100 + reserve 200 - energy 18 x 0.25 x 150
    assert plan.net_margin_usd == pytest.approx(np.full(N, 3200.0 + 250.0 + 200.0 - 675.0))
    assert "reserve_mining" in plan.binding_first_step
    assert plan.slacks_used == {}


def test_reserve_paying_less_than_the_loss_is_not_held(model: DispatchModel) -> None:
    plan = model.plan(offer(ecrs=40.0, rrs=40.0, price=150.0))
    assert plan.mining_mw == pytest.approx(np.zeros(N))
    assert plan.reserve_total_mw == pytest.approx(np.zeros(N))
    assert plan.reserve_revenue_usd == pytest.approx(np.zeros(N))


def test_reserve_never_exceeds_the_mining_that_runs() -> None:
    # Below break-even mining fills the 22 MW the GPUs leave; 20 + 10 MW are qualified, but
    # only the 22 MW running can be curtailed, so only 22 MW are held (ECRS first: it pays more).
    spec = dataclasses.replace(SPEC, reserves=(ReserveSpec("ecrs", 20.0), ReserveSpec("rrs", 10.0)))
    plan = DispatchModel(spec, N).plan(offer(ecrs=9.0, rrs=5.0, price=50.0))
    assert plan.mining_mw == pytest.approx(np.full(N, 22.0))
    assert plan.reserve_mw["ecrs"] == pytest.approx(np.full(N, 20.0))
    assert plan.reserve_mw["rrs"] == pytest.approx(np.full(N, 2.0))
    assert plan.reserve_revenue_usd == pytest.approx(np.full(N, 0.25 * (20 * 9.0 + 2 * 5.0)))


def test_the_snapshot_limit_and_the_qualified_max_both_cap_the_offer(model: DispatchModel) -> None:
    snap = offer(ecrs=80.0, price=150.0)
    limited = dataclasses.replace(
        snap,
        reserves={
            **snap.reserves,
            "ecrs": ReserveSnapshot(np.full(N, 80.0), max_mw=np.array([0.0, 3.0, 50.0, 10.0])),
        },
    )
    plan = model.plan(limited)
    assert plan.reserve_mw["ecrs"] == pytest.approx([0.0, 3.0, 10.0, 10.0])


def test_a_commitment_keeps_mining_running_at_a_scarcity_price(model: DispatchModel) -> None:
    # Sold 6 MW of ECRS for these hours; the price is now at a scarcity level and the reserve
    # price is 0 (nothing more to earn): the 6 MW still run, because they were sold.
    plan = model.plan(offer(ecrs=0.0, committed_ecrs=6.0, price=4857.82))
    assert plan.reserve_mw["ecrs"] == pytest.approx(np.full(N, 6.0))
    assert plan.mining_mw == pytest.approx(np.full(N, 6.0))
    assert plan.reserve_shortfall_mw == pytest.approx(np.zeros(N))


@pytest.mark.parametrize("pue", [1.0, 3.0])
def test_a_commitment_is_kept_at_the_highest_price_the_contract_allows(pue: float) -> None:
    spec = dataclasses.replace(SELLER, pue=pue, interconnect_mw=100.0)
    dirty = offer(
        ecrs=0.0, committed_ecrs=6.0, price=SCHEMA_MAX_PRICE, carbon=5_000.0, carbon_price=1_000.0
    )
    plan = DispatchModel(spec, N).plan(dirty)
    assert plan.mining_mw == pytest.approx(np.full(N, 6.0))
    assert plan.reserve_shortfall_mw == pytest.approx(np.zeros(N))
    assert plan.gpu_mw == pytest.approx(np.full(N, 5.0))  # GPU spot gives way, floor kept


def test_an_impossible_commitment_is_a_penalised_shortfall_below_the_floor_and_signals(
    model: DispatchModel,
) -> None:
    # Sold 6 MW; a grid signal caps import at 10 MW and the GPU floor needs 5: only 5 MW of
    # mining fit. The signal and the floor outrank the commitment; 1 MW is short, a plan
    # (not an error) that says so. The GPU spot demand above the floor gives way to the 5 MW.
    plan = model.plan(offer(ecrs=30.0, committed_ecrs=6.0, price=150.0, signal_cap=10.0))
    assert plan.grid_import_mw == pytest.approx(np.full(N, 10.0))
    assert plan.gpu_mw == pytest.approx(np.full(N, 5.0))
    assert plan.mining_mw == pytest.approx(np.full(N, 5.0))
    assert plan.reserve_mw["ecrs"] == pytest.approx(np.full(N, 5.0))
    assert plan.reserve_shortfall_mw == pytest.approx(np.full(N, 1.0))
    assert plan.slacks_used == {"reserve_commit_shortfall_mw": pytest.approx(1.0)}
    assert plan.signal_excess_mw == pytest.approx(np.zeros(N))
    assert plan.gpu_shortfall_mw == pytest.approx(np.zeros(N))


def test_a_deployment_curtails_mining_and_counts_as_the_reserve_delivered(
    model: DispatchModel,
) -> None:
    held = model.plan(offer(ecrs=80.0, committed_ecrs=10.0, price=150.0))
    assert held.mining_mw == pytest.approx(np.full(N, 10.0))
    assert held.grid_import_mw == pytest.approx(np.full(N, 18.0))
    # ERCOT deploys the 10 MW: import capped 10 MW below the site's 18 MW draw. Mining stops
    # at once; the curtailed MW are the reserve delivered: still held and paid, no shortfall.
    deployed = model.plan(
        offer(ecrs=80.0, committed_ecrs=10.0, price=150.0, signal_cap=8.0, deployed=10.0)
    )
    assert deployed.mining_mw == pytest.approx(np.zeros(N))
    assert deployed.gpu_mw == pytest.approx(np.full(N, 8.0))
    assert deployed.reserve_mw["ecrs"] == pytest.approx(np.full(N, 10.0))
    assert deployed.reserve_shortfall_mw == pytest.approx(np.zeros(N))
    assert deployed.reserve_revenue_usd == pytest.approx(np.full(N, 200.0))
    assert deployed.slacks_used == {}


def test_penalty_tiers_stay_ordered_at_any_price() -> None:
    for price in (0.0, 150.0, SCHEMA_MAX_PRICE):
        energy = np.full(N, price)
        commit = commitment_penalty_usd_per_mwh(
            pue=3.0, energy_usd_per_mwh=energy, gpu_value_usd_per_mwh=100_000.0
        )
        floor = floor_penalty_usd_per_mwh(
            pue=3.0,
            energy_usd_per_mwh=energy,
            mining_revenue_usd_per_mwh=np.full(N, 500.0),
            commitment_usd_per_mwh=commit,
        )
        assert commit >= RESERVE_COMMIT_PENALTY_USD_PER_MWH
        assert commit > 3.0 * price + 100_000.0  # above what breaking it could gain
        assert floor > commit
        assert floor >= GPU_FLOOR_PENALTY_USD_PER_MWH


def test_the_problem_with_reserves_is_dpp_and_replans_without_recanonicalizing() -> None:
    spec = FleetSpec(sites=(SELLER, dataclasses.replace(SPEC, site_id="b")))
    model = FleetModel(spec, N)
    assert model.problem.is_dpp()
    model.plan(FleetSnapshot(sites={"a": offer(ecrs=80.0, price=150.0), "b": snapshot()}))
    compiled = model.problem._cache.param_prog
    again = model.plan(
        FleetSnapshot(
            sites={
                "a": offer(ecrs=10.0, committed_ecrs=3.0, price=150.0, deployed=1.0),
                "b": snapshot(price=500.0),
            }
        )
    )
    assert model.problem._cache.param_prog is compiled
    assert again.sites["a"].reserve_mw["ecrs"] == pytest.approx(np.full(N, 3.0))
    assert again.sites["b"].reserve_mw == {}


def test_reserve_inputs_are_checked_and_named() -> None:
    model = DispatchModel(SELLER, N)
    with pytest.raises(SpecError, match=r"sites\.a\.reserves\.rrs: missing from the snapshot"):
        model.plan(
            dataclasses.replace(offer(ecrs=1.0), reserves={"ecrs": offer(1.0).reserves["ecrs"]})
        )
    stray = {**offer(1.0).reserves, "non_spin": ReserveSnapshot(np.ones(N))}
    with pytest.raises(SpecError, match=r"sites\.a\.reserves\.non_spin: not a reserve product"):
        model.plan(dataclasses.replace(offer(ecrs=1.0), reserves=stray))
    bad = {**offer(1.0).reserves, "rrs": ReserveSnapshot(np.array([1.0, np.nan, 1.0, 1.0]))}
    with pytest.raises(SpecError, match=r"sites\.a\.reserves\.rrs\.price_usd_per_mw_h"):
        model.plan(dataclasses.replace(offer(ecrs=1.0), reserves=bad))
    with pytest.raises(SpecError, match="reserve_deployed_mw"):
        model.plan(dataclasses.replace(offer(ecrs=1.0), reserve_deployed_mw=-np.ones(N)))
    with pytest.raises(SpecError, match="reserves"):
        dataclasses.replace(SPEC, reserves=(ReserveSpec("ecrs", 1.0), ReserveSpec("ecrs", 2.0)))
    with pytest.raises(SpecError, match=r"reserves\.ecrs\.max_mw"):
        ReserveSpec("ecrs", -1.0)


def or_zeros(curve: np.ndarray | None) -> np.ndarray:
    return np.zeros(N) if curve is None else curve


@st.composite
def reserve_cases(draw: st.DrawFn) -> tuple[SiteSpec, SiteSnapshot]:
    spec = SiteSpec(
        site_id="p",
        interconnect_mw=draw(st.floats(1.0, 300.0)),
        mining_capacity_mw=draw(st.floats(0.0, 200.0)),
        miner_efficiency_j_per_th=draw(st.floats(12.0, 60.0)),
        gpu_capacity_mw=draw(st.floats(0.0, 100.0)),
        pue=draw(st.floats(1.0, 1.6)),
        mining_ramp_up_mw_per_min=draw(st.one_of(st.none(), st.floats(0.0, 5.0))),
        reserves=(
            ReserveSpec("ecrs", draw(st.floats(0.0, 200.0))),
            ReserveSpec("rrs", draw(st.floats(0.0, 200.0))),
        ),
    )

    def curve(low: float, high: float) -> np.ndarray:
        return np.array(draw(st.lists(st.floats(low, high), min_size=N, max_size=N)))

    demand = curve(0.0, 100.0)
    snap = SiteSnapshot(
        step_hours=np.array(
            draw(st.lists(st.sampled_from([1 / 12, 0.25, 1.0]), min_size=N, max_size=N))
        ),
        price_usd_per_mwh=curve(-200.0, 5000.0),
        carbon_g_per_kwh=curve(0.0, 900.0),
        hashprice_usd_per_th_day=curve(0.01, 0.2),
        gpu_value_usd_per_mwh=curve(0.0, 3000.0),
        gpu_demand_mw=demand,
        gpu_floor_mw=demand * curve(0.0, 1.0),
        mining_available_mw=curve(0.0, 200.0),
        signal_cap_mw=np.array(
            draw(
                st.lists(st.one_of(st.just(np.inf), st.floats(0.0, 400.0)), min_size=N, max_size=N)
            )
        ),
        mining_now_mw=draw(st.one_of(st.none(), st.floats(0.0, 200.0))),
        reserves={
            product: ReserveSnapshot(
                curve(0.0, 5000.0), max_mw=curve(0.0, 200.0), committed_mw=curve(0.0, 100.0)
            )
            for product in ("ecrs", "rrs")
        },
        reserve_deployed_mw=draw(st.one_of(st.none(), st.just(curve(0.0, 50.0)))),
    )
    return spec, snap


@settings(max_examples=60, deadline=None)
@given(reserve_cases())
def test_reserve_stays_within_mining_limits_and_commitments(
    case: tuple[SiteSpec, SiteSnapshot],
) -> None:
    spec, snap = case
    plan = DispatchModel(spec, N).plan(snap)
    deployed = snap.curve("reserve_deployed_mw")
    # Every step: held reserve is running mining (or mining a deployment has curtailed).
    assert (plan.reserve_total_mw <= plan.mining_mw + deployed + TOL).all()
    if snap.reserve_deployed_mw is None:
        assert (plan.reserve_total_mw <= plan.mining_mw + TOL).all()
    for qualified in spec.reserves:
        held = plan.reserve_mw[qualified.product]
        given_in = snap.reserves[qualified.product]
        assert held.shape == (N,)
        assert np.isfinite(held).all()
        assert (held >= 0).all()
        assert (held <= qualified.max_mw + TOL).all()
        assert given_in.max_mw is not None
        assert (held <= given_in.max_mw + TOL).all()
    committed = sum(
        (or_zeros(snap.reserves[r.product].committed_mw) for r in spec.reserves),
        start=np.zeros(N),
    )
    assert (plan.reserve_total_mw + plan.reserve_shortfall_mw >= committed - TOL).all()
    revenue = sum(
        (
            plan.reserve_mw[r.product]
            * snap.step_hours
            * snap.reserves[r.product].price_usd_per_mw_h
            for r in spec.reserves
        ),
        start=np.zeros(N),
    )
    assert plan.reserve_revenue_usd == pytest.approx(revenue, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("same_sale", "held"),
    [
        # Each quarter sold on its own: hold the three that pay, drop the spiking fourth.
        (None, [10.0, 10.0, 10.0, 0.0]),
        # One hour, sold as one: holding it through the spike (mining running at $5,000/MWh)
        # loses far more than the three quarters earn, so none of it is held.
        (np.array([0.0, 1.0, 1.0, 1.0]), [0.0, 0.0, 0.0, 0.0]),
        # Two half-hours: the first is held, the second (with the spike) is not.
        (np.array([0.0, 1.0, 0.0, 1.0]), [10.0, 10.0, 0.0, 0.0]),
    ],
)
def test_steps_sold_as_one_market_interval_hold_the_same_mw(
    model: DispatchModel, same_sale: np.ndarray | None, held: list[float]
) -> None:
    base = offer(ecrs=80.0, price=150.0)
    spiking = dataclasses.replace(
        base,
        price_usd_per_mwh=np.array([150.0, 150.0, 150.0, 5000.0]),
        reserves={
            **base.reserves,
            "ecrs": dataclasses.replace(base.reserves["ecrs"], same_sale_as_previous=same_sale),
        },
    )
    plan = model.plan(spiking)
    assert plan.reserve_mw["ecrs"] == pytest.approx(np.array(held), abs=TOL)


def test_a_tie_on_the_first_step_is_a_spec_error(model: DispatchModel) -> None:
    base = offer(ecrs=80.0)
    bad = dataclasses.replace(
        base,
        reserves={
            **base.reserves,
            "ecrs": dataclasses.replace(
                base.reserves["ecrs"], same_sale_as_previous=np.array([1.0, 1.0, 1.0, 1.0])
            ),
        },
    )
    with pytest.raises(SpecError, match="same_sale_as_previous"):
        model.plan(bad)
