"""Live equals offline for a flexible load: the ``ercot-flexible-load`` scenario's site around
ERCOT's 8 September 2023 4CP interval (16:30 CDT, 21:30 UTC), the day after a conservation
appeal, replayed through Kafka into the worker with everything the backtest's gridshift strategy
gets: hourly day-ahead hub prices, carbon, hashprice, the 4CP forecaster's signals, ECRS/RRS
day-ahead clearing prices and the appeal, each published at the instant it became known
(``streams/replay.py``). The decisions each price triggers are exactly the offline backtest's on
the same window (same deterministic ids, same reserve MW), reserve sold day-ahead in the first
hours of the window held in its last ones, mining shed at the forecast peak hours.

Real data only (``GRIDSHIFT_DATA_DIR``); the window is 28 hourly decisions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from schemas import DispatchDecision, GridSignalEvent, PriceEvent, ReservePriceEvent
from streams.backtest.coincident_peak_history import read_4cp
from streams.backtest.events import history_intervals
from streams.backtest.run import run_gridshift
from streams.kafka.broker import EmbeddedBroker
from streams.replay import scenario_replay, with_extras
from streams.sdk import DecisionSubscriber, Publisher
from tests.e2e.harness import DecisionLog, worker_on, worker_settings

pytestmark = [pytest.mark.e2e, pytest.mark.data]
SCENARIO = "ercot-flexible-load"
START = datetime(2023, 9, 7, 20, 0, tzinfo=UTC)  # the 7 September appeal (22:00-02:00 UTC)
END = datetime(2023, 9, 9, 0, 0, tzinfo=UTC)  # past the 8 September 4CP interval
STALE_PRICE_AFTER = timedelta(seconds=1800)  # the worker's default watchdog, offline too


def price_decision(site_id: str, start: datetime) -> Callable[[DispatchDecision], bool]:
    """The decision the price of ``start`` triggers at ``site_id``."""
    return lambda d: d.site_id == site_id and d.interval_start == start and d.trigger == "price"


def is_tick(topic: str, event: object) -> bool:
    """A real-time price: the input that moves the worker's clock and answers an interval."""
    return (
        topic == "grid.price.v1" and isinstance(event, PriceEvent) and event.market == "real_time"
    )


async def test_flexible_load_replay_equals_offline_backtest(
    broker: EmbeddedBroker, data_dir: Path, topic_prefix: str
) -> None:
    replay = scenario_replay(SCENARIO, data_dir, START, END)
    fleet = replay.scenario.fleet()
    (site,) = fleet.sites
    assert site.reserve_products, "the scenario's site sells reserve"
    # The window holds what it is chosen for: a 4CP interval, the forecaster's peak signals,
    # reserve prices and a grid emergency request.
    peaks = read_4cp(data_dir)["start_utc"]
    assert any(START <= p.to_pydatetime() < END for p in peaks)
    kinds = {
        e.signal_type if isinstance(e, GridSignalEvent) else type(e).__name__
        for _, e in replay.extra
    }
    assert {"coincident_peak", "demand_response", ReservePriceEvent.__name__} <= kinds, kinds

    horizon = replay.scenario.horizon.build()
    offline = run_gridshift(
        fleet,
        replay.history,
        replay.starts,
        horizon,
        lag=replay.scenario.price_lag_intervals,
        stale_price_after=STALE_PRICE_AFTER,
        extra=replay.extra,
    )
    expected = {d.interval_start: d.decision_id for d in offline.decisions}
    assert len(expected) == len(replay.starts)
    expected_reserve = {
        start: {p: float(held[0, k]) for p, held in offline.reserve.items()}
        for k, start in enumerate(replay.starts)
    }
    # Not a vacuous match: reserve sold in the window's first hours is held in its last ones,
    # and mining is shed at the forecast peak.
    assert any(sum(mw.values()) > 0 for mw in expected_reserve.values())
    assert offline.mining[0, replay.starts.index(datetime(2023, 9, 8, 21, tzinfo=UTC))] == 0.0

    config = replay.scenario.horizon
    settings = worker_settings(
        topic_prefix,
        horizon_fine_steps=config.fine_steps,
        horizon_fine_minutes=config.fine_minutes,
        horizon_coarse_minutes=config.coarse_minutes,
        horizon_hours=config.hours,
        stale_price_after_s=STALE_PRICE_AFTER.total_seconds(),
    )
    async with (
        worker_on(broker.bootstrap, fleet, settings) as worker,
        DecisionSubscriber(
            broker.bootstrap, topic_prefix=topic_prefix, from_beginning=True
        ) as subscriber,
        Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher,
    ):
        log = DecisionLog(aiter(subscriber))
        sent = 0
        for batch in with_extras(history_intervals(replay.history), replay.extra):
            # Everything known by the interval's start first, and consumed (extras, day-ahead
            # prices, carbon, hashprice), then the real-time price that ticks the clock: the
            # backtest decides each interval with everything known by its start.
            context = [(t, e) for t, e in batch.events if not is_tick(t, e)]
            ticks = [(t, e) for t, e in batch.events if is_tick(t, e)]
            for group in (context, ticks):
                for topic, event in group:
                    await publisher.publish(topic, event)
                await publisher.flush()
                sent += len(group)
                await worker.metrics.wait_consumed(sent, timeout_s=30)
            if ticks:
                await log.wait_for(price_decision(site.site_id, batch.start))
        await log.close()
    # The decision each interval's price triggered (the first price decision for it: inputs
    # known later, such as the next interval's day-ahead prices, may re-decide it afterwards).
    live: dict[datetime, tuple[str, dict[str, float]]] = {}
    for d in log.seen:
        if d.site_id == site.site_id and d.trigger == "price":
            live.setdefault(
                d.interval_start, (d.decision_id, {str(p): mw for p, mw in d.reserve_mw.items()})
            )
    assert {start: ids for start, (ids, _) in live.items()} == expected
    for start, (_, reserve) in live.items():
        for product, mw in expected_reserve[start].items():
            assert np.isclose(reserve.get(product, 0.0), mw, atol=1e-6), (start, product)
