"""The embedded broker: starts on a free port, answers Kafka, stops cleanly, and never outlives
the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.kafka.broker import BrokerError, EmbeddedBroker, kafka_api_versions_ok
from tests.conftest import REPO


def wait_until(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_start_answer_and_stop() -> None:
    broker = EmbeddedBroker()
    broker.start()
    try:
        assert kafka_api_versions_ok(broker.host, broker.port)
        pid = broker.pid
        assert pid is not None
    finally:
        broker.stop()
    assert not kafka_api_versions_ok(broker.host, broker.port)
    assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), 5)


def test_a_taken_port_is_a_clear_error(broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerError, match=r"port \d+ on 127.0.0.1 is already in use"):
        EmbeddedBroker(port=broker.port).start(timeout_s=5)


def test_broker_dies_with_its_parent_even_on_sigkill() -> None:
    script = (
        "import sys, time\n"
        "from streams.kafka.broker import EmbeddedBroker\n"
        "b = EmbeddedBroker(); b.start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert alive(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_until(lambda: not alive(child_pid), 10), "broker outlived its parent"
    finally:
        parent.kill()
        parent.wait(timeout=10)
