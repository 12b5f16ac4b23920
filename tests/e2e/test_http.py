"""The worker's HTTP API over real TCP, on the embedded broker: token-guarded ingest, the
latest plan, a server-sent-event stream of decisions, health and Prometheus metrics (the
refusals in detail: test_http_requests.py, test_http_exposure.py, test_http_keys.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from schemas import INPUT_ROUTES, INPUT_TOPICS, DispatchDecision
from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.worker.app import Worker
from tests.e2e.harness import worker_on, worker_settings
from tests.factories import hashprice, price, telemetry

pytestmark = pytest.mark.e2e
TOKEN = "t0k3n-for-tests"


@pytest.fixture
async def api(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> AsyncIterator[tuple[Worker, str]]:
    settings = worker_settings(topic_prefix, http_enabled=True, http_port=0, http_token=TOKEN)
    async with worker_on(broker.bootstrap, one_site_fleet, settings) as worker:
        yield worker, f"http://127.0.0.1:{worker.http_port}"


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def first_sse_decision(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/v1/decisions/stream", headers=auth()) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async with asyncio.timeout(30):
            async for line in response.content:
                if line.startswith(b"data: "):
                    payload: dict[str, Any] = json.loads(line[6:])
                    return payload
    raise AssertionError("stream ended")


async def test_ingest_decide_stream_health_and_metrics(api: tuple[Worker, str]) -> None:
    worker, base = api
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/health") as response:
            health = await response.json()
        assert response.status == 200
        assert health["status"] == "ok"
        assert health["broker_reachable"] is True
        assert health["consumer_lag"] == 0

        hp = hashprice().model_dump(mode="json")
        async with session.post(f"{base}/v1/events/market.hashprice.v1", json=hp) as response:
            assert response.status == 401
        async with session.post(
            f"{base}/v1/events/market.hashprice.v1", json=hp, headers=auth("wrong")
        ) as response:
            assert response.status == 401
        bad = {**price(0, 20.0).model_dump(mode="json"), "price_usd_per_mwh": "cheap"}
        async with session.post(
            f"{base}/v1/events/grid.price.v1", json=bad, headers=auth()
        ) as response:
            assert response.status == 400
            assert "price_usd_per_mwh" in await response.text()

        stream = asyncio.create_task(first_sse_decision(session, base))
        for topic, event in (
            ("market.hashprice.v1", hashprice()),
            ("grid.price.v1", price(0, 20.0)),
        ):
            async with session.post(
                f"{base}/v1/events/{topic}", json=event.model_dump(mode="json"), headers=auth()
            ) as response:
                assert response.status == 202
                assert (await response.json())["published"] == 1
        streamed = DispatchDecision.model_validate(await stream)
        assert streamed.site_id == "site-a"

        async with asyncio.timeout(30):  # the group's assignment reaches /health
            while True:
                async with session.get(f"{base}/health") as response:
                    health = await response.json()
                if health["sites_owned"] and health["sites_decided"]:
                    break
                await asyncio.sleep(0.05)  # polling the worker's HTTP state, bounded above
        assert health["sites_owned"] == health["sites_decided"] == ["site-a"]
        # Reads need a token too: the write token when no read token is set.
        async with session.get(f"{base}/v1/sites") as response:
            assert response.status == 401
        async with session.get(f"{base}/v1/sites/site-a/decision", headers=auth()) as response:
            latest = DispatchDecision.model_validate(await response.json())
        assert latest.decision_id == streamed.decision_id
        async with session.get(f"{base}/v1/sites/nowhere/decision", headers=auth()) as response:
            assert response.status == 404
        async with session.get(f"{base}/v1/sites", headers=auth()) as response:
            (site,) = await response.json()
        assert site["latest_decision_id"] == streamed.decision_id

        # The short route per input kind: telemetry as an operator's agent would post it.
        async with session.post(
            f"{base}/v1/telemetry",
            json=telemetry("site-a", 0).model_dump(mode="json"),
            headers=auth(),
        ) as response:
            assert response.status == 202
            assert (await response.json())["topic"] == "site.telemetry.v1"

        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
    assert 'gridshift_events_in_total{topic="grid.price.v1"} 1.0' in text
    assert 'gridshift_decisions_out_total{fallback="none"}' in text
    assert "gridshift_solve_seconds_count" in text
    assert "gridshift_consumer_lag " in text
    assert "gridshift_broker_up 1.0" in text
    assert worker.planner.decisions_published >= 1


async def test_writes_are_refused_without_a_configured_token(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> None:
    settings = worker_settings(topic_prefix, http_enabled=True, http_port=0)
    async with (
        worker_on(broker.bootstrap, one_site_fleet, settings) as worker,
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{worker.http_port}/v1/events/grid.price.v1",
            json=price(0, 1.0).model_dump(mode="json"),
            headers=auth(),
        ) as response,
    ):
        assert response.status == 403
        assert "GRIDSHIFT_HTTP_TOKEN" in await response.text()


def test_every_input_topic_has_a_short_route() -> None:
    assert sorted(INPUT_ROUTES.values()) == sorted(INPUT_TOPICS)
