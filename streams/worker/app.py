"""The gridshift faust app: topics declared once from the contract, the ingest agents
(``streams/worker/agents.py``) and the re-planner task, built into one :class:`Worker`.

Every topic the worker reads or writes is listed once (:func:`required_topics`): the service
creates them before it starts, and the broker watch built here keeps checking them and gates
every delivery (decisions, dead letters, routed copies) on them. When it finds the broker lost
topics (and their log), it has the ledger, faust's consumer and the telemetry lane forget that log
before any delivery resumes. The parts report their trouble to one
:class:`~streams.worker.health.Faults`, which /health reads; so do faust's own services (its
fetcher, which reads every input but telemetry, its consumer and producer) when they crash.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from schemas import DEADLETTER_TOPIC, DECISION_TOPIC, INPUT_TOPICS, DeadLetter, DispatchDecision
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.state import FleetState
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import BrokerWatch, LogLoss, api_versions_probe
from streams.settings import Settings
from streams.worker._codec import PydanticCodec
from streams.worker._transport import App, faust_credentials, started_consumer
from streams.worker.acks import AckLedger, deliver
from streams.worker.agents import Agents
from streams.worker.health import Faults, WorkerHealth, describe
from streams.worker.http import DecisionHub
from streams.worker.metrics import Metrics
from streams.worker.ownership import Ownership
from streams.worker.recovery import catch_up
from streams.worker.replanner import Replanner
from streams.worker.routing import ROUTED_TOPIC
from streams.worker.telemetry import TELEMETRY, TelemetryLane, lane_group

log = logging.getLogger(__name__)


REPLANNER = "re-planner"


@dataclass
class Worker:
    """The faust app with its state, re-planner, metrics and decision hub."""

    app: App
    state: FleetState
    planner: Replanner
    metrics: Metrics
    hub: DecisionHub
    ownership: Ownership
    lane: TelemetryLane
    watch: BrokerWatch
    agents: Agents
    faults: Faults
    http_port: int | None = None
    #: Background tasks that run as long as the worker (telemetry lane, broker watch), by name.
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    health: WorkerHealth | None = None


def required_topics(settings: Settings) -> dict[str, int]:
    """Every topic the worker reads or writes, with its partition count: the inputs (telemetry
    included), the routed copies, decisions and dead letters."""
    names = (*INPUT_TOPICS, ROUTED_TOPIC, DECISION_TOPIC, DEADLETTER_TOPIC)
    return {settings.topic(name): settings.topic_partitions for name in names}


def build_worker(settings: Settings, fleet: Fleet, connection: KafkaConnection) -> Worker:
    """Create the app, declare every topic once, and wire the agents."""
    app = App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in connection.bootstrap.split(",")],
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        autodiscover=False,
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_linger=settings.producer_linger_ms / 1000.0,
        producer_max_batch_size=settings.producer_batch_bytes,
        # Dead letters are cut to fit this (streams/engine/codec.py); inputs may be larger.
        producer_max_request_size=settings.producer_max_request_bytes,
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        web_enabled=settings.web_enabled,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
        broker_credentials=faust_credentials(connection),
    )
    decisions = app.topic(
        settings.topic(DECISION_TOPIC),
        key_serializer="raw",
        value_serializer=PydanticCodec(DispatchDecision),
        partitions=settings.topic_partitions,
    )
    dead_letters = app.topic(
        settings.topic(DEADLETTER_TOPIC),
        key_serializer="raw",
        value_serializer=PydanticCodec(DeadLetter),
        partitions=settings.topic_partitions,
    )
    state = FleetState.live(
        fleet,
        max_clock_skew_s=settings.max_clock_skew_s,
        max_lookahead_s=settings.max_lookahead_s,
        stale_telemetry_after_s=settings.stale_telemetry_after_s,
    )
    metrics = Metrics()
    hub = DecisionHub()
    faults = Faults(on_failure=metrics.failed)
    # A crashed faust service (its fetcher reads every input but telemetry) is a fault: told
    # at once by the fetcher, polled for the rest at every health check.
    app.on_service_crash = faults.service_crashed
    faults.services.append(app.crashed_services)
    watch = BrokerWatch(
        connection,
        api_versions_probe(*connection.first_broker()),
        required_topics(settings),
        topic_check_interval_s=settings.topic_check_interval_s,
        on_change=metrics.broker_reachable,
    )

    async def publish(decision: DispatchDecision) -> None:
        # Delivered = acknowledged to a topic that exists; the planner acks the inputs behind
        # it only after that, and only then is it counted and shown.
        await deliver(watch, decisions, key=decision.site_id.encode(), value=decision)
        hub.publish(decision)
        metrics.decisions_out.labels(decision.fallback).inc()

    decider = Decider(
        settings.horizon(),
        pools=fleet.pools,
        carbon_budget_t_per_day=settings.fleet_carbon_budget_t_per_day,
        time_limit_s=settings.solver_time_limit_s,
        stale_price_after=(
            timedelta(seconds=settings.stale_price_after_s)
            if settings.stale_price_after_s is not None
            else None
        ),
        failsafe_mining_fraction=settings.failsafe_mining_fraction,
        restore_fraction=settings.restore_fraction,
        reserve_commit_lead=settings.reserve_commit_lead(),
    )

    def let_go(stream: Any, event: Any) -> None:
        # A faust event read from a lost log: faust stops waiting for it, nothing is committed.
        consumer = started_consumer(app)
        if consumer is not None and hasattr(event, "message"):
            consumer.forget_message(event.message)

    ledger = AckLedger(discard=let_go, gate=watch)
    planner = Replanner(
        state,
        publish,
        decider,
        debounce_s=settings.debounce_ms / 1000.0,
        telemetry_debounce_s=settings.telemetry_debounce_ms / 1000.0,
        ledger=ledger,
        on_solve=metrics.solve_seconds.observe,
        faults=faults,
    )

    agents = Agents(
        settings=settings,
        state=state,
        planner=planner,
        ledger=ledger,
        metrics=metrics,
        dead_letters=dead_letters,
        routed=app.topic(
            settings.topic(ROUTED_TOPIC),
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        ),
        gate=watch,
        faults=faults,
    )
    telemetry_topic = settings.topic(TELEMETRY)

    def count_telemetry(consumed: int, applied: int) -> None:
        metrics.count_in(TELEMETRY, consumed, applied)

    lane = TelemetryLane(
        topic=telemetry_topic,
        connection=connection,
        group=lane_group(settings.app_id),
        state=state,
        planner=planner,
        ledger=ledger,
        reject=agents.reject,
        reject_all=agents.reject_all,
        forward=agents.forward_all,
        count=count_telemetry,
        max_bytes=settings.max_message_bytes,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        partition_fetch_bytes=settings.telemetry_fetch_partition_bytes,
        faults=faults,
    )

    async def forget_faust_log(loss: LogLoss) -> None:
        consumer = started_consumer(app)
        if consumer is not None:
            await consumer.forget_log(loss)

    async def count_log_loss(_loss: LogLoss) -> None:
        metrics.broker_log_lost()

    # In this order, all before the watch admits a delivery again (so before any ack).
    watch.on_log_lost.extend([ledger.log_lost, forget_faust_log, lane.log_lost, count_log_loss])
    for name in INPUT_TOPICS:
        if name == TELEMETRY:
            continue  # the batched lane reads telemetry (streams/worker/telemetry.py)
        topic = app.topic(
            settings.topic(name),
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )
        app.agent(topic, name=f"gridshift.ingest.{name}")(agents.source(name))
    app.agent(agents.routed, name="gridshift.ingest.routed")(agents.routed_inputs)

    ownership = Ownership(
        site_ids=tuple(site.site_id for site in fleet.sites),
        partitions=settings.topic_partitions,
        routed_topic=agents.routed.get_topic_name(),
        planner=planner,
        catch_up=lambda gained: catch_up(
            settings, connection, state, decider.reserves, gained=gained
        ),
        follow=lane.assign,
    )
    app.on_partitions_assigned.connect(ownership.on_assigned)

    async def replan() -> None:
        try:
            await planner.run()
        except Exception as exc:
            # planner.run survives failed rounds; anything that still ends it must be seen.
            faults.crash(REPLANNER, exc)
            log.exception("re-planner died: no more decisions", extra={"error": describe(exc)})
            raise

    app.task(replan)

    return Worker(
        app=app,
        state=state,
        planner=planner,
        metrics=metrics,
        hub=hub,
        ownership=ownership,
        lane=lane,
        watch=watch,
        agents=agents,
        faults=faults,
    )
