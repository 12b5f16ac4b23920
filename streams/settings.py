"""One typed configuration for the stream shell, read once at the edge (environment
``GRIDSHIFT_*``, an optional ``.env``, and CLI flags) and passed down. The optimizer never sees it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from optimizer import Horizon
from streams.engine.horizon import HorizonConfig
from streams.engine.reserves import COMMIT_LEAD
from streams.errors import GridshiftError


class Settings(BaseSettings):
    """Everything a worker, publisher or subscriber needs to know."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDSHIFT_", env_file=".env", extra="ignore", frozen=True
    )

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port[,host:port]; unset = start the embedded broker."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients connect to Kafka."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism (with SASL_* protocols)."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (never logged or printed)."
    )
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle for TLS.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Client key.")
    topic_prefix: str = Field(
        default="", pattern=r"^[A-Za-z0-9._\-]*$", description="Prepended to every topic name."
    )
    app_id: str = Field(
        default="gridshift", pattern=r"^[A-Za-z0-9._\-]+$", description="Consumer group id."
    )
    sites_file: Path | None = Field(default=None, description="TOML fleet file.")
    data_dir: Path | None = Field(default=None, description="Real historical data folder.")
    topic_partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of topics the worker creates."
    )
    consumer_fetch_max_wait_ms: int = Field(
        default=10, ge=0, le=10_000, description="faust hard-codes 1500 ms; we make it ours."
    )
    producer_linger_ms: int = Field(
        default=2, ge=0, le=10_000, description="Producer batching delay."
    )
    # A decision with its 35-step horizon is ~8 kB: at aiokafka's default (16 kB) a round of
    # 200 decisions went out two per batch, each batch waiting for the one before (~0.4 s).
    producer_batch_bytes: int = Field(
        default=512 * 1024,
        ge=1_024,
        le=1_000_000,
        description="Largest producer batch per partition (decisions of a round go together).",
    )
    debounce_ms: int = Field(
        default=10, ge=0, le=60_000, description="Coalesce bursts of prices, carbon and signals."
    )
    telemetry_debounce_ms: int = Field(
        default=100,
        ge=0,
        le=60_000,
        description="Coalesce telemetry re-plans; a price, carbon or signal input cuts it short.",
    )
    # The horizon's fields and their bounds are HorizonConfig's (one model for settings, scenario
    # files and the demo); flat here so each has its own GRIDSHIFT_HORIZON_* variable.
    horizon_fine_steps: int = HorizonConfig.model_fields["fine_steps"]  # type: ignore[assignment]
    horizon_fine_minutes: int = HorizonConfig.model_fields["fine_minutes"]  # type: ignore[assignment]
    horizon_coarse_minutes: int = HorizonConfig.model_fields["coarse_minutes"]  # type: ignore[assignment]
    horizon_hours: float = HorizonConfig.model_fields["hours"]  # type: ignore[assignment]
    fleet_carbon_budget_t_per_day: float | None = Field(
        default=None,
        ge=0.0,
        description="Fleet CO2 cap (market-based), prorated over the horizon; unset = none.",
    )
    stale_price_after_s: float | None = Field(
        default=1800.0,
        gt=0.0,
        description="Event-time age of a site's last price after which it runs the fail-safe.",
    )
    # ERCOT's day-ahead market sells each hour 14 h (hour 00:00) to 38 h (hour 23:00) ahead; the
    # rule sells an hour when it first appears whole in the horizon, if it starts at least this
    # far ahead (streams/engine/reserves.py). A lead at or above the horizon sells nothing.
    reserve_commit_lead_h: float = Field(
        default=COMMIT_LEAD / timedelta(hours=1),
        ge=0.0,
        le=48.0,
        description="How far ahead (hours) an hour must start for reserve to be sold in it "
        "(day-ahead); 14 = ERCOT's shortest lead, 0 = up to the hour itself.",
    )
    failsafe_mining_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Mining kept by the fail-safe (share of fleet)."
    )
    restore_fraction: float = Field(
        default=0.25, gt=0.0, le=1.0, description="Mining restored per decision after a fail-safe."
    )
    solver_time_limit_s: float | None = Field(
        default=10.0, gt=0.0, description="Solver time-out; a time-out yields a fallback."
    )
    max_message_bytes: int = Field(
        default=1_000_000, ge=1_024, description="Larger inputs are dead-lettered."
    )
    # A dead letter must always fit in one produce request, whatever it rejects: the input's
    # bytes beyond this are cut (its size and SHA-256 are kept), so base64 and the envelope stay
    # far below producer_max_request_bytes.
    dead_letter_payload_bytes: int = Field(
        default=65_536,
        ge=0,
        le=262_144,
        description="Bytes of a rejected input kept in its dead letter (size and SHA-256 always).",
    )
    producer_max_request_bytes: int = Field(
        default=1_048_576,
        ge=65_536,
        description="Largest produce request (aiokafka max_request_size).",
    )
    # Which inputs may be dated ahead of the wall clock, and how far (item: no input may freeze
    # the fleet). Only the live worker checks; a backtest has no wall clock.
    max_clock_skew_s: float | None = Field(
        default=300.0,
        gt=0.0,
        description="Observed inputs (real-time prices, telemetry, actual carbon) dated further "
        "ahead of wall clock are dead-lettered; unset = no check.",
    )
    max_lookahead_s: float | None = Field(
        default=14 * 86_400.0,
        gt=0.0,
        description="Forecasts, day-ahead prices, announced signals and demand windows starting "
        "further ahead are dead-lettered; unset = no check.",
    )
    stale_telemetry_after_s: float = Field(
        default=900.0,
        gt=0.0,
        description="Event-time age after which a site's telemetry no longer anchors ramps and "
        "reductions (the plan says so in its notes).",
    )
    topic_check_interval_s: float = Field(
        default=5.0,
        gt=0.0,
        le=300.0,
        description="How often the worker checks that every topic it reads or writes exists.",
    )
    health_decision_silence_s: float | None = Field(
        default=None,
        gt=0.0,
        description="/health is unhealthy when inputs arrived but no decision was made for this "
        "long (wall clock); unset = not checked.",
    )
    health_max_clock_lag_s: float | None = Field(
        default=None,
        gt=0.0,
        description="/health is unhealthy when the decision clock is this far behind wall clock "
        "(a live feed; not for replays of past data); unset = not checked.",
    )
    # Four times aiokafka's default: fewer fetch round trips while a batch is being folded
    # (bench/e2e.py (a): ~100k -> ~125-160k telemetry events/s).
    telemetry_fetch_partition_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1_024,
        description="Bytes per partition per telemetry fetch (aiokafka max_partition_fetch_bytes).",
    )
    # Short by default: Tansu completes a group join only after about the session timeout, so
    # this is the worker start-up time on the embedded broker. Production sets 30 s (compose).
    session_timeout_s: float = Field(
        default=3.0, gt=0.0, le=300.0, description="Consumer group session timeout."
    )
    rebalance_timeout_s: float = Field(
        default=3.0, gt=0.0, le=300.0, description="Consumer group rebalance timeout."
    )
    heartbeat_interval_s: float = Field(
        default=0.5, gt=0.0, le=60.0, description="Consumer heartbeat interval."
    )
    http_enabled: bool = Field(
        default=True, description="Serve the HTTP API (ingest, decisions, health, metrics)."
    )
    http_host: str = Field(default="127.0.0.1", description="Bind address of the HTTP API.")
    http_port: int = Field(default=8780, ge=0, le=65_535, description="HTTP port (0 = any).")
    http_token: SecretStr | None = Field(
        default=None, description="Bearer token for HTTP writes; unset = writes refused."
    )
    http_read_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for HTTP reads (the write token works too); unset = reads "
        "need the write token, or are open on a loopback bind with no token set.",
    )
    http_allowed_hosts: str = Field(
        default="localhost,127.0.0.1,[::1]",
        description="Host header values the browser-facing routes accept (comma-separated; "
        "a port is ignored). Guards against DNS rebinding.",
    )
    web_enabled: bool = Field(default=False, description="faust's web server (off unless asked).")
    web_host: str = Field(default="127.0.0.1", description="Bind address of the web server.")
    web_port: int = Field(default=6066, ge=1, le=65_535, description="Web server port.")
    log_level: str = Field(
        default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log verbosity."
    )
    log_format: Literal["logfmt", "json"] = Field(
        default="logfmt", description="Log lines as logfmt (key=value) or JSON objects."
    )

    @model_validator(mode="after")
    def _horizon_fits(self) -> Self:
        self.horizon_config()  # the same validation as a scenario file's [horizon]
        return self

    def horizon_config(self) -> HorizonConfig:
        """The horizon settings as the one horizon model (validated)."""
        return HorizonConfig(
            fine_steps=self.horizon_fine_steps,
            fine_minutes=self.horizon_fine_minutes,
            coarse_minutes=self.horizon_coarse_minutes,
            hours=self.horizon_hours,
        )

    def horizon(self) -> Horizon:
        """The optimizer's rolling horizon (fine steps near now, coarse later)."""
        return self.horizon_config().build()

    def reserve_commit_lead(self) -> timedelta:
        """The reserve commitment lead the worker's decider sells with."""
        return timedelta(hours=self.reserve_commit_lead_h)

    def topic(self, name: str) -> str:
        """The broker-side name of a contract topic."""
        return f"{self.topic_prefix}{name}"


def load_settings(**overrides: object) -> Settings:
    """Build :class:`Settings`, turning validation errors into one readable line."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if not where:  # a check across several settings (e.g. the horizon's)
            raise GridshiftError(f"invalid settings: {first['msg']}") from exc
        raise GridshiftError(
            f"invalid setting {where} (env GRIDSHIFT_{where.upper()}): {first['msg']}"
        ) from exc
