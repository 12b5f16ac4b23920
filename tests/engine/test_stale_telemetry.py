"""Telemetry is aged like prices: once older than ``stale_telemetry_after`` it no longer anchors
a ``reduction_mw`` baseline or the mining ramp; the plan falls back to what the site was last
told to run (else a stated assumption) and says so in its notes, as it does for a battery whose
charge is unknown."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from optimizer import Horizon
from schemas import CarbonEvent, DispatchDecision, GridSignalEvent, PriceEvent, Trigger
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet, SiteConfig
from streams.engine.snapshots import build_snapshot
from streams.engine.state import FleetState
from tests.factories import T0, Q, hashprice, mining_site, price, telemetry

SITE = "site-a"
H4 = Horizon((15, 15, 15, 15))
FIVE = timedelta(minutes=5)
TRIGGER: dict[str, Trigger] = {SITE: "price"}


def state_of(site: SiteConfig) -> FleetState:
    state = FleetState(Fleet(sites=(site,)), stale_telemetry_after=timedelta(minutes=15))
    state.apply(hashprice())
    return state


def decide(decider: Decider, state: FleetState) -> DispatchDecision:
    (decision,) = decider.decide(state, TRIGGER)
    return decision


def reduction(start: datetime, mw: float) -> GridSignalEvent:
    return GridSignalEvent(
        interval_start=start,
        interval_end=start + 2 * Q,
        signal_id="dr-1",
        signal_type="demand_response",
        site_id=SITE,
        reduction_mw=mw,
    )


class TestReductionBaseline:
    """A 20 MW reduction on a 30 MW site whose meter read 12 MW half an hour ago."""

    def start(self) -> tuple[FleetState, Decider]:
        state = state_of(mining_site())
        state.apply(price(0, 20.0))
        state.apply(telemetry(SITE, 0, meter_mw=12.0))  # [T0, T0+Q): fresh at T0
        return state, Decider(H4)

    def test_stale_telemetry_is_replaced_by_the_last_plan_before_the_signal(self) -> None:
        state, decider = self.start()
        before = decide(decider, state)
        assert before.grid_import_mw == pytest.approx(30.0)  # GPUs 8 MW + mining 22 MW
        state.apply(reduction(T0 + 3 * Q, 20.0))
        state.apply(price(3, 20.0))  # the telemetry ended 30 min before this interval
        during = decide(decider, state)
        # Measured from the stale 12 MW, the cap would be 0 MW and the GPUs would go dark;
        # from the last plan (30 MW) it is 10 MW: mining gives way, the GPUs keep running.
        assert during.grid_import_mw == pytest.approx(10.0)
        assert during.gpu_mw == pytest.approx(8.0)
        assert (
            "telemetry 30 min old (stale after 15 min): not taken as what the site draws now"
            in (during.notes)
        )
        assert "reduction baseline for signal dr-1: last plan's import 30.0 MW" in during.notes

        # The next interval's plan must not reduce again from a plan that already reduced.
        state.apply(price(4, 20.0))
        again = decide(decider, state)
        assert again.grid_import_mw == pytest.approx(10.0)
        assert again.gpu_mw == pytest.approx(8.0)
        assert "reduction baseline for signal dr-1: import held at the last plan's 10.0 MW" in (
            again.notes
        )

    def test_with_no_plan_either_the_interconnect_is_the_baseline(self) -> None:
        state, decider = self.start()
        state.apply(reduction(T0 + 3 * Q, 20.0))
        state.apply(price(3, 20.0))
        during = decide(decider, state)
        assert during.grid_import_mw == pytest.approx(10.0)
        assert during.gpu_mw == pytest.approx(8.0)
        assert (
            "reduction baseline for signal dr-1: the interconnect 30.0 MW "
            "(no fresh telemetry or earlier plan)"
        ) in during.notes

    def test_fresh_telemetry_is_still_the_measured_baseline(self) -> None:
        state, _ = self.start()
        state.apply(reduction(T0, 20.0))
        state.apply(telemetry(SITE, 0, meter_mw=26.0, mining_mw=18.0))
        view = build_snapshot(state, state.sites[SITE], H4)
        assert view is not None
        assert view.snapshot.signal_cap_mw[:2].tolist() == pytest.approx([6.0, 6.0])
        assert not any("telemetry" in note or "baseline" in note for note in view.notes)


def price5(k: int, value: float) -> PriceEvent:
    """A real-time price for the k-th 5-minute interval after T0."""
    return PriceEvent(
        interval_start=T0 + k * FIVE,
        interval_end=T0 + (k + 1) * FIVE,
        node="HB_SOUTH",
        price_usd_per_mwh=value,
    )


class TestRampAnchor:
    """Miners restart at 3 MW/min: at most 15 MW more per 5-minute step."""

    H5 = Horizon((5, 5, 5, 5))

    def start(self) -> tuple[FleetState, Decider]:
        return state_of(mining_site(mining_ramp_up_mw_per_min=3.0)), Decider(self.H5)

    def test_without_telemetry_the_ramp_starts_from_the_last_decided_set_point(self) -> None:
        state, decider = self.start()
        state.apply(price5(0, 5_000.0))  # far above break-even: mining shed
        assert decide(decider, state).mining_mw == pytest.approx(0.0)
        state.apply(price5(1, 20.0))
        back = decide(decider, state)
        assert back.mining_mw == pytest.approx(15.0)  # not the 22 MW envelope in one step
        assert any(n.startswith("mining ramp from the last decided 0.0 MW") for n in back.notes)

    def test_with_nothing_known_the_miners_are_assumed_off(self) -> None:
        state, decider = self.start()
        state.apply(price5(0, 20.0))
        first = decide(decider, state)
        assert first.mining_mw == pytest.approx(15.0)
        assert "mining ramp from 0 MW: no fresh telemetry or earlier decision" in first.notes

    def test_stale_telemetry_does_not_anchor_the_ramp(self) -> None:
        state, decider = self.start()
        # The miners drew 22 MW until half an hour ago; since then they were told to stop.
        state.apply(telemetry(SITE, -3, mining_mw=22.0))  # [T0-45 min, T0-30 min)
        state.apply(price5(0, 5_000.0))
        assert decide(decider, state).mining_mw == pytest.approx(0.0)
        state.apply(price5(1, 20.0))
        assert decide(decider, state).mining_mw == pytest.approx(15.0)

    def test_replanning_the_same_interval_does_not_ratchet_the_ramp(self) -> None:
        state, decider = self.start()
        state.apply(price5(0, 5_000.0))
        decide(decider, state)
        state.apply(price5(1, 20.0))
        assert decide(decider, state).mining_mw == pytest.approx(15.0)
        state.apply(  # a new input, the same interval: anchored where the site was, 0 MW
            CarbonEvent(
                interval_start=T0,
                interval_end=T0 + Q,
                region="ERCOT",
                average_intensity_g_per_kwh=1,
            )
        )
        assert decide(decider, state).mining_mw == pytest.approx(15.0)

    def test_fresh_telemetry_anchors_the_ramp(self) -> None:
        state, decider = self.start()
        state.apply(price5(0, 20.0))
        state.apply(telemetry(SITE, 0, mining_mw=4.0))
        decision = decide(decider, state)
        assert decision.mining_mw == pytest.approx(19.0)
        assert not any("ramp" in note for note in decision.notes)


class TestBatteryCharge:
    SITE_WITH_BATTERY = mining_site(battery_power_mw=5.0, battery_energy_mwh=10.0)

    def soc_and_notes(self, state: FleetState) -> tuple[float, list[str]]:
        view = build_snapshot(state, state.sites[SITE], H4)
        assert view is not None
        return view.snapshot.battery_soc_mwh, [n for n in view.notes if "battery" in n]

    def test_an_unreported_charge_is_assumed_empty_and_noted(self) -> None:
        state = state_of(self.SITE_WITH_BATTERY)
        state.apply(price(0, 20.0))
        assert self.soc_and_notes(state) == (
            0.0,
            ["battery charge unknown (no fresh telemetry): assumed empty"],
        )
        state.apply(telemetry(SITE, 0))  # no battery_soc_mwh
        assert self.soc_and_notes(state) == (
            0.0,
            ["battery charge unknown (not reported): assumed empty"],
        )

    def test_a_reported_charge_is_used_while_fresh(self) -> None:
        state = state_of(self.SITE_WITH_BATTERY)
        state.apply(price(0, 20.0))
        state.apply(telemetry(SITE, 0, battery_soc_mwh=4.0))
        assert self.soc_and_notes(state) == (4.0, [])
        state.apply(price(3, 20.0))  # that report ended 30 min ago
        assert self.soc_and_notes(state) == (
            0.0,
            ["battery charge unknown (no fresh telemetry): assumed empty"],
        )

    def test_a_site_without_a_battery_has_no_battery_note(self) -> None:
        state = state_of(mining_site())
        state.apply(price(0, 20.0))
        assert self.soc_and_notes(state) == (0.0, [])
