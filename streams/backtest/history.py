"""Reading historical grid data into one canonical, checked table.

The canonical grid-history format (CSV or Parquet), one row per interval and price node:

| column | required | meaning |
|---|---|---|
| ``interval_start_utc`` | yes | ISO-8601 interval start, UTC (or with an explicit offset) |
| ``interval_end_utc`` | no | defaults to start + ``step_minutes`` |
| ``node`` / ``region`` | no | price node and carbon region (or constants in a mapping) |
| ``price_usd_per_mwh`` | yes | real-time price |
| ``day_ahead_price_usd_per_mwh`` | no | day-ahead price (the forecast past real time) |
| ``carbon_g_per_kwh`` | no | grid carbon intensity |
| ``load_mw`` | no | system load (informational, used to derive peak alerts) |
| ``hashprice_usd_per_th_day`` | no | mining revenue |

Tables exported by gridstatus (``Interval Start``/``Interval End``/``Location``/``LMP`` or
``SPP``) are recognised as they are; anything else is adapted by a mapping file (TOML, a strict
:class:`Mapping`) that renames columns, sets constants, skips flagged rows and localises naive
local times.

Bad history never gives a silent wrong answer. Rows are removed, never repaired, and each
removal is kept with its time and reason (:attr:`GridHistory.removed`), so a window of the
table reports only what happened inside it: rows the source flags, rows without a price, prices
outside the market's bounds or equal to a well-known sentinel, carbon outside physical bounds
(the carbon value only), duplicate intervals (the last row kept). Rows out of time order are
sorted (each is kept in :attr:`GridHistory.removed` as ``sorted``, so a window says how many of
its rows were), and the interval length is read from the sorted rows.
Timestamps with explicit offsets (also mixed ones, across a DST change) are parsed to UTC;
naive ones need the mapping's ``timezone``. A hashprice outside plausible bounds is refused (it
is a unit mistake, not a bad row). Gaps are left as gaps: what a backtest assumes through them
is decided by its hold rules (:mod:`streams.backtest.coverage`), not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams.backtest.mistakes import one_line
from streams.engine.tomlfiles import closest, read_toml
from streams.errors import GridshiftError

ERCOT_REPLAY = Path("replay") / "ercot_replay_15min_2024-06-01_2024-12-31.csv"
CANONICAL = (
    "interval_start_utc",
    "interval_end_utc",
    "node",
    "region",
    "price_usd_per_mwh",
    "day_ahead_price_usd_per_mwh",
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
#: Default price bounds ($/MWh) for a market that states none: wide enough for every US ISO's
#: offer floor and scarcity cap (ERCOT: floor -$250, cap $5,000 plus adders).
DEFAULT_PRICE_BOUNDS = (-1000.0, 10000.0)
#: Values exports use for "no data": flagged even where they fall inside a market's bounds.
SENTINELS = frozenset({-99999.0, -9999.0, -999.0, 999.0, 9999.0, 99999.0})
#: Physical bounds of grid carbon intensity (g/kWh): coal is about 1,000.
CARBON_BOUNDS = (0.0, 2000.0)
#: Plausible hashprice ($/TH/day): 2020-2024 ran about 0.04..0.4.
HASHPRICE_BOUNDS = (0.005, 2.0)
#: A day-over-day hashprice change by more than this factor is flagged (not removed).
HASHPRICE_JUMP = 5.0


class _Strict(BaseModel):
    # strict about types too: a value of the wrong TOML type is refused, not converted.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)


def check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """A ``[low, high]`` pair with low < high (shared by mappings and scenario markets)."""
    if not bounds[0] < bounds[1]:
        raise ValueError("bounds must be [low, high] with low < high")
    return bounds


def check_timezone(name: str | None) -> str | None:
    """An IANA time-zone name, or a clear error (shared by mappings and scenario markets)."""
    if name is not None:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f'unknown time zone {name!r} (e.g. "America/Chicago")') from exc
    return name


class MappingConstants(_Strict):
    """Values every row shares, and the reading rules of the table."""

    node: str | None = Field(default=None, description="Price node of every row.")
    region: str | None = Field(default=None, description="Carbon region of every row.")
    step_minutes: int | None = Field(default=None, ge=1, le=1440, description="Interval length.")
    price_bounds_usd_per_mwh: tuple[float, float] = Field(
        default=DEFAULT_PRICE_BOUNDS,
        strict=False,  # a TOML array arrives as a list; its numbers stay strict
        description="Prices outside are dropped and counted.",
    )

    @model_validator(mode="before")
    @classmethod
    def _timezone_is_top_level(cls, data: Any) -> Any:
        # TOML puts every key written after a [table] header into that table: a timezone under
        # [constants] is almost always meant as the top-level key.
        if isinstance(data, dict) and "timezone" in data:
            raise ValueError(
                "timezone is a top-level key: write it before the first [table] (here it was "
                "read as part of [constants])"
            )
        return data

    _bounds = field_validator("price_bounds_usd_per_mwh")(check_bounds)


class Mapping(_Strict):
    """How to read a non-canonical table: renames, constants, skip flags, local time zone."""

    timezone: str | None = Field(default=None, description="IANA zone of naive local times.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Canonical column -> source column."
    )
    constants: MappingConstants = MappingConstants()
    skip_when: dict[str, str] = Field(
        default_factory=dict, description="Source column -> value marking rows to skip."
    )

    @field_validator("columns")
    @classmethod
    def _canonical_names(cls, columns: dict[str, str]) -> dict[str, str]:
        for name in columns:
            if name not in CANONICAL:
                guess = closest(name, CANONICAL)
                hint = f"did you mean {guess}?" if guess else f"canonical: {', '.join(CANONICAL)}"
                raise ValueError(f"{name!r} is not a canonical column ({hint})")
        return columns

    @field_validator("skip_when", mode="before")
    @classmethod
    def _values_as_text(cls, values: Any) -> Any:
        # The file is read as text: a flag written as 1 in TOML matches the cell "1".
        if isinstance(values, dict):
            return {k: str(v) if isinstance(v, int | float) else v for k, v in values.items()}
        return values

    _timezone = field_validator("timezone")(check_timezone)

    @property
    def step_minutes(self) -> int | None:
        return self.constants.step_minutes

    @property
    def price_bounds(self) -> tuple[float, float]:
        return self.constants.price_bounds_usd_per_mwh


def load_mapping(path: Path) -> Mapping:
    """Read a mapping file; an unknown key is an error that names the closest known one."""
    raw = read_toml(path, "mapping")
    try:
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        raise GridshiftError(f"mapping file {path}: {one_line(exc, Mapping)}") from exc


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


REMOVED_COLUMNS = ("interval_start_utc", "node", "category", "reason", "value")
#: Categories of removals: rows the source flags, rows with an unusable price, duplicate
#: intervals, carbon values outside physical bounds (the row itself is kept), and rows that
#: came after a later row in the file (kept, sorted into place: nothing removed, but said).
CATEGORIES = ("skipped", "dropped", "duplicate", "carbon", "sorted")
#: How the rows a file had out of time order are told (after "<node>: <n> rows ").
SORTED_REASON = "out of time order in the file, sorted (nothing dropped)"


@dataclass
class GridHistory:
    """A checked history table (canonical columns, sorted, UTC) and what was removed from it.

    ``labels`` are notes about the whole table (e.g. that it is SYNTHETIC); ``removed`` has one
    row per removed row or value (its interval start, node, reason and the value removed) and
    one per row the file had out of time order (category ``sorted``: kept, sorted into place).
    """

    frame: pd.DataFrame
    step_minutes: int
    labels: list[str]
    source: str
    removed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REMOVED_COLUMNS))
    #: Contracted carbon-free supply expected per site and hour (a shaped PPA, published as
    #: ``grid.ppa.v1`` forecasts; columns ``streams.backtest.ppa.PPA_COLUMNS``), or None.
    ppa: pd.DataFrame | None = None

    def window(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> GridHistory:
        """The rows (and removals) with interval starts in ``[start, end)``."""

        def cut(frame: pd.DataFrame) -> pd.DataFrame:
            keep = pd.Series(True, index=frame.index)
            if start is not None:
                keep &= frame["interval_start_utc"] >= start
            if end is not None:
                keep &= frame["interval_start_utc"] < end
            return frame[keep].reset_index(drop=True)

        return GridHistory(
            cut(self.frame),
            self.step_minutes,
            self.labels,
            self.source,
            cut(self.removed),
            None if self.ppa is None else cut(self.ppa),
        )

    @property
    def resorted(self) -> bool:
        """Whether rows of this (windowed) table were out of time order in the file."""
        return bool((self.removed["category"] == "sorted").any())

    @property
    def notes(self) -> list[str]:
        """What was done to the rows of this (windowed) table, one line each (a re-sort too:
        it is a removal note of category ``sorted``)."""
        notes = list(self.labels)
        notes += removal_notes(self.removed)
        notes += gap_notes(self.frame, self.step_minutes)
        return notes


def removal_notes(removed: pd.DataFrame) -> list[str]:
    """One line per node and reason: how many rows, and the first few times and values (rows
    only sorted into place: how many, the times would say nothing)."""
    notes = []
    for (node, reason), group in removed.groupby(["node", "reason"], sort=False):
        count = len(group)
        if reason == SORTED_REASON:
            notes.append(f"{node}: {plural(count, 'row')} {reason}")
            continue
        shown = ", ".join(
            f"{_number(v)} at {t:%Y-%m-%d %H:%M}Z" if not math.isnan(v) else f"{t:%Y-%m-%d %H:%M}Z"
            for t, v in zip(group["interval_start_utc"][:3], group["value"][:3], strict=True)
        )
        more = ", ..." if count > 3 else ""
        notes.append(f"{node}: {plural(count, 'row')} {reason} ({shown}{more})")
    return notes


def gap_notes(frame: pd.DataFrame, step_minutes: int) -> list[str]:
    """Per node: the gaps between consecutive rows (time missing, not row distance)."""
    notes = []
    for node, group in frame.groupby("node"):
        gaps = list(gaps_between(group["interval_start_utc"], group["interval_end_utc"]))
        if gaps:
            missing = sum(((b - a) for a, b in gaps), pd.Timedelta(0))
            longest = max(b - a for a, b in gaps)
            intervals = int(missing / pd.Timedelta(minutes=step_minutes))
            notes.append(
                f"{node}: {plural(len(gaps), 'gap')}, {plural(intervals, 'interval')} missing "
                f"(the first from {gaps[0][0]:%Y-%m-%d %H:%M}Z, the longest {duration(longest)})"
            )
    return notes


def gaps_between(starts: pd.Series, ends: pd.Series) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """``(from, to)`` of each stretch between one row's end and the next row's start."""
    if len(starts) < 2:
        return []
    following = utc_values(starts)[1:]
    previous_end = utc_values(ends)[:-1]
    mask = following > previous_end
    return [
        (pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC"))
        for a, b in zip(previous_end[mask], following[mask], strict=True)
    ]


def utc_values(times: pd.Series | pd.DatetimeIndex) -> Any:
    """UTC instants as a plain ``datetime64[ns]`` array (fast to compare and search)."""
    index = pd.DatetimeIndex(times)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("ns").to_numpy()


def plural(count: int, noun: str) -> str:
    """``1 site``, ``2 sites`` (nouns used here take a plain -s)."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def duration(delta: pd.Timedelta) -> str:
    """A span as people write it: ``12 h 15 min``, ``2 days 3 h``, ``45 min``."""
    minutes = round(delta.total_seconds() / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [plural(days, "day")] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{mins} min"] if mins or not parts else []
    return " ".join(parts)


def _number(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"


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
    removed: list[pd.DataFrame] = []
    frame = _canonical(_read_table(path), mapping, path, removed)
    if "interval_end_utc" in frame.columns:
        frame["interval_end_utc"] = _to_utc(
            frame["interval_end_utc"], mapping.timezone, path, "interval_end_utc"
        )
    # The step is read from the rows in time order: a table written newest first (or shuffled)
    # has no positive (or no usual) distance between consecutive rows as written.
    step = mapping.step_minutes or _infer_step(frame)
    frame = _clean(frame, path, mapping.price_bounds, removed)
    if "interval_end_utc" not in frame.columns:
        frame["interval_end_utc"] = frame["interval_start_utc"] + pd.Timedelta(minutes=step)
    frame = frame.reset_index(drop=True)
    check_hashprice(frame, path.name)
    found = [r for r in removed if not r.empty]
    removals = (
        pd.concat(found, ignore_index=True).sort_values("interval_start_utc", kind="stable")
        if found
        else pd.DataFrame(columns=REMOVED_COLUMNS)
    )
    return GridHistory(frame, step, [], str(path), removals.reset_index(drop=True))


def _canonical(
    raw: pd.DataFrame, mapping: Mapping, path: Path, removed: list[pd.DataFrame]
) -> pd.DataFrame:
    """Skip flagged rows, rename to canonical columns, add constants, parse times and numbers."""
    renames = {source: canonical for canonical, source in mapping.columns.items()}
    absent = [s for s in renames if s not in raw.columns]
    if absent:
        columns = [str(c) for c in raw.columns]
        source = absent[0]
        guess = closest(source, columns, cutoff=0.3)
        raise GridshiftError(
            f"mapping maps {renames[source]} to {source!r}, not a column of {path.name} "
            f"(columns: {', '.join(columns)}" + (f"; closest: {guess})" if guess else ")")
        )
    if not renames:
        renames = {c: GRIDSTATUS[c] for c in raw.columns if c in GRIDSTATUS}
    flags: list[tuple[str, pd.Series]] = []
    for column, value in mapping.skip_when.items():
        if column not in raw.columns:
            raise GridshiftError(f"{path}: skip_when column {column!r} not in the file")
        flags.append((f"{column}={value}", raw[column].astype(str) == value))
    frame = _copy_shared_sources(raw.rename(columns=renames), mapping, renames)
    constants = mapping.constants
    for name in ("node", "region"):
        value = getattr(constants, name)
        if value is not None:
            frame[name] = value
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, raw.columns))
        raise GridshiftError(
            f"{path}: missing {', '.join(missing)}; found columns {found} (write a mapping "
            "file: see docs/SCENARIOS.md and streams/examples/ercot_replay_mapping.toml)"
        )
    frame = frame[[c for c in CANONICAL if c in frame.columns]].copy()
    frame["interval_start_utc"] = _to_utc(
        frame["interval_start_utc"], mapping.timezone, path, "interval_start_utc"
    )
    frame["node"] = frame["node"].astype(str) if "node" in frame.columns else "NODE"
    frame["region"] = frame["region"].astype(str) if "region" in frame.columns else frame["node"]
    for reason, flagged in flags:
        mask = flagged.reindex(frame.index, fill_value=False).to_numpy(dtype=bool)
        if mask.any():
            removed.append(_removal(frame[mask], "skipped", f"flagged {reason} skipped", None))
            frame = frame[~mask]
    numeric = (
        "price_usd_per_mwh",
        "day_ahead_price_usd_per_mwh",
        "carbon_g_per_kwh",
        "load_mw",
        "hashprice_usd_per_th_day",
    )
    for column in numeric:
        if column in frame.columns:
            values = frame[column]
            if values.dtype == object or pd.api.types.is_string_dtype(values):
                values = values.replace("", None)
            frame[column] = pd.to_numeric(values, errors="coerce").astype(float)
    return frame


def _copy_shared_sources(
    frame: pd.DataFrame, mapping: Mapping, renames: dict[str, str]
) -> pd.DataFrame:
    """One source column may feed two canonical ones (an hourly day-ahead table is both the
    settlement price and the forecast): the rename took one, copy it to the others."""
    for canonical, source in mapping.columns.items():
        if canonical not in frame.columns and renames.get(source) in frame.columns:
            frame[canonical] = frame[renames[source]]
    return frame


def _removal(rows: pd.DataFrame, category: str, reason: str, column: str | None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "interval_start_utc": rows["interval_start_utc"].to_numpy(),
            "node": rows["node"].astype(str).to_numpy(),
            "category": category,
            "reason": reason,
            "value": rows[column].to_numpy(dtype=float) if column else math.nan,
        }
    )


def _clean(
    frame: pd.DataFrame, path: Path, bounds: tuple[float, float], removed: list[pd.DataFrame]
) -> pd.DataFrame:
    """Drop rows without a usable price, null carbon outside physical bounds, sort (noting the
    rows that were out of order), and keep the last of duplicate intervals."""
    price = frame["price_usd_per_mwh"]
    no_price = price.isna()
    removed.append(_removal(frame[no_price], "dropped", "without a price dropped", None))
    low, high = bounds
    outside = ~no_price & ~price.between(low, high)
    removed.append(
        _removal(
            frame[outside],
            "dropped",
            f"with a price outside {_number(low)}..{_number(high)} $/MWh dropped",
            "price_usd_per_mwh",
        )
    )
    sentinel = ~no_price & ~outside & price.isin(SENTINELS)
    removed.append(
        _removal(frame[sentinel], "dropped", "with a sentinel price dropped", "price_usd_per_mwh")
    )
    frame = frame[~(no_price | outside | sentinel)]
    if "carbon_g_per_kwh" in frame.columns:
        carbon = frame["carbon_g_per_kwh"]
        bad = carbon.notna() & ~carbon.between(*CARBON_BOUNDS)
        if bad.any():
            removed.append(
                _removal(
                    frame[bad],
                    "carbon",
                    f"with carbon outside {CARBON_BOUNDS[0]:.0f}..{CARBON_BOUNDS[1]:,.0f} g/kWh "
                    "(carbon value dropped)",
                    "carbon_g_per_kwh",
                )
            )
            frame = frame.assign(carbon_g_per_kwh=carbon.where(~bad))
    if frame.empty:
        raise GridshiftError(f"{path}: no rows with a usable price")
    removed.append(_removal(_out_of_order(frame), "sorted", SORTED_REASON, None))
    frame = frame.sort_values(["interval_start_utc", "node"], kind="stable")
    duplicated = frame.duplicated(["interval_start_utc", "node"], keep="last")
    removed.append(
        _removal(
            frame[duplicated],
            "duplicate",
            "repeating an interval dropped (the last row kept)",
            None,
        )
    )
    return frame[~duplicated].copy()


def _out_of_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that start before a row of their node written above them (none in a sorted
    table; all but the first in one written newest first). Per node: a table written node by
    node, each in time order, is in order."""
    nodes = frame["node"]
    latest = frame["interval_start_utc"].groupby(nodes).cummax()
    before = latest.groupby(nodes).shift()
    return frame[(frame["interval_start_utc"] < before).to_numpy(dtype=bool)]


def check_hashprice(
    frame: pd.DataFrame, source: str, column: str = "hashprice_usd_per_th_day"
) -> None:
    """Refuse an implausible hashprice: it is a unit mistake (e.g. $/PH/day) that would make
    the optimizer trade GPUs for mining, not a bad row to drop."""
    if column not in frame.columns:
        return
    values = frame[column]
    low, high = HASHPRICE_BOUNDS
    bad = values.notna() & ~values.between(low, high)
    if not bad.any():
        return
    first = frame[bad].iloc[0]
    value = float(first[column])
    cause = ""
    if low <= value / 1000 <= high:
        cause = "; it looks like $/PH/day: the column is $/TH/day (divide by 1,000)"
    elif low <= value * 1000 <= high:
        cause = "; it looks like $/GH/day or a fraction of a day: the column is $/TH/day"
    raise GridshiftError(
        f"{source}: hashprice {_number(value)} $/TH/day at "
        f"{first['interval_start_utc']:%Y-%m-%d %H:%M}Z is outside the plausible "
        f"{low}..{high} $/TH/day ({plural(int(bad.sum()), 'row')}){cause}"
    )


def _to_utc(column: pd.Series, timezone: str | None, path: Path, name: str) -> pd.Series:
    """UTC times from explicit offsets (each row its own, so a DST change is fine), or from
    naive local times and the mapping's ``timezone``. Never both: a naive row in a table of
    offsets would silently be read as UTC."""
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = column
    else:
        text = column.astype(str).str.strip()
        explicit = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        try:
            if explicit.all():
                return pd.to_datetime(text, utc=True, format="ISO8601").dt.as_unit("ns")
            if explicit.any():
                row = int((~explicit).to_numpy().argmax())
                raise GridshiftError(
                    f"{path}: {name} mixes times with and without a UTC offset "
                    f"(row {row + 1}: {text.iloc[row]!r}); give every row an offset or none"
                )
            parsed = pd.to_datetime(text, format="mixed")
        except (ValueError, TypeError) as exc:
            raise GridshiftError(f"{path}: unreadable timestamps in {name} ({exc})") from exc
    if parsed.dt.tz is None:
        if timezone is None:
            raise GridshiftError(
                f"{path}: {name} has no time zone; use UTC times (ending in Z or an offset) or "
                'set timezone = "America/Chicago" (say) at the top of the mapping file'
            )
        parsed = parsed.dt.tz_localize(timezone, ambiguous="infer", nonexistent="shift_forward")
    return parsed.dt.tz_convert("UTC").dt.as_unit("ns")


def _infer_step(frame: pd.DataFrame) -> int:
    """The usual distance between a node's consecutive rows in time order (gaps and repeats
    aside), whatever order the file has them in."""
    ordered = frame.sort_values("interval_start_utc", kind="stable")
    deltas = ordered.groupby("node")["interval_start_utc"].diff().dropna()
    deltas = deltas[deltas > pd.Timedelta(0)]
    if deltas.empty:
        return 60
    return max(1, int(deltas.mode().min().total_seconds() // 60))


def hashprice_jumps(values: pd.Series, times: pd.Series) -> list[pd.Timestamp]:
    """Times where the hashprice changes by more than :data:`HASHPRICE_JUMP` x from the last
    distinct value (day-over-day in a daily series)."""
    distinct = values.ne(values.shift()) & values.notna()
    changes = values[distinct]
    ratio = changes / changes.shift()
    jumped = (ratio > HASHPRICE_JUMP) | (ratio < 1 / HASHPRICE_JUMP)
    return [pd.Timestamp(t) for t in times[distinct][jumped.fillna(False)]]
