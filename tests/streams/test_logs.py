"""What an operator reads in the worker's log: faust's sensor bookkeeping warning at every
rebalance is dropped (kept at DEBUG); other warnings pass."""

from __future__ import annotations

import logging

from streams.logs import drop_sensor_noise


def record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, (3,), None)


def test_faust_sensor_noise_is_dropped_and_other_warnings_pass() -> None:
    assert not drop_sensor_noise(record("faust.app.base", "Missing sensor state for rebalance #%s"))
    assert not drop_sensor_noise(
        record("faust.app.base", "Missing sensor state for rebalance end #%s")
    )
    # As mode logs it for the worker's app: with its service label in front.
    assert not drop_sensor_noise(
        record("streams.worker._transport", "[^App]: Missing sensor state for rebalance #%s")
    )
    assert drop_sensor_noise(record("faust.app.base", "Rebalancing took %s"))
    assert drop_sensor_noise(record("streams.worker.agents", "dead-lettered"))
