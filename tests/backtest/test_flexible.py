"""ERCOT flexible-load value in the backtest: reserve prices known only from the day-ahead
publication, 4CP charged on every strategy, today's practice as a baseline, and the shipped
scenario's report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from streams.backtest.flexible import published_at, read_mcpc, reserve_price_schedule
from streams.backtest.report import run_backtest, write_report
from streams.backtest.scenario import load_scenario, scenario_paths

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
