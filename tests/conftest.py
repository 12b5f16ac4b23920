"""Shared fixtures: one embedded broker per test session, fresh topic names per test, the real
data folder (skipped with a reason when absent), and small fleets."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from tests.factories import mining_site

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker on a free loopback port for the whole session, stopped at the end."""
    embedded = EmbeddedBroker()
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic namespace, so no two tests ever share a topic."""
    return f"t{uuid.uuid4().hex[:10]}."


def find_data_dir() -> Path | None:
    configured = os.environ.get("GRIDSHIFT_DATA_DIR")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "data"
    return candidate if (candidate / "replay").is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real historical data folder; tests that need it skip when it is absent."""
    found = find_data_dir()
    if found is None:
        pytest.skip("real data folder not found: set GRIDSHIFT_DATA_DIR or put ../shared/data")
    return found


@pytest.fixture
def one_site_fleet() -> Fleet:
    return Fleet(sites=(mining_site(),))
