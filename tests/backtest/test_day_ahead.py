"""Day-ahead prices in the backtest: read from the history, released 12 h before their UTC day
(the first day at the window's first interval), never delayed by the settled-price lag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from schemas import PriceEvent
from streams.backtest.events import DAY_AHEAD_RELEASE, history_intervals
from streams.backtest.history import (
    ERCOT_REPLAY,
    GridHistory,
    ercot_mapping_path,
    load_mapping,
    read_history,
)
from streams.backtest.run import _feed
from streams.backtest.synthetic import synthetic_week

START = datetime(2024, 8, 18, 5, tzinfo=UTC)


def with_day_ahead(history: GridHistory) -> GridHistory:
    frame = history.frame.copy()
    frame["day_ahead_price_usd_per_mwh"] = frame["price_usd_per_mwh"] + 1.0
    return GridHistory(frame, history.step_minutes, history.notes, "with DA (SYNTHETIC)")


def test_day_ahead_prices_are_released_twelve_hours_before_their_day() -> None:
    history = with_day_ahead(synthetic_week(START))
    released: dict[datetime, datetime] = {}
    for batch in history_intervals(history):
        for topic, event in batch.events:
            if isinstance(event, PriceEvent) and event.market == "day_ahead":
                assert topic == "grid.price.v1"
                day = event.interval_start.replace(hour=0, minute=0)
                released.setdefault(day, batch.start)
    first_day = START.replace(hour=0)
    assert released[first_day] == START  # the first day: from the window's first interval
    second = first_day + timedelta(days=1)
    assert released[second] == second - DAY_AHEAD_RELEASE
    assert timedelta(hours=12) == DAY_AHEAD_RELEASE
    # Every day's DA price is known before the day starts (except the first).
    assert all(when < day or day == first_day for day, when in released.items())


def test_the_settled_price_lag_applies_to_real_time_prices_only() -> None:
    history = with_day_ahead(synthetic_week(START))
    for available, event in _feed(history, 1):
        if isinstance(event, PriceEvent) and event.market == "day_ahead":
            assert available <= max(START, event.interval_start - timedelta(hours=5))
        elif isinstance(event, PriceEvent):
            assert available == event.interval_end


@pytest.mark.data
def test_the_ercot_replay_mapping_reads_the_day_ahead_column(data_dir: Path) -> None:
    history = read_history(data_dir / ERCOT_REPLAY, load_mapping(ercot_mapping_path()))
    frame = history.frame
    assert "day_ahead_price_usd_per_mwh" in frame.columns
    assert frame["day_ahead_price_usd_per_mwh"].notna().mean() > 0.95
    first = frame["interval_start_utc"].iloc[0]
    assert first == pd.Timestamp("2024-06-01T05:00:00Z")
    assert frame["day_ahead_price_usd_per_mwh"].iloc[0] == pytest.approx(24.57)
