"""Helpers for end-to-end tests on the embedded broker: a worker in this event loop, and
bounded waits for decisions and dead letters (no sleeps: every wait has a deadline)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from schemas import DispatchDecision
from streams.engine.fleet import Fleet
from streams.settings import Settings, load_settings
from streams.worker.app import Worker
from streams.worker.service import running_worker

WAIT_S = 30.0


def worker_settings(prefix: str, **overrides: Any) -> Settings:
    """Settings for a test worker: fresh topics and group; no HTTP unless a test asks for it."""
    values: dict[str, Any] = {"http_enabled": False, **overrides}
    return load_settings(topic_prefix=prefix, app_id=f"{prefix}worker", **values)


@contextlib.asynccontextmanager
async def worker_on(bootstrap: str, fleet: Fleet, settings: Settings) -> AsyncIterator[Worker]:
    async with running_worker(settings, fleet, bootstrap) as worker:
        yield worker


def decided_at(site_id: str, start: datetime) -> Callable[[DispatchDecision], bool]:
    """Matches the decision for ``site_id`` and the interval starting at ``start``."""
    return lambda d: d.site_id == site_id and d.interval_start == start


class DecisionLog:
    """Collects decisions from an async iterator in the background; waits are bounded."""

    def __init__(self, decisions: AsyncIterator[DispatchDecision]) -> None:
        self.seen: list[DispatchDecision] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._collect(decisions))

    async def _collect(self, decisions: AsyncIterator[DispatchDecision]) -> None:
        async for decision in decisions:
            self.seen.append(decision)
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[DispatchDecision], bool], timeout_s: float = WAIT_S
    ) -> DispatchDecision:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            for decision in reversed(self.seen):
                if predicate(decision):
                    return decision
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"no matching decision within {timeout_s}s; saw {len(self.seen)}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def read_records(
    bootstrap: str, topic: str, count: int, timeout_s: float = WAIT_S
) -> list[Any]:
    """The first ``count`` records of ``topic`` (from the beginning), or AssertionError."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=50
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(records) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"only {len(records)} of {count} records on {topic}")
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            for messages in batch.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    return records
