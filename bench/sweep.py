"""Sweep throughput: the same small sweep of the seed scenario miner-to-ai-host (8 variants, one
day each, real ERCOT data) in one process, a 2-process local pool and a 2-worker Dask
LocalCluster on loopback; prints the ratios, then one JSON line.

    .venv/bin/python bench/sweep.py [--data-dir DIR] [--days 1]

Each run writes into a fresh folder (nothing is resumed). The Dask figure excludes starting the
cluster (an existing cluster is what --scheduler uses); its start-up is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from streams.backtest.sweep import SweepRun, run_sweep
from streams.backtest.sweep_spec import build_spec

VARY = ("convert_share=0.2,0.4,0.6,0.8",)
UNCERTAIN = ("window=2024-08-19,2024-12-09",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get("GRIDSHIFT_DATA_DIR", str(Path(__file__).parents[2] / "shared/data"))
    parser.add_argument("--data-dir", type=Path, default=Path(default))
    parser.add_argument("--days", type=float, default=1.0)
    args = parser.parse_args()
    spec = build_spec("miner-to-ai-host", VARY, UNCERTAIN, window_days=args.days)
    n = len(spec.vary["convert_share"]) * len(spec.uncertain["window"])

    def timed(**kwargs: object) -> tuple[float, SweepRun]:
        with tempfile.TemporaryDirectory() as out:
            clock = time.perf_counter()
            run = run_sweep(spec, Path(out), args.data_dir, show_progress=False, **kwargs)  # type: ignore[arg-type]
            return time.perf_counter() - clock, run

    one, serial = timed(workers=1)
    two, pooled = timed(workers=2)
    from distributed import LocalCluster  # noqa: PLC0415

    clock = time.perf_counter()
    with LocalCluster(  # type: ignore[no-untyped-call]  # distributed is untyped
        processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        startup = time.perf_counter() - clock
        dask, remote = timed(scheduler=cluster.scheduler_address)
    same = all(
        a["scores"] == b["scores"] == c["scores"]
        for a, b, c in zip(serial.results, pooled.results, remote.results, strict=True)
    )
    peak = {
        name: max(r["worker_peak_rss_mb"] for r in run.results)
        for name, run in (("one", serial), ("pool", pooled), ("dask", remote))
    }
    print(f"{n} variants x {args.days:g} day(s), {os.cpu_count()} cores")
    print(f"1 process      {one:6.2f} s  {n / one:5.2f} variants/s")
    print(f"2-process pool {two:6.2f} s  {n / two:5.2f} variants/s  speed-up {one / two:.2f}x")
    print(
        f"Dask 2 workers {dask:6.2f} s  {n / dask:5.2f} variants/s  vs pool {dask / two:.2f}x "
        f"(+{dask - two:.2f} s); cluster start-up {startup:.2f} s"
    )
    print(f"peak memory per worker (MB): {peak}; results identical: {same}")
    print(
        json.dumps(
            {
                "variants": n,
                "days": args.days,
                "serial_s": round(one, 3),
                "pool2_s": round(two, 3),
                "dask2_s": round(dask, 3),
                "dask_startup_s": round(startup, 3),
                "speedup_pool2": round(one / two, 3),
                "dask_over_pool": round(dask / two, 3),
                "peak_rss_mb": {k: round(v, 1) for k, v in peak.items()},
                "identical": same,
            }
        )
    )


if __name__ == "__main__":
    main()
