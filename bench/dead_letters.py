"""Benchmark: how long a run of malformed inputs holds up the valid one behind it.

A worker (in this process, one site, embedded broker) has decided once; then a plain
confluent-kafka producer puts N malformed records (JSON cut short) and one valid record on the
site's partition of a topic, in that order, and the time from the producer's flush to the
valid record's decision is measured, with every dead letter delivered. For telemetry (the
batched lane: the dead letters of a fetch go out together) and compute demand (a faust agent:
dead letters queued and delivered in batches by one sender while the agent reads on). The
worker logs each dead letter as it does in production (to a temporary file here).

Figures on this 2-core machine: docs/RELIABILITY.md ("Inputs on the wrong partition, runs of bad
input, lag after a restart"). Before the dead letters were batched, each took a delivery and a
topic listing in turn (~200/s): 2,000 malformed records held the valid one 9.6 s, 8,000 43 s.

The last line is one JSON object with every figure.

    python bench/dead_letters.py [--counts 2000,8000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from schemas import ComputeDemandEvent, HashpriceEvent, PriceEvent, TelemetryEvent
from streams.engine.codec import encode
from streams.engine.fleet import Fleet, SiteConfig
from streams.kafka.broker import EmbeddedBroker
from streams.settings import load_settings
from streams.worker.app import Worker
from streams.worker.routing import partition_of
from streams.worker.service import running_worker

T0 = datetime(2024, 8, 20, 17, 0, tzinfo=UTC)
Q = timedelta(minutes=15)
SITE = SiteConfig.model_validate(
    {
        "site_id": "site-a",
        "price_node": "HB_SOUTH",
        "carbon_region": "ERCOT",
        "interconnect_mw": 30.0,
        "pue": 1.0,
        "mining_capacity_mw": 25.0,
        "miner_efficiency_j_per_th": 20.0,
        "gpu_capacity_mw": 8.0,
        "gpu_floor_mw": 5.0,
        "gpu_value_usd_per_mwh": 1600.0,
    }
)
WAIT_S = 300.0


def flood(bootstrap: str, topic: str, bad_count: int, valid: bytes) -> float:
    """``bad_count`` malformed records then ``valid`` on site-a's partition; the monotonic time
    when all were acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    partition = partition_of(SITE.site_id, 4)
    bad = valid[: len(valid) // 2]
    for _ in range(bad_count):
        producer.produce(topic, key=b"site-a", value=bad, partition=partition)
        producer.poll(0)
    producer.produce(topic, key=b"site-a", value=valid, partition=partition)
    if producer.flush(60) != 0:
        raise RuntimeError(f"{topic}: not every record acknowledged")
    return time.monotonic()


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {WAIT_S:.0f} s: {what}")
        await asyncio.sleep(0.005)  # polling in-process state under a deadline


def decided_with(field: str, mw: float) -> Callable[[Any], bool]:
    """A decision (or None: none yet) whose ``field`` is ``mw``."""
    return lambda d: d is not None and abs(getattr(d, field) - mw) < 1e-6


def dead_lettered(worker: Worker) -> int:
    return sum(worker.metrics.dead_letters_by_reason().values())


async def measure(
    worker: Worker,
    bootstrap: str,
    topic: str,
    count: int,
    valid: bytes,
    seen: Callable[[Any], bool],
) -> dict[str, float]:
    """One run: seconds from the flood's flush to the valid record's decision and to the last
    dead letter, and the dead letters per second over the whole run."""
    before = dead_lettered(worker)
    started = time.monotonic()
    flushed = await asyncio.to_thread(flood, bootstrap, topic, count, valid)
    await until(lambda: seen(worker.hub.latest.get(SITE.site_id)), "the valid record decided")
    decided = time.monotonic()
    await until(lambda: dead_lettered(worker) - before >= count, "every dead letter delivered")
    done = time.monotonic()
    return {
        "valid_decided_after_s": decided - flushed,
        "all_dead_lettered_after_s": done - flushed,
        "dead_letters_per_s": count / (done - started),
    }


async def run(counts: list[int]) -> dict[str, Any]:
    broker = EmbeddedBroker()
    await asyncio.to_thread(broker.start)
    figures: dict[str, Any] = {}
    try:
        prefix = f"b{uuid.uuid4().hex[:8]}."
        settings = load_settings(topic_prefix=prefix, app_id=f"{prefix}worker", http_enabled=False)
        async with running_worker(settings, Fleet(sites=(SITE,)), broker.bootstrap) as worker:
            day = T0.replace(hour=0)
            producer = Producer({"bootstrap.servers": broker.bootstrap})
            hashprice = HashpriceEvent(
                interval_start=day,
                interval_end=day + timedelta(days=1),
                hashprice_usd_per_th_day=0.05,
            )
            price = PriceEvent(
                interval_start=T0, interval_end=T0 + Q, node="HB_SOUTH", price_usd_per_mwh=25.0
            )
            producer.produce(prefix + "market.hashprice.v1", value=encode(hashprice))
            producer.produce(prefix + "grid.price.v1", key=b"HB_SOUTH", value=encode(price))
            producer.flush(30)
            await until(lambda: SITE.site_id in worker.hub.latest, "a first decision")
            for k, count in enumerate(counts):
                ready = 10.0 + k  # a mining envelope no earlier run set
                readings = TelemetryEvent(
                    interval_start=T0,
                    interval_end=T0 + Q,
                    site_id=SITE.site_id,
                    mining_mw=5.0,
                    gpu_mw=5.0,
                    miners_online=100,
                    mining_available_mw=ready,
                )
                run_ = await measure(
                    worker,
                    broker.bootstrap,
                    prefix + "site.telemetry.v1",
                    count,
                    encode(readings),
                    decided_with("mining_mw", ready),
                )
                figures.update({f"telemetry_{count}_{name}": v for name, v in run_.items()})
                gpus = 1.0 + k
                demand = ComputeDemandEvent(
                    interval_start=T0,
                    interval_end=T0 + Q,
                    site_id=SITE.site_id,
                    contracted_floor_mw=gpus,
                    demand_mw=gpus,
                    value_usd_per_mwh=1600.0,
                )
                run_ = await measure(
                    worker,
                    broker.bootstrap,
                    prefix + "compute.demand.v1",
                    count,
                    encode(demand),
                    decided_with("gpu_mw", gpus),
                )
                figures.update({f"compute_demand_{count}_{name}": v for name, v in run_.items()})
    finally:
        await asyncio.to_thread(broker.stop)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="2000,8000", help="malformed records per run")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        # The worker logs every dead letter, as in production; not onto this terminal.
        logging.basicConfig(
            level=logging.WARNING, filename=str(Path(folder) / "worker.log"), force=True
        )
        figures = asyncio.run(run(counts))
    for count in counts:
        for topic in ("telemetry", "compute_demand"):
            key = f"{topic}_{count}"
            print(
                f"{topic:>14} {count:>6,} malformed: valid decided after "
                f"{figures[key + '_valid_decided_after_s']:6.2f} s, all dead-lettered after "
                f"{figures[key + '_all_dead_lettered_after_s']:6.2f} s "
                f"({figures[key + '_dead_letters_per_s']:,.0f} dead letters/s)"
            )
    print(json.dumps({"benchmark": "dead_letters", **figures}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
