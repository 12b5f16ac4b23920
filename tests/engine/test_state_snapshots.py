"""State folding and snapshot translation: routing by node/region/site, past data only, and
deterministic decision ids."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from optimizer import DispatchModel, Horizon
from schemas import (
    CarbonEvent,
    ComputeDemandEvent,
    GridSignalEvent,
    HashpriceEvent,
    PriceEvent,
    TelemetryEvent,
)
from streams.engine.decisions import decision_id, to_decision
from streams.engine.fleet import Fleet
from streams.engine.snapshots import (
    FORECAST_ERROR_DECAY,
    FORECAST_PERSISTENCE,
    RoundReads,
    build_snapshot,
)
from streams.engine.state import FleetState, UnknownSiteError
from tests.factories import mining_site, telemetry

T0 = datetime(2024, 8, 20, 12, tzinfo=UTC)
Q = timedelta(minutes=15)
H4 = Horizon((15, 15, 15, 15))


def price(k: int, value: float, node: str = "HB_SOUTH") -> PriceEvent:
    return PriceEvent(
        interval_start=T0 + k * Q, interval_end=T0 + (k + 1) * Q, node=node, price_usd_per_mwh=value
    )


def hashprice() -> HashpriceEvent:
    return HashpriceEvent(
        interval_start=T0 - timedelta(hours=12),
        interval_end=T0 + timedelta(hours=12),
        hashprice_usd_per_th_day=0.048,
    )


@pytest.fixture
def state() -> FleetState:
    fleet = Fleet(
        sites=(
            mining_site(),
            mining_site(site_id="site-b", price_node="PJM_DOM", carbon_region="PJM"),
        )
    )
    return FleetState(fleet)


def test_events_route_to_the_sites_they_affect(state: FleetState) -> None:
    assert state.apply(price(0, 20.0)).sites == {"site-a"}
    assert state.apply(price(0, 20.0, node="NOBODY")).sites == frozenset()
    assert state.apply(hashprice()).sites == {"site-a", "site-b"}
    carbon = CarbonEvent(
        interval_start=T0, interval_end=T0 + Q, region="PJM", average_intensity_g_per_kwh=350.0
    )
    assert state.apply(carbon).sites == {"site-b"}
    signal = GridSignalEvent(
        interval_start=T0,
        interval_end=T0 + Q,
        signal_id="s1",
        signal_type="demand_response",
        region="ERCOT",
        limit_mw=5.0,
    )
    applied = state.apply(signal)
    assert applied.sites == {"site-a"}
    assert applied.trigger == "signal"


def test_repeated_or_older_telemetry_changes_nothing_to_replan(state: FleetState) -> None:
    assert state.apply(telemetry("site-a", 1)).sites == {"site-a"}
    assert state.apply(telemetry("site-a", 1)).sites == frozenset()  # a repeat
    assert state.apply(telemetry("site-a", 0)).sites == frozenset()  # older than what we hold
    assert state.apply(telemetry("site-a", 1, mining_available_mw=9.0)).sites == {"site-a"}
    assert state.telemetry["site-a"].mining_available_mw == 9.0
    assert state.apply(telemetry("site-a", 2, mining_available_mw=9.0)).sites == {"site-a"}


def test_site_scoped_event_for_an_unknown_site_raises(state: FleetState) -> None:
    telemetry = TelemetryEvent(
        interval_start=T0,
        interval_end=T0 + Q,
        site_id="ghost",
        mining_mw=1.0,
        gpu_mw=1.0,
        miners_online=1,
        mining_available_mw=1.0,
    )
    with pytest.raises(UnknownSiteError, match="ghost"):
        state.apply(telemetry)


def test_no_snapshot_until_price_and_hashprice_are_known(state: FleetState) -> None:
    site = state.sites["site-a"]
    assert build_snapshot(state, site, H4) is None
    state.apply(price(0, 20.0))
    assert build_snapshot(state, site, H4) is None
    state.apply(hashprice())
    view = build_snapshot(state, site, H4)
    assert view is not None
    assert view.now == T0
    assert "carbon intensity unknown for ERCOT: emissions assumed 0" in view.notes


def test_snapshot_uses_only_data_known_at_its_clock(state: FleetState) -> None:
    site = state.sites["site-a"]
    state.apply(hashprice())
    for k, value in enumerate([10.0, 20.0, 30.0]):
        state.apply(price(k, value))
    view = build_snapshot(state, site, H4)
    assert view is not None
    assert view.now == T0 + 2 * Q  # the newest price interval is "now"
    # Nothing after now is known: the horizon holds the last value, and says so.
    assert list(view.snapshot.price_usd_per_mwh) == [30.0, 30.0, 30.0, 30.0]
    assert "price: 3 of 4 steps held at the last known value" in view.notes


def test_telemetry_demand_and_signals_shape_the_snapshot(state: FleetState) -> None:
    site = state.sites["site-a"]
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    state.apply(telemetry("site-a", 0, t0=T0, mining_available_mw=12.5))
    state.apply(
        ComputeDemandEvent(
            interval_start=T0,
            interval_end=T0 + Q,
            site_id="site-a",
            contracted_floor_mw=2.0,
            demand_mw=6.0,
            value_usd_per_mwh=900.0,
        )
    )
    state.apply(
        GridSignalEvent(
            interval_start=T0 + Q,
            interval_end=T0 + 2 * Q,
            signal_id="cp",
            signal_type="coincident_peak",
            site_id="site-a",
            limit_mw=4.0,
        )
    )
    view = build_snapshot(state, site, H4)
    assert view is not None
    snap = view.snapshot
    assert list(snap.mining_available_mw) == [12.5] * 4
    assert (snap.gpu_floor_mw[0], snap.gpu_demand_mw[0], snap.gpu_value_usd_per_mwh[0]) == (
        2.0,
        6.0,
        900.0,
    )
    assert snap.signal_cap_mw[0] == np.inf
    assert snap.signal_cap_mw[1] == 4.0


def test_decision_ids_are_deterministic_and_change_with_inputs(state: FleetState) -> None:
    site = state.sites["site-a"]
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    first = build_snapshot(state, site, H4)
    again = build_snapshot(state, site, H4)
    assert first is not None and again is not None
    assert first.input_version == again.input_version
    state.apply(price(0, 25.0))  # a corrected price for the same interval
    changed = build_snapshot(state, site, H4)
    assert changed is not None and changed.input_version != first.input_version
    assert decision_id("site-a", T0, first.input_version) != decision_id(
        "site-a", T0, changed.input_version
    )


def test_sites_of_one_node_share_a_round_s_reads_and_get_the_same_snapshots() -> None:
    fleet = Fleet(sites=(mining_site(), mining_site(site_id="site-b")))
    state = FleetState(fleet)
    state.apply(hashprice())
    for k in range(3):
        state.apply(price(k, 20.0 + k))
    reads = RoundReads(H4)
    shared = {s: build_snapshot(state, site, H4, reads=reads) for s, site in state.sites.items()}
    alone = {s: build_snapshot(state, site, H4) for s, site in state.sites.items()}
    for site_id in ("site-a", "site-b"):
        view, own = shared[site_id], alone[site_id]
        assert view is not None and own is not None
        assert view.input_version == own.input_version  # the same inputs, read once
        assert view.snapshot.price_usd_per_mwh.tolist() == [22.0, 22.0, 22.0, 22.0]
    curve = state.prices["HB_SOUTH"]
    assert reads.read(curve, T0 + 2 * Q) is reads.read(curve, T0 + 2 * Q)


def test_to_decision_validates_against_the_contract(state: FleetState) -> None:
    site = state.sites["site-a"]
    state.apply(hashprice())
    state.apply(price(0, 500.0))
    view = build_snapshot(state, site, H4)
    assert view is not None
    decision = to_decision(view, DispatchModel(site.spec(), 4).plan(view.snapshot), "price")
    assert decision.mining_mw == 0.0
    assert decision.gpu_mw == pytest.approx(8.0)
    assert len(decision.horizon) == 4
    assert decision.interval_end - decision.interval_start == Q


def test_coincident_peak_alert_prices_import_and_telemetry_feeds_the_ramp(
    state: FleetState,
) -> None:
    site = state.sites["site-a"]
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    state.apply(
        GridSignalEvent(
            interval_start=T0 + Q,
            interval_end=T0 + 2 * Q,
            signal_id="4cp-1",
            signal_type="coincident_peak",
            region="ERCOT",
            incentive_usd_per_mwh=200.0,
        )
    )
    state.apply(telemetry("site-a", 0, t0=T0, mining_mw=7.0, battery_soc_mwh=1.5))
    view = build_snapshot(state, site, H4)
    assert view is not None
    # $200/MWh expected over a 15-minute step is $50 per MW of import in that step.
    assert list(view.snapshot.curve("peak_cost_usd_per_mw")) == [0.0, 50.0, 0.0, 0.0]
    assert list(view.snapshot.signal_cap_mw) == [np.inf] * 4
    assert view.snapshot.mining_now_mw == 7.0
    assert view.snapshot.battery_soc_mwh == 1.5


def test_a_coincident_peak_alert_is_charged_only_for_the_hours_it_overlaps_a_step(
    state: FleetState,
) -> None:
    site = state.sites["site-a"]
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    # A 15-minute alert inside the second, hourly step of a horizon: a quarter of that hour.
    state.apply(
        GridSignalEvent(
            interval_start=T0 + timedelta(minutes=30),
            interval_end=T0 + timedelta(minutes=45),
            signal_id="4cp-quarter",
            signal_type="coincident_peak",
            region="ERCOT",
            incentive_usd_per_mwh=68_500.0,
        )
    )
    view = build_snapshot(state, site, Horizon((15, 60, 60)))
    assert view is not None
    assert list(view.snapshot.curve("peak_cost_usd_per_mw")) == [0.0, 17_125.0, 0.0]


def test_horizon_steps_follow_the_mixed_horizon(state: FleetState) -> None:
    site = state.sites["site-a"]
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    view = build_snapshot(state, site, Horizon.mixed())
    assert view is not None
    assert len(view.step_starts) == 35
    assert view.step_ends[0] - view.step_starts[0] == timedelta(minutes=5)
    assert view.step_ends[-1] - view.step_starts[-1] == timedelta(hours=1)
    assert view.step_ends[-1] == T0 + timedelta(hours=24)


def test_day_ahead_prices_are_foresight_not_a_clock(state: FleetState) -> None:
    site = state.sites["site-a"]
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    tomorrow = PriceEvent(
        interval_start=T0 + 3 * Q,
        interval_end=T0 + 4 * Q,
        node="HB_SOUTH",
        market="day_ahead",
        price_usd_per_mwh=300.0,
    )
    state.apply(tomorrow)
    view = build_snapshot(state, site, H4)
    assert view is not None
    assert view.now == T0  # still the newest real-time interval
    assert list(view.snapshot.price_usd_per_mwh) == [20.0, 20.0, 20.0, 300.0]
    assert "price: 2 of 4 steps held at the last known value" in view.notes


def test_day_ahead_prices_forecast_the_horizon_corrected_by_their_last_error(
    state: FleetState,
) -> None:
    """Beyond the last real-time price, the steps starting within FORECAST_PERSISTENCE of it
    hold it; later steps follow the day-ahead shape plus the day-ahead price's error at the last
    real-time interval, fading with FORECAST_ERROR_DECAY."""
    site = state.sites["site-a"]
    state.apply(hashprice())
    for k, value in enumerate([30.0, 40.0, 50.0, 60.0]):
        state.apply(
            PriceEvent(
                interval_start=T0 + k * Q,
                interval_end=T0 + (k + 1) * Q,
                node="HB_SOUTH",
                market="day_ahead",
                price_usd_per_mwh=value,
            )
        )
    state.apply(price(0, 130.0))  # real time came in $100 above the day-ahead price
    view = build_snapshot(state, site, H4)
    assert view is not None
    assert FORECAST_PERSISTENCE == 2 * Q
    expected = [130.0, 130.0, 130.0, 60.0 + 100.0 * math.exp(-3 * Q / FORECAST_ERROR_DECAY)]
    assert list(view.snapshot.price_usd_per_mwh) == pytest.approx(expected)
    assert any("1 of 4 steps from the day-ahead forecast" in n for n in view.notes)
    assert "price: 2 of 4 steps held at the last known value" in view.notes
    # Without day-ahead prices the last real-time price is held, as before.
    bare = FleetState(state.fleet)
    bare.apply(hashprice())
    bare.apply(price(0, 130.0))
    held = build_snapshot(bare, site, H4)
    assert held is not None
    assert list(held.snapshot.price_usd_per_mwh) == [130.0] * 4


def test_the_forecast_is_corrected_from_the_last_real_time_price_when_a_day_ahead_hour_covers_now(
    state: FleetState,
) -> None:
    """Settled prices arrive an interval late: at the top of an hour the newest real-time price
    is the previous interval's, and the day-ahead hour starting now covers now. The correction
    still starts from that real-time price (a spike carries on into the next steps) instead of
    taking the raw day-ahead price for the whole horizon."""
    site = state.sites["site-a"]
    state.apply(hashprice())
    hour = timedelta(hours=1)
    for start in (T0 - hour, T0):
        state.apply(
            PriceEvent(
                interval_start=start,
                interval_end=start + hour,
                node="HB_SOUTH",
                market="day_ahead",
                price_usd_per_mwh=50.0,
            )
        )
    state.apply(price(-1, 1050.0))  # the last settled interval spiked $1,000 above day-ahead
    view = build_snapshot(state, site, H4, now=T0)
    assert view is not None
    decay = [math.exp(-(k + 1) * Q / FORECAST_ERROR_DECAY) for k in range(4)]
    # 15 and 30 minutes after the spike: held; later: day-ahead plus the fading error.
    expected = [1050.0, 1050.0] + [50.0 + 1000 * d for d in decay[2:]]
    assert list(view.snapshot.price_usd_per_mwh) == pytest.approx(expected)
    assert any("2 of 4 steps from the day-ahead forecast" in n for n in view.notes)
    assert "price: 2 of 4 steps held at the last known value" in view.notes
