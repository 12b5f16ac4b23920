"""Malformed and near-valid input messages for fuzzing, with the outcome each must have.

Every case is (topic, raw bytes, expected): ``expected`` is ``"ok"`` or the dead-letter reason.
Driven by a ``random.Random`` so hypothesis (unit fuzzing) and a fixed seed (the end-to-end
batch through Kafka) draw from the same generator.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.schemas.examples import VALID

MAX_BYTES = 4096
TOPICS = sorted(VALID)
NUMERIC = {
    "grid.price.v1": "price_usd_per_mwh",
    "grid.carbon.v1": "average_intensity_g_per_kwh",
    "grid.signal.v1": "limit_mw",
    "grid.reserve.v1": "price_usd_per_mw_h",
    "site.telemetry.v1": "mining_available_mw",
    "market.hashprice.v1": "hashprice_usd_per_th_day",
    "compute.demand.v1": "demand_mw",
    "grid.ppa.v1": "supply_mw",
}
SITE_SCOPED = ("site.telemetry.v1", "compute.demand.v1", "grid.ppa.v1")


def _dump(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def _valid(rng: random.Random, topic: str) -> dict[str, Any]:
    """A valid event at a random interval (out of order and duplicates are valid input too)."""
    event = dict(VALID[topic])
    start = datetime(
        2024, 8, rng.randint(1, 28), rng.randint(0, 23), 15 * rng.randint(0, 3), tzinfo=UTC
    )
    length = timedelta(days=1) if topic == "market.hashprice.v1" else timedelta(minutes=15)
    event["interval_start"] = start.isoformat().replace("+00:00", "Z")
    event["interval_end"] = (start + length).isoformat().replace("+00:00", "Z")
    return event


def case(rng: random.Random) -> tuple[str, bytes, str]:
    """One generated message and the outcome it must have."""
    topic = rng.choice(TOPICS)
    event = _valid(rng, topic)
    kind = rng.choice(
        [
            "valid",
            "valid",
            "bytes",
            "truncated",
            "wrong_type",
            "non_finite",
            "huge",
            "naive",
            "ends_before_start",
            "far_future",
            "ancient",
            "unknown_site",
            "oversized",
            "extra_field",
        ]
    )
    raw = _dump(event)
    if kind == "valid":
        return topic, raw, "ok"
    if kind == "bytes":
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        # Random bytes that happen to be a JSON value are still the wrong shape.
        try:
            json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return topic, blob, "not_json"
        return topic, blob, "schema_violation"
    if kind == "truncated":
        return topic, raw[: rng.randint(0, len(raw) - 1)], "not_json"
    if kind == "oversized":
        return topic, raw[:-1] + b', "padding": "' + b"x" * MAX_BYTES + b'"}', "oversized"
    field = NUMERIC[topic]
    if kind == "wrong_type":
        event[field] = rng.choice(["lots", [1, 2], {"mw": 1}, True])
    elif kind == "non_finite":
        text = raw.decode().replace(json.dumps(event[field]), rng.choice(["NaN", "Infinity"]), 1)
        return topic, text.encode(), "schema_violation"
    elif kind == "huge":
        event[field] = rng.choice([1e308, -1e308, 10**30])
    elif kind == "naive":
        event["interval_start"] = event["interval_start"].removesuffix("Z")
    elif kind == "ends_before_start":
        event["interval_start"], event["interval_end"] = (
            event["interval_end"],
            event["interval_start"],
        )
    elif kind == "far_future":
        event["interval_start"] = "2999-01-01T00:00:00Z"
        event["interval_end"] = "2999-01-01T00:15:00Z"
    elif kind == "ancient":
        event["interval_start"] = "1900-01-01T00:00:00Z"
        event["interval_end"] = "1900-01-01T00:15:00Z"
    elif kind == "extra_field":
        event["surprise"] = 1
    elif kind == "unknown_site":
        if topic not in SITE_SCOPED:
            return topic, raw, "ok"  # only site-scoped events name a site
        event["site_id"] = "ghost-site"
        return topic, _dump(event), "unknown_site"
    return topic, _dump(event), "schema_violation"
