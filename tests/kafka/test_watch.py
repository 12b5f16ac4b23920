"""Outage handling pieces: repeated client errors folded in the log, the watch's transitions and
log lines, missing topics recreated with their declared partitions on a real broker, and the
gate every delivery passes (admitted while every topic exists, confirmed after the ack)."""

from __future__ import annotations

import logging

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka.broker import EmbeddedBroker
from streams.kafka.connection import KafkaConnection
from streams.kafka.watch import (
    BrokerWatch,
    DeliveryUncertainError,
    LogLoss,
    create_missing_topics,
)
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


async def test_sends_count_only_on_topics_that_still_exist(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    """Tansu acknowledges sends to a topic it lost: the watch is what says whether an
    acknowledged send can be counted (issue #11, item 2)."""
    connection = KafkaConnection(broker.bootstrap)
    answers = [True]

    async def probe() -> bool:
        return answers[-1]

    lost, kept = f"{topic_prefix}decisions", f"{topic_prefix}letters"
    topics = {lost: 2, kept: 2}
    watch = BrokerWatch(connection, probe, topics)
    try:
        assert not watch.ready.is_set()  # nothing is sent before the topics are confirmed
        with pytest.raises(DeliveryUncertainError, match="not confirmed yet"):
            await watch.admit(0.05)
        assert await watch.verify()  # creates both
        epoch = await watch.admit(1.0)
        await watch.confirm(lost, epoch)

        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([lost])
        finally:
            await admin.close()
        with pytest.raises(DeliveryUncertainError, match="does not exist"):
            await watch.confirm(lost, epoch)
        assert watch.missing == {lost} and not watch.ready.is_set() and watch.epoch > epoch
        with pytest.raises(DeliveryUncertainError, match=f"topics missing: {lost}"):
            await watch.admit(0.05)
        # A send admitted before the topic went missing is not counted, even once it is back.
        assert await watch.verify()
        assert watch.ready.is_set() and watch.topics_recreated == 3 and not watch.missing
        with pytest.raises(DeliveryUncertainError, match="went away or lost topics"):
            await watch.confirm(lost, epoch)
        await watch.confirm(lost, await watch.admit(1.0))

        # An outage moves the epoch and closes the gate until the topics are confirmed again.
        epoch = watch.epoch
        answers.append(False)
        await watch.check()
        assert watch.epoch == epoch + 1 and not watch.ready.is_set()
        answers.append(True)
        await watch.check()
        assert not watch.ready.is_set()  # up, but not confirmed yet
        assert await watch.verify()
        assert watch.ready.is_set()
    finally:
        await watch.close()


async def test_a_lost_log_is_told_before_any_delivery_is_admitted(
    broker: EmbeddedBroker, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Topics the broker lost (recreated after an outage, or found missing) start a new log
    generation, and the worker is told which before the gate opens again (issue #11, fault 2)."""
    connection = KafkaConnection(broker.bootstrap)
    answers = [True]

    async def probe() -> bool:
        return answers[-1]

    prices, letters = f"{topic_prefix}prices", f"{topic_prefix}letters"
    watch = BrokerWatch(connection, probe, {prices: 2, letters: 2})
    told: list[tuple[LogLoss, bool]] = []

    async def forget(loss: LogLoss) -> None:
        told.append((loss, watch.ready.is_set()))

    async def broken(loss: LogLoss) -> None:
        raise RuntimeError("a part that cannot reset")

    watch.on_log_lost.extend([broken, forget])
    try:
        # The topics of a first start are not a lost log... unless they were missing: here they
        # do not exist yet, so the first listing finds them missing.
        assert await watch.verify()
        assert told == [(LogLoss(frozenset({prices, letters}), 1), False)]
        assert watch.log_generation == 1 and watch.ready.is_set()
        told.clear()
        assert await watch.verify()
        assert told == [] and watch.log_generation == 1  # nothing lost: nothing told

        # A topic deleted while the broker runs: only that one's log is lost.
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([prices])
        finally:
            await admin.close()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="streams.kafka.watch"):
            assert await watch.verify()
        assert told == [(LogLoss(frozenset({prices}), 2), False)]
        assert watch.logs_lost == 2 and watch.ready.is_set()
        said = [r for r in caplog.records if "lost the log" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.WARNING
        assert "read from its start" in said[0].getMessage()
        assert fields(said[0])["topics"] == [prices] and fields(said[0])["log_generation"] == 2
        told.clear()

        # A topic a listing (a sender's confirm) saw missing and someone recreated before the
        # watch did: still a lost log.
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([letters])
            epoch = await watch.admit(1.0)
            with pytest.raises(DeliveryUncertainError):
                await watch.confirm(letters, epoch)
            await create_missing_topics(connection, {letters: 2})
        finally:
            await admin.close()
        assert await watch.verify()
        assert told == [(LogLoss(frozenset({letters}), 3), False)]
        told.clear()

        # An outage after which the broker has none of the topics: both recreated, both told,
        # before the topics are confirmed and the gate opens.
        answers.append(False)
        await watch.check()
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([prices, letters])
        finally:
            await admin.close()
        answers.append(True)
        with caplog.at_level(logging.INFO, logger="streams.kafka.watch"):
            caplog.clear()
            await watch.check()
        # One warning says it all (the reconnect line); the loss itself only at info.
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1 and "new log read from its start" in warned[0]
        # A part that fails to reset is logged; the others are still told.
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
            "could not forget the lost log"
        ]
        assert told == [(LogLoss(frozenset({prices, letters}), 4), False)]
        assert not watch.ready.is_set()
        assert await watch.verify()
        assert watch.ready.is_set() and len(told) == 1  # told once per loss
    finally:
        await watch.close()
