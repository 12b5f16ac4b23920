"""HTTP ingest checks each event's key against the fleet file before publishing: an unknown
site, price node or carbon region is a 422 that names the key and the known ones, and nothing
reaches Kafka (the worker would dead-letter or ignore it after the client had been told 202)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel

from schemas import ComputeDemandEvent, GridSignalEvent
from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from tests.e2e.harness import read_records, worker_on, worker_settings
from tests.factories import T0, Q, mining_site, price, telemetry

pytestmark = pytest.mark.e2e
TOKEN = "keys-t0k3n"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Api:
    base: str
    bootstrap: str
    prefix: str
    #: The keys of the valid events published so far, per topic, in order.
    published: dict[str, list[bytes]] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def api(broker: EmbeddedBroker) -> AsyncIterator[Api]:
    """One worker for a two-site fleet: site-a (HB_SOUTH, ERCOT) and site-b (HB_WEST, ERCOT)."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    fleet = Fleet(sites=(mining_site(), mining_site(site_id="site-b", price_node="HB_WEST")))
    settings = worker_settings(
        prefix, http_enabled=True, http_port=0, http_token=TOKEN, topic_partitions=1
    )
    async with worker_on(broker.bootstrap, fleet, settings) as worker:
        yield Api(f"http://127.0.0.1:{worker.http_port}", broker.bootstrap, prefix)


def demand(site_id: str) -> ComputeDemandEvent:
    return ComputeDemandEvent(
        interval_start=T0,
        interval_end=T0 + Q,
        site_id=site_id,
        contracted_floor_mw=1.0,
        demand_mw=2.0,
        value_usd_per_mwh=1500.0,
    )


def signal(**target: str) -> GridSignalEvent:
    return GridSignalEvent(
        interval_start=T0,
        interval_end=T0 + Q,
        signal_id="sig-1",
        signal_type="curtailment",
        limit_mw=5.0,
        **target,
    )


def carbon(region: str) -> dict[str, Any]:
    return {
        "interval_start": T0.isoformat(),
        "interval_end": (T0 + Q).isoformat(),
        "region": region,
        "average_intensity_g_per_kwh": 400.0,
    }


def body(event: BaseModel | dict[str, Any]) -> dict[str, Any]:
    return event.model_dump(mode="json") if isinstance(event, BaseModel) else event


# route, an event with an unknown key, the words the answer must hold, a valid event
CASES = {
    "telemetry, unknown site": (
        "telemetry",
        telemetry("nope", 0),
        ["unknown site 'nope'", "site-a, site-b"],
        telemetry("site-a", 0),
    ),
    "compute demand, unknown site": (
        "compute-demand",
        demand("nope"),
        ["unknown site 'nope'", "site-a, site-b"],
        demand("site-b"),
    ),
    "signal, unknown site": (
        "signals",
        signal(site_id="nope"),
        ["unknown site 'nope'", "site-a, site-b"],
        signal(site_id="site-a"),
    ),
    "signal, unknown region": (
        "signals",
        signal(region="PJM"),
        ["unknown region 'PJM'", "ERCOT"],
        signal(region="ERCOT"),
    ),
    "price, unknown node": (
        "prices",
        price(0, 30.0, node="HB_NORTH"),
        ["unknown price node 'HB_NORTH'", "HB_SOUTH, HB_WEST"],
        price(0, 30.0, node="HB_WEST"),
    ),
    "carbon, unknown region": (
        "carbon",
        carbon("CAISO"),
        ["unknown region 'CAISO'", "ERCOT"],
        carbon("ERCOT"),
    ),
}
TOPICS = {
    "telemetry": "site.telemetry.v1",
    "compute-demand": "compute.demand.v1",
    "signals": "grid.signal.v1",
    "prices": "grid.price.v1",
    "carbon": "grid.carbon.v1",
}


@pytest.mark.parametrize(("route", "unknown", "words", "valid"), CASES.values(), ids=CASES)
async def test_an_unknown_key_is_a_422_and_nothing_is_published(
    api: Api,
    route: str,
    unknown: BaseModel | dict[str, Any],
    words: list[str],
    valid: BaseModel | dict[str, Any],
) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        async with session.post(f"{api.base}/v1/{route}", json=body(unknown)) as response:
            text = await response.text()
            assert response.status == 422, text
        assert "\n" not in text.strip()
        for word in words:
            assert word in text
        # A list with one unknown key among valid events: the whole list is refused.
        batch = [body(valid), body(unknown)]
        async with session.post(f"{api.base}/v1/{route}", json=batch) as response:
            assert response.status == 422
            assert (await response.text()).startswith("event 2: unknown")
        async with session.post(f"{api.base}/v1/{route}", json=body(valid)) as response:
            assert response.status == 202, await response.text()

    # One partition, so the log is in send order: the valid events sent to this topic so far
    # are its only records, and no refused request sent anything.
    sent = body(valid)
    topic = api.prefix + TOPICS[route]
    api.published.setdefault(topic, []).append(
        str(sent.get("site_id") or sent.get("node") or sent.get("region")).encode()
    )
    records = await read_records(api.bootstrap, topic, len(api.published[topic]))
    assert [r.key for r in records] == api.published[topic]


async def test_a_field_named_twice_is_a_400_and_nothing_is_published(api: Api) -> None:
    # Parsed and re-encoded before it is published, the duplicate would vanish and the last
    # value ($9,999) go in; the worker's own check never sees it. Refused here instead.
    raw = (
        '{"interval_start":"2024-08-01T01:00:00Z","interval_end":"2024-08-01T01:15:00Z",'
        '"node":"HB_SOUTH","price_usd_per_mwh":31,"price_usd_per_mwh":9999}'
    )
    headers = {**AUTH, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{api.base}/v1/prices", data=raw) as response:
            text = await response.text()
            assert response.status == 400, text
        assert text.startswith("duplicate key 'price_usd_per_mwh'")
        # A valid event after it: every record up to that one is a valid event of this module.
        async with session.post(f"{api.base}/v1/prices", data=raw.rsplit(",", 1)[0] + "}") as ok:
            assert ok.status == 202, await ok.text()
    topic = api.prefix + TOPICS["prices"]
    api.published.setdefault(topic, []).append(b"HB_SOUTH")
    records = await read_records(api.bootstrap, topic, len(api.published[topic]))
    assert [r.key for r in records] == api.published[topic]
    assert all(b"9999" not in (r.value or b"") for r in records)
