"""Site telemetry (site.telemetry.v1): what a site measures, reported per interval by its agent."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Identifier, IntervalEvent, NonNegativeMW


class TelemetryEvent(IntervalEvent):
    """Measured power by workload and the state of the fleets at one site over one interval."""

    kind: Literal["telemetry"] = "telemetry"
    site_id: Identifier
    mining_mw: NonNegativeMW
    gpu_mw: NonNegativeMW
    cooling_mw: NonNegativeMW = 0.0
    meter_mw: NonNegativeMW | None = Field(default=None, description="Revenue meter at the POI.")
    miners_online: int = Field(ge=0, le=10_000_000)
    mining_available_mw: NonNegativeMW = Field(
        description="MW of miners online and ready to run (caps the mining set-point)."
    )
    battery_soc_mwh: float | None = Field(default=None, ge=0.0, le=1e6)
    hashrate_th_s: float = Field(default=0.0, ge=0.0, le=1e12)
    gpu_utilization_pct: float = Field(default=0.0, ge=0.0, le=100.0)
    inference_queue_depth: int = Field(default=0, ge=0, le=1_000_000_000)
