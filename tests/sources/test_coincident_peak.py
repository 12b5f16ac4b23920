"""The live 4CP source: it computes the same signals as the backtest's schedule when fed the
same numbers (a data test over summer 2024), publishes nothing outside June-September, and
runs end to end through the real gridstatus client (only its network methods replaced by
recorded-shape ERCOT load pages and seven-day forecast documents built from the shared EIA-930
file) to the embedded broker, read back with a plain consumer."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from schemas import GridSignalEvent
from streams.backtest.coincident_peak_history import peak_signal_schedule
from streams.engine.coincident_peak import CENTRAL, FITTED, issue_time
from streams.errors import GridshiftError
from streams.kafka.broker import EmbeddedBroker
from streams.sources import iso
from streams.sources.coincident_peak import (
    CoincidentPeakFeed,
    PeakMemory,
    daily_peak_mw,
    day_signals,
    day_start,
    forecast_hours,
    forecast_peak_mw,
    reference_days,
)
from streams.sources.config import CoincidentPeakConfig, SourceSettings
from streams.sources.loop import MalformedResponseError, Source
from tests.sources.harness import (
    FAST,
    Clock,
    ErcotNetwork,
    create_topic,
    make_source,
    need,
    raw_load_forecast,
    raw_load_html,
    read_topic_async,
)

GRIDSTATUS_ON_PANDAS_3 = "ignore:The inplace keyword in DataFrame.rename"
pytestmark = pytest.mark.filterwarnings(GRIDSTATUS_ON_PANDAS_3)
CHARGE_USD_PER_MW_PER_PEAK = 68.5 * 1000 / 4


@functools.cache
def eia_hours(data_dir: Path) -> pd.DataFrame:
    """The shared EIA-930 ERCOT file by hour start (period_utc labels the hour's end)."""
    raw = pd.read_csv(data_dir / "ercot" / "ercot_load_eia930_hourly_2019_2024.csv")
    start = pd.to_datetime(raw["period_utc"], utc=True) - pd.Timedelta(hours=1)
    return pd.DataFrame(
        {
            "start": start,
            "demand_mw": raw["demand_mw"],
            "demand_forecast_da_mw": raw["demand_forecast_da_mw"],
            "local_date": start.dt.tz_convert(CENTRAL).dt.date,
        }
    )


@functools.cache
def eia_days(data_dir: Path) -> dict[date, pd.DataFrame]:
    return dict(iter(eia_hours(data_dir).groupby("local_date")))


def of_days(data_dir: Path, *days: date) -> pd.DataFrame:
    return pd.concat([eia_days(data_dir)[day] for day in days], ignore_index=True)


def load_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Shaped like ``Ercot().get_load(date)`` for a past day (gridstatus 0.37.0: Time,
    Interval Start, Interval End as datetime64[ns, US/Central], Load float64), values from
    the shared EIA-930 demand."""
    start = rows["start"].dt.tz_convert("US/Central")
    return pd.DataFrame(
        {
            "Time": start,
            "Interval Start": start,
            "Interval End": start + pd.Timedelta(hours=1),
            "Load": rows["demand_mw"].astype(float),
        }
    )


def forecast_frame(rows: pd.DataFrame, published: datetime) -> pd.DataFrame:
    """Shaped like ``Ercot().get_load_forecast(date)`` (Time, Interval Start, Interval End,
    Publish Time, the forecast zones, System Total), values from the shared EIA-930 day-ahead
    demand forecast."""
    start = rows["start"].dt.tz_convert("US/Central")
    total = rows["demand_forecast_da_mw"].astype(float)
    return pd.DataFrame(
        {
            "Time": start,
            "Interval Start": start,
            "Interval End": start + pd.Timedelta(hours=1),
            "Publish Time": pd.Timestamp(published).tz_convert("US/Central"),
            "North": total * 0.3,
            "South": total * 0.3,
            "West": total * 0.1,
            "Houston": total * 0.3,
            "System Total": total,
        }
    )


@functools.cache
def peak_of(data_dir: Path, day: date) -> float:
    """``daily_peak_mw`` of a gridstatus-shaped ``get_load`` frame of ``day`` (each day once)."""
    peak = daily_peak_mw(load_frame(of_days(data_dir, day)), day)
    assert peak is not None, f"{day} incomplete in the shared file"
    return peak


def live_signals(data_dir: Path, day: date) -> list[GridSignalEvent]:
    """What the live source computes for ``day`` from gridstatus-shaped frames of the same
    numbers the backtest reads."""
    issued = issue_time(day)
    peaks: dict[date, float] = {}
    for past in reference_days(day, issued):
        peaks[past] = peak_of(data_dir, past)
    # One report: the issue day (its forecast peak enters the reference), the operating day,
    # and the day after (not read).
    issue_day = issued.astimezone(CENTRAL).date()
    rows = of_days(data_dir, issue_day, day, day + timedelta(days=1))
    frame = forecast_frame(rows, issued - timedelta(minutes=30))
    return day_signals(
        day,
        forecast_hours(frame, day, issued),
        peaks,
        previous_day_forecast_peak_mw=forecast_peak_mw(frame, issue_day, issued)
        if issue_day < day
        else None,
        region="ERCOT",
        tariff_usd_per_kw_year=68.5,
        min_probability=1e-3,
    )


def assert_same_signals(live: list[GridSignalEvent], backtest: list[GridSignalEvent]) -> None:
    assert [e.signal_id for e in live] == [e.signal_id for e in backtest]
    for ours, theirs in zip(live, backtest, strict=True):
        assert ours.model_dump(exclude={"incentive_usd_per_mwh"}) == theirs.model_dump(
            exclude={"incentive_usd_per_mwh"}
        )
        # Same probability to 1e-9 (the incentive is p x $17,125 per MW over one hour).
        p_live = ours.incentive_usd_per_mwh / CHARGE_USD_PER_MW_PER_PEAK
        p_backtest = theirs.incentive_usd_per_mwh / CHARGE_USD_PER_MW_PER_PEAK
        assert abs(p_live - p_backtest) <= 1e-9


@pytest.mark.data
def test_live_signals_equal_the_backtest_schedule_over_summer_2024(data_dir: Path) -> None:
    first, last = date(2024, 6, 1), date(2024, 9, 30)
    schedule = peak_signal_schedule(
        day_start(first), day_start(last + timedelta(days=1)), data_dir=data_dir, model=FITTED
    )
    by_day: dict[date, list[GridSignalEvent]] = {}
    for issued, event in schedule:
        day = event.interval_start.astimezone(CENTRAL).date()
        assert issued == issue_time(day), "the live source must issue when the backtest does"
        by_day.setdefault(day, []).append(event)
    days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    compared = 0
    for day in days:
        live = live_signals(data_dir, day)
        assert_same_signals(live, by_day.get(day, []))
        compared += len(live)
    assert compared == len(schedule) > 100  # a real summer: many hours above 0.1 %
    # The 2024-08-20 4CP interval (16:45 CDT) sits in an hour the live path prices highest.
    peak_day = live_signals(data_dir, date(2024, 8, 20))
    best = max(peak_day, key=lambda e: e.incentive_usd_per_mwh)
    assert best.interval_start.astimezone(CENTRAL).hour in (16, 17)


def test_a_forecast_published_after_the_issue_time_is_refused() -> None:
    day = date(2024, 8, 20)
    issued = issue_time(day)
    start = pd.date_range("2024-08-20", periods=24, freq="h", tz="US/Central")
    # SYNTHETIC forecast values, shaped like get_load_forecast.
    rows = pd.DataFrame({"start": start.tz_convert("UTC"), "demand_forecast_da_mw": 80_000.0})
    late = forecast_frame(rows, issued + timedelta(minutes=5))
    with pytest.raises(MalformedResponseError, match="after the issue time"):
        forecast_hours(late, day, issued)
    short = forecast_frame(rows.iloc[:20], issued - timedelta(hours=1))
    with pytest.raises(MalformedResponseError, match="covers 20 of the 24 hours"):
        forecast_hours(short, day, issued)
    assert len(forecast_hours(forecast_frame(rows, issued), day, issued)) == 24


def test_a_day_still_being_posted_has_no_peak_yet() -> None:
    start = pd.date_range("2024-08-19", periods=23, freq="h", tz="US/Central")
    # SYNTHETIC load, shaped like get_load: 23 of 24 hours posted.
    rows = pd.DataFrame({"start": start.tz_convert("UTC"), "demand_mw": 70_000.0})
    assert daily_peak_mw(load_frame(rows), date(2024, 8, 19)) is None


def test_an_unreadable_peaks_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "peaks.json"
    path.write_text('{"version": 7, "daily_peak_mw": {}}')
    with pytest.raises(GridshiftError, match="not a version-1 peaks file; move it away"):
        PeakMemory(path)
    path.write_text("{not json")
    with pytest.raises(GridshiftError, match="unreadable"):
        PeakMemory(path)


def test_the_peaks_file_survives_a_restart_and_forgets_old_days(tmp_path: Path) -> None:
    path = tmp_path / "peaks.json"
    memory = PeakMemory(path)
    now = pd.Timestamp("2024-08-20T06:00", tz="US/Central").to_pydatetime()
    memory.remember(date(2024, 6, 1), 60_000.0, now)  # 80 days back: forgotten
    memory.remember(date(2024, 8, 19), 83_500.5, now)
    assert PeakMemory(path).peaks == {date(2024, 8, 19): 83_500.5}


class Unreachable:
    """A client that must not be called (outside the season nothing is fetched)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"ERCOT called outside the 4CP season: {name}")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


async def test_outside_june_to_september_nothing_is_fetched_or_published(
    executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    feed = CoincidentPeakFeed(
        client=Unreachable(),
        config=CoincidentPeakConfig(),
        executor=executor,
        memory=PeakMemory(tmp_path / "peaks.json"),
    )
    # 05:00 on 31 May: 1 June is not issued yet; 00:30 on 1 October: the season is over.
    for now in ("2024-05-31T05:00", "2024-10-01T00:30", "2024-12-15T12:00"):
        result = await feed.fetch(pd.Timestamp(now, tz="US/Central").to_pydatetime())
        assert result.records == []
        assert result.note == "outside the 4CP season (June-September): nothing to publish"


# ------------------------------------------------------------------------------ end to end


@pytest.mark.e2e
@pytest.mark.data
async def test_signals_reach_the_topic_as_the_backtest_issues_them(
    opened: list[Source],
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need("gridstatus")
    august = [date(2024, 8, d) for d in range(1, 21)]
    # Recorded-shape ERCOT pages and documents built from shared data: the actual-load page of
    # each day, and a seven-day forecast vintage published 30 minutes before each issue time.
    network = ErcotNetwork(rt=pd.DataFrame(), da=pd.DataFrame())
    network.load_html = {f"{d:%Y%m%d}": raw_load_html(of_days(data_dir, d)) for d in august}
    for day in (date(2024, 8, 9), date(2024, 8, 10), date(2024, 8, 19), date(2024, 8, 20)):
        issued = issue_time(day)
        report = of_days(
            data_dir, *(issued.astimezone(CENTRAL).date() + timedelta(k) for k in range(3))
        )
        network.load_forecasts.append(
            (pd.Timestamp(issued - timedelta(minutes=30)), raw_load_forecast(report))
        )
    network.install(monkeypatch)
    topic = topic_prefix + "grid.signal.v1"
    create_topic(broker.bootstrap, topic)
    config = CoincidentPeakConfig(**FAST)
    settings = SourceSettings(state_dir=tmp_path)
    peaks_file = tmp_path / "coincident-peak.peaks.json"

    def start(now: datetime) -> Source:
        network.today = now.astimezone(CENTRAL).date().isoformat()
        feed = CoincidentPeakFeed(
            client=iso.make_client("ERCOT", settings),
            config=config,
            executor=executor,
            memory=PeakMemory(peaks_file),  # what a restarted process reads
        )
        source = make_source(
            "coincident-peak",
            [feed],
            config,
            bootstrap=broker.bootstrap,
            prefix=topic_prefix,
            state_dir=tmp_path,
            clock=Clock(now),
        )
        opened.append(source)
        return source

    # 9 August, 5 minutes after the 10th's issue time: the 9th (issued the day before) and
    # the 10th are both live; the first eight days of August are fetched.
    first = await start(issue_time(date(2024, 8, 10)) + timedelta(minutes=5)).poll_once()
    assert first.ok, first.errors
    assert network.pages_read == [f"202408{d:02d}" for d in range(1, 9)]
    # The 19th and the 20th (the 4CP day), a restarted process: 1-4 August are past
    # gridstatus's 14 days, yet known from the peaks file; only the new days are fetched.
    network.pages_read.clear()
    source = start(issue_time(date(2024, 8, 20)) + timedelta(minutes=5))
    report = await source.poll_once()
    assert report.ok, report.errors
    assert network.pages_read == [f"202408{d:02d}" for d in range(9, 19)]
    assert "coincident_peak" not in report.notes  # every day it may read is known
    again = await source.poll_once()
    assert again.ok
    assert again.published == 0

    records = await read_topic_async(broker.bootstrap, topic)
    live_days = {date(2024, 8, d) for d in (9, 10, 19, 20)}
    expected = [
        event
        for _, event in peak_signal_schedule(
            day_start(date(2024, 8, 9)),
            day_start(date(2024, 8, 21)),
            data_dir=data_dir,
            model=FITTED,
        )
        if event.interval_start.astimezone(CENTRAL).date() in live_days
    ]
    expected.sort(key=lambda e: e.interval_start)
    assert len(records) == len(expected) == first.published + report.published > 0
    assert {r["key"] for r in records} == {"ERCOT"}
    published = [
        GridSignalEvent.model_validate({k: v for k, v in r.items() if k != "key"}) for r in records
    ]
    assert_same_signals(sorted(published, key=lambda e: e.interval_start), expected)
