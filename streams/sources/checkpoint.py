"""What a source has already sent: one small JSON file per source, so a restart never sends an
interval again (de-duplication by interval, decided here and nowhere else).

Every event or load row a source produces is a :class:`Record` of a *series* (one node and
market, one region and basis, the hashprice) for one interval. The checkpoint remembers, per
series, the intervals sent in the last ``window`` of wall-clock time with a fingerprint of what
was sent. A new record is then one of:

- **new**: its interval was not sent: it goes out (also a late row that fills a gap, as long as
  it is inside the window);
- **duplicate**: the same interval with the same content: dropped;
- **late**: its interval starts before the window (``now - window``): dropped and counted,
  since nothing older is remembered and it could be a duplicate;
- **revision**: a sent interval with different content. A forecast (``revisable``) is a new
  vintage and goes out; an observed value or a day-ahead price is a correction, sent only when
  the source's ``corrections = "publish"`` and otherwise dropped and counted.

The checkpoint is written atomically (temporary file, fsync, rename) after the broker
acknowledged the events, so a crash between the acknowledgement and the write re-sends at most
that one poll's events (at-least-once; decision ids and deterministic event content make such a
duplicate harmless downstream). Reading the topic back instead was rejected: the embedded broker
answers ListOffsets(LATEST) wrongly, and a topic can hold other producers' events.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from streams.errors import GridshiftError

VERSION = 1


@dataclass(frozen=True)
class Record:
    """One interval of one series, ready to send (an event, or a load row for the sink)."""

    series: str
    at: datetime  # interval start, tz-aware
    payload: BaseModel
    #: A forecast: a changed value for a sent interval is a new vintage, sent again.
    revisable: bool = False
    #: Fields left out of the fingerprint: they change without changing the fact (a
    #: forecast's publish time), so an unchanged value is not sent again.
    volatile: frozenset[str] = frozenset()

    @property
    def ident(self) -> str:
        """The interval's key within its series."""
        return self.at.isoformat()

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the content (the same event always hashes the same)."""
        content = self.payload.model_dump_json(exclude=set(self.volatile) or None)
        return hashlib.sha256(content.encode()).hexdigest()[:16]


class Verdict(StrEnum):
    """What the checkpoint says about a record."""

    NEW = "new"
    DUPLICATE = "duplicate"
    LATE = "late"
    REVISION = "revision"  # sent again: a forecast vintage or a published correction
    CORRECTION_IGNORED = "correction_ignored"


@dataclass
class Selection:
    """The records to send from one batch, and how many of each verdict."""

    send: list[Record] = field(default_factory=list)
    counts: dict[Verdict, int] = field(default_factory=lambda: dict.fromkeys(Verdict, 0))


class Checkpoint:
    """The intervals a source has sent recently, per series (load with :meth:`open`)."""

    def __init__(self, path: Path, window: timedelta, source: str) -> None:
        self.path = path
        self.window = window
        self.source = source
        self.floor: datetime | None = None
        self._seen: dict[str, dict[str, str]] = {}

    @classmethod
    def open(cls, path: Path, window: timedelta, source: str) -> Checkpoint:
        """The checkpoint stored at ``path`` (empty when there is none yet)."""
        checkpoint = cls(path, window, source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return checkpoint
        try:
            data = json.loads(text)
            version = data.get("version")
        except (ValueError, AttributeError) as exc:
            raise _unreadable(path, window, str(exc)) from exc
        if version != VERSION:
            raise _unreadable(path, window, f"version {version!r}, expected {VERSION}")
        try:
            checkpoint.floor = datetime.fromisoformat(data["floor"]) if data["floor"] else None
            checkpoint._seen = {
                str(series): {str(k): str(v) for k, v in idents.items()}
                for series, idents in data["series"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _unreadable(path, window, repr(exc)) from exc
        return checkpoint

    @property
    def intervals(self) -> int:
        """How many intervals are remembered (all series)."""
        return sum(len(idents) for idents in self._seen.values())

    def latest(self, series: str) -> datetime | None:
        """The newest interval sent in ``series`` (``None``: nothing remembered)."""
        idents = self._seen.get(series)
        return max(datetime.fromisoformat(i) for i in idents) if idents else None

    def classify(self, record: Record, now: datetime, corrections: str) -> Verdict:
        """What to do with ``record`` (see the module docstring)."""
        if record.at < self._floor(now):
            return Verdict.LATE
        sent = self._seen.get(record.series, {}).get(record.ident)
        if sent is None:
            return Verdict.NEW
        if sent == record.fingerprint:
            return Verdict.DUPLICATE
        if record.revisable or corrections == "publish":
            return Verdict.REVISION
        return Verdict.CORRECTION_IGNORED

    def select(self, records: Iterable[Record], now: datetime, corrections: str) -> Selection:
        """The records of one batch that go out (one per series and interval: the last)."""
        selection = Selection()
        latest: dict[tuple[str, str], Record] = {}
        for record in records:
            key = (record.series, record.ident)
            if key in latest:
                selection.counts[Verdict.DUPLICATE] += 1  # the API repeated an interval
            latest[key] = record
        for record in latest.values():
            verdict = self.classify(record, now, corrections)
            selection.counts[verdict] += 1
            if verdict in (Verdict.NEW, Verdict.REVISION):
                selection.send.append(record)
        return selection

    def commit(self, records: Iterable[Record], now: datetime) -> None:
        """Remember ``records`` as sent, forget what left the window, and write the file."""
        for record in records:
            self._seen.setdefault(record.series, {})[record.ident] = record.fingerprint
        floor = self._floor(now)
        self.floor = floor
        for series in list(self._seen):
            kept = {
                ident: fp
                for ident, fp in self._seen[series].items()
                if datetime.fromisoformat(ident) >= floor
            }
            if kept:
                self._seen[series] = kept
            else:
                del self._seen[series]
        self.save(now)

    def save(self, now: datetime) -> None:
        """Write the checkpoint atomically (a crash leaves the old or the new file)."""
        body = {
            "version": VERSION,
            "source": self.source,
            "saved_at": now.isoformat(),
            "floor": self.floor.isoformat() if self.floor else None,
            "series": self._seen,
        }
        try:
            write_atomically(self.path, json.dumps(body, sort_keys=True, indent=1))
        except OSError as exc:
            # Going on without a checkpoint would send everything again after a restart.
            raise GridshiftError(
                f"cannot write checkpoint {self.path}: {exc}; the source stops"
            ) from exc

    def _floor(self, now: datetime) -> datetime:
        # Never moves back: a clock stepping backwards must not make forgotten intervals new.
        candidate = now - self.window
        return candidate if self.floor is None else max(self.floor, candidate)


def _unreadable(path: Path, window: timedelta, why: str) -> GridshiftError:
    return GridshiftError(
        f"checkpoint {path} is unreadable ({why}); move it away to start afresh "
        f"(the last {window} of events may then be sent again)"
    )


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (temporary file, fsync, rename, directory fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


@contextlib.contextmanager
def exclusive(path: Path, source: str) -> Iterator[None]:
    """Hold ``path`` locked while the source runs: a second process of the same source on the
    same state folder would send everything twice, so it is refused with one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[Any] = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise GridshiftError(
                f"source {source} is already running with state folder {path.parent} "
                f"(lock {path}); stop it or use another GRIDSHIFT_SOURCE_STATE_DIR"
            ) from exc
        yield
    finally:
        handle.close()  # closing releases the lock
