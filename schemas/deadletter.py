"""Dead letters (gridshift.deadletter.v1): every rejected input, with its bytes and the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.base import StrictModel

RejectReason = Literal[
    "not_json", "schema_violation", "unknown_site", "oversized", "future_dated", "unknown_key"
]


class DeadLetter(StrictModel):
    """One input the worker could not use. ``raw_value_b64`` holds the exact bytes received, or
    their first bytes when the input was too large for a dead letter to carry whole
    (``raw_value_truncated``); size and SHA-256 always describe the whole input."""

    kind: Literal["deadletter"] = "deadletter"
    original_topic: str = Field(min_length=1)
    original_partition: int = Field(ge=0)
    original_offset: int = Field(ge=0)
    original_key_b64: str | None
    raw_value_b64: str
    raw_value_size_bytes: int = Field(default=0, ge=0, description="Size of the whole input.")
    raw_value_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whole input (hex)."
    )
    raw_value_truncated: bool = Field(
        default=False, description="True when raw_value_b64 holds only the input's first bytes."
    )
    reason: RejectReason
    error: str = Field(description="The validation error, human readable.")
    rejected_at: AwareDatetime = Field(
        description="Wall-clock time of rejection (operations only)."
    )
