"""What a backtest assumes where data is missing (issue 13, items 1, 2, 4 and 5): a period the
data does not cover is refused naming the data's range (or clipped on request, said at the top
of the report), gaps within the hold rules are held and counted, longer ones are not scored for
any strategy, the hashprice comes only from the user's table, a file the scenario names or a
constant, and every strategy is scored from the same information. Tables are SYNTHETIC, written
by the tests into their own folder."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streams.backtest.report import write_report
from streams.errors import GridshiftError
from tests.backtest.own import backtest, own_scenario, own_table

DAY = 96  # 15-minute intervals


# ---------------------------------------------------------------- item 1: edges and gaps
def test_an_end_past_the_data_is_refused_naming_the_range(tmp_path: Path) -> None:
    own_table(tmp_path)
    with pytest.raises(GridshiftError) as info:
        backtest(own_scenario(tmp_path, end="2024-09-10T00:00:00Z"))
    assert str(info.value) == (
        "HB_SOUTH price in own.csv covers 2024-08-18 05:00Z to 2024-08-19 05:00Z; the period "
        "asked runs to 2024-09-10 00:00Z (pass --end 2024-08-19T05:00, or --clip-to-data to "
        "score only the covered part)"
    )


def test_a_start_before_the_data_is_refused_naming_the_range(tmp_path: Path) -> None:
    own_table(tmp_path)
    with pytest.raises(GridshiftError, match=r"the period asked starts 2024-08-10 00:00Z \(pass "):
        backtest(own_scenario(tmp_path), start=datetime(2024, 8, 10, tzinfo=UTC))


def test_a_period_after_the_data_names_the_data_not_move_it_later(tmp_path: Path) -> None:
    own_table(tmp_path)
    with pytest.raises(GridshiftError) as info:
        backtest(
            own_scenario(tmp_path),
            start=datetime(2024, 9, 1, tzinfo=UTC),
            end=datetime(2024, 9, 2, tzinfo=UTC),
        )
    message = str(info.value)
    assert "covers 2024-08-18 05:00Z to 2024-08-19 05:00Z: no data in the period asked" in message
    assert "later" not in message


def test_clip_to_data_scores_only_the_covered_part_and_says_so_at_the_top(tmp_path: Path) -> None:
    own_table(tmp_path)
    result = backtest(own_scenario(tmp_path, end="2024-09-10T00:00:00Z"), clip_to_data=True)
    assert result.actuals.starts[0] == datetime(2024, 8, 18, 5, tzinfo=UTC)
    assert result.actuals.starts[-1] == datetime(2024, 8, 19, 4, 45, tzinfo=UTC)
    assert result.ledger.clipped is not None
    report = write_report(result, tmp_path / "report").read_text()
    assert report.splitlines()[2].startswith("> **Clipped to the data.** The period asked was ")
    assert "the period asked was 2024-08-18 05:00Z to 2024-09-10 00:00Z" in report


def test_a_gap_longer_than_the_hold_limit_is_not_scored_for_any_strategy(tmp_path: Path) -> None:
    own_table(tmp_path, drop=range(30, 79))  # 49 intervals (12 h 15 min) missing
    result = backtest(own_scenario(tmp_path))
    act = result.actuals
    assert not act.scored[30:79].any()
    # Nor the warm-up, nor the first interval after the gap: no new price is known yet there.
    assert not act.scored[0] and not act.scored[79]
    # Nor the staggered restore after it (the live fail-safe; the baselines restart at once).
    assert act.restoring == 3
    assert act.scored.sum() == DAY - 1 - 49 - 1 - act.restoring
    for score in result.scores.values():
        assert np.all(score.margin_by_interval[30:79] == 0.0)
    gap = [n for n in result.notes if n.startswith("HB_SOUTH price") and "not scored" in n]
    assert gap == [
        "HB_SOUTH price (own.csv): 49 intervals not scored, no data within the 1 h hold limit: "
        "2024-08-18 12:30Z to 2024-08-19 00:45Z (12 h 15 min)"
    ]
    assert (
        "after those gaps, 1 interval with prices again is run but not scored until a new price "
        "is known, as in the warm-up"
    ) in result.notes
    # The hashprice of the same rows is held through it (a 12-hour gap is within 2 days).
    assert any(
        n.startswith("hashprice (column of own.csv): 49 intervals held") for n in result.notes
    )


def test_a_gap_within_the_hold_limit_is_held_and_counted(tmp_path: Path) -> None:
    own_table(tmp_path, drop=[40, 41])  # 30 minutes
    result = backtest(own_scenario(tmp_path))
    assert result.actuals.scored[1:].all()
    row = result.ledger.rows[0]
    assert (row.series, row.observed, row.held, row.missing) == ("HB_SOUTH price", 94, 2, 0)
    # A stricter hold rule in the scenario leaves the same gap unscored.
    strict = backtest(own_scenario(tmp_path, top="[hold]\nprice_minutes = 15\n"))
    assert not strict.actuals.scored[40:42].any()


# ---------------------------------------------------------------- item 2: hashprice sources
def shared_btc_file(folder: Path) -> None:
    """A file with the shared BTC file's name and columns, where the old code looked for it."""
    (folder / "bitcoin").mkdir()
    days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
    pd.DataFrame(
        {"date_utc": days.strftime("%Y-%m-%d"), "hashprice_subsidy_usd_per_th_day": 0.06}
    ).to_csv(folder / "bitcoin/btc_daily_price_difficulty_hashrate_2020-04_2024-12.csv")


def test_no_hashprice_column_is_an_error_not_another_file(tmp_path: Path) -> None:
    own_table(tmp_path, hashprice_usd_per_th_day=None)
    shared_btc_file(tmp_path)
    with pytest.raises(GridshiftError) as info:
        backtest(own_scenario(tmp_path), data_dir=tmp_path)
    assert str(info.value) == (
        "no hashprice: own.csv has no hashprice_usd_per_th_day column; add [hashprice] with "
        "file = ... (and column = ...) or constant_usd_per_th_day = ... to the scenario"
    )


def test_a_hashprice_constant_is_used_and_said_to_be_assumed(tmp_path: Path) -> None:
    own_table(tmp_path, hashprice_usd_per_th_day=None)
    top = "[hashprice]\nconstant_usd_per_th_day = 0.07\n"
    result = backtest(own_scenario(tmp_path, top=top))
    assert np.allclose(result.actuals.hashprice, 0.07)
    assert "hashprice: constant 0.07 $/TH/day (assumed) for every interval" in result.notes


def test_a_hashprice_file_ending_before_the_period_is_refused(tmp_path: Path) -> None:
    own_table(tmp_path, hashprice_usd_per_th_day=None)
    days = pd.date_range("2024-08-01", "2024-08-17", freq="D")
    pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "hp": 0.05}).to_csv(
        tmp_path / "btc.csv", index=False
    )
    top = '[hashprice]\nfile = "btc.csv"\ntime_column = "day"\ncolumn = "hp"\n'
    with pytest.raises(GridshiftError, match=r"^hashprice in btc.csv covers 2024-08-01 00:00Z to "):
        backtest(own_scenario(tmp_path, top=top))


def test_a_missing_hashprice_day_is_held_and_counted(tmp_path: Path) -> None:
    own_table(tmp_path, days=3, hashprice_usd_per_th_day=None)
    days = pd.date_range("2024-08-17", "2024-08-22", freq="D").delete(2)  # no 2024-08-19
    pd.DataFrame({"date_utc": days.strftime("%Y-%m-%d"), "hashprice_usd_per_th_day": 0.05}).to_csv(
        tmp_path / "btc.csv", index=False
    )
    top = '[hashprice]\nfile = "btc.csv"\n'
    result = backtest(own_scenario(tmp_path, end="2024-08-21T05:00:00Z", top=top))
    assert result.actuals.scored[1:].all()
    row = next(r for r in result.ledger.rows if r.series == "hashprice")
    assert (row.source, row.held) == ("btc.csv", DAY)


# ---------------------------------------------------------------- item 4: bad values in a run
def test_sentinel_rows_are_dropped_and_counted_in_the_run(tmp_path: Path) -> None:
    prices = [30.0] * DAY
    prices[10:12] = [-9999.0, -9999.0]
    own_table(tmp_path, price=prices)
    result = backtest(own_scenario(tmp_path))
    assert result.scores["gridshift"].energy_cost_usd > 0
    assert np.all(result.actuals.price == 30.0)  # held through the 30-minute hole
    assert (
        "HB_SOUTH: 2 rows with a price outside -1,000..10,000 $/MWh dropped "
        "(-9,999 at 2024-08-18 07:30Z, -9,999 at 2024-08-18 07:45Z)"
    ) in result.notes


def test_no_carbon_data_is_said_not_zero_tonnes(tmp_path: Path) -> None:
    own_table(tmp_path, carbon_g_per_kwh=None)
    result = backtest(own_scenario(tmp_path))
    assert math.isnan(result.scores["gridshift"].emissions_location_t)
    report = write_report(result, tmp_path / "report").read_text()
    assert "no carbon data for region ERCOT: its emissions are not reported (n/a)" in report
    assert "| gridshift (MPC) |" in report
    assert all(
        "| n/a | n/a |" in line for line in report.splitlines() if "| gridshift (MPC) |" in line
    )


def test_a_long_carbon_gap_is_left_out_of_the_emissions_and_said(tmp_path: Path) -> None:
    carbon = [400.0] * DAY
    carbon[20:60] = [float("nan")] * 40  # 10 hours
    own_table(tmp_path, carbon_g_per_kwh=carbon)
    result = backtest(own_scenario(tmp_path))
    assert result.actuals.scored[1:].all()  # carbon never stops scoring
    # Always on imports the whole 30 MW: 7.5 MWh an interval at 0.4 t/MWh, 55 intervals with
    # carbon (95 scored, 40 of them without carbon).
    expected = 7.5 * 0.4 * 55
    assert any(
        n.startswith("ERCOT carbon (column of own.csv): 40 intervals left out of the emissions")
        for n in result.notes
    )
    assert result.scores["always_on"].emissions_location_t == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- item 5: same information
def test_every_strategy_starts_from_the_same_information(tmp_path: Path) -> None:
    """Prices always below break-even: every strategy runs GPUs at demand and mines the rest,
    so the margins are equal once the warm-up (nothing known yet) is left unscored."""
    own_table(tmp_path)  # data starts exactly at the scenario start; prices known 1 later
    result = backtest(own_scenario(tmp_path))
    margins = {name: s.net_margin_usd for name, s in result.scores.items()}
    assert max(margins.values()) - min(margins.values()) < 1.0, margins
    assert result.actuals.warmup == 1
    assert any(
        n.startswith("warm-up: the first 1 interval (2024-08-18 05:00Z") for n in result.notes
    )


@pytest.mark.parametrize(("lag", "earlier_days", "warmup"), [(0, 0, 0), (1, 1, 0), (2, 0, 2)])
def test_the_warm_up_lasts_until_a_first_price_is_known(
    tmp_path: Path, lag: int, earlier_days: int, warmup: int
) -> None:
    own_table(tmp_path, days=2)
    path = own_scenario(tmp_path, lag=lag, end="2024-08-20T05:00:00Z")
    start = datetime(2024, 8, 18 + earlier_days, 5, tzinfo=UTC)
    result = backtest(path, start=start)
    assert result.actuals.warmup == warmup
    assert not result.actuals.scored[:warmup].any()
    assert result.actuals.scored[warmup:].all()


def test_the_staggered_restore_after_a_gap_is_not_scored_as_gridshift_losing(
    tmp_path: Path,
) -> None:
    """After a gap the live fail-safe brings mining back in steps while the baselines restart at
    once: with prices far below break-even nobody should ever curtail, so gridshift must not show
    a loss against the threshold rule, and the data treatment says which intervals were left
    out."""
    own_table(tmp_path, days=2, drop=range(60, 90))  # 7 h 30 min missing, beyond the hold rule
    result = backtest(own_scenario(tmp_path, end="2024-08-20T05:00:00Z"))
    scores = result.scores
    assert result.actuals.restoring > 0
    assert scores["gridshift"].net_margin_usd == pytest.approx(scores["threshold"].net_margin_usd)
    assert any("staggered steps" in line for line in result.ledger.lines)
