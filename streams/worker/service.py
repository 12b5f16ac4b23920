"""Running the service: resolve the broker (given, or embedded), start the faust app in this
event loop, serve until told to stop, and shut down in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

from faust.exceptions import ConsumerNotStarted

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import BrokerWatch, api_versions_probe, create_missing_topics
from streams.sdk import Publisher
from streams.settings import Settings
from streams.worker import _heap as heap
from streams.worker._background import background
from streams.worker.app import Worker, build_worker
from streams.worker.health import WorkerHealth
from streams.worker.http import build_api, serving
from streams.worker.recovery import rebuild_state

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def bootstrap_servers(settings: Settings) -> AsyncIterator[str]:
    """The configured bootstrap, or an embedded broker's for as long as the context lasts."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    broker = EmbeddedBroker()
    await asyncio.to_thread(broker.start)
    log.info("embedded broker started", extra={"bootstrap": broker.bootstrap, "pid": broker.pid})
    try:
        yield broker.bootstrap
    finally:
        await asyncio.to_thread(broker.stop)
        log.info("embedded broker stopped")


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, fleet: Fleet, bootstrap: str) -> AsyncIterator[Worker]:
    """A started worker; stopped (offsets committed, producer flushed) when the context exits."""
    connection = KafkaConnection.from_settings(settings, bootstrap)  # resolved once, passed down
    worker = build_worker(settings, fleet, connection)
    rebuilt = await rebuild_state(settings, connection, worker.state)
    if rebuilt:
        log.info("state rebuilt from committed inputs", extra={"events": rebuilt})
    # faust does not read telemetry (the lane does), so it would not create that topic.
    await create_missing_topics(connection, {worker.lane.topic: settings.topic_partitions})
    await worker.lane.start()
    worker.metrics.track_lag(lambda: consumer_lag(worker))
    try:
        await worker.app.start()
    except BaseException:
        await worker.lane.stop()
        raise
    stack = contextlib.AsyncExitStack()
    try:
        await stack.enter_async_context(background(worker.lane.run(), "gridshift.telemetry-lane"))
        worker.watch = await stack.enter_async_context(_watching(worker, connection))
        if settings.http_enabled:
            worker.http_port = await stack.enter_async_context(
                _http(settings, fleet, worker, connection)
            )
            log.info(
                "http api listening", extra={"host": settings.http_host, "port": worker.http_port}
            )
        heap.settle()  # the started app lives as long as the worker
        log.info(
            "worker started",
            extra={"app_id": settings.app_id, "sites": len(fleet.sites), "bootstrap": bootstrap},
        )
        yield worker
    finally:
        await stack.aclose()
        await worker.app.stop()
        await worker.lane.stop()
        log.info(
            "worker stopped",
            extra={
                "decisions": worker.planner.decisions_published,
                "dead_lettered": worker.metrics.dead_letters_by_reason(),
            },
        )


def consumer_lag(worker: Worker) -> int:
    """Input events assigned to this worker and not read yet: the faust agents' partitions
    plus the telemetry lane's (from each consumer's last view of the high watermarks)."""
    consumer: Any = worker.app.consumer
    lag = worker.lane.lag()
    try:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            read = consumer._read_offset.get(tp)  # faust keeps the last offset it read
            lag += max(0, highwater - (read + 1 if read is not None else 0))
    except ConsumerNotStarted:
        pass  # faust's consumer is (re)starting: report what the lane knows
    return lag


def declared_topics(worker: Worker) -> dict[str, int]:
    """Every topic the started faust app uses, with its partition count."""
    default = worker.app.conf.topic_partitions
    return {
        name: topic.partitions or default for topic in worker.app.topics for name in topic.topics
    }


@contextlib.asynccontextmanager
async def _watching(worker: Worker, connection: KafkaConnection) -> AsyncIterator[BrokerWatch]:
    """A :class:`BrokerWatch` task for as long as the worker runs."""
    watch = BrokerWatch(
        connection,
        api_versions_probe(*connection.first_broker()),
        declared_topics(worker),
        on_change=worker.metrics.broker_reachable,
    )
    async with background(watch.run(), "gridshift.broker-watch"):
        yield watch


@contextlib.asynccontextmanager
async def _http(
    settings: Settings, fleet: Fleet, worker: Worker, connection: KafkaConnection
) -> AsyncIterator[int]:
    """The HTTP API beside the worker, with its own publisher for HTTP writes."""
    async with Publisher(connection, topic_prefix=settings.topic_prefix) as publisher:
        api = build_api(
            fleet=fleet,
            hub=worker.hub,
            metrics=worker.metrics,
            publisher=publisher,
            token=settings.http_token.get_secret_value() if settings.http_token else None,
            health=WorkerHealth(
                broker=connection.first_broker(),
                hub=worker.hub,
                sites=len(fleet.sites),
                owned_sites=lambda: worker.ownership.sites,
                lag=lambda: consumer_lag(worker),
            ).report,
        )
        async with serving(api, settings.http_host, settings.http_port) as bound:
            yield bound


async def serve(settings: Settings, fleet: Fleet) -> None:
    """The ``gridshift worker`` service: run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with bootstrap_servers(settings) as bootstrap, running_worker(settings, fleet, bootstrap):
        await stop.wait()
        log.info("stop requested, shutting down")
