"""A backtest whose window a side source does not cover says so in its data treatment: the 4CP
list's missing summer (2021: "no peak in window" would hide it), reserve prices missing for a
product or for the whole window (a row like the other sources, with counts), and decision notes
told in words, with no internal ``#`` left."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from streams.backtest.notes import note_kind, tell
from streams.backtest.report import BacktestResult, write_report
from tests.backtest.own import backtest, own_scenario, own_table, site_toml
from tests.backtest.test_flexible import shipped

NO_4CP_2021 = (
    "4CP list has no intervals for 2021 (missing in the source): the 4CP charge is not scored "
    "for June-September 2021"
)
MCPC_FILES = "ercot_dam_as_mcpc_hourly_2021.csv, ercot_dam_as_mcpc_hourly_2022_2024.csv"


def flexible_load(data_dir: Path, start: datetime, days: int) -> BacktestResult:
    """The shipped ERCOT flexible-load scenario over ``days`` from ``start`` (real data)."""
    return shipped("ercot-flexible-load", data_dir, start, days)


def treatment(result: BacktestResult) -> str:
    """The report's "Data treatment" section (``write_report`` writes it under that title)."""
    return "\n".join(result.ledger.markdown())


def assert_told_in_words(result: BacktestResult) -> None:
    for note in result.notes:
        assert "#" not in note, note


@pytest.mark.data
def test_a_2021_summer_window_names_the_missing_4cp_list(data_dir: Path, tmp_path: Path) -> None:
    result = flexible_load(data_dir, datetime(2021, 6, 1, 5, tzinfo=UTC), days=1)
    assert result.peaks == []  # June 2021 had a 4CP interval; the source lacks the year
    assert NO_4CP_2021 in result.notes
    assert f"- {NO_4CP_2021}" in treatment(result)
    assert_told_in_words(result)
    # The 4CP lines of the report say it too, not just "no peak in window".
    report = write_report(result, tmp_path / "report").read_text()
    assert f"- gridshift (MPC): no peak in window ({NO_4CP_2021}) (charge $0)" in report


@pytest.mark.data
def test_a_2020_window_has_a_reserve_price_row_per_product(data_dir: Path) -> None:
    # MCPC starts in 2021: every strategy earns $0 reserve, and the data treatment says why.
    result = flexible_load(data_dir, datetime(2020, 8, 1, 5, tzinfo=UTC), days=1)
    assert all(s.reserve_revenue_usd == 0 for s in result.scores.values())
    text = treatment(result)
    for product in ("ecrs", "rrs"):
        assert f"| {product} reserve price | {MCPC_FILES} | 0 | 0 | 24 | 0 | 0 | 0 |" in text
        assert (
            f"- {product} reserve price ({MCPC_FILES}): 24 intervals without a clearing price: "
            "2020-08-01 05:00Z to 2020-08-02 05:00Z (1 day); reserve held in them is paid "
            "nothing, for every strategy"
        ) in text
    assert "one missing a reserve price pays no reserve revenue" in text
    assert not any(note.startswith("4CP list") for note in result.notes)  # 2020 is listed
    assert_told_in_words(result)


def test_reserve_prices_missing_for_part_of_the_window_or_a_product_are_counted(
    tmp_path: Path,
) -> None:
    # SYNTHETIC: one day of 15-minute rows; the MCPC table has RRS for the first 12 hours only
    # and no ECRS column at all. The site sells both.
    own_table(tmp_path)
    (tmp_path / "mcpc.csv").write_text(
        "interval_start_utc,dam_mcpc_rrs_usd_per_mw_h\n"
        + "".join(
            f"{hour:%Y-%m-%dT%H:%M:%SZ},5.0\n"
            for hour in pd.date_range("2024-08-18T05:00:00Z", periods=12, freq="h")
        )
    )
    site = site_toml() + 'reserve_products = ["ecrs", "rrs"]\nreserve_max_mw = 10.0\n'
    top = '[reserves]\nfiles = ["mcpc.csv"]\nregion = "ERCOT"\n'
    result = backtest(own_scenario(tmp_path, site=site, top=top))
    rows = {r.series: r for r in result.ledger.rows}
    assert (rows["ecrs reserve price"].observed, rows["ecrs reserve price"].missing) == (0, 96)
    assert (rows["rrs reserve price"].observed, rows["rrs reserve price"].missing) == (48, 48)
    assert (
        "rrs reserve price (mcpc.csv): 48 intervals without a clearing price: 2024-08-18 17:00Z "
        "to 2024-08-19 05:00Z (12 h); reserve held in them is paid nothing, for every strategy"
    ) in result.notes
    assert "rrs reserve price (mcpc.csv): 48 intervals missing" in result.notes
    assert_told_in_words(result)


def test_a_reserve_price_unknown_note_is_told_in_words() -> None:
    kind = note_kind("reserve price ecrs unknown in ERCOT for 23 steps: nothing sold there earns")
    assert tell(kind) == (
        "ecrs reserve price unknown in ERCOT over horizon steps no clearing price (published, a "
        "day earlier or held) covers: the plan valued ecrs reserve there at $0"
    )
    assert "#" not in tell(note_kind("telemetry 5 min old (stale after 3 min): not taken"))
