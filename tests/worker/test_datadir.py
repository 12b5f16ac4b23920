"""faust's data folder is no litter: a worker start and stop leaves nothing in the working
directory (faust's default put an empty ``<app_id>-data/v1/tables`` there at every start).
While the worker runs the folder is a temporary one; its stop removes it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from tests.e2e.harness import worker_on, worker_settings

pytestmark = pytest.mark.e2e


async def test_a_worker_start_and_stop_leaves_nothing_in_the_working_directory(
    broker: EmbeddedBroker,
    one_site_fleet: Fleet,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    settings = worker_settings(topic_prefix)
    async with worker_on(broker.bootstrap, one_site_fleet, settings) as worker:
        assert list(workdir.iterdir()) == []
        datadir = worker.app.conf.datadir
        assert datadir.is_dir()
        assert datadir.parent == Path(tempfile.gettempdir())
    assert list(workdir.iterdir()) == []
    assert not datadir.exists()
