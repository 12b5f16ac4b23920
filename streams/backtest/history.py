"""Reading historical grid data into one canonical, checked table.

The canonical grid-history format (CSV or Parquet), one row per interval and price node:

| column | required | meaning |
|---|---|---|
| ``interval_start_utc`` | yes | ISO-8601 interval start, UTC (or tz-aware) |
| ``interval_end_utc`` | no | defaults to start + ``step_minutes`` |
| ``node`` / ``region`` | no | price node and carbon region (or constants in a mapping) |
| ``price_usd_per_mwh`` | yes | real-time price |
| ``carbon_g_per_kwh`` | no | grid carbon intensity |
| ``load_mw`` | no | system load (informational, used to derive peak alerts) |
| ``hashprice_usd_per_th_day`` | no | mining revenue |

Tables exported by gridstatus (``Interval Start``/``Interval End``/``Location``/``LMP`` or
``SPP``) are recognised as they are; anything else is adapted by a mapping file (TOML) that
renames columns, sets constants, skips flagged rows and localises naive local times.

Gappy history never gives a silent wrong answer; every treatment is counted in ``notes``:
rows without a price are dropped (decisions hold the last price through them), unsorted rows
are sorted, duplicate intervals keep the last row, gaps in the interval grid are reported, naive
local times need the mapping's ``timezone`` (DST is resolved by pandas' ``ambiguous="infer"``),
and unknown columns are an error that lists what was found and how to map it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from streams.engine.tomlfiles import read_toml
from streams.errors import GridshiftError

ERCOT_REPLAY = Path("replay") / "ercot_replay_15min_2024-06-01_2024-12-31.csv"
CANONICAL = (
    "interval_start_utc",
    "interval_end_utc",
    "node",
    "region",
    "price_usd_per_mwh",
    "carbon_g_per_kwh",
    "load_mw",
    "hashprice_usd_per_th_day",
)
REQUIRED = ("interval_start_utc", "price_usd_per_mwh")
GRIDSTATUS = {
    "Interval Start": "interval_start_utc",
    "Interval End": "interval_end_utc",
    "Location": "node",
    "LMP": "price_usd_per_mwh",
    "SPP": "price_usd_per_mwh",
    "Price": "price_usd_per_mwh",
    "Load": "load_mw",
}


@dataclass(frozen=True)
class Mapping:
    """How to read a non-canonical table: renames, constants, skip flags, local time zone."""

    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> source column
    constants: dict[str, Any] = field(default_factory=dict)  # node, region, step_minutes, ...
    skip_when: dict[str, str] = field(default_factory=dict)  # source column -> value to skip
    timezone: str | None = None  # for naive local timestamps

    @property
    def step_minutes(self) -> int | None:
        value = self.constants.get("step_minutes")
        return int(value) if value is not None else None


@dataclass
class GridHistory:
    """A checked history table (canonical columns, sorted, UTC) and what was done to it."""

    frame: pd.DataFrame
    step_minutes: int
    notes: list[str]
    source: str

    def window(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> GridHistory:
        frame = self.frame
        if start is not None:
            frame = frame[frame["interval_start_utc"] >= start]
        if end is not None:
            frame = frame[frame["interval_start_utc"] < end]
        return GridHistory(frame.reset_index(drop=True), self.step_minutes, self.notes, self.source)


def load_mapping(path: Path) -> Mapping:
    """Read a mapping file; unknown sections or canonical names are an error."""
    raw = read_toml(path, "mapping")
    unknown = set(raw) - {"columns", "constants", "skip_when", "timezone"}
    if unknown:
        raise GridshiftError(f"mapping file {path}: unknown sections {sorted(unknown)}")
    bad = set(raw.get("columns", {})) - set(CANONICAL)
    if bad:
        raise GridshiftError(
            f"mapping file {path}: {sorted(bad)} are not canonical columns "
            f"(choose from {', '.join(CANONICAL)})"
        )
    return Mapping(
        columns=dict(raw.get("columns", {})),
        constants=dict(raw.get("constants", {})),
        skip_when={k: str(v) for k, v in raw.get("skip_when", {}).items()},
        timezone=raw.get("timezone"),
    )


def ercot_mapping_path() -> Path:
    """The mapping shipped for the shared ERCOT 15-minute replay table."""
    return Path(str(resources.files("streams.examples").joinpath("ercot_replay_mapping.toml")))


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


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise GridshiftError(f"history file not found: {path}")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise GridshiftError(f"cannot read {path}: {exc}") from exc


def read_history(path: Path, mapping: Mapping | None = None) -> GridHistory:
    """Read and check a history file (canonical, gridstatus, or mapped)."""
    mapping = mapping or Mapping()
    notes: list[str] = []
    frame = _canonical(_read_table(path), mapping, path, notes)
    frame = _clean(frame, path, notes)
    step = mapping.step_minutes or _infer_step(frame)
    if "interval_end_utc" in frame.columns:
        frame["interval_end_utc"] = _to_utc(frame["interval_end_utc"], mapping.timezone, path)
    else:
        frame["interval_end_utc"] = frame["interval_start_utc"] + pd.Timedelta(minutes=step)
    notes.extend(_gaps(frame, step))
    return GridHistory(frame.reset_index(drop=True), step, notes, str(path))


def _canonical(raw: pd.DataFrame, mapping: Mapping, path: Path, notes: list[str]) -> pd.DataFrame:
    """Skip flagged rows, rename to canonical columns, add constants, parse times and numbers."""
    for column, value in mapping.skip_when.items():
        if column not in raw.columns:
            raise GridshiftError(f"{path}: skip_when column {column!r} not in the file")
        flagged = raw[column].astype(str) == value
        if flagged.any():
            notes.append(f"{int(flagged.sum())} rows flagged {column}={value} skipped")
        raw = raw[~flagged]
    renames = {source: canonical for canonical, source in mapping.columns.items()}
    if not renames:
        renames = {c: GRIDSTATUS[c] for c in raw.columns if c in GRIDSTATUS}
    frame = raw.rename(columns=renames)
    for name, value in mapping.constants.items():
        if name in CANONICAL:
            frame[name] = value
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, raw.columns))
        raise GridshiftError(
            f"{path}: missing {', '.join(missing)}; found columns {found} (write a mapping "
            "file: see streams/examples/ercot_replay_mapping.toml)"
        )
    frame = frame[[c for c in CANONICAL if c in frame.columns]].copy()
    frame["interval_start_utc"] = _to_utc(frame["interval_start_utc"], mapping.timezone, path)
    for column in ("price_usd_per_mwh", "carbon_g_per_kwh", "load_mw", "hashprice_usd_per_th_day"):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column].replace("", None), errors="coerce")
    frame["node"] = frame["node"] if "node" in frame.columns else "NODE"
    frame["region"] = frame["region"] if "region" in frame.columns else frame["node"]
    return frame


def _clean(frame: pd.DataFrame, path: Path, notes: list[str]) -> pd.DataFrame:
    """Drop rows without a usable price, sort, and keep the last of duplicate intervals."""
    no_price = frame["price_usd_per_mwh"].isna() | ~frame["price_usd_per_mwh"].abs().lt(1e5)
    if no_price.any():
        notes.append(
            f"{int(no_price.sum())} intervals without a usable price skipped "
            "(decisions hold the last price through them)"
        )
        frame = frame[~no_price]
    if frame.empty:
        raise GridshiftError(f"{path}: no rows with a usable price")
    if not frame["interval_start_utc"].is_monotonic_increasing:
        notes.append("rows were not in time order: sorted")
    frame = frame.sort_values(["interval_start_utc", "node"], kind="stable")
    duplicated = frame.duplicated(["interval_start_utc", "node"], keep="last")
    if duplicated.any():
        notes.append(f"{int(duplicated.sum())} duplicate intervals: the last row of each kept")
        frame = frame[~duplicated]
    return frame.copy()


def _to_utc(column: pd.Series, timezone: str | None, path: Path) -> pd.Series:
    try:
        parsed = pd.to_datetime(column, utc=False, format="mixed")
    except (ValueError, TypeError) as exc:
        raise GridshiftError(f"{path}: unreadable timestamps ({exc})") from exc
    if parsed.dt.tz is None:
        if timezone is None:
            raise GridshiftError(
                f"{path}: timestamps have no time zone; use *_utc columns or set "
                'timezone = "America/Chicago" (say) in the mapping file'
            )
        parsed = parsed.dt.tz_localize(timezone, ambiguous="infer", nonexistent="shift_forward")
    return parsed.dt.tz_convert("UTC")


def _infer_step(frame: pd.DataFrame) -> int:
    deltas = frame.groupby("node")["interval_start_utc"].diff().dropna()
    if deltas.empty:
        return 60
    return max(1, int(deltas.min().total_seconds() // 60))


def _gaps(frame: pd.DataFrame, step: int) -> list[str]:
    notes = []
    expected = pd.Timedelta(minutes=step)
    for node, group in frame.groupby("node"):
        deltas = group["interval_start_utc"].diff().dropna()
        gaps = deltas[deltas > expected]
        if not gaps.empty:
            missing = int(sum(g // expected - 1 for g in gaps))
            notes.append(
                f"{node}: {len(gaps)} gaps, {missing} missing intervals (longest "
                f"{gaps.max()}); decisions hold the last known values through them"
            )
    return notes
