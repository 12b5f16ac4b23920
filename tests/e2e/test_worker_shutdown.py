"""A worker stopped together with its broker (``docker compose down``; the embedded broker and
the worker ended by one Ctrl-C) exits within seconds, and says what it could not commit.

Before: with the broker gone, aiokafka's consumer stop raised a stray ``CancelledError`` in
faust's consumer thread, whose shutdown then never told the worker it was done, and the worker
waited mode's 60 s thread shutdown timeout (measured: 60.1 s, exit status 1 from the same stray
cancel in the telemetry lane); and faust's last commit of acked offsets retried a broker that
was gone without end (measured: no exit within 150 s). docker compose kills a container 10 s
after asking it to stop. With a live broker the stop still commits every acked offset.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.worker.spawn import worker_env
from tests.e2e.harness import (
    as_json,
    committed_settles_at_end,
    find_record,
    old_log_decided_and_acked,
    produce,
    until,
    worker_on,
    worker_past_old_log,
    worker_settings,
)
from tests.factories import hashprice, price

pytestmark = pytest.mark.e2e

#: Far under the 60 s (and the unbounded commit) of before. Each step of the stop is bounded
#: (last commit 3 s, producer flush 3 s, consumer thread 7 s, producer and lane 3 s each); in
#: practice only the commit's bound is spent (measured: about 3.1 s in all).
EXIT_BOUND_S = 20.0


def spawn(bootstrap: str, prefix: str, log_path: Path) -> subprocess.Popen[bytes]:
    """``gridshift worker`` as a child process (as in production), its log kept in a file."""
    with log_path.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=worker_env(
                kafka_bootstrap=bootstrap,
                topic_prefix=prefix,
                app_id=f"{prefix}worker",
                http_enabled=False,
                log_level="INFO",
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def exit_seconds(worker: subprocess.Popen[bytes]) -> float:
    """SIGTERM (what docker compose sends) and the seconds until the process is gone; killed
    and failed past ``EXIT_BOUND_S``."""
    start = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(worker.wait, EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        await asyncio.to_thread(worker.wait)
        pytest.fail(f"worker still running {EXIT_BOUND_S:g} s after SIGTERM")
    return time.monotonic() - start


@pytest.mark.parametrize("when", ["broker stopped first", "broker stopped at the same time"])
async def test_a_worker_stopped_with_its_broker_exits_within_seconds(
    topic_prefix: str, tmp_path: Path, when: str, own_broker: EmbeddedBroker
) -> None:
    broker = own_broker
    log_path = tmp_path / "worker.log"
    worker = spawn(broker.bootstrap, topic_prefix, log_path)
    try:
        # Started, assigned and fetching: an input decided end to end (no decision before the
        # worker's consumer group has its partitions).
        await until(lambda: "worker started" in log_path.read_text(), "worker started", 60)
        await decided_by_process(broker.bootstrap, topic_prefix)
        if when == "broker stopped first":
            await asyncio.to_thread(broker.stop)
            took = await exit_seconds(worker)
        else:
            stopping = asyncio.create_task(asyncio.to_thread(broker.stop))
            took = await exit_seconds(worker)
            await stopping
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    log = log_path.read_text()
    print(f"\nworker exit after SIGTERM ({when}): {took:.2f} s, status {worker.returncode}")
    assert worker.returncode == 0, log[-3000:]
    assert took < EXIT_BOUND_S
    assert "worker stopped" in log
    assert "Traceback" not in log, log[-3000:]


def decided(record: dict[str, object]) -> bool:
    return "site_id" in record


async def decided_by_process(bootstrap: str, prefix: str) -> None:
    """A hashprice and prices published, and a decision of the worker process's (its default
    fleet) read back."""
    await produce(
        bootstrap,
        [(prefix + "market.hashprice.v1", None, as_json(hashprice()))]
        + [(prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(k, 20.0 + k))) for k in range(4)],
    )
    await find_record(bootstrap, prefix + "dispatch.decision.v1", decided, timeout_s=60)


@pytest.mark.usefixtures("committing_on_demand")
async def test_offsets_acked_when_the_broker_went_are_said_and_left_uncommitted(
    topic_prefix: str,
    one_site_fleet: Fleet,
    caplog: pytest.LogCaptureFixture,
    own_broker: EmbeddedBroker,
) -> None:
    broker = own_broker
    settings = worker_settings(topic_prefix, debounce_ms=0)
    prices = topic_prefix + "grid.price.v1"
    stopped = False
    context = worker_on(broker.bootstrap, one_site_fleet, settings)
    worker = await context.__aenter__()
    try:
        # Prices decided and acked, none committed (faust's commit timer is out of the way).
        await old_log_decided_and_acked(broker.bootstrap, topic_prefix, worker)
        await asyncio.to_thread(broker.stop)
        caplog.set_level(logging.WARNING, logger="streams.worker._transport")
        start = time.monotonic()
        async with asyncio.timeout(EXIT_BOUND_S):
            stopped = True
            await context.__aexit__(None, None, None)
        took = time.monotonic() - start
    finally:
        if not stopped:
            await context.__aexit__(None, None, None)
    print(f"\nin-process stop with acked, uncommitted offsets and no broker: {took:.2f} s")
    said = [r for r in caplog.records if r.getMessage().startswith("stopping without committing")]
    assert len(said) == 1  # one line, once (faust commits twice at stop)
    uncommitted = said[0].__dict__["uncommitted"]
    assert any(name.startswith(prices + "/") for name in uncommitted), uncommitted
    assert "at-least-once" in said[0].getMessage()


@pytest.mark.usefixtures("committing_on_demand")
async def test_a_stop_with_the_broker_up_commits_every_acked_offset(
    topic_prefix: str,
    one_site_fleet: Fleet,
    caplog: pytest.LogCaptureFixture,
    own_broker: EmbeddedBroker,
) -> None:
    prices = topic_prefix + "grid.price.v1"
    async with worker_past_old_log(own_broker.bootstrap, topic_prefix, one_site_fleet) as parts:
        _, _, settings = parts
    # Nothing was committed before the stop (no commit timer): the stop's commit did it.
    assert await committed_settles_at_end(own_broker.bootstrap, settings.app_id, prices)
    assert not [r for r in caplog.records if "not committed" in r.getMessage()]
    assert not [r for r in caplog.records if "stopping without committing" in r.getMessage()]
