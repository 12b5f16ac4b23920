"""ERCOT grid emergencies and conservation requests replayed as grid signals (issue #14).

The shared table ``ercot/ercot_grid_events_2023_2024.csv`` lists conservation appeals, voluntary
conservation notices and the one EEA of 2023-2024, one row per notice: ``date_local`` (the day
in Central time), ``type``, ``window_local_cpt`` (``HH:MM-HH:MM``, Central *prevailing* time, so
CDT in summer and CST in winter), ``detail`` and ``source_url``.

Each row with a window becomes one :class:`~schemas.GridSignalEvent` for the region's sites:

- ``EEA*`` rows -> ``signal_type="emergency"``; conservation appeals and voluntary conservation
  notices -> ``signal_type="demand_response"``. Neither carries a MW number (ERCOT asks the
  public for "as much as possible"), which the engine reads as "keep only the contracted GPU
  floor running" (``streams/engine/snapshots.py``, ``_signal_curves``).
- Published (known to gridshift) at the time the notice was issued. The table has no issue-time
  column: where ``detail`` says ``issued ~HH:MM`` that time is used (2023-09-06: 16:55), else the
  start of the window (an assumption: ERCOT's appeals usually come hours earlier, so this is the
  latest the site could have known).
- Rows whose window is ``not captured`` (3 in August 2023) and ``record_demand_no_appeal`` (no
  request was made) give no signal.

The oracle gets the same signals (the request is a constraint, not a forecast). Today's practice
curtails all mining over every window at the region's sites (conservation appeals included);
mining always on and the price threshold ignore them (the reference against which MW reduced
is measured).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.value import FloatArray
from schemas import GridSignalEvent
from streams.engine.coincident_peak import CENTRAL
from streams.engine.fleet import Fleet
from streams.errors import GridshiftError

COLUMNS = ("date_local", "type", "window_local_cpt", "detail")
#: Row types that are no request to the grid's loads.
NOT_A_REQUEST = frozenset({"record_demand_no_appeal"})
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_ISSUED = re.compile(r"issued\s*~?\s*(\d{1,2}):(\d{2})")


@dataclass(frozen=True)
class GridEmergency:
    """One request: its window (UTC), when it became known, its type and the signal sent."""

    start: datetime
    end: datetime
    known: datetime
    kind: str  # the table's type, e.g. conservation_appeal, EEA2
    signal: GridSignalEvent

    @property
    def label(self) -> str:
        local_start = self.start.astimezone(CENTRAL)
        local_end = self.end.astimezone(CENTRAL)
        return f"{local_start:%Y-%m-%d %H:%M}-{local_end:%H:%M} Central {self.kind}"


def _local(day: pd.Timestamp, hour: int, minute: int) -> datetime:
    return datetime.combine(day.date(), time(hour, minute), tzinfo=CENTRAL)


def read_grid_events(path: Path, region: str) -> list[GridEmergency]:
    """The table's requests with a window, as signals to ``region``'s sites, oldest first."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise GridshiftError(f"cannot read grid events {path}: {exc}") from exc
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise GridshiftError(f"{path.name}: no column {', '.join(missing)} (a grid-event table?)")
    out: list[GridEmergency] = []
    for n, row in raw.iterrows():
        kind = row["type"].strip()
        window = _WINDOW.match(row["window_local_cpt"])
        if kind in NOT_A_REQUEST or window is None:
            continue
        try:
            day = pd.Timestamp(row["date_local"])
        except ValueError as exc:
            raise GridshiftError(
                f"{path.name} row {n}: bad date_local {row['date_local']!r}"
            ) from exc
        h0, m0, h1, m1 = (int(g) for g in window.groups())
        start = _local(day, h0, m0)
        end = _local(day, h1, m1)
        if end <= start:
            end += timedelta(days=1)
        issued = _ISSUED.search(row["detail"])
        known = _local(day, int(issued.group(1)), int(issued.group(2))) if issued else start
        known = min(known, start)
        emergency = kind.upper().startswith("EEA")
        signal = GridSignalEvent(
            interval_start=pd.Timestamp(start).tz_convert("UTC").to_pydatetime(),
            interval_end=pd.Timestamp(end).tz_convert("UTC").to_pydatetime(),
            signal_id=f"ercot-{kind.lower().replace('_', '-')}-{day:%Y%m%d}-{h0:02d}{m0:02d}",
            signal_type="emergency" if emergency else "demand_response",
            region=region,
        )
        out.append(
            GridEmergency(
                signal.interval_start,
                signal.interval_end,
                pd.Timestamp(known).tz_convert("UTC").to_pydatetime(),
                kind,
                signal,
            )
        )
    out.sort(key=lambda e: (e.start, e.end))
    return out


def requests_without_window(path: Path, start: datetime, end: datetime) -> list[str]:
    """Requests the table lists on days overlapping [start, end) (Central) whose window it did
    not capture: they give no signal, and the report must say they were left out."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    first = start.astimezone(CENTRAL).date()
    last = (end - timedelta(microseconds=1)).astimezone(CENTRAL).date()
    out = []
    for _, row in raw.iterrows():
        kind = row["type"].strip()
        if kind in NOT_A_REQUEST or _WINDOW.match(row["window_local_cpt"]):
            continue
        day = pd.Timestamp(row["date_local"]).date()
        if first <= day <= last:
            out.append(f"{day:%Y-%m-%d} {kind} (window {row['window_local_cpt'].strip()})")
    return out


def in_window(
    events: Sequence[GridEmergency], start: datetime, end: datetime
) -> list[GridEmergency]:
    """The events overlapping [start, end)."""
    return [e for e in events if e.end > start and e.start < end]


def event_mask(starts: Sequence[datetime], step: timedelta, event: GridEmergency) -> np.ndarray:
    """Which backtest intervals overlap the event."""
    return np.array([begin < event.end and begin + step > event.start for begin in starts])


def curtail_in_events(
    fleet: Fleet,
    starts: Sequence[datetime],
    step: timedelta,
    mining: FloatArray,
    *,
    events: Sequence[GridEmergency],
    region: str,
) -> FloatArray:
    """Today's practice: mining off over every request window at ``region``'s sites."""
    out = mining.copy()
    for event in events:
        mask = event_mask(starts, step, event)
        for i, site in enumerate(fleet.sites):
            if site.carbon_region == region:
                out[i, mask] = 0.0
    return out


@dataclass(frozen=True)
class EventImport:
    """A strategy's average fleet grid import (MW) over an event's intervals, and the MW it
    took off the grid against mining always on."""

    label: str
    import_mw: float
    reduced_mw: float


def imports_during(
    starts: Sequence[datetime],
    step: timedelta,
    events: Sequence[GridEmergency],
    grid_import: FloatArray,
    *,
    always_on_import: FloatArray,
    rows: Sequence[int],
) -> list[EventImport]:
    """Per event: the average over its intervals of the fleet's import at ``rows`` (the
    region's sites), and the reduction against always-on over the same intervals."""
    out = []
    for event in events:
        mask = event_mask(starts, step, event)
        if not mask.any():
            continue
        mean = float(grid_import[list(rows)][:, mask].sum(axis=0).mean())
        base = float(always_on_import[list(rows)][:, mask].sum(axis=0).mean())
        out.append(EventImport(event.label, mean, base - mean))
    return out
