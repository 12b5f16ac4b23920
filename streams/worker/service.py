"""Running the service: resolve the broker (given, or embedded), create every topic the worker
reads or writes, start the faust app in this event loop, serve until told to stop, and shut down
in order.

The topics exist before anything reads or writes them (an early subscriber finds the decision
topic at once; a fresh producer never meets a half-created topic); the broker watch then keeps
checking them. The worker's health (``streams/worker/health.py``) is built here, from every part,
and served on /health and /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from faust.exceptions import ConsumerNotStarted

from streams.engine.fleet import Fleet
from streams.errors import GridshiftError
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import BrokerWatch, create_missing_topics
from streams.sdk import Publisher
from streams.settings import Settings
from streams.worker import _heap as heap
from streams.worker._background import background
from streams.worker.app import Worker, build_worker, required_topics
from streams.worker.health import HealthReport, WorkerHealth
from streams.worker.http import build_api, serving
from streams.worker.recovery import rebuild_state, restore_commitments

log = logging.getLogger(__name__)

#: How long a stopping worker lets inputs in flight finish (decisions and dead letters delivered,
#: offsets committed) before it stops without them.
STOP_GRACE_S = 10.0


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
    try:
        await _create_topics(settings, connection, worker.watch)
        rebuilt = await rebuild_state(settings, connection, worker.state)
        if rebuilt:
            log.info("state rebuilt from committed inputs", extra={"events": rebuilt})
        # Hours sold before a restart stay sold (the worker's own decisions list them).
        await restore_commitments(settings, connection, worker.planner.decider.reserves)
        await worker.lane.start()
    except BaseException:
        await worker.watch.close()
        raise
    worker.metrics.track_lag(lambda: consumer_lag(worker))
    try:
        await worker.app.start()
    except BaseException:
        worker.app.remove_datadir()  # faust made it at the start that failed; no stop comes
        await worker.lane.stop()
        await worker.watch.close()
        raise
    # From now on the watch also restores faust's own topics (its assignor's leader topic).
    worker.watch.partitions_by_topic = {**declared_topics(worker), **required_topics(settings)}
    worker.health = _health(settings, fleet, worker, connection)
    worker.metrics.track_health(worker.health.sample)
    stack = contextlib.AsyncExitStack()
    try:
        for name, run in (
            ("telemetry lane", worker.lane.run()),
            ("broker watch", worker.watch.run()),
        ):
            worker.tasks[name] = await stack.enter_async_context(background(run, name))
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
        await _drain(worker)
        await worker.app.stop()
        await worker.agents.close()
        await worker.lane.stop()
        await worker.watch.close()
        log.info(
            "worker stopped",
            extra={
                "decisions": worker.planner.decisions_published,
                "dead_lettered": worker.metrics.dead_letters_by_reason(),
            },
        )


async def _drain(worker: Worker, grace_s: float = STOP_GRACE_S) -> None:
    """Let the inputs in flight be decided and delivered before faust stops; past the grace,
    stop without them: they stay uncommitted and are read again at the next start. faust's own
    stop waits for every unacked input with no limit, so an input whose decision or dead letter
    cannot be delivered (the broker away, a topic missing) would hang the stop."""

    def in_flight() -> int:
        return worker.planner.ledger_outstanding() + worker.agents.in_flight()

    step_s = 0.05
    probe_every = 5  # steps: the broker is probed every 0.25 s while inputs are in flight
    broker_up = worker.watch.up
    for step in range(int(grace_s / step_s)):  # bounded: at most the grace
        if not in_flight():
            break
        if step % probe_every == 0:
            # The watch stopped with the worker's tasks: probe here. With the broker away
            # (stopped with the worker, say) nothing in flight can be delivered: no grace.
            broker_up = broker_up and await worker.watch.probe()
        if not broker_up:
            break
        await asyncio.sleep(step_s)  # polling the in-flight count, not synchronisation
    if left := in_flight():
        log.warning(
            "stopping with inputs whose outputs were not delivered: they stay uncommitted and "
            "are read again at the next start",
            extra={"inputs": left, "grace_s": grace_s, "broker_up": broker_up},
        )
        with warnings.catch_warnings():
            # faust warns that the setting comes late; it reads it when it stops, which is now.
            warnings.simplefilter("ignore")
            worker.app.conf.stream_wait_empty = False


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


async def _create_topics(
    settings: Settings, connection: KafkaConnection, watch: BrokerWatch
) -> None:
    """Create every topic the worker reads or writes, and confirm them with one listing."""
    required = required_topics(settings)
    created = await create_missing_topics(connection, required)
    if created:
        log.info("topics created", extra={"topics": sorted(created)})
    if not await watch.verify():
        raise GridshiftError(
            f"cannot start: topics missing on {connection.bootstrap} after creating them: "
            f"{', '.join(sorted(watch.missing)) or '(the topic listing failed)'}"
        )


def _report(worker: Worker) -> Callable[[], Awaitable[HealthReport]]:
    """What /health answers with (built before the HTTP API starts)."""
    if worker.health is None:
        raise RuntimeError("worker health not built")
    return worker.health.report


def _health(
    settings: Settings, fleet: Fleet, worker: Worker, connection: KafkaConnection
) -> WorkerHealth:
    """The worker's health, from every part of it."""
    return WorkerHealth(
        broker=connection.first_broker(),
        hub=worker.hub,
        sites=len(fleet.sites),
        owned_sites=lambda: worker.ownership.sites,
        lag=lambda: consumer_lag(worker),
        state=worker.state,
        planner=worker.planner,
        watch=worker.watch,
        faults=worker.faults,
        metrics=worker.metrics,
        tasks=worker.tasks,
        decision_silence_s=settings.health_decision_silence_s,
        max_clock_lag_s=settings.health_max_clock_lag_s,
        max_clock_skew_s=settings.max_clock_skew_s,
    )


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
            read_token=(
                settings.http_read_token.get_secret_value() if settings.http_read_token else None
            ),
            allowed_hosts=settings.http_allowed_hosts,
            bind_host=settings.http_host,
            health=_report(worker),
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
