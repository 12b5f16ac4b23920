"""The ISO source through the real gridstatus client (only its network methods replaced by
recorded-shape ERCOT documents built from shared data) to the real embedded broker, read back
with a plain confluent-kafka consumer: prices by node and market, load to the JSONL sink, and
every failure mode (API down, hung call, malformed rows, duplicates, late data, corrections,
restart)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from streams.kafka.broker import EmbeddedBroker
from streams.sources import iso, loop
from streams.sources.config import IsoConfig, SourceSettings
from streams.sources.loop import MalformedResponseError, Source
from streams.sources.sink import JsonlSink
from tests.sources.harness import (
    FAST,
    Clock,
    ErcotNetwork,
    create_topic,
    ercot_load,
    ercot_prices,
    make_source,
    need,
    raw_da_spp,
    raw_load_forecast,
    raw_rt_spp,
    read_topic_async,
    supply_demand_json,
    utc,
)

# gridstatus 0.37 calls DataFrame.rename(inplace=True), deprecated by the pandas 3 this venv has.
GRIDSTATUS_ON_PANDAS_3 = "ignore:The inplace keyword in DataFrame.rename"
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings(GRIDSTATUS_ON_PANDAS_3)]

START = "2024-08-20T20:00:00"  # 15:00-21:00 CDT: the 2024-08-20 scarcity evening
NOW = utc("2024-08-21T02:00:00+00:00")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def ercot(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ErcotNetwork:
    """Recorded-shape fixture built from shared data: ERCOT's RTM and DAM SPP documents for
    HB_SOUTH, 2024-08-20 18:00-24:00 UTC, behind gridstatus.Ercot's network methods."""
    need("gridstatus")
    prices = ercot_prices(data_dir, START, 6)
    network = ErcotNetwork(rt=raw_rt_spp(prices), da=raw_da_spp(prices))
    network.install(monkeypatch)
    return network


def ercot_source(
    opened: list[Source],
    network: ErcotNetwork,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    prefix: str,
    state_dir: Path,
    clock: Clock,
    sink: JsonlSink | None = None,
    **config: Any,
) -> Source:
    settings = SourceSettings(state_dir=state_dir)
    poll = IsoConfig(**{"nodes": ["HB_SOUTH"], "load": sink is not None, **FAST, **config})
    feeds = iso.build_feeds("ERCOT", poll, iso.make_client("ERCOT", settings), executor, sink)
    source = make_source(
        "iso-ercot",
        list(feeds),
        poll,
        bootstrap=broker.bootstrap,
        prefix=prefix,
        state_dir=state_dir,
        clock=clock,
    )
    opened.append(source)
    return source


@pytest.fixture
def price_topic(broker: EmbeddedBroker, topic_prefix: str) -> str:
    name = topic_prefix + "grid.price.v1"
    create_topic(broker.bootstrap, name)
    return name


async def test_prices_reach_the_topic_once_by_node_and_market(
    opened: list[Source],
    ercot: ErcotNetwork,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    price_topic: str,
    tmp_path: Path,
    data_dir: Path,
) -> None:
    source = ercot_source(opened, ercot, executor, broker, topic_prefix, tmp_path, Clock(NOW))
    first = await source.poll_once()
    assert first.ok, first.errors
    assert first.published == 24 + 6  # 15-minute real-time, hourly day-ahead
    again = await source.poll_once()  # the same answer: nothing new
    assert again.ok
    assert again.published == 0
    assert again.skipped == {"duplicate": 30}
    records = await read_topic_async(broker.bootstrap, price_topic)
    assert len(records) == 30  # nothing re-published
    expected = ercot_prices(data_dir, START, 6)
    real_time = [r for r in records if r["market"] == "real_time"]
    assert {r["key"] for r in records} == {"HB_SOUTH"}
    assert [r["interval_start"] for r in real_time] == list(expected["interval_start_utc"])
    assert [r["price_usd_per_mwh"] for r in real_time] == list(expected["hb_south_rt_spp_usd_mwh"])
    day_ahead = [r for r in records if r["market"] == "day_ahead"]
    assert len(day_ahead) == 6
    assert all(
        pd.Timestamp(r["interval_end"]) - pd.Timestamp(r["interval_start"]) == timedelta(hours=1)
        for r in day_ahead
    )
    assert max(r["price_usd_per_mwh"] for r in real_time) == pytest.approx(4857.82)


async def test_restart_mid_stream_publishes_nothing_twice(
    opened: list[Source],
    ercot: ErcotNetwork,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    price_topic: str,
    tmp_path: Path,
    data_dir: Path,
) -> None:
    prices = ercot_prices(data_dir, START, 6)
    ercot.rt, ercot.da = raw_rt_spp(prices.iloc[:12]), raw_da_spp(prices.iloc[:12])
    clock = Clock(utc("2024-08-20T23:00:00+00:00"))
    first = ercot_source(opened, ercot, executor, broker, topic_prefix, tmp_path, clock)
    assert (await first.poll_once()).published == 12 + 3
    await first.out.close()
    # A new process: only the checkpoint file carries over. The API now answers the whole
    # six hours, the first three included.
    ercot.rt, ercot.da = raw_rt_spp(prices), raw_da_spp(prices)
    clock.now = NOW
    restarted = ercot_source(opened, ercot, executor, broker, topic_prefix, tmp_path, clock)
    report = await restarted.poll_once()
    assert report.published == 12 + 3
    assert report.skipped == {"duplicate": 15}
    records = await read_topic_async(broker.bootstrap, price_topic)
    keys = [(r["market"], r["interval_start"]) for r in records]
    assert len(keys) == len(set(keys)) == 30


async def test_api_down_is_retried_with_backoff_then_recovers(
    opened: list[Source],
    ercot: ErcotNetwork,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    price_topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ercot.fail = 3  # ERCOT refuses three calls in a row
    source = ercot_source(
        opened, ercot, executor, broker, topic_prefix, tmp_path, Clock(NOW), markets=["real_time"]
    )
    delays: list[int] = []
    healthy: list[bool] = []

    def spy(failures: int, initial_s: float, cap_s: float, *args: Any) -> float:
        delays.append(failures)
        healthy.append(source.health.healthy)
        return 0.0  # the spy records the backoff asked for; the test need not wait it out

    monkeypatch.setattr(loop, "backoff_delay", spy)
    assert await source.run(asyncio.Event(), max_polls=4)
    assert delays == [1, 2, 3]  # backoff grows with the failures in a row
    assert healthy == [True, True, False]  # unhealthy after unhealthy_after_failures (3)
    assert source.health.healthy
    assert source.health.metrics.totals["fetch_errors.error"] == 3
    assert source.health.metrics.totals["events_published"] == 24
    assert "connection refused" in (source.health.last_error or "")
    assert len(await read_topic_async(broker.bootstrap, price_topic)) == 24


async def test_a_hung_call_times_out_and_the_next_poll_succeeds(
    opened: list[Source],
    ercot: ErcotNetwork,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    price_topic: str,
    tmp_path: Path,
) -> None:
    held = threading.Event()
    ercot.hold = held
    source = ercot_source(
        opened,
        ercot,
        executor,
        broker,
        topic_prefix,
        tmp_path,
        Clock(NOW),
        markets=["real_time"],
        timeout_s=0.3,
    )
    report = await source.poll_once()
    assert not report.ok
    assert source.health.metrics.totals["fetch_errors.timeout"] == 1
    ercot.hold = None
    held.set()  # the hung call returns (its answer is discarded); the next one can run
    report = await source.poll_once()
    assert report.ok, report.errors
    assert report.published == 24
    assert len(await read_topic_async(broker.bootstrap, price_topic)) == 24


async def test_malformed_rows_are_counted_and_never_published(
    opened: list[Source],
    ercot: ErcotNetwork,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    price_topic: str,
    tmp_path: Path,
) -> None:
    rt = ercot.rt.copy()
    rt["SettlementPointPrice"] = rt["SettlementPointPrice"].astype(object)
    rt.loc[0, "SettlementPointPrice"] = float("nan")  # a blank price, as on the 2024 DST day
    rt.loc[1, "SettlementPointPrice"] = "n/a"  # a wrong type
    rt.loc[2, "SettlementPointPrice"] = 250_000.0  # beyond the contract's price bounds
    ercot.rt = rt
    source = ercot_source(
        opened, ercot, executor, broker, topic_prefix, tmp_path, Clock(NOW), markets=["real_time"]
    )
    report = await source.poll_once()
    assert report.ok  # bad rows do not fail the poll
    assert report.rejected == 3
    assert report.published == 21
    totals = source.health.metrics.totals
    assert totals["rows_rejected.not_a_number"] == 1
    assert totals["rows_rejected.wrong_type"] == 1
    assert totals["rows_rejected.invalid_event"] == 1
    records = await read_topic_async(broker.bootstrap, price_topic)
    assert len(records) == 21
    assert all(isinstance(r["price_usd_per_mwh"], float) for r in records)


async def test_a_frame_without_its_columns_is_malformed(
    ercot: ErcotNetwork, executor: ThreadPoolExecutor
) -> None:
    client = iso.make_client("ERCOT", SourceSettings())
    frame = await asyncio.get_running_loop().run_in_executor(
        executor,
        lambda: client.get_spp(
            date=pd.Timestamp(NOW) - pd.Timedelta(hours=6),
            end=pd.Timestamp(NOW),
            market="REAL_TIME_15_MIN",
            locations=["HB_SOUTH"],
        ),
    )
    dataset = iso.ISOS["ERCOT"].real_time
    good = iso.price_records(
        frame, nodes={"HB_SOUTH": "HB_SOUTH"}, market="real_time", dataset=dataset
    )
    assert len(good.records) == 24
    with pytest.raises(MalformedResponseError, match="missing_columns") as raised:
        iso.price_records(
            frame.drop(columns=["SPP"]),
            nodes={"HB_SOUTH": "HB_SOUTH"},
            market="real_time",
            dataset=dataset,
        )
    assert raised.value.reason == "missing_columns"
    with pytest.raises(MalformedResponseError, match="wrong_type"):
        iso.price_records(None, nodes={}, market="real_time", dataset=dataset)
    other_market = frame.assign(Market="DAY_AHEAD_HOURLY")
    result = iso.price_records(
        other_market, nodes={"HB_SOUTH": "HB_SOUTH"}, market="real_time", dataset=dataset
    )
    assert {r.reason for r in result.rejected} == {"wrong_market"}
    naive = frame.assign(**{"Interval Start": frame["Interval Start"].dt.tz_localize(None)})
    result = iso.price_records(
        naive, nodes={"HB_SOUTH": "HB_SOUTH"}, market="real_time", dataset=dataset
    )
    assert {r.reason for r in result.rejected} == {"bad_time"}


async def test_late_rows_are_dropped_and_gaps_inside_the_window_filled(
    opened: list[Source],
    ercot: ErcotNetwork,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    price_topic: str,
    tmp_path: Path,
    data_dir: Path,
) -> None:
    prices = ercot_prices(data_dir, START, 6)
    hole = prices.drop(index=range(8, 12))  # 22:00-23:00 missing from the first answer
    ercot.rt = raw_rt_spp(hole)
    clock = Clock(NOW)
    source = ercot_source(
        opened, ercot, executor, broker, topic_prefix, tmp_path, clock, markets=["real_time"]
    )
    assert (await source.poll_once()).published == 20
    ercot.rt = raw_rt_spp(prices)  # the API fills the gap late
    report = await source.poll_once()
    assert report.published == 4
    assert report.skipped == {"duplicate": 20}
    clock.now = NOW + timedelta(hours=48)  # two days on, the same rows are outside the window
    report = await source.poll_once()
    assert report.published == 0
    assert report.skipped == {"late": 24}
    records = await read_topic_async(broker.bootstrap, price_topic)
    starts = [r["interval_start"] for r in records]
    assert len(starts) == len(set(starts)) == 24


@pytest.mark.parametrize(("corrections", "republished"), [("ignore", 0), ("publish", 1)])
async def test_a_price_correction_is_ignored_or_published_as_configured(
    opened: list[Source],
    ercot: ErcotNetwork,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    price_topic: str,
    tmp_path: Path,
    corrections: str,
    republished: int,
) -> None:
    source = ercot_source(
        opened,
        ercot,
        executor,
        broker,
        topic_prefix,
        tmp_path,
        Clock(NOW),
        markets=["real_time"],
        corrections=corrections,
    )
    assert (await source.poll_once()).published == 24
    corrected = ercot.rt.copy()
    corrected.loc[5, "SettlementPointPrice"] = 99.5  # ERCOT re-settles one interval
    ercot.rt = corrected
    report = await source.poll_once()
    assert report.published == republished
    if republished:
        assert source.health.metrics.totals["revisions_published"] == 1
    else:
        assert report.skipped["correction_ignored"] == 1
    records = await read_topic_async(broker.bootstrap, price_topic)
    assert len(records) == 24 + republished
    assert (records[-1]["price_usd_per_mwh"] == 99.5) is bool(republished)


async def test_load_and_its_forecast_go_to_the_jsonl_sink_once_per_value(
    opened: list[Source],
    ercot: ErcotNetwork,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    price_topic: str,
    tmp_path: Path,
    data_dir: Path,
) -> None:
    load = ercot_load(data_dir, START, 6)  # recorded-shape fixture built from shared data
    ercot.supply_demand = supply_demand_json(load)
    ercot.load_forecast = raw_load_forecast(load)
    sink = JsonlSink(tmp_path / "ercot-load.jsonl")
    source = ercot_source(
        opened,
        ercot,
        executor,
        broker,
        topic_prefix,
        tmp_path,
        Clock(NOW),
        sink=sink,
        markets=["day_ahead"],
    )
    report = await source.poll_once()
    assert report.ok, report.errors
    assert report.sink_rows == 6 + 6
    rows = [json.loads(line) for line in sink.path.read_text().splitlines()]
    measured = [r for r in rows if r["kind"] == "load"]
    forecast = [r for r in rows if r["kind"] == "load_forecast"]
    assert [r["load_mw"] for r in measured] == list(load["demand_mw"])
    assert [r["load_mw"] for r in forecast] == pytest.approx(list(load["demand_forecast_da_mw"]))
    assert {r["published_at"] for r in forecast} == {"2024-08-20T11:00:00Z"}  # 06:00 CDT
    assert all(r["published_at"] is None for r in measured)
    # The next hourly vintage changes one interval: only that one is written again.
    revised = ercot.load_forecast.copy()
    revised.loc[3, "SystemTotal"] += 1_000.0
    ercot.load_forecast = revised
    ercot.forecast_published += pd.Timedelta(hours=1)
    report = await source.poll_once()
    assert report.sink_rows == 1
    last = json.loads(sink.path.read_text().splitlines()[-1])
    assert last["kind"] == "load_forecast"
    assert last["published_at"] == "2024-08-20T12:00:00Z"
    assert last["load_mw"] == pytest.approx(load["demand_forecast_da_mw"][3] + 1_000.0)
    assert len(await read_topic_async(broker.bootstrap, price_topic)) == 6  # prices unaffected


def lmp_frame(
    starts: pd.DatetimeIndex,
    values: list[float],
    *,
    tz: str,
    step: str,
    market: str,
    location_column: str,
    node: str,
) -> pd.DataFrame:
    """A price frame with the columns gridstatus 0.37's LMP methods return (read from its
    source), plus one row of another node that the source must ignore."""
    local = starts.tz_convert(tz)
    frame = pd.DataFrame(
        {
            "Time": local,
            "Interval Start": local,
            "Interval End": local + pd.Timedelta(step),
            "Market": market,
            location_column: node,
            "Location Type": "Zone",
            "LMP": values,
            "Energy": values,
            "Congestion": 0.0,
            "Loss": 0.0,
        }
    )
    other = frame.iloc[:1].assign(**{location_column: "SOME_OTHER_NODE"})
    return pd.concat([frame, other], ignore_index=True)


async def test_caiso_pjm_and_nyiso_frames_map_by_node_and_market(
    data_dir: Path, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded-shape frames built from shared data (PJM Dominion real-time hourly, NYISO
    Capital day-ahead); CAISO has no shared price file, so its values are synthetic. Each
    client's per-dataset method is replaced at the call that goes to the network."""
    gridstatus = need("gridstatus")
    pjm = pd.read_csv(data_dir / "pjm" / "pjm_dom_zone_rt_lmp_hourly_2020_2024.csv").tail(6)
    nyiso = pd.read_csv(data_dir / "nyiso" / "nyiso_capitl_da_lmp_hourly_2020_2024.csv").tail(6)
    cases: list[tuple[str, str, dict[str, Any], pd.DataFrame]] = [
        (
            "PJM",
            "get_lmp_real_time_hourly",
            {"nodes": {"DOM": "PJM_DOM"}, "markets": ["real_time"],
             "real_time_method": "get_lmp_real_time_hourly"},
            lmp_frame(pd.DatetimeIndex(pd.to_datetime(pjm["interval_start_utc"], utc=True)),
                      list(pjm["dom_zone_rt_lmp_hourly_usd_mwh"]), tz="US/Eastern", step="1h",
                      market="REAL_TIME_HOURLY", location_column="Location Name", node="DOM"),
        ),
        (
            "NYISO",
            "get_lmp_day_ahead_hourly",
            {"nodes": ["CAPITL"], "markets": ["day_ahead"]},
            lmp_frame(pd.DatetimeIndex(pd.to_datetime(nyiso["interval_start_utc"], utc=True)),
                      list(nyiso["capitl_da_lmp_usd_mwh"]), tz="US/Eastern", step="1h",
                      market="DAY_AHEAD_HOURLY", location_column="Location", node="CAPITL"),
        ),
        (
            "CAISO",
            "get_lmp_real_time_15_min",
            {"nodes": ["TH_NP15_GEN-APND"], "markets": ["real_time"]},
            lmp_frame(pd.date_range("2024-08-20T20:00Z", periods=6, freq="15min"),
                      [41.0, 43.5, 39.9, 120.0, -5.0, 44.0], tz="US/Pacific", step="15min",
                      market="REAL_TIME_15_MIN", location_column="Location",
                      node="TH_NP15_GEN-APND"),
        ),
    ]  # fmt: skip
    settings = SourceSettings(pjm_api_key="test-key")
    for iso_name, method, config, frame in cases:
        calls: list[dict[str, Any]] = []

        def answer(
            _client: Any,
            frame: pd.DataFrame = frame,
            calls: list[dict[str, Any]] = calls,
            **kwargs: Any,
        ) -> pd.DataFrame:
            calls.append(kwargs)
            return frame

        client_class = getattr(gridstatus, iso.ISOS[iso_name].client_class)
        monkeypatch.setattr(client_class, method, answer)
        iso_config = IsoConfig(**{**config, "load": False})
        client = iso.make_client(iso_name, settings)
        (feed,) = iso.build_feeds(iso_name, iso_config, client, executor, None)
        result = await feed.fetch(NOW)
        assert not result.rejected, (iso_name, result.rejected)
        events = [record.payload for record in result.records]
        assert len(events) == 6, iso_name
        node = next(iter(iso_config.node_map().values()))
        assert {e.node for e in events} == {node}  # type: ignore[attr-defined]
        assert {e.market for e in events} == {config["markets"][0]}  # type: ignore[attr-defined]
        assert [e.price_usd_per_mwh for e in events] == list(frame["LMP"][:6])  # type: ignore[attr-defined]
        first = frame["Interval Start"][0].tz_convert("UTC").to_pydatetime()
        assert events[0].interval_start == first  # type: ignore[attr-defined]
        assert calls[0]["date"] == pd.Timestamp(NOW) - pd.Timedelta(hours=6)
        assert calls[0]["end"] >= pd.Timestamp(NOW)
