"""Crash test: the worker is SIGKILLed at random points three times and restarted while a
stream of uniquely identified inputs flows. Afterwards every input was processed, every
expected decision exists, and the duplicates (from the uncommitted window) are removed by id."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from collections import Counter

import pytest

from streams.engine.fleet import load_fleet
from streams.kafka.broker import EmbeddedBroker
from streams.sdk import DecisionSubscriber, Publisher
from streams.worker.spawn import spawn_worker
from tests.e2e.harness import DecisionLog, decided_at
from tests.factories import T0, Q, hashprice, price

pytestmark = pytest.mark.e2e
INTERVALS = 36
KILLS = 3


def start_worker(bootstrap: str, prefix: str) -> subprocess.Popen[bytes]:
    return spawn_worker(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        app_id=f"{prefix}crash",
        http_enabled=False,
        log_level="WARNING",
    )


async def test_sigkill_three_times_loses_nothing(broker: EmbeddedBroker, topic_prefix: str) -> None:
    rng = random.Random(7)
    kill_at = sorted(rng.sample(range(3, INTERVALS - 2), KILLS))
    sites = [s.site_id for s in load_fleet(None).sites]
    worker = start_worker(broker.bootstrap, topic_prefix)
    kills = 0
    try:
        async with (
            Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher,
            DecisionSubscriber(
                broker.bootstrap, topic_prefix=topic_prefix, from_beginning=True
            ) as subscriber,
        ):
            log = DecisionLog(aiter(subscriber))
            await publisher.publish("market.hashprice.v1", hashprice())
            for k in range(INTERVALS):
                await publisher.publish("grid.price.v1", price(k, 20.0 + 37.0 * (k % 5)))
                await publisher.flush()
                if k in kill_at:
                    # Fault injection at a random point: right away, or while it decides.
                    await asyncio.sleep(rng.choice([0.0, 0.02, 0.2, 1.0]))
                    worker.send_signal(signal.SIGKILL)
                    await asyncio.to_thread(worker.wait, 30)
                    kills += 1
                    worker = start_worker(broker.bootstrap, topic_prefix)
                for site in sites:
                    await log.wait_for(decided_at(site, T0 + k * Q), timeout_s=90)
            await log.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 30)
    decided = Counter((d.site_id, d.interval_start) for d in log.seen)
    expected = {(s, T0 + k * Q) for s in sites for k in range(INTERVALS)}
    missing = expected - set(decided)
    print(
        f"\ncrash test: kills={kills} inputs={INTERVALS + 1} expected decisions={len(expected)} "
        f"missing={len(missing)} duplicates dropped by id={subscriber.duplicates_dropped} "
        f"distinct decisions={len(log.seen)}"
    )
    assert kills == KILLS
    assert not missing
    assert len({d.decision_id for d in log.seen}) == len(log.seen)
