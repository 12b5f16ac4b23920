"""The gridshift faust app: topics declared once from the contract, the ingest agents
(``streams/worker/agents.py``) and the re-planner task, built into one :class:`Worker`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from schemas import DEADLETTER_TOPIC, DECISION_TOPIC, INPUT_TOPICS, DeadLetter, DispatchDecision
from streams.engine.decider import Decider
from streams.engine.fleet import Fleet
from streams.engine.state import FleetState
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import BrokerWatch
from streams.settings import Settings
from streams.worker._codec import PydanticCodec
from streams.worker._transport import App, faust_credentials
from streams.worker.acks import AckLedger
from streams.worker.agents import Agents
from streams.worker.http import DecisionHub
from streams.worker.metrics import Metrics
from streams.worker.ownership import Ownership
from streams.worker.recovery import rebuild_state
from streams.worker.replanner import Replanner
from streams.worker.routing import ROUTED_TOPIC
from streams.worker.telemetry import TELEMETRY, TelemetryLane, lane_group

log = logging.getLogger(__name__)


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
    http_port: int | None = None
    watch: BrokerWatch | None = None


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
    state = FleetState(fleet)
    metrics = Metrics()
    hub = DecisionHub()

    async def publish(decision: DispatchDecision) -> None:
        delivery = await decisions.send(key=decision.site_id.encode(), value=decision)
        await delivery  # the planner acks the inputs behind it only after delivery
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
    )
    ledger = AckLedger()
    planner = Replanner(
        state,
        publish,
        decider,
        debounce_s=settings.debounce_ms / 1000.0,
        telemetry_debounce_s=settings.telemetry_debounce_ms / 1000.0,
        ledger=ledger,
        on_solve=metrics.solve_seconds.observe,
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
        count=count_telemetry,
        max_bytes=settings.max_message_bytes,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        partition_fetch_bytes=settings.telemetry_fetch_partition_bytes,
    )
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
        catch_up=lambda gained: rebuild_state(settings, connection, state, only_partitions=gained),
        follow=lane.assign,
    )
    app.on_partitions_assigned.connect(ownership.on_assigned)

    async def replan() -> None:
        await planner.run()

    app.task(replan)

    return Worker(
        app=app,
        state=state,
        planner=planner,
        metrics=metrics,
        hub=hub,
        ownership=ownership,
        lane=lane,
    )
