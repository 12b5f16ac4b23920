"""Outage handling pieces: repeated client errors folded in the log, the watch's transitions and
log lines, and missing topics recreated with their declared partitions on a real broker."""

from __future__ import annotations

import logging

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka.broker import EmbeddedBroker
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import BrokerWatch, create_missing_topics
from streams.logs import RepeatFilter, fields


def record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_repeated_client_errors_are_folded_into_one_line_per_interval() -> None:
    now = [0.0]
    folding = RepeatFilter(("aiokafka",), interval_s=10.0, clock=lambda: now[0])
    passed = []
    for second in range(25):
        now[0] = float(second)
        for _ in range(6):  # six failed reconnects a second
            line = record("aiokafka.consumer.fetcher", "Failed fetch messages from %s")
            if folding.filter(line):
                passed.append(line.getMessage())
    assert len(passed) == 3  # t = 0, 10 and 20 s
    assert passed[0] == "Failed fetch messages from %s"
    assert passed[1].endswith("(and 59 similar in the last 10s)")
    # Our own lines and the client's info lines are never folded.
    assert all(folding.filter(record("streams.kafka.watch", "broker unreachable")) for _ in "ab")
    assert all(folding.filter(record("aiokafka", "joined", logging.INFO)) for _ in "ab")


async def test_watch_logs_each_transition_once_and_restores_topics(
    broker: EmbeddedBroker, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    answers = iter([True, False, False, False, True, True])

    async def probe() -> bool:
        return next(answers)

    seen: list[bool] = []
    topics = {f"{topic_prefix}in": 3, f"{topic_prefix}out": 2}
    watch = BrokerWatch(KafkaConnection(broker.bootstrap), probe, topics, on_change=seen.append)
    with caplog.at_level(logging.WARNING, logger="streams.kafka.watch"):
        for _ in range(6):
            await watch.check()
    assert seen == [False, True]
    assert watch.outages == 1
    assert watch.topics_recreated == 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("broker unreachable")
    assert "broker reachable again" in lines[1] and "kept nothing" in lines[1]
    # The facts are fields of the record, not text inside the message.
    assert sorted(fields(caplog.records[1])["topics_recreated"]) == sorted(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == topics
    # A second pass finds nothing missing.
    assert await create_missing_topics(KafkaConnection(broker.bootstrap), topics) == []
