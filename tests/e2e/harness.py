"""Helpers for end-to-end tests on the embedded broker: a worker in this event loop, and
bounded waits for decisions and dead letters (no sleeps: every wait has a deadline)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer

from schemas import DispatchDecision, HashpriceEvent, PriceEvent, TelemetryEvent
from streams.app import Worker
from streams.settings import Settings, load_settings
from streams.sites import Fleet
from streams.worker import running_worker

T0 = datetime(2024, 8, 20, 17, 0, tzinfo=UTC)
Q = timedelta(minutes=15)
WAIT_S = 30.0


def worker_settings(prefix: str, **overrides: Any) -> Settings:
    """Settings for a test worker: fresh topics and group; no HTTP unless a test asks for it."""
    values: dict[str, Any] = {"http_enabled": False, **overrides}
    return load_settings(topic_prefix=prefix, app_id=f"{prefix}worker", **values)


@contextlib.asynccontextmanager
async def worker_on(bootstrap: str, fleet: Fleet, settings: Settings) -> AsyncIterator[Worker]:
    async with running_worker(settings, fleet, bootstrap) as worker:
        yield worker


def price(k: int, value: float, node: str = "HB_SOUTH") -> PriceEvent:
    return PriceEvent(
        interval_start=T0 + k * Q, interval_end=T0 + (k + 1) * Q, node=node, price_usd_per_mwh=value
    )


def hashprice(value: float = 0.048) -> HashpriceEvent:
    day = T0.replace(hour=0)
    return HashpriceEvent(
        interval_start=day, interval_end=day + timedelta(days=1), hashprice_usd_per_th_day=value
    )


def telemetry(site_id: str, k: int, *, t0: datetime = T0, **fields: Any) -> TelemetryEvent:
    """Telemetry for interval k after t0 (defaults: 10 MW mining, 8 MW GPU, 25 MW ready)."""
    values: dict[str, Any] = {
        "mining_mw": 10.0,
        "gpu_mw": 8.0,
        "miners_online": 100,
        "mining_available_mw": 25.0,
        **fields,
    }
    return TelemetryEvent(
        interval_start=t0 + k * Q, interval_end=t0 + (k + 1) * Q, site_id=site_id, **values
    )


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
