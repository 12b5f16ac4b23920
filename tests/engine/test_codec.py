"""Decoding never raises on bad bytes: it says why, so the bytes can be dead-lettered."""

from __future__ import annotations

import base64
import json

import pytest

from schemas import PriceEvent
from streams.engine.codec import Rejection, dead_letter, decode, encode
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
