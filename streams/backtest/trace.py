"""The backtest's figures as files a user can recompute them from (issue #14): every strategy's
set-points per site and interval (``intervals.csv``) and the scored totals (``summary.json``).

``intervals.csv`` holds what the scoring reads, not what it computed: the import a 4CP charge
is taken on and the reserve MW a capacity payment is paid for, with whether the interval is
scored. Prices and tariffs stay in the raw files and the scenario, so the report's 4CP charge
and reserve revenue can be recomputed from those without gridshift
(``tests/backtest/test_traceability.py`` does); ``summary.json`` names the 4CP intervals the
charge was taken at, to check against ERCOT's list (with hourly steps a peak read an hour off
often changes no charge). It renders nothing (:mod:`report` does).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from streams.backtest.plots import LABELS

if TYPE_CHECKING:
    from streams.backtest.report import BacktestResult

INTERVALS = "intervals.csv"
#: Above this many rows (strategies x sites x intervals: a year of 120 sites is ~21 million) the
#: set-points go to Parquet instead, written a strategy at a time: a CSV that size takes minutes
#: to format and gigabytes to hold, and no spreadsheet opens it.
MAX_CSV_ROWS = 1_000_000
INTERVALS_PARQUET = "intervals.parquet"
SUMMARY = "summary.json"


def write_intervals(result: BacktestResult, out_dir: Path) -> Path:
    """One row per strategy, site and interval: ``strategy``, ``site_id``,
    ``interval_start_utc``, ``interval_end_utc`` (ISO, Z), ``scored`` (1/0), ``grid_import_mw``,
    ``mining_mw``, ``gpu_mw`` and ``reserve_<product>_mw`` for every product a site of the
    fleet is qualified for (0 where the strategy holds none). ``intervals.csv``, or with more
    than :data:`MAX_CSV_ROWS` rows ``intervals.parquet`` (the same columns, times as UTC
    timestamps)."""
    act, fleet = result.actuals, result.fleet
    names = [n for n in LABELS if n in result.dispatch]
    if len(names) * len(fleet.sites) * len(act.starts) > MAX_CSV_ROWS:
        return _write_parquet(result, names, out_dir / INTERVALS_PARQUET)
    step = timedelta(minutes=result.scenario.step_minutes)
    starts = pd.DatetimeIndex(act.starts).tz_convert("UTC")
    begin = starts.strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (starts + step).strftime("%Y-%m-%dT%H:%M:%SZ")
    frames = [_strategy_frame(result, name, begin, end) for name in names]
    path = out_dir / INTERVALS
    # Full float precision (repr): the sums recomputed from the file match the report's.
    pd.concat(frames, ignore_index=True).to_csv(path, index=False, float_format=None)
    return path


#: Rows per Parquet write (a row group): a block of sites, not a whole strategy, in memory at a
#: time (a strategy of a year of 120 sites as a frame and an Arrow table is ~1 GB).
PARQUET_BLOCK_ROWS = 100_000


def _write_parquet(result: BacktestResult, names: list[str], path: Path) -> Path:
    import pyarrow as pa  # noqa: PLC0415 - the backtest extra's
    import pyarrow.parquet as pq  # noqa: PLC0415

    step = timedelta(minutes=result.scenario.step_minutes)
    starts = pd.DatetimeIndex(result.actuals.starts).tz_convert("UTC")
    n_sites = len(result.fleet.sites)
    block = max(1, PARQUET_BLOCK_ROWS // max(1, len(starts)))
    writer = None
    try:
        for name in names:  # one block of one strategy's sites in memory at a time
            for first in range(0, n_sites, block):
                sites = range(first, min(n_sites, first + block))
                table = pa.Table.from_pandas(
                    _strategy_frame(result, name, starts, starts + step, sites),
                    preserve_index=False,
                )
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
                del table
    finally:
        if writer is not None:
            writer.close()
    return path


def _strategy_frame(
    result: BacktestResult,
    name: str,
    begin: object,
    end: object,
    sites: range | None = None,
) -> pd.DataFrame:
    """One strategy's rows, site by site (``sites``: those site indices; default all)."""
    act, fleet = result.actuals, result.fleet
    products = sorted({p for site in fleet.sites for p in site.reserve_products})
    d = result.dispatch[name]
    frames = []
    for i in sites if sites is not None else range(len(fleet.sites)):
        site = fleet.sites[i]
        frame = pd.DataFrame(
            {
                "strategy": name,
                "site_id": site.site_id,
                "interval_start_utc": begin,
                "interval_end_utc": end,
                "scored": act.scored.astype(int),
                "grid_import_mw": d.grid_import[i],
                "mining_mw": d.mining[i],
                "gpu_mw": d.gpu[i],
            }
        )
        for product in products:
            held = d.reserve.get(product)
            frame[f"reserve_{product}_mw"] = held[i] if held is not None else 0.0
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def write_summary(result: BacktestResult, out_dir: Path) -> Path:
    """The scored totals per strategy, unrounded (the report rounds to the dollar), and with
    ``[coincident_peak]`` the realised 4CP intervals the charge was taken at."""
    act = result.actuals
    step = timedelta(minutes=result.scenario.step_minutes)
    strategies = {}
    for name in [n for n in LABELS if n in result.scores]:
        s = result.scores[name]
        strategies[name] = {
            "label": result.label(name),
            "net_margin_usd": float(s.net_margin_usd),
            "energy_margin_usd": float(s.energy_margin_usd),
            "peak_charge_usd": float(s.peak_charge_usd),
            "reserve_revenue_usd": float(s.reserve_revenue_usd),
            "demand_at_peaks_mw": [float(mw) for mw in s.demand_at_peaks_mw],
            "energy_cost_usd": float(s.energy_cost_usd),
            "mining_revenue_usd": float(s.mining_revenue_usd),
            "gpu_revenue_usd": float(s.gpu_revenue_usd),
            "regret_usd": float(result.regret_usd(name)),
        }
    payload: dict[str, object] = {
        "scenario": result.scenario.name,
        "start_utc": f"{act.starts[0]:%Y-%m-%dT%H:%M:%SZ}",
        "end_utc": f"{act.starts[-1] + step:%Y-%m-%dT%H:%M:%SZ}",
        "step_minutes": result.scenario.step_minutes,
        "scored_intervals": int(np.sum(act.scored)),
        "strategies": strategies,
    }
    cp = result.scenario.coincident_peak
    if cp is not None:
        payload["coincident_peak"] = {
            "tariff_usd_per_kw_year": cp.tariff_usd_per_kw_year,
            "region": cp.region,
            "peaks_utc": [f"{t:%Y-%m-%dT%H:%M:%SZ}" for t in result.peaks],
        }
    path = out_dir / SUMMARY
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path
