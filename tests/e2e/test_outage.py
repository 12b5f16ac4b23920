"""Broker outage: the embedded broker is stopped mid-run and started again on the same port.
The worker and the SDK publisher reconnect without a restart, the publisher's buffer stays
bounded (publish waits), the log says what happened in a few lines, and events published during
the outage are decided after it. The broker keeps nothing across its restart: every topic the
worker reads or writes is recreated, what the worker had read there is forgotten (nothing of the
old log is committed into the new one), and decisions and dead letters made after it reach a
plain consumer, from this worker and from a fresh one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from streams.engine.fleet import Fleet, load_fleet
from streams.kafka.broker import EmbeddedBroker
from streams.logs import LogfmtFormatter, RepeatFilter
from streams.sdk import DecisionSubscriber, Publisher, PublishError
from streams.worker.app import Worker, required_topics
from tests.e2e.harness import (
    DecisionLog,
    as_json,
    committed,
    decided_at,
    end_offsets,
    find_record,
    listed_topics,
    produce,
    wait_listed,
    worker_on,
    worker_settings,
)
from tests.factories import T0, Q, hashprice, price

pytestmark = pytest.mark.e2e


class Lines(logging.Handler):
    """The log lines an operator would read (logfmt, client repeats folded)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(LogfmtFormatter())
        self.addFilter(RepeatFilter(("aiokafka", "faust", "mode")))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_worker_and_publisher_ride_out_a_broker_restart(topic_prefix: str) -> None:
    broker = EmbeddedBroker()
    broker.start()
    lines = Lines()
    logging.getLogger().addHandler(lines)
    sites = [s.site_id for s in load_fleet(None).sites]
    try:
        settings = worker_settings(topic_prefix)
        async with (
            worker_on(broker.bootstrap, load_fleet(None), settings) as worker,
            Publisher(
                broker.bootstrap,
                topic_prefix=topic_prefix,
                max_in_flight=2,
                slow_ack_warning_s=1,
                resend_attempts=1,
                client_options={"request_timeout_ms": 4000},
            ) as publisher,
        ):
            assert worker.watch is not None
            await publisher.publish("market.hashprice.v1", hashprice())
            await publisher.publish_many("grid.price.v1", [price(k, 25.0) for k in range(-3, 1)])
            await publisher.flush()
            # Read, but not necessarily decided or committed: the broker goes at once. A round
            # in flight across the outage is delivered afterwards, and its inputs' offsets, of
            # a log the broker no longer has, are not committed into the new one.
            await wait_read(worker, topic_prefix + "grid.price.v1")

            await asyncio.to_thread(broker.stop)
            await worker.watch.wait_for(up=False, timeout_s=10)
            # Publishing into the outage: two events wait for acknowledgement and the third
            # call waits behind them (bounded, no growing buffer) until the client gives up.
            during = asyncio.create_task(
                publisher.publish_many("grid.price.v1", [price(k, 30.0 + k) for k in (1, 2, 3)])
            )
            await asyncio.wait({during}, timeout=1.5)
            assert not during.done()
            assert len(publisher._pending) <= publisher.max_in_flight
            with pytest.raises(PublishError, match="did not acknowledge 2 events"):
                await asyncio.wait_for(during, timeout=60)

            await asyncio.to_thread(broker.start)
            await worker.watch.wait_for(up=True, timeout_s=20)
            # The same publisher and worker carry on; the broker kept nothing, so the
            # interval after the outage is what gets decided.
            await publisher.publish("grid.price.v1", price(4, 600.0))
            await publisher.flush()
            async with DecisionSubscriber(
                broker.bootstrap, topic_prefix=topic_prefix, from_beginning=True
            ) as subscriber:
                log = DecisionLog(aiter(subscriber))
                for site in sites:
                    shed = await log.wait_for(decided_at(site, T0 + 4 * Q), timeout_s=60)
                    assert shed.mining_mw == 0.0  # $600/MWh: the spike after the outage is shed
                await log.close()
            # Nothing of the old log was committed into the new one: what the group committed
            # there is at most what the new log holds (one price, published after the outage).
            await worker.app.consumer.commit()
            for name in ("market.hashprice.v1", "grid.price.v1"):
                topic = topic_prefix + name
                offsets = await asyncio.to_thread(
                    committed, broker.bootstrap, settings.app_id, topic
                )
                ends = await asyncio.to_thread(end_offsets, broker.bootstrap, topic)
                assert all(o <= ends[p] for p, o in offsets.items()), (topic, offsets, ends)
            assert worker.watch.logs_lost == 1
            assert worker.metrics.broker_logs_lost._value.get() == 1
            assert worker.health is not None
            facts = worker.health.check().facts  # what /health's body says
            assert facts["broker_logs_lost"] == 1 and facts["broker_outages"] == 1
            assert worker.watch.outages == 1
            # Every topic it reads or writes (six inputs, routed copies, decisions, dead
            # letters), plus faust's leader topic unless the group recreated it first.
            assert worker.watch.topics_recreated >= len(required_topics(settings))
            assert worker.metrics.broker_outages._value.get() == 1
    finally:
        logging.getLogger().removeHandler(lines)
        broker.stop()
    said = "\n".join(lines.lines)
    print(f"outage log: {len(lines.lines)} lines\n{said}")
    assert "broker unreachable" in said
    assert "broker reachable again" in said and "kept nothing across its restart" in said
    assert "waiting for the broker to acknowledge" in said
    assert "OffsetCommit failed" not in said
    # The client's reconnect loop is summarised, not a flood (it tries ~10 times a second).
    assert len(lines.lines) < 60


async def wait_read(worker: Worker, topic: str, offset: int = 3, timeout_s: float = 30) -> None:
    """Wait until the worker's faust consumer has read ``topic`` up to ``offset``."""
    consumer: Any = worker.app.consumer
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not any(
        tp.topic == topic and (o or 0) >= offset for tp, o in list(consumer._read_offset.items())
    ):
        assert asyncio.get_running_loop().time() < deadline, f"{topic} not read to {offset}"
        await asyncio.sleep(0.01)  # polling in-process state under a deadline


def at(k: int, site: str = "site-a") -> Callable[[dict[str, object]], bool]:
    """A decision (as JSON) for ``site`` and interval ``k``."""
    start = T0 + k * Q
    return lambda d: (
        d["site_id"] == site and datetime.fromisoformat(str(d["interval_start"])) == start
    )


async def test_outputs_after_a_broker_restart_reach_a_plain_consumer(
    topic_prefix: str, one_site_fleet: Fleet
) -> None:
    broker = EmbeddedBroker()
    broker.start()
    decisions = topic_prefix + "dispatch.decision.v1"
    dead_letters = topic_prefix + "gridshift.deadletter.v1"
    inputs = [
        (topic_prefix + "market.hashprice.v1", None, as_json(hashprice())),
        (topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(0, 25.0))),
    ]
    try:
        settings = worker_settings(topic_prefix, topic_check_interval_s=0.5)
        required = required_topics(settings)
        async with worker_on(broker.bootstrap, one_site_fleet, settings) as worker:
            await produce(broker.bootstrap, inputs)
            await find_record(broker.bootstrap, decisions, at(0))

            await asyncio.to_thread(broker.stop)
            await worker.watch.wait_for(up=False, timeout_s=10)
            await asyncio.to_thread(broker.start)  # same port, nothing kept
            await wait_listed(broker.bootstrap, required)
            assert {t: listed_topics(broker.bootstrap)[t] for t in required} == required
            await produce(
                broker.bootstrap,
                [
                    (topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(1, 26.0))),
                    (topic_prefix + "site.telemetry.v1", b"site-a", b"{not json"),
                ],
            )
            await find_record(broker.bootstrap, decisions, at(1))
            letter = await find_record(broker.bootstrap, dead_letters, lambda d: True)
            assert letter["original_topic"] == topic_prefix + "site.telemetry.v1"
            assert letter["reason"] == "not_json"

        # A fresh worker on the restarted broker delivers too (no UnknownError loop).
        async with worker_on(broker.bootstrap, one_site_fleet, settings):
            await produce(
                broker.bootstrap,
                [
                    (topic_prefix + "market.hashprice.v1", None, as_json(hashprice())),
                    (topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(2, 27.0))),
                ],
            )
            await find_record(broker.bootstrap, decisions, at(2))
    finally:
        broker.stop()
