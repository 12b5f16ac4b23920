"""Structured logs for the shell: one ``key=value`` line per event (logfmt), UTC timestamps.

faust, mode and aiokafka are chatty at INFO; they are held at WARNING unless DEBUG is asked for,
and their repeated warnings (a reconnect loop logs tens a second) are folded, one line per 10 s.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

_NOISY = ("faust", "mode", "aiokafka", "kafka", "venusian")


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg="..."`` with the message's own key=value pairs kept."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        message = record.getMessage().replace('"', "'")
        line = f'ts={ts} level={record.levelname.lower()} logger={record.name} msg="{message}"'
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


def configure(level: str = "INFO") -> None:
    """Send logs to stderr in logfmt (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(RepeatFilter(_NOISY))
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")


class RepeatFilter(logging.Filter):
    """Lets a repeated warning or error of the client libraries (same logger and template)
    through once per ``interval_s``; the next one that passes says how many were folded."""

    def __init__(
        self,
        prefixes: tuple[str, ...],
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._folded: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._folded[key] = self._folded.get(key, 0) + 1
            return False
        self._last[key] = now
        folded = self._folded.pop(key, 0)
        if folded:
            record.msg = f"{record.msg} (and {folded} similar in the last {self.interval_s:.0f}s)"
        return True
