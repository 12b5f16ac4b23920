"""The site agent's configuration file (TOML): which miners and GPUs it drives, how fast it may
ramp, when its watchdog trips and how often it reports.

Strict: unknown keys are errors that name the closest known key; secrets (miner passwords, the
hook's bearer token) are ``SecretStr`` and never logged. Kafka (bootstrap, security, topic
prefix) comes from the shared ``GRIDSHIFT_*`` settings, not from this file. Must not perform I/O
beyond reading the file.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Self

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator

from schemas.base import Identifier
from streams.agent.configfile import StrictConfig
from streams.errors import GridshiftError

Seconds = Annotated[float, Field(gt=0.0, le=86_400.0)]


class MinerConfig(StrictConfig):
    """One miner: where it answers, its power range and how efficient it is."""

    host: str = Field(description="IP address of the miner (its API listens on port 4028).")
    name: str | None = Field(default=None, description="Label in logs; defaults to the host.")
    max_w: float = Field(gt=0.0, le=100_000.0, description="Power at full hashrate, W.")
    min_w: float | None = Field(
        default=None,
        gt=0.0,
        le=100_000.0,
        description="Lowest power target it accepts, W; unset = on/off only (run at max_w).",
    )
    efficiency_j_per_th: float = Field(gt=0.0, le=1_000.0, description="J/TH at max_w.")
    username: str | None = Field(default=None, description="API user, when the firmware asks.")
    password: SecretStr | None = Field(default=None, description="API password (never logged).")

    @field_validator("host")
    @classmethod
    def _ip(cls, value: str) -> str:
        # asic-rs addresses miners by IP only (it scans, it does not resolve names).
        return str(ipaddress.ip_address(value))

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.min_w is not None and self.min_w > self.max_w:
            raise ValueError("min_w must not exceed max_w")
        return self

    @property
    def label(self) -> str:
        """How the miner is named in logs and telemetry."""
        return self.name or self.host


class MinerIoConfig(StrictConfig):
    """How the agent talks to miners."""

    timeout_s: Seconds = Field(default=5.0, description="Longest wait for one miner call.")
    discovery_timeout_s: Seconds = Field(
        default=15.0, description="Longest wait to identify a miner's make and firmware."
    )
    concurrency: int = Field(default=64, ge=1, le=10_000, description="Miner calls in flight.")


class DecisionsConfig(StrictConfig):
    """Where decisions come from."""

    # Reading the history is harmless: only the newest decision whose interval has not ended is
    # applied. On the embedded broker 'latest' is unreliable (Tansu answers ListOffsets wrong).
    from_beginning: bool = Field(
        default=True, description="Read the topic from its start (expired decisions are skipped)."
    )
    group_id: str | None = Field(
        default=None, description="Consumer group (commit offsets); unset = no group."
    )


class WatchdogConfig(StrictConfig):
    """What happens when decisions stop arriving."""

    decision_timeout_s: Seconds = Field(
        default=900.0, description="No decision for this long (wall clock) trips the fail-safe."
    )
    failsafe_mining_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of the fleet's max_w kept in fail-safe."
    )
    late_after_s: float = Field(
        default=0.0,
        ge=0.0,
        le=86_400.0,
        description="A decision whose interval ended more than this long ago is late: ignored.",
    )


class RampConfig(StrictConfig):
    """How fast the site's mining load may move."""

    max_step_mw: float = Field(
        default=1.0, gt=0.0, le=10_000.0, description="Largest change of mining MW per batch."
    )
    batch_delay_s: float = Field(
        default=30.0, ge=0.0, le=3_600.0, description="Wait between batches of a ramp."
    )


class TelemetryConfig(StrictConfig):
    """What the agent reports on site.telemetry.v1."""

    interval_s: Seconds = Field(default=60.0, description="Report period (and miner poll).")
    cooling_mw: float = Field(
        default=0.0, ge=0.0, le=100_000.0, description="Cooling load reported (not measured)."
    )


class NvmlConfig(StrictConfig):
    """GPU power caps through NVML on this host."""

    share_of_site: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Share of the site's decided GPU MW that this host's GPUs take.",
    )
    board_fraction: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Board power per all-in GPU MW (servers, network: the decision is all-in).",
    )


class HookConfig(StrictConfig):
    """A generic hook that scales inference replicas: an HTTP POST or a command."""

    url: AnyHttpUrl | None = Field(default=None, description="POST {site_id, gpu_mw, ...} here.")
    token: SecretStr | None = Field(default=None, description="Bearer token for the URL.")
    command: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="argv run with GRIDSHIFT_GPU_MW (and _SITE_ID, _DECISION_ID) in its env.",
    )
    timeout_s: Seconds = Field(default=10.0, description="Longest wait for the hook.")

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.url is None) == (self.command is None):
            raise ValueError("set exactly one of url or command")
        return self


class GpuConfig(StrictConfig):
    """GPU drivers; none configured = the agent leaves GPUs alone."""

    nvml: NvmlConfig | None = None
    hook: HookConfig | None = None
    min_change_mw: float = Field(
        default=0.01, ge=0.0, le=1_000.0, description="Smaller GPU MW changes are not re-sent."
    )


class AgentConfig(StrictConfig):
    """The whole agent file."""

    site_id: Identifier | None = Field(default=None, description="Must match --site if set.")
    miners: tuple[MinerConfig, ...] = ()
    miner_io: MinerIoConfig = MinerIoConfig()
    decisions: DecisionsConfig = DecisionsConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    ramp: RampConfig = RampConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    gpu: GpuConfig = GpuConfig()

    @model_validator(mode="after")
    def _unique(self) -> Self:
        hosts = [m.host for m in self.miners]
        dup = next((h for h in hosts if hosts.count(h) > 1), None)
        if dup is not None:
            raise ValueError(f"miner {dup} is listed twice")
        return self

    def for_site(self, site_id: str) -> AgentConfig:
        """This configuration for ``site_id`` (the file's own ``site_id`` must agree)."""
        if self.site_id is not None and self.site_id != site_id:
            raise GridshiftError(
                f"--site {site_id} does not match site_id = {self.site_id!r} in the agent file"
            )
        return self.model_copy(update={"site_id": site_id})

    @property
    def fleet_max_w(self) -> float:
        """Power of every configured miner at full hashrate, W."""
        return sum(m.max_w for m in self.miners)


def load_agent_config(path: Path | None) -> AgentConfig:
    """The agent file at ``path``, or the defaults (no miners, no GPU drivers) without one."""
    return AgentConfig() if path is None else AgentConfig.load(path, "agent")
