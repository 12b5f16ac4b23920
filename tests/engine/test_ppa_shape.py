"""A shaped PPA in the engine (issue #14): ``grid.ppa.v1`` supply events held per site, read per
horizon step into ``SiteSnapshot.ppa_mw`` (the flat ``ppa_mw`` where none covers a step, said in
the notes), so that hourly CFE matching moves flexible load into the PPA's hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from optimizer import Horizon
from schemas import CarbonEvent, HashpriceEvent, PpaSupplyEvent, PriceEvent
from streams.engine.admission import AdmissionLimits, admit
from streams.engine.codec import Rejection, encode
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.ingest import ingest
from streams.engine.snapshots import build_snapshot
from streams.engine.state import FleetState, UnknownSiteError
from tests.factories import mining_site

T0 = datetime(2024, 8, 20, 12, tzinfo=UTC)
Q = timedelta(minutes=15)
H4 = Horizon((15, 15, 15, 15))
#: Carbon at 500 g/kWh priced $200/t costs $100/MWh of unmatched import: with power at $50, a
#: miner earning $100/MWh (0.048 $/TH/day at 20 J/TH) pays only where its import is matched.
CARBON_PRICE = 200.0
FLAT_PPA_MW = 20.0


def supply(k: int, mw: float, site_id: str = "site-a", basis: str = "forecast") -> PpaSupplyEvent:
    return PpaSupplyEvent.model_validate(
        {
            "interval_start": T0 + k * Q,
            "interval_end": T0 + (k + 1) * Q,
            "site_id": site_id,
            "basis": basis,
            "supply_mw": mw,
        }
    )


def market_state() -> FleetState:
    """One site at $50/MWh power and 500 g/kWh for the whole horizon, with a flat 20 MW PPA."""
    site = mining_site(carbon_price_usd_per_t=CARBON_PRICE, ppa_mw=FLAT_PPA_MW)
    state = FleetState(Fleet(sites=(site, mining_site(site_id="site-b"))))
    state.apply(
        HashpriceEvent(
            interval_start=T0 - timedelta(hours=12),
            interval_end=T0 + timedelta(hours=12),
            hashprice_usd_per_th_day=0.048,
        )
    )
    state.apply(
        CarbonEvent(
            interval_start=T0,
            interval_end=T0 + 4 * Q,
            region="ERCOT",
            average_intensity_g_per_kwh=500.0,
        )
    )
    for k in range(4):
        state.apply(
            PriceEvent(
                interval_start=T0 + k * Q,
                interval_end=T0 + (k + 1) * Q,
                node="HB_SOUTH",
                market="day_ahead",
                price_usd_per_mwh=50.0,
            )
        )
    state.apply(
        PriceEvent(interval_start=T0, interval_end=T0 + Q, node="HB_SOUTH", price_usd_per_mwh=50.0)
    )
    return state


def supply_at(state: FleetState, instant: datetime) -> float | None:
    lookup = state.ppa["site-a"].at(instant)
    return None if lookup is None else lookup.value


def planned_mining(state: FleetState) -> list[float]:
    decider = Decider(H4)
    decisions = decider.decide(state, {"site-a": "ppa"}, now=T0)
    (decision,) = [d for d in decisions if d.site_id == "site-a"]
    return [step.mining_mw for step in decision.horizon]


def test_a_ppa_event_reaches_its_site_only_and_an_unknown_site_raises() -> None:
    state = market_state()
    applied = state.apply(supply(0, 12.0))
    assert applied.sites == {"site-a"}
    assert applied.trigger == "ppa"
    with pytest.raises(UnknownSiteError):
        state.apply(supply(0, 12.0, site_id="nobody"))
    # The actual (metered) supply replaces the forecast of its interval, never the reverse.
    state.apply(supply(1, 5.0, basis="actual"))
    state.apply(supply(1, 30.0))
    assert supply_at(state, T0 + Q) == 5.0


def test_ppa_supply_is_read_per_step_and_the_flat_value_is_said_where_assumed() -> None:
    state = market_state()
    site = state.sites["site-a"]
    before = build_snapshot(state, site, H4)
    assert before is not None
    # No PPA event yet: the contract as configured, nothing assumed.
    assert list(before.snapshot.ppa_mw) == [FLAT_PPA_MW] * 4  # type: ignore[arg-type]
    assert not any(n.startswith("ppa:") for n in before.notes)
    state.apply(supply(0, 0.0))
    state.apply(supply(2, 40.0))  # step 1 and 3: nothing covers them (never held)
    view = build_snapshot(state, site, H4)
    assert view is not None
    assert list(view.snapshot.ppa_mw) == [0.0, 20.0, 40.0, 20.0]  # type: ignore[arg-type]
    assert "ppa: 2 of 4 steps at the flat ppa_mw 20.0 MW (no PPA supply event covers them)" in (
        view.notes
    )
    assert view.input_version != before.input_version


def test_a_shaped_ppa_moves_flexible_load_into_the_ppa_hours() -> None:
    flat = market_state()
    assert planned_mining(flat) == pytest.approx([12.0] * 4, abs=1e-6)  # 20 MW matched - 8 GPU
    shaped = market_state()
    for k, mw in enumerate([0.0, 0.0, 40.0, 40.0]):
        shaped.apply(supply(k, mw))
    mining = planned_mining(shaped)
    # No PPA: every MW mined is unmatched and loses money; PPA hours: mine up to the
    # interconnect (30 MW less 8 MW of GPUs), all of it matched.
    assert mining == pytest.approx([0.0, 0.0, 22.0, 22.0], abs=1e-6)
    assert float(np.sum(mining)) > 0.0


def test_a_ppa_message_is_ingested_from_its_topic_and_admitted_by_its_basis() -> None:
    state = market_state()
    applied = ingest(state, "grid.ppa.v1", encode(supply(0, 7.5)), 1 << 20)
    assert not isinstance(applied, Rejection)
    assert applied.sites == {"site-a"}
    assert supply_at(state, T0) == 7.5
    limits = AdmissionLimits(max_clock_skew=timedelta(minutes=5), max_lookahead=timedelta(days=14))
    ahead = T0 - timedelta(hours=6)  # the wall clock six hours before the interval
    assert admit(supply(0, 7.5), ahead, limits) is None  # a forecast: foresight
    rejected = admit(supply(0, 7.5, basis="actual"), ahead, limits)
    assert rejected is not None and "actual PPA supply for site-a" in rejected.error
