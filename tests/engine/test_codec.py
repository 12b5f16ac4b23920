"""Decoding never raises on bad bytes: it says why, so the bytes can be dead-lettered."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from schemas import TOPICS_BY_NAME, PriceEvent
from streams.engine.codec import (
    Rejection,
    dead_letter,
    dead_letter_key,
    dead_letter_payload_limit,
    decode,
    encode,
)
from streams.worker._codec import PydanticCodec
from tests.schemas.examples import VALID


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe garbage", "not_json"),
        (b"{truncated", "not_json"),
        (None, "not_json"),
        (b'{"node": "HB_SOUTH"}', "schema_violation"),
        (b"[1, 2, 3]", "schema_violation"),
        (b"x" * 2048, "oversized"),
    ],
)
def test_bad_input_is_rejected_with_its_reason(raw: bytes | None, reason: str) -> None:
    result = decode(raw, PriceEvent, max_bytes=1024)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.error


def test_valid_input_decodes_to_the_model() -> None:
    raw = json.dumps(VALID["grid.price.v1"]).encode()
    event = decode(raw, PriceEvent, max_bytes=1024)
    assert isinstance(event, PriceEvent)
    assert decode(encode(event), PriceEvent, max_bytes=1024) == event


PRICE_HEAD = b'{"interval_start":"2024-08-01T00:00:00Z","interval_end":"2024-08-01T00:15:00Z",'


@pytest.mark.parametrize(
    "tail",
    [
        b'"node":"HB_SOUTH","price_usd_per_mwh":31,"price_usd_per_mwh":9999}',
        b'"node":"HB_SOUTH","price_usd_per_mwh":31,"price_usd_per_mwh" :9999}',  # blank
        b'"price_usd_per_mwh":9999,"node":"HB_SOUTH","price_usd_per_mwh":31}',
    ],
)
def test_a_field_named_twice_is_rejected_not_last_one_wins(tail: bytes) -> None:
    # The parser alone keeps the last value: $9,999/MWh from a record that also says $31.
    result = decode(PRICE_HEAD + tail, PriceEvent, max_bytes=1024)
    assert isinstance(result, Rejection)
    assert result.reason == "schema_violation"
    assert "duplicate key 'price_usd_per_mwh'" in result.error


@pytest.mark.parametrize("topic", sorted(VALID))
def test_every_valid_example_has_no_duplicate_in_any_layout(topic: str) -> None:
    # Compact, json.dumps' default separators, and pretty-printed: never a false duplicate.
    model = TOPICS_BY_NAME[topic].model
    for raw in (
        json.dumps(VALID[topic], separators=(",", ":")),
        json.dumps(VALID[topic]),
        json.dumps(VALID[topic], indent=2),
    ):
        assert isinstance(decode(raw.encode(), model, max_bytes=1 << 20), model), raw


def test_a_value_that_looks_like_a_key_is_not_a_duplicate() -> None:
    raw = PRICE_HEAD + b'"node":"HB_SOUTH","price_usd_per_mwh":31,"market":"real_time"}'
    assert isinstance(decode(raw, PriceEvent, max_bytes=1024), PriceEvent)
    quoted = json.dumps({**VALID["grid.price.v1"], "node": 'a",x":'}).encode()
    result = decode(quoted, PriceEvent, max_bytes=1024)
    # Rejected for the node's characters, not for a duplicate.
    assert isinstance(result, Rejection)
    assert "duplicate" not in result.error


def test_dead_letter_keeps_the_exact_bytes_and_key() -> None:
    record = dead_letter(
        topic="grid.price.v1",
        partition=2,
        offset=41,
        key=b"HB_SOUTH",
        value=b"\x00\x01junk",
        rejection=Rejection("not_json", "not JSON"),
    )
    assert base64.b64decode(record.raw_value_b64) == b"\x00\x01junk"
    assert base64.b64decode(record.original_key_b64 or "") == b"HB_SOUTH"
    assert (record.original_partition, record.original_offset) == (2, 41)


def test_faust_codec_round_trips_and_validates() -> None:
    codec = PydanticCodec(PriceEvent)
    event = PriceEvent.model_validate(VALID["grid.price.v1"])
    assert codec.loads(codec.dumps(event)) == event
    assert codec.loads(codec.dumps(VALID["grid.price.v1"])) == event


def test_a_dead_letter_always_fits_one_produce_request() -> None:
    """Issue #11 (3): a reject near the input limit (1 MB) must not make a dead letter larger
    than the producer's request limit; what is cut is described by size and digest."""
    value = bytes(range(256)) * 3906 + b"x" * 63  # 999,999 bytes, not JSON
    limit = 1_048_576
    record = dead_letter(
        topic="t.site.telemetry.v1",
        partition=0,
        offset=7,
        key=b"k" * 100_000,  # a key can be as large as the input
        value=value,
        rejection=Rejection("not_json", "e" * 50_000),
        max_payload_bytes=dead_letter_payload_limit(limit, 65_536),
    )
    wire = encode(record)
    assert len(wire) + len(dead_letter_key(b"k" * 100_000) or b"") <= limit - 16 * 1024
    assert record.raw_value_size_bytes == len(value)
    assert record.raw_value_sha256 == hashlib.sha256(value).hexdigest()
    assert record.raw_value_truncated is True
    assert base64.b64decode(record.raw_value_b64) == value[:65_536]
    assert "key of 100000 bytes cut to 4096" in record.error


def test_a_small_reject_keeps_every_byte_and_says_so() -> None:
    record = dead_letter(
        topic="t",
        partition=0,
        offset=0,
        key=None,
        value=b"{bad",
        rejection=Rejection("not_json", "x"),
    )
    assert base64.b64decode(record.raw_value_b64) == b"{bad"
    assert (record.raw_value_size_bytes, record.raw_value_truncated) == (4, False)
    # The producer's limit decides how much is kept: never more than fits.
    assert dead_letter_payload_limit(65_536, 262_144) == (65_536 - 32_768) * 3 // 4
