"""A backtest never scores emissions it cannot know as 0 t: an interval without a carbon
intensity is left out of the emissions, a strategy with none at all reports NaN (shown n/a),
a measured 0 g/kWh stays 0 t, and a fleet whose one region has no carbon data says so beside
the total that leaves it out. Arrays and tables are SYNTHETIC."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from optimizer.value import FloatArray
from streams.backtest.report import write_report
from streams.backtest.run import Actuals, Dispatch, score
from streams.engine.fleet import Fleet
from tests.backtest.own import backtest, own_scenario, own_table, site_toml
from tests.factories import mining_site

N = 4  # intervals of 15 minutes
NAN = float("nan")


def _score_with(carbon: list[list[float]], scored: list[bool] | None = None) -> tuple[float, float]:
    """Location- and market-based tonnes of two sites importing 10 MW each over ``N`` intervals
    at ``carbon`` (g/kWh, one row per site; NaN = unknown)."""
    fleet = Fleet(sites=(mining_site(), mining_site(site_id="site-b", carbon_region="PJM")))
    start = datetime(2024, 8, 18, 5, tzinfo=UTC)

    def full(value: float) -> FloatArray:
        return np.full((2, N), value)

    act = Actuals(
        [start + k * timedelta(minutes=15) for k in range(N)],
        0.25,
        full(30.0),
        full(30.0),
        np.array(carbon, dtype=float),
        np.full(N, 0.05),
        full(100.0),
        full(100.0),
        np.array(scored if scored is not None else [True] * N),
    )
    zeros = full(0.0)
    result = score(fleet, act, Dispatch(full(10.0), zeros, full(10.0), zeros, zeros))
    return result.emissions_location_t, result.emissions_market_t


def test_no_carbon_anywhere_is_unknown_not_zero() -> None:
    location, market = _score_with([[NAN] * N, [NAN] * N])
    assert math.isnan(location) and math.isnan(market)


def test_carbon_only_where_nothing_is_scored_is_unknown_not_zero() -> None:
    location, market = _score_with([[400.0] * N, [NAN] * N], scored=[False] * N)
    assert math.isnan(location) and math.isnan(market)


def test_a_measured_zero_intensity_is_zero_tonnes_not_unknown() -> None:
    assert _score_with([[0.0] * N, [0.0] * N]) == (0.0, 0.0)


def test_unknown_intervals_are_left_out_and_known_ones_counted() -> None:
    # site-a: 3 intervals at 400 g/kWh, one unknown; site-b: no carbon at all.
    location, market = _score_with([[400.0, 400.0, NAN, 400.0], [NAN] * N])
    assert location == pytest.approx(10.0 * 0.25 * 0.4 * 3)
    assert market == pytest.approx(location)  # no PPA: every imported MWh is unmatched


def test_a_region_without_carbon_is_said_beside_the_total_that_leaves_it_out(
    tmp_path: Path,
) -> None:
    own_table(tmp_path)  # ERCOT: 400 g/kWh throughout
    own_table(tmp_path, "pjm.csv", carbon_g_per_kwh=None)  # PJM: prices, no carbon column
    pjm = '\n[[markets]]\nnode = "PJM_DOM"\nregion = "PJM"\nfile = "pjm.csv"\n'
    sites = (
        site_toml() + "\n" + site_toml(site_id="site-b", price_node="PJM_DOM", carbon_region="PJM")
    )
    result = backtest(own_scenario(tmp_path, market=pjm, site=sites))
    always_on = result.scores["always_on"]
    # Always on imports 30 MW at each site; only ERCOT's 95 scored intervals carry carbon.
    assert always_on.emissions_location_t == pytest.approx(7.5 * 0.4 * 95, rel=1e-9)
    report = write_report(result, tmp_path / "report").read_text()
    assert "no carbon data for region PJM: its emissions are not reported (n/a)" in report
    # ... and beside the results table whose t CO2 total leaves site-b out.
    assert "The t CO2 columns cover 1 of 2 sites: no carbon data for site-b." in report
    # gridshift's PJM decisions say they planned with zero emissions (counted per kind).
    assert any(
        "carbon intensity unknown for PJM: the plan assumed zero emissions" in line
        for line in result.notes
    )
