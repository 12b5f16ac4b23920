"""Structured logs for the shell: one ``key=value`` line per event (logfmt), UTC timestamps.

faust, mode and aiokafka are chatty at INFO; they are held at WARNING unless DEBUG is asked for,
and their repeated warnings (a reconnect loop logs tens a second) are folded, one line per 10 s.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

from streams.connectivity import RepeatFilter

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
