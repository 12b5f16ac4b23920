"""Shaped PPAs (issue #14 item 4): the hourly CFE score and market-based emissions of every
strategy against a wind/solar-shaped PPA instead of the flat ppa_mw, and gridshift planning
against that shape (grid.ppa.v1 forecasts released with each day's day-ahead prices)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from schemas import PpaSupplyEvent
from streams.backtest.events import DAY_AHEAD_RELEASE, history_intervals
from streams.backtest.ppa import ppa_supply_rows, read_shape, shape_on_grid
from streams.backtest.report import BacktestResult, run_backtest, write_report
from streams.backtest.scenario import PpaProfileSource, load_scenario, scenario_paths
from streams.backtest.synthetic import synthetic_week
from streams.engine.fleet import Fleet
from tests.factories import mining_site

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


def test_the_shaped_supply_is_published_with_each_day_s_day_ahead_prices(tmp_path: Path) -> None:
    table = tmp_path / "mix.csv"
    rows = [f"2022-08-{d:02d}T{h:02d}:00:00Z,0,{100 * h}" for d in (18, 19, 20) for h in range(24)]
    table.write_text("datetime_utc,wind_mw,solar_mw\n" + "\n".join(rows) + "\n")
    shape = read_shape(table, "solar", "nameplate")  # solar MW 100 x hour, max 2300
    fleet = Fleet(sites=(mining_site(ppa_mw=23.0), mining_site(site_id="site-b")))
    start = datetime(2024, 8, 18, 5, tzinfo=UTC)
    history = synthetic_week(start).window(None, pd.Timestamp(start + timedelta(days=2)))
    hours = [start + timedelta(hours=h) for h in range(48)]
    history.ppa = ppa_supply_rows(fleet, hours, shape)
    assert set(history.ppa["site_id"]) == {"site-a"}  # site-b has no PPA
    released: dict[datetime, PpaSupplyEvent] = {}
    known: dict[datetime, datetime] = {}
    for batch in history_intervals(history):
        for topic, event in batch.events:
            if isinstance(event, PpaSupplyEvent):
                assert topic == "grid.ppa.v1"
                released[event.interval_start] = event
                known[event.interval_start] = batch.start
    assert len(released) == 48
    ten = datetime(2024, 8, 19, 10, tzinfo=UTC)
    assert released[ten].supply_mw == pytest.approx(10.0)  # 23 MW x 1000 / 2300
    assert released[ten].basis == "forecast"
    assert known[ten] == datetime(2024, 8, 19, tzinfo=UTC) - DAY_AHEAD_RELEASE
    assert known[start] == start  # the first day: from the window's first interval


def solar_week(data_dir: Path, carbon_price: float, *, forecast: bool) -> BacktestResult:
    """The shipped flexible load with a 60 MW solar PPA on the week of 2023-09-03."""
    scenario = load_scenario(scenario_paths()["ercot-flexible-load"])
    site = scenario.sites[0].model_copy(
        update={"ppa_mw": 60.0, "carbon_price_usd_per_t": carbon_price}
    )
    shaped = scenario.model_copy(
        update={
            "sites": (site,),
            "emergencies": None,
            "ppa": PpaProfileSource(file=FUEL_MIX, profile="solar", forecast=forecast),
        }
    )
    return run_backtest(
        shaped,
        data_dir,
        Path("scenarios"),
        start=SEPTEMBER,
        end=SEPTEMBER + timedelta(days=7),
        show_progress=False,
    )


@pytest.mark.data
def test_planning_against_the_shape_raises_the_hourly_cfe_score(data_dir: Path) -> None:
    """At $400/t, gridshift planning against the flat 60 MW scores about 31 % hourly CFE; seeing
    the solar shape it curtails mining at night instead, about 38 % and a quarter less CO2
    (docs/BACKTEST.md)."""
    flat = solar_week(data_dir, 400.0, forecast=False)
    shaped = solar_week(data_dir, 400.0, forecast=True)
    before, after = flat.scores["gridshift"], shaped.scores["gridshift"]
    assert after.cfe_score > before.cfe_score + 0.05
    assert after.emissions_market_t < 0.8 * before.emissions_market_t
    # The same actual shape scores both; always-on does not plan, so it scores the same.
    assert shaped.actuals.ppa == pytest.approx(flat.actuals.ppa)
    assert shaped.scores["always_on"].cfe_score == pytest.approx(flat.scores["always_on"].cfe_score)
    # Where the horizon runs past the released days, the flat ppa_mw was assumed, and said.
    assumed = [k for k in shaped.dispatch["gridshift"].notes if k.startswith("ppa: ")]
    assert assumed and not any(k.startswith("ppa: ") for k in flat.dispatch["gridshift"].notes)
