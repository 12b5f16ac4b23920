"""Structured logs for the shell: one line per event, logfmt (``key=value``) or JSON, UTC
timestamps.

A log call says what happened in ``msg`` and puts the facts in fields of the record
(``log.info("worker started", extra={"sites": 3})``), so a log pipeline can filter on
``sites`` without parsing text; the formatter writes every such field after ``msg``.

faust, mode and aiokafka are chatty at INFO; they are held at WARNING unless DEBUG is asked for,
and their repeated warnings (a reconnect loop logs tens a second) are folded, one line per 10 s.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_NOISY = ("faust", "mode", "aiokafka", "kafka", "venusian")


# Attributes every LogRecord has; anything else on a record was passed as a field (``extra``).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of ``record`` (what the call passed as ``extra``)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _head(record: logging.LogRecord) -> dict[str, Any]:
    return {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg="..." key=value ...``: the record's fields after msg."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = {**_head(record), **fields(record)}
        if record.exc_info:
            pairs["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in pairs.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the same keys as logfmt."""

    def format(self, record: logging.LogRecord) -> str:
        body = {**_head(record), **fields(record)}
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return json.dumps(text)


def configure(level: str = "INFO", fmt: str = "logfmt") -> None:
    """Send logs to stderr as logfmt or JSON lines (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(RepeatFilter(_NOISY))
    if str(level).upper() != "DEBUG":
        handler.addFilter(drop_sensor_noise)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")


def drop_sensor_noise(record: logging.LogRecord) -> bool:
    """False for faust's "Missing sensor state for rebalance" warning: its monitoring sensors
    were not told a rebalance began (the worker runs none), which a reader cannot act on; it
    came at every start and rebalance. Kept at DEBUG."""
    return not (
        record.name.startswith(("faust", "streams.worker"))
        and "Missing sensor state for rebalance" in str(record.msg)
    )


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
