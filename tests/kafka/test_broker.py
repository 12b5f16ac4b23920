"""The embedded broker: starts on a free port, answers Kafka, stops cleanly, and never outlives
the process that started it."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc; a zombie counts until reaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a new listener could bind ``port`` now (as a restarted broker would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen()
        except OSError:
            return False
    return True


@contextmanager
def kafka_client(port: int, host: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A client connected to the broker that has spoken Kafka (ApiVersions) and stays open:
    what makes Tansu linger ~5 s on SIGTERM."""
    with socket.create_connection((host, port), timeout=5) as sock:
        body = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
        sock.sendall(struct.pack(">i", len(body)) + body)
        assert sock.recv(4), "no answer to ApiVersions"
        yield sock


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


def test_broker_output_is_readable_while_it_runs() -> None:
    with EmbeddedBroker() as broker:
        assert wait_until(lambda: "listening on" in broker.log_tail(), 5), broker.log_tail()
        assert 0 < len(broker.log_tail(max_chars=10)) <= 10
        assert broker.log_tail().endswith(broker.log_tail(max_chars=10))
    assert broker.log_tail() == ""


def test_broker_dies_with_its_parent_even_on_sigkill(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from streams.kafka.broker import EmbeddedBroker\n"
        "b = EmbeddedBroker(); b.start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert alive(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_until(lambda: not alive(child_pid), 10), "broker outlived its parent"
        # stop() never ran: still nothing of the broker's is left in the temp folder.
        assert list(tmp_path.iterdir()) == []
    finally:
        parent.kill()
        parent.wait(timeout=10)


def test_stop_is_prompt_with_a_client_connected() -> None:
    broker = EmbeddedBroker()
    broker.start()
    pid = broker.pid
    assert pid is not None
    try:
        with kafka_client(broker.port):
            started = time.monotonic()
            broker.stop()
            elapsed = time.monotonic() - started
            assert not alive(pid)
            assert port_is_free(broker.port)
    finally:
        broker.stop()
    assert elapsed < 1.5, f"stop() took {elapsed:.2f}s"
