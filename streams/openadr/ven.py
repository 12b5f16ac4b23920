"""The VEN service: openleadr's OpenADR 2.0b client for one site, wired to Kafka.

It follows the site's dispatch decisions (for the opt policy and as a fallback load figure)
and its telemetry (the measured load it reports), registers with the VTN, and for every event
or event update: translates it (``signals.translate``), decides the opt (``signals.opt_for``),
publishes the signals it opted into on grid.signal.v1 *before* answering, so an opt-in is only
ever sent for a request the planner has, and lifts what it published for a cancelled event, a
withdrawn interval or an event it opted out of later. Must not import the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas import DispatchDecision, GridSignalEvent, TelemetryEvent, topic_for
from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.openadr.config import VenConfig
from streams.openadr.signals import Opt, lifted, opt_for, translate
from streams.sdk import DecisionSubscriber, Publisher

log = logging.getLogger(__name__)

SIGNAL_TOPIC = topic_for(GridSignalEvent).name
TELEMETRY_TOPIC = topic_for(TelemetryEvent).name


def _openleadr() -> Any:
    """The openleadr package (optional extra ``openadr``), imported on use."""
    # openleadr ships no type information: its objects are treated as Any here.
    import openleadr  # type: ignore[import-untyped]  # noqa: PLC0415

    return openleadr


def openleadr_unavailable() -> str | None:
    """``None`` when openleadr can be imported, else why not (for errors and test skips)."""
    try:
        _openleadr()
    except ImportError as exc:
        return f"openleadr is not installed ({exc}): pip install 'gridshift[openadr]'"
    return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Ven:
    """One site's OpenADR VEN. ``await ven.run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        config: VenConfig,
        connection: KafkaConnection | str,
        *,
        topic_prefix: str = "",
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if config.site_id is None:
            raise ValueError("the VEN needs a site_id (VenConfig.for_site)")
        self.site_id: str = config.site_id
        self.config = config
        self.connection = connection
        self.topic_prefix = topic_prefix
        self.clock = clock
        self.latest_decision: DispatchDecision | None = None
        self.latest_telemetry: TelemetryEvent | None = None
        #: Per event id: the signals published for it (what a cancel or opt-out lifts).
        self.published: dict[str, dict[str, GridSignalEvent]] = {}
        #: Per event id: the last opt sent.
        self.opts: dict[str, Opt] = {}
        self.client: Any = None
        #: Set whenever the state above changes (for supervisors and tests to wait on).
        self.changed = asyncio.Event()
        self._publisher: Publisher | None = None

    # -- the service ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Register with the VTN and serve until ``stop`` is set."""
        missing = openleadr_unavailable()
        if missing is not None:
            raise GridshiftError(missing)
        async with (
            Publisher(self.connection, topic_prefix=self.topic_prefix) as publisher,
            DecisionSubscriber(
                self.connection,
                topic_prefix=self.topic_prefix,
                sites=[self.site_id],
                from_beginning=self.config.feeds.decisions_from_beginning,
            ) as decisions,
        ):
            self._publisher = publisher
            telemetry = self._telemetry_consumer()
            await telemetry.start()
            tasks = [
                asyncio.create_task(self._follow_decisions(decisions), name="ven-decisions"),
                asyncio.create_task(self._follow_telemetry(telemetry), name="ven-telemetry"),
            ]
            try:
                await self._register()
                stopper = asyncio.create_task(stop.wait(), name="ven-stop")
                done, _ = await asyncio.wait([*tasks, stopper], return_when="FIRST_COMPLETED")
                stopper.cancel()
                for task in done:
                    if task is not stopper and task.exception() is not None:
                        raise GridshiftError(f"VEN feed failed: {task.exception()}")
            finally:
                await self._stop_client()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await telemetry.stop()
                self._publisher = None

    def _telemetry_consumer(self) -> AIOKafkaConsumer:
        options = {
            "auto_offset_reset": "earliest"
            if self.config.feeds.telemetry_from_beginning
            else "latest",
            "enable_auto_commit": False,
            "fetch_max_wait_ms": 50,
        }
        topic = self.topic_prefix + TELEMETRY_TOPIC
        if isinstance(self.connection, KafkaConnection):
            return AIOKafkaConsumer(topic, **self.connection.client(**options))
        return AIOKafkaConsumer(topic, bootstrap_servers=self.connection, **options)

    async def _register(self) -> None:
        openleadr = _openleadr()
        enums, objects = openleadr.enums, openleadr.objects

        vtn = self.config.vtn
        self.client = openleadr.OpenADRClient(
            ven_name=vtn.ven_name,
            vtn_url=str(vtn.url).rstrip("/"),
            ven_id=vtn.ven_id,
            cert=str(vtn.cert) if vtn.cert else None,
            key=str(vtn.key) if vtn.key else None,
            passphrase=vtn.passphrase.get_secret_value() if vtn.passphrase else None,
            vtn_fingerprint=vtn.vtn_fingerprint,
            ca_file=str(vtn.ca_file) if vtn.ca_file else None,
            disable_signature=vtn.disable_signature,
            check_hostname=vtn.check_hostname,
            show_fingerprint=False,
        )
        self.client.add_handler("on_event", self.on_event)
        self.client.add_handler("on_update_event", self.on_event)
        report = self.config.report
        if report.enabled:
            self.client.add_report(
                callback=self.measured_load_mw,
                resource_id=self.site_id,
                measurement="RealPower",
                unit="W",
                scale="M",  # values in MW, as the rest of gridshift
                report_name=enums.REPORT_NAME.TELEMETRY_USAGE,
                report_duration=timedelta(seconds=report.max_sampling_s),
                sampling_rate=objects.SamplingRate(
                    min_period=timedelta(seconds=report.min_sampling_s),
                    max_period=timedelta(seconds=report.max_sampling_s),
                    on_change=False,
                ),
            )
        await self.client.run()
        if self.client.registration_id is None:
            raise GridshiftError(f"the VTN at {vtn.url} did not register this VEN (see the log)")
        self.changed.set()
        log.info(
            "VEN registered",
            extra={"site_id": self.site_id, "ven_id": self.client.ven_id, "vtn": str(vtn.url)},
        )

    async def _stop_client(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        if client.scheduler.running:
            client.scheduler.shutdown(wait=False)
        if client.report_queue_task is not None:
            client.report_queue_task.cancel()
        if client.client_session is not None:
            await client.client_session.close()

    # -- feeds ------------------------------------------------------------------------------

    async def _follow_decisions(self, decisions: DecisionSubscriber) -> None:
        async for decision in decisions:
            latest = self.latest_decision
            if latest is None or decision.interval_start >= latest.interval_start:
                self.latest_decision = decision
                self.changed.set()

    async def _follow_telemetry(self, consumer: AIOKafkaConsumer) -> None:
        key = self.site_id.encode()
        try:
            async for message in consumer:
                if message.key != key:
                    continue
                try:
                    event = TelemetryEvent.model_validate_json(message.value or b"")
                except ValidationError:
                    continue  # the worker dead-letters it; the VEN just does not use it
                latest = self.latest_telemetry
                if latest is None or event.interval_end >= latest.interval_end:
                    self.latest_telemetry = event
                    self.changed.set()
        except KafkaError as exc:
            raise GridshiftError(f"telemetry feed: {exc}") from exc

    def measured_load_mw(self) -> list[tuple[datetime, float]] | float:
        """The site's load for the VTN's report, MW: the meter (or the sum of the measured
        loads) from fresh telemetry, else the latest decision's planned import; nothing when
        neither is known (an empty report interval rather than a made-up number)."""
        now = self.clock()
        telemetry = self.latest_telemetry
        fresh = timedelta(seconds=self.config.report.stale_after_s)
        if telemetry is not None and now - telemetry.interval_end <= fresh:
            if telemetry.meter_mw is not None:
                return telemetry.meter_mw
            return telemetry.mining_mw + telemetry.gpu_mw + telemetry.cooling_mw
        if self.latest_decision is not None:
            return self.latest_decision.grid_import_mw
        return []

    # -- events -----------------------------------------------------------------------------

    async def on_event(self, event: dict[str, Any]) -> Opt:
        """openleadr's handler for new and updated events: publish, then answer."""
        asked = translate(event, self.site_id, self.config.signals)
        before = self.published.get(asked.event_id, {})
        if asked.status == "cancelled":
            await self._publish([lifted(s) for s in before.values()])
            self.published.pop(asked.event_id, None)
            log.info(
                "OpenADR event cancelled: signals lifted",
                extra={"event_id": asked.event_id, "signals": len(before)},
            )
            self.opts[asked.event_id] = "optIn"
            self.changed.set()
            return "optIn"
        for reason in asked.unsupported:
            log.warning(
                "OpenADR signal not acted on", extra={"event_id": asked.event_id, "reason": reason}
            )
        opt, why = opt_for(asked.signals, self.latest_decision, self.config.opt)
        keep = opt == "optIn" or self.config.signals.publish_when_opted_out
        now_ids = {s.signal_id for s in asked.signals} if keep else set()
        withdrawn = [lifted(s) for sid, s in before.items() if sid not in now_ids]
        fresh = list(asked.signals) if keep else []
        await self._publish([*withdrawn, *fresh])
        if fresh:
            self.published[asked.event_id] = {s.signal_id: s for s in fresh}
        else:
            self.published.pop(asked.event_id, None)
        self.opts[asked.event_id] = opt
        self.changed.set()
        log.info(
            "OpenADR event",
            extra={
                "event_id": asked.event_id,
                "modification": asked.modification_number,
                "opt": opt,
                "why": why,
                "published": len(fresh),
                "lifted": len(withdrawn),
            },
        )
        return opt

    async def _publish(self, signals: list[GridSignalEvent]) -> None:
        if not signals:
            return
        if self._publisher is None:
            raise GridshiftError("the VEN is not running")
        for signal in signals:
            await self._publisher.publish(SIGNAL_TOPIC, signal)
        await self._publisher.flush()  # acknowledged before the VTN hears the opt
