"""Bytes <-> pydantic models: the JSON codec of every topic (no Kafka client here; the faust
codec that wraps it is ``streams/worker/_codec.py``).

Decoding never raises for bad input: it returns a :class:`Rejection` with the reason, so the
caller can dead-letter the exact bytes and carry on.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from schemas import DeadLetter, RejectReason

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input could not be used."""

    reason: RejectReason
    error: str


def encode(model: BaseModel) -> bytes:
    """The wire form of a model: compact JSON (``model_dump_json`` without the str round trip)."""
    wire: bytes = model.__pydantic_serializer__.to_json(model)
    return wire


def decode(raw: bytes | None, model: type[ModelT], max_bytes: int) -> ModelT | Rejection:
    """Parse and validate ``raw`` as ``model``; a :class:`Rejection` says why it is unusable."""
    if raw is None:
        return Rejection("not_json", "empty message (no value)")
    if len(raw) > max_bytes:
        return Rejection("oversized", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        # Strict: JSON true is not a price and "12" is not a megawatt figure.
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            return Rejection("not_json", f"not JSON: {exc.errors()[0]['msg']}")
        return Rejection("schema_violation", _summarise(exc))


def _summarise(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    rejection: Rejection,
) -> DeadLetter:
    """The dead-letter record of one rejected input (exact bytes kept as base64)."""
    return DeadLetter(
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        original_key_b64=base64.b64encode(key).decode() if key is not None else None,
        raw_value_b64=base64.b64encode(value or b"").decode(),
        reason=rejection.reason,
        error=rejection.error,
        rejected_at=datetime.now(UTC),
    )
