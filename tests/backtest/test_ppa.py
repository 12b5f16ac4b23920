"""Shaped PPAs in scoring (issue #14 item 4): the hourly CFE score and market-based emissions
of every strategy against a wind/solar-shaped PPA instead of the flat ppa_mw."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from streams.backtest.ppa import read_shape, shape_on_grid
from streams.backtest.report import run_backtest, write_report
from streams.backtest.scenario import PpaProfileSource, load_scenario, scenario_paths

SEPTEMBER = datetime(2023, 9, 3, 5, tzinfo=UTC)
FUEL_MIX = "data:ercot/ercot_fuel_mix_ci_eia930_hourly_2022.csv"


def test_a_shape_is_generation_over_max_or_mean_of_the_profile_year(tmp_path: Path) -> None:
    table = tmp_path / "mix.csv"
    table.write_text(
        "datetime_utc,wind_mw,solar_mw\n2022-02-28T00:00:00Z,100,0\n2022-02-28T01:00:00Z,300,100\n"
    )
    nameplate = read_shape(table, "wind+solar", "nameplate")
    average = read_shape(table, "wind", "average")
    starts = [datetime(2024, 2, 29, 0, tzinfo=UTC), datetime(2023, 2, 28, 1, tzinfo=UTC)]
    # 2024-02-29 takes 2022-02-28; wind+solar 100 and 400 over max 400.
    assert shape_on_grid(nameplate, starts) == pytest.approx([0.25, 1.0])
    assert shape_on_grid(average, starts) == pytest.approx([0.5, 1.5])


@pytest.mark.data
def test_the_hourly_cfe_score_follows_the_shaped_ppa(data_dir: Path, tmp_path: Path) -> None:
    scenario = load_scenario(scenario_paths()["ercot-flexible-load"])
    site = scenario.sites[0].model_copy(update={"ppa_mw": 60.0})
    shaped = scenario.model_copy(
        update={
            "sites": (site,),
            "emergencies": None,
            "ppa": PpaProfileSource(file=FUEL_MIX, profile="solar"),
        }
    )
    result = run_backtest(
        shaped,
        data_dir,
        Path("scenarios"),
        start=SEPTEMBER,
        end=SEPTEMBER + timedelta(days=7),
        show_progress=False,
    )
    ppa = result.actuals.ppa
    assert ppa is not None
    # Solar: nothing at night, at most the 60 MW nameplate.
    assert ppa.max() <= 60.0 + 1e-9 and ppa.min() == 0.0
    act = result.actuals
    hours = np.where(act.scored, act.hours, 0.0)
    for name, d in result.dispatch.items():
        facility = site.pue * (d.mining + d.gpu + d.routed)
        unmatched = np.maximum(0.0, d.grid_import - ppa)
        expected = 1.0 - (unmatched * hours).sum() / (facility * hours).sum()
        assert result.scores[name].cfe_score == pytest.approx(expected)
    # Far below the flat 60 MW contract's score (~50 %).
    assert result.scores["always_on"].cfe_score < 0.3
    report = write_report(result, tmp_path / "report").read_text()
    assert "## Hourly CFE against the shaped PPA" in report
