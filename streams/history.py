"""Reading real historical grid data: the shared ERCOT 15-minute replay table.

The data folder comes from a flag or ``GRIDSHIFT_DATA_DIR``; nothing is copied into the repo.
Rows whose price the source marked missing (the 2024-11-03 DST day) are skipped and counted.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from streams.errors import GridshiftError

ERCOT_REPLAY = Path("replay") / "ercot_replay_15min_2024-06-01_2024-12-31.csv"
ERCOT_STEP = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class GridRow:
    """One 15-minute interval of the ERCOT replay table (HB_SOUTH, ERCOT region, BTC)."""

    interval_start: datetime
    rt_price_usd_per_mwh: float
    carbon_g_per_kwh: float
    hashprice_usd_per_th_day: float
    btc_usd: float


def data_file(data_dir: Path | None, relative: Path) -> Path:
    """``data_dir / relative``, or a :class:`GridshiftError` that says how to point at the data."""
    if data_dir is None:
        raise GridshiftError(
            "no data folder: pass --data-dir DIR or set GRIDSHIFT_DATA_DIR (e.g. ../shared/data)"
        )
    path = data_dir / relative
    if not path.is_file():
        raise GridshiftError(f"data file not found: {path} (check --data-dir/GRIDSHIFT_DATA_DIR)")
    return path


def read_ercot_replay(path: Path, start: datetime, end: datetime) -> tuple[list[GridRow], int]:
    """Rows with ``start <= interval_start < end``, sorted, and how many were skipped as missing."""
    rows: list[GridRow] = []
    skipped = 0
    for record in _records(path):
        when = datetime.fromisoformat(record["interval_start_utc"])
        if not start <= when < end:
            continue
        if record["price_missing"] == "1" or not record["hb_south_rt_spp_usd_mwh"]:
            skipped += 1
            continue
        rows.append(
            GridRow(
                interval_start=when,
                rt_price_usd_per_mwh=float(record["hb_south_rt_spp_usd_mwh"]),
                carbon_g_per_kwh=float(record["ercot_ci_direct_gco2eq_per_kwh_hourly"]),
                hashprice_usd_per_th_day=float(record["hashprice_subsidy_usd_per_th_day_daily"]),
                btc_usd=float(record["btc_usd_close_daily"]),
            )
        )
    rows.sort(key=lambda row: row.interval_start)
    return rows, skipped


def _records(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"interval_start_utc", "hb_south_rt_spp_usd_mwh", "price_missing"} - set(
            reader.fieldnames or ()
        )
        if missing:
            raise GridshiftError(f"{path}: missing columns {', '.join(sorted(missing))}")
        yield from reader
