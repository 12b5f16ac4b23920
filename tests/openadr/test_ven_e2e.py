"""The VEN against a real VTN: openleadr's own OpenADRServer on a free loopback port (not a
mock), the embedded Kafka broker, and a plain aiokafka consumer reading grid.signal.v1.

One VTN session walks the whole exchange: registration, the measured-load report (from the
site's telemetry), an event the site can shed (opt in, signals published before the answer),
one it cannot (opt out, nothing published), and a cancellation (the published requests lifted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import GridSignalEvent, TelemetryEvent
from streams.engine.codec import encode
from streams.errors import GridshiftError
from streams.kafka.broker import EmbeddedBroker
from streams.openadr.config import VenConfig
from streams.openadr.signals import LIFTED_MW
from streams.openadr.ven import Ven, openleadr_unavailable
from streams.sdk import Publisher
from tests.agent.decisions import decision, publish_decisions
from tests.agent.waiting import WAIT_S, until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(openleadr_unavailable() is not None, reason=str(openleadr_unavailable())),
    # openleadr 0.5.36 stores its server on the aiohttp app under a str key (aiohttp >= 3.9 warns).
    pytest.mark.filterwarnings("ignore:It is recommended to use web.AppKey"),
]

SITE = "site-a"
VEN_ID = "ven-site-a"


class Vtn:
    """openleadr's VTN with handlers that record what the VEN sent."""

    def __init__(self) -> None:
        # openleadr ships no type information (an optional extra, imported when it is there).
        from openleadr import OpenADRServer  # type: ignore[import-untyped]  # noqa: PLC0415

        self.server = OpenADRServer(
            vtn_id="TEST_VTN",
            http_host="127.0.0.1",
            http_port=0,  # any free port; read back after start
            requested_poll_freq=timedelta(seconds=1),
        )
        self.server.add_handler("on_create_party_registration", self._register)
        self.server.add_handler("on_register_report", self._register_report)
        self.opts: dict[str, str] = {}
        #: What the VEN had published for an event when its opt reached the VTN.
        self.published_at_opt: dict[str, int] = {}
        self.ven: Ven | None = None
        self.reported: list[float] = []
        self.changed = asyncio.Event()

    async def _register(self, info: dict[str, Any]) -> tuple[str, str]:
        assert info["ven_name"] == SITE
        return VEN_ID, "reg-site-a"

    async def _register_report(
        self,
        ven_id: str,
        resource_id: str,
        measurement: str,
        unit: str,
        scale: str,
        min_sampling_interval: timedelta,
        max_sampling_interval: timedelta,
    ) -> tuple[Any, timedelta]:
        assert (ven_id, resource_id, measurement, scale) == (VEN_ID, SITE, "RealPower", "M")

        async def receive(data: list[tuple[datetime, float]]) -> None:
            self.reported.extend(value for _, value in data)
            self.changed.set()

        return receive, min_sampling_interval

    def _opted(self, ven_id: str, event_id: str, opt_type: str) -> None:
        self.opts[event_id] = opt_type
        if self.ven is not None:
            self.published_at_opt[event_id] = len(self.ven.published.get(event_id, {}))
        self.changed.set()

    def add_event(self, signal_type: str, *payloads: float, start: datetime) -> str:
        intervals = [
            {
                "dtstart": start + timedelta(minutes=15 * i),
                "duration": timedelta(minutes=15),
                "signal_payload": payload,
            }
            for i, payload in enumerate(payloads)
        ]
        event_id: str = self.server.add_event(
            ven_id=VEN_ID,
            signal_name="LOAD_DISPATCH",
            signal_type=signal_type,
            intervals=intervals,
            callback=self._opted,
        )
        return event_id

    @property
    def url(self) -> str:
        port = self.server.app_runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b"


class SignalLog:
    """Every grid.signal.v1 event, read from the start of the topic by a plain consumer."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.consumer = AIOKafkaConsumer(
            prefix + "grid.signal.v1",
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
        )
        self.seen: list[tuple[bytes | None, GridSignalEvent]] = []
        self.changed = asyncio.Event()

    async def _collect(self) -> None:
        async for message in self.consumer:
            self.seen.append(
                (message.key, GridSignalEvent.model_validate_json(message.value or b""))
            )
            self.changed.set()

    def of(self, event_id: str) -> list[GridSignalEvent]:
        return [s for _, s in self.seen if f":{event_id}:" in s.signal_id]


@contextlib.asynccontextmanager
async def signal_log(bootstrap: str, prefix: str) -> AsyncIterator[SignalLog]:
    log = SignalLog(bootstrap, prefix)
    await log.consumer.start()
    task = asyncio.create_task(log._collect())
    try:
        yield log
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await log.consumer.stop()


async def publish_telemetry(bootstrap: str, prefix: str, meter_mw: float) -> None:
    now = datetime.now(UTC)
    event = TelemetryEvent(
        interval_start=now - timedelta(minutes=1),
        interval_end=now,
        site_id=SITE,
        mining_mw=10.0,
        gpu_mw=7.0,
        meter_mw=meter_mw,
        miners_online=3000,
        mining_available_mw=12.0,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(prefix + "site.telemetry.v1", encode(event), key=SITE.encode())
    finally:
        await producer.stop()


async def test_ven_registers_reports_and_turns_events_into_grid_signals(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    vtn = Vtn()
    await vtn.server.run()
    config = VenConfig.parse(
        {
            "site_id": SITE,
            "vtn": {"url": vtn.url, "ven_name": SITE},
            "signals": {"default_unit": "MW"},
            "report": {"min_sampling_s": 1, "max_sampling_s": 1},
            "feeds": {"telemetry_from_beginning": True},
        },
        "test VEN file",
    )
    # The site's plan (10 MW mining, 18 MW import) and its metered load, before the VEN starts.
    await publish_decisions(
        broker.bootstrap, topic_prefix, decision(SITE, mining_mw=10.0, gpu_mw=8.0)
    )
    await publish_telemetry(broker.bootstrap, topic_prefix, meter_mw=17.25)
    ven = Ven(config, broker.bootstrap, topic_prefix=topic_prefix)
    vtn.ven = ven
    stop = asyncio.Event()
    task = asyncio.create_task(ven.run(stop))
    ended = asyncio.Event()
    task.add_done_callback(lambda _: ended.set())
    try:
        async with signal_log(broker.bootstrap, topic_prefix) as signals:
            await until(
                lambda: (
                    task.done()
                    or (ven.latest_decision is not None and ven.latest_telemetry is not None)
                ),
                ven.changed,
                ended,
            )
            assert not task.done(), task.exception()

            # The measured load goes back to the VTN (TELEMETRY_USAGE, MW).
            await until(lambda: 17.25 in vtn.reported, vtn.changed)

            # 4 MW less over two intervals: 10 MW of mining can shed it -> opt in.
            start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
            shed = vtn.add_event("delta", -4.0, -3.0, start=start)
            await until(lambda: shed in vtn.opts, vtn.changed)
            assert vtn.opts[shed] == "optIn"
            # Published and acknowledged by the broker before the opt was sent.
            assert vtn.published_at_opt[shed] == 2
            await until(lambda: len(signals.of(shed)) == 2, signals.changed)
            first, second = signals.of(shed)
            assert (first.interval_start, first.interval_end) == (
                start,
                start + timedelta(minutes=15),
            )
            assert (first.reduction_mw, second.reduction_mw) == (4.0, 3.0)
            assert first.site_id == SITE and first.signal_type == "demand_response"
            assert first.signal_id == f"oadr:{SITE}:{shed}:0:0"
            assert all(key == SITE.encode() for key, _ in signals.seen)

            # A 2 MW cap means shedding 16 MW of an 18 MW import: more than mining -> opt out.
            cap = vtn.add_event("setpoint", 2.0, start=start)
            await until(lambda: cap in vtn.opts, vtn.changed)
            assert vtn.opts[cap] == "optOut"
            sentinel = first.model_copy(update={"signal_id": "sentinel"})
            async with Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher:
                await publisher.publish("grid.signal.v1", sentinel)
            await until(
                lambda: any(s.signal_id == "sentinel" for _, s in signals.seen), signals.changed
            )
            assert signals.of(cap) == []

            # The utility cancels the first event: its requests are lifted under the same ids.
            vtn.server.cancel_event(VEN_ID, shed)
            await until(
                lambda: sum(s.limit_mw == LIFTED_MW for s in signals.of(shed)) == 2,
                signals.changed,
            )
            lifted = [s for s in signals.of(shed) if s.limit_mw == LIFTED_MW]
            assert {s.signal_id for s in lifted} == {first.signal_id, second.signal_id}
            assert all(s.reduction_mw is None for s in lifted)
            assert ven.published == {}
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
        await vtn.server.stop()


async def test_unreachable_vtn_is_one_clear_error(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    """Nothing listens at the VTN address: the VEN stops with one line, everything closed."""
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the VEN dials it: refused
    config = VenConfig.parse(
        {
            "site_id": SITE,
            "vtn": {"url": f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b", "ven_name": SITE},
        },
        "test VEN file",
    )
    ven = Ven(config, broker.bootstrap, topic_prefix=topic_prefix)
    with pytest.raises(GridshiftError, match="did not register this VEN"):
        await asyncio.wait_for(ven.run(asyncio.Event()), WAIT_S)
    assert ven.client is None
