"""The VEN's configuration file (TOML): the VTN and this VEN's identity and keys, how events
map to grid signals, the opt-in policy and the load report.

Strict like every gridshift file (unknown keys name the closest known one); the key passphrase
is a ``SecretStr`` and is never logged. Kafka comes from the shared ``GRIDSHIFT_*`` settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AnyHttpUrl, Field, SecretStr, model_validator

from schemas.base import Identifier
from streams.agent.configfile import StrictConfig
from streams.errors import GridshiftError


class VtnConfig(StrictConfig):
    """Where the utility's VTN is and how this VEN proves who it is."""

    url: AnyHttpUrl = Field(
        description="The VTN's base URL, e.g. https://vtn/OpenADR2/Simple/2.0b."
    )
    ven_name: str = Field(min_length=1, description="This VEN's name at the VTN.")
    ven_id: str | None = Field(default=None, description="Assigned by the VTN when unset.")
    cert: Path | None = Field(default=None, description="PEM certificate (TLS and signing).")
    key: Path | None = Field(default=None, description="PEM private key.")
    passphrase: SecretStr | None = Field(default=None, description="Key passphrase (never logged).")
    ca_file: Path | None = Field(default=None, description="CA bundle that signed the VTN's cert.")
    vtn_fingerprint: str | None = Field(
        default=None, description="Fingerprint of the VTN's certificate (checks its signatures)."
    )
    disable_signature: bool = Field(default=False, description="Do not sign outgoing XML.")
    check_hostname: bool = True

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        return self


class LevelConfig(StrictConfig):
    """What one SIMPLE level (1-3) asks of the site."""

    reduction_mw: float | None = Field(default=None, ge=0.0, le=100_000.0)
    limit_mw: float | None = Field(default=None, ge=0.0, le=100_000.0)
    emergency: bool = Field(default=False, description="Curtail everything interruptible.")

    @model_validator(mode="after")
    def _one(self) -> Self:
        chosen = [self.reduction_mw is not None, self.limit_mw is not None, self.emergency]
        if sum(chosen) != 1:
            raise ValueError("set exactly one of reduction_mw, limit_mw or emergency = true")
        return self


Level = Literal["1", "2", "3"]


def _default_levels() -> dict[Level, LevelConfig]:
    """SIMPLE level 3 (special) is an emergency; levels 1 and 2 need numbers from the site."""
    return {"3": LevelConfig(emergency=True)}


class SignalsConfig(StrictConfig):
    """How OpenADR signals become grid.signal.v1 events."""

    signal_type: Literal["demand_response", "curtailment", "coincident_peak", "emergency"] = Field(
        default="demand_response", description="signal_type of the published events."
    )
    region: Identifier | None = Field(
        default=None, description="Publish for this grid region instead of the site."
    )
    default_unit: Literal["W", "kW", "MW"] = Field(
        default="kW", description="Unit of payloads whose event does not say (no itemBase)."
    )
    delta_sign: Literal["negative_is_reduction", "positive_is_reduction"] = Field(
        default="negative_is_reduction",
        description="LOAD_DISPATCH delta / LOAD_CONTROL offsets: which sign asks for less load.",
    )
    capacity_mw: float | None = Field(
        default=None,
        gt=0.0,
        le=100_000.0,
        description="Site capacity for x-loadControlCapacity / PercentOffset signals.",
    )
    incentive_usd_per_mwh: float = Field(default=0.0, ge=0.0, le=100_000.0)
    simple_levels: dict[Level, LevelConfig] = Field(
        default_factory=_default_levels,
        description="SIMPLE levels; a level not listed is not acted on.",
    )
    publish_when_opted_out: bool = Field(
        default=False, description="Publish the signals of events the VEN opted out of."
    )


class OptPolicyConfig(StrictConfig):
    """When the VEN opts in (docs/OPENADR.md)."""

    mode: Literal["capacity", "always_in", "always_out"] = Field(
        default="capacity",
        description="capacity: opt in when the latest decision's mining can shed the request.",
    )
    pue: float = Field(default=1.0, ge=1.0, le=3.0, description="Meter MW per mining MW shed.")
    extra_sheddable_mw: float = Field(
        default=0.0, ge=0.0, le=100_000.0, description="Other load the site can shed on request."
    )
    margin_mw: float = Field(default=0.0, ge=0.0, le=100_000.0, description="Headroom kept.")
    when_no_decision: Literal["opt_in", "opt_out"] = "opt_out"


class ReportConfig(StrictConfig):
    """The measured-load report offered to the VTN (TELEMETRY_USAGE, RealPower in MW)."""

    enabled: bool = True
    min_sampling_s: float = Field(default=60.0, gt=0.0, le=86_400.0)
    max_sampling_s: float = Field(default=3_600.0, gt=0.0, le=86_400.0)
    stale_after_s: float = Field(
        default=900.0, gt=0.0, description="Older telemetry: report the decided import instead."
    )

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.min_sampling_s > self.max_sampling_s:
            raise ValueError("min_sampling_s must not exceed max_sampling_s")
        return self


class FeedsConfig(StrictConfig):
    """Where the VEN reads the site's decisions and telemetry from."""

    decisions_from_beginning: bool = True
    telemetry_from_beginning: bool = Field(
        default=False, description="Read the telemetry topic from its start (tests, small sites)."
    )


class VenConfig(StrictConfig):
    """The whole VEN file."""

    site_id: Identifier | None = Field(default=None, description="Must match --site if set.")
    vtn: VtnConfig
    signals: SignalsConfig = SignalsConfig()
    opt: OptPolicyConfig = OptPolicyConfig()
    report: ReportConfig = ReportConfig()
    feeds: FeedsConfig = FeedsConfig()

    def for_site(self, site_id: str) -> VenConfig:
        """This configuration for ``site_id`` (the file's own ``site_id`` must agree)."""
        if self.site_id is not None and self.site_id != site_id:
            raise GridshiftError(
                f"--site {site_id} does not match site_id = {self.site_id!r} in the VEN file"
            )
        return self.model_copy(update={"site_id": site_id})


def load_ven_config(path: Path) -> VenConfig:
    """The VEN file at ``path`` (one-line errors)."""
    return VenConfig.load(path, "OpenADR VEN")
