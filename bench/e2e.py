"""Benchmark: gridshift end to end on the embedded broker, each figure beside its comparison.

(a) ingest: 40,000 telemetry events for 40 sites already on the topic, read by a gridshift worker
    (first to last event consumed) vs a plain aiokafka consumer that reads and validates the same
    events with the same pydantic model -> events/s and ratio (target >= 0.5).
(b) latency: a 40-site worker process under 1,000 events/s (telemetry, plus one real ERCOT price
    every 250 ms): price sent -> each site's decision received, p50/p99 (target p99 <= 100 ms).
(c) fleet scale: 400 sites on four ERCOT hubs shared by two worker processes; a fleet-wide price
    update (one price per hub) -> time until all 400 decisions arrived, median of --repeats
    (target <= 1 s).
(d) start: worker process spawned with inputs already on the topics -> first decision received
    (target <= 5 s).

Prices and hashprice are real (the ERCOT replay table); the telemetry values are SYNTHETIC (no
public per-site telemetry exists): constant set-points, labelled as such. The last line is one
JSON object with every figure.

    python bench/e2e.py [--data-dir DIR] [--repeats 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas import HashpriceEvent, PriceEvent, TelemetryEvent
from schemas.keys import event_key
from streams.backtest.history import ERCOT_REPLAY, ercot_mapping_path, load_mapping, read_history
from streams.engine.codec import encode
from streams.engine.fleet import load_fleet
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.settings import load_settings
from streams.worker.service import running_worker
from streams.worker.spawn import spawn_worker

REPO = Path(__file__).resolve().parent.parent
# --debounce-ms / --telemetry-debounce-ms: the workers' settings, else their defaults.
TUNING: dict[str, int] = {}
WARMUP_S = 1.0  # (b): load offered before timing starts
HUBS = ("HB_SOUTH", "HB_NORTH", "HB_WEST", "HB_HOUSTON")
T0 = datetime(2024, 8, 20, 5, 0, tzinfo=UTC)
Q = timedelta(minutes=15)
SITE = """
[[sites]]
site_id = "{site_id}"
price_node = "{node}"
carbon_region = "ERCOT"
interconnect_mw = 30.0
pue = 1.08
mining_capacity_mw = 22.0
miner_efficiency_j_per_th = 19.0
gpu_capacity_mw = 8.0
gpu_floor_mw = 4.0
gpu_value_usd_per_mwh = 1400.0
"""


def fleet_file(folder: Path, sites: int) -> Path:
    path = folder / f"fleet-{sites}.toml"
    path.write_text(
        "".join(
            SITE.format(site_id=f"site-{i:03d}", node=HUBS[i % len(HUBS)]) for i in range(sites)
        )
    )
    return path


def real_prices(data_dir: Path) -> tuple[list[float], float]:
    """A day of real ERCOT HB_SOUTH 15-minute prices (20 Aug 2024) and that day's hashprice."""
    history = read_history(data_dir / ERCOT_REPLAY, load_mapping(ercot_mapping_path()))
    frame = history.frame
    day = frame[frame["interval_start_utc"] >= T0].head(96)
    return [float(p) for p in day["price_usd_per_mwh"]], float(
        day["hashprice_usd_per_th_day"].iloc[0]
    )


def price(node: str, k: int, usd: float) -> PriceEvent:
    return PriceEvent(
        interval_start=T0 + k * Q, interval_end=T0 + (k + 1) * Q, node=node, price_usd_per_mwh=usd
    )


def telemetry(site_id: str, k: int) -> TelemetryEvent:
    """SYNTHETIC telemetry: constant set-points."""
    return TelemetryEvent(
        interval_start=T0 + k * Q,
        interval_end=T0 + (k + 1) * Q,
        site_id=site_id,
        mining_mw=12.0,
        gpu_mw=6.0,
        miners_online=4000,
        mining_available_mw=20.0,
    )


def hashprice(value: float) -> HashpriceEvent:
    day = T0.replace(hour=0)
    return HashpriceEvent(
        interval_start=day, interval_end=day + timedelta(days=1), hashprice_usd_per_th_day=value
    )


async def produce(bootstrap: str, prefix: str, events: list[tuple[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(prefix + topic, value=encode(e), key=event_key(e))
            for topic, e in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# (a) ingest ------------------------------------------------------------------------------------


async def plain_ingest(bootstrap: str, topic: str, count: int) -> float:
    """Events/s of a bare aiokafka consumer that validates every event (first to last)."""
    # The lane's fetch settings, so the ratio compares like with like.
    lane = load_settings()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        fetch_max_wait_ms=lane.consumer_fetch_max_wait_ms,
        max_partition_fetch_bytes=lane.telemetry_fetch_partition_bytes,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer.topics()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen, first = 0, 0.0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for messages in batch.values():
                for message in messages:
                    TelemetryEvent.model_validate_json(message.value or b"")
                    if seen == 0:
                        first = time.perf_counter()
                    seen += 1
        return (count - 1) / (time.perf_counter() - first)
    finally:
        await consumer.stop()


async def gridshift_ingest(bootstrap: str, prefix: str, sites_file: Path, count: int) -> float:
    """Events/s of a gridshift worker reading the same events (first to last consumed)."""
    settings = load_settings(
        topic_prefix=prefix,
        app_id=f"{prefix}ingest",
        sites_file=sites_file,
        http_enabled=False,
        log_level="WARNING",
    )
    async with running_worker(settings, load_fleet(sites_file), bootstrap) as worker:
        await worker.metrics.wait_consumed(1, timeout_s=60)
        first = time.perf_counter()
        await worker.metrics.wait_consumed(count, timeout_s=600)
        return (count - 1) / (time.perf_counter() - first)


async def ingest(bootstrap: str, sites_file: Path, count: int, repeats: int) -> dict[str, float]:
    sites = [f"site-{i:03d}" for i in range(40)]
    events = [("site.telemetry.v1", telemetry(sites[i % 40], i // 40)) for i in range(count)]
    ours, plain = [], []
    for _ in range(repeats):
        prefix = f"b{uuid.uuid4().hex[:8]}."
        await produce(bootstrap, prefix, events)
        plain.append(await plain_ingest(bootstrap, prefix + "site.telemetry.v1", count))
        ours.append(await gridshift_ingest(bootstrap, prefix, sites_file, count))
    return {
        "ingest_events": count,
        "ingest_gridshift_events_per_s_p50": statistics.median(ours),
        "ingest_plain_aiokafka_events_per_s_p50": statistics.median(plain),
        "ingest_ratio": statistics.median(ours) / statistics.median(plain),
    }


# worker processes ------------------------------------------------------------------------------


@contextlib.contextmanager
def worker_process(bootstrap: str, prefix: str, sites_file: Path, port: int) -> Iterator[None]:
    process = spawn_worker(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        app_id=f"{prefix}bench",
        sites_file=sites_file,
        http_enabled=True,
        http_port=port,
        log_level="WARNING",
        **TUNING,
    )
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=60)


async def wait_owned(ports: list[int], sites: int, timeout_s: float = 90.0) -> None:
    """Until the workers on ``ports`` own every site between them (group settled)."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout_s):
        while True:
            owned = 0
            for port in ports:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/health") as response:
                        owned += len((await response.json())["sites_owned"])
            if owned == sites:
                return
            await asyncio.sleep(0.1)  # polling other processes' state, bounded above


@contextlib.asynccontextmanager
async def decisions(bootstrap: str, prefix: str) -> AsyncIterator[asyncio.Queue[tuple[float, Any]]]:
    """(arrival time, record) of every decision, from now on, in a queue."""
    consumer = AIOKafkaConsumer(
        prefix + "dispatch.decision.v1",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()

    async def pump() -> None:
        async for message in consumer:
            queue.put_nowait((time.perf_counter(), message))

    task = asyncio.create_task(pump())
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


def interval_of(message: Any) -> datetime:
    return datetime.fromisoformat(json.loads(message.value)["interval_start"])


# (b) latency -----------------------------------------------------------------------------------


async def latency(
    bootstrap: str, sites_file: Path, prices: list[float], hp: float, seconds: float, rate: int
) -> dict[str, float]:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    sites = [f"site-{i:03d}" for i in range(40)]
    hb_south = {s.encode() for i, s in enumerate(sites) if HUBS[i % len(HUBS)] == "HB_SOUTH"}
    port = free_port()
    warm: list[tuple[str, Any]] = [("market.hashprice.v1", hashprice(hp))]
    warm += [("grid.price.v1", price(node, 0, prices[0])) for node in HUBS]
    warm += [("site.telemetry.v1", telemetry(s, 0)) for s in sites]
    await produce(bootstrap, prefix, warm)
    with worker_process(bootstrap, prefix, sites_file, port):
        await wait_owned([port], 40)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
        await producer.start()
        sent_at: dict[datetime, float] = {}
        try:
            async with decisions(bootstrap, prefix) as arrived:
                # Timing starts after a warm-up: the warm-up events decided (the first rounds
                # compile the fleet models and settle the worker's heap: (d)'s business) and one
                # second of load untimed; and with this process's own heap settled, so a
                # collector pause in the measuring process is not booked as the worker's latency.
                async with asyncio.timeout(60):
                    for _ in sites:
                        await arrived.get()
                gc.collect()
                gc.freeze()
                tick = 0.01
                per_tick = max(1, rate // 100)  # rate/100 events every 10 ms
                warmup_steps = int(WARMUP_S / tick)
                steps = warmup_steps + int(seconds / tick)
                started = time.perf_counter()
                for step in range(steps):
                    k = 1 + step // 25  # a new price interval every 250 ms
                    for j in range(per_tick):
                        if step % 25 == 0 and j == 0:
                            event: Any = price("HB_SOUTH", k, prices[k % len(prices)])
                            if step >= warmup_steps:
                                sent_at[event.interval_start] = time.perf_counter()
                            topic = "grid.price.v1"
                        else:
                            event = telemetry(sites[(step * per_tick + j) % 40], k)
                            topic = "site.telemetry.v1"
                        await producer.send(
                            prefix + topic, value=encode(event), key=event_key(event)
                        )
                    delay = started + (step + 1) * tick - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)  # pacing the offered load
                # Drain (bounded) until the last price's decisions are in.
                last = max(sent_at)
                first_seen: dict[tuple[bytes, datetime], float] = {}
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        while sum(1 for _, start in first_seen if start == last) < len(hb_south):
                            when, message = await arrived.get()
                            first_seen.setdefault((message.key, interval_of(message)), when)
                while not arrived.empty():
                    when, message = arrived.get_nowait()
                    first_seen.setdefault((message.key, interval_of(message)), when)
                # Each site's first decision for a price's interval answers that price.
                samples = [
                    when - sent_at[start]
                    for (key, start), when in first_seen.items()
                    if start in sent_at and key in hb_south
                ]
        finally:
            await producer.stop()
    samples.sort()
    return {
        "latency_offered_events_per_s": rate,
        "latency_price_events": len(sent_at),
        "latency_decisions_timed": len(samples),
        "latency_sites_per_price": len(hb_south),
        "latency_p50_ms": 1000 * statistics.median(samples),
        "latency_p99_ms": 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))],
    }


# (c) fleet scale and (d) start -----------------------------------------------------------------


async def fleet_update(
    bootstrap: str, sites_file: Path, prices: list[float], hp: float, repeats: int
) -> dict[str, float]:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    sites = 400
    ports = [free_port(), free_port()]
    warm: list[tuple[str, Any]] = [("market.hashprice.v1", hashprice(hp))]
    warm += [("site.telemetry.v1", telemetry(f"site-{i:03d}", 0)) for i in range(sites)]
    warm += [("grid.price.v1", price(node, 0, prices[0])) for node in HUBS]
    await produce(bootstrap, prefix, warm)
    times: list[float] = []
    with (
        worker_process(bootstrap, prefix, sites_file, ports[0]),
        worker_process(bootstrap, prefix, sites_file, ports[1]),
    ):
        await wait_owned(ports, sites)
        # A producer already connected: its start-up is not the workers' time.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
        await producer.start()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(producer.stop)
            arrived = await stack.enter_async_context(decisions(bootstrap, prefix))
            for k in range(1, repeats + 2):  # the first round warms the solvers up
                start = T0 + k * Q
                sent = time.perf_counter()
                for node in HUBS:
                    event = price(node, k, prices[k])
                    await producer.send(
                        prefix + "grid.price.v1", value=encode(event), key=event_key(event)
                    )
                got: set[bytes] = set()
                async with asyncio.timeout(60):
                    while len(got) < sites:
                        when, message = await arrived.get()
                        if interval_of(message) == start:
                            got.add(message.key)
                if k > 1:
                    times.append(when - sent)
    return {
        "fleet_sites": sites,
        "fleet_workers": 2,
        "fleet_update_all_decided_s_p50": statistics.median(times),
        "fleet_update_all_decided_s_max": max(times),
    }


async def start_to_first_decision(
    bootstrap: str, sites_file: Path, prices: list[float], hp: float, repeats: int
) -> dict[str, float]:
    times: list[float] = []
    for _ in range(repeats):
        prefix = f"b{uuid.uuid4().hex[:8]}."
        warm: list[tuple[str, Any]] = [
            ("market.hashprice.v1", hashprice(hp)),
            ("grid.price.v1", price("HB_SOUTH", 0, prices[0])),
        ]
        warm += [("site.telemetry.v1", telemetry(f"site-{i:03d}", 0)) for i in range(40)]
        await produce(bootstrap, prefix, warm)
        async with decisions(bootstrap, prefix) as arrived:
            spawned = time.perf_counter()
            with worker_process(bootstrap, prefix, sites_file, free_port()):
                async with asyncio.timeout(60):
                    when, _ = await arrived.get()
                times.append(when - spawned)
    return {"start_to_first_decision_s_p50": statistics.median(times)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prices, hp = real_prices(args.data_dir)
    figures: dict[str, Any] = {"telemetry": "SYNTHETIC set-points; prices real ERCOT 2024-08-20"}
    with tempfile.TemporaryDirectory() as folder, EmbeddedBroker() as broker:
        fleet40 = fleet_file(Path(folder), 40)
        fleet400 = fleet_file(Path(folder), 400)
        steps = [
            ("(a) ingest", ingest(broker.bootstrap, fleet40, args.events, args.ingest_repeats)),
            (
                "(b) latency",
                latency(broker.bootstrap, fleet40, prices, hp, args.seconds, args.rate),
            ),
            (
                "(c) fleet update",
                fleet_update(broker.bootstrap, fleet400, prices, hp, args.repeats),
            ),
            ("(d) start", start_to_first_decision(broker.bootstrap, fleet40, prices, hp, 3)),
        ]
        for label, step in steps:
            if label[1] not in args.parts:
                step.close()  # not asked for: never started
                continue
            began = time.perf_counter()
            result = await step
            figures.update(result)
            print(f"{label}: done in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("GRIDSHIFT_DATA_DIR", "../shared/data")),
    )
    parser.add_argument("--events", type=int, default=40_000, help="telemetry events for (a)")
    parser.add_argument("--ingest-repeats", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="fleet updates for (c)")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="timed load for (b), after a 1 s warm-up"
    )
    parser.add_argument("--rate", type=int, default=1000, help="offered events/s for (b)")
    parser.add_argument("--parts", default="abcd", help="which measurements to run")
    parser.add_argument("--debounce-ms", type=int, help="GRIDSHIFT_DEBOUNCE_MS of the workers")
    parser.add_argument(
        "--telemetry-debounce-ms", type=int, help="GRIDSHIFT_TELEMETRY_DEBOUNCE_MS of the workers"
    )
    args = parser.parse_args()
    for knob in ("debounce_ms", "telemetry_debounce_ms"):
        if getattr(args, knob) is not None:
            TUNING[knob] = getattr(args, knob)  # one set of knobs for every worker started
    if not (args.data_dir / ERCOT_REPLAY).is_file():
        print(
            f"bench/e2e.py: no real data at {args.data_dir}: pass --data-dir or set "
            "GRIDSHIFT_DATA_DIR",
            file=sys.stderr,
        )
        return 2
    figures = asyncio.run(run(args))
    print("gridshift end to end on the embedded broker (medians):")
    if "ingest_ratio" in figures:
        print(
            f"  (a) ingest {figures['ingest_gridshift_events_per_s_p50']:>9,.0f} ev/s vs plain "
            f"aiokafka {figures['ingest_plain_aiokafka_events_per_s_p50']:,.0f} ev/s = "
            f"{figures['ingest_ratio']:.2f} (target >= 0.5)"
        )
    if "latency_p99_ms" in figures:
        print(
            f"  (b) price->decision p50 {figures['latency_p50_ms']:.1f} ms, p99 "
            f"{figures['latency_p99_ms']:.1f} ms at {args.rate:,} ev/s, 40 sites "
            "(target p99 <= 100 ms at 1,000)"
        )
    if "fleet_update_all_decided_s_p50" in figures:
        print(
            f"  (c) 400 sites, 2 workers: all decided "
            f"{figures['fleet_update_all_decided_s_p50']:.2f} s (max "
            f"{figures['fleet_update_all_decided_s_max']:.2f} s, target <= 1 s)"
        )
    if "start_to_first_decision_s_p50" in figures:
        print(
            f"  (d) start to first decision {figures['start_to_first_decision_s_p50']:.2f} s"
            " (target <= 5 s)"
        )
    print(json.dumps({"benchmark": "e2e", **figures}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
