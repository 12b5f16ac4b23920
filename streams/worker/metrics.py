"""Prometheus metrics of one worker (its own registry, so several workers can share a process
in tests): inputs by topic, dead letters by reason, decisions out, fallbacks, solve time,
broker reachability and outages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


@dataclass
class Metrics:
    """The worker's counters and histograms."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.events_in = Counter(
            "gridshift_events_in", "Input events consumed.", ["topic"], registry=self.registry
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
