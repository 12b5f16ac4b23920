"""The stop's drain (``streams.worker.service._drain``): inputs in flight get up to the grace
to be decided and delivered, but no grace at all once the broker is found gone (nothing could be
delivered), and whatever is left stays uncommitted, said in one log line.

The worker is a STAND-IN carrying only what the drain reads (in-flight counts, the broker
watch's state and probe, faust's ``stream_wait_empty`` setting), so these test the drain's
rule, not Kafka: the end-to-end stop against a broker that went is
tests/e2e/test_worker_shutdown.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from streams.worker.app import Worker
from streams.worker.service import _drain

GRACE_S = 2.0


@dataclass
class Watch:
    up: bool
    answers: bool  # what a probe finds
    probes: int = 0

    async def probe(self) -> bool:
        self.probes += 1
        return self.answers


@dataclass
class InFlight:
    """Inputs in flight: ``left`` of them, done after ``done_after`` reads (None: never)."""

    left: int
    done_after: int | None = None
    reads: int = field(default=0)

    def __call__(self) -> int:
        self.reads += 1
        if self.done_after is not None and self.reads > self.done_after:
            return 0
        return self.left


def stand_in(watch: Watch, in_flight: InFlight) -> Any:
    return SimpleNamespace(
        watch=watch,
        planner=SimpleNamespace(ledger_outstanding=in_flight),
        agents=SimpleNamespace(in_flight=lambda: 0),
        app=SimpleNamespace(conf=SimpleNamespace(stream_wait_empty=True)),
    )


async def drain(worker: Any) -> float:
    start = time.monotonic()
    async with asyncio.timeout(GRACE_S * 3):  # the test's own guard, above the grace
        await _drain(cast(Worker, worker), grace_s=GRACE_S)
    return time.monotonic() - start


async def test_a_broker_found_gone_ends_the_grace_at_once(caplog: pytest.LogCaptureFixture) -> None:
    watch = Watch(up=True, answers=False)
    worker = stand_in(watch, InFlight(left=3))
    caplog.set_level(logging.WARNING, logger="streams.worker.service")
    elapsed = await drain(worker)
    assert elapsed < GRACE_S / 2, f"waited {elapsed:.2f}s for a broker that is gone"
    assert watch.probes == 1
    # faust must not wait for the three inputs either: they stay uncommitted.
    assert worker.app.conf.stream_wait_empty is False
    [record] = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert record.__dict__["inputs"] == 3
    assert record.__dict__["broker_up"] is False


async def test_a_broker_already_down_is_not_waited_for() -> None:
    watch = Watch(up=False, answers=True)
    worker = stand_in(watch, InFlight(left=1))
    assert await drain(worker) < GRACE_S / 2
    assert watch.probes == 0  # known down: not even probed
    assert worker.app.conf.stream_wait_empty is False


async def test_inputs_delivered_within_the_grace_stop_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = Watch(up=True, answers=True)
    worker = stand_in(watch, InFlight(left=2, done_after=8))
    caplog.set_level(logging.WARNING, logger="streams.worker.service")
    assert await drain(worker) < GRACE_S
    assert watch.probes >= 1
    assert worker.app.conf.stream_wait_empty is True  # faust still waits for its own streams
    assert not [r for r in caplog.records if "not delivered" in r.getMessage()]


async def test_with_the_broker_up_the_grace_is_the_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = Watch(up=True, answers=True)
    worker = stand_in(watch, InFlight(left=1))
    caplog.set_level(logging.WARNING, logger="streams.worker.service")
    elapsed = await drain(worker)
    assert GRACE_S * 0.9 <= elapsed < GRACE_S * 2
    assert worker.app.conf.stream_wait_empty is False
    [record] = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert record.__dict__["broker_up"] is True
