"""Shared building blocks of the wire contract: the strict base model and the interval shape.

Owns the rules every event obeys (frozen, no extra fields, finite numbers, tz-aware times,
intervals that end after they start). Must not know about Kafka, faust or the optimizer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

#: Event times outside this window are typos or corrupted clocks, not grid data.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
#: The longest interval an event may describe (a seasonal contract or a year-long signal).
MAX_INTERVAL = timedelta(days=366)

#: Identifiers (site ids, price nodes, regions) are short, printable and never blank.
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]

#: Power that cannot be negative (capacities, set-points, measured draw), in MW.
NonNegativeMW = Annotated[float, Field(ge=0.0, le=100_000.0)]

#: Prices may be negative (ERCOT clears below zero ~3 % of intervals) but not absurd.
PriceUSDPerMWh = Annotated[float, Field(ge=-100_000.0, le=100_000.0)]


class StrictModel(BaseModel):
    """Base of every wire model: immutable, closed, finite."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        str_strip_whitespace=False,
        validate_default=True,
    )


class IntervalEvent(StrictModel):
    """An event about one half-open interval of event time, [interval_start, interval_end)."""

    interval_start: AwareDatetime = Field(description="Start of the interval (tz-aware, ISO-8601).")
    interval_end: AwareDatetime = Field(
        description="End of the interval (tz-aware), after the start."
    )

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if self.interval_end <= self.interval_start:
            raise ValueError("interval_end must be after interval_start")
        if not EARLIEST <= self.interval_start <= LATEST:
            raise ValueError(f"interval_start must be between {EARLIEST:%Y} and {LATEST:%Y}")
        if self.interval_end - self.interval_start > MAX_INTERVAL:
            raise ValueError(f"an interval may last at most {MAX_INTERVAL.days} days")
        return self
