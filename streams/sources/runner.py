"""Putting one source together and running it: settings and the sources file in, a
:class:`~streams.sources.loop.Source` with its feeds, checkpoint, Kafka output and health
server out; then poll until SIGINT/SIGTERM (or once), and release everything in order.

Everything that can be wrong with the configuration (file, credentials, nodes, the extra, the
broker address) is checked before anything connects, so a mistake is one line and a non-zero
exit, never a half-started source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.settings import Settings
from streams.sources import carbon, hashprice, iso, reserve
from streams.sources import coincident_peak as peak
from streams.sources.checkpoint import Checkpoint, exclusive
from streams.sources.config import IsoConfig, PollConfig, SourceSettings, SourcesFile
from streams.sources.health import HealthServer, HealthState, SourceMetrics
from streams.sources.loop import EventOut, Feed, KafkaOut, Source
from streams.sources.sink import JsonlSink

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Plan:
    """A source ready to start: its name, feeds and timing (nothing connected yet)."""

    name: str
    feeds: list[Feed]
    poll: PollConfig
    executor: ThreadPoolExecutor | None = None


def iso_plan(
    iso_name: str,
    sources: SourcesFile,
    settings: SourceSettings,
    nodes: tuple[str, ...] = (),
) -> Plan:
    """The ISO source of ``iso_name`` (``nodes`` from the CLI replace the file's)."""
    config = next((c for name, c in sources.iso.items() if name == iso_name), IsoConfig())
    if nodes:
        try:  # CLI nodes obey the file's rules
            config = IsoConfig.model_validate({**config.model_dump(), "nodes": list(nodes)})
        except ValidationError as exc:
            raise GridshiftError(f"invalid --node: {exc.errors()[0]['msg']}") from exc
    iso.require_nodes(iso_name, config)  # before gridstatus is imported
    client = iso.make_client(iso_name, settings)
    sink_path = config.load_sink or settings.state_dir / f"{iso_name.lower()}-load.jsonl"
    sink = JsonlSink(sink_path) if config.load else None
    return _threaded_plan(
        f"iso-{iso_name.lower()}",
        config,
        lambda executor: iso.build_feeds(iso_name, config, client, executor, sink),
    )


def carbon_plan(sources: SourcesFile, settings: SourceSettings) -> Plan:
    """The carbon source of every configured region."""
    return _threaded_plan(
        "carbon",
        sources.carbon,
        lambda executor: carbon.build_feeds(sources.carbon, settings, executor),
    )


def hashprice_plan(sources: SourcesFile) -> Plan:
    """The hashprice source."""
    return Plan("hashprice", [hashprice.HashpriceFeed(sources.hashprice)], sources.hashprice)


def reserve_plan(sources: SourcesFile, settings: SourceSettings) -> Plan:
    """ERCOT's day-ahead reserve prices (MCPC) of today and tomorrow."""
    client = iso.make_client("ERCOT", settings)
    return _threaded_plan(
        "reserve",
        sources.reserve,
        lambda executor: reserve.build_feeds(sources.reserve, client, executor),
    )


def coincident_peak_plan(sources: SourcesFile, settings: SourceSettings) -> Plan:
    """ERCOT 4CP probabilities, computed live and published as signals."""
    config = sources.coincident_peak
    memory = peak.PeakMemory(
        config.peaks_file or settings.state_dir / "coincident-peak.peaks.json"
    )  # read before anything connects: an unreadable file is one line
    client = iso.make_client("ERCOT", settings)
    executor = _executor("coincident-peak")
    feed = peak.CoincidentPeakFeed(client=client, config=config, executor=executor, memory=memory)
    return Plan("coincident-peak", [feed], config, executor)


def _threaded_plan(
    name: str, poll: PollConfig, build: Callable[[ThreadPoolExecutor], Iterable[Feed]]
) -> Plan:
    """A plan whose feeds call a synchronous client on the source's one thread (shut down if
    building the feeds fails)."""
    executor = _executor(name)
    try:
        feeds = list(build(executor))
    except BaseException:
        executor.shutdown(wait=False)
        raise
    return Plan(name, feeds, poll, executor)


def _executor(name: str) -> ThreadPoolExecutor:
    # One thread: a provider call that hangs holds back the next one rather than piling up
    # threads; the poll's time-out stops waiting for it either way.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"source-{name}")


def kafka_out(kafka: Settings, poll: PollConfig) -> KafkaOut:
    """Where the events go (one clear line when no broker is configured)."""
    return KafkaOut(
        KafkaConnection.from_settings(kafka),
        topic_prefix=kafka.topic_prefix,
        partitions=kafka.topic_partitions,
        timeout_s=poll.timeout_s,
    )


async def run(
    plan: Plan,
    settings: SourceSettings,
    out: EventOut,
    *,
    once: bool = False,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] = _utc_now,
    on_ready: Callable[[Source, int | None], None] | None = None,
) -> bool:
    """Run ``plan`` until ``stop`` is set or a signal arrives (``once``: one poll); True when
    the last poll succeeded. Everything started here is stopped here."""
    stop = stop or asyncio.Event()
    state = settings.state_dir
    with _locked(state / f"{plan.name}.lock", plan.name), _signals(stop):
        checkpoint = Checkpoint.open(
            state / f"{plan.name}.checkpoint.json",
            timedelta(hours=plan.poll.dedup_window_hours),
            plan.name,
        )
        metrics = SourceMetrics(plan.name)
        health = HealthState(plan.name, plan.poll.unhealthy_after_failures, metrics)
        health.checkpoint_intervals = checkpoint.intervals
        source = Source(
            name=plan.name,
            feeds=plan.feeds,
            poll=plan.poll,
            out=out,
            checkpoint=checkpoint,
            health=health,
            clock=clock,
            log_every_poll=settings.log_every_poll,
        )
        server = None
        port = None
        if settings.health_enabled:
            server = HealthServer(health, settings.health_host, settings.health_port)
            port = await server.start()
        try:
            log.info(
                "source started",
                extra={
                    "source": plan.name,
                    "feeds": [feed.name for feed in plan.feeds],
                    "checkpoint": str(checkpoint.path),
                    "intervals_remembered": checkpoint.intervals,
                    "health": f"http://{settings.health_host}:{port}/health" if port else None,
                },
            )
            if on_ready is not None:
                on_ready(source, port)
            return await source.run(stop, max_polls=1 if once else None)
        finally:
            for feed in plan.feeds:
                with contextlib.suppress(Exception):
                    await feed.close()
            await out.close()
            if server is not None:
                await server.stop()
            if plan.executor is not None:
                # A provider call still running cannot be interrupted; do not wait for it.
                plan.executor.shutdown(wait=False, cancel_futures=True)
            log.info("source stopped", extra={"source": plan.name})


@contextlib.contextmanager
def _locked(path: Path, name: str) -> Iterator[None]:
    with exclusive(path, name):
        yield


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (the current poll ends, the checkpoint is kept)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)  # not in a non-main thread (tests)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
