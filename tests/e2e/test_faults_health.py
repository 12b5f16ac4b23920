"""/health tells the truth: each test breaks one part of a running worker (a background task
cancelled, an agent crashing, deliveries failing, an output topic deleted, the broker stopped,
a feed far behind the wall clock, inputs that cannot be decided) and watches /health and /metrics
over plain HTTP turn unhealthy and name the part; where the part can recover, /health turns
healthy again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiokafka.errors import KafkaConnectionError
from confluent_kafka.admin import AdminClient

import streams.kafka.watch
import streams.worker.agents
from schemas import CarbonEvent
from streams.engine.fleet import Fleet
from streams.engine.ingest import ingest
from streams.kafka.broker import EmbeddedBroker
from streams.logs import fields
from streams.settings import Settings
from streams.worker.app import Worker
from tests.e2e.harness import (
    as_json,
    find_record,
    get_health,
    get_metrics,
    healthy,
    produce,
    unhealthy_with,
    wait_health,
    wait_listed,
    worker_on,
    worker_settings,
)
from tests.factories import T0, Q, hashprice, price, telemetry

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def observed(
    bootstrap: str, fleet: Fleet, settings: Settings
) -> AsyncIterator[tuple[Worker, aiohttp.ClientSession, str]]:
    """A worker with its HTTP API, and a plain HTTP client pointed at it."""
    async with (
        worker_on(bootstrap, fleet, settings) as worker,
        aiohttp.ClientSession() as session,
    ):
        yield worker, session, f"http://127.0.0.1:{worker.http_port}"


def http_settings(prefix: str, **overrides: Any) -> Settings:
    return worker_settings(prefix, http_enabled=True, http_port=0, **overrides)


async def test_a_stopped_or_failing_telemetry_lane_is_reported(
    broker: EmbeddedBroker,
    one_site_fleet: Fleet,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with observed(broker.bootstrap, one_site_fleet, http_settings(topic_prefix)) as (
        worker,
        session,
        url,
    ):
        body = await wait_health(session, url, healthy)
        assert body["tasks"] == {"telemetry lane": "running", "broker watch": "running"}

        # Every batch fails: the lane keeps trying (it does not die) and says so.
        async def broken(*_: object) -> None:
            raise RuntimeError("telemetry store unavailable (injected)")

        monkeypatch.setattr(worker.lane, "_fold", broken)
        await produce(
            broker.bootstrap,
            [
                (topic_prefix + "site.telemetry.v1", b"site-a", as_json(ready))
                for ready in [telemetry("site-a", 1, mining_available_mw=12.0)]
            ],
        )
        body = await wait_health(
            session, url, unhealthy_with("telemetry lane: failing", "RuntimeError")
        )
        assert body["tasks"]["telemetry lane"] == "running"
        # Repaired: the record the failing batches could not fold is read again and used.
        monkeypatch.undo()
        await produce(
            broker.bootstrap,
            [
                (topic_prefix + "market.hashprice.v1", None, as_json(hashprice())),
                (topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(1, 30.0))),
            ],
        )
        decision = await find_record(
            broker.bootstrap,
            topic_prefix + "dispatch.decision.v1",
            lambda d: "mining_available" in d["binding_constraints"],
        )
        assert decision["mining_mw"] == pytest.approx(12.0)
        await wait_health(session, url, healthy)

        # Killed: /health and the gauges say which task stopped.
        worker.tasks["telemetry lane"].cancel()
        body = await wait_health(session, url, unhealthy_with("telemetry lane: stopped"))
        assert body["tasks"]["telemetry lane"] == "cancelled"
        text = await get_metrics(session, url)
        assert 'gridshift_health_check{check="background_tasks"} 0.0' in text
        assert "gridshift_healthy 0.0" in text


async def test_an_agent_that_fails_on_an_input_is_reported_and_goes_on(
    broker: EmbeddedBroker,
    one_site_fleet: Fleet,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crashing(state: Any, topic: str, raw: bytes | None, max_bytes: int) -> Any:
        if topic == "grid.carbon.v1":
            raise ZeroDivisionError("bug in the carbon path (injected)")
        return ingest(state, topic, raw, max_bytes)

    carbon_topic = topic_prefix + "grid.carbon.v1"
    async with observed(broker.bootstrap, one_site_fleet, http_settings(topic_prefix)) as (
        worker,
        session,
        url,
    ):
        await wait_health(session, url, healthy)
        monkeypatch.setattr(streams.worker.agents, "ingest", crashing)
        carbon = CarbonEvent(
            interval_start=T0, interval_end=T0 + Q, region="ERCOT", average_intensity_g_per_kwh=9.0
        )
        await produce(broker.bootstrap, [(carbon_topic, b"ERCOT", as_json(carbon))])
        await wait_health(
            session,
            url,
            unhealthy_with(
                "agent gridshift.ingest.grid.carbon.v1: crashed",
                "ZeroDivisionError",
                f"{carbon_topic} offset 0 dead-lettered",
            ),
        )
        text = await get_metrics(session, url)
        assert 'gridshift_health_check{check="crashes"} 0.0' in text
        # The input it failed on is kept, with the error, and the agent goes on.
        letter = await find_record(
            broker.bootstrap, topic_prefix + "gridshift.deadletter.v1", lambda d: True
        )
        assert letter["original_topic"] == carbon_topic
        assert "ZeroDivisionError" in letter["error"]
        monkeypatch.undo()
        await produce(broker.bootstrap, [(carbon_topic, b"ERCOT", as_json(carbon))])
        await worker.metrics.wait_consumed(2, timeout_s=30)
        assert worker.metrics.applied() == 1
        # Sticky: a worker with a bug on some input stays reported until it is restarted.
        status, _ = await get_health(session, url)
        assert status == 503


async def test_failing_decision_deliveries_are_reported_until_they_succeed(
    broker: EmbeddedBroker,
    one_site_fleet: Fleet,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with observed(broker.bootstrap, one_site_fleet, http_settings(topic_prefix)) as (
        worker,
        session,
        url,
    ):

        async def refused(_: object) -> None:
            raise KafkaConnectionError("decision topic unreachable (injected)")

        monkeypatch.setattr(worker.planner, "publish", refused)
        await produce(
            broker.bootstrap,
            [
                (topic_prefix + "market.hashprice.v1", None, as_json(hashprice())),
                (topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(0, 30.0))),
            ],
        )
        body = await wait_health(
            session, url, unhealthy_with("decision rounds: failing", "KafkaConnectionError")
        )
        assert body["sites_decided"] == []
        monkeypatch.undo()
        # The failed round is retried with its inputs; the decision arrives.
        await find_record(
            broker.bootstrap,
            topic_prefix + "dispatch.decision.v1",
            lambda d: d["interval_start"].startswith("2024-08-20T17:00"),
        )
        await wait_health(session, url, healthy)


async def test_a_deleted_output_topic_is_reported_and_restored(
    broker: EmbeddedBroker,
    one_site_fleet: Fleet,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decisions = topic_prefix + "dispatch.decision.v1"
    settings = http_settings(topic_prefix, topic_check_interval_s=0.2)
    async with observed(broker.bootstrap, one_site_fleet, settings) as (_, session, url):
        await wait_health(session, url, healthy)

        # The broker refuses to create it again (say, no CreateTopics permission).
        async def refused(*_: object) -> list[str]:
            return []

        monkeypatch.setattr(streams.kafka.watch, "create_missing_topics", refused)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for done in admin.delete_topics([decisions]).values():
            await asyncio.to_thread(done.result, 10)
        body = await wait_health(session, url, unhealthy_with(f"topic {decisions}: missing"))
        assert body["missing_topics"] == [decisions]
        text = await get_metrics(session, url)
        assert "gridshift_topics_missing 1.0" in text
        # Inputs now: decided only once the topic exists again, and then readable.
        await produce(
            broker.bootstrap,
            [
                (topic_prefix + "market.hashprice.v1", None, as_json(hashprice())),
                (topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(0, 30.0))),
            ],
        )
        status, body = await get_health(session, url)
        assert status == 503
        assert body["sites_decided"] == []
        monkeypatch.undo()
        await wait_listed(broker.bootstrap, [decisions])
        await find_record(broker.bootstrap, decisions, lambda d: d["site_id"] == "site-a")
        await wait_health(session, url, healthy)


async def test_a_stopped_broker_is_reported_until_it_is_back(
    one_site_fleet: Fleet, topic_prefix: str
) -> None:
    broker = EmbeddedBroker()
    broker.start()
    try:
        async with observed(broker.bootstrap, one_site_fleet, http_settings(topic_prefix)) as (
            _,
            session,
            url,
        ):
            await wait_health(session, url, healthy)
            await asyncio.to_thread(broker.stop)
            body = await wait_health(
                session, url, unhealthy_with(f"broker {broker.bootstrap}: unreachable")
            )
            assert body["broker_reachable"] is False
            await asyncio.to_thread(broker.start)
            await wait_health(session, url, healthy)
    finally:
        broker.stop()


async def test_a_decision_clock_far_behind_wall_clock_is_reported(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> None:
    settings = http_settings(topic_prefix, health_max_clock_lag_s=3600.0)
    async with observed(broker.bootstrap, one_site_fleet, settings) as (_, session, url):
        await produce(
            broker.bootstrap,
            [
                (topic_prefix + "market.hashprice.v1", None, as_json(hashprice())),
                (topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(0, 30.0))),
            ],
        )
        body = await wait_health(
            session,
            url,
            unhealthy_with("decision clock of node HB_SOUTH", "behind wall clock (limit 3600 s)"),
        )
        assert body["decision_clock"] == T0.isoformat()
        assert body["clock_lag_s"] > 3600
        text = await get_metrics(session, url)
        assert 'gridshift_health_check{check="decision_clock"} 0.0' in text
        assert "gridshift_decision_clock_lag_seconds" in text


async def test_a_worker_that_cannot_decide_says_what_it_waits_for(
    broker: EmbeddedBroker,
    one_site_fleet: Fleet,
    topic_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = http_settings(topic_prefix, health_decision_silence_s=1.0)
    with caplog.at_level(logging.INFO, logger="streams.worker.replanner"):
        async with observed(broker.bootstrap, one_site_fleet, settings) as (_, session, url):
            # Before any input: waiting, but healthy (nothing went undecided).
            body = await wait_health(session, url, healthy)
            assert body["waiting_for"] == {"no real-time price for node HB_SOUTH yet": ["site-a"]}
            await produce(
                broker.bootstrap,
                [(topic_prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(0, 30.0)))],
            )
            body = await wait_health(
                session,
                url,
                unhealthy_with("decisions: none for", "waiting for: no hashprice yet (site-a)"),
            )
            assert body["waiting_for"] == {"no hashprice yet": ["site-a"]}
            text = await get_metrics(session, url)
            assert 'gridshift_sites_waiting{input="market.hashprice.v1"} 1.0' in text
            assert 'gridshift_health_check{check="decision_silence"} 0.0' in text
            await produce(
                broker.bootstrap,
                [(topic_prefix + "market.hashprice.v1", None, as_json(hashprice()))],
            )
            body = await wait_health(session, url, healthy)
            assert body["waiting_for"] == {}
    said = [
        fields(r)["waiting_for"]
        for r in caplog.records
        if r.getMessage() == "waiting for inputs before deciding"
    ]
    assert said == [{"no real-time price for node HB_SOUTH yet": 1}, {"no hashprice yet": 1}]
    assert any(r.getMessage().startswith("every site has the inputs") for r in caplog.records)
