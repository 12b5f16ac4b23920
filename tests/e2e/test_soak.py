"""Soak: 60 s of steady telemetry and prices into a worker process; its memory stays bounded and
its consumer lag returns to zero. Prints the figures (they go into docs/RELIABILITY.md)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel

from schemas.keys import event_key
from streams.engine.codec import encode
from streams.kafka.broker import EmbeddedBroker
from streams.worker.telemetry import lane_group
from tests.e2e.test_crash import start_worker
from tests.factories import hashprice, price, telemetry

pytestmark = [pytest.mark.e2e, pytest.mark.soak]
SECONDS = float(os.environ.get("GRIDSHIFT_SOAK_SECONDS", "60"))
RATE = 2_000  # events per second offered


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def committed(
    bootstrap: str, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        return {tp: (await probe.committed(tp)) or 0 for tp in tps}
    finally:
        await probe.stop()


async def test_soak_memory_bounded_and_lag_returns_to_zero(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    worker = start_worker(broker.bootstrap, topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await producer.start()
    ends: dict[TopicPartition, int] = {}
    sent = 0
    try:

        async def send(topic: str, event: BaseModel) -> None:
            nonlocal sent
            future = await producer.send(topic_prefix + topic, encode(event), key=event_key(event))
            future.add_done_callback(lambda f: _record(f, ends))
            sent += 1

        await send("market.hashprice.v1", hashprice())
        started = time.monotonic()
        rss_start = None
        k = 0
        while (elapsed := time.monotonic() - started) < SECONDS:
            target = int(elapsed * RATE)
            while sent < target:
                k += 1
                site = "tx-south-mine" if k % 2 else "tx-south-ai"
                await send(
                    "site.telemetry.v1",
                    telemetry(site, k // 50, gpu_mw=5.0, mining_available_mw=20.0 + k % 5),
                )
                if k % 50 == 0:
                    await send("grid.price.v1", price(k // 50, 20.0 + k % 300))
            if rss_start is None and elapsed > 10:
                rss_start = rss_mb(worker.pid)  # after warm-up: imports, models compiled
            await asyncio.sleep(0.01)  # pacing the offered load, not synchronisation
        await producer.flush()
        offered = sent / (time.monotonic() - started)
        rss_end = rss_mb(worker.pid)
        group = f"{topic_prefix}crash"
        telemetry_tps = [tp for tp in ends if tp.topic.endswith("site.telemetry.v1")]
        other_tps = [tp for tp in ends if tp not in telemetry_tps]
        deadline = time.monotonic() + 90
        lag = None
        while time.monotonic() < deadline:
            done = await committed(broker.bootstrap, group, other_tps)
            # Telemetry offsets are the batched lane's, under its own group.
            done |= await committed(broker.bootstrap, lane_group(group), telemetry_tps)
            lag = sum(max(0, ends[tp] - done[tp]) for tp in ends)
            if lag == 0:
                break
            await asyncio.sleep(0.5)  # polling the group's committed offsets under a deadline
        print(
            f"\nsoak: {SECONDS:.0f} s, {sent} events offered at {offered:,.0f}/s, worker RSS "
            f"{rss_start:.1f} MB after warm-up -> {rss_end:.1f} MB at the end, final lag {lag}"
        )
        assert worker.poll() is None, "the worker died during the soak"
        assert rss_start is not None
        assert rss_end < rss_start * 1.25 + 30, "worker memory grew under steady load"
        assert lag == 0, "consumer lag did not return to zero"
    finally:
        await producer.stop()
        worker.terminate()
        await asyncio.to_thread(worker.wait, 30)


def _record(future: asyncio.Future[object], ends: dict[TopicPartition, int]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    metadata = future.result()
    tp = TopicPartition(metadata.topic, metadata.partition)  # type: ignore[attr-defined]
    ends[tp] = max(ends.get(tp, 0), metadata.offset + 1)  # type: ignore[attr-defined]
