"""Fixtures of the end-to-end tests that change how the real worker is built."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.settings import Settings
from streams.worker.app import Worker, build_worker
from tests.e2e.harness import NO_PERIODIC_COMMIT_S


@pytest.fixture
def committing_on_demand(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers built with faust's commit timer at an hour (read when its consumer starts): the
    test starts each commit itself."""

    def build(settings: Settings, fleet: Fleet, connection: Any) -> Worker:
        worker = build_worker(settings, fleet, connection)
        worker.app.conf.broker_commit_interval = NO_PERIODIC_COMMIT_S
        return worker

    monkeypatch.setattr("streams.worker.service.build_worker", build)


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of the test's own (the test stops and restarts it under the worker), stopped at
    the end (stopping a stopped broker does nothing)."""
    embedded = EmbeddedBroker()
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()
