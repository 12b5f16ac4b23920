"""Scenario files: a fleet, the real markets it sits in, a period, and backtest settings.

A scenario (TOML, strict: an unknown key is an error naming the closest known one) names each
market's history file and how to read it (a mapping file, or the same keys inline), optionally
a region's carbon-intensity file, where the fleet-wide hashprice comes from (``[hashprice]``),
how long gaps are held (``[hold]``), and the fleet as explicit ``[[sites]]`` and/or
``[[site_groups]]`` (``count`` copies of a template, ids ``prefix-001``...).

Paths: a relative path resolves against the folder of the file that names it; ``data:REST``
resolves against the data folder (``--data-dir``/``GRIDSHIFT_DATA_DIR``), which is then
required; an absolute path is used as it is. docs/SCENARIOS.md is the reference.

This module reads and checks the files and loads the markets into series
(:class:`~streams.backtest.coverage.Series`); it decides no coverage and runs no strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

import pandas as pd
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streams.backtest.coverage import HoldRules, Series, align
from streams.backtest.history import (
    CANONICAL,
    CARBON_BOUNDS,
    REMOVED_COLUMNS,
    GridHistory,
    Mapping,
    MappingConstants,
    check_bounds,
    check_hashprice,
    check_timezone,
    ercot_mapping_path,
    hashprice_jumps,
    load_mapping,
    read_history,
    utc_values,
)
from streams.backtest.mistakes import one_line
from streams.backtest.ppa import ppa_supply_rows, read_shape
from streams.engine.fleet import Fleet, PoolConfig, SiteConfig
from streams.engine.horizon import HorizonConfig
from streams.engine.tomlfiles import closest, read_toml
from streams.errors import GridshiftError

SHIPPED_MAPPINGS = {"ercot_replay": ercot_mapping_path}
DATA_PREFIX = "data:"
#: Reading keys a market may give inline instead of naming a mapping file.
_INLINE_READING = ("columns", "step_minutes", "timezone", "skip_when")


class _Strict(BaseModel):
    # strict: a value of the wrong TOML type is refused, never converted (true is no 1 MW, "60"
    # no 60 minutes); an integer still reads as a float. Arrays are TOML lists: each tuple field
    # relaxes only its own list-to-tuple step (``strict=False``), its items stay strict.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)


def _date_time(value: Any) -> Any:
    """A scenario's start/end is a TOML date-time or a text one; a number is refused (the lax
    reading would take it as seconds since 1970)."""
    if isinstance(value, datetime):
        return value
    # A text date-time has a "-" or ":" somewhere; a quoted number ("1717200000") has neither
    # and would be read as seconds all the same.
    if isinstance(value, str) and any(mark in value for mark in "-:"):
        return value
    raise ValueError(f"give a date-time with an offset, e.g. 2023-06-01T05:00:00Z (got {value!r})")


class MarketSource(_Strict):
    """One price node's history, how to read it, and optionally its region's carbon file."""

    node: str = Field(description="Price node the sites name as price_node.")
    region: str = Field(description="Carbon region the sites name as carbon_region.")
    file: str = Field(description="History table (CSV or Parquet).")
    mapping: str | None = Field(default=None, description="Shipped mapping name or a path.")
    columns: dict[str, str] = Field(default_factory=dict)
    step_minutes: int | None = Field(default=None, ge=1, le=1440)
    timezone: str | None = None
    skip_when: dict[str, str] = Field(default_factory=dict)
    price_bounds_usd_per_mwh: tuple[float, float] | None = Field(default=None, strict=False)
    carbon_file: str | None = None
    carbon_column: str = "ci_direct_gco2eq_per_kwh"
    carbon_time_column: str = "datetime_utc"
    day_ahead_forecast: bool = Field(
        default=True,
        description="Use the table's day-ahead prices (if mapped) as the forecast past the last "
        "real-time price; false drops them.",
    )

    @field_validator("columns")
    @classmethod
    def _canonical_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        # The mapping's own rule (one check for inline keys and mapping files), at load time.
        try:
            Mapping.model_validate({"columns": columns})
        except ValidationError as exc:
            raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from exc
        return columns

    @field_validator("price_bounds_usd_per_mwh")
    @classmethod
    def _ordered_bounds(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if bounds is None else check_bounds(bounds)

    _timezone = field_validator("timezone")(check_timezone)

    @model_validator(mode="after")
    def _one_way_to_read(self) -> Self:
        inline = [k for k in _INLINE_READING if k in self.model_fields_set]
        if self.mapping is not None and inline:
            raise ValueError(
                f"give either mapping or the inline keys ({', '.join(inline)}), not both"
            )
        return self

    def read_mapping(self, paths: Paths, where: str) -> Mapping:
        """The mapping file named (shipped or a path), or the inline keys as a mapping."""
        if self.mapping is not None:
            shipped = SHIPPED_MAPPINGS.get(self.mapping)
            mapping = load_mapping(
                shipped() if shipped else paths.resolve(self.mapping, f"{where}.mapping")
            )
        else:
            try:
                mapping = Mapping(
                    timezone=self.timezone,
                    columns=dict(self.columns),
                    constants=MappingConstants(step_minutes=self.step_minutes),
                    skip_when=dict(self.skip_when),
                )
            except ValidationError as exc:  # the inline keys, told like a mapping file's
                raise GridshiftError(one_line(exc, Mapping, where)) from exc
        if self.price_bounds_usd_per_mwh is not None:
            constants = mapping.constants.model_copy(
                update={"price_bounds_usd_per_mwh": self.price_bounds_usd_per_mwh}
            )
            mapping = mapping.model_copy(update={"constants": constants})
        return mapping

    @property
    def priced_day_ahead(self) -> bool:
        """The node's price is its day-ahead price (one inline source column feeds both, as in
        an hourly day-ahead table) and the day-ahead prices are kept: each is known at the
        day-ahead publication, the day before, whatever ``price_lag_intervals`` says."""
        price = self.columns.get("price_usd_per_mwh")
        return (
            self.day_ahead_forecast
            and price is not None
            and price == self.columns.get("day_ahead_price_usd_per_mwh")
        )


class HashpriceSource(_Strict):
    """Where the fleet-wide hashprice comes from when not from the history tables' column."""

    file: str | None = Field(default=None, description="A table of hashprice by time.")
    time_column: str = "date_utc"
    column: str = "hashprice_usd_per_th_day"
    constant_usd_per_th_day: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.file is None) == (self.constant_usd_per_th_day is None):
            raise ValueError("give exactly one of file or constant_usd_per_th_day")
        return self


class CoincidentPeakSource(_Strict):
    """ERCOT's 4CP transmission charge: forecast signals to gridshift, realised peaks to the
    oracle, the realised charge scored for every strategy (docs/COINCIDENT_PEAK.md)."""

    tariff_usd_per_kw_year: float = Field(gt=0.0, le=1000.0, description="4CP rate, $/kW-year.")
    region: str = Field(default="ERCOT", description="Sites of this carbon_region pay it.")
    min_probability: float = Field(default=1e-3, gt=0.0, lt=1.0)


class ReserveSource(_Strict):
    """Day-ahead ancillary-service clearing prices (ERCOT MCPC tables, docs/RESERVES.md)."""

    files: tuple[str, ...] = Field(
        min_length=1, strict=False, description="MCPC tables (hourly, UTC column)."
    )
    region: str = Field(default="ERCOT", description="The sites' carbon_region they price.")


class EmergencySource(_Strict):
    """Grid emergencies and conservation requests replayed as grid signals
    (:mod:`streams.backtest.emergencies`)."""

    file: str = Field(description="The grid-event table (date_local, type, window_local_cpt...).")
    region: str = Field(default="ERCOT", description="The sites' carbon_region they apply to.")


class PpaProfileSource(_Strict):
    """A shaped PPA (:mod:`streams.backtest.ppa`): each named site's ``ppa_mw`` follows the
    hourly wind and/or solar shape of a generation table, in the scoring and (``forecast``) in
    what the optimizer plans against."""

    file: str = Field(description="Generation by fuel: datetime_utc, wind_mw, solar_mw.")
    profile: Literal["wind", "solar", "wind+solar"]
    basis: Literal["nameplate", "average"] = Field(
        default="nameplate",
        description="ppa_mw is the nameplate (shape = generation / max) or the average MW "
        "(shape = generation / mean).",
    )
    sites: tuple[str, ...] = Field(
        default=(), strict=False, description="Sites shaped; empty: every site."
    )
    forecast: bool = Field(
        default=True,
        description="Publish the shape as grid.ppa.v1 forecast events, each UTC day's known "
        "when its day-ahead prices are, so gridshift plans against it; false: scoring only, "
        "gridshift plans against the flat ppa_mw.",
    )


class SiteGroup(_Strict):
    """``count`` sites from one template (ids ``{prefix}-001`` ...)."""

    prefix: str
    count: int = Field(ge=1, le=10_000)
    template: dict[str, Any]

    def expand(self) -> list[dict[str, Any]]:
        return [
            {**self.template, "site_id": f"{self.prefix}-{i:03d}"} for i in range(1, self.count + 1)
        ]


class Scenario(_Strict):
    """A backtest scenario as written in its file."""

    name: str
    title: str
    description: str
    # A TOML date-time or its text (and a sweep's JSON copy): the datetime step stays lax.
    start: AwareDatetime = Field(strict=False)
    end: AwareDatetime = Field(strict=False)
    step_minutes: int = Field(default=15, ge=1, le=60)
    price_lag_intervals: int = Field(default=0, ge=0, le=96)
    carbon_neutral_target: float | None = Field(default=None, ge=0.0, le=1.0)
    fleet_carbon_budget_t_per_day: float | None = Field(default=None, ge=0.0)
    horizon: HorizonConfig = HorizonConfig()
    hold: HoldRules = HoldRules()
    hashprice: HashpriceSource | None = None
    coincident_peak: CoincidentPeakSource | None = None
    reserves: ReserveSource | None = None
    emergencies: EmergencySource | None = None
    ppa: PpaProfileSource | None = None
    markets: tuple[MarketSource, ...] = Field(min_length=1, strict=False)
    sites: tuple[SiteConfig, ...] = Field(default=(), strict=False)
    site_groups: tuple[SiteGroup, ...] = Field(default=(), strict=False)
    pools: tuple[PoolConfig, ...] = Field(default=(), strict=False)

    _dates = field_validator("start", "end", mode="before")(_date_time)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        nodes = [m.node for m in self.markets]
        repeated = sorted({n for n in nodes if nodes.count(n) > 1})
        if repeated:
            raise ValueError(f"markets: node {', '.join(repeated)} appears more than once")
        if not self.sites and not self.site_groups:
            raise ValueError("no sites: add [[sites]] or [[site_groups]]")
        if self.ppa is not None and self.ppa.sites:
            ids = {s.site_id for s in self.sites} | {
                str(s["site_id"]) for g in self.site_groups for s in g.expand()
            }
            unknown = sorted(set(self.ppa.sites) - ids)
            if unknown:
                raise ValueError(f"ppa.sites: no site {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _known_regions(self) -> Self:
        """A region the 4CP charge, reserve prices or emergencies apply to must be a market's:
        the engine matches regions exactly, so a typo ("ercot", "PJM") would silently apply
        them to no site (a $0 charge, $0 reserve, 0 MW in every event)."""
        known = sorted({m.region for m in self.markets})
        for table, source in (
            ("coincident_peak", self.coincident_peak),
            ("reserves", self.reserves),
            ("emergencies", self.emergencies),
        ):
            if source is not None and source.region not in known:
                guess = closest(source.region, known)
                hint = f"; did you mean {guess}?" if guess else ""
                raise ValueError(
                    f"[{table}] region {source.region!r} is not a region of any market in the "
                    f"scenario (known: {', '.join(known)}){hint}"
                )
        return self

    def heading(self, start: datetime, end: datetime) -> str:
        """The title for a run over [start, end): the file's title describes the file's period,
        so a run over another window says which one it ran."""
        if (start, end) == (self.start, self.end):
            return self.title
        run, own = _span(start, end), _span(self.start, self.end)
        return f"{self.title} (run on {run}, not the file's {own})"

    def price_timing(self) -> str:
        """When the prices the strategies decide on become known, worded for the markets'
        kind: day-ahead priced nodes are known the day before, whatever the lag says."""
        lagged = (
            f"known {self.price_lag_intervals} interval"
            f"{'' if self.price_lag_intervals == 1 else 's'} after they start (0 = ex-ante "
            "real-time prices)"
        )
        day_ahead = [m.node for m in self.markets if m.priced_day_ahead]
        if not day_ahead:
            return f"prices {lagged}"
        known = "known at the day-ahead market's publication, the day before delivery"
        if len(day_ahead) == len(self.markets):
            return f"prices are day-ahead prices, {known}"
        return f"prices {lagged}; day-ahead priced at {', '.join(day_ahead)}: {known}"

    def fleet(self) -> Fleet:
        """The fleet (validated by :func:`load_scenario`, so this does not fail for a loaded
        scenario)."""
        expanded = [
            SiteConfig.model_validate(s) for group in self.site_groups for s in group.expand()
        ]
        return Fleet(sites=(*self.sites, *expanded), pools=self.pools)


def _span(start: datetime, end: datetime) -> str:
    """``2023-06-01 05:00Z to 2023-10-01 05:00Z`` (UTC, as the report's period line)."""
    first, last = (t.astimezone(UTC) for t in (start, end))
    return f"{first:%Y-%m-%d %H:%M}Z to {last:%Y-%m-%d %H:%M}Z"


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (one clear line on any mistake)."""
    raw = read_toml(path, "scenario")
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise GridshiftError(f"scenario file {path}: {one_line(exc, Scenario)}") from exc
    for i, group in enumerate(scenario.site_groups):
        try:
            SiteConfig.model_validate(group.expand()[0])
        except ValidationError as exc:
            where = f"site_groups[{i}].template"
            raise GridshiftError(
                f"scenario file {path}: {one_line(exc, SiteConfig, where)}"
            ) from exc
    try:
        fleet = scenario.fleet()
    except ValidationError as exc:
        raise GridshiftError(f"scenario file {path}: {one_line(exc, Fleet)}") from exc
    _check_markets(scenario, fleet, path)
    return scenario


def _check_markets(scenario: Scenario, fleet: Fleet, path: Path) -> None:
    """Every site's node and region must be a market's: else the site would never be decided
    (or never see carbon), and the run would fail later with the wrong advice."""
    nodes = [m.node for m in scenario.markets]
    regions = sorted({m.region for m in scenario.markets})
    for site in fleet.sites:
        for key, value, known, what in (
            ("price_node", site.price_node, nodes, "node"),
            ("carbon_region", site.carbon_region, regions, "region"),
        ):
            if value not in known:
                guess = closest(value, known)
                hint = f"; did you mean {guess}?" if guess else ""
                raise GridshiftError(
                    f"scenario file {path}: site {site.site_id}: {key} {value!r} is no market's "
                    f"{what} (markets: {', '.join(known)}){hint}"
                )


def scenario_paths() -> dict[str, Path]:
    """The scenarios shipped as package data of ``scenarios`` (name -> file), found the same way
    from a checkout, an installed wheel or the Docker image."""
    folder = resources.files("scenarios")
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".toml")
    }


def resolve_scenario(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = scenario_paths()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise GridshiftError(
        f"no scenario {name_or_path!r}: give a file or one of {', '.join(shipped) or '(none)'}"
    )


@dataclass(frozen=True)
class Paths:
    """The one path rule of scenario files (see the module docstring)."""

    base: Path  # the folder of the file naming the paths
    data_dir: Path | None  # --data-dir / GRIDSHIFT_DATA_DIR, if given

    def resolve(self, raw: str, key: str) -> Path:
        """The file ``raw`` (written at ``key``) names; it must exist."""
        if raw.startswith(DATA_PREFIX):
            if self.data_dir is None:
                raise GridshiftError(
                    f"{key} = {raw!r} is in the data folder, but none was given: pass "
                    "--data-dir DIR or set GRIDSHIFT_DATA_DIR"
                )
            if not self.data_dir.is_dir():
                raise GridshiftError(
                    f"data folder {self.data_dir} (--data-dir/GRIDSHIFT_DATA_DIR) does not exist"
                )
            path = self.data_dir / raw.removeprefix(DATA_PREFIX)
            rule = f"the data folder {self.data_dir}"
        else:
            written = Path(raw).expanduser()
            path = written if written.is_absolute() else self.base / written
            rule = "as written" if written.is_absolute() else f"the file's folder {self.base}"
        if not path.is_file():
            hint = ""
            if self.data_dir is not None and (self.data_dir / raw).is_file():
                hint = f"; it is in the data folder: write {DATA_PREFIX + raw!r}"
            raise GridshiftError(f"{key}: no file {path} ({raw!r} resolved against {rule}{hint})")
        return path


@dataclass
class MarketData:
    """Every market's rows (node, region, price, carbon, and the fleet-wide hashprice) and the
    series a backtest reads, with every removal made while reading."""

    history: GridHistory
    prices: dict[str, Series]  # by node
    carbon: dict[str, Series]  # by region; empty series where a region has no carbon data
    hashprice: Series
    jumps: list[pd.Timestamp]  # hashprice changes over 5x (flagged, kept)


def load_markets(scenario: Scenario, data_dir: Path | None, scenario_dir: Path) -> MarketData:
    """Read every market's history and side files for the scenario."""
    paths = Paths(scenario_dir.absolute(), data_dir)
    frames: list[pd.DataFrame] = []
    removed: list[pd.DataFrame] = []
    steps: list[int] = []
    carbon_sources: dict[str, list[str]] = {}
    carbon_rows: dict[str, list[pd.DataFrame]] = {}  # region -> its carbon intervals
    hashprice_tables: list[tuple[str, pd.DataFrame]] = []
    for i, market in enumerate(scenario.markets):
        where = f"markets[{i}]"
        path = paths.resolve(market.file, f"{where}.file")
        history = read_history(path, market.read_mapping(paths, where))
        frame = history.frame.assign(node=market.node, region=market.region)
        if not market.day_ahead_forecast:
            frame = frame.drop(columns="day_ahead_price_usd_per_mwh", errors="ignore")
        gone = history.removed.assign(node=market.node)
        if market.carbon_file is not None:
            carbon_path = paths.resolve(market.carbon_file, f"{where}.carbon_file")
            carbon, dropped = _carbon_file(carbon_path, market)
            frame = _join_carbon(frame.drop(columns="carbon_g_per_kwh", errors="ignore"), carbon)
            gone = pd.concat([gone, dropped], ignore_index=True)
            carbon_sources.setdefault(market.region, []).append(carbon_path.name)
            # The file's own rows: a gap in the prices is no gap in the carbon data.
            step = carbon["at"].diff().min() if len(carbon) > 1 else pd.Timedelta(hours=1)
            carbon_rows.setdefault(market.region, []).append(
                pd.DataFrame(
                    {
                        "interval_start_utc": carbon["at"],
                        "interval_end_utc": carbon["at"] + step,
                        "carbon_g_per_kwh": carbon["value"],
                    }
                )
            )
        elif "carbon_g_per_kwh" in frame.columns and frame["carbon_g_per_kwh"].notna().any():
            carbon_sources.setdefault(market.region, []).append(f"column of {path.name}")
            carbon_rows.setdefault(market.region, []).append(frame)
        if "hashprice_usd_per_th_day" in frame.columns:
            if scenario.hashprice is None:
                hashprice_tables.append((path.name, frame))
            frame = frame.drop(columns="hashprice_usd_per_th_day")
        frames.append(frame)
        removed.append(gone)
        steps.append(history.step_minutes)
    combined = pd.concat(frames, ignore_index=True).sort_values(
        ["interval_start_utc", "node"], kind="stable"
    )
    hashprice = _hashprice(scenario, paths, hashprice_tables)
    # The one fleet-wide hashprice on every row (held through short gaps), so each day's
    # hashprice event carries the same value whichever market's row comes first.
    combined["hashprice_usd_per_th_day"] = align(
        hashprice,
        utc_values(combined["interval_start_utc"]),
        pd.Timedelta(minutes=min(steps)),
        scenario.hold.limit("hashprice"),
    ).values
    if "carbon_g_per_kwh" not in combined.columns:
        combined["carbon_g_per_kwh"] = float("nan")  # no market has carbon: said, never 0
    columns = [c for c in CANONICAL if c in combined.columns]
    combined = combined[columns].reset_index(drop=True)
    prices = {
        m.node: Series.of(
            "price",
            m.node,
            Path(m.file).name,
            combined[combined["node"] == m.node],
            "price_usd_per_mwh",
        )
        for m in scenario.markets
    }
    carbon = {}
    empty = combined.iloc[:0]
    for region in sorted({m.region for m in scenario.markets}):
        rows = pd.concat(carbon_rows.get(region, [empty]), ignore_index=True)
        source = ", ".join(carbon_sources.get(region, [])) or "none"
        carbon[region] = Series.of("carbon", region, source, rows, "carbon_g_per_kwh")
    found = [r for r in removed if not r.empty]
    history = GridHistory(
        combined,
        min(steps),
        [],
        scenario.name,
        pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=REMOVED_COLUMNS),
    )
    history.ppa = _ppa_supply(scenario, paths, combined)
    return MarketData(history, prices, carbon, hashprice, _jumps(hashprice))


def _ppa_supply(scenario: Scenario, paths: Paths, rows: pd.DataFrame) -> pd.DataFrame | None:
    """The shaped PPA's hourly MW per shaped site over the hours the history covers (None
    without ``[ppa]`` or when it is for scoring only)."""
    ppa = scenario.ppa
    if ppa is None or not ppa.forecast:
        return None
    shape = read_shape(paths.resolve(ppa.file, "ppa.file"), ppa.profile, ppa.basis)
    first = rows["interval_start_utc"].min().floor("h")
    last = rows["interval_end_utc"].max()
    hours = [t.to_pydatetime() for t in pd.date_range(first, last, freq="h", inclusive="left")]
    return ppa_supply_rows(scenario.fleet(), hours, shape, ppa.sites)


def _carbon_file(path: Path, market: MarketSource) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A region's carbon series from its own file (times without an offset are UTC), and the
    values dropped as outside physical bounds."""
    table = _side_table(path, market.carbon_time_column, market.carbon_column, "carbon_file")
    bad = table["value"].notna() & ~table["value"].between(*CARBON_BOUNDS)
    dropped = pd.DataFrame(
        {
            "interval_start_utc": table.loc[bad, "at"].to_numpy(),
            "node": market.node,
            "category": "carbon",
            "reason": f"with carbon outside {CARBON_BOUNDS[0]:.0f}..{CARBON_BOUNDS[1]:,.0f} g/kWh "
            "(carbon value dropped)",
            "value": table.loc[bad, "value"].to_numpy(dtype=float),
        }
    )
    return table[~bad].dropna(), dropped


def _join_carbon(frame: pd.DataFrame, carbon: pd.DataFrame) -> pd.DataFrame:
    """The carbon value of the carbon row covering each price row's start (only observed
    values: what is held through a gap is decided by the hold rules, not here)."""
    step = carbon["at"].diff().min() if len(carbon) > 1 else pd.Timedelta(hours=1)
    joined = pd.merge_asof(
        frame.sort_values("interval_start_utc"),
        carbon.sort_values("at"),
        left_on="interval_start_utc",
        right_on="at",
        direction="backward",
        tolerance=step - pd.Timedelta(microseconds=1),
    )
    return joined.drop(columns=["at"]).rename(columns={"value": "carbon_g_per_kwh"})


def _side_table(path: Path, time_column: str, value_column: str, key: str) -> pd.DataFrame:
    """``at`` (UTC) and ``value`` columns of a side file (carbon or hashprice by time)."""
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
    except (ValueError, OSError) as exc:
        raise GridshiftError(f"cannot read {path}: {exc}") from exc
    for column in (time_column, value_column):
        if column not in header:
            guess = closest(column, header, cutoff=0.3)
            hint = f"; closest: {guess}" if guess else ""
            raise GridshiftError(
                f"{key}: {path.name} has no column {column!r} (columns: {', '.join(header)}{hint})"
            )
    table = pd.read_csv(path, usecols=[time_column, value_column])
    try:
        at = pd.to_datetime(table[time_column], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise GridshiftError(f"{path}: unreadable times in {time_column} ({exc})") from exc
    value = pd.to_numeric(table[value_column], errors="coerce").astype(float)
    return pd.DataFrame({"at": at.dt.as_unit("ns"), "value": value}).sort_values("at")


def _hashprice(scenario: Scenario, paths: Paths, tables: list[tuple[str, pd.DataFrame]]) -> Series:
    """The fleet-wide hashprice: a constant or a file the scenario names, else the history
    tables' column (tables that have one must agree). Never from anywhere else."""
    source = scenario.hashprice
    if source is not None and source.constant_usd_per_th_day is not None:
        value = source.constant_usd_per_th_day
        check_hashprice(
            pd.DataFrame(
                {
                    "interval_start_utc": [pd.Timestamp(scenario.start)],
                    "hashprice_usd_per_th_day": [value],
                }
            ),
            "[hashprice] constant_usd_per_th_day",
        )
        return Series.constant_value("hashprice", "", f"constant {value} $/TH/day (assumed)", value)
    if source is not None and source.file is not None:
        path = paths.resolve(source.file, "hashprice.file")
        table = _side_table(path, source.time_column, source.column, "hashprice.file").dropna()
        if table.empty:
            raise GridshiftError(f"hashprice.file: no hashprice values in {path.name}")
        step = table["at"].diff().min() if len(table) > 1 else pd.Timedelta(days=1)
        frame = pd.DataFrame(
            {
                "interval_start_utc": table["at"],
                "interval_end_utc": table["at"] + step,
                "hashprice_usd_per_th_day": table["value"],
            }
        )
        check_hashprice(frame, path.name)
        return Series.of("hashprice", "", path.name, frame, "hashprice_usd_per_th_day")
    with_values = [(name, f) for name, f in tables if f["hashprice_usd_per_th_day"].notna().any()]
    if not with_values:
        files = ", ".join(Path(m.file).name for m in scenario.markets)
        raise GridshiftError(
            f"no hashprice: {files} has no hashprice_usd_per_th_day column; add [hashprice] with "
            "file = ... (and column = ...) or constant_usd_per_th_day = ... to the scenario"
        )
    rows = pd.concat(
        [
            f[["interval_start_utc", "interval_end_utc", "hashprice_usd_per_th_day"]]
            for _, f in with_values
        ]
    ).dropna()
    spread = rows.groupby("interval_start_utc")["hashprice_usd_per_th_day"].agg(["min", "max"])
    differ = spread[(spread["max"] - spread["min"]) > 1e-9 * spread["max"].abs().clip(lower=1)]
    if not differ.empty:
        raise GridshiftError(
            f"the hashprice columns of {', '.join(n for n, _ in with_values)} differ (first at "
            f"{differ.index[0]:%Y-%m-%d %H:%M}Z): name one source in [hashprice]"
        )
    names = ", ".join(n for n, _ in with_values)
    return Series.of("hashprice", "", f"column of {names}", rows, "hashprice_usd_per_th_day")


def _jumps(series: Series) -> list[pd.Timestamp]:
    if series.constant or series.empty:
        return []
    return hashprice_jumps(
        pd.Series(series.values), pd.Series(pd.DatetimeIndex(series.starts).tz_localize("UTC"))
    )
