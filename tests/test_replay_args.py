"""``gridshift replay``: a mistake in the arguments is told (one line) before the missing broker,
so the user fixes the command first. No broker is started: each run stops before one is asked
for."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import main


@pytest.fixture
def no_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No bootstrap anywhere (environment or a .env file in the working folder)."""
    monkeypatch.delenv("GRIDSHIFT_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    return code, err.strip()


def test_a_missing_source_file_is_named_before_the_broker(
    no_broker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _error(capsys, ["replay", "prices.csv"])
    assert code == 1
    assert err == (
        "gridshift: error: no file prices.csv: SOURCE (a grid history table, CSV or Parquet)"
    )


def test_a_missing_mapping_file_is_named_before_the_broker(
    no_broker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (no_broker / "prices.csv").write_text("interval_start_utc,price_usd_per_mwh\n")
    code, err = _error(capsys, ["replay", "prices.csv", "--mapping", "map.toml"])
    assert code == 1
    assert "no file map.toml: --mapping" in err
    assert "broker" not in err


@pytest.mark.parametrize("window", [[], ["--start", "2023-06-01"], ["--end", "2023-06-02"]])
def test_a_scenario_replay_without_its_window_says_so_before_the_broker(
    no_broker: Path, capsys: pytest.CaptureFixture[str], window: list[str]
) -> None:
    code, err = _error(capsys, ["replay", "--scenario", "ercot-flexible-load", *window])
    assert code == 2
    assert "--scenario needs --start and --end (UTC)" in err


def test_an_unknown_scenario_is_named_before_the_broker(
    no_broker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", "--scenario", "ercot-flex", "--start", "2023-06-01", "--end", "2023-06-02"]
    code, err = _error(capsys, argv)
    assert code == 1
    assert "no scenario 'ercot-flex'" in err


def test_with_the_arguments_right_the_missing_broker_is_told(
    no_broker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (no_broker / "prices.csv").write_text("interval_start_utc,price_usd_per_mwh\n")
    code, err = _error(capsys, ["replay", "prices.csv"])
    assert code == 1
    assert err.startswith("gridshift: error: no broker: pass --bootstrap HOST:PORT")
