"""faust's data folder is no litter: a worker start and stop leaves nothing in the working
directory (faust's default put an empty ``<app_id>-data/v1/tables`` there at every start).
While the worker runs the folder is a temporary one; its stop removes it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from streams.worker._transport import App
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


async def test_a_start_that_fails_leaves_no_data_folder_behind(
    broker: EmbeddedBroker,
    one_site_fleet: Fleet,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # faust makes the folder at its first start; a start that fails afterwards gets no stop.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    made: list[Path] = []

    async def fail_after_first_start(self: App) -> None:
        made.append(Path(self.conf.datadir))
        raise RuntimeError("a start that fails (a STAND-IN for any failure after the folder)")

    original = App.on_first_start

    async def first_start(self: App) -> None:
        await original(self)
        await fail_after_first_start(self)

    monkeypatch.setattr(App, "on_first_start", first_start)
    with pytest.raises(RuntimeError, match="a start that fails"):
        async with worker_on(broker.bootstrap, one_site_fleet, worker_settings(topic_prefix)):
            pass  # never reached
    assert made and made[0].parent == tmp_path
    assert not made[0].exists()
