"""A history table in any row order reads and backtests as the same table in time order: the
interval length comes from the sorted rows (a table written newest first used to read as hourly),
a hole stays a hole (a shuffled table used to score it as data), and the report says the rows
were sorted. The tables here are SYNTHETIC, written by the tests into their own folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streams.backtest.history import read_history
from streams.backtest.report import BacktestResult, summary_rows, write_report
from tests.backtest.own import backtest, own_scenario, own_table

#: A 2.5-hour price hole: ten 15-minute rows gone (the default price hold limit is 1 hour).
HOLE = range(40, 50)
ORDERS = ("sorted", "newest_first", "shuffled")


def tables(folder: Path) -> dict[str, Path]:
    """One day of 15-minute rows with a varied price and :data:`HOLE`, written in each of
    :data:`ORDERS` (the same rows)."""
    price = [30.0 + 200.0 * np.sin(k / 7.0) ** 2 for k in range(96)]
    sorted_path = own_table(folder, "sorted.csv", price=price, drop=HOLE)
    rows = pd.read_csv(sorted_path, dtype=str)
    rows.iloc[::-1].to_csv(folder / "newest_first.csv", index=False)
    rows.sample(frac=1.0, random_state=7).to_csv(folder / "shuffled.csv", index=False)
    return {order: folder / f"{order}.csv" for order in ORDERS}


def test_any_row_order_reads_as_the_sorted_table_with_its_15_minute_step(
    tmp_path: Path,
) -> None:
    read = {order: read_history(path) for order, path in tables(tmp_path).items()}
    for order in ORDERS:
        assert read[order].step_minutes == 15, order
        pd.testing.assert_frame_equal(read[order].frame, read["sorted"].frame)
    assert not read["sorted"].resorted
    assert read["sorted"].notes == [
        "NODE: 1 gap, 10 intervals missing (the first from 2024-08-18 15:00Z, the longest 2 h "
        "30 min)"
    ]
    # Newest first: every row but the first came after a later one.
    assert read["newest_first"].notes[0] == (
        "NODE: 85 rows out of time order in the file, sorted (nothing dropped)"
    )
    assert read["shuffled"].resorted
    sorted_note = " rows out of time order in the file, sorted (nothing dropped)"
    assert read["shuffled"].notes[0].endswith(sorted_note)
    assert read["shuffled"].notes[1:] == read["sorted"].notes


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BacktestResult]:
    folder = tmp_path_factory.mktemp("orders")
    tables(folder)
    return {
        order: backtest(own_scenario(folder, file=f"{order}.csv", name=f"{order}.toml"))
        for order in ORDERS
    }


def test_any_row_order_backtests_the_same_and_leaves_the_hole_unscored(
    runs: dict[str, BacktestResult],
) -> None:
    expected = runs["sorted"]
    # 96 intervals less the warm-up, the hole, the interval after it until a new price is
    # known and the 3 of the fail-safe's staggered restart.
    assert int(expected.actuals.scored.sum()) == 96 - 1 - 10 - 1 - 3
    assert expected.scores["gridshift"].hours_curtailed > 0  # the price matters: spikes
    for order in ORDERS:
        result = runs[order]
        np.testing.assert_array_equal(result.actuals.scored, expected.actuals.scored)
        price = result.ledger.rows[0]
        assert (price.observed, price.held, price.missing) == (86, 0, 10), order
        assert summary_rows(result) == summary_rows(expected), order


def test_the_data_treatment_says_the_rows_were_sorted_and_nothing_else_differs(
    runs: dict[str, BacktestResult], tmp_path: Path
) -> None:
    said = "HB_SOUTH: 85 rows out of time order in the file, sorted (nothing dropped)"
    assert said in runs["newest_first"].notes
    assert not any("out of time order" in note for note in runs["sorted"].notes)
    shuffled = [n for n in runs["shuffled"].notes if "out of time order" not in n]
    assert len(shuffled) == len(runs["shuffled"].notes) - 1
    assert [n.replace("shuffled.csv", "sorted.csv") for n in shuffled] == runs["sorted"].notes
    report = write_report(runs["newest_first"], tmp_path / "r").read_text()
    treatment = report.split("## Data treatment", 1)[1]
    assert f"- {said}" in treatment


def test_a_table_written_node_by_node_in_time_order_is_not_said_to_be_sorted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text(
        "interval_start_utc,node,price_usd_per_mwh\n"
        + "".join(
            f"2024-08-20T00:{minute:02d}:00Z,{node},30\n"
            for node in ("HB_NORTH", "HB_SOUTH")
            for minute in (0, 15, 30, 45)
        )
    )
    history = read_history(path)
    assert history.step_minutes == 15
    assert not history.resorted
    assert history.notes == []
