"""Scenario files: a fleet, the real markets it sits in, a period, and backtest settings.

A scenario (TOML) names each market's history file in the data folder and how to read it, adds
a region's carbon intensity and the BTC hashprice from their own files when the price table
lacks them, and describes the fleet as explicit ``[[sites]]`` and/or ``[[site_groups]]``
(``count`` copies of a template, ids ``prefix-001``...). Everything is validated on load.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Self

import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.backtest.history import (
    CANONICAL,
    GridHistory,
    Mapping,
    ercot_mapping_path,
    load_mapping,
    read_history,
)
from streams.engine.fleet import Fleet, PoolConfig, SiteConfig
from streams.engine.horizon import HorizonConfig
from streams.engine.tomlfiles import first_error, read_toml
from streams.errors import GridshiftError

SHIPPED_MAPPINGS = {"ercot_replay": ercot_mapping_path}
HASHPRICE_FILE = Path("bitcoin") / "btc_daily_price_difficulty_hashrate_2020-04_2024-12.csv"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class MarketSource(_Strict):
    """One price node's history, and optionally its region's carbon intensity file."""

    node: str
    region: str
    file: Path
    mapping: str | None = Field(default=None, description="Shipped mapping name or a path.")
    columns: dict[str, str] = Field(default_factory=dict)
    step_minutes: int | None = None
    carbon_file: Path | None = None
    carbon_column: str = "ci_direct_gco2eq_per_kwh"
    carbon_time_column: str = "datetime_utc"

    def read_mapping(self, base: Path) -> Mapping:
        if self.mapping is not None:
            shipped = SHIPPED_MAPPINGS.get(self.mapping)
            return load_mapping(shipped() if shipped else base / self.mapping)
        constants: dict[str, Any] = {"node": self.node, "region": self.region}
        if self.step_minutes is not None:
            constants["step_minutes"] = self.step_minutes
        return Mapping(columns=dict(self.columns), constants=constants)


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
    start: AwareDatetime
    end: AwareDatetime
    step_minutes: int = Field(default=15, ge=1, le=60)
    price_lag_intervals: int = Field(default=0, ge=0, le=96)
    carbon_neutral_target: float | None = Field(default=None, ge=0.0, le=1.0)
    fleet_carbon_budget_t_per_day: float | None = Field(default=None, ge=0.0)
    horizon: HorizonConfig = HorizonConfig()
    markets: tuple[MarketSource, ...] = Field(min_length=1)
    sites: tuple[dict[str, Any], ...] = ()
    site_groups: tuple[SiteGroup, ...] = ()
    pools: tuple[PoolConfig, ...] = ()

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def fleet(self) -> Fleet:
        raw = [*self.sites, *(s for group in self.site_groups for s in group.expand())]
        try:
            return Fleet(sites=tuple(SiteConfig.model_validate(s) for s in raw), pools=self.pools)
        except ValidationError as exc:
            raise GridshiftError(f"scenario {self.name}: {first_error(exc)}") from exc


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (one clear line on any mistake)."""
    raw = read_toml(path, "scenario")
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise GridshiftError(f"scenario file {path}: {first_error(exc)}") from exc


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


def load_markets(scenario: Scenario, data_dir: Path, scenario_dir: Path) -> GridHistory:
    """Every market's history for the scenario period, with carbon and hashprice joined."""
    frames: list[pd.DataFrame] = []
    notes: list[str] = []
    steps: list[int] = []
    start, end = pd.Timestamp(scenario.start), pd.Timestamp(scenario.end)
    for market in scenario.markets:
        history = read_history(data_dir / market.file, market.read_mapping(scenario_dir))
        frame = history.frame
        frame = frame[
            (frame["interval_start_utc"] >= start - pd.Timedelta(days=1))
            & (frame["interval_start_utc"] < end)
        ].copy()
        frame["node"], frame["region"] = market.node, market.region
        if market.carbon_file is not None:
            frame = _join_asof(
                frame,
                _series(
                    data_dir / market.carbon_file, market.carbon_time_column, market.carbon_column
                ),
                "carbon_g_per_kwh",
            )
        if "hashprice_usd_per_th_day" not in frame.columns:
            frame = _join_asof(
                frame,
                _series(data_dir / HASHPRICE_FILE, "date_utc", "hashprice_subsidy_usd_per_th_day"),
                "hashprice_usd_per_th_day",
            )
        frames.append(frame)
        notes.extend(f"{market.node}: {note}" for note in history.notes)
        steps.append(history.step_minutes)
    combined = pd.concat(frames, ignore_index=True).sort_values(
        ["interval_start_utc", "node"], kind="stable"
    )
    columns = [c for c in CANONICAL if c in combined.columns]
    return GridHistory(combined[columns].reset_index(drop=True), min(steps), notes, scenario.name)


def _series(path: Path, time_column: str, value_column: str) -> pd.DataFrame:
    if not path.is_file():
        raise GridshiftError(f"data file not found: {path} (check --data-dir/GRIDSHIFT_DATA_DIR)")
    table = pd.read_csv(path, usecols=[time_column, value_column])
    table["at"] = pd.to_datetime(table[time_column], utc=True).dt.as_unit("ns")
    return table[["at", value_column]].rename(columns={value_column: "value"}).dropna()


def _join_asof(frame: pd.DataFrame, series: pd.DataFrame, column: str) -> pd.DataFrame:
    """Attach the value in force at each interval start (hold last: past data only)."""
    frame = frame.assign(
        interval_start_utc=frame["interval_start_utc"].dt.tz_convert("UTC").dt.as_unit("ns")
    )
    joined = pd.merge_asof(
        frame.sort_values("interval_start_utc"),
        series.sort_values("at"),
        left_on="interval_start_utc",
        right_on="at",
        direction="backward",
    )
    return joined.drop(columns=["at"]).rename(columns={"value": column})
