"""What ``/health`` (and the health gauges on /metrics) say about a running worker, and why.

One :class:`HealthReport` per question: it is healthy only when no problem was found, and every
problem is one line that starts with the part it concerns and says what is wrong, so an operator
reading /health (or a supervisor that only sees 503) knows where to look. The checks: the broker
answers; the background tasks (telemetry lane, broker watch) run; no ingest agent, the
re-planner, or a faust service the worker reads through (its fetcher, consumer, producer)
crashed; no part is failing to deliver (:class:`Faults`); every topic exists; the
decision clock is near the wall clock; and inputs do not go undecided for long. The facts say
what the worker waits for (:func:`waiting_for`: no hashprice yet, no real-time price for a node
yet) and which inputs matched no site of the fleet.

This module reads the wall clock (the live worker's health only); the engine never does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from schemas import HashpriceEvent, PriceEvent, topic_for
from streams.engine.fleet import SiteConfig
from streams.engine.state import FleetState
from streams.kafka.broker import kafka_api_versions_ok
from streams.worker.metrics import HealthSample, Metrics

if TYPE_CHECKING:
    from streams.kafka.watch import BrokerWatch
    from streams.worker.http import DecisionHub

PRICE_TOPIC = topic_for(PriceEvent).name
HASHPRICE_TOPIC = topic_for(HashpriceEvent).name
#: Unmatched keys listed per topic in /health (all are counted).
UNMATCHED_KEYS_SHOWN = 20
#: The checks, as the ``check`` label of ``gridshift_health_check``.
CHECKS = (
    "broker",
    "background_tasks",
    "crashes",
    "failures",
    "topics",
    "decision_clock",
    "decision_silence",
)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Problems found (none = healthy) and the facts behind them."""

    problems: tuple[str, ...]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def body(self) -> dict[str, Any]:
        """The JSON body of /health."""
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "problems": list(self.problems),
            **self.facts,
        }


# ---------------------------------------------------------------------- faults
@dataclass
class Fault:
    """One part's trouble: the latest error, since when (monotonic), how many times."""

    error: str
    since: float
    count: int = 1
    note: str | None = None  # what became of the input behind it


def describe(error: BaseException | str) -> str:
    """``ExcType: message`` of an exception (the type says more than an empty message)."""
    if isinstance(error, str):
        return error
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


#: The part name of faust's fetcher (it reads every input topic but telemetry).
FETCHER = "input fetcher"
#: A crashed service's note: what became of the inputs (faust's fetcher reads them all).
SERVICE_CRASH_NOTES = {
    FETCHER: (
        "nothing more is read from any input topic but telemetry: no decision, no dead letter "
        "for them; restart the worker (a record it cannot read is then named at its start)"
    ),
}
SERVICE_CRASH_NOTE = "the worker may read or deliver nothing more through it; restart the worker"


class Faults:
    """What the parts of the worker report going wrong.

    *Failing* parts (a delivery that is retried, a telemetry batch read again) are cleared by
    their next success. *Crashed* parts (an ingest agent whose body raised, the re-planner, a
    faust service) stay reported until the worker restarts: faust restarts a crashed agent, but
    may have committed past what it had read, so an operator must know; a crashed faust fetcher
    reads nothing more at all.
    """

    def __init__(self, on_failure: Callable[[str], None] | None = None) -> None:
        self.on_failure = on_failure
        self.failing: dict[str, Fault] = {}
        self.crashed: dict[str, Fault] = {}
        #: Polled for crashed services at every check (``{part: error}``): what crashed without
        #: telling (:meth:`service_crashed` is told at once, with the exact time).
        self.services: list[Callable[[], Mapping[str, BaseException]]] = []

    def service_crashed(self, part: str, error: BaseException) -> None:
        """A faust service (``part``) crashed: sticky, with what it means for the inputs."""
        if part not in self.crashed:
            self.crash(part, error, note=SERVICE_CRASH_NOTES.get(part, SERVICE_CRASH_NOTE))

    def poll_services(self) -> None:
        """Record the crashed services the polls find and were not told of."""
        for poll in self.services:
            for part, error in poll().items():
                self.service_crashed(part, error)

    def fail(self, part: str, error: BaseException | str, *, where: str | None = None) -> None:
        """``part`` (at ``where``, e.g. the input topic) failed and will retry."""
        name = part if where is None else f"{part} ({where})"
        fault = self.failing.get(name)
        if fault is None:
            self.failing[name] = Fault(describe(error), time.monotonic())
        else:
            fault.error, fault.count = describe(error), fault.count + 1
        if self.on_failure is not None:
            self.on_failure(part)

    def ok(self, part: str, *, where: str | None = None) -> None:
        """``part`` succeeded: whatever it was failing at is over."""
        if self.failing:
            self.failing.pop(part if where is None else f"{part} ({where})", None)

    def crash(self, part: str, error: BaseException | str, *, note: str | None = None) -> None:
        """``part`` died, or failed on an input (``note`` says what became of it); sticky."""
        fault = self.crashed.get(part)
        if fault is None:
            self.crashed[part] = Fault(describe(error), time.monotonic(), note=note)
        else:
            fault.error, fault.count, fault.note = describe(error), fault.count + 1, note
        if self.on_failure is not None:
            self.on_failure(part)


# ---------------------------------------------------------------------- waiting
@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a site cannot be decided yet: the input topic it waits for, and in words."""

    input: str
    reason: str


def waiting_for(state: FleetState, site: SiteConfig) -> Waiting | None:
    """What ``site`` waits for before its first decision, or None when it can be decided
    (the conditions under which :func:`~streams.engine.snapshots.build_snapshot` has no
    snapshot)."""
    now = state.clock(site)
    prices = state.prices.get(site.price_node)
    if now is None or prices is None or prices.at(now) is None:
        return Waiting(PRICE_TOPIC, f"no real-time price for node {site.price_node} yet")
    if state.hashprice.at(now) is None:
        if len(state.hashprice) == 0:
            return Waiting(HASHPRICE_TOPIC, "no hashprice yet")
        return Waiting(HASHPRICE_TOPIC, f"no hashprice starting at or before {now.isoformat()}")
    return None


def waiting_sites(state: FleetState, site_ids: Iterable[str]) -> dict[str, Waiting]:
    """The sites of ``site_ids`` that wait for an input, and what for."""
    found = {}
    for site_id in site_ids:
        site = state.sites.get(site_id)
        if site is not None and (waiting := waiting_for(state, site)) is not None:
            found[site_id] = waiting
    return found


def by_reason(waiting: Mapping[str, Waiting]) -> dict[str, list[str]]:
    """``{reason: [sites]}``, sorted: what the log and /health show."""
    grouped: dict[str, list[str]] = {}
    for site_id, why in sorted(waiting.items()):
        grouped.setdefault(why.reason, []).append(site_id)
    return dict(sorted(grouped.items()))


# ---------------------------------------------------------------------- the checks
def _wall_now() -> datetime:
    return datetime.now(UTC)


class Planned(Protocol):
    """What health reads of the re-planner (``streams/worker/replanner.py``)."""

    #: Monotonic time of the oldest input that marked a site dirty and is not answered yet.
    unanswered_since: float | None
    #: The sites this worker decides; None until the group assigns partitions.
    owned: frozenset[str] | None


@dataclass
class WorkerHealth:
    """Checks the parts of one worker each time it is asked."""

    broker: tuple[str, int]
    hub: DecisionHub
    sites: int
    owned_sites: Callable[[], Iterable[str]] = lambda: ()
    lag: Callable[[], int] = lambda: 0
    state: FleetState | None = None
    planner: Planned | None = None
    watch: BrokerWatch | None = None
    faults: Faults | None = None
    metrics: Metrics | None = None
    #: Background tasks that must run as long as the worker does, by part name.
    tasks: Mapping[str, asyncio.Task[None]] = field(default_factory=dict)
    decision_silence_s: float | None = None
    max_clock_lag_s: float | None = None
    max_clock_skew_s: float | None = None
    wall: Callable[[], datetime] = _wall_now

    async def report(self) -> HealthReport:
        """Probe the broker (off the event loop), then check everything else."""
        reachable = await asyncio.to_thread(kafka_api_versions_ok, *self.broker)
        return self.check(reachable)

    def sample(self) -> HealthSample:
        """The health gauges (the broker as the watch last saw it: no probe per scrape)."""
        report, failed = self._checks(None)
        facts = report.facts
        return HealthSample(
            checks={name: name not in failed for name in CHECKS},
            clock_lag_s=facts.get("clock_lag_s"),
            last_decision_age_s=facts.get("last_decision_age_s"),
            topics_missing=len(facts.get("missing_topics", ())),
            sites_waiting=facts.get("_waiting_inputs", {}),
        )

    def check(self, reachable: bool | None = None) -> HealthReport:
        """Every check; ``reachable`` is a fresh probe's answer (None: ask the watch)."""
        report, _ = self._checks(reachable)
        report.facts.pop("_waiting_inputs", None)
        return report

    def _checks(self, reachable: bool | None) -> tuple[HealthReport, set[str]]:
        mono, wall = time.monotonic(), self.wall()
        problems: list[str] = []
        failed: set[str] = set()

        def problem(check: str, line: str) -> None:
            problems.append(line)
            failed.add(check)

        if reachable is None:
            reachable = self.watch.up if self.watch is not None else True
        if not reachable:
            problem("broker", f"broker {self.broker[0]}:{self.broker[1]}: unreachable")
        tasks = self._parts(mono, problem)
        missing = self._topics(problem)
        last = self.hub.last_at
        facts: dict[str, Any] = {
            "broker_reachable": reachable,
            "last_decision_age_s": None if last is None else round(mono - last, 3),
            "consumer_lag": self.lag(),
            "sites": self.sites,
            # Scale-out: the sites this worker owns (its partitions) and has decided.
            "sites_owned": sorted(self.owned_sites()),
            "sites_decided": sorted(self.hub.latest),
            "missing_topics": missing,
            "tasks": tasks,
        }
        if self.watch is not None:
            # Not a problem once over, but a reader must know: a broker that lost its log lost
            # the decisions on it too (the worker read the new log from its start).
            facts["broker_outages"] = self.watch.outages
            facts["broker_logs_lost"] = self.watch.logs_lost
        if self.state is not None:
            self._clock(self.state, wall, facts, problem)
            scope = self._scope(self.state)
            waiting = waiting_sites(self.state, scope)
            facts["waiting_for"] = by_reason(waiting)
            inputs: dict[str, int] = {}
            for why in waiting.values():
                inputs[why.input] = inputs.get(why.input, 0) + 1
            facts["_waiting_inputs"] = inputs
            self._silence(mono, waiting, problem)
        if self.metrics is not None:
            counts = self.metrics.unmatched_by_topic()
            facts["unmatched_inputs"] = {
                topic: {
                    "events": count,
                    "keys": sorted(self.metrics.unmatched_keys.get(topic, ()))[
                        :UNMATCHED_KEYS_SHOWN
                    ],
                }
                for topic, count in sorted(counts.items())
            }
            facts["failures"] = self.metrics.failures_by_part()
        return HealthReport(tuple(problems), facts), failed

    def _parts(self, mono: float, problem: Callable[[str, str], None]) -> dict[str, str]:
        """Background tasks that stopped, parts that crashed or keep failing."""
        tasks: dict[str, str] = {}
        for name, task in self.tasks.items():
            tasks[name] = _task_state(task)
            if task.done():
                problem("background_tasks", f"{name}: stopped ({tasks[name]})")
        if self.faults is None:
            return tasks
        self.faults.poll_services()
        for part, fault in sorted(self.faults.crashed.items()):
            note = fault.note or (
                "inputs it had read may have been committed past; restart the worker to read "
                "them again"
            )
            problem(
                "crashes",
                f"{part}: crashed {_ago(mono - fault.since)} ago{_times(fault.count)}: "
                f"{fault.error} ({note})",
            )
        for part, fault in sorted(self.faults.failing.items()):
            problem(
                "failures",
                f"{part}: failing for {_ago(mono - fault.since)}{_times(fault.count)}: "
                f"{fault.error}",
            )
        return tasks

    def _topics(self, problem: Callable[[str, str], None]) -> list[str]:
        """Topics missing or with the wrong partition count (as the watch last listed them)."""
        if self.watch is None:
            return []
        missing = sorted(self.watch.missing)
        for topic in missing:
            problem("topics", f"topic {topic}: missing")
        for topic, count in sorted(self.watch.misshapen.items()):
            expected = self.watch.partitions_by_topic.get(topic)
            problem("topics", f"topic {topic}: {count} partitions, expected {expected}")
        return missing

    def _scope(self, state: FleetState) -> frozenset[str]:
        """The sites this worker decides (every site until the group assigns partitions)."""
        owned = self.planner.owned if self.planner is not None else None
        return frozenset(state.sites) if owned is None else owned

    def _clock(
        self,
        state: FleetState,
        wall: datetime,
        facts: dict[str, Any],
        problem: Callable[[str, str], None],
    ) -> None:
        clock = state.event_clock
        facts["decision_clock"] = None if clock is None else clock.isoformat()
        facts["clock_lag_s"] = None if clock is None else round((wall - clock).total_seconds(), 3)
        if clock is None:
            return
        ahead = (clock - wall).total_seconds()
        if self.max_clock_skew_s is not None and ahead > self.max_clock_skew_s:
            problem(
                "decision_clock",
                f"decision clock: {clock.isoformat()} is {_ago(ahead)} ahead of wall clock "
                f"(limit {self.max_clock_skew_s:.0f} s)",
            )
        if self.max_clock_lag_s is None:
            return
        # Each node's clock, for the nodes of the sites decided here: one silent feed shows
        # even while another node's prices keep the fleet's clock current.
        nodes = sorted({state.sites[s].price_node for s in self._scope(state) if s in state.sites})
        for node in nodes:
            node_clock = state.node_clock.get(node)
            if node_clock is None:
                continue  # not priced yet: "waiting_for" says so
            behind = (wall - node_clock).total_seconds()
            if behind > self.max_clock_lag_s:
                problem(
                    "decision_clock",
                    f"decision clock of node {node}: {node_clock.isoformat()} is "
                    f"{_ago(behind)} behind wall clock (limit {self.max_clock_lag_s:.0f} s)",
                )

    def _silence(
        self, mono: float, waiting: Mapping[str, Waiting], problem: Callable[[str, str], None]
    ) -> None:
        if self.decision_silence_s is None or self.planner is None:
            return
        since = self.planner.unanswered_since
        if since is None or mono - since <= self.decision_silence_s:
            return
        why = "; ".join(
            f"{reason} ({', '.join(sites)})" for reason, sites in by_reason(waiting).items()
        )
        problem(
            "decision_silence",
            f"decisions: none for {_ago(mono - since)} although inputs arrived "
            f"(limit {self.decision_silence_s:g} s)"
            + (f"; waiting for: {why}" if why else "; every site has its inputs"),
        )


def _task_state(task: asyncio.Task[None]) -> str:
    if not task.done():
        return "running"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return "returned" if error is None else describe(error)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _times(count: int) -> str:
    return "" if count == 1 else f" ({count} times)"
