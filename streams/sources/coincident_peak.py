"""ERCOT 4CP probabilities computed live, published as ``coincident_peak`` grid signals.

The same pure model as the backtest (:mod:`streams.engine.coincident_peak`:
``day_probabilities``, which reads the month-to-date peak through ``reference_peak_mw`` and
builds each hour's features; ``signal_incentive_usd_per_mwh``), fed at the same issue time
(:func:`issue_time`: the engine's ``ISSUE_TIME`` Central, ``ISSUE_DAYS_BEFORE`` days before
the operating day D, the backtest's decision time) with what ERCOT has published by then:

- ERCOT's seven-day load forecast, ``System Total``: the last vintage published before the
  issue time (``Ercot().get_load_forecast(date=issue time)``, gridstatus 0.37.0: "the last
  hourly report published before"): D's hours, and the highest hour of the issue day (the
  engine's ``previous_day_forecast_peak_mw``; the backtest takes it from the EIA-930 day-ahead
  forecast, published the day before; live it is the same report as D's hours);
- ERCOT's actual system load (``Ercot().get_load(date=day)``, column ``Load``) of the days
  over by the issue time, reduced to each day's highest hourly mean (EIA-930 hourly demand,
  which the backtest reads, is an hourly mean as well). gridstatus serves the last 14 days only
  while a month-to-date peak needs up to 30, so daily peaks are kept in a small file
  (:class:`PeakMemory`) and each past day is fetched once. Which of those days count is the
  engine's ``reference_peak_mw``'s rule, not this module's: it is handed every day it may read.

:func:`day_signals` is the one place that turns those inputs into events, so the live path
follows the engine's model. Outside June-September nothing is fetched or published, and the
poll's note says so. A re-issued hour (e.g. once a late day of actuals arrives) has the same
``signal_id`` and replaces the earlier one downstream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from schemas import GridSignalEvent, topic_for
from streams.engine.coincident_peak import (
    CENTRAL,
    FITTED,
    ISSUE_DAYS_BEFORE,
    PEAK_MONTHS,
    TRAILING_DAYS,
    CoincidentPeakModel,
    day_probabilities,
    forecast_signal,
    issue_time,
)
from streams.errors import GridshiftError
from streams.sources.checkpoint import Record, write_atomically
from streams.sources.config import CoincidentPeakConfig
from streams.sources.iso import call_gridstatus, instant, require_columns
from streams.sources.loop import FeedResult, MalformedResponseError

log = logging.getLogger(__name__)

SIGNAL_TOPIC = topic_for(GridSignalEvent).name
HOUR = timedelta(hours=1)
#: How far back gridstatus serves ERCOT's actual load (``Ercot.LOAD_HISTORICAL_MAX_DAYS``).
LOAD_HISTORY_DAYS = 14


def day_start(day: date) -> datetime:
    """00:00 Central of ``day``, in UTC."""
    return datetime.combine(day, time(0), tzinfo=CENTRAL).astimezone(UTC)


def day_hours(day: date) -> int:
    """Hours of a Central operating day: 23 or 25 on DST change days."""
    return round((day_start(day + timedelta(days=1)) - day_start(day)) / HOUR)


def reference_days(day: date, issued: datetime) -> list[date]:
    """Every day whose actual peak the engine may read for ``day`` and that is over at
    ``issued``: the month so far and the trailing week before the issue (a superset; the
    engine's ``reference_peak_mw`` picks its own)."""
    since = min(day.replace(day=1), day - timedelta(days=ISSUE_DAYS_BEFORE + TRAILING_DAYS))
    days = [since + timedelta(days=k) for k in range((day - since).days)]
    return [d for d in days if day_start(d + timedelta(days=1)) <= issued]


# ------------------------------------------------------------------------------ mapping


@dataclass(frozen=True, slots=True)
class ForecastHour:
    """One hour of the operating day: its start (UTC), local clock hour and forecast MW."""

    start: datetime
    local_hour: int
    forecast_mw: float


def forecast_hours(frame: Any, day: date, issued: datetime) -> list[ForecastHour]:
    """The operating day's hourly ``System Total`` forecast from a ``get_load_forecast`` frame,
    newest vintage published before ``issued`` per hour. A vintage after ``issued`` would be
    look-ahead, and a missing, non-positive or incomplete day cannot be priced: both make
    the answer malformed."""
    hours = _newest(frame, day, issued)
    if len(hours) != day_hours(day):
        raise MalformedResponseError(
            "incomplete", f"the forecast covers {len(hours)} of the {day_hours(day)} hours of {day}"
        )
    return hours


def forecast_peak_mw(frame: Any, day: date, issued: datetime) -> float | None:
    """The highest hourly ``System Total`` forecast of ``day`` in the newest vintage before
    ``issued`` (``None`` when the report has none of its hours)."""
    hours = _newest(frame, day, issued)
    return max(hour.forecast_mw for hour in hours) if hours else None


def _newest(frame: Any, day: date, issued: datetime) -> list[ForecastHour]:
    columns = ["Interval Start", "Interval End", "Publish Time", "System Total"]
    require_columns(frame, columns, "get_load_forecast")
    newest: dict[datetime, tuple[datetime, float]] = {}
    for start_raw, _end, published_raw, value in frame[columns].itertuples(index=False, name=None):
        start, published = instant(start_raw), instant(published_raw)
        if start is None or published is None:
            raise MalformedResponseError("bad_time", f"forecast row {start_raw!r}")
        if published > issued:
            raise MalformedResponseError(
                "look_ahead", f"forecast published {published} after the issue time {issued}"
            )
        if start.astimezone(CENTRAL).date() != day:
            continue
        kept = newest.get(start)
        if kept is None or published >= kept[0]:
            newest[start] = (published, value)
    hours: list[ForecastHour] = []
    for start, (_, value) in sorted(newest.items()):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise MalformedResponseError("not_a_number", f"forecast for {start}: {value!r}")
        mw = float(value)
        if not math.isfinite(mw):
            raise MalformedResponseError("not_a_number", f"forecast for {start}: {value!r}")
        hours.append(ForecastHour(start, start.astimezone(CENTRAL).hour, mw))
    return hours


def daily_peak_mw(frame: Any, day: date) -> float | None:
    """The highest hourly mean of ``Load`` on ``day`` (Central) from a ``get_load`` frame;
    ``None`` until every hour of the day has a value (a day still being posted)."""
    require_columns(frame, ["Interval Start", "Load"], "get_load")
    starts = pd.to_datetime(frame["Interval Start"])
    if starts.dt.tz is None:
        raise MalformedResponseError("bad_time", "get_load answered naive times")
    local = starts.dt.tz_convert(CENTRAL)
    load = pd.to_numeric(frame["Load"], errors="coerce")
    on_day = pd.DataFrame({"hour": local.dt.floor("h"), "load": load})[local.dt.date == day]
    hourly = on_day.dropna().groupby("hour")["load"].mean()
    if len(hourly) != day_hours(day) or not (hourly > 0).all():
        return None
    return float(hourly.max())


def day_signals(
    day: date,
    hours: Sequence[ForecastHour],
    daily_peaks: Mapping[date, float],
    *,
    previous_day_forecast_peak_mw: float | None,
    region: str,
    tariff_usd_per_kw_year: float,
    min_probability: float,
    model: CoincidentPeakModel = FITTED,
) -> list[GridSignalEvent]:
    """The coincident-peak signals of operating ``day``: the engine's probability of each hour,
    as the backtest turns it into an event (hours below ``min_probability`` get none)."""
    probabilities = day_probabilities(
        day,
        [(hour.local_hour, hour.forecast_mw) for hour in hours],
        daily_peaks,
        model,
        previous_day_forecast_peak_mw=previous_day_forecast_peak_mw,
    )
    out: list[GridSignalEvent] = []
    for hour, p in zip(hours, probabilities, strict=True):
        if p < min_probability:
            continue
        out.append(forecast_signal(hour.start, p, tariff_usd_per_kw_year, region))
    return out


# ------------------------------------------------------------------------------ the feed


class PeakMemory:
    """Each complete day's actual peak (MW), kept in a JSON file across restarts."""

    VERSION = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self.peaks: dict[date, float] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except ValueError as exc:
            raise GridshiftError(f"peaks file {path} is unreadable ({exc}); move it away") from exc
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            raise GridshiftError(f"peaks file {path} is not a version-1 peaks file; move it away")
        self.peaks = {date.fromisoformat(k): float(v) for k, v in data["daily_peak_mw"].items()}

    def remember(self, day: date, peak_mw: float, now: datetime) -> None:
        """Keep ``day``'s peak, forget days older than 40 days, and write the file."""
        self.peaks[day] = peak_mw
        oldest = now.astimezone(CENTRAL).date() - timedelta(days=40)
        self.peaks = {d: v for d, v in self.peaks.items() if d >= oldest}
        body = {
            "version": self.VERSION,
            "daily_peak_mw": {d.isoformat(): v for d, v in sorted(self.peaks.items())},
        }
        write_atomically(self.path, json.dumps(body, indent=1))


class CoincidentPeakFeed:
    """Computes and maps the signals of the operating days issued by now (D, and D+1 too if
    its issue time has passed)."""

    name = "coincident_peak"
    topic = SIGNAL_TOPIC
    sink = None

    def __init__(
        self,
        *,
        client: Any,
        config: CoincidentPeakConfig,
        executor: Executor,
        memory: PeakMemory,
        model: CoincidentPeakModel = FITTED,
    ) -> None:
        self.client = client
        self.config = config
        self.executor = executor
        self.memory = memory
        self.model = model

    async def fetch(self, now: datetime) -> FeedResult:
        """The signals of every operating day issued by ``now`` and not over yet."""
        today = now.astimezone(CENTRAL).date()
        upcoming = (today + timedelta(days=k) for k in range(ISSUE_DAYS_BEFORE + 1))
        days = [d for d in upcoming if issue_time(d) <= now]
        season = [d for d in days if d.month in PEAK_MONTHS]
        if not season:
            return FeedResult(
                note="outside the 4CP season (June-September): nothing to publish"
                if today.month not in PEAK_MONTHS
                else f"no operating day issued yet (next issue {issue_time(today)})"
            )
        loop = asyncio.get_running_loop()
        result = FeedResult()
        notes: list[str] = []
        for day in season:
            issued = issue_time(day)
            missing = await self._update_peaks(day, issued, now)
            frame = await loop.run_in_executor(
                self.executor, self._call, "get_load_forecast", pd.Timestamp(issued)
            )
            hours = forecast_hours(frame, day, issued)
            issue_day = issued.astimezone(CENTRAL).date()
            issue_day_peak = forecast_peak_mw(frame, issue_day, issued) if issue_day < day else None
            events = day_signals(
                day,
                hours,
                self.memory.peaks,
                previous_day_forecast_peak_mw=issue_day_peak,
                region=self.config.region,
                tariff_usd_per_kw_year=self.config.tariff_usd_per_kw_year,
                min_probability=self.config.min_probability,
                model=self.model,
            )
            series = f"{SIGNAL_TOPIC}/{self.config.region}/coincident_peak"
            result.records.extend(
                # Revisable: a late day of actuals changes the reference and re-issues the hour.
                Record(series, event.interval_start, event, revisable=True)
                for event in events
            )
            if issue_day < day and issue_day_peak is None:
                notes.append(f"{day}: the forecast has no hour of {issue_day} (its peak left out)")
            if missing:
                notes.append(
                    f"{day}: month-to-date peak without the actuals of "
                    f"{', '.join(d.isoformat() for d in missing)}"
                )
            if not events:
                notes.append(f"{day}: no hour reaches p >= {self.config.min_probability:g}")
        result.note = "; ".join(notes) or None
        return result

    async def close(self) -> None:
        """Nothing to release (gridstatus opens a connection per call)."""

    async def _update_peaks(self, day: date, issued: datetime, now: datetime) -> list[date]:
        """Fetch the reference days not remembered yet; the days still unknown."""
        loop = asyncio.get_running_loop()
        today = now.astimezone(CENTRAL).date()
        missing: list[date] = []
        for past in reference_days(day, issued):
            if past in self.memory.peaks:
                continue
            if (today - past).days > LOAD_HISTORY_DAYS:
                missing.append(past)  # gridstatus no longer serves it
                continue
            frame = await loop.run_in_executor(
                self.executor, self._call, "get_load", past.isoformat()
            )
            peak = daily_peak_mw(frame, past)
            if peak is None:
                missing.append(past)  # still being posted: asked again next poll
                continue
            self.memory.remember(past, peak, now)
        if missing:
            log.warning(
                "month-to-date peak computed without some days of actual load",
                extra={
                    "operating_day": day.isoformat(),
                    "missing": [d.isoformat() for d in missing],
                },
            )
        return missing

    def _call(self, method: str, when: Any) -> Any:
        return call_gridstatus(self.client, method, date=when)
