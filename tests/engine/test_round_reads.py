"""A round's shared reads (``RoundReads``): what the sites of a node share is computed once per
round (price path, filled carbon and hashprice curves, step lengths), and every snapshot built
from them equals one built alone, bit for bit, whatever node, forecast, anchor or clock the
other sites of the round have; no site can change another's numbers through them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest

from optimizer import Horizon
from schemas import CarbonEvent, PriceEvent
from streams.engine.fleet import Fleet
from streams.engine.snapshots import (
    RoundReads,
    SnapshotView,
    _fill,
    _price_path,
    build_snapshot,
)
from streams.engine.state import REAL_TIME_PRIORITY, FleetState
from tests.factories import T0, Q, hashprice, mining_site

H = Horizon((15, 15, 15, 15, 60, 60))
HOUR = timedelta(hours=1)


def _price(node: str, start: int, value: float, *, day_ahead: bool = False) -> PriceEvent:
    """A real-time price for 15-minute interval ``start`` after T0, or a day-ahead hour."""
    begin = T0 + start * Q
    return PriceEvent(
        interval_start=begin,
        interval_end=begin + (HOUR if day_ahead else Q),
        node=node,
        market="day_ahead" if day_ahead else "real_time",
        price_usd_per_mwh=value,
    )


@pytest.fixture
def state() -> FleetState:
    """Three nodes that differ in everything the shared reads are keyed on.

    HB_SOUTH: two sites, a day-ahead forecast, real-time prices up to T0+2Q (a spike last).
    PJM_DOM: another forecast, real-time prices stopping at T0 (an older anchor), carbon data
    with a gap. N_Y_C: real-time prices only (no forecast), no carbon data.
    """
    fleet = Fleet(
        sites=(
            mining_site(site_id="tx-1"),
            mining_site(site_id="tx-2"),
            mining_site(site_id="pjm-1", price_node="PJM_DOM", carbon_region="PJM"),
            mining_site(site_id="ny-1", price_node="N_Y_C", carbon_region="NYISO"),
        )
    )
    state = FleetState(fleet)
    state.apply(hashprice())
    for hour in range(-1, 4):
        state.apply(_price("HB_SOUTH", 4 * hour, 40.0 + 5 * hour, day_ahead=True))
        state.apply(_price("PJM_DOM", 4 * hour, 70.0 - 3 * hour, day_ahead=True))
    for k, value in enumerate([35.0, 38.0, 400.0]):
        state.apply(_price("HB_SOUTH", k, value))
    for k, value in enumerate([90.0, 95.0]):
        state.apply(_price("PJM_DOM", k - 1, value))
    for k, value in enumerate([55.0, 52.0, 58.0]):
        state.apply(_price("N_Y_C", k, value))
    for k, value in ((0, 410.0), (1, 420.0), (4, 380.0)):  # no point for intervals 2-3
        state.apply(
            CarbonEvent(
                interval_start=T0 + k * Q,
                interval_end=T0 + (k + 1) * Q,
                region="PJM",
                average_intensity_g_per_kwh=value,
            )
        )
    return state


def _arrays(view: SnapshotView) -> dict[str, bytes]:
    snapshot = view.snapshot
    return {
        name: value.tobytes()
        for name in snapshot.__slots__
        if isinstance(value := getattr(snapshot, name), np.ndarray)
    }


def _same(view: SnapshotView | None, alone: SnapshotView | None) -> None:
    assert view is not None and alone is not None
    assert _arrays(view) == _arrays(alone)
    assert view.notes == alone.notes
    assert view.input_version == alone.input_version
    assert (view.step_starts, view.step_ends) == (alone.step_starts, alone.step_ends)


NOWS = (T0 + Q, T0 + 2 * Q)


def test_a_shared_round_gives_every_site_the_snapshot_it_gets_alone(state: FleetState) -> None:
    reads = RoundReads(H)
    # Interleaved: sites of other nodes and another clock read in between.
    shared = {
        (site_id, now): build_snapshot(state, site, H, now=now, reads=reads)
        for now in NOWS
        for site_id, site in state.sites.items()
    }
    for (site_id, now), view in shared.items():
        _same(view, build_snapshot(state, state.sites[site_id], H, now=now))

    def path(site_id: str, now: datetime) -> list[float]:
        view = shared[(site_id, now)]
        assert view is not None
        return [float(p) for p in view.snapshot.price_usd_per_mwh]

    # The keys matter: every node, anchor and clock has its own path (a cache keyed on less
    # would have handed one node's path to another and failed above).
    paths = {(s, n): tuple(path(s, n)) for s in ("tx-1", "pjm-1", "ny-1") for n in NOWS}
    assert len(set(paths.values())) == len(paths)
    assert path("tx-1", NOWS[0]) == path("tx-2", NOWS[0])
    anchors = {
        node: state.prices[node].newest_of(NOWS[0], REAL_TIME_PRIORITY)
        for node in ("HB_SOUTH", "PJM_DOM")
    }
    assert {a.start for a in anchors.values() if a is not None} == {T0 + Q, T0}
    pjm = shared[("pjm-1", NOWS[0])]
    assert pjm is not None and any("from the day-ahead forecast" in n for n in pjm.notes)


def test_cached_reads_equal_the_uncached_computation(state: FleetState) -> None:
    """The round's price path and filled curves are those of the functions they cache, read
    from a fresh round, for every node and clock (whatever was asked before)."""
    reads = RoundReads(H)
    for now in (T0 - Q, *NOWS):
        for node in ("HB_SOUTH", "PJM_DOM", "N_Y_C"):
            prices, forecasts = state.prices[node], state.price_forecasts.get(node)
            fresh = RoundReads(H)
            expected = _price_path(
                fresh.read(prices, now),
                fresh,
                forecasts,
                fresh.starts(now),
                anchor=prices.newest_of(now, REAL_TIME_PRIORITY),
            )
            got = reads.price_path(prices, forecasts, now)
            assert got[0].tobytes() == expected[0].tobytes()
            assert got[1:] == expected[1:]
            # The same prices without their forecast are another path.
            fresh = RoundReads(H)
            bare = _price_path(
                fresh.read(prices, now),
                fresh,
                None,
                fresh.starts(now),
                anchor=prices.newest_of(now, REAL_TIME_PRIORITY),
            )
            got = reads.price_path(prices, None, now)
            assert got[0].tobytes() == bare[0].tobytes() and got[1:] == bare[1:]
        for curve, default in (
            (state.carbon["PJM"], 0.0),
            (state.carbon["PJM"], None),
            (state.hashprice, None),
        ):
            expected_fill = _fill(RoundReads(H).read(curve, now), default)
            assert reads.filled(curve, now, default).tobytes() == expected_fill.tobytes()
        assert reads.step_hours().tolist() == [0.25] * 4 + [1.0] * 2
    # Before PJM's first carbon point the default applies, or else the first value.
    assert reads.filled(state.carbon["PJM"], T0 - Q, 0.0)[:2].tolist() == [0.0, 410.0]
    assert reads.filled(state.carbon["PJM"], T0 - Q)[:2].tolist() == [410.0, 410.0]
    # The gap in PJM's carbon is held, not zeroed; forecasts are used at PJM, not at N_Y_C.
    assert reads.filled(state.carbon["PJM"], T0).tolist()[:5] == [410.0, 420.0, 420.0, 420.0, 380.0]
    assert reads.price_path(state.prices["PJM_DOM"], state.price_forecasts["PJM_DOM"], T0)[1] > 0
    assert reads.price_path(state.prices["N_Y_C"], None, T0)[1] == 0


def test_a_site_changing_its_snapshot_changes_no_other_site_s(state: FleetState) -> None:
    reads = RoundReads(H)
    first = build_snapshot(state, state.sites["tx-1"], H, now=NOWS[0], reads=reads)
    second = build_snapshot(state, state.sites["tx-2"], H, now=NOWS[0], reads=reads)
    assert first is not None and second is not None
    before = _arrays(second)
    for name in _arrays(first):
        getattr(first.snapshot, name)[:] = -1.0
    assert _arrays(second) == before
    again = build_snapshot(state, state.sites["tx-2"], H, now=NOWS[0], reads=reads)
    assert again is not None and _arrays(again) == before


def test_flat_curves_are_made_once_per_round_and_stay_bit_exact() -> None:
    """A flat curve is the number at every step, bit for bit (0.0 and -0.0 are equal numbers
    with different bytes, an int is not a float), and each call gets its own array."""
    reads = RoundReads(H)
    for value in (0.0, -0.0, 25.0, math.inf, 7.0, 7):
        made = reads.constant(value)
        expected = np.full(H.n_steps, value)
        assert (made.dtype, made.tobytes()) == (expected.dtype, expected.tobytes())
    one = reads.constant(25.0)
    one[0] = -1.0
    assert reads.constant(25.0).tolist() == [25.0] * H.n_steps
