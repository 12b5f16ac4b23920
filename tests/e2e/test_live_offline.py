"""Live equals offline: a window of real ERCOT history replayed through Kafka and the worker
yields exactly the decisions (same deterministic ids) of the offline backtest on the same
window, and so does a second replay into fresh topics. A fleet with a battery decides the same
both ways too: every model feature reaches both paths through the one engine round."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from optimizer import Horizon
from schemas import DispatchDecision
from streams.backtest.events import history_intervals
from streams.backtest.history import ERCOT_REPLAY, ercot_mapping_path, load_mapping, read_history
from streams.backtest.run import run_gridshift, timeline
from streams.engine.fleet import Fleet, load_fleet
from streams.kafka.broker import EmbeddedBroker
from streams.sdk import DecisionSubscriber, Publisher
from tests.e2e.harness import DecisionLog, worker_on, worker_settings

pytestmark = [pytest.mark.e2e, pytest.mark.data]
START = datetime(2024, 8, 20, 22, 0, tzinfo=UTC)  # into the 20 August scarcity evening
END = START + timedelta(hours=4)


def price_decision(site_id: str, start: datetime) -> Callable[[DispatchDecision], bool]:
    """The decision the price of ``start`` triggers at ``site_id``."""
    return lambda d: d.site_id == site_id and d.interval_start == start and d.trigger == "price"


def battery_fleet() -> Fleet:
    """The example fleet with a 10 MW / 20 MWh battery at the AI site."""
    example = load_fleet(None)
    sites = tuple(
        site.model_copy(update={"battery_power_mw": 10.0, "battery_energy_mwh": 20.0})
        if site.site_id == "tx-south-ai"
        else site
        for site in example.sites
    )
    return example.model_copy(update={"sites": sites})


@pytest.mark.parametrize(
    ("fleet_name", "replays"), [("example", 2), ("battery", 1)], ids=["example", "battery"]
)
async def test_live_replay_equals_offline_backtest(
    broker: EmbeddedBroker, data_dir: Path, fleet_name: str, replays: int
) -> None:
    fleet = load_fleet(None) if fleet_name == "example" else battery_fleet()
    history = read_history(data_dir / ERCOT_REPLAY, load_mapping(ercot_mapping_path())).window(
        pd.Timestamp(START - timedelta(hours=1)), pd.Timestamp(END)
    )
    horizon = Horizon.mixed(fine_steps=4, fine_minutes=15, coarse_minutes=60, total_hours=3)
    starts = timeline(START - timedelta(hours=1), END, 15)
    offline = run_gridshift(fleet, history, starts, horizon, lag=0)
    expected = {(d.site_id, d.interval_start): d.decision_id for d in offline.decisions}
    assert len(expected) == len(starts) * len(fleet.sites)

    for run in range(replays):
        prefix = f"live{run}-{fleet_name}-{START:%H%M}-{id(history)}."
        settings = worker_settings(
            prefix,
            horizon_fine_steps=4,
            horizon_fine_minutes=15,
            horizon_coarse_minutes=60,
            horizon_hours=3,
        )
        async with (
            worker_on(broker.bootstrap, fleet, settings) as worker,
            DecisionSubscriber(
                broker.bootstrap, topic_prefix=prefix, from_beginning=True
            ) as subscriber,
            Publisher(broker.bootstrap, topic_prefix=prefix) as publisher,
        ):
            log = DecisionLog(aiter(subscriber))
            sent = 0
            for batch in history_intervals(history):
                # Context (carbon, hashprice) first and consumed, then the price that ticks the
                # clock: the order a live feed has, made deterministic across topics.
                context = [e for e in batch.events if e[0] != "grid.price.v1"]
                ticks = [e for e in batch.events if e[0] == "grid.price.v1"]
                for group in (context, ticks):
                    for topic, event in group:
                        await publisher.publish(topic, event)
                    await publisher.flush()
                    sent += len(group)
                    await worker.metrics.wait_consumed(sent, timeout_s=30)
                for site in fleet.sites:
                    await log.wait_for(price_decision(site.site_id, batch.start))
            await log.close()
        live = {
            (d.site_id, d.interval_start): d.decision_id for d in log.seen if d.trigger == "price"
        }
        assert live == expected, f"replay {run + 1} differs from the offline backtest"
