"""Day-ahead prices in the backtest: read from the history, released as the market publishes
them (ERCOT: 13:30 Central on the day before the operating day; a region without a rule: 12 h
before the UTC day; the first day at the window's first interval), never delayed by the
settled-price lag."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from schemas import PriceEvent
from streams.backtest.events import (
    DAY_AHEAD_PUBLICATION,
    DAY_AHEAD_RELEASE,
    day_ahead_release,
    history_intervals,
)
from streams.backtest.history import (
    ERCOT_REPLAY,
    GridHistory,
    ercot_mapping_path,
    load_mapping,
    read_history,
)
from streams.backtest.report import run_backtest
from streams.backtest.run import _feed, run_oracle, timeline
from streams.backtest.scenario import load_scenario, scenario_paths
from streams.backtest.synthetic import synthetic_week
from streams.engine.fleet import Fleet
from tests.factories import mining_site

START = datetime(2024, 8, 18, 5, tzinfo=UTC)
CENTRAL = ZoneInfo("America/Chicago")


def with_day_ahead(history: GridHistory) -> GridHistory:
    frame = history.frame.copy()
    frame["day_ahead_price_usd_per_mwh"] = frame["price_usd_per_mwh"] + 1.0
    return GridHistory(frame, history.step_minutes, history.notes, "with DA (SYNTHETIC)")


def _released(history: GridHistory, zone: tzinfo) -> dict[date, datetime]:
    """When each operating day's (a calendar day in ``zone``) first day-ahead price is sent."""
    released: dict[date, datetime] = {}
    for batch in history_intervals(history):
        for topic, event in batch.events:
            if isinstance(event, PriceEvent) and event.market == "day_ahead":
                assert topic == "grid.price.v1"
                released.setdefault(event.interval_start.astimezone(zone).date(), batch.start)
    return released


def test_ercot_day_ahead_prices_are_released_at_13_30_central_the_day_before() -> None:
    history = with_day_ahead(synthetic_week(START))  # region ERCOT, 15-minute intervals
    released = _released(history, CENTRAL)
    first = START.astimezone(CENTRAL).date()
    assert released[first] == START  # the first day: from the window's first interval
    for day, when in released.items():
        if day != first:  # 13:30 CDT on the day before = 18:30 UTC
            assert when == datetime.combine(day - timedelta(days=1), time(18, 30), UTC)
    assert len(released) >= 7
    # Every day-ahead price of an operating day arrives in one batch, at its release.
    for batch in history_intervals(history):
        days = {
            e.interval_start.astimezone(CENTRAL).date()
            for _, e in batch.events
            if isinstance(e, PriceEvent) and e.market == "day_ahead"
        }
        assert batch.start == START or len(days) <= 1


def test_the_release_follows_central_time_through_the_year_and_other_regions_keep_utc() -> None:
    # An interval at 23:30 CDT on 18 August (04:30 UTC on the 19th) is of Central day 18 August.
    summer = datetime(2024, 8, 19, 4, 30, tzinfo=UTC)
    assert day_ahead_release(summer, "ERCOT") == datetime(2024, 8, 17, 18, 30, tzinfo=UTC)
    # In winter (CST, UTC-6) 13:30 Central is 19:30 UTC.
    winter = datetime(2024, 12, 10, 5, tzinfo=UTC)  # 23:00 CST on 9 December
    assert day_ahead_release(winter, "ERCOT") == datetime(2024, 12, 8, 19, 30, tzinfo=UTC)
    # A region without a publication rule: 12 h before the interval's UTC day.
    assert "PJM" not in DAY_AHEAD_PUBLICATION
    assert day_ahead_release(summer, "PJM") == datetime(2024, 8, 18, 12, tzinfo=UTC)
    assert timedelta(hours=12) == DAY_AHEAD_RELEASE
    history = with_day_ahead(synthetic_week(START, node="PJM_DOM", region="PJM"))
    released = _released(history, UTC)
    second = START.date() + timedelta(days=1)
    assert released[second] == datetime.combine(second, time(0), UTC) - DAY_AHEAD_RELEASE


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


@pytest.mark.data
@pytest.mark.parametrize(
    "week",
    [datetime(2024, 8, 18, tzinfo=UTC), datetime(2024, 6, 9, tzinfo=UTC)],
    ids=["2024-08-18", "2024-06-09"],
)
def test_day_ahead_prices_as_the_forecast_no_longer_lose_to_the_threshold_rule(
    data_dir: Path, week: datetime
) -> None:
    """The 15-minute replay (northern-data, settled prices one interval late) with day-ahead
    prices as the forecast: the first 30 minutes after the last real-time price hold it, the
    corrected day-ahead price follows (docs/OPTIMIZER.md, "Price path"). Before, the corrected
    day-ahead price decided the next interval, and at the top of every hour lost its correction:
    gridshift earned $13,702 (August week) and $15,883 (June week) less than the threshold
    rule; now $11,731 more and the same."""
    shipped = load_scenario(scenario_paths()["northern-data"])
    market = shipped.markets[0].model_copy(update={"day_ahead_forecast": True})
    scenario = shipped.model_copy(update={"markets": (market,)})
    result = run_backtest(
        scenario,
        data_dir,
        Path("scenarios"),
        start=week,
        end=week + timedelta(days=7),
        show_progress=False,
    )
    scores = result.scores
    assert scores["gridshift"].net_margin_usd >= scores["threshold"].net_margin_usd
    kinds = result.dispatch["gridshift"].notes
    assert any("from the day-ahead forecast" in kind for kind in kinds)  # it was used


def test_the_oracle_reads_every_real_time_price_when_day_ahead_prices_come_a_day_early() -> None:
    """Day-ahead prices arrive with their release, a day before their intervals; the oracle must
    still read each day's real-time prices (here: a spike the flat day-ahead price lacks)."""
    week = synthetic_week(START)
    frame = week.frame.copy()
    frame["day_ahead_price_usd_per_mwh"] = 30.0  # flat, SYNTHETIC: no spike in the day-ahead
    history = GridHistory(frame, 15, week.notes, "flat day-ahead (SYNTHETIC)")
    starts = timeline(START, START + timedelta(days=7), 15)
    out = run_oracle(Fleet(sites=(mining_site(),)), history, starts, 15)
    spiked = [k for k, price in enumerate(frame["price_usd_per_mwh"]) if price >= 2500.0]
    assert spiked
    assert all(out.mining[0, k] == 0.0 for k in spiked)  # shed through the real-time spike
    assert out.mining[0, spiked[0] - 8] > 0.0  # and mining before it
