"""Benchmark: replay throughput into Kafka beside a plain aiokafka producer on the same broker,
the wall time of the Jun-Dec 2024 15-minute ERCOT backtest of scenario 1 (northern-data), and the
peak memory of a two-year, one-site, 15-minute backtest.

Replay: the shared ERCOT table (20,424 priced intervals, ~26k events) is published through
gridshift's replay path (history -> events -> validating SDK publisher) into fresh topics on an
embedded broker, and the same events, already encoded, through a bare AIOKafkaProducer. Each is
run --repeats times, alternating; medians and the ratio are printed. Targets: replay >= 0.5x the
plain producer; the backtest <= 60 s.

Two-year backtest: a table of REAL hourly data on a 15-minute grid (ERCOT's day-ahead hub-average
price, each hour repeated for its four quarters, Electricity Maps carbon intensity and the BTC
block-subsidy hashprice, 2023-01-01 to 2024-12-31, 70,152 rows) is written with a one-site
scenario into a temporary folder, as a user's own files, and backtested in a child process
that reports its own peak resident set size (the parent also runs the embedded broker, whose
memory must not count). Target: < 500 MB.

The last line is one JSON object with every figure.

    python bench/replay.py [--data-dir DIR] [--repeats 3] [--skip-backtest] [--skip-two-year]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
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


TWO_YEAR_SCENARIO = """name = "two-year"
title = "Two years of ERCOT (real hourly data on a 15-minute grid), one site"
description = "Memory benchmark: a user's own two-year table beside its scenario."
start = "2023-01-01T06:00:00Z"
end = "2025-01-01T00:00:00Z"
price_lag_intervals = 1

[horizon]
fine_steps = 4
fine_minutes = 15
coarse_minutes = 60
hours = 3

[[markets]]
node = "HB_SOUTH"
region = "ERCOT"
file = "ercot_2y_15min.csv"

[[sites]]
site_id = "site-a"
price_node = "HB_SOUTH"
carbon_region = "ERCOT"
interconnect_mw = 30.0
pue = 1.0
mining_capacity_mw = 25.0
miner_efficiency_j_per_th = 20.0
gpu_capacity_mw = 8.0
gpu_floor_mw = 5.0
gpu_value_usd_per_mwh = 1600.0
"""


def two_year_table(data_dir: Path, folder: Path) -> Path:
    """Real hourly ERCOT price, carbon and hashprice, each hour repeated for its quarters."""
    price = pd.read_csv(data_dir / "ercot/ercot_hb_hubavg_da_spp_hourly_2020_2024.csv")
    carbon = pd.read_csv(
        data_dir / "ercot/ercot_carbon_intensity_electricitymaps_hourly_2021_2024.csv"
    )
    btc = pd.read_csv(data_dir / "bitcoin/btc_daily_price_difficulty_hashrate_2020-04_2024-12.csv")
    hours = pd.DataFrame(
        {
            "hour": pd.to_datetime(price["interval_start_utc"], utc=True),
            "price_usd_per_mwh": price["hb_hubavg_da_spp_usd_mwh"],
        }
    )
    hours = hours[hours["hour"] >= pd.Timestamp("2023-01-01T06:00:00Z")]
    hours = hours.merge(
        pd.DataFrame(
            {
                "hour": pd.to_datetime(carbon["datetime_utc"], utc=True),
                "carbon_g_per_kwh": carbon["ci_direct_gco2eq_per_kwh"],
            }
        ),
        on="hour",
        how="left",
    )
    hours["day"] = hours["hour"].dt.floor("D")
    hours = hours.merge(
        pd.DataFrame(
            {
                "day": pd.to_datetime(btc["date_utc"], utc=True),
                "hashprice_usd_per_th_day": btc["hashprice_subsidy_usd_per_th_day"],
            }
        ),
        on="day",
        how="left",
    )
    quarters = hours.loc[hours.index.repeat(4)].reset_index(drop=True)
    quarters["interval_start_utc"] = quarters["hour"] + pd.to_timedelta(
        15 * (quarters.index % 4), unit="min"
    )
    path = folder / "ercot_2y_15min.csv"
    quarters["interval_start_utc"] = quarters["interval_start_utc"].dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    columns = [
        "interval_start_utc",
        "price_usd_per_mwh",
        "carbon_g_per_kwh",
        "hashprice_usd_per_th_day",
    ]
    quarters[columns].to_csv(path, index=False)
    (folder / "two_year.toml").write_text(TWO_YEAR_SCENARIO, encoding="utf-8")
    return folder / "two_year.toml"


def two_year_child(scenario: Path) -> int:
    """Run in a fresh process: backtest ``scenario`` and print its figures as JSON."""
    from streams.backtest.report import run_backtest  # noqa: PLC0415
    from streams.backtest.scenario import load_scenario  # noqa: PLC0415

    started = time.perf_counter()
    result = run_backtest(load_scenario(scenario), None, scenario.parent, show_progress=False)
    figures = {
        "two_year_intervals": len(result.actuals.starts),
        "two_year_scored": int(result.actuals.scored.sum()),
        "two_year_backtest_s": time.perf_counter() - started,
        "two_year_gridshift_s": result.seconds["gridshift"],
        "two_year_oracle_s": result.seconds["oracle"],
        "two_year_gridshift_margin_usd": result.scores["gridshift"].net_margin_usd,
        # ru_maxrss is in KiB on Linux: this process only, its peak over its whole life.
        "two_year_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(figures))
    return 0


def two_year(data_dir: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="gridshift-bench-") as folder:
        scenario = two_year_table(data_dir, Path(folder))
        done = subprocess.run(
            [sys.executable, __file__, "--two-year-child", str(scenario)],
            capture_output=True,
            text=True,
            check=True,
        )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("GRIDSHIFT_DATA_DIR", "../shared/data")),
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-backtest", action="store_true")
    parser.add_argument("--skip-two-year", action="store_true")
    parser.add_argument("--two-year-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.two_year_child is not None:
        return two_year_child(args.two_year_child)
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
    if not args.skip_two_year:
        figures.update(two_year(args.data_dir))
        print(
            f"backtest two years, one site, 15 min: {figures['two_year_intervals']:,.0f} intervals "
            f"in {figures['two_year_backtest_s']:.1f} s, peak RSS "
            f"{figures['two_year_peak_rss_mb']:,.0f} MB (target < 500 MB)"
        )
    print(json.dumps({"benchmark": "replay", **figures}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
