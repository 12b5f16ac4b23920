"""The CLI: --help everywhere, and every mistake is one line on stderr with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.cli import cli, main
from tests.schemas.examples import VALID

COMMANDS = sorted(cli.commands)


def test_all_commands_are_there() -> None:
    assert COMMANDS == [
        "asyncapi",
        "backtest",
        "broker",
        "demo",
        "publish",
        "replay",
        "schemas",
        "subscribe",
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
    source.write_text(f"{good}\n{{oops\n{json.dumps({**VALID['grid.price.v1'], 'node': ''})}\n")
    # An unreachable bootstrap proves nothing is sent: validation fails first.
    assert main(["publish", "grid.price.v1", str(source), "--bootstrap", "127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("gridshift: line 2: ")
    assert err[1].startswith("gridshift: line 3: invalid grid.price.v1 event: node")
    assert err[-1] == f"gridshift: error: 2 invalid line(s) in {source}; nothing was sent"
