"""The poll cycle against the broker, whatever the provider: a broker that is down leaves the
checkpoint where it was (everything is sent once it is back), a missing topic is created before
anything is sent, and ``run`` stops promptly when asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas import PriceEvent
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.connection import KafkaConnection
from streams.sources.checkpoint import Record
from streams.sources.config import PollConfig
from streams.sources.loop import FeedResult, KafkaOut, PollReport, Source
from streams.sources.sink import JsonlSink, LoadRow
from tests.sources.harness import FAST, Clock, make_source, read_topic_async

pytestmark = pytest.mark.e2e

T0 = datetime(2024, 8, 20, 20, 0, tzinfo=UTC)


@dataclass
class FourPrices:
    """A feed without a provider: the same four 15-minute prices on every fetch."""

    name: str = "four-prices"
    topic: str | None = "grid.price.v1"
    sink: None = None

    async def fetch(self, now: datetime) -> FeedResult:
        result = FeedResult()
        for k in range(4):
            start = T0 + timedelta(minutes=15 * k)
            event = PriceEvent(
                node="HB_SOUTH",
                price_usd_per_mwh=20.0 + k,
                interval_start=start,
                interval_end=start + timedelta(minutes=15),
            )
            result.records.append(Record("grid.price.v1/HB_SOUTH/real_time", start, event))
        return result

    async def close(self) -> None:
        """Nothing to release."""


def gone_broker(topic_prefix: str) -> KafkaOut:
    """Where events go when the broker is "down": nothing listens on the port."""
    return KafkaOut(
        KafkaConnection(f"127.0.0.1:{free_port()}"),
        topic_prefix=topic_prefix,
        partitions=1,
        timeout_s=1.0,
    )


@pytest.fixture
async def source(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Source]:
    built = make_source(
        "loop-test",
        [FourPrices()],
        PollConfig(**FAST),
        bootstrap=broker.bootstrap,
        prefix=topic_prefix,
        state_dir=tmp_path,
        clock=Clock(T0 + timedelta(hours=1)),
    )
    yield built
    await built.out.close()


async def test_a_broker_outage_sends_nothing_twice_and_loses_nothing(
    source: Source, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    working = source.out
    source.out = gone_broker(topic_prefix)
    down = await source.poll_once()
    await source.out.close()
    assert not down.ok
    assert down.published == 0
    assert source.health.metrics.totals["publish_errors"] == 1
    assert source.checkpoint.intervals == 0  # not acknowledged: not remembered as sent
    source.out = working  # the broker is back
    back = await source.poll_once()
    assert back.ok, back.errors
    assert back.published == 4
    assert (await source.poll_once()).published == 0
    # The topic did not exist: the source created it (one partition, as configured here).
    records = await read_topic_async(broker.bootstrap, topic_prefix + "grid.price.v1")
    assert [r["price_usd_per_mwh"] for r in records] == [20.0, 21.0, 22.0, 23.0]


async def test_a_poll_with_nothing_to_send_still_finds_the_broker_gone(
    source: Source, topic_prefix: str
) -> None:
    # Out of season or nothing new: no event to send, but a gone (or mistyped) broker must
    # still fail the poll, so `--once` exits non-zero and /health says why.
    assert (await source.poll_once()).published == 4
    idle = await source.poll_once()
    assert idle.ok, idle.errors
    assert idle.published == 0
    working = source.out
    source.out = gone_broker(topic_prefix)
    try:
        down = await source.poll_once()
    finally:
        await source.out.close()
        source.out = working
    assert not down.ok
    assert len(down.errors) == 1
    assert down.errors[0].startswith("broker check (nothing to publish): ")
    assert source.health.metrics.totals["publish_errors"] == 1
    assert source.health.consecutive_failures == 1
    assert source.health.body()["last_error"] == down.errors[0]
    back = await source.poll_once()  # the broker back: a good poll again, nothing sent twice
    assert back.ok, back.errors
    assert back.published == 0
    assert source.health.consecutive_failures == 0


async def test_run_stops_promptly_when_asked(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    polled = asyncio.Event()
    poll_once = source.poll_once

    async def poll_and_tell() -> PollReport:
        report = await poll_once()
        polled.set()
        return report

    monkeypatch.setattr(source, "poll_once", poll_and_tell)
    source.poll = PollConfig(**{**FAST, "poll_interval_s": 3_600.0})  # a long wait between polls
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    await asyncio.wait_for(polled.wait(), 30)
    stop.set()
    assert await asyncio.wait_for(task, 10)  # not an hour: the wait ends on stop
    assert source.health.next_poll_in_s == 3_600.0


@dataclass
class LoadRows:
    """A sink feed without a provider: two hours of measured load."""

    sink: JsonlSink
    name: str = "load"
    topic: None = None

    async def fetch(self, now: datetime) -> FeedResult:
        result = FeedResult()
        for hour in range(2):
            start = T0 + timedelta(hours=hour)
            row = LoadRow(
                iso="ERCOT",
                kind="load",
                interval_start=start,
                interval_end=start + timedelta(hours=1),
                load_mw=70_000.0 + hour,
            )
            result.records.append(Record("load/ERCOT/load", start, row))
        return result

    async def close(self) -> None:
        """Nothing to release."""


async def test_a_load_file_that_cannot_be_written_is_retried(
    source: Source, tmp_path: Path
) -> None:
    feed = LoadRows(JsonlSink(tmp_path))  # a folder, not a file: every write fails
    source.feeds = [feed]
    report = await source.poll_once()
    assert not report.ok
    assert source.health.metrics.totals["sink_errors"] == 1
    assert source.checkpoint.intervals == 0  # not written: not remembered
    feed.sink = JsonlSink(tmp_path / "ercot-load.jsonl")  # the disk is fixed
    report = await source.poll_once()
    assert report.ok, report.errors
    assert report.sink_rows == 2
    assert len(feed.sink.path.read_text().splitlines()) == 2
