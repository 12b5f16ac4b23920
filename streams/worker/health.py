"""What ``/health`` (and the health metrics) say about a running worker, and why.

One :class:`HealthReport` per question: it is healthy only when no problem was found, and every
problem is one line that names the part and says what is wrong, so an operator reading /health
(or a supervisor that only sees 503) knows where to look.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.kafka.broker import kafka_api_versions_ok
from streams.worker.http import DecisionHub


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


@dataclass
class WorkerHealth:
    """Checks the parts of one worker each time it is asked."""

    broker: tuple[str, int]
    hub: DecisionHub
    sites: int
    owned_sites: Callable[[], Iterable[str]] = lambda: ()
    lag: Callable[[], int] = lambda: 0

    async def report(self) -> HealthReport:
        reachable = await asyncio.to_thread(kafka_api_versions_ok, *self.broker)
        problems = [] if reachable else [f"broker {self.broker[0]}:{self.broker[1]} unreachable"]
        last = self.hub.last_at
        facts: dict[str, Any] = {
            "broker_reachable": reachable,
            "last_decision_age_s": None if last is None else round(time.monotonic() - last, 3),
            "consumer_lag": self.lag(),
            "sites": self.sites,
            # Scale-out: the sites this worker owns (its partitions) and has decided.
            "sites_owned": sorted(self.owned_sites()),
            "sites_decided": sorted(self.hub.latest),
        }
        return HealthReport(tuple(problems), facts)
