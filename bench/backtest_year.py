"""Benchmark: a long backtest of the 120-site ``gigawatt`` scenario with the live 24 h horizon,
today's path against the earlier one.

- earlier path: every round one joint solve of the fleet, one process (``decompose=False``,
  ``workers=1``), timed on a slice (``--slice-days``, default 7) and extrapolated to a year:
  a year of it would take about an hour.
- new path: decomposed rounds (identical sites solved once, unchanged problems reused) on the
  same slice in one process (like for like), then the longest period every market of the
  scenario covers (ERCOT's 15-minute file: 2024-06-01..2024-12-31; no full calendar year is
  shared) with ``--workers`` chunks, scaled to 365 days.

Timings are gridshift's own (``BacktestResult.seconds``; the oracle's are reported beside),
with the chunk workers' CPU seconds and the load average (the machine may be shared).
Peak RSS: this process (``RUSAGE_SELF``) and the largest worker process (``RUSAGE_CHILDREN``).
Prints one JSON line at the end. Needs the real data (``GRIDSHIFT_DATA_DIR`` or ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streams.backtest.report import run_backtest
from streams.backtest.scenario import load_scenario, resolve_scenario

YEAR_DAYS = 365.0


def _data_dir() -> Path:
    env = os.environ.get("GRIDSHIFT_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        sys.exit(f"no data folder at {path}: set GRIDSHIFT_DATA_DIR")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice-days", type=float, default=7.0)
    parser.add_argument("--slice-start", default="2024-08-01T05:00:00+00:00")
    parser.add_argument("--start", default="2024-06-01T05:00:00+00:00")
    parser.add_argument("--end", default="2025-01-01T00:00:00+00:00")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-old", action="store_true", help="only the new path")
    args = parser.parse_args()
    data = _data_dir()
    path = resolve_scenario("gigawatt")
    scenario = load_scenario(path)
    horizon = scenario.horizon.build()
    out: dict[str, object] = {
        "benchmark": "backtest_year",
        "scenario": "gigawatt",
        "sites": len(scenario.fleet().sites),
        "step_minutes": scenario.step_minutes,
        "horizon_steps": horizon.n_steps,
        "horizon_hours": sum(horizon.step_minutes) / 60,
        "cores": os.cpu_count(),
    }
    s0 = datetime.fromisoformat(args.slice_start)
    s1 = s0 + timedelta(days=args.slice_days)

    def run(start: datetime, end: datetime, **kw: object) -> tuple[float, float, float, float]:
        result = run_backtest(
            scenario,
            data,
            path.parent,
            start=start,
            end=end,
            clip_to_data=True,
            show_progress=False,
            **kw,  # type: ignore[arg-type]
        )
        days = (result.window.end - result.window.start) / timedelta(days=1)
        net = result.scores["gridshift"].net_margin_usd
        return result.seconds["gridshift"], result.seconds["oracle"], days, net

    if not args.skip_old:
        g, o, days, net_old = run(s0, s1, decompose=False, workers=1)
        out |= {
            "old_slice_days": days,
            "old_slice_gridshift_s": round(g, 1),
            "old_slice_oracle_s": round(o, 1),
            "old_year_gridshift_s_extrapolated": round(g / days * YEAR_DAYS, 0),
        }
        print(json.dumps(out), file=sys.stderr, flush=True)
        g, o, days, net_new = run(s0, s1, decompose=True, workers=1)
        out |= {
            "new_slice_1worker_gridshift_s": round(g, 1),
            "new_slice_oracle_s": round(o, 1),
            "slice_speedup_1worker": round(out["old_slice_gridshift_s"] / g, 1),  # type: ignore[operator]
            "slice_net_margin_rel_diff": abs(net_new - net_old) / abs(net_old),
        }
        print(json.dumps(out), file=sys.stderr, flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    g, o, days, _ = run(
        datetime.fromisoformat(args.start), datetime.fromisoformat(args.end), workers=args.workers
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds the chunk workers used: on a shared machine the wall time also counts other
    # work's share of the cores; with the cores to itself the run takes about this / workers.
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    out["new_period_workers_cpu_s"] = round(cpu, 1)
    out["load_average_1min"] = os.getloadavg()[0]
    year = g / days * YEAR_DAYS
    out |= {
        "new_period_days": round(days, 2),
        "new_workers": args.workers,
        "new_period_gridshift_s": round(g, 1),
        "new_period_oracle_s": round(o, 1),
        "new_year_gridshift_s_scaled": round(year, 0),
        "peak_rss_parent_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }
    if "old_year_gridshift_s_extrapolated" in out:
        out["year_speedup"] = round(out["old_year_gridshift_s_extrapolated"] / year, 1)  # type: ignore[operator]
    out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
