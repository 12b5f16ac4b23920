"""The rolling horizon as configured: one validated model read by the worker's settings, the
scenario files of the backtest and the demo, so all three mean the same thing by it.

Fine steps near now, coarse steps later; the optimizer's :class:`~optimizer.Horizon` is built from
it. The defaults are the live worker's (12 x 5 min, then hourly to 24 h).
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from optimizer import Horizon, SpecError


class HorizonConfig(BaseModel):
    """How far ahead the worker plans and in which steps."""

    # strict: a value of the wrong TOML type is refused, not converted ("4" is no step count).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    fine_steps: int = Field(default=12, ge=1, le=500, description="Steps near now.")
    fine_minutes: int = Field(default=5, ge=1, le=60, description="Length of a fine step.")
    coarse_minutes: int = Field(default=60, ge=5, le=240, description="Length of a later step.")
    hours: float = Field(default=24.0, gt=0.0, le=48.0, description="Foresight.")

    @model_validator(mode="after")
    def _fits(self) -> Self:
        try:
            self.build()
        except SpecError as exc:
            raise ValueError(f"the horizon does not fit: {exc}") from exc
        return self

    def build(self) -> Horizon:
        """The optimizer's horizon."""
        return Horizon.mixed(
            fine_steps=self.fine_steps,
            fine_minutes=self.fine_minutes,
            coarse_minutes=self.coarse_minutes,
            total_hours=self.hours,
        )
