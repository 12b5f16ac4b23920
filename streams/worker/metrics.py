"""Prometheus metrics of one worker (its own registry, so several workers can share a process
in tests): inputs by topic, inputs applied, inputs that match no site, dead letters by reason,
decisions out, fallbacks, solve time, failures by part, broker reachability and outages, and
the health checks. The one place the worker counts: logs, /health, tests and benchmarks read
these counters too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: Distinct unmatched keys remembered per topic (and logged once each); beyond, only counted.
UNMATCHED_KEYS_KEPT = 256


@dataclass(frozen=True, slots=True)
class HealthSample:
    """What the health gauges show at one scrape (built by ``streams/worker/health.py``)."""

    checks: Mapping[str, bool]  # check -> healthy
    clock_lag_s: float | None = None
    last_decision_age_s: float | None = None
    topics_missing: int = 0
    sites_waiting: Mapping[str, int] = field(default_factory=dict)  # awaited input -> sites


class _HealthCollector(Collector):
    """Computes the health gauges when scraped, so /metrics and /health never disagree."""

    def __init__(self, sample: Callable[[], HealthSample]) -> None:
        self.sample = sample

    def collect(self) -> Iterator[Metric]:
        now = self.sample()
        healthy = GaugeMetricFamily("gridshift_healthy", "1 when /health finds no problem.")
        healthy.add_metric([], 1.0 if all(now.checks.values()) else 0.0)
        yield healthy
        checks = GaugeMetricFamily(
            "gridshift_health_check", "1 when the check passes, 0 when it fails.", labels=["check"]
        )
        for name, ok in sorted(now.checks.items()):
            checks.add_metric([name], 1.0 if ok else 0.0)
        yield checks
        for name, text, value in (
            (
                "gridshift_decision_clock_lag_seconds",
                "Wall clock minus the decision clock (the newest real-time price interval).",
                now.clock_lag_s,
            ),
            (
                "gridshift_last_decision_age_seconds",
                "Seconds since this worker last delivered a decision.",
                now.last_decision_age_s,
            ),
        ):
            if value is not None:
                yield GaugeMetricFamily(name, text, value=value)
        yield GaugeMetricFamily(
            "gridshift_topics_missing",
            "Topics the worker reads or writes that the broker does not list.",
            value=now.topics_missing,
        )
        waiting = GaugeMetricFamily(
            "gridshift_sites_waiting",
            "Sites of this worker that cannot be decided yet, by the input they wait for.",
            labels=["input"],
        )
        for awaited, sites in sorted(now.sites_waiting.items()):
            waiting.add_metric([awaited], sites)
        yield waiting


@dataclass
class Metrics:
    """The worker's counters and histograms."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    #: Set whenever inputs are counted, so a waiter can re-check without polling.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Monotonic times of the first and the latest input read (None: none yet).
    first_input_at: float | None = None
    last_input_at: float | None = None
    #: Unmatched keys seen so far, by topic (at most UNMATCHED_KEYS_KEPT each).
    unmatched_keys: dict[str, set[str]] = field(default_factory=dict)

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
        self.inputs_unmatched = Counter(
            "gridshift_inputs_unmatched",
            "Inputs whose price node, carbon region or signal region matches no site of the "
            "fleet (applied to nothing, not dead-lettered).",
            ["topic"],
            registry=self.registry,
        )
        self.failures = Counter(
            "gridshift_failures",
            "Failures of a part of the worker (each logged; the part retries and its inputs "
            "stay uncommitted).",
            ["part"],
            registry=self.registry,
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
        self.broker_logs_lost = Counter(
            "gridshift_broker_logs_lost",
            "Times the broker was found to have lost topics the worker uses (their log with "
            "them); the worker forgot its offsets there and read the new log from its start.",
            registry=self.registry,
        )

    def count_in(self, topic: str, consumed: int = 1, applied: int = 0) -> None:
        """``consumed`` inputs read from contract topic ``topic``, ``applied`` of them used."""
        self.events_in.labels(topic).inc(consumed)
        if applied:
            self.events_applied.inc(applied)
        self.last_input_at = time.monotonic()
        if self.first_input_at is None:
            self.first_input_at = self.last_input_at
        self.changed.set()

    def count_dead_letter(self, reason: str) -> None:
        """A rejected input whose dead letter was delivered (counted only then)."""
        self.dead_lettered.labels(reason).inc()
        self.changed.set()

    def unmatched(self, topic: str, key: str) -> bool:
        """Count an input of ``topic`` whose ``key`` (node or region) matches no site; True
        the first time this key is seen (so it is logged once, not per event)."""
        self.inputs_unmatched.labels(topic).inc()
        keys = self.unmatched_keys.setdefault(topic, set())
        if key in keys or len(keys) >= UNMATCHED_KEYS_KEPT:
            return False
        keys.add(key)
        return True

    def unmatched_by_topic(self) -> dict[str, int]:
        """Inputs that matched no site so far, by topic."""
        return self._by_label(self.inputs_unmatched, "topic")

    def failed(self, part: str) -> None:
        """Count one failure of ``part`` (say, ``decision delivery``)."""
        self.failures.labels(part).inc()

    def failures_by_part(self) -> dict[str, int]:
        return self._by_label(self.failures, "part")

    def consumed(self) -> int:
        """Input events read so far, all topics."""
        return int(self._sum("gridshift_events_in_total"))

    def applied(self) -> int:
        """Input events folded into the state so far."""
        return int(self._sum("gridshift_events_applied_total"))

    def dead_letters_by_reason(self) -> dict[str, int]:
        """Inputs rejected (and their dead letters delivered) so far, by reason."""
        return self._by_label(self.dead_lettered, "reason")

    @staticmethod
    def _by_label(counter: Counter, label: str) -> dict[str, int]:
        return {
            sample.labels[label]: int(sample.value)
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        }

    async def wait_consumed(self, total: int, timeout_s: float) -> None:
        """Wait until at least ``total`` input events were consumed (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout_s):
            while self.consumed() < total:
                self.changed.clear()
                await self.changed.wait()

    async def wait_dead_lettered(self, total: int, timeout_s: float) -> None:
        """Wait until at least ``total`` dead letters were delivered (TimeoutError otherwise):
        an input is counted consumed when read, its dead letter a moment later."""
        async with asyncio.timeout(timeout_s):
            while sum(self.dead_letters_by_reason().values()) < total:
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

    def track_health(self, sample: Callable[[], HealthSample]) -> None:
        """Report the health checks (``sample()`` at each scrape) as gauges."""
        self.registry.register(_HealthCollector(sample))

    def broker_reachable(self, up: bool) -> None:
        """Record a change of broker reachability seen by the watch."""
        self.broker_up.set(1 if up else 0)
        if not up:
            self.broker_outages.inc()

    def broker_log_lost(self) -> None:
        """Record a log the broker lost (seen by the watch)."""
        self.broker_logs_lost.inc()

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        text: bytes = generate_latest(self.registry)
        return text
