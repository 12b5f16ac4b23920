"""The decision clock: only real-time prices move it, every other input kind fills its curve or
record; inputs dated absurdly far ahead of the wall clock are rejected as ``future_dated`` (live
only), so no single event, however dated, moves the clock far ahead or freezes decisions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from optimizer import Horizon
from schemas import (
    CarbonEvent,
    ComputeDemandEvent,
    GridSignalEvent,
    HashpriceEvent,
    PpaSupplyEvent,
    PriceEvent,
    ReservePriceEvent,
    TelemetryEvent,
)
from streams.engine.admission import AdmissionLimits, admit
from streams.engine.codec import Rejection, encode
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.ingest import ingest
from streams.engine.snapshots import build_snapshot
from streams.engine.state import FleetState, InputEvent
from tests.factories import T0, Q, hashprice, mining_site, price, telemetry

H4 = Horizon((15, 15, 15, 15))
SITE = "site-a"
FLEET = Fleet(sites=(mining_site(),))
MAX_BYTES = 1_000_000
SKEW_S = 300.0
LOOKAHEAD_S = 14 * 86_400.0
Y2099 = datetime(2099, 1, 1, tzinfo=UTC)


def _price(market: str) -> Callable[[datetime], PriceEvent]:
    return lambda t: PriceEvent(
        interval_start=t,
        interval_end=t + Q,
        node="HB_SOUTH",
        market=market,
        price_usd_per_mwh=9_000.0,
    )


def _carbon(basis: str) -> Callable[[datetime], CarbonEvent]:
    return lambda t: CarbonEvent(
        interval_start=t,
        interval_end=t + Q,
        region="ERCOT",
        basis=basis,
        average_intensity_g_per_kwh=900.0,
    )


def _signal(**target: str) -> Callable[[datetime], GridSignalEvent]:
    return lambda t: GridSignalEvent(
        interval_start=t,
        interval_end=t + Q,
        signal_id="ahead",
        signal_type="emergency",
        limit_mw=0.0,
        **target,
    )


def _demand(t: datetime) -> ComputeDemandEvent:
    return ComputeDemandEvent(
        interval_start=t,
        interval_end=t + Q,
        site_id=SITE,
        contracted_floor_mw=8.0,
        demand_mw=8.0,
        value_usd_per_mwh=0.0,
    )


def _hashprice(t: datetime) -> HashpriceEvent:
    return HashpriceEvent(
        interval_start=t, interval_end=t + timedelta(days=1), hashprice_usd_per_th_day=0.001
    )


def _reserve(t: datetime) -> ReservePriceEvent:
    return ReservePriceEvent(
        interval_start=t,
        interval_end=t + timedelta(hours=1),
        region="ERCOT",
        product="ecrs",
        price_usd_per_mw_h=0.0,
    )


def _ppa(basis: Literal["actual", "forecast"]) -> Callable[[datetime], PpaSupplyEvent]:
    def make(t: datetime) -> PpaSupplyEvent:
        return PpaSupplyEvent(
            interval_start=t, interval_end=t + Q, site_id=SITE, basis=basis, supply_mw=1.0
        )

    return make


def _telemetry(t: datetime) -> TelemetryEvent:
    return telemetry(SITE, 0, t0=t, mining_available_mw=0.0)


#: Every input kind: (topic, event dated at a given start, observed = describes the present).
KINDS: dict[str, tuple[str, Callable[[datetime], InputEvent], bool]] = {
    "price real_time": ("grid.price.v1", _price("real_time"), True),
    "price day_ahead": ("grid.price.v1", _price("day_ahead"), False),
    "price forecast": ("grid.price.v1", _price("forecast"), False),
    "carbon actual": ("grid.carbon.v1", _carbon("actual"), True),
    "carbon forecast": ("grid.carbon.v1", _carbon("forecast"), False),
    "signal region": ("grid.signal.v1", _signal(region="ERCOT"), False),
    "signal site": ("grid.signal.v1", _signal(site_id=SITE), False),
    "telemetry": ("site.telemetry.v1", _telemetry, True),
    "compute demand": ("compute.demand.v1", _demand, False),
    "hashprice": ("market.hashprice.v1", _hashprice, False),
    "reserve price": ("grid.reserve.v1", _reserve, False),
    "ppa forecast": ("grid.ppa.v1", _ppa("forecast"), False),
    "ppa actual": ("grid.ppa.v1", _ppa("actual"), True),
}
AHEAD: dict[str, Callable[[datetime], datetime]] = {
    "+6 h": lambda wall: wall + timedelta(hours=6),
    "+1 d": lambda wall: wall + timedelta(days=1),
    "2099": lambda _: Y2099,
}


class Wall:
    """A wall clock the test sets (the live worker's is ``datetime.now(UTC)``)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def live_state(wall: Wall) -> FleetState:
    return FleetState.live(
        FLEET,
        max_clock_skew_s=SKEW_S,
        max_lookahead_s=LOOKAHEAD_S,
        stale_telemetry_after_s=900.0,
        wall=wall,
    )


def feed(state: FleetState, topic: str, event: InputEvent) -> object:
    return ingest(state, topic, encode(event), MAX_BYTES)


def present_prices_are_decided(state: FleetState, decider: Decider, wall: Wall) -> None:
    """Real-time prices at T0+Q..T0+3Q, each decided at its own interval, no fallback."""
    for k in (1, 2, 3):
        wall.now = T0 + k * Q + timedelta(minutes=1)
        feed(state, "grid.price.v1", price(k, 20.0 + k))
        decisions = decider.decide(state, {SITE: "price"})
        assert [(d.interval_start, d.fallback) for d in decisions] == [(T0 + k * Q, "none")]
        assert state.event_clock == T0 + k * Q


@pytest.mark.parametrize("ahead", AHEAD)
@pytest.mark.parametrize("kind", KINDS)
def test_no_input_dated_ahead_moves_the_live_clock_or_freezes_decisions(
    kind: str, ahead: str
) -> None:
    topic, make, observed = KINDS[kind]
    wall = Wall(T0 + timedelta(minutes=1))
    state = live_state(wall)
    decider = Decider(H4, stale_price_after=timedelta(minutes=30))
    feed(state, "market.hashprice.v1", hashprice())
    feed(state, "grid.price.v1", price(0, 20.0))
    assert [d.fallback for d in decider.decide(state, {SITE: "price"})] == ["none"]

    start = AHEAD[ahead](wall.now)
    outcome = feed(state, topic, make(start))

    # Observed inputs may not run ahead of the wall clock by more than the skew; foresight may,
    # up to the look-ahead (two weeks), so only 2099 is turned away.
    rejected = observed or ahead == "2099"
    if rejected:
        assert isinstance(outcome, Rejection), outcome
        assert outcome.reason == "future_dated"
        assert start.isoformat() in outcome.error
        limit = "max_clock_skew_s" if observed else "max_lookahead_s"
        assert limit in outcome.error
        assert "\n" not in outcome.error
    else:
        assert not isinstance(outcome, Rejection), outcome
    assert state.event_clock == T0  # nothing but a present real-time price moves the clock
    assert state.node_clock == {"HB_SOUTH": T0}
    present_prices_are_decided(state, decider, wall)


@pytest.mark.parametrize("kind", [k for k, (_, _, observed) in KINDS.items() if not observed])
def test_foresight_never_moves_the_clock_even_without_a_wall_clock(kind: str) -> None:
    """The backtest's state has no wall clock and admits everything: a forecast dated 2099 is
    then a far-future point of its curve, and present prices are still decided."""
    topic, make, _ = KINDS[kind]
    state = FleetState(FLEET)
    decider = Decider(H4, stale_price_after=timedelta(minutes=30))
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    decider.decide(state, {SITE: "price"})
    for start in (T0 + timedelta(hours=6), Y2099):
        assert not isinstance(feed(state, topic, make(start)), Rejection)
        assert state.event_clock == T0
    for k in (1, 2, 3):
        state.apply(price(k, 20.0))
        (decision,) = decider.decide(state, {SITE: "price"})
        assert (decision.interval_start, decision.fallback) == (T0 + k * Q, "none")


def test_actual_carbon_fills_its_curve_but_never_moves_the_clock() -> None:
    state = FleetState(FLEET)
    state.apply(price(0, 20.0))
    state.apply(_carbon("actual")(T0 + timedelta(hours=6)))
    assert state.event_clock == T0
    assert state.node_clock == {"HB_SOUTH": T0}


def test_a_restart_that_refolds_a_committed_2099_price_rejects_it_again() -> None:
    """Recovery re-ingests committed inputs through the same ``ingest``: the state it rebuilds
    is not frozen, with no topic purged."""
    committed: list[tuple[str, InputEvent]] = [
        ("market.hashprice.v1", hashprice()),
        ("grid.price.v1", price(0, 20.0)),
        ("grid.price.v1", _price("real_time")(Y2099)),
        ("grid.price.v1", _price("day_ahead")(T0 + timedelta(days=1))),
    ]
    wall = Wall(T0 + timedelta(minutes=1))
    rebuilt = live_state(wall)
    outcomes = [feed(rebuilt, topic, event) for topic, event in committed]
    assert [o.reason for o in outcomes if isinstance(o, Rejection)] == ["future_dated"]
    present_prices_are_decided(rebuilt, Decider(H4, stale_price_after=timedelta(minutes=30)), wall)


def test_a_demand_window_applies_over_its_own_interval_only() -> None:
    state = FleetState(FLEET)
    state.apply(hashprice())
    state.apply(price(0, 20.0))
    tomorrow = _demand(T0 + timedelta(days=1))
    state.apply(tomorrow)
    view = build_snapshot(state, state.sites[SITE], H4)
    assert view is not None
    assert view.snapshot.gpu_floor_mw.tolist() == [5.0] * 4  # the sites file's floor, today

    state.apply(
        ComputeDemandEvent(
            interval_start=T0 + Q,
            interval_end=T0 + 2 * Q,
            site_id=SITE,
            contracted_floor_mw=2.0,
            demand_mw=6.0,
            value_usd_per_mwh=900.0,
        )
    )
    view = build_snapshot(state, state.sites[SITE], H4)
    assert view is not None
    snap = view.snapshot
    assert snap.gpu_floor_mw.tolist() == [5.0, 2.0, 5.0, 5.0]
    assert snap.gpu_demand_mw.tolist() == [8.0, 6.0, 8.0, 8.0]
    assert snap.gpu_value_usd_per_mwh.tolist() == [1600.0, 900.0, 1600.0, 1600.0]
    state.prune(T0 + timedelta(days=4))  # both windows ended more than RETENTION before
    assert len(state.demand[SITE]) == 0


def test_a_rejection_names_the_kind_the_time_and_the_limit() -> None:
    wall = datetime(2024, 8, 20, 17, 1, tzinfo=UTC)
    limits = AdmissionLimits(timedelta(seconds=SKEW_S), timedelta(seconds=LOOKAHEAD_S))
    rejection = admit(_price("real_time")(Y2099), wall, limits)
    assert rejection == Rejection(
        "future_dated",
        "real_time price for HB_SOUTH starts 2099-01-01T00:00:00+00:00, 74.4 y after the wall "
        "clock 2024-08-20T17:01:00+00:00; limit 300 s (max_clock_skew_s)",
    )
    signal = admit(_signal(region="ERCOT")(wall + timedelta(days=15)), wall, limits)
    assert signal is not None
    assert signal.error.startswith("emergency signal ahead starts ")
    assert signal.error.endswith(
        "15.0 d after the wall clock 2024-08-20T17:01:00+00:00; limit 14.0 d (max_lookahead_s)"
    )


def test_admission_limits_are_inclusive_and_can_be_switched_off() -> None:
    wall = T0
    limits = AdmissionLimits(timedelta(seconds=SKEW_S), timedelta(seconds=LOOKAHEAD_S))
    assert admit(_price("real_time")(wall + timedelta(seconds=SKEW_S)), wall, limits) is None
    assert admit(_price("real_time")(wall + timedelta(seconds=SKEW_S + 1)), wall, limits)
    assert admit(_price("forecast")(wall + timedelta(days=14)), wall, limits) is None
    off = AdmissionLimits(None, None)
    assert admit(_price("real_time")(Y2099), wall, off) is None
    assert admit(_demand(Y2099), wall, off) is None


class TestClockJump:
    """``max_clock_jump``: bounded against the other feeds, a single real-time price far ahead
    of the fleet clock moves no clock until a second, distinct one confirms it."""

    JUMP = timedelta(minutes=30)

    def state(self) -> FleetState:
        state = FleetState(Fleet(sites=(mining_site(),)), max_clock_jump=self.JUMP)
        state.apply(price(0, 20.0))
        return state

    def test_one_event_far_ahead_is_only_a_point_of_its_curve(self) -> None:
        state = self.state()
        bogus = _price("real_time")(T0 + timedelta(days=300))
        state.apply(bogus)
        state.apply(bogus)  # redelivered: the same event does not confirm itself
        assert state.event_clock == T0
        state.apply(price(1, 21.0))
        assert state.event_clock == T0 + Q  # present prices keep the clock

    def test_a_real_jump_is_confirmed_by_the_next_price(self) -> None:
        state = self.state()
        after_outage = T0 + timedelta(hours=3)
        state.apply(_price("real_time")(after_outage))
        assert state.event_clock == T0
        state.apply(_price("real_time")(after_outage + Q))
        assert state.event_clock == after_outage + Q
        assert state.node_clock == {"HB_SOUTH": after_outage + Q}

    def test_prices_within_the_bound_move_the_clock_at_once(self) -> None:
        state = self.state()
        state.apply(price(2, 20.0))  # 30 min ahead: within the bound
        assert state.event_clock == T0 + 2 * Q

    def test_prices_of_two_nodes_confirm_each_other(self) -> None:
        fleet = Fleet(sites=(mining_site(), mining_site(site_id="b", price_node="HB_NORTH")))
        state = FleetState(fleet, max_clock_jump=self.JUMP)
        state.apply(price(0, 20.0))
        state.apply(price(0, 20.0, node="HB_NORTH"))
        after_outage = T0 + timedelta(hours=3)
        state.apply(price(12, 20.0, node="HB_NORTH"))  # T0 + 3 h
        state.apply(price(13, 20.0))  # T0 + 3 h 15
        assert state.node_clock == {"HB_SOUTH": after_outage + Q, "HB_NORTH": after_outage}
        assert state.event_clock == after_outage + Q

    def test_one_price_confirms_every_held_price_near_it(self) -> None:
        nodes = ("HB_SOUTH", "HB_NORTH", "HB_WEST")
        fleet = Fleet(sites=tuple(mining_site(site_id=n.lower(), price_node=n) for n in nodes))
        state = FleetState(fleet, max_clock_jump=self.JUMP)
        for node in nodes:
            state.apply(price(0, 20.0, node=node))
        state.apply(price(14, 20.0, node="HB_NORTH"))  # T0 + 3 h 30: held
        state.apply(price(10, 20.0, node="HB_WEST"))  # T0 + 2 h 30: an hour away, held too
        assert state.event_clock == T0
        state.apply(price(12, 20.0))  # T0 + 3 h: within 30 min of both
        assert state.node_clock == {
            "HB_SOUTH": T0 + 12 * Q,
            "HB_NORTH": T0 + 14 * Q,
            "HB_WEST": T0 + 10 * Q,
        }
