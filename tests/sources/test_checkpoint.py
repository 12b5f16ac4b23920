"""The checkpoint decides what a source sends: new intervals go out, duplicates and late rows
do not, forecasts go out again when they change, corrections only when asked; it survives a
restart, refuses a corrupt file, and one source runs at a time. And the backoff schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas import CarbonEvent, PriceEvent
from streams.errors import GridshiftError
from streams.sources.checkpoint import Checkpoint, Record, Verdict, exclusive
from streams.sources.loop import backoff_delay

T0 = datetime(2024, 8, 20, 20, 0, tzinfo=UTC)
WINDOW = timedelta(hours=48)


def price(k: int, value: float = 30.0) -> Record:
    start = T0 + timedelta(minutes=15 * k)
    event = PriceEvent(
        node="HB_SOUTH",
        price_usd_per_mwh=value,
        interval_start=start,
        interval_end=start + timedelta(minutes=15),
    )
    return Record("grid.price.v1/HB_SOUTH/real_time", start, event)


def forecast(k: int, value: float) -> Record:
    start = T0 + timedelta(hours=k)
    event = CarbonEvent(
        region="ERCOT",
        basis="forecast",
        average_intensity_g_per_kwh=value,
        interval_start=start,
        interval_end=start + timedelta(hours=1),
    )
    return Record("grid.carbon.v1/ERCOT/forecast", start, event, revisable=True)


def test_verdicts(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "c.json", WINDOW, "test")
    now = T0 + timedelta(hours=1)
    checkpoint.commit([price(0), forecast(0, 300.0)], now)
    assert checkpoint.classify(price(1), now, "ignore") is Verdict.NEW
    assert checkpoint.classify(price(0), now, "ignore") is Verdict.DUPLICATE
    assert checkpoint.classify(price(0, 99.0), now, "ignore") is Verdict.CORRECTION_IGNORED
    assert checkpoint.classify(price(0, 99.0), now, "publish") is Verdict.REVISION
    assert checkpoint.classify(forecast(0, 300.0), now, "ignore") is Verdict.DUPLICATE
    assert checkpoint.classify(forecast(0, 310.0), now, "ignore") is Verdict.REVISION
    assert checkpoint.classify(price(-4 * 49), now, "ignore") is Verdict.LATE


def test_a_repeated_interval_in_one_answer_is_sent_once(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "c.json", WINDOW, "test")
    selection = checkpoint.select([price(0, 1.0), price(0, 2.0), price(1)], T0, "ignore")
    assert [r.payload.price_usd_per_mwh for r in selection.send] == [2.0, 30.0]  # type: ignore[attr-defined]
    assert selection.counts[Verdict.DUPLICATE] == 1


def test_a_restart_reads_what_was_sent(tmp_path: Path) -> None:
    path = tmp_path / "iso.checkpoint.json"
    Checkpoint.open(path, WINDOW, "iso").commit([price(k) for k in range(4)], T0)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
    reopened = Checkpoint.open(path, WINDOW, "iso")
    selection = reopened.select([price(k) for k in range(6)], T0, "ignore")
    assert [r.at for r in selection.send] == [price(4).at, price(5).at]
    assert reopened.latest("grid.price.v1/HB_SOUTH/real_time") == price(3).at
    assert reopened.intervals == 4


def test_old_intervals_are_forgotten_and_the_floor_never_moves_back(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "c.json", WINDOW, "test")
    checkpoint.commit([price(0), price(1)], T0)
    later = T0 + WINDOW + timedelta(minutes=20)
    checkpoint.commit([], later)
    assert checkpoint.intervals == 0  # both left the window
    assert checkpoint.classify(price(0), later, "ignore") is Verdict.LATE
    # A clock stepping back does not make forgotten intervals new again.
    assert checkpoint.classify(price(0), T0, "ignore") is Verdict.LATE


@pytest.mark.parametrize(
    "content", ["{not json", json.dumps({"version": 99, "floor": None, "series": {}}), "[]"]
)
def test_an_unreadable_checkpoint_is_refused_with_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(GridshiftError, match=r"is unreadable .*move it away to start afresh"):
        Checkpoint.open(path, WINDOW, "test")


def test_one_process_per_source_and_state_folder(tmp_path: Path) -> None:
    lock = tmp_path / "iso-ercot.lock"
    with (
        exclusive(lock, "iso-ercot"),  # held while a second process tries
        pytest.raises(GridshiftError, match="already running"),
        exclusive(lock, "iso-ercot"),
    ):
        pass
    with exclusive(lock, "iso-ercot"):  # released when the first one ended
        pass


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [backoff_delay(n, 5.0, 300.0, jitter=0.0) for n in range(1, 10)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    assert backoff_delay(10_000, 5.0, 300.0, jitter=0.0) == 300.0  # no overflow
    assert backoff_delay(3, 5.0, 300.0, jitter=0.1, rand=lambda: 1.0) == pytest.approx(18.0)
    assert backoff_delay(3, 5.0, 300.0, jitter=0.1, rand=lambda: 0.0) == 20.0


def test_a_checkpoint_that_cannot_be_written_stops_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    checkpoint = Checkpoint(blocker / "c.json", WINDOW, "test")
    with pytest.raises(GridshiftError, match=r"cannot write checkpoint .*; the source stops"):
        checkpoint.commit([price(0)], T0)
