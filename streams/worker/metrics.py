"""Prometheus metrics of one worker (its own registry, so several workers can share a process
in tests): inputs by topic, inputs applied, dead letters by reason, decisions out, fallbacks,
solve time, broker reachability and outages. The one place the worker counts: logs, /health,
tests and benchmarks read these counters too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


@dataclass
class Metrics:
    """The worker's counters and histograms."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    #: Set whenever inputs are counted, so a waiter can re-check without polling.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.events_in = Counter(
            "gridshift_events_in", "Input events consumed.", ["topic"], registry=self.registry
        )
        self.events_applied = Counter(
            "gridshift_events_applied",
            "Input events folded into the state (not rejected).",
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "gridshift_dead_lettered", "Inputs rejected.", ["reason"], registry=self.registry
        )
        self.decisions_out = Counter(
            "gridshift_decisions_out", "Decisions delivered.", ["fallback"], registry=self.registry
        )
        self.solve_seconds = Histogram(
            "gridshift_solve_seconds",
            "Wall time of one fleet solve (assign, solve, read back).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=self.registry,
        )

        self.broker_up = Gauge(
            "gridshift_broker_up", "1 while the broker answers probes.", registry=self.registry
        )
        self.broker_up.set(1)
        self.broker_outages = Counter(
            "gridshift_broker_outages",
            "Times the broker stopped answering.",
            registry=self.registry,
        )

    def count_in(self, topic: str, consumed: int = 1, applied: int = 0) -> None:
        """``consumed`` inputs read from contract topic ``topic``, ``applied`` of them used."""
        self.events_in.labels(topic).inc(consumed)
        if applied:
            self.events_applied.inc(applied)
        self.changed.set()

    def consumed(self) -> int:
        """Input events read so far, all topics."""
        return int(self._sum("gridshift_events_in_total"))

    def applied(self) -> int:
        """Input events folded into the state so far."""
        return int(self._sum("gridshift_events_applied_total"))

    def dead_letters_by_reason(self) -> dict[str, int]:
        """Inputs rejected so far, by reason."""
        return {
            sample.labels["reason"]: int(sample.value)
            for metric in self.dead_lettered.collect()
            for sample in metric.samples
            if sample.name == "gridshift_dead_lettered_total"
        }

    async def wait_consumed(self, total: int, timeout_s: float) -> None:
        """Wait until at least ``total`` input events were consumed (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout_s):
            while self.consumed() < total:
                self.changed.clear()
                await self.changed.wait()

    def _sum(self, sample_name: str) -> float:
        return sum(
            sample.value
            for metric in self.registry.collect()
            for sample in metric.samples
            if sample.name == sample_name
        )

    def track_lag(self, lag: Callable[[], float]) -> None:
        """Report ``lag()`` (input events not read yet) as a gauge, computed at each scrape."""
        gauge = Gauge(
            "gridshift_consumer_lag",
            "Input events on this worker's partitions not read yet.",
            registry=self.registry,
        )
        gauge.set_function(lag)

    def broker_reachable(self, up: bool) -> None:
        """Record a change of broker reachability seen by the watch."""
        self.broker_up.set(1 if up else 0)
        if not up:
            self.broker_outages.inc()

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        text: bytes = generate_latest(self.registry)
        return text
