"""Inputs compressed by their producer are read like any other: every codec a Kafka producer may
use (lz4, zstd, snappy; gzip needs no extra library) is decoded by the worker's faust consumer,
by its telemetry lane and by its start-up recovery. Before the codec libraries were part of the
worker's dependencies, one lz4 price stopped faust's fetcher for good (no decision, /health 200)
and the next start died in recovery with a traceback.

A record batch that no codec decodes (marked lz4, payload not lz4) still stops faust's fetcher:
/health says so, and the next start names the record and how to skip it in one line."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from confluent_kafka import Producer

from streams.engine.fleet import Fleet
from streams.errors import GridshiftError
from streams.kafka.broker import EmbeddedBroker
from streams.worker.telemetry import lane_group
from tests.e2e.harness import (
    as_json,
    decision_at,
    find_record,
    get_health,
    get_metrics,
    healthy,
    produce,
    unhealthy_with,
    until,
    wait_committed,
    wait_health,
    worker_on,
    worker_settings,
)
from tests.factories import T0, Q, hashprice, price, telemetry

pytestmark = pytest.mark.e2e

#: The price of interval k, and the codec it is produced with.
PRICES = {0: ("lz4", 31.0), 1: ("zstd", 32.0), 2: ("snappy", 33.0)}


def producer_config(codec: str) -> dict[str, str | int]:
    """An outside producer compressing with ``codec``; keys partitioned as Kafka's Java client
    does (murmur2), which is how the worker maps a site to a partition."""
    return {"compression.type": codec, "linger.ms": 0, "partitioner": "murmur2_random"}


async def test_lz4_zstd_and_snappy_inputs_are_decided_and_a_restart_reads_them(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap
    settings = worker_settings(topic_prefix, debounce_ms=0, http_enabled=True, http_port=0)
    prices_topic = topic_prefix + "grid.price.v1"
    telemetry_topic = topic_prefix + "site.telemetry.v1"
    decisions_topic = topic_prefix + "dispatch.decision.v1"
    async with worker_on(bootstrap, one_site_fleet, settings) as worker:
        # Telemetry (zstd) through the lane: 12 MW of miners ready bounds mining.
        ready = telemetry("site-a", 0, mining_available_mw=12.0)
        await produce(
            bootstrap, [(telemetry_topic, b"site-a", as_json(ready))], **producer_config("zstd")
        )
        await until(lambda: "site-a" in worker.state.telemetry, "the zstd telemetry record applied")
        await produce(
            bootstrap,
            [(topic_prefix + "market.hashprice.v1", None, as_json(hashprice()))],
            **producer_config("gzip"),
        )
        # One price per codec, each decided before the next (read by a plain consumer).
        for k, (codec, value) in PRICES.items():
            await produce(
                bootstrap,
                [(prices_topic, b"HB_SOUTH", as_json(price(k, value)))],
                **producer_config(codec),
            )
            decision = await find_record(
                bootstrap,
                decisions_topic,
                lambda d, k=k: (  # type: ignore[misc]
                    d["site_id"] == "site-a"
                    and d["interval_start"].startswith((T0 + k * Q).strftime("%Y-%m-%dT%H:%M"))
                ),
            )
            assert decision["mining_mw"] == pytest.approx(12.0), codec
        async with aiohttp.ClientSession() as session:
            status, body = await get_health(session, f"http://127.0.0.1:{worker.http_port}")
        assert status == 200, body
        # Everything read is committed: the restart below replays all of it.
        await wait_committed(bootstrap, settings.app_id, prices_topic, len(PRICES))
        await wait_committed(bootstrap, lane_group(settings.app_id), telemetry_topic, 1)

    # Restarted over the compressed records: recovery reads them back into the state.
    async with worker_on(bootstrap, one_site_fleet, settings) as restarted:
        curve = restarted.state.prices["HB_SOUTH"]
        for k, (_, value) in PRICES.items():
            found = curve.at(T0 + k * Q)
            assert found is not None
            assert found.value == pytest.approx(value)
        assert restarted.state.telemetry["site-a"].mining_available_mw == pytest.approx(12.0)


async def produce_on(bootstrap: str, topic: str, partition: int, value: bytes, codec: str) -> None:
    """One record onto ``partition`` of ``topic``, compressed with ``codec``."""
    producer = Producer({"bootstrap.servers": bootstrap, **producer_config(codec)})
    producer.produce(topic, key=b"HB_SOUTH", value=value, partition=partition)
    assert await asyncio.to_thread(producer.flush, 30) == 0, "not acknowledged"


# ---------------------------------------------------------------------- a batch no codec reads
class _NotLz4(_DefaultRecordBatchBuilderPy):  # type: ignore[misc]
    """A record batch marked lz4 whose payload is not lz4: what a faulty producer (or a damaged
    log) could leave on a topic. The broker stores it; aiokafka cannot decode it."""

    def _maybe_compress(self) -> bool:
        del self._buffer[self.HEADER_STRUCT.size :]
        self._buffer.extend(b"this is not an lz4 frame")
        return True


async def produce_undecodable(bootstrap: str, topic: str, partition: int) -> None:
    """One such batch (one price record) onto ``partition`` of ``topic``, sent as a raw produce
    request (no client library writes one)."""
    builder = _NotLz4(
        magic=2,
        compression_type=_NotLz4.CODEC_LZ4,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    builder.append(0, timestamp=None, key=b"HB_SOUTH", value=as_json(price(0, 30.0)), headers=[])
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client._wait_on_metadata(topic)
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        request = ProduceRequest(
            transactional_id=None,
            required_acks=-1,
            timeout=10_000,
            topics=[(topic, [(partition, bytes(builder.build()))])],
        )
        response = await client.send(leader, request)
    finally:
        await client.close()
    ((_, ((_, error_code, *_),)),) = response.topics
    assert error_code == 0, response


async def test_a_record_no_codec_can_decode_stops_the_fetcher_and_health_says_so(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap
    settings = worker_settings(topic_prefix, debounce_ms=0, http_enabled=True, http_port=0)
    async with (
        worker_on(bootstrap, one_site_fleet, settings) as worker,
        aiohttp.ClientSession() as session,
    ):
        url = f"http://127.0.0.1:{worker.http_port}"
        await wait_health(session, url, healthy)
        await produce_undecodable(bootstrap, topic_prefix + "grid.price.v1", 0)
        # faust's fetcher dies on it: nothing more is read, and /health says so (was: 200 ok).
        body = await wait_health(
            session, url, unhealthy_with("input fetcher: crashed", "DecompressionError")
        )
        assert any("no decision" in line for line in body["problems"]), body
        text = await get_metrics(session, url)
        assert 'gridshift_health_check{check="crashes"} 0.0' in text


async def test_the_next_start_names_the_record_it_cannot_read_in_one_line(
    broker: EmbeddedBroker, one_site_fleet: Fleet, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap
    settings = worker_settings(topic_prefix, debounce_ms=0)
    prices_topic = topic_prefix + "grid.price.v1"
    async with worker_on(bootstrap, one_site_fleet, settings):
        # Offset 0 of partition 0: a good price (lz4), decided and committed.
        await produce(
            bootstrap, [(topic_prefix + "market.hashprice.v1", None, as_json(hashprice()))]
        )
        await produce_on(bootstrap, prices_topic, 0, as_json(price(0, 30.0)), "lz4")
        await find_record(bootstrap, topic_prefix + "dispatch.decision.v1", decision_at(0))
        await wait_committed(bootstrap, settings.app_id, prices_topic, 1, partition=0)
    # While it is stopped: a good price at offset 1, then the batch no codec decodes at 2 (one
    # fetch from offset 1 holds both; aiokafka's error names neither).
    await produce_on(bootstrap, prices_topic, 0, as_json(price(1, 31.0)), "zstd")
    await produce_undecodable(bootstrap, prices_topic, 0)

    # The next start names the record and how to skip it, in one line (was: a traceback).
    with pytest.raises(GridshiftError) as raised:
        async with worker_on(bootstrap, one_site_fleet, settings):
            pytest.fail("the worker started over a record it cannot read")
    line = str(raised.value)
    assert "\n" not in line
    assert f"{prices_topic} partition 0 offset 2" in line
    assert "DecompressionError" in line
    assert f"--group {settings.app_id} --topic {prices_topic}:0" in line
    assert "--to-offset 3" in line
