"""A backtest run in chunks (each warmed up, side by side) gives the unchunked run's dispatch and
decisions, on SYNTHETIC data and on a real-data window."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from optimizer import Horizon
from streams.backtest.chunks import bounds, default_warmup, run_gridshift_chunked
from streams.backtest.report import run_backtest
from streams.backtest.run import DecisionLog, DecisionRecord, Dispatch, run_gridshift, timeline
from streams.backtest.scenario import load_scenario, scenario_paths
from streams.backtest.synthetic import synthetic_week
from streams.engine.fleet import Fleet
from tests.factories import mining_site

START = datetime(2024, 8, 18, 5, tzinfo=UTC)
H = Horizon.mixed(fine_steps=4, fine_minutes=15, coarse_minutes=60, total_hours=6)
ARRAYS = ("mining", "gpu", "grid_import", "routed", "routed_revenue_usd")


def _fleet() -> Fleet:
    """A plain site, a ramp-limited one (each decision anchors on the one before), a battery
    site (carries its plan's charge between decisions) and a copy of the plain one."""
    return Fleet(
        sites=(
            mining_site(site_id="plain"),
            mining_site(site_id="copy"),
            mining_site(site_id="ramp", mining_ramp_up_mw_per_min=0.05),
            mining_site(site_id="battery", battery_power_mw=5.0, battery_energy_mwh=10.0),
        )
    )


def _assert_same(a: Dispatch, b: Dispatch) -> None:
    for name in ARRAYS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-6, err_msg=name)
    assert a.failsafe is not None and b.failsafe is not None
    assert (a.failsafe == b.failsafe).all()
    # Same inputs -> same input versions -> same deterministic decision ids, in the same order.
    assert [d.decision_id for d in a.decisions] == [d.decision_id for d in b.decisions]
    assert a.notes == b.notes


def test_chunk_bounds_cover_the_period_once_with_a_warm_up_before_each() -> None:
    spans = bounds(100, 3, 10)
    assert spans == [(0, 0, 33), (23, 33, 67), (57, 67, 100)]
    assert default_warmup(Horizon.mixed()) == timedelta(hours=48)


def test_chunked_equals_unchunked_on_a_synthetic_week() -> None:
    history = synthetic_week(START)  # SYNTHETIC fixture
    fleet = _fleet()
    starts = timeline(START, START + timedelta(days=6), 15)
    whole = run_gridshift(fleet, history, starts, H, lag=1)
    assert whole.mining.std() > 0.5  # the week is really dispatched, not a flat line
    chunked = run_gridshift_chunked(fleet, history, starts, H, lag=1, chunks=3)
    assert chunked.chunks == 3
    _assert_same(chunked.dispatch, whole)
    assert len(chunked.dispatch.decisions) == len(whole.decisions)


def test_chunks_run_in_worker_processes_give_the_same_dispatch() -> None:
    history = synthetic_week(START)  # SYNTHETIC fixture
    fleet = _fleet()
    starts = timeline(START, START + timedelta(days=3), 15)
    whole = run_gridshift(fleet, history, starts, H, lag=1, decompose=False)
    pooled = run_gridshift_chunked(fleet, history, starts, H, lag=1, workers=2)
    assert pooled.chunks == 2
    assert len(pooled.peak_rss_bytes) == 2 and min(pooled.peak_rss_bytes) > 10 * 2**20
    _assert_same(pooled.dispatch, whole)


@pytest.mark.data
def test_chunked_equals_unchunked_on_real_gigawatt_days(data_dir: Path) -> None:
    path = scenario_paths()["gigawatt"]
    scenario = load_scenario(path)
    start, end = datetime(2024, 8, 18, 5, tzinfo=UTC), datetime(2024, 8, 21, 5, tzinfo=UTC)

    def run(workers: int) -> Dispatch:
        result = run_backtest(
            scenario,
            data_dir,
            path.parent,
            start=start,
            end=end,
            show_progress=False,
            workers=workers,
        )
        return result.dispatch["gridshift"]

    _assert_same(run(2), run(1))


def test_the_decision_log_keeps_every_record_compactly_and_joins_chunks() -> None:
    first, second = DecisionLog(), DecisionLog()
    records = [
        DecisionRecord(f"site-{k % 3}", START + k * timedelta(minutes=15), f"{k:032x}", fallback)
        for k, fallback in enumerate(["none", "fail_safe", "hold_last_plan", "none", "none"])
    ]
    first.extend(records[:2])
    second.extend(records[2:])
    first.extend(second)  # a chunk's log joined column-wise, its site numbers translated
    assert list(first) == records
    assert first[-1] == records[-1] and first[1:3] == records[1:3]
    big = DecisionLog()
    big.extend(records * 2000)  # 10,000 decisions
    assert len(pickle.dumps(big)) < 40 * len(big)  # vs ~200 bytes each as objects
