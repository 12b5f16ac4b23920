"""ERCOT flexible-load value in the backtest: reserve prices known only from the day-ahead
publication, 4CP charged on every strategy, today's practice as a baseline, and the shipped
scenario's report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streams.backtest.flexible import (
    mcpc_on_grid,
    published_at,
    read_mcpc,
    reserve_price_schedule,
    todays_practice_reserve,
)
from streams.backtest.report import run_backtest, write_report
from streams.backtest.scenario import load_scenario, scenario_paths
from streams.engine.fleet import Fleet
from tests.factories import mining_site

AUGUST = datetime(2023, 8, 7, 5, tzinfo=UTC)


def test_a_reserve_price_is_known_from_the_day_ahead_publication_only(tmp_path: Path) -> None:
    table = tmp_path / "mcpc.csv"
    table.write_text(
        "interval_start_utc,dam_mcpc_regup_usd_per_mw_h,dam_mcpc_ecrs_usd_per_mw_h\n"
        "2023-08-10T05:00:00Z,3.0,\n"  # 00:00 CDT on the 10th: ECRS blank -> no event
        "2023-08-10T23:00:00Z,4.0,400.0\n"
    )
    events = reserve_price_schedule(
        read_mcpc([table]),
        "ERCOT",
        datetime(2023, 8, 10, tzinfo=UTC),
        datetime(2023, 8, 11, tzinfo=UTC),
    )
    assert [(e.product, e.price_usd_per_mw_h) for _, e in events] == [
        ("reg_up", 3.0),
        ("reg_up", 4.0),
        ("ecrs", 400.0),
    ]
    # 13:30 CDT on the 9th = 18:30 UTC, before the delivery day, never after the hour starts.
    assert {when for when, _ in events} == {datetime(2023, 8, 9, 18, 30, tzinfo=UTC)}
    assert published_at(pd.Timestamp("2023-08-10T05:00:00Z")) < datetime(2023, 8, 10, 5, tzinfo=UTC)


@pytest.mark.data
def test_the_ercot_flexible_load_scenario_prices_4cp_and_reserves(
    data_dir: Path, tmp_path: Path
) -> None:
    scenario = load_scenario(scenario_paths()["ercot-flexible-load"])
    result = run_backtest(
        scenario,
        data_dir,
        Path("scenarios"),
        start=AUGUST,
        end=AUGUST + timedelta(days=7),  # holds the 2023-08-10 4CP interval
        show_progress=False,
    )
    scores = result.scores
    assert set(scores) == {"gridshift", "todays_practice", "threshold", "always_on", "oracle"}
    # Every strategy pays the realised 4CP charge on its import at the peak.
    for s in scores.values():
        assert len(s.demand_at_peaks_mw) == 1
        assert s.peak_charge_usd == pytest.approx(s.demand_at_peaks_mw[0] * 68.5 * 1000 / 4)
    assert scores["always_on"].demand_at_peaks_mw[0] > 100.0
    assert scores["gridshift"].demand_at_peaks_mw[0] < 30.0  # only GPU hosting left on
    # gridshift and the oracle sell reserve; today's practice offers running mining; the
    # simple baselines none.
    assert scores["gridshift"].reserve_revenue_usd > 0
    assert scores["oracle"].reserve_revenue_usd > 0
    assert scores["todays_practice"].reserve_revenue_usd > 0
    assert scores["threshold"].reserve_revenue_usd == 0 == scores["always_on"].reserve_revenue_usd
    net = {name: s.net_margin_usd for name, s in scores.items()}
    assert net["gridshift"] > net["todays_practice"] > net["always_on"]
    assert net["oracle"] >= net["gridshift"]
    report = write_report(result, tmp_path / "report").read_text()
    assert "## Flexible-load value" in report
    assert "today's practice" in report and "4CP charge $" in report


def test_todays_practice_offers_the_first_product_the_market_ran() -> None:
    # SYNTHETIC: an ECRS-first site over three hours; ECRS clears only in the last (the market
    # had no ECRS before 2023-06-10), RRS in all.
    fleet = Fleet(sites=(mining_site(reserve_products=["ecrs", "rrs"], reserve_max_mw=10.0),))
    mining = np.array([[25.0, 4.0, 25.0]])
    mcpc = {"ecrs": np.array([0.0, 0.0, 50.0]), "rrs": np.array([5.0, 6.0, 7.0])}
    held = todays_practice_reserve(fleet, mining, mcpc)
    assert held["ecrs"].tolist() == [[0.0, 0.0, 10.0]]
    assert held["rrs"].tolist() == [[10.0, 4.0, 0.0]]  # never both in one hour
    # Without prices (the old call): the first qualified product, whatever the market ran.
    blind = todays_practice_reserve(fleet, mining)
    assert set(blind) == {"ecrs"} and blind["ecrs"].tolist() == [[10.0, 4.0, 10.0]]


@pytest.mark.data
def test_ecrs_is_absent_before_2023_06_10_and_nothing_is_sold_in_it(data_dir: Path) -> None:
    scenario = load_scenario(scenario_paths()["ercot-flexible-load"])
    files = [data_dir / "ercot" / "ercot_dam_as_mcpc_hourly_2022_2024.csv"]
    table = read_mcpc(files)
    launch = datetime(2023, 6, 10, 5, tzinfo=UTC)  # ECRS's first operating day, 00:00 CDT
    schedule = reserve_price_schedule(table, "ERCOT", datetime(2022, 7, 1, tzinfo=UTC), launch)
    products = {e.product for _, e in schedule}
    assert "rrs" in products and "ecrs" not in products
    starts = [launch + timedelta(hours=k - 24) for k in range(48)]
    grid = mcpc_on_grid(table, starts)
    assert (grid["ecrs"][:24] == 0).all() and (grid["ecrs"][24:] > 0).all()
    # A 2022 run: gridshift sells RRS only; the ECRS steps are noted as unpriced.
    july = datetime(2022, 7, 18, 5, tzinfo=UTC)
    result = run_backtest(
        scenario,
        data_dir,
        Path("scenarios"),
        start=july,
        end=july + timedelta(days=2),
        show_progress=False,
    )
    reserve = result.dispatch["gridshift"].reserve
    assert float(reserve.get("ecrs", np.zeros(1)).sum()) == 0.0
    assert float(reserve["rrs"].sum()) > 0.0
    assert any("ecrs unknown" in note for note in result.dispatch["gridshift"].notes)


@pytest.mark.data
def test_the_real_time_scenario_sheds_the_july_2024_peak(data_dir: Path) -> None:
    path = scenario_paths()["ercot-flexible-load-rt"]
    scenario = load_scenario(path)
    assert scenario.step_minutes == 15 and scenario.price_lag_intervals == 1
    start = datetime(2024, 6, 30, 5, tzinfo=UTC)
    result = run_backtest(
        scenario,
        data_dir,
        path.parent,
        start=start,
        end=start + timedelta(days=2),  # the 4CPs of 06-30 17:30 and 07-01 16:45 CDT
        show_progress=False,
    )
    scores = result.scores
    for s in scores.values():
        assert len(s.demand_at_peaks_mw) == 2
        assert s.peak_charge_usd == pytest.approx(sum(s.demand_at_peaks_mw) * 68.5 * 1000 / 4)
    # July 1 (a month's first day): the forecaster's probabilities, issued on June 30 before
    # the day-ahead market, reach the plan that sells July 1's reserve, so nothing sold keeps
    # the miners on at the peak. (Issued at midnight, sold ECRS/RRS held 120 MW through it.)
    assert scores["gridshift"].demand_at_peaks_mw[1] < 30.0
    assert scores["always_on"].demand_at_peaks_mw[1] > 100.0
    assert scores["gridshift"].reserve_revenue_usd > 0
