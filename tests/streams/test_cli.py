"""The CLI: --help everywhere, and every mistake is one line on stderr with a non-zero exit."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest

from streams.cli import cli, main
from tests.schemas.examples import VALID

COMMANDS = sorted(cli.commands)


def test_all_commands_are_there() -> None:
    assert COMMANDS == [
        "agent",
        "asyncapi",
        "backtest",
        "broker",
        "demo",
        "openadr-ven",
        "publish",
        "replay",
        "schemas",
        "source",
        "subscribe",
        "sweep",
        "worker",
    ]


@pytest.mark.parametrize("args", [["--help"], *[[c, "--help"] for c in COMMANDS]])
def test_help_works(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 0
    assert "Usage: gridshift" in capsys.readouterr().out


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("gridshift: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["frobnicate"], "No such command 'frobnicate'"),
        (["publish", "not.a.topic"], "'not.a.topic' is not one of"),
        (["subscribe", "--limit", "zero"], "--limit"),
        (["subscribe"], "no broker: pass --bootstrap HOST:PORT or set GRIDSHIFT_KAFKA_BOOTSTRAP"),
        (["worker", "--sites", "/nonexistent/fleet.toml"], "sites file not found"),
        (["demo", "--week-start", "yesterday"], "--week-start"),
        (["schemas"], "Missing option '--out'"),
    ],
)
def test_mistakes_give_one_line(
    args: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GRIDSHIFT_KAFKA_BOOTSTRAP", raising=False)
    assert main(args) != 0
    assert expected in one_error_line(capsys)


def test_publish_validates_every_line_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "prices.jsonl"
    good = json.dumps(VALID["grid.price.v1"])
    twice = good[:-1] + ', "price_usd_per_mwh": 9999}'  # parsed alone, the last would win
    source.write_text(
        f"{good}\n{{oops\n{json.dumps({**VALID['grid.price.v1'], 'node': ''})}\n{twice}\n"
    )
    # An unreachable bootstrap proves nothing is sent: validation fails first.
    assert main(["publish", "grid.price.v1", str(source), "--bootstrap", "127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("gridshift: line 2: ")
    assert err[1].startswith("gridshift: line 3: invalid grid.price.v1 event: node")
    assert err[2].startswith("gridshift: line 4: duplicate key 'price_usd_per_mwh'")
    assert err[-1] == f"gridshift: error: 3 invalid line(s) in {source}; nothing was sent"


# Issue 13: a user's own folder, the CLI's one-line mistakes, the clipped period, no banner.
def own_folder(folder: Path, **scenario: Any) -> Path:
    """A user's folder with only their own files: a SYNTHETIC table and a scenario naming it."""
    from tests.backtest.own import own_scenario, own_table  # noqa: PLC0415

    own_table(folder)
    return own_scenario(folder, **scenario)


def test_a_users_own_folder_needs_no_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = own_folder(tmp_path)
    monkeypatch.delenv("GRIDSHIFT_DATA_DIR", raising=False)
    monkeypatch.chdir("/")  # relative paths resolve against the scenario's folder, not the cwd
    assert main(["backtest", str(path), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "| gridshift (MPC) |" in out
    assert (tmp_path / "report" / "report.md").is_file()


@pytest.mark.parametrize(
    ("scenario", "args", "expected"),
    [
        (
            {"file": "data:own.csv"},
            [],
            "markets[0].file = 'data:own.csv' is in the data folder, but none was given",
        ),
        (
            {"end": "2024-09-10T00:00:00Z"},
            [],
            "HB_SOUTH price in own.csv covers 2024-08-18 05:00Z to 2024-08-19 05:00Z; the period "
            "asked runs to 2024-09-10 00:00Z (pass --end 2024-08-19T05:00, or --clip-to-data",
        ),
        (
            {},
            ["--start", "2024-09-01", "--end", "2024-09-02"],
            "no data in the period asked (2024-09-01 00:00Z to 2024-09-02 00:00Z)",
        ),
        ({"top": "step_minute = 15"}, [], "step_minute: unknown key (did you mean step_minutes?)"),
    ],
    ids=["data-path-without-folder", "end-past-data", "period-after-data", "typo"],
)
def test_backtest_mistakes_in_a_users_folder_give_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    scenario: dict[str, str],
    args: list[str],
    expected: str,
) -> None:
    monkeypatch.delenv("GRIDSHIFT_DATA_DIR", raising=False)
    path = own_folder(tmp_path, **scenario)
    assert main(["backtest", str(path), *args, "--out", str(tmp_path / "r")]) == 1
    assert expected in one_error_line(capsys)


def test_clip_to_data_says_so_on_stderr_and_at_the_top_of_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = own_folder(tmp_path, end="2024-09-10T00:00:00Z")
    assert main(["backtest", str(path), "--clip-to-data", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("gridshift: clipped to the data: the period asked was ")
    report = (tmp_path / "r" / "report.md").read_text()
    assert "> **Clipped to the data.**" in report
    assert "- period: 2024-08-18 05:00Z to 2024-08-19 05:00Z, 96 intervals" in report


def test_no_solver_banner_in_a_backtests_output(tmp_path: Path) -> None:
    """HiGHS writes its copyright banner from C++ at the first solver of a process: only a
    separate process shows whether it reaches the user's output."""
    path = own_folder(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "backtest", str(path), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "HiGHS" not in done.stdout + done.stderr
    assert done.stdout.startswith("own data\n")


def test_the_demo_draws_no_progress_bar_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.demo import progress_bar  # noqa: PLC0415

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(10).disable


def test_window_bounds_take_a_utc_time_or_an_offset_as_scenario_files_write_them() -> None:
    from streams.windows import WINDOW_FORMATS, utc_bound  # noqa: PLC0415

    _utc = utc_bound
    parse = click.DateTime(WINDOW_FORMATS).convert
    assert _utc(parse("2024-11-04T04:00Z", None, None)) == datetime(2024, 11, 4, 4, tzinfo=UTC)
    assert _utc(parse("2024-11-04T00:00-05:00", None, None)) == datetime(2024, 11, 4, 5, tzinfo=UTC)
    assert _utc(parse("2024-11-04", None, None)) == datetime(2024, 11, 4, tzinfo=UTC)
    # Every command with a window takes the same forms (a time copied from a scenario file).
    from streams.cli import cli  # noqa: PLC0415

    for name in ("backtest", "sweep", "replay"):
        options = {p.name: p for p in cli.commands[name].params}
        for bound in ("start", "end"):
            kind = options[bound].type
            assert isinstance(kind, click.DateTime) and kind.formats == WINDOW_FORMATS, name


def test_the_cli_starts_without_the_solver() -> None:
    """`gridshift --help` and every command's parsing must not pay for cvxpy (~1 s): the LP
    models load when a command first builds one (optimizer/__init__.py)."""
    probe = "import sys, streams.cli; print('cvxpy' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "False"
