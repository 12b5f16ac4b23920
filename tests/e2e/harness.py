"""Helpers for end-to-end tests on the embedded broker: a worker in this event loop, and
bounded waits for decisions and dead letters (no sleeps: every wait has a deadline); plus what
an outside client sees: topics listed, offsets committed and records read by confluent-kafka
(librdkafka), and /health and /metrics over plain HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas import DispatchDecision
from streams.engine.fleet import Fleet
from streams.settings import Settings, load_settings
from streams.worker._transport import _Consumer, started_consumer
from streams.worker.app import Worker
from streams.worker.service import running_worker
from tests.factories import T0, Q, hashprice, price

WAIT_S = 30.0

#: faust's periodic commit, out of the way (``committing_on_demand``): a test commits itself.
NO_PERIODIC_COMMIT_S = 3600.0


def worker_settings(prefix: str, **overrides: Any) -> Settings:
    """Settings for a test worker: fresh topics and group; no HTTP unless a test asks for it."""
    values: dict[str, Any] = {"http_enabled": False, **overrides}
    return load_settings(topic_prefix=prefix, app_id=f"{prefix}worker", **values)


@contextlib.asynccontextmanager
async def worker_on(bootstrap: str, fleet: Fleet, settings: Settings) -> AsyncIterator[Worker]:
    async with running_worker(settings, fleet, bootstrap) as worker:
        yield worker


def decided_at(site_id: str, start: datetime) -> Callable[[DispatchDecision], bool]:
    """Matches the decision for ``site_id`` and the interval starting at ``start``."""
    return lambda d: d.site_id == site_id and d.interval_start == start


class DecisionLog:
    """Collects decisions from an async iterator in the background; waits are bounded."""

    def __init__(self, decisions: AsyncIterator[DispatchDecision]) -> None:
        self.seen: list[DispatchDecision] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._collect(decisions))

    async def _collect(self, decisions: AsyncIterator[DispatchDecision]) -> None:
        async for decision in decisions:
            self.seen.append(decision)
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[DispatchDecision], bool], timeout_s: float = WAIT_S
    ) -> DispatchDecision:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            for decision in reversed(self.seen):
                if predicate(decision):
                    return decision
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"no matching decision within {timeout_s}s; saw {len(self.seen)}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def read_records(
    bootstrap: str, topic: str, count: int, timeout_s: float = WAIT_S
) -> list[Any]:
    """The first ``count`` records of ``topic`` (from the beginning), or AssertionError."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=50
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(records) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"only {len(records)} of {count} records on {topic}")
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            for messages in batch.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    return records


# ---------------------------------------------------------------------- an outside client
POLL_S = 0.2  # how often an outside client looks again (every wait below has a deadline)
#: Empty polls in a row after which a partition read to its watermark has nothing more.
_QUIET_POLLS = 3


def listed_topics(bootstrap: str) -> dict[str, int]:
    """Every topic the broker lists, with its partition count (confluent-kafka admin)."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


async def wait_listed(bootstrap: str, topics: Iterable[str], timeout_s: float = WAIT_S) -> None:
    """Wait until the broker lists every one of ``topics``."""
    wanted = set(topics)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not wanted <= set(await asyncio.to_thread(listed_topics, bootstrap)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"topics not listed within {timeout_s}s: {sorted(wanted)}")
        await asyncio.sleep(POLL_S)  # polling the broker's listing under a deadline


async def produce(
    bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]], **config: Any
) -> None:
    """Produce ``(topic, key, value)`` records with confluent-kafka and wait for every ack."""
    producer = Producer({"bootstrap.servers": bootstrap, **config})
    for topic, key, value in records:
        producer.produce(topic, key=key, value=value)
    assert await asyncio.to_thread(producer.flush, 30) == 0, "not every record acknowledged"


def as_json(model: Any) -> bytes:
    return json.dumps(model.model_dump(mode="json")).encode()


async def find_record(
    bootstrap: str,
    topic: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    partitions: int = 4,
    timeout_s: float = WAIT_S,
) -> dict[str, Any]:
    """The first JSON record of ``topic`` (read from the beginning of every partition by a
    plain confluent-kafka consumer, no group join) that matches ``predicate``."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}.reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    seen = 0
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            message = await asyncio.to_thread(consumer.poll, 0.5)
            if message is None or message.error():
                continue
            seen += 1
            payload: dict[str, Any] = json.loads(message.value() or b"null")
            if predicate(payload):
                return payload
    finally:
        await asyncio.to_thread(consumer.close)
    raise AssertionError(f"no matching record on {topic} within {timeout_s}s; read {seen}")


def end_offsets(
    bootstrap: str, topic: str, partitions: int = 4, timeout_s: float = WAIT_S
) -> dict[int, int]:
    """The end offset of each partition of ``topic``: one past the last record a plain
    confluent-kafka consumer reads there from the beginning (0: empty).

    Not the broker's high watermark alone: Tansu reports one past the *first* offset of a
    partition's last batch (measured: 1 for a partition holding one batch of 12 records, 27
    after batches of 12, 12, 1, 1 and 5), so it undercounts whenever the last produce was
    batched. It is a lower bound, though: every partition is read until the consumer has got
    the record just below it, and then until no more come (``_QUIET_POLLS`` empty polls in a
    row); the end is one past the last offset read, never less than the watermark."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}.ends",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
        reached = {p for p, end in ends.items() if end <= 0}  # empty: nothing to read
        if len(reached) == partitions:
            return ends
        consumer.assign(
            [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for p in range(partitions)
                if p not in reached
            ]
        )
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while len(reached) < partitions or quiet < _QUIET_POLLS:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{topic}: not read up to its watermarks {ends} within {timeout_s}s"
                )
            message = consumer.poll(POLL_S)
            if message is None or message.error():
                quiet += 1
                continue
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None:
                continue
            quiet = 0
            if offset + 1 >= ends[partition]:
                reached.add(partition)  # at or past the watermark: only the rest of a batch
            ends[partition] = max(ends[partition], offset + 1)
        return ends
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int = 4) -> dict[int, int]:
    """The offsets group ``group`` has committed on ``topic`` (partitions without one left out)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


async def wait_committed(
    bootstrap: str,
    group: str,
    topic: str,
    offset: int,
    partition: int | None = None,
    timeout_s: float = WAIT_S,
) -> None:
    """Wait until ``group`` has committed ``offset`` (or beyond) on ``topic``'s ``partition``
    (None: the offsets of all partitions together)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        offsets = await asyncio.to_thread(committed, bootstrap, group, topic)
        now = sum(offsets.values()) if partition is None else offsets.get(partition, -1)
        if now >= offset:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{group} committed {offsets} on {topic}, not {offset}")
        await asyncio.sleep(POLL_S)  # polling the group's committed offsets under a deadline


async def committed_settles_at_end(
    bootstrap: str, group: str, topic: str, timeout_s: float = WAIT_S
) -> dict[int, int]:
    """Wait until ``group``'s committed offsets on ``topic`` equal the topic's end offsets
    (everything read is committed); fail at once if any is past its end offset (an offset of
    a log the broker lost, committed into the new one)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        # Committed first: the log only grows, so an end read after it bounds it truly.
        offsets = await asyncio.to_thread(committed, bootstrap, group, topic)
        ends = await asyncio.to_thread(end_offsets, bootstrap, topic)
        past = {p: o for p, o in offsets.items() if o > ends[p]}
        assert not past, f"{group} committed {past} on {topic}, past its end offsets {ends}"
        # 0 committed (a log's start, after a loss) is as good as none on an empty partition.
        if {p: o for p, o in offsets.items() if o > 0} == {p: e for p, e in ends.items() if e > 0}:
            return offsets
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{group} committed {offsets} on {topic}; end offsets {ends}")
        await asyncio.sleep(POLL_S)  # polling the group's committed offsets under a deadline


async def until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Wait until ``condition()`` holds (polled), else AssertionError naming ``what``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.01)  # polling in-process state under a deadline


def decision_at(k: int, site: str = "site-a") -> Callable[[dict[str, Any]], bool]:
    """A decision (as JSON, :func:`find_record`'s) for ``site`` and the ``k``-th interval."""
    start = T0 + k * Q
    return lambda d: (
        d["site_id"] == site and datetime.fromisoformat(str(d["interval_start"])) == start
    )


async def get_health(session: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    async with session.get(f"{base}/health") as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


async def get_metrics(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/metrics") as response:
        assert response.status == 200
        return await response.text()


def unhealthy_with(*texts: str) -> Callable[[int, dict[str, Any]], bool]:
    """/health is 503 and one problem line contains every one of ``texts``."""
    return lambda status, body: (
        status == 503 and any(all(text in line for text in texts) for line in body["problems"])
    )


def healthy(status: int, body: dict[str, Any]) -> bool:
    return status == 200 and body["status"] == "ok"


async def wait_health(
    session: aiohttp.ClientSession,
    base: str,
    match: Callable[[int, dict[str, Any]], bool],
    timeout_s: float = WAIT_S,
) -> dict[str, Any]:
    """Ask /health until its answer matches; the body then, or AssertionError with the last."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status, body = await get_health(session, base)
        if match(status, body):
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/health did not match within {timeout_s}s: {status} {body}")
        await asyncio.sleep(POLL_S)  # polling the worker's HTTP state under a deadline


async def old_log_decided_and_acked(bootstrap: str, prefix: str, worker: Worker) -> None:
    """The log a test's broker will lose: a hashprice and prices 0-3 on one partition of the
    price topic, published as an outside client would, decided and acked by ``worker``."""
    ledger = worker.planner.ledger
    assert ledger is not None
    await produce(
        bootstrap,
        [(prefix + "market.hashprice.v1", None, as_json(hashprice()))]
        + [(prefix + "grid.price.v1", b"HB_SOUTH", as_json(price(k, 20.0 + k))) for k in range(4)],
    )
    await find_record(bootstrap, prefix + "dispatch.decision.v1", decision_at(3))
    await until(lambda: ledger.outstanding() == 0, "the prices acked")


@contextlib.asynccontextmanager
async def worker_past_old_log(
    bootstrap: str, prefix: str, fleet: Fleet
) -> AsyncIterator[tuple[Worker, _Consumer, Settings]]:
    """A worker (no debounce) that has decided and acked :func:`old_log_decided_and_acked`'s
    log, with its faust consumer and settings: where the log-loss commit tests start."""
    settings = worker_settings(prefix, debounce_ms=0)
    async with worker_on(bootstrap, fleet, settings) as worker:
        consumer = started_consumer(worker.app)
        assert consumer is not None
        await old_log_decided_and_acked(bootstrap, prefix, worker)
        yield worker, consumer, settings


async def new_log_decided_and_committed(
    bootstrap: str, prefix: str, worker: Worker, settings: Settings, ks: Iterable[int]
) -> dict[int, int]:
    """After a lost log: prices ``ks`` published into the new log, each decided, all acked, then
    one faust commit (what its timer would start); the group's committed offsets once they
    settle at the new log's end (never past it: :func:`committed_settles_at_end`)."""
    ledger, consumer = worker.planner.ledger, started_consumer(worker.app)
    assert ledger is not None and consumer is not None
    prices = prefix + "grid.price.v1"
    for k in ks:
        await produce(bootstrap, [(prices, b"HB_SOUTH", as_json(price(k, 30.0)))])
        await find_record(bootstrap, prefix + "dispatch.decision.v1", decision_at(k))
    await until(lambda: ledger.outstanding() == 0, "the new prices acked")
    await consumer.commit()
    return await committed_settles_at_end(bootstrap, settings.app_id, prices)
