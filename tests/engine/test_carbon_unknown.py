"""A decision never reports emissions from a carbon intensity nobody gave without saying so: a
region never heard from plans with 0 g/kWh and the decision's notes say its emissions were
assumed 0; a reading held past its own interval (stale, or simply not yet renewed for later
steps) is counted in the notes the way a held price is. Inputs are SYNTHETIC."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from optimizer import DispatchModel, Horizon
from schemas import CarbonEvent, DispatchDecision
from streams.engine.decisions import to_decision
from streams.engine.fleet import Fleet
from streams.engine.snapshots import RoundReads, build_snapshot
from streams.engine.state import FleetState
from tests.factories import T0, Q, hashprice, mining_site, price

H4 = Horizon((15, 15, 15, 15))
HOUR = timedelta(hours=1)
UNKNOWN = "carbon intensity unknown for ERCOT: emissions assumed 0"


def _carbon(start: datetime, end: datetime, value: float, region: str = "ERCOT") -> CarbonEvent:
    return CarbonEvent(
        interval_start=start, interval_end=end, region=region, average_intensity_g_per_kwh=value
    )


def _decide(*carbon: CarbonEvent) -> DispatchDecision:
    """site-a's decision at T0: a price high enough to stop mining, GPUs kept (8 MW imported)."""
    state = FleetState(Fleet(sites=(mining_site(),)))
    state.apply(hashprice())
    state.apply(price(0, 500.0))
    for event in carbon:
        state.apply(event)
    site = state.sites["site-a"]
    view = build_snapshot(state, site, H4, now=T0)
    assert view is not None
    return to_decision(view, DispatchModel(site.spec(), 4).plan(view.snapshot), "price")


def _carbon_notes(decision: DispatchDecision) -> list[str]:
    return [n for n in decision.notes if "carbon" in n]


def test_no_carbon_ever_received_says_the_zero_emissions_were_assumed() -> None:
    decision = _decide()
    assert decision.grid_import_mw == pytest.approx(8.0)  # the site does import
    assert decision.economics.emissions_kg_co2 == 0.0
    assert [s.carbon_intensity_g_per_kwh for s in decision.horizon] == [0.0] * 4
    # The 0 is never silent: the decision itself says the intensity was unknown.
    assert _carbon_notes(decision) == [UNKNOWN]


def test_a_stale_carbon_reading_is_said_to_be_held() -> None:
    # The last reading covered 14:00-15:00; the decision is at 17:00: every step holds it.
    decision = _decide(_carbon(T0 - 3 * HOUR, T0 - 2 * HOUR, 400.0))
    assert decision.economics.emissions_kg_co2 == pytest.approx(8.0 * 0.25 * 400.0)
    assert [s.carbon_intensity_g_per_kwh for s in decision.horizon] == [400.0] * 4
    assert _carbon_notes(decision) == [
        "carbon: 4 of 4 steps held at the last known value for ERCOT"
    ]


def test_carbon_covering_the_first_step_only_counts_the_later_steps_as_held() -> None:
    decision = _decide(_carbon(T0, T0 + Q, 300.0))
    assert decision.economics.emissions_kg_co2 == pytest.approx(8.0 * 0.25 * 300.0)
    assert _carbon_notes(decision) == [
        "carbon: 3 of 4 steps held at the last known value for ERCOT"
    ]


def test_carbon_covering_every_step_adds_no_note() -> None:
    decision = _decide(_carbon(T0, T0 + HOUR, 300.0))
    assert decision.economics.emissions_kg_co2 == pytest.approx(8.0 * 0.25 * 300.0)
    assert _carbon_notes(decision) == []


def test_carbon_known_only_from_a_later_step_notes_the_unknown_start() -> None:
    # A forecast starting at the third step: the first two are unknown (0 assumed), not held.
    decision = _decide(_carbon(T0 + 2 * Q, T0 + HOUR, 300.0))
    assert decision.economics.emissions_kg_co2 == 0.0
    assert [s.carbon_intensity_g_per_kwh for s in decision.horizon] == [0.0, 0.0, 300.0, 300.0]
    assert _carbon_notes(decision) == [UNKNOWN]


def test_sites_of_a_round_share_the_held_count_and_each_gets_its_own_region() -> None:
    fleet = Fleet(
        sites=(
            mining_site(),
            mining_site(site_id="site-b"),
            mining_site(site_id="site-c", carbon_region="PJM"),
        )
    )
    state = FleetState(fleet)
    state.apply(hashprice())
    state.apply(price(0, 500.0))
    state.apply(_carbon(T0, T0 + 2 * Q, 300.0))
    state.apply(_carbon(T0 - 2 * HOUR, T0 - HOUR, 500.0, region="PJM"))
    reads = RoundReads(H4)
    notes = {}
    for site_id in ("site-a", "site-b", "site-c"):
        view = build_snapshot(state, state.sites[site_id], H4, now=T0, reads=reads)
        alone = build_snapshot(state, state.sites[site_id], H4, now=T0)
        assert view is not None and alone is not None
        assert view.notes == alone.notes
        notes[site_id] = [n for n in view.notes if "carbon" in n]
    assert notes == {
        "site-a": ["carbon: 2 of 4 steps held at the last known value for ERCOT"],
        "site-b": ["carbon: 2 of 4 steps held at the last known value for ERCOT"],
        "site-c": ["carbon: 4 of 4 steps held at the last known value for PJM"],
    }
