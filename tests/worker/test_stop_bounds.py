"""The worker's stop bounds the two waits of faust and aiokafka that have no end of their own
once the broker is gone: the app's last producer flush and the producer's stop (aiokafka waits
for every record it holds to be delivered; faust's request timeout is 20 minutes).

faust's own step is replaced by a STAND-IN that never returns (what a flush or stop against a
broker that is gone does), so these test the bound and what it says, not Kafka: the end-to-end
stop against a real broker that went is tests/e2e/test_worker_shutdown.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.worker import _transport
from streams.worker._transport import App, _Producer

BOUND_S = 0.2


async def _never(*_: Any) -> None:
    await asyncio.Event().wait()  # nothing sets it: a broker that never answers


async def test_the_last_producer_flush_is_bounded_and_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_transport, "STOP_FLUSH_TIMEOUT_S", BOUND_S)
    monkeypatch.setattr(faust.App, "_producer_flush", _never)
    app = App("test-stop-bounds", broker="kafka://127.0.0.1:9")  # never connects
    caplog.set_level(logging.WARNING, logger="streams.worker._transport")
    start = time.monotonic()
    async with asyncio.timeout(5.0):  # the test's own guard, far above the bound
        await app._producer_flush(logging.getLogger("test"))
    assert time.monotonic() - start < 2.0
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("producer not flushed at stop")
    assert "read again at the next start" in said[0]


async def test_the_producers_stop_is_bounded_and_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_transport, "CLIENT_STOP_TIMEOUT_S", BOUND_S)
    monkeypatch.setattr(faust_aiokafka.Producer, "on_stop", _never)
    producer = object.__new__(_Producer)  # on_stop reads nothing of its state
    caplog.set_level(logging.WARNING, logger="streams.worker._transport")
    start = time.monotonic()
    async with asyncio.timeout(5.0):
        await producer.on_stop()
    assert time.monotonic() - start < 2.0
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("kafka producer not stopped in time")
