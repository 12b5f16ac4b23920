"""Reserve on the decision path: reserve prices folded into curves, the snapshot's reserve arrays
(sold, open and closed hours, expected prices), decisions carrying reserve MW and revenue, the
commitment remembered across rounds and kept on the day, and a deployment curtailing mining.

The site sells ECRS (up to 10 MW) and RRS (up to 4 MW) with 20 J/TH miners: break-even
$100/MWh, so at a node price of $150/MWh every MW of mining loses $50/MWh.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from optimizer import Horizon, ReserveSpec
from schemas import DispatchDecision, GridSignalEvent, ReservePriceEvent, Trigger
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet, SiteConfig
from streams.engine.ingest import ingest
from streams.engine.reserves import COMMIT_LEAD, CommitmentBook, hour_of
from streams.engine.snapshots import build_snapshot
from streams.engine.state import RETENTION, Applied, FleetState
from tests.factories import T0, Q, hashprice, mining_site, price, telemetry

H = timedelta(hours=1)
SITE = "site-a"
TRIGGER: dict[str, Trigger] = {SITE: "price"}


def seller(**overrides: object) -> SiteConfig:
    return mining_site(
        reserve_products=("ecrs", "rrs"), reserve_max_mw={"ecrs": 10.0, "rrs": 4.0}, **overrides
    )


def mcpc(
    hour: datetime, value: float, product: str = "ecrs", region: str = "ERCOT"
) -> ReservePriceEvent:
    return ReservePriceEvent(
        interval_start=hour,
        interval_end=hour + H,
        region=region,
        product=product,
        price_usd_per_mw_h=value,
    )


@pytest.fixture
def state() -> FleetState:
    fleet = Fleet(
        sites=(
            seller(),
            mining_site(site_id="site-b"),  # same region, sells no reserve
            seller(site_id="site-c", price_node="PJM_DOM", carbon_region="PJM"),
        )
    )
    state = FleetState(fleet)
    state.apply(hashprice())
    return state


def test_reserve_prices_fold_into_curves_for_the_sites_that_sell(state: FleetState) -> None:
    applied = state.apply(mcpc(T0, 80.0))
    assert applied.sites == {SITE}  # not site-b: it sells no reserve; not site-c: PJM
    assert applied.trigger == "reserve"
    assert state.apply(mcpc(T0, 12.0, region="PJM")).sites == {"site-c"}
    assert state.apply(mcpc(T0, 12.0, region="NOWHERE")).sites == frozenset()
    raw = mcpc(T0 + H, 30.0, product="rrs").model_dump_json().encode()
    through_ingest = ingest(state, "grid.reserve.v1", raw, 4096)
    assert isinstance(through_ingest, Applied)
    assert through_ingest.sites == {SITE}
    ecrs = state.reserve_prices[("ERCOT", "ecrs")].at(T0 + Q)
    assert ecrs is not None
    assert (ecrs.value, ecrs.held) == (80.0, False)
    rrs = state.reserve_prices[("ERCOT", "rrs")].at(T0 + 2 * H)
    assert rrs is not None
    assert (rrs.value, rrs.held) == (30.0, True)
    # Reserve prices are foresight: they fill a curve, they never move the decision clock.
    assert state.event_clock is None
    state.apply(mcpc(T0 + 3 * H, 81.0))
    state.prune(T0 + 3 * H + RETENTION + 2 * H)
    assert len(state.reserve_prices[("ERCOT", "ecrs")]) == 1  # the last one, kept to hold


def test_the_snapshot_marks_sold_open_and_closed_hours_and_how_each_is_priced(
    state: FleetState,
) -> None:
    state.apply(price(0, 150.0))
    for k, value in enumerate([70.0, 71.0, 72.0, 73.0]):
        state.apply(mcpc(T0 + k * H, value))
    state.apply(mcpc(T0 + 4 * H - timedelta(days=1), 50.0))  # the same hour a day earlier
    book = CommitmentBook(lead=2 * H, sold={SITE: {T0 + 3 * H: {"ecrs": 6.0, "rrs": 0.0}}})
    view = build_snapshot(state, state.sites[SITE], Horizon((60,) * 6), book=book)
    assert view is not None
    ecrs, rrs = view.snapshot.reserves["ecrs"], view.snapshot.reserves["rrs"]
    # Hours 0-1 closed unsold (start < now + 2 h), 2 open, 3 sold (6 MW ECRS), 4-5 open.
    assert ecrs.max_mw is not None
    assert ecrs.committed_mw is not None
    assert rrs.max_mw is not None
    assert ecrs.max_mw.tolist() == [0.0, 0.0, 10.0, 6.0, 10.0, 10.0]
    assert ecrs.committed_mw.tolist() == [0.0, 0.0, 0.0, 6.0, 0.0, 0.0]
    assert rrs.max_mw.tolist() == [0.0, 0.0, 4.0, 0.0, 4.0, 4.0]
    # Day-ahead where cleared; hour 4 from the same hour a day earlier; hour 5 held.
    assert ecrs.price_usd_per_mw_h.tolist() == [70.0, 71.0, 72.0, 73.0, 50.0, 73.0]
    assert rrs.price_usd_per_mw_h.tolist() == [0.0] * 6
    assert view.snapshot.reserve_deployed_mw is None
    assert (
        "reserve: 1 of 6 steps in hours sold day-ahead, 3 open to sell (hours starting 2 h or "
        "more ahead), 2 closed unsold" in view.notes
    )
    assert (
        "reserve price ecrs: 1 steps from the same hour a day earlier, 1 held at the last known "
        "price (no day-ahead clearing price yet)" in view.notes
    )
    assert "reserve price rrs unknown in ERCOT for 4 steps: nothing sold there earns" in view.notes
    # A site that sells no reserve has no reserve inputs at all.
    other = build_snapshot(state, state.sites["site-b"], Horizon((60,) * 6), book=book)
    assert other is not None
    assert other.snapshot.reserves == {}
    # What was sold is part of the input version: selling an hour re-decides the site.
    resold = CommitmentBook(lead=2 * H, sold={SITE: {T0 + 3 * H: {"ecrs": 7.0, "rrs": 0.0}}})
    again = build_snapshot(state, state.sites[SITE], Horizon((60,) * 6), book=resold)
    assert again is not None
    assert again.input_version != view.input_version


def test_a_decision_carries_reserve_mw_by_product_and_its_revenue(state: FleetState) -> None:
    state.apply(price(0, 150.0))
    for k in range(4):
        state.apply(mcpc(T0 + k * H, 80.0))
        state.apply(mcpc(T0 + k * H, 30.0, product="rrs"))
    decider = Decider(Horizon((60,) * 4), reserve_commit_lead=timedelta(0))
    (decision,) = decider.decide(state, TRIGGER)
    # ECRS pays 80 > the 50 mining loses: 10 MW held (mining runs for them); RRS 30 < 50: none.
    assert decision.reserve_mw == {"ecrs": 10.0, "rrs": 0.0}
    assert decision.mining_mw == pytest.approx(10.0)
    assert decision.economics.reserve_revenue_usd == pytest.approx(10.0 * 1.0 * 80.0)
    assert decision.economics.net_margin_usd == pytest.approx(
        8 * 1600.0 + 10 * 100.0 + 800.0 - 18 * 150.0
    )
    assert [step.reserve_mw for step in decision.horizon] == pytest.approx([10.0] * 4)
    # The four hours were open (lead 0) and whole in the horizon: this round sold them.
    assert [(c.interval_start, dict(c.reserve_mw)) for c in decision.reserve_commitments] == [
        (T0 + k * H, {"ecrs": 10.0, "rrs": 0.0}) for k in range(4)
    ]
    assert DispatchDecision.model_validate_json(decision.model_dump_json()) == decision
    # The book can be rebuilt from the published decision (e.g. after a restart).
    fresh = Decider(Horizon((60,) * 4))
    fresh.reserves.restore([decision])
    assert fresh.reserves.sold == decider.reserves.sold


def test_hours_are_sold_once_about_a_day_ahead_and_kept_on_the_day(state: FleetState) -> None:
    """The live horizon (24 h) and lead (14 h): the first round sells the hours at least 14 h
    ahead that it covers whole; later rounds sell each hour as it enters, and never re-sell.
    On the day, the sold MW run although mining loses money and the reserve now pays little."""
    for k in range(70):
        state.apply(price(k, 150.0))  # 17:00 on 20 August to 10:30 on the 21st
    for h in range(-24, 48):
        state.apply(mcpc(T0 + h * H, 80.0))  # the day-ahead price as first expected
    decider = Decider(Horizon.mixed())
    assert decider.reserves.lead == COMMIT_LEAD == timedelta(hours=14)
    decider.decide(state, TRIGGER, now=T0)
    sold = decider.reserves.sold[SITE]
    # Seen at 17:00: the horizon ends 17:00 the next day; hours from 07:00 (14 h ahead) sold.
    assert sorted(sold) == [T0 + k * H for k in range(14, 24)]
    assert all(mw == {"ecrs": 10.0, "rrs": 0.0} for mw in sold.values())
    # The day-ahead market then clears those hours at 5 $/MW-h; nothing sold is re-sold.
    for h in range(14, 30):
        state.apply(mcpc(T0 + h * H, 5.0))
    decider.decide(state, TRIGGER, now=T0 + Q)
    assert sorted(sold) == [T0 + k * H for k in range(14, 24)]
    assert all(mw == {"ecrs": 10.0, "rrs": 0.0} for mw in sold.values())
    decider.decide(state, TRIGGER, now=T0 + H)
    assert sold[T0 + 24 * H] == {"ecrs": 0.0, "rrs": 0.0}  # 5 < 50: sold at 0, closed
    # On the day, 15 h later: the sold 10 MW keep mining running at a loss.
    (on_the_day,) = decider.decide(state, TRIGGER, now=T0 + 15 * H)
    assert on_the_day.reserve_mw == {"ecrs": 10.0, "rrs": 0.0}
    assert on_the_day.mining_mw == pytest.approx(10.0)
    assert on_the_day.slacks_used == {}
    assert on_the_day.economics.reserve_revenue_usd == pytest.approx(10.0 * (5 / 60) * 5.0)
    # An hour nobody sold (first seen less than 14 h ahead): no reserve, mining off.
    (unsold,) = decider.decide(state, TRIGGER, now=T0 + 13 * H)
    assert unsold.reserve_mw == {"ecrs": 0.0, "rrs": 0.0}
    assert unsold.mining_mw == pytest.approx(0.0)


def test_a_deployment_curtails_mining_at_once_and_delivers_the_sold_reserve(
    state: FleetState,
) -> None:
    for k in range(6):
        state.apply(price(k, 150.0))
    state.apply(mcpc(T0, 80.0))
    decider = Decider(Horizon((15,) * 4), reserve_commit_lead=timedelta(0))
    (sold,) = decider.decide(state, TRIGGER, now=T0)
    assert sold.reserve_mw["ecrs"] == pytest.approx(10.0)
    assert decider.reserves.sold[SITE] == {T0: {"ecrs": 10.0, "rrs": 0.0}}
    # ERCOT deploys the 10 MW at 17:15 for 15 minutes; the site draws 18 MW (10 mining, 8 GPU).
    state.apply(telemetry(SITE, 0, t0=T0 + Q - Q, meter_mw=18.0))
    deployment = GridSignalEvent(
        interval_start=T0 + Q,
        interval_end=T0 + 2 * Q,
        signal_id="ercot-ecrs-1",
        signal_type="reserve_deployment",
        region="ERCOT",
        reduction_mw=10.0,
    )
    assert state.apply(deployment).sites == {SITE, "site-b"}
    rnd = decider.prepare(state, TRIGGER, now=T0 + Q)
    snap = rnd.views[SITE].snapshot
    assert snap.signal_cap_mw[0] == pytest.approx(8.0)  # 18 MW less the 10 deployed
    assert snap.reserve_deployed_mw is not None
    assert snap.reserve_deployed_mw.tolist() == [10.0, 0.0, 0.0, 0.0]
    result = decider.complete(rnd)
    deployed = next(d for d in result.decisions if d.site_id == SITE)
    assert deployed.mining_mw == pytest.approx(0.0)
    assert deployed.grid_import_mw == pytest.approx(8.0)
    # The curtailed 10 MW are the reserve delivered: held and paid, no shortfall.
    assert deployed.reserve_mw["ecrs"] == pytest.approx(10.0)
    assert deployed.economics.reserve_revenue_usd == pytest.approx(10.0 * 0.25 * 80.0)
    assert deployed.slacks_used == {}
    assert deployed.horizon[1].mining_mw == pytest.approx(10.0)  # back for the sold hour


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"reserve_products": ("reg_down",)}, "reg_down is not offered"),
        ({"reserve_products": ("ecrs", "ecrs")}, "lists a product twice"),
        ({"reserve_products": ("spinning",)}, "reserve_products"),
        ({"reserve_max_mw": 5.0}, "reserve_max_mw without reserve_products"),
        (
            {"reserve_products": ("ecrs", "rrs"), "reserve_max_mw": {"ecrs": 5.0}},
            "give one MW value for each of reserve_products",
        ),
        ({"reserve_products": ("ecrs",), "reserve_max_mw": 26.0}, "is not within 0 and"),
        ({"reserve_products": ("ecrs",), "reserve_max_mw": -1.0}, "is not within 0 and"),
        ({"reserve_products": ("ecrs",), "reserve_max_mw": float("inf")}, "reserve_max_mw"),
    ],
)
def test_reserve_qualification_in_the_sites_file_is_strict(
    overrides: dict[str, object], error: str
) -> None:
    with pytest.raises(ValidationError, match=error):
        mining_site(**overrides)


def test_reserve_qualification_becomes_the_optimizer_spec() -> None:
    assert mining_site().spec().reserves == ()
    one_number = mining_site(reserve_products=["rrs", "ecrs"], reserve_max_mw=7.5)
    assert one_number.spec().reserves == (ReserveSpec("rrs", 7.5), ReserveSpec("ecrs", 7.5))
    unset = mining_site(reserve_products=["non_spin"])
    assert unset.spec().reserves == (ReserveSpec("non_spin", 25.0),)  # the mining capacity
    assert seller().spec().reserves == (ReserveSpec("ecrs", 10.0), ReserveSpec("rrs", 4.0))


def test_decisions_without_reserve_fields_stay_valid() -> None:
    """Old producers and consumers: every new field has a default."""
    state = FleetState(Fleet(sites=(mining_site(),)))
    state.apply(hashprice())
    state.apply(price(0, 50.0))
    (decision,) = Decider(Horizon((15,) * 2)).decide(state, TRIGGER)
    assert decision.reserve_mw == {}
    assert decision.reserve_commitments == ()
    old = json.loads(decision.model_dump_json())
    for name in ("reserve_mw", "reserve_commitments"):
        del old[name]
    del old["economics"]["reserve_revenue_usd"]
    for step in old["horizon"]:
        del step["reserve_mw"]
    assert DispatchDecision.model_validate(old) == decision


def test_hours_are_utc_hours() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    assert hour_of(datetime(2024, 8, 20, 12, 40, tzinfo=india)) == datetime(
        2024, 8, 20, 7, tzinfo=UTC
    )
    central = timezone(timedelta(hours=-5))
    assert hour_of(datetime(2024, 8, 20, 12, 59, tzinfo=central)) == datetime(
        2024, 8, 20, 17, tzinfo=UTC
    )


def test_quarter_hour_steps_of_an_open_hour_are_sold_as_one_and_sold_hours_are_not_tied(
    state: FleetState,
) -> None:
    # 15-minute steps over four hours: hour 0 closed unsold (within the lead), hour 1 sold,
    # hours 2-3 open. Only the open hours' quarters are tied (the market sells the hour); a
    # sold hour holds its committed MW quarter by quarter, so a cap in one quarter costs a
    # shortfall there only.
    state.apply(price(0, 150.0))
    for k in range(4):
        state.apply(mcpc(T0 + k * H, 70.0))
    book = CommitmentBook(lead=2 * H, sold={SITE: {T0 + H: {"ecrs": 6.0, "rrs": 0.0}}})
    view = build_snapshot(state, state.sites[SITE], Horizon((15,) * 16), book=book)
    assert view is not None
    tied = view.snapshot.reserves["ecrs"].same_sale_as_previous
    assert tied is not None
    open_hour = [0.0, 1.0, 1.0, 1.0]
    assert tied.tolist() == [0.0] * 4 + [0.0] * 4 + open_hour + open_hour
    # Hourly steps: nothing to tie, and the snapshot says so (its version unchanged).
    hourly = build_snapshot(state, state.sites[SITE], Horizon((60,) * 4), book=book)
    assert hourly is not None
    assert hourly.snapshot.reserves["ecrs"].same_sale_as_previous is None
