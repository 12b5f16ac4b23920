"""The wire contract is strict: frozen, closed, finite, tz-aware, with sensible ranges."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import TOPICS_BY_NAME, PriceEvent
from tests.schemas.examples import VALID

INPUTS = sorted(VALID)


def with_changes(topic: str, **changes: Any) -> dict[str, Any]:
    return {**VALID[topic], **changes}


@pytest.mark.parametrize("topic", INPUTS)
def test_every_example_round_trips_through_json(topic: str) -> None:
    model = TOPICS_BY_NAME[topic].model
    event = model.model_validate(VALID[topic])
    assert model.model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize("topic", INPUTS)
def test_extra_fields_are_rejected(topic: str) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TOPICS_BY_NAME[topic].model.model_validate(with_changes(topic, surprise=1))


@pytest.mark.parametrize("topic", INPUTS)
def test_naive_timestamps_are_rejected(topic: str) -> None:
    with pytest.raises(ValidationError, match="timezone"):
        TOPICS_BY_NAME[topic].model.model_validate(
            with_changes(topic, interval_start="2024-08-21T00:30:00")
        )


@pytest.mark.parametrize("topic", INPUTS)
def test_intervals_must_end_after_they_start(topic: str) -> None:
    event = VALID[topic]
    with pytest.raises(ValidationError, match="interval_end must be after interval_start"):
        TOPICS_BY_NAME[topic].model.model_validate(
            with_changes(topic, interval_end=event["interval_start"])
        )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(bad: float) -> None:
    with pytest.raises(ValidationError):
        PriceEvent.model_validate(with_changes("grid.price.v1", price_usd_per_mwh=bad))


def test_nan_in_raw_json_is_rejected() -> None:
    raw = json.dumps(with_changes("grid.price.v1", price_usd_per_mwh=math.nan))
    assert "NaN" in raw
    with pytest.raises(ValidationError):
        PriceEvent.model_validate_json(raw)


def test_negative_price_is_legal_but_negative_capacity_is_not() -> None:
    assert PriceEvent.model_validate(with_changes("grid.price.v1", price_usd_per_mwh=-25.0))
    model = TOPICS_BY_NAME["site.telemetry.v1"].model
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        model.model_validate(with_changes("site.telemetry.v1", mining_available_mw=-1.0))


def test_models_are_frozen() -> None:
    event = PriceEvent.model_validate(VALID["grid.price.v1"])
    with pytest.raises(ValidationError, match="frozen"):
        event.price_usd_per_mwh = 1.0  # type: ignore[misc]


def test_signal_needs_exactly_one_target() -> None:
    model = TOPICS_BY_NAME["grid.signal.v1"].model
    with pytest.raises(ValidationError, match="exactly one of region or site_id"):
        model.model_validate(with_changes("grid.signal.v1", site_id="site-a"))


def test_gpu_floor_cannot_exceed_demand() -> None:
    model = TOPICS_BY_NAME["compute.demand.v1"].model
    with pytest.raises(ValidationError, match="cannot exceed demand_mw"):
        model.model_validate(with_changes("compute.demand.v1", contracted_floor_mw=9.0))


@given(
    price=st.floats(-100_000, 100_000, allow_nan=False),
    start=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    minutes=st.integers(1, 24 * 60),
)
def test_price_round_trip_property(price: float, start: datetime, minutes: int) -> None:
    event = PriceEvent(
        interval_start=start,
        interval_end=start + timedelta(minutes=minutes),
        node="HB_SOUTH",
        price_usd_per_mwh=price,
    )
    assert PriceEvent.model_validate_json(event.model_dump_json()) == event


def test_reserve_prices_are_capacity_prices_of_known_products() -> None:
    model = TOPICS_BY_NAME["grid.reserve.v1"].model
    assert model.model_validate(with_changes("grid.reserve.v1", price_usd_per_mw_h=0.0))
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        model.model_validate(with_changes("grid.reserve.v1", price_usd_per_mw_h=-1.0))
    with pytest.raises(ValidationError, match="'reg_up', 'reg_down', 'rrs', 'ecrs' or 'non_spin'"):
        model.model_validate(with_changes("grid.reserve.v1", product="spinning"))
    with pytest.raises(ValidationError, match="'day_ahead'"):
        model.model_validate(with_changes("grid.reserve.v1", market="real_time"))


def test_a_reserve_deployment_needs_the_mw_deployed() -> None:
    model = TOPICS_BY_NAME["grid.signal.v1"].model
    deployment = with_changes("grid.signal.v1", signal_type="reserve_deployment", limit_mw=None)
    with pytest.raises(ValidationError, match="reserve_deployment needs reduction_mw"):
        model.model_validate(deployment)
    assert model.model_validate({**deployment, "reduction_mw": 10.0})
