"""The poll cycle every source shares: fetch each feed under a time-out, keep what the
checkpoint has not seen, write sinks, publish events and wait for the broker's
acknowledgement, then advance the checkpoint; wait the poll interval, or back off exponentially
(capped, with jitter) after a failure; stop at once when asked.

What it guarantees: a malformed row is counted and never published; a provider error, a time-out
or a broker error never stops the source (it is logged, counted, retried after a backoff); the
checkpoint only moves past events the broker acknowledged and whose topic it still lists (the
embedded broker acknowledges records for a topic that does not exist and drops them).

Feeds know their provider; this module knows none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import BaseModel

from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.sdk import Publisher
from streams.sources.checkpoint import Checkpoint, Record, Verdict
from streams.sources.config import PollConfig
from streams.sources.health import HealthState
from streams.sources.sink import JsonlSink

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


class MalformedResponseError(GridshiftError):
    """A provider's whole answer is unusable (e.g. a column is missing): nothing of it is
    published, the feed counts as failed, and the source backs off."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rejected:
    """One row of an answer that could not become an event, and why."""

    reason: str  # short and stable: it is a metric label (not_a_number, wrong_type, ...)
    detail: str


@dataclass
class FeedResult:
    """What one fetch gave: records to consider and the rows that were rejected."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    #: Why a successful fetch has nothing (yet): "outside the 4CP season", "D+1 not
    #: published yet"; logged with the poll and shown by /health, never an error.
    note: str | None = None


class Feed(Protocol):
    """One thing a source fetches (a market's prices, load, a carbon signal...).

    ``fetch`` calls the provider and maps its answer; it raises on provider errors and
    :class:`MalformedResponseError` on unusable answers. Its records go to ``topic`` (events)
    or, when ``sink`` is set, to that file.
    """

    @property
    def name(self) -> str:
        """Short and stable: a metric label."""
        ...

    @property
    def topic(self) -> str | None:
        """The contract topic of the events (``None`` for a sink feed)."""
        ...

    @property
    def sink(self) -> JsonlSink | None:
        """The file of the rows (``None`` for an event feed)."""
        ...

    async def fetch(self, now: datetime) -> FeedResult:
        """Call the provider once and map the answer."""
        ...

    async def close(self) -> None:
        """Release the feed's connections (the source is stopping)."""
        ...


class EventOut(Protocol):
    """Where events go (Kafka in production; anything with ``send`` in a unit test)."""

    async def send(self, topic: str, events: Sequence[BaseModel]) -> None:
        """Deliver ``events`` to ``topic`` or raise."""
        ...

    async def check(self) -> None:
        """Raise unless the destination answers (a poll with nothing to send still checks)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def backoff_delay(
    failures: int,
    initial_s: float,
    cap_s: float,
    jitter: float = 0.1,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after ``failures`` failed polls in a row: ``initial_s`` doubled per
    failure, at most ``cap_s``, minus up to ``jitter`` of it so that sources restarted together
    do not call a recovering API in lockstep."""
    exponent = min(max(failures - 1, 0), 32)  # bounded: 2**32 x any initial exceeds any cap
    base = min(cap_s, initial_s * 2.0**exponent)
    return base * (1.0 - jitter * rand())


@dataclass
class PollReport:
    """The outcome of one poll (logged as the health line)."""

    ok: bool
    published: int = 0
    sink_rows: int = 0
    rejected: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Source:
    """One running source: its feeds, where events go, its checkpoint and health."""

    name: str
    feeds: Sequence[Feed]
    poll: PollConfig
    out: EventOut
    checkpoint: Checkpoint
    health: HealthState
    clock: Callable[[], datetime]
    log_every_poll: bool = True
    jitter: float = 0.1

    async def run(self, stop: asyncio.Event, max_polls: int | None = None) -> bool:
        """Poll until ``stop`` is set (or ``max_polls`` polls); True when the last poll
        succeeded."""
        polls, ok = 0, False
        while not stop.is_set():
            report = await self.poll_once()
            ok = report.ok
            polls += 1
            if max_polls is not None and polls >= max_polls:
                self._log(report, None)
                break
            delay = (
                self.poll.poll_interval_s
                if ok
                else backoff_delay(
                    self.health.consecutive_failures,
                    self.poll.backoff_initial_s,
                    self.poll.backoff_max_s,
                    self.jitter,
                )
            )
            self.health.next_poll_in_s = round(delay, 3)
            self._log(report, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        return ok

    async def poll_once(self) -> PollReport:
        """Fetch every feed, send what is new, advance the checkpoint; never raises for
        provider, mapping or broker errors."""
        now = self.clock()
        report = PollReport(ok=True)
        to_topic: dict[str, list[Record]] = {}
        to_sink: dict[JsonlSink, list[Record]] = {}
        for feed in self.feeds:
            result = await self._fetch(feed, now, report)
            if result is None:
                continue
            if result.note:
                report.notes[feed.name] = result.note
            fresh = self._select(result, now, report)
            if feed.sink is not None:
                to_sink.setdefault(feed.sink, []).extend(fresh)
            elif feed.topic is not None:
                to_topic.setdefault(feed.topic, []).extend(fresh)
        # Files first: local and reliable, so a broker outage does not hold load rows back.
        for sink, records in to_sink.items():
            try:
                written = sink.write(record.payload for record in records)
            except OSError as exc:  # a full or read-only disk: retried next poll
                self.health.metrics.count("sink_errors", sink=sink.path.name)
                report.errors.append(f"write {sink.path}: {exc}")
                log.warning(
                    "load file not written", extra={"path": str(sink.path), "error": str(exc)}
                )
                continue
            self.checkpoint.commit(records, now)
            self.health.metrics.count("sink_rows_written", written, sink=sink.path.name)
            report.sink_rows += written
        sent: list[Record] = []
        for topic, records in to_topic.items():
            sent.extend(await self._publish(topic, records, report))
        if not any(to_topic.values()) and any(feed.topic is not None for feed in self.feeds):
            # Nothing to send (out of season, nothing new): without this a broker that is
            # gone or mistyped would pass unnoticed until the next event, health ok meanwhile.
            await self._check_out(report)
        self.checkpoint.commit(sent, now)  # also moves the window forward when nothing was new
        self._finish(report, sent, now)
        return report

    def _select(self, result: FeedResult, now: datetime, report: PollReport) -> list[Record]:
        """What of ``result`` goes out, counting what does not."""
        metrics = self.health.metrics
        selection = self.checkpoint.select(result.records, now, self.poll.corrections)
        for verdict in (Verdict.DUPLICATE, Verdict.LATE, Verdict.CORRECTION_IGNORED):
            skipped = selection.counts[verdict]
            metrics.count("rows_skipped", skipped, verdict=verdict.value)
            if skipped:
                report.skipped[verdict.value] = report.skipped.get(verdict.value, 0) + skipped
        metrics.count("revisions_published", selection.counts[Verdict.REVISION])
        return selection.send

    async def _publish(self, topic: str, records: list[Record], report: PollReport) -> list[Record]:
        """Send ``records`` to ``topic``; the records acknowledged (all or none)."""
        if not records:
            return []
        metrics = self.health.metrics
        try:
            await self.out.send(topic, [record.payload for record in records])
        except Exception as exc:  # any broker failure is retried next poll, never fatal
            metrics.count("publish_errors")
            report.errors.append(f"publish to {topic}: {_describe(exc)}")
            log.warning(
                "events not acknowledged; they stay unsent and are retried",
                extra={"source": self.name, "topic": topic, "error": _describe(exc)},
            )
            return []
        metrics.count("events_published", len(records), topic=topic)
        report.published += len(records)
        return records

    async def _check_out(self, report: PollReport) -> None:
        try:
            await self.out.check()
        except Exception as exc:  # a broker failure is reported and retried, never fatal
            self.health.metrics.count("publish_errors")
            report.errors.append(f"broker check (nothing to publish): {_describe(exc)}")
            log.warning(
                "nothing to publish and the broker does not answer",
                extra={"source": self.name, "error": _describe(exc)},
            )

    def _finish(self, report: PollReport, sent: list[Record], now: datetime) -> None:
        """Health and gauges after a poll."""
        metrics = self.health.metrics
        for series in {record.series for record in sent}:
            newest = self.checkpoint.latest(series)
            if newest is not None:
                metrics.newest_interval.labels(self.name, series).set(newest.timestamp())
        self.health.checkpoint_intervals = self.checkpoint.intervals
        self.health.notes = dict(report.notes)
        report.ok = not report.errors
        metrics.count("polls", outcome="ok" if report.ok else "failed")
        if report.ok:
            self.health.succeeded(now)
        else:
            self.health.failed("; ".join(report.errors))

    async def _fetch(self, feed: Feed, now: datetime, report: PollReport) -> FeedResult | None:
        metrics = self.health.metrics
        try:
            async with asyncio.timeout(self.poll.timeout_s):
                result = await feed.fetch(now)
        except TimeoutError:
            metrics.count("fetch_errors", feed=feed.name, kind="timeout")
            report.errors.append(f"{feed.name}: no answer within {self.poll.timeout_s:g} s")
            log.warning(
                "provider did not answer in time",
                extra={"source": self.name, "feed": feed.name, "timeout_s": self.poll.timeout_s},
            )
            return None
        except MalformedResponseError as exc:
            metrics.count("fetch_errors", feed=feed.name, kind="malformed")
            metrics.count("rows_rejected", feed=feed.name, reason=exc.reason)
            report.rejected += 1
            report.errors.append(f"{feed.name}: malformed answer: {exc}")
            log.warning(
                "malformed answer; nothing of it is published",
                extra={"source": self.name, "feed": feed.name, "error": str(exc)},
            )
            return None
        except Exception as exc:
            metrics.count("fetch_errors", feed=feed.name, kind="error")
            report.errors.append(f"{feed.name}: {_describe(exc)}")
            log.warning(
                "provider call failed",
                extra={"source": self.name, "feed": feed.name, "error": _describe(exc)},
            )
            return None
        if result.rejected:
            reasons: dict[str, int] = {}
            for rejected in result.rejected:
                reasons[rejected.reason] = reasons.get(rejected.reason, 0) + 1
                metrics.count("rows_rejected", feed=feed.name, reason=rejected.reason)
            report.rejected += len(result.rejected)
            log.warning(
                "malformed rows rejected (not published)",
                extra={
                    "source": self.name,
                    "feed": feed.name,
                    "reasons": reasons,
                    "example": result.rejected[0].detail,
                },
            )
        return result

    def _log(self, report: PollReport, next_delay: float | None) -> None:
        if not self.log_every_poll:
            return
        log.log(
            logging.INFO if report.ok else logging.WARNING,
            "poll done" if report.ok else "poll failed",
            extra={
                "source": self.name,
                "published": report.published,
                "sink_rows": report.sink_rows,
                "rejected": report.rejected,
                **{f"skipped_{key}": value for key, value in sorted(report.skipped.items())},
                "failures_in_row": self.health.consecutive_failures,
                "next_poll_s": None if next_delay is None else round(next_delay, 2),
                **({"errors": report.errors} if report.errors else {}),
                **({"notes": report.notes} if report.notes else {}),
            },
        )


class KafkaOut:
    """Publishes validated events through :class:`streams.sdk.Publisher`, after making sure
    the topic exists (created with the project's partition count when missing), and confirms
    the topic is still listed after the acknowledgement."""

    def __init__(
        self,
        connection: KafkaConnection,
        *,
        topic_prefix: str,
        partitions: int,
        timeout_s: float,
    ) -> None:
        self.connection = connection
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.timeout_s = timeout_s
        self._publisher: Publisher | None = None

    async def send(self, topic: str, events: Sequence[BaseModel]) -> None:
        """Publish ``events`` to the contract ``topic`` and wait for every acknowledgement."""
        name = self.topic_prefix + topic
        # A generous outer bound: aiokafka's own request time-out (timeout_s) ends each
        # request; this catches whatever waits outside it (metadata, a hung stop).
        async with asyncio.timeout(self.timeout_s * 3):
            await self._ensure_topic(name)
            publisher = await self._open()
            try:
                for event in events:
                    await publisher.publish(topic, event)
                await publisher.flush()
            except BaseException as exc:
                await self._drop(exc)
                raise
            if name not in await self._topics():
                raise GridshiftError(
                    f"the broker acknowledged events for {name} but does not list the topic "
                    "(it lost its topics?); they are sent again"
                )

    async def check(self) -> None:
        """Raise unless the broker lists its topics within the poll's bounds."""
        async with asyncio.timeout(self.timeout_s * 3):
            await self._topics()

    async def close(self) -> None:
        """Stop the producer (nothing is pending after a successful send)."""
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.__aexit__(None, None, None)

    async def _open(self) -> Publisher:
        if self._publisher is None:
            publisher = Publisher(
                self.connection,
                topic_prefix=self.topic_prefix,
                client_options={"request_timeout_ms": int(self.timeout_s * 1000)},
            )
            await publisher.__aenter__()
            self._publisher = publisher
        return self._publisher

    async def _drop(self, exc: BaseException) -> None:
        # A failed producer may hold half-sent batches: stop it without flushing and start a
        # new one next time, so the retry sends the whole poll again from a clean state.
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await publisher.__aexit__(type(exc), exc, exc.__traceback__)

    async def _admin(self) -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(
            **self.connection.client(request_timeout_ms=int(self.timeout_s * 1000))
        )
        try:
            await admin.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await admin.close()
            raise
        return admin

    async def _topics(self) -> set[str]:
        admin = await self._admin()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    async def _ensure_topic(self, name: str) -> None:
        if name in await self._topics():
            return
        admin = await self._admin()
        try:
            response = await admin.create_topics([NewTopic(name, self.partitions, 1)])
        finally:
            await admin.close()
        for topic, code, *_ in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise GridshiftError(f"could not create topic {topic} (error code {code})")
        log.info("created missing topic", extra={"topic": name, "partitions": self.partitions})


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
