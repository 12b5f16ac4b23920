"""Health and counters of one source: Prometheus metrics (its own registry, so tests can run
several sources in one process), the state behind ``/health``, and the small HTTP server that
serves both.

The source is healthy while fewer than ``unhealthy_after_failures`` polls in a row have failed;
``/health`` answers 200 or 503 with the facts (last success, last error, counts, next poll).
Counts are kept twice on purpose: Prometheus counters for scraping and a plain dict for the JSON
body and the per-poll log line, both updated by :meth:`SourceMetrics.count`.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streams.errors import GridshiftError

_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "polls": ("Polls by outcome (ok, failed).", ("outcome",)),
    "fetch_errors": ("Failed provider calls by feed and kind (error, timeout).", ("feed", "kind")),
    "rows_rejected": (
        "Malformed rows or answers by feed and reason; never published.",
        ("feed", "reason"),
    ),
    "rows_skipped": (
        "Rows not sent by verdict (duplicate, late, correction_ignored).",
        ("verdict",),
    ),
    "events_published": ("Events the broker acknowledged, by topic.", ("topic",)),
    "revisions_published": ("Sent again: forecast vintages and published corrections.", ()),
    "sink_rows_written": ("Rows appended to a JSONL sink (load, load forecast).", ("sink",)),
    "sink_errors": ("Polls whose rows could not be written to a sink.", ("sink",)),
    "publish_errors": ("Polls whose events the broker did not acknowledge.", ()),
}


@dataclass
class SourceMetrics:
    """The counters and gauges of one source."""

    source: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    totals: Tally[str] = field(default_factory=Tally)

    def __post_init__(self) -> None:
        self._counters = {
            name: Counter(
                f"gridshift_source_{name}",
                text,
                ["source", *labels],
                registry=self.registry,
            )
            for name, (text, labels) in _COUNTERS.items()
        }
        self.consecutive_failures = Gauge(
            "gridshift_source_consecutive_failures",
            "Failed polls in a row (0 after a successful poll).",
            ["source"],
            registry=self.registry,
        ).labels(self.source)
        self.last_success = Gauge(
            "gridshift_source_last_success_timestamp_seconds",
            "Wall-clock time of the last successful poll (Unix seconds).",
            ["source"],
            registry=self.registry,
        ).labels(self.source)
        self.newest_interval = Gauge(
            "gridshift_source_newest_interval_timestamp_seconds",
            "Start of the newest interval sent, by series (Unix seconds).",
            ["source", "series"],
            registry=self.registry,
        )
        self.healthy = Gauge(
            "gridshift_source_healthy", "1 when /health answers 200.", ["source"],
            registry=self.registry,
        ).labels(self.source)  # fmt: skip

    def count(self, name: str, amount: int = 1, **labels: str) -> None:
        """Add ``amount`` to counter ``name`` (and to its total in the health body)."""
        if amount <= 0:
            return
        self._counters[name].labels(self.source, *labels.values()).inc(amount)
        self.totals[name] += amount
        if labels:  # by the last label (reason, kind, verdict, topic): what /health shows
            self.totals[f"{name}.{list(labels.values())[-1]}"] += amount

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric of this source."""
        return generate_latest(self.registry)


@dataclass
class HealthState:
    """What ``/health`` reports about one source."""

    source: str
    unhealthy_after_failures: int
    metrics: SourceMetrics
    started: float = field(default_factory=time.monotonic)
    consecutive_failures: int = 0
    last_success_at: datetime | None = None
    last_error: str | None = None
    next_poll_in_s: float | None = None
    checkpoint_intervals: int = 0
    #: Each feed's note of the last poll (why it had nothing to publish), by feed name.
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics.healthy.set(1)  # as /health says before the first poll

    @property
    def healthy(self) -> bool:
        """Fewer than ``unhealthy_after_failures`` failed polls in a row."""
        return self.consecutive_failures < self.unhealthy_after_failures

    def succeeded(self, at: datetime) -> None:
        """A poll went through: reset the failure streak."""
        self.consecutive_failures = 0
        self.last_success_at = at
        self.metrics.consecutive_failures.set(0)
        self.metrics.last_success.set(at.timestamp())
        self.metrics.healthy.set(1)

    def failed(self, error: str) -> None:
        """A poll failed (provider, mapping of a whole answer, or broker)."""
        self.consecutive_failures += 1
        self.last_error = error
        self.metrics.consecutive_failures.set(self.consecutive_failures)
        self.metrics.healthy.set(1 if self.healthy else 0)

    def body(self) -> dict[str, Any]:
        """The JSON body of ``/health``."""
        return {
            "source": self.source,
            "healthy": self.healthy,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "consecutive_failures": self.consecutive_failures,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_error": self.last_error,
            "next_poll_in_s": self.next_poll_in_s,
            "checkpoint_intervals": self.checkpoint_intervals,
            "notes": dict(sorted(self.notes.items())),
            "counts": dict(sorted(self.metrics.totals.items())),
        }


class HealthServer:
    """``GET /health`` (200 healthy, 503 not) and ``GET /metrics`` on one port."""

    def __init__(self, state: HealthState, host: str, port: int) -> None:
        self.state = state
        self.host = host
        self.port = port
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)

    async def start(self) -> int:
        """Bind and serve; return the port (the one chosen when ``port`` is 0)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise GridshiftError(
                f"cannot serve /health on {self.host}:{self.port}: {exc.strerror or exc} "
                "(set GRIDSHIFT_SOURCE_HEALTH_PORT, or 0 for any free port)"
            ) from exc
        if self._runner.addresses:  # the port really bound (port 0 = any)
            self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stop serving."""
        await self._runner.cleanup()

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state.body(), status=200 if self.state.healthy else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        # aiohttp refuses a charset inside content_type, so the header is set whole.
        return web.Response(
            body=self.state.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
