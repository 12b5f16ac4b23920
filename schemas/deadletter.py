"""Dead letters (gridshift.deadletter.v1): every rejected input, with its bytes and the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.base import StrictModel

RejectReason = Literal["not_json", "schema_violation", "unknown_site", "oversized"]


class DeadLetter(StrictModel):
    """One input the worker could not use. ``raw_value_b64`` holds the exact bytes received."""

    kind: Literal["deadletter"] = "deadletter"
    original_topic: str = Field(min_length=1)
    original_partition: int = Field(ge=0)
    original_offset: int = Field(ge=0)
    original_key_b64: str | None
    raw_value_b64: str
    reason: RejectReason
    error: str = Field(description="The validation error, human readable.")
    rejected_at: AwareDatetime = Field(
        description="Wall-clock time of rejection (operations only)."
    )
