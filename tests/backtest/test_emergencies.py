"""ERCOT grid emergencies and conservation requests replayed as grid signals (issue #14 item 3):
read in Central prevailing time, known when issued, answered by gridshift at the GPU floor,
and the report's "MW off the grid during each emergency" section."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.backtest.emergencies import read_grid_events, requests_without_window
from streams.backtest.report import run_backtest, write_report
from streams.backtest.scenario import load_scenario, scenario_paths

SEPTEMBER = datetime(2023, 9, 3, 5, tzinfo=UTC)  # a week holding the 2023-09-06 EEA2


def test_grid_events_are_central_time_signals_known_when_issued(tmp_path: Path) -> None:
    table = tmp_path / "events.csv"
    table.write_text(
        "date_local,type,window_local_cpt,detail,source_url\n"
        "2023-08-25,conservation_appeal,not captured,window unknown,u\n"
        '2023-09-06,conservation_appeal,18:00-21:00,"appeal issued ~16:55; record",u\n'
        "2023-09-06,EEA2,19:25-20:27,frequency fell,u\n"
        "2024-01-15,conservation_appeal,06:00-10:00,winter,u\n"
        "2024-08-20,record_demand_no_appeal,17:00 hour,no call,u\n"
    )
    events = read_grid_events(table, "ERCOT")
    assert [e.kind for e in events] == ["conservation_appeal", "EEA2", "conservation_appeal"]
    appeal, eea, winter = events
    # CDT (UTC-5) in September, CST (UTC-6) in January.
    assert appeal.start == datetime(2023, 9, 6, 23, tzinfo=UTC)
    assert appeal.known == datetime(2023, 9, 6, 21, 55, tzinfo=UTC)  # "issued ~16:55"
    assert eea.start == datetime(2023, 9, 7, 0, 25, tzinfo=UTC)
    assert eea.end == datetime(2023, 9, 7, 1, 27, tzinfo=UTC)
    assert eea.known == eea.start  # no issue time: known at its start
    assert winter.start == datetime(2024, 1, 15, 12, tzinfo=UTC)
    assert eea.signal.signal_type == "emergency" and appeal.signal.signal_type == "demand_response"
    assert eea.signal.region == "ERCOT" and eea.signal.limit_mw is None
    # The request without a window makes no signal, and is named so the report can say so.
    week = (datetime(2023, 8, 24, 5, tzinfo=UTC), datetime(2023, 8, 31, 5, tzinfo=UTC))
    assert requests_without_window(table, *week) == [
        "2023-08-25 conservation_appeal (window not captured)"
    ]
    assert requests_without_window(table, SEPTEMBER, SEPTEMBER + timedelta(days=7)) == []


@pytest.mark.data
def test_gridshift_runs_only_the_gpu_floor_in_the_2023_eea2(data_dir: Path, tmp_path: Path) -> None:
    scenario = load_scenario(scenario_paths()["ercot-flexible-load"])
    assert scenario.emergencies is not None
    result = run_backtest(
        scenario,
        data_dir,
        Path("scenarios"),
        start=SEPTEMBER,
        end=SEPTEMBER + timedelta(days=7),
        show_progress=False,
    )
    site = result.fleet.sites[0]
    floor = site.pue * site.gpu_floor_mw  # 22 MW
    starts = result.actuals.starts
    # The hours holding the EEA2 (19:25-20:27 CDT = 00:25-01:27 UTC on the 7th).
    eea = [
        k
        for k, t in enumerate(starts)
        if datetime(2023, 9, 7, 0, tzinfo=UTC) <= t < datetime(2023, 9, 7, 2, tzinfo=UTC)
    ]
    assert len(eea) == 2
    grid_import = result.dispatch["gridshift"].grid_import[:, eea].sum(axis=0)
    assert grid_import.max() <= floor + 1e-6
    # Today's practice answers the appeal too; always-on does not.
    assert result.dispatch["todays_practice"].mining[:, eea].sum() == 0.0
    assert result.dispatch["always_on"].grid_import[:, eea].sum(axis=0).min() > 100.0
    by_kind = {e.label: e for e in result.event_imports["gridshift"]}
    (eea_row,) = [v for label, v in by_kind.items() if "EEA2" in label]
    assert eea_row.import_mw <= floor + 1e-6 and eea_row.reduced_mw > 90.0
    report = write_report(result, tmp_path / "report").read_text()
    assert "## MW off the grid during each emergency" in report
    assert "2023-09-06 19:25-20:27 Central EEA2" in report
