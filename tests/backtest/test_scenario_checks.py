"""Scenario files checked where a mistake would otherwise give wrong figures or a traceback:
regions of the 4CP charge, reserve prices and emergencies must be a market's (matched exactly,
as the engine does); an inline column key is checked like a mapping file's; values of the wrong
TOML type are refused, not converted; the title and price-timing line say what was run. Tables
are SYNTHETIC, written by the tests into their own folder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.backtest.report import run_backtest, write_report
from streams.backtest.scenario import Scenario, load_scenario, scenario_paths
from streams.engine.fleet import load_fleet
from streams.errors import GridshiftError
from tests.backtest.own import own_scenario, own_table, site_toml

TABLES = {
    "coincident_peak": "[coincident_peak]\ntariff_usd_per_kw_year = 68.5\nregion = {region}\n",
    "reserves": '[reserves]\nfiles = ["mcpc.csv"]\nregion = {region}\n',
    "emergencies": '[emergencies]\nfile = "events.csv"\nregion = {region}\n',
}


# ---------------------------------------------------------------- regions
@pytest.mark.parametrize(
    ("table", "region", "hint"),
    [
        ("coincident_peak", "PJM", ""),
        ("coincident_peak", "ercot", "; did you mean ERCOT?"),
        ("reserves", "Ercot", "; did you mean ERCOT?"),
        ("emergencies", "TEXAS", ""),
    ],
)
def test_a_region_no_market_has_is_named_with_the_known_regions(
    tmp_path: Path, table: str, region: str, hint: str
) -> None:
    path = own_scenario(tmp_path, top=TABLES[table].format(region=f'"{region}"'))
    with pytest.raises(GridshiftError) as info:
        load_scenario(path)
    assert str(info.value) == (
        f"scenario file {path}: [{table}] region {region!r} is not a region of any market in "
        f"the scenario (known: ERCOT){hint}"
    )


@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_market_region_and_the_default_are_accepted(tmp_path: Path, table: str) -> None:
    top = TABLES[table].format(region='"ERCOT"')
    assert load_scenario(own_scenario(tmp_path, top=top)) is not None
    default = "\n".join(line for line in top.splitlines() if not line.startswith("region"))
    assert load_scenario(own_scenario(tmp_path, top=default + "\n")) is not None


# ---------------------------------------------------------------- inline columns
@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("price_usd_per_mhw", "price_usd_per_mwh"),
        ("day_ahead_price_usd_per_mhw", "day_ahead_price_usd_per_mwh"),
    ],
)
def test_a_misspelt_inline_column_key_is_one_line(tmp_path: Path, key: str, meant: str) -> None:
    own_table(tmp_path)
    market = f'step_minutes = 15\n[markets.columns]\n{key} = "price_usd_per_mwh"\n'
    path = own_scenario(tmp_path, market=market)
    with pytest.raises(GridshiftError) as info:
        load_scenario(path)
    assert str(info.value) == (
        f"scenario file {path}: markets[0].columns: {key!r} is not a canonical column "
        f"(did you mean {meant}?)"
    )


# ---------------------------------------------------------------- strict types
@pytest.mark.parametrize(
    ("place", "text", "where", "kind"),
    [
        ("site", "interconnect_mw = true", "sites[0].interconnect_mw", "number"),
        ("site", 'pue = "1.1"', "sites[0].pue", "number"),
        ("site", "gpu_capacity_mw = false", "sites[0].gpu_capacity_mw", "number"),
        ("top", 'step_minutes = "60"', "step_minutes", "integer"),
        ("top", "step_minutes = 15.0", "step_minutes", "integer"),
        ("top", "price_lag_intervals = true", "price_lag_intervals", "integer"),
        ("market", 'step_minutes = "15"', "markets[0].step_minutes", "integer"),
        ("market", "day_ahead_forecast = 1", "markets[0].day_ahead_forecast", "boolean"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_not_converted(
    tmp_path: Path, place: str, text: str, where: str, kind: str
) -> None:
    own_table(tmp_path)
    key = text.split(" = ", maxsplit=1)[0]
    if place == "site":
        site = "\n".join(
            line for line in site_toml().splitlines() if not line.startswith(f"{key} ")
        )
        path = own_scenario(tmp_path, site=f"{site}\n{text}\n")
    elif place == "top":
        path = own_scenario(tmp_path, lag=0, top=text + "\n")
        if key == "price_lag_intervals":  # written by own_scenario: replace it
            path.write_text(path.read_text().replace("price_lag_intervals = 0\n", ""))
    else:
        path = own_scenario(tmp_path, market=text + "\n")
    with pytest.raises(GridshiftError) as info:
        load_scenario(path)
    assert str(info.value) == f"scenario file {path}: {where}: Input should be a valid {kind}"


@pytest.mark.parametrize("number", ["1723957200", '"1723957200"', '"1723957200.5"'])
def test_a_number_is_no_start_time(tmp_path: Path, number: str) -> None:
    path = own_scenario(tmp_path)
    path.write_text(path.read_text().replace('start = "2024-08-18T05:00:00Z"', f"start = {number}"))
    with pytest.raises(GridshiftError, match=r"start: give a date-time with an offset"):
        load_scenario(path)


def test_what_toml_gives_still_reads(tmp_path: Path) -> None:
    """Integers for floats, arrays for lists, TOML date-times as well as text ones."""
    own_table(tmp_path)
    site = site_toml(interconnect_mw=30, mining_capacity_mw=25) + 'reserve_products = ["ecrs"]\n'
    path = own_scenario(tmp_path, site=site, market="price_bounds_usd_per_mwh = [-250, 5000]\n")
    path.write_text(
        path.read_text().replace('end = "2024-08-19T05:00:00Z"', "end = 2024-08-19T05:00:00Z")
    )
    scenario = load_scenario(path)
    site_a = scenario.fleet().sites[0]
    assert site_a.interconnect_mw == 30.0
    assert site_a.reserve_products == ("ecrs",)
    assert scenario.markets[0].price_bounds_usd_per_mwh == (-250.0, 5000.0)
    assert scenario.end == datetime(2024, 8, 19, 5, tzinfo=UTC)


def test_every_shipped_scenario_loads_and_survives_a_sweeps_json_copy() -> None:
    for name, path in scenario_paths().items():
        scenario = load_scenario(path)
        copy = Scenario.model_validate(scenario.model_dump(mode="json", exclude_unset=True))
        assert copy == scenario, name


def test_a_fleet_file_is_strict_about_types_too(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(site_toml().replace("interconnect_mw = 30.0", 'interconnect_mw = "30"'))
    with pytest.raises(GridshiftError) as info:
        load_fleet(path)
    assert str(info.value) == (
        f"sites file {path}: sites.0.interconnect_mw: Input should be a valid number"
    )
    assert load_fleet(None).sites  # the shipped example still loads


# ---------------------------------------------------------------- what the report says
def test_the_title_says_when_the_window_is_not_the_files() -> None:
    scenario = load_scenario(scenario_paths()["ercot-flexible-load"])
    assert scenario.heading(scenario.start, scenario.end) == scenario.title
    start, end = datetime(2020, 8, 1, tzinfo=UTC), datetime(2020, 8, 8, tzinfo=UTC)
    assert scenario.heading(start, end) == (
        f"{scenario.title} (run on 2020-08-01 00:00Z to 2020-08-08 00:00Z, not the file's "
        "2023-06-01 05:00Z to 2023-10-01 05:00Z)"
    )


def test_prices_of_a_day_ahead_priced_market_are_said_known_the_day_before(
    tmp_path: Path,
) -> None:
    day_ahead = load_scenario(scenario_paths()["ercot-flexible-load"])
    assert day_ahead.price_timing() == (
        "prices are day-ahead prices, known at the day-ahead market's publication, the day "
        "before delivery"
    )
    dropped = day_ahead.model_copy(
        update={"markets": (day_ahead.markets[0].model_copy(update={"day_ahead_forecast": False}),)}
    )
    assert dropped.price_timing() == (
        "prices known 0 intervals after they start (0 = ex-ante real-time prices)"
    )
    real_time = load_scenario(scenario_paths()["ercot-flexible-load-rt"])
    assert real_time.price_timing() == (
        "prices known 1 interval after they start (0 = ex-ante real-time prices)"
    )


def test_the_report_and_the_cli_say_the_window_run(tmp_path: Path) -> None:
    # A SYNTHETIC table (tests/backtest/own.py): a day in the file, half of it run.
    table = own_table(tmp_path)
    path = own_scenario(tmp_path, file=table.name, lag=0)
    start = datetime(2024, 8, 18, 5, tzinfo=UTC)
    result = run_backtest(
        load_scenario(path),
        None,
        tmp_path,
        start=start,
        end=start + timedelta(hours=12),
        show_progress=False,
    )
    heading = "own data (run on 2024-08-18 05:00Z to 2024-08-18 17:00Z, not the file's "
    assert result.heading().startswith(heading)
    report = write_report(result, tmp_path / "report").read_text()
    assert report.startswith(f"# Backtest: {heading}")
    assert "- prices known 0 intervals after they start (0 = ex-ante real-time prices)" in report
    assert "| 0 |" in report and "| 0.000 |" not in report  # an exact zero is written 0


@pytest.mark.parametrize(
    ("old", "new", "where", "kind"),
    [
        ("fine_steps = 4", 'fine_steps = "4"', "horizon.fine_steps", "integer"),
        ("hours = 2", "hours = true", "horizon.hours", "number"),
        ("[horizon]", "[hold]\nprice_minutes = 60.0\n\n[horizon]", "hold.price_minutes", "integer"),
    ],
)
def test_horizon_and_hold_values_of_the_wrong_type_are_refused(
    tmp_path: Path, old: str, new: str, where: str, kind: str
) -> None:
    own_table(tmp_path)
    path = own_scenario(tmp_path)
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(GridshiftError) as info:
        load_scenario(path)
    assert str(info.value) == f"scenario file {path}: {where}: Input should be a valid {kind}"
