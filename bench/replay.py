"""Benchmark: replay throughput into Kafka beside a plain aiokafka producer on the same broker,
and the wall time of the Jun-Dec 2024 15-minute ERCOT backtest of scenario 1 (northern-data).

Replay: the shared ERCOT table (20,424 priced intervals, ~26k events) is published through
gridshift's replay path (history -> events -> validating SDK publisher) into fresh topics on an
embedded broker, and the same events, already encoded, through a bare AIOKafkaProducer. Each is
run --repeats times, alternating; medians and the ratio are printed. Targets: replay >= 0.5x the
plain producer; the backtest <= 60 s. The last line is one JSON object with every figure.

    python bench/replay.py [--data-dir DIR] [--repeats 3] [--skip-backtest]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from schemas.keys import event_key
from streams.backtest.events import history_intervals
from streams.backtest.history import ERCOT_REPLAY, ercot_mapping_path, load_mapping, read_history
from streams.engine.codec import encode
from streams.kafka.broker import EmbeddedBroker
from streams.replay import replay_history
from streams.sdk import Publisher


async def gridshift_replay(bootstrap: str, history: object) -> tuple[float, int]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    async with Publisher(bootstrap, topic_prefix=prefix) as publisher:
        started = time.perf_counter()
        outcome = await replay_history(history, publisher, show_progress=False)  # type: ignore[arg-type]
        await publisher.flush()
        return time.perf_counter() - started, outcome.events


async def plain_producer(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(prefix + topic, value=value, key=key)
            for topic, key, value in messages
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("GRIDSHIFT_DATA_DIR", "../shared/data")),
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-backtest", action="store_true")
    args = parser.parse_args()
    table = args.data_dir / ERCOT_REPLAY
    if not table.is_file():
        print(
            f"bench/replay.py: no real data at {args.data_dir}: pass --data-dir or set "
            "GRIDSHIFT_DATA_DIR",
            file=sys.stderr,
        )
        return 2
    history = read_history(table, load_mapping(ercot_mapping_path()))
    messages = [
        (topic, event_key(event), encode(event))
        for batch in history_intervals(history)
        for topic, event in batch.events
    ]
    figures: dict[str, float] = {"events": len(messages), "intervals": len(history.frame)}
    ours, plain = [], []
    with EmbeddedBroker() as broker:
        for _ in range(args.repeats):
            seconds, count = asyncio.run(gridshift_replay(broker.bootstrap, history))
            assert count == len(messages)
            ours.append(len(messages) / seconds)
            plain.append(len(messages) / asyncio.run(plain_producer(broker.bootstrap, messages)))
    figures.update(
        {
            "replay_events_per_s_p50": statistics.median(ours),
            "plain_aiokafka_events_per_s_p50": statistics.median(plain),
            "replay_over_plain": statistics.median(ours) / statistics.median(plain),
        }
    )
    print(
        f"replay of {len(messages):,} ERCOT events ({len(history.frame):,} intervals), "
        f"{args.repeats} runs each, medians:"
    )
    print(f"  gridshift replay   {figures['replay_events_per_s_p50']:>10,.0f} events/s")
    print(f"  plain aiokafka     {figures['plain_aiokafka_events_per_s_p50']:>10,.0f} events/s")
    print(f"  ratio              {figures['replay_over_plain']:>10.2f}  (target >= 0.5)")
    if not args.skip_backtest:
        from streams.backtest.report import run_backtest  # noqa: PLC0415
        from streams.backtest.scenario import load_scenario, scenario_paths  # noqa: PLC0415

        path = scenario_paths()["northern-data"]
        started = time.perf_counter()
        result = run_backtest(load_scenario(path), args.data_dir, path.parent, show_progress=False)
        figures["backtest_northern_data_jun_dec_s"] = time.perf_counter() - started
        figures["backtest_intervals"] = len(result.actuals.starts)
        print(
            f"backtest northern-data Jun-Dec 2024: {len(result.actuals.starts):,} intervals in "
            f"{figures['backtest_northern_data_jun_dec_s']:.1f} s (target <= 60 s)"
        )
    print(json.dumps({"benchmark": "replay", **figures}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
