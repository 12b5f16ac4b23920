"""Benchmark: the fleet optimizer on real price curves, beside the solver's own time and a naive
cvxpy formulation, measured side by side in one run.

For fleets of 1, 40 and 400 sites (ERCOT HB_SOUTH 15-min, PJM DOM and NYISO CAPITL hourly prices
with their regions' carbon intensity, from GRIDSHIFT_DATA_DIR) it builds the model once, then
re-plans N times as "now" moves 5 minutes and prices change. Per size it prints: first build
and first solve (compile) time, re-plan wall p50/p95, the solver-reported time p50 and the ratio
wall/solver, for warm-started re-plans (the default) and cold ones (no basis reuse); and the
same figures for a naive formulation (matrix parameters with cp.multiply, rebuilt every call).
The last line is one JSON object with every figure. Medians and ratios: the machine is shared.

    python bench/fleet_lp.py [--data-dir DIR] [--replans 25] [--sizes 1,40,400]
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cvxpy as cp
import numpy as np

from optimizer import (
    FleetModel,
    FleetSnapshot,
    FleetSpec,
    Horizon,
    SiteSnapshot,
    SiteSpec,
)

REGIONS = {
    # region: (price file, time column, price column, carbon file)
    "ERCOT": (
        "replay/ercot_replay_15min_2024-06-01_2024-12-31.csv",
        "interval_start_utc",
        "hb_south_rt_spp_usd_mwh",
        "ercot/ercot_carbon_intensity_electricitymaps_hourly_2021_2024.csv",
    ),
    "PJM": (
        "pjm/pjm_dom_zone_rt_lmp_hourly_2020_2024.csv",
        "interval_start_utc",
        "dom_zone_rt_lmp_hourly_usd_mwh",
        "pjm/pjm_carbon_intensity_electricitymaps_hourly_2021_2024.csv",
    ),
    "NYISO": (
        "nyiso/nyiso_capitl_da_lmp_hourly_2020_2024.csv",
        "interval_start_utc",
        "capitl_da_lmp_usd_mwh",
        "nyiso/nyiso_carbon_intensity_electricitymaps_hourly_2021_2024.csv",
    ),
}
START = datetime(2024, 8, 19, tzinfo=UTC)  # a week that holds ERCOT's 20 August scarcity evening


@dataclass
class Series:
    """A real time series: value in force at an instant (hold last)."""

    times: list[datetime]
    values: list[float]

    def at(self, when: datetime) -> float:
        return self.values[max(0, bisect.bisect_right(self.times, when) - 1)]


def read_series(path: Path, time_col: str, value_col: str) -> Series:
    times, values = [], []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if not row[value_col]:
                continue  # e.g. the DST day ERCOT's source left blank
            when = datetime.fromisoformat(row[time_col].replace("Z", "+00:00"))
            if START - timedelta(days=2) <= when <= START + timedelta(days=12):
                times.append(when)
                values.append(float(row[value_col]))
    return Series(times, values)


def load_regions(data_dir: Path) -> dict[str, tuple[Series, Series]]:
    out = {}
    for region, (price_file, time_col, price_col, carbon_file) in REGIONS.items():
        prices = read_series(data_dir / price_file, time_col, price_col)
        carbon = read_series(data_dir / carbon_file, "datetime_utc", "ci_direct_gco2eq_per_kwh")
        out[region] = (prices, carbon)
    return out


def fleet_spec(n: int) -> FleetSpec:
    return FleetSpec(
        sites=tuple(
            SiteSpec(
                site_id=f"site-{i:03d}",
                interconnect_mw=30.0 + i % 7 * 5,
                mining_capacity_mw=25.0,
                miner_efficiency_j_per_th=17.5 + i % 5 * 2.5,
                gpu_capacity_mw=10.0 + i % 3 * 4,
                pue=1.1 + i % 4 * 0.05,
            )
            for i in range(n)
        )
    )


def snapshots(
    n: int, now: datetime, horizon: Horizon, regions: dict[str, tuple[Series, Series]]
) -> FleetSnapshot:
    names = list(regions)
    hours = np.asarray(horizon.step_hours)
    starts = horizon.starts(now)
    t = horizon.n_steps
    sites = {}
    for i in range(n):
        prices, carbon = regions[names[i % len(names)]]
        offset = timedelta(days=i // len(names) % 5)  # sites see different days of real data
        sites[f"site-{i:03d}"] = SiteSnapshot(
            step_hours=hours,
            price_usd_per_mwh=np.array([prices.at(s + offset) for s in starts]),
            carbon_g_per_kwh=np.array([carbon.at(s + offset) for s in starts]),
            hashprice_usd_per_th_day=np.full(t, 0.045),
            gpu_value_usd_per_mwh=np.full(t, 1600.0),
            gpu_demand_mw=np.full(t, 8.0),
            gpu_floor_mw=np.full(t, 5.0),
            mining_available_mw=np.full(t, 25.0),
            signal_cap_mw=np.full(t, np.inf),
            carbon_price_usd_per_t=40.0,
        )
    return FleetSnapshot(sites=sites)


def naive_solve(spec: FleetSpec, snap: FleetSnapshot) -> tuple[float, float, float]:
    """The same LP the way it is often first written: (sites x steps) matrix parameters combined
    with cp.multiply, the problem rebuilt and re-canonicalized on every call (not DPP).

    Returns (wall s, solver-reported s, objective) so the answer can be checked against ours.
    """
    sites = [snap.sites[s.site_id] for s in spec.sites]
    n, t = len(sites), sites[0].n_steps

    def matrix(name: str) -> cp.Parameter:
        return cp.Parameter((n, t), value=np.vstack([s.curve(name) for s in sites]))

    def column(values: list[float]) -> np.ndarray:
        return np.array(values, dtype=float).reshape(n, 1)

    started = time.perf_counter()
    hours, price = matrix("step_hours"), matrix("price_usd_per_mwh")
    efficiency = column([s.miner_efficiency_j_per_th for s in spec.sites])
    pue = column([s.pue for s in spec.sites])
    interconnect = column([s.interconnect_mw for s in spec.sites])
    capacity = column([s.mining_capacity_mw for s in spec.sites])
    carbon_price = column([s.carbon_price_usd_per_t for s in sites])
    variables = [cp.Variable((n, t), nonneg=True) for _ in range(7)]
    m, g, short, excess, imp, onsite, unmatched = variables
    revenue = cp.multiply(matrix("hashprice_usd_per_th_day"), 1e6 / (efficiency * 24.0))
    carbon = cp.multiply(cp.multiply(matrix("carbon_g_per_kwh"), carbon_price / 1000.0), hours)
    objective = cp.Maximize(
        cp.sum(cp.multiply(cp.multiply(hours, revenue), m))
        + cp.sum(cp.multiply(cp.multiply(hours, matrix("gpu_value_usd_per_mwh")), g))
        - cp.sum(cp.multiply(cp.multiply(hours, price) + matrix("peak_cost_usd_per_mw"), imp))
        - cp.sum(cp.multiply(carbon, unmatched))
        - cp.sum(cp.multiply(hours * 1e5, short))
        - cp.sum(cp.multiply(hours * 1e6, excess))
    )
    signal = np.minimum(matrix("signal_cap_mw").value, 2 * interconnect + 1)
    constraints = [
        m <= cp.minimum(matrix("mining_available_mw"), capacity),
        g <= matrix("gpu_demand_mw"),
        g + short >= matrix("gpu_floor_mw"),
        g <= column([s.gpu_capacity_mw for s in spec.sites]),
        imp <= interconnect,
        imp - excess <= signal,
        onsite <= matrix("onsite_cfe_mw"),
        unmatched >= imp - matrix("ppa_mw"),
        imp + onsite == cp.multiply(pue, m + g),
    ]
    problem = cp.Problem(objective, constraints)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not DPP": that is the point here
        problem.solve(solver=cp.HIGHS)
    wall = time.perf_counter() - started
    return wall, float(problem.solver_stats.solve_time or 0.0), float(problem.value)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(
    n: int,
    replans: int,
    naive_replans: int,
    horizon: Horizon,
    regions: dict[str, tuple[Series, Series]],
) -> dict[str, float]:
    spec = fleet_spec(n)
    inputs = [
        snapshots(n, START + timedelta(minutes=5 * k), horizon, regions) for k in range(replans + 1)
    ]
    result: dict[str, float] = {"sites": n, "steps": horizon.n_steps, "replans": replans}
    for label, warm in (("warm", True), ("cold", False)):
        started = time.perf_counter()
        model = FleetModel(spec, horizon.n_steps, warm_start=warm)
        build = time.perf_counter() - started
        started = time.perf_counter()
        model.plan(inputs[0])
        first = time.perf_counter() - started
        walls, solver = [], []
        for snap in inputs[1:]:
            plan = model.plan(snap)
            walls.append(plan.wall_time_s)
            solver.append(plan.solve_time_s)
        result.update(
            {
                f"{label}_build_s": build,
                f"{label}_first_solve_s": first,
                f"{label}_wall_p50_ms": statistics.median(walls) * 1e3,
                f"{label}_wall_p95_ms": pct(walls, 95) * 1e3,
                f"{label}_solver_p50_ms": statistics.median(solver) * 1e3,
                f"{label}_wall_over_solver": statistics.median(
                    [w / s for w, s in zip(walls, solver, strict=True) if s > 0]
                ),
            }
        )
    naive_walls, naive_solver, mismatch = [], [], 0.0
    reference = FleetModel(spec, horizon.n_steps, warm_start=False)
    for snap in inputs[1 : naive_replans + 1]:
        wall, solve, objective = naive_solve(spec, snap)
        naive_walls.append(wall)
        naive_solver.append(solve)
        ours = reference.plan(snap).objective_usd
        mismatch = max(mismatch, abs(objective - ours) / max(1.0, abs(ours)))
    result.update(
        {
            "naive_replans": len(naive_walls),
            "naive_objective_max_rel_diff": mismatch,
            "naive_wall_p50_ms": statistics.median(naive_walls) * 1e3,
            "naive_wall_p95_ms": pct(naive_walls, 95) * 1e3,
            "naive_solver_p50_ms": statistics.median(naive_solver) * 1e3,
            "naive_wall_over_solver": statistics.median(
                [w / s for w, s in zip(naive_walls, naive_solver, strict=True) if s > 0]
            ),
        }
    )
    result["speedup_vs_naive"] = result["naive_wall_p50_ms"] / result["warm_wall_p50_ms"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("GRIDSHIFT_DATA_DIR", "../shared/data")),
    )
    parser.add_argument("--replans", type=int, default=25)
    parser.add_argument("--naive-replans", type=int, default=10)
    parser.add_argument("--sizes", default="1,40,400")
    parser.add_argument("--hours", type=float, default=24.0, help="horizon length")
    args = parser.parse_args()
    if not (args.data_dir / "replay").is_dir():
        print(
            f"bench/fleet_lp.py: no real data at {args.data_dir}: pass --data-dir or set "
            "GRIDSHIFT_DATA_DIR",
            file=sys.stderr,
        )
        return 2
    horizon = Horizon.mixed(total_hours=args.hours)
    regions = load_regions(args.data_dir)
    print(
        f"fleet optimizer benchmark: horizon {horizon.n_steps} steps (12 x 5 min + hourly to "
        f"{args.hours:g} h), real prices from {', '.join(regions)}, "
        f"{args.replans} re-plans per size"
    )
    header = (
        f"{'sites':>5} {'mode':<5} {'build s':>8} {'1st solve s':>11} {'wall p50 ms':>11} "
        f"{'wall p95 ms':>11} {'solver p50 ms':>13} {'wall/solver':>11}"
    )
    print(header)
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        r = measure(n, args.replans, min(args.naive_replans, args.replans), horizon, regions)
        results.append(r)
        for mode in ("warm", "cold"):
            print(
                f"{n:>5} {mode:<5} {r[f'{mode}_build_s']:>8.3f} "
                f"{r[f'{mode}_first_solve_s']:>11.3f} "
                f"{r[f'{mode}_wall_p50_ms']:>11.1f} {r[f'{mode}_wall_p95_ms']:>11.1f} "
                f"{r[f'{mode}_solver_p50_ms']:>13.1f} {r[f'{mode}_wall_over_solver']:>11.2f}"
            )
        print(
            f"{n:>5} {'naive':<5} {'(rebuilt every call)':>20} {r['naive_wall_p50_ms']:>11.1f} "
            f"{r['naive_wall_p95_ms']:>11.1f} {r['naive_solver_p50_ms']:>13.1f} "
            f"{r['naive_wall_over_solver']:>11.2f}   ours {r['speedup_vs_naive']:.1f}x faster, "
            f"same objective within {r['naive_objective_max_rel_diff']:.0e} (relative)"
        )
    print(json.dumps({"benchmark": "optimizer", "results": results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
