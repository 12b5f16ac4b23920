"""The set-points a user recomputes the report from (streams/backtest/trace.py): a CSV for
ordinary runs, and Parquet with the same rows and values once the run is too large for a CSV.
Tables are SYNTHETIC, written by the tests into their own folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from streams.backtest import trace
from tests.backtest.own import backtest, own_scenario, own_table

SPIKE = [30.0] * 50 + [900.0] * 4 + [30.0] * 42


def test_a_large_run_writes_the_same_rows_to_parquet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_table(tmp_path, price=SPIKE)
    result = backtest(own_scenario(tmp_path))
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    assert trace.write_intervals(result, small).name == "intervals.csv"
    monkeypatch.setattr(trace, "MAX_CSV_ROWS", 10)
    assert trace.write_intervals(result, large).name == "intervals.parquet"
    csv = pd.read_csv(small / "intervals.csv")
    parquet = pd.read_parquet(large / "intervals.parquet")
    assert len(csv) == len(parquet) > 10
    assert list(csv.columns) == list(parquet.columns)
    for column in ("strategy", "site_id", "scored", "grid_import_mw", "mining_mw", "gpu_mw"):
        assert csv[column].tolist() == parquet[column].tolist()
    assert (
        pd.to_datetime(csv["interval_start_utc"]).tolist() == parquet["interval_start_utc"].tolist()
    )
