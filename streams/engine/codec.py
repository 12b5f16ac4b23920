"""Bytes <-> pydantic models: the JSON codec of every topic (no Kafka client here; the faust
codec that wraps it is ``streams/worker/_codec.py``).

Decoding never raises for bad input: it returns a :class:`Rejection` with the reason, so the
caller can dead-letter the exact bytes and carry on. A dead letter always fits in one produce
request, whatever it rejects: an input's bytes beyond a limit are cut, and its size and SHA-256
are kept, so a reject can never be the record that fails to send.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas import DeadLetter, RejectReason

ModelT = TypeVar("ModelT", bound=BaseModel)

#: Bytes of a rejected input a dead letter keeps unless told otherwise
#: (``Settings.dead_letter_payload_bytes``).
DEAD_LETTER_PAYLOAD_BYTES = 65_536
#: Bytes of an input's key a dead letter keeps (as its own key and in ``original_key_b64``).
DEAD_LETTER_KEY_BYTES = 4_096
#: Characters of the validation error a dead letter keeps.
DEAD_LETTER_ERROR_CHARS = 2_048
#: Room in a produce request for everything of a dead letter but its payload: the key twice (raw
#: and base64, ~9.6 KB), the error (JSON escaping can make a character six bytes, ~12.3 KB), the
#: topic name, times and record framing, with margin.
DEAD_LETTER_ENVELOPE_BYTES = 32_768


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
        event = model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            return Rejection("not_json", f"not JSON: {exc.errors()[0]['msg']}")
        return Rejection("schema_violation", _summarise(exc))
    duplicate = _duplicate_key(raw, len(event.model_fields_set))
    if duplicate is not None:
        return Rejection("schema_violation", str(DuplicateKeyError(duplicate)))
    return event


#: A key followed by blanks before its colon (legal JSON, rare): the quick count misses it.
_SPACED_KEY_END = re.compile(rb'"\s+:')


class DuplicateKeyError(ValueError):
    """A JSON object names ``key`` twice."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"duplicate key {key!r}: a record names each field once (a parser would keep the "
            "last value and drop the first)"
        )
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(key)
        seen[key] = value
    return seen


def loads_unique(raw: bytes | str) -> Any:
    """``json.loads`` that refuses an object naming a key twice (:class:`DuplicateKeyError`, a
    ``ValueError``): for inputs parsed before they are validated and re-encoded (the HTTP API,
    ``gridshift publish``), where the worker's own check would no longer see the duplicate."""
    return json.loads(raw, object_pairs_hook=_unique_keys)


def _duplicate_key(raw: bytes, fields_given: int) -> str | None:
    """A key ``raw`` names twice at any depth, else None. pydantic's parser keeps the last of
    duplicates silently. Cheap first: a flat record with no more ``":`` than fields given and
    no blank before a colon has none (~0.3 us); otherwise (nested objects, a value holding
    ``":``, a duplicate) the exact check parses it again (~3 us)."""
    if raw.count(b'":') <= fields_given and not _SPACED_KEY_END.search(raw):
        return None
    try:
        loads_unique(raw)
    except DuplicateKeyError as exc:
        return exc.key
    except ValueError:
        return None  # pydantic read it: a difference of dialect, not a duplicate
    return None


def _summarise(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def dead_letter_payload_limit(max_request_bytes: int, wanted: int) -> int:
    """The input bytes a dead letter may keep so that it fits in one produce request of
    ``max_request_bytes`` (base64 makes them 4/3 as large), at most ``wanted``."""
    room = (max_request_bytes - DEAD_LETTER_ENVELOPE_BYTES) * 3 // 4
    return max(0, min(wanted, room))


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The Kafka key a dead letter is sent under: the input's, cut to
    :data:`DEAD_LETTER_KEY_BYTES` (a key may be as large as the input itself)."""
    return key if key is None else key[:DEAD_LETTER_KEY_BYTES]


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    rejection: Rejection,
    max_payload_bytes: int = DEAD_LETTER_PAYLOAD_BYTES,
) -> DeadLetter:
    """The dead-letter record of one rejected input: its first ``max_payload_bytes`` bytes as
    base64 (all of them when it is that small), with the size and SHA-256 of the whole input."""
    raw = value or b""
    kept = raw[:max_payload_bytes]
    error = rejection.error
    if len(error) > DEAD_LETTER_ERROR_CHARS:
        error = error[:DEAD_LETTER_ERROR_CHARS] + f"... ({len(rejection.error)} characters)"
    kept_key = dead_letter_key(key)
    if key is not None and kept_key != key:
        digest = hashlib.sha256(key).hexdigest()
        error += f"; key of {len(key)} bytes cut to {DEAD_LETTER_KEY_BYTES} (sha256 {digest})"
    return DeadLetter(
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        original_key_b64=base64.b64encode(kept_key).decode() if kept_key is not None else None,
        raw_value_b64=base64.b64encode(kept).decode(),
        raw_value_size_bytes=len(raw),
        raw_value_sha256=hashlib.sha256(raw).hexdigest(),
        raw_value_truncated=len(kept) < len(raw),
        reason=rejection.reason,
        error=error,
        rejected_at=datetime.now(UTC),
    )
