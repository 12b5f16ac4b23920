"""The CLI as a user runs it: `gridshift broker`, `worker`, `publish`, `subscribe` and `demo` as
separate processes talking over real TCP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas import DispatchDecision
from streams.kafka.broker import EmbeddedBroker, free_port, kafka_api_versions_ok
from tests.conftest import REPO
from tests.factories import hashprice, price
from tests.kafka.test_broker import alive, children, kafka_client, port_is_free, wait_until

pytestmark = pytest.mark.e2e
GRIDSHIFT = [sys.executable, "-m", "streams.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    env.update(extra)
    return env


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GRIDSHIFT, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def worker_process(broker: EmbeddedBroker, topic_prefix: str) -> Iterator[subprocess.Popen[str]]:
    env = clean_env(
        GRIDSHIFT_KAFKA_BOOTSTRAP=broker.bootstrap,
        GRIDSHIFT_TOPIC_PREFIX=topic_prefix,
        GRIDSHIFT_APP_ID=f"{topic_prefix}cli",
        GRIDSHIFT_HTTP_ENABLED="false",
    )
    process = subprocess.Popen(
        [*GRIDSHIFT, "worker", "--sites", str(REPO / "streams/examples/sites.toml")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=30)


def test_worker_publish_subscribe_round_trip(
    broker: EmbeddedBroker, topic_prefix: str, worker_process: subprocess.Popen[str], tmp_path: Path
) -> None:
    env = clean_env(GRIDSHIFT_KAFKA_BOOTSTRAP=broker.bootstrap, GRIDSHIFT_TOPIC_PREFIX=topic_prefix)

    def publish(topic: str, lines: list[str]) -> None:
        path = tmp_path / f"{topic}.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        published = run(["publish", topic, str(path)], env)
        assert published.returncode == 0, published.stderr
        assert f"published {len(lines)} event(s)" in published.stdout

    def subscribe(count: int) -> list[DispatchDecision]:
        args = ["subscribe", "--from-beginning", "--format", "json", "--site", "tx-south-mine"]
        done = run([*args, "--limit", str(count), "--timeout", "45"], env, timeout=90)
        assert done.returncode == 0, done.stderr
        return [DispatchDecision.model_validate_json(line) for line in done.stdout.splitlines()]

    # One price at a time: the worker coalesces bursts and decides on the latest snapshot only.
    publish("market.hashprice.v1", [hashprice().model_dump_json()])
    publish("grid.price.v1", [price(0, 20.0).model_dump_json()])
    assert subscribe(1)[0].mining_mw > 0
    publish("grid.price.v1", [price(1, 900.0).model_dump_json()])
    decisions = subscribe(2)
    assert [d.horizon[0].price_usd_per_mwh for d in decisions] == [20.0, 900.0]
    assert {d.site_id for d in decisions} == {"tx-south-mine"}
    assert decisions[1].mining_mw == 0

    table = run(
        ["subscribe", "--from-beginning", "--limit", "1", "--timeout", "45"], env, timeout=90
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].startswith("interval_start (UTC)")

    worker_process.send_signal(signal.SIGTERM)
    _, stderr = worker_process.communicate(timeout=30)
    assert worker_process.returncode == 0, stderr
    assert "worker stopped" in stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_broker_command_stops_promptly_and_completely(sig: signal.Signals) -> None:
    """Ctrl-C (or SIGTERM) with a client connected: the command, its broker process and its
    port are all gone within 2 s (Tansu alone lingers ~5 s on SIGTERM with a client)."""
    port = free_port()
    process = subprocess.Popen(
        [*GRIDSHIFT, "broker", "--port", str(port)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: kafka_api_versions_ok("127.0.0.1", port), 20)
        spawned = children(process.pid)
        assert spawned, "the broker runs as a child process"
        with kafka_client(port):
            started = time.monotonic()
            process.send_signal(sig)
            out, err = process.communicate(timeout=10)
            elapsed = time.monotonic() - started
            assert [pid for pid in spawned if alive(pid)] == []
            assert port_is_free(port)
        assert process.returncode == 0, err
        assert elapsed < 2.0, f"exited {elapsed:.2f}s after {sig.name}"
        assert f"127.0.0.1:{port}" in out
        assert "broker stopped" in out
        assert not kafka_api_versions_ok("127.0.0.1", port)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=20)


@pytest.mark.data
def test_demo_on_real_ercot_data_sheds_mining_in_the_scarcity_evening(data_dir: Path) -> None:
    result = run(
        ["demo", "--days", "2", "--week-start", "2024-08-20"],
        clean_env(GRIDSHIFT_DATA_DIR=str(data_dir)),
        timeout=110,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "real ERCOT HB_SOUTH data, 192 intervals" in out
    # The scarcity evening of 20 August: prices reached $2,450 at 19:15 and $4,858 at 19:30 CDT.
    evening = [line for line in out.splitlines() if "08-20 19:" in line]
    assert evening, "no decision printed for the scarcity evening"
    assert all("mining   0.00 MW (shed)" in line for line in evening)
    assert any("2450.22" in line and "gpu   3.00 MW" in line for line in evening)
    summary = out[out.index("summary (") :]
    assert "tx-south-mine" in summary
    assert "tx-south-ai" in summary
    assert "Traceback" not in result.stderr


def test_demo_without_data_runs_on_a_labelled_synthetic_week() -> None:
    result = run(["demo", "--days", "1"], clean_env(), timeout=110)
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC" in result.stderr
    assert "SYNTHETIC DATA" in result.stdout
    assert "summary (SYNTHETIC DATA" in result.stdout
    # Output is not a terminal here: no progress-bar frames, no solver banner among the lines.
    assert "\r" not in result.stdout + result.stderr
    assert "HiGHS" not in result.stdout


@pytest.mark.data
@pytest.mark.parametrize(
    "scenario", ["northern-data", "miner-to-ai-host", "gigawatt", "national-network"]
)
def test_each_seed_scenario_runs_to_a_report_from_one_command(
    scenario: str, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / scenario
    result = run(
        ["backtest", scenario, "--start", "2024-08-20", "--end", "2024-08-21", "--out", str(out)],
        clean_env(GRIDSHIFT_DATA_DIR=str(data_dir)),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| gridshift (MPC) |" in result.stdout
    assert "| perfect-foresight oracle |" in result.stdout
    report = (out / "report.md").read_text()
    assert "regret against perfect foresight" in report
    assert all(
        (out / png).is_file()
        for png in ("price_vs_dispatch.png", "cumulative_margin.png", "emissions.png")
    )


def test_backtest_mistakes_give_one_line(tmp_path: Path) -> None:
    result = run(["backtest", "no-such-scenario", "--data-dir", str(tmp_path)], clean_env())
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "gridshift: error: no scenario 'no-such-scenario': give a file or one of "
        "ercot-flexible-load-rt, ercot-flexible-load, gigawatt, miner-to-ai-host, "
        "national-network, northern-data"
    ]


@pytest.mark.data
def test_replay_publishes_history_and_stops_cleanly_with_a_resume_point(
    broker: EmbeddedBroker, topic_prefix: str, data_dir: Path
) -> None:
    env = clean_env(GRIDSHIFT_KAFKA_BOOTSTRAP=broker.bootstrap, GRIDSHIFT_TOPIC_PREFIX=topic_prefix)
    table = str(data_dir / "replay/ercot_replay_15min_2024-06-01_2024-12-31.csv")
    done = run(["replay", table, "--start", "2024-08-20", "--end", "2024-08-20T06:00"], env)
    assert done.returncode == 0, done.stderr
    # 24 real-time prices, 7 carbon and hashprice events, and the day's 24 hourly day-ahead
    # prices (released before the day, so with its first interval).
    assert "published 55 events for 24 intervals" in done.stdout
    slow = subprocess.Popen(
        [*GRIDSHIFT, "replay", table, "--start", "2024-08-21", "--speed", "60"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # 60x real time: one 15-minute interval every 15 s. Wait for its first interval on the
        # topic: after the 48 prices above, the day's 96 day-ahead prices and one real-time price.
        import asyncio  # noqa: PLC0415

        from tests.e2e.harness import read_records  # noqa: PLC0415

        asyncio.run(read_records(broker.bootstrap, topic_prefix + "grid.price.v1", 48 + 96 + 1, 60))
        slow.send_signal(signal.SIGINT)
        out, err = slow.communicate(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.communicate(timeout=10)
    assert slow.returncode == 0, err
    assert "stopped; resume with --start 2024-08-21T00:15:00" in out


def test_a_busy_http_port_is_one_clear_line_and_a_clean_exit(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(
            GRIDSHIFT_KAFKA_BOOTSTRAP=broker.bootstrap,
            GRIDSHIFT_TOPIC_PREFIX=topic_prefix,
            GRIDSHIFT_HTTP_PORT=str(port),
        )
        result = run(["--log-level", "ERROR", "worker"], env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"gridshift: error: cannot serve HTTP on 127.0.0.1:{port} (address already in use); "
        "set GRIDSHIFT_HTTP_PORT"
    )
