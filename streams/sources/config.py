"""Configuration of the feed sources: runtime settings and secrets from the environment
(``GRIDSHIFT_SOURCE_*``, :class:`SourceSettings`) and what to poll from a TOML file
(:class:`SourcesFile`: ``[iso.<ISO>]``, ``[carbon]``, ``[hashprice]``, ``[reserve]``,
``[coincident_peak]``).

Both are strict: an unknown TOML key or ``GRIDSHIFT_SOURCE_*`` variable is an error that names
the closest valid one, so a typo never silently falls back to a default. Secrets are
``SecretStr`` and are only unwrapped by the source that hands them to its client library.
Kafka settings (bootstrap, security, topic prefix, partitions) stay in the shared
:class:`streams.settings.Settings`; this module does not repeat them. Reading the file, finding
an unknown key and the closest valid one are ``streams.engine.tomlfiles``'s (shared with every
strict file); the wording of the lines is this module's.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.base import Identifier
from schemas.grid import ReserveProduct
from streams.engine.coincident_peak import TARIFF_2025_USD_PER_KW_YEAR
from streams.engine.tomlfiles import closest, first_unknown_key, read_toml
from streams.errors import GridshiftError

ENV_PREFIX = "GRIDSHIFT_SOURCE_"
IsoName = Literal["ERCOT", "CAISO", "PJM", "NYISO"]
Market = Literal["real_time", "day_ahead"]
ISO_NAMES: tuple[str, ...] = get_args(IsoName)


class SourceSettings(BaseSettings):
    """Runtime settings and credentials of a source process (environment, then CLI flags)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    config: Path | None = Field(
        default=None, description="TOML file of what to poll (nodes, regions, URLs, timings)."
    )
    state_dir: Path = Field(
        default=Path("gridshift-sources"),
        description="Folder of the checkpoint files (one per source) and the load JSONL files.",
    )
    health_enabled: bool = Field(default=True, description="Serve /health and /metrics.")
    health_host: str = Field(default="127.0.0.1", description="Bind address of /health.")
    health_port: int = Field(
        default=8790, ge=0, le=65_535, description="Port of /health and /metrics (0 = any)."
    )
    log_every_poll: bool = Field(
        default=True, description="One structured health line per poll (counts, next delay)."
    )
    pjm_api_key: SecretStr | None = Field(
        default=None, description="PJM Data Miner API key (the PJM source needs it)."
    )
    electricitymaps_token: SecretStr | None = Field(
        default=None, description="Electricity Maps API token (carbon from Electricity Maps)."
    )
    watttime_username: str | None = Field(default=None, description="WattTime user name.")
    watttime_password: SecretStr | None = Field(default=None, description="WattTime password.")


def env_variable(field: str) -> str:
    """The environment variable of a :class:`SourceSettings` field."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_source_settings(
    environ: Mapping[str, str] | None = None, **overrides: object
) -> SourceSettings:
    """:class:`SourceSettings` from the environment plus non-``None`` ``overrides`` (CLI
    flags); an unknown ``GRIDSHIFT_SOURCE_*`` variable or a bad value is one clear line."""
    env = os.environ if environ is None else environ
    known = {env_variable(name) for name in SourceSettings.model_fields}
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            raise GridshiftError(f"unknown environment variable {name}{_suggest(name, known)}")
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        if environ is None:
            return SourceSettings(**clean)  # type: ignore[arg-type]
        # An explicit environment (tests): read it instead of os.environ.
        values = {
            field: env[env_variable(field)]
            for field in SourceSettings.model_fields
            if env_variable(field) in env
        }
        return SourceSettings.model_validate({**values, **clean})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise GridshiftError(
            f"invalid setting {where} (env {env_variable(where)}): {first['msg']}"
        ) from exc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PollConfig(_Strict):
    """Timing and de-duplication of one source (every source section has these keys)."""

    poll_interval_s: float = Field(default=60.0, gt=0.0, le=86_400.0)
    timeout_s: float = Field(default=60.0, gt=0.0, le=3_600.0)
    backoff_initial_s: float = Field(default=5.0, gt=0.0, le=3_600.0)
    backoff_max_s: float = Field(default=300.0, gt=0.0, le=86_400.0)
    lookback_hours: float = Field(default=6.0, gt=0.0, le=168.0)
    dedup_window_hours: float = Field(default=48.0, gt=0.0, le=24.0 * 31)
    corrections: Literal["ignore", "publish"] = "ignore"
    unhealthy_after_failures: int = Field(default=3, ge=1, le=1_000)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")
        # Rows older than the de-duplication window count as late and are dropped, so a
        # lookback reaching past it would ask the API for rows that can never be published.
        if self.lookback_hours >= self.dedup_window_hours:
            raise ValueError("lookback_hours must be shorter than dedup_window_hours")
        return self


def _both_markets() -> list[Market]:
    return ["real_time", "day_ahead"]


class IsoConfig(PollConfig):
    """``[iso.<ISO>]``: the price nodes of one ISO, its markets, and whether to keep load."""

    #: ISO location name -> gridshift price node (``grid.price.v1`` key). A list means the
    #: same names on both sides; a table renames (PJM's "WESTERN HUB" has a space).
    nodes: dict[str, Identifier] = Field(default_factory=dict)
    markets: list[Market] = Field(default_factory=_both_markets, min_length=1)
    load: bool = True
    load_sink: Path | None = None
    day_ahead_hours: float = Field(default=36.0, gt=0.0, le=168.0)
    real_time_method: str | None = Field(default=None, pattern=r"^get_[a-z0-9_]+$")
    day_ahead_method: str | None = Field(default=None, pattern=r"^get_[a-z0-9_]+$")

    @field_validator("nodes", mode="before")
    @classmethod
    def _list_of_nodes(cls, value: Any) -> Any:
        # A list names each node as the ISO does; the table form is the general one.
        return {str(node): node for node in value} if isinstance(value, list) else value

    def node_map(self) -> dict[str, str]:
        """ISO location name -> price node."""
        return dict(self.nodes)


class CarbonRegion(_Strict):
    """How one gridshift region (``grid.carbon.v1`` key) is called by each provider."""

    electricitymaps: str | None = Field(default=None, min_length=1, max_length=64)
    watttime: str | None = Field(default=None, min_length=1, max_length=64)


class CarbonConfig(PollConfig):
    """``[carbon]``: which provider gives the average and the marginal intensity, and where."""

    poll_interval_s: float = Field(default=300.0, gt=0.0, le=86_400.0)
    average: Literal["electricitymaps", "watttime"] = "electricitymaps"
    marginal: Literal["watttime", "none"] = "none"
    forecast: bool = True
    forecast_hours: int = Field(default=24, ge=1, le=72)
    emission_factor: Literal["lifecycle", "direct"] = "lifecycle"
    regions: dict[Identifier, CarbonRegion] = Field(default_factory=dict)
    electricitymaps_url: str = Field(
        default="https://api.electricitymaps.com/v3", pattern=r"^https?://"
    )
    watttime_url: str = Field(default="https://api.watttime.org", pattern=r"^https?://")

    def providers(self) -> set[str]:
        """The providers this configuration calls."""
        return {self.average} | ({self.marginal} if self.marginal != "none" else set())

    @model_validator(mode="after")
    def _regions_named(self) -> Self:
        for region, names in self.regions.items():
            for provider in sorted(self.providers()):
                if getattr(names, provider) is None:
                    raise ValueError(
                        f"region {region} has no {provider} name "
                        f"(set [carbon.regions.{region}] {provider} = ...)"
                    )
        return self


class HashpriceConfig(PollConfig):
    """``[hashprice]``: where the on-chain facts and the BTC price come from."""

    poll_interval_s: float = Field(default=600.0, gt=0.0, le=86_400.0)
    api_url: str = Field(default="https://mempool.space", pattern=r"^https?://")
    price_url: str | None = Field(default=None, pattern=r"^https?://")
    interval_minutes: int = Field(default=60, ge=1, le=1_440)
    fee_blocks: int = Field(default=144, ge=1, le=2_016)

    @model_validator(mode="after")
    def _whole_day(self) -> Self:
        if 1_440 % self.interval_minutes:
            raise ValueError("interval_minutes must divide a day (1440 minutes)")
        return self

    def prices_url(self) -> str:
        """The BTC price endpoint (mempool.space's own unless ``price_url`` is set)."""
        return self.price_url or f"{self.api_url.rstrip('/')}/api/v1/prices"


def _every_product() -> list[ReserveProduct]:
    return ["reg_up", "reg_down", "rrs", "ecrs", "non_spin"]


class ReserveConfig(PollConfig):
    """``[reserve]``: ERCOT's day-ahead ancillary-service clearing prices (MCPC) of operating
    day D and, once ERCOT has run the day-ahead market for it, D+1."""

    poll_interval_s: float = Field(default=600.0, gt=0.0, le=86_400.0)
    #: The ``grid.reserve.v1`` region (the sites' ``carbon_region``).
    region: Identifier = "ERCOT"
    products: list[ReserveProduct] = Field(default_factory=_every_product, min_length=1)
    #: Central hour of D from which D+1's prices are asked for (ERCOT posts the DAM ~13:30).
    ahead_from_hour: float = Field(default=13.0, ge=0.0, lt=24.0)
    #: Central hour of D after which D+1's prices still missing fail the poll (health alarms).
    ahead_late_hour: float = Field(default=17.0, gt=0.0, le=24.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.ahead_from_hour >= self.ahead_late_hour:
            raise ValueError("ahead_from_hour must be before ahead_late_hour")
        if len(set(self.products)) != len(self.products):
            raise ValueError("products must be listed once each")
        return self


class CoincidentPeakConfig(PollConfig):
    """``[coincident_peak]``: ERCOT 4CP probabilities computed live, as ``coincident_peak``
    signals on ``grid.signal.v1``."""

    poll_interval_s: float = Field(default=900.0, gt=0.0, le=86_400.0)
    region: Identifier = "ERCOT"
    #: $/kW-year (default: ERCOT's 2025 rate, the backtest's).
    tariff_usd_per_kw_year: float = Field(default=TARIFF_2025_USD_PER_KW_YEAR, ge=0.0, le=10_000.0)
    #: Hours below this probability get no signal (the backtest's 0.1 %: ~$17/MWh).
    min_probability: float = Field(default=1e-3, gt=0.0, le=1.0)
    #: Where the daily actual peaks are kept (default: <state dir>/coincident-peak.peaks.json):
    #: gridstatus serves actual load for 14 days only, a month-to-date peak needs up to 30.
    peaks_file: Path | None = None


class SourcesFile(_Strict):
    """The whole TOML file: any of ``[iso.<ISO>]``, ``[carbon]``, ``[hashprice]``,
    ``[reserve]``, ``[coincident_peak]``."""

    iso: dict[IsoName, IsoConfig] = Field(default_factory=dict)
    carbon: CarbonConfig = Field(default_factory=CarbonConfig)
    hashprice: HashpriceConfig = Field(default_factory=HashpriceConfig)
    reserve: ReserveConfig = Field(default_factory=ReserveConfig)
    coincident_peak: CoincidentPeakConfig = Field(default_factory=CoincidentPeakConfig)


def load_sources_file(path: Path | None) -> SourcesFile:
    """The parsed and validated file (defaults when ``path`` is ``None``); one line per
    mistake, an unknown key with the closest valid one."""
    if path is None:
        return SourcesFile()
    data = read_toml(path, "sources")
    # Unknown keys first, in file order: a typo is the likeliest cause of any other complaint.
    unknown = first_unknown_key(data, SourcesFile)
    if unknown is not None:
        table = ".".join(str(part) for part in unknown.table)
        place = f"[{table}]" if table else "the top level"
        raise GridshiftError(
            f"sources file {path}: unknown key {unknown.key!r} in {place}"
            f"{_suggest(unknown.key, unknown.known)}"
        )
    try:
        return SourcesFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(str(part) for part in first["loc"])
        hint = ""
        if "nodes" in loc and first["type"] == "string_pattern_mismatch":
            hint = ' (rename it with a table: nodes = { "WESTERN HUB" = "PJM_WESTERN_HUB" })'
        raise GridshiftError(f"sources file {path}: {_section(loc)}: {first['msg']}{hint}") from exc


def _suggest(name: str, candidates: Collection[str]) -> str:
    guess = closest(name, list(candidates))
    return f"; did you mean {guess!r}?" if guess else f" (known: {', '.join(sorted(candidates))})"


def _section(loc: tuple[str, ...]) -> str:
    """``('iso', 'ERCOT', 'nodes', '0')`` -> ``[iso.ERCOT] nodes.0`` (the TOML table, then
    the key inside it)."""
    if not loc:
        return "(file)"
    depth = 2 if loc[0] == "iso" else 3 if loc[:2] == ("carbon", "regions") else 1
    head, rest = ".".join(loc[:depth]), ".".join(loc[depth:])
    return f"[{head}] {rest}" if rest else f"[{head}]"
