"""The carbon source with the real Electricity Maps and WattTime clients talking HTTP to an
aiohttp server on loopback that answers as those APIs do (recorded-shape fixture built from
shared data: ERCOT's Electricity Maps hourly intensity), publishing to the embedded broker:
average and marginal joined per interval, units converted, forecasts re-sent only when they
change, bad rows rejected, outages retried, missing credentials refused, secrets never logged."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web

from streams.errors import GridshiftError
from streams.kafka.broker import EmbeddedBroker
from streams.logs import fields
from streams.sources import carbon
from streams.sources.config import CarbonConfig, SourceSettings
from streams.sources.loop import FeedResult, Source
from tests.sources.harness import FAST, Clock, create_topic, make_source, need, read_topic_async
from tests.sources.harness import utc as at

pytestmark = pytest.mark.e2e

NOW = at("2024-08-21T02:00:00+00:00")
TOKEN = "em-secret-token-1234"  # a test credential the server checks
WT_USER, WT_PASSWORD = "wt-user", "wt-secret-password-5678"
LBS_PER_G = 1 / 0.45359237  # g/kWh -> lbs/MWh


@dataclass
class FakeApis:
    """Electricity Maps (/v3/carbon-intensity/...) and WattTime (/login, /v3/...) as their
    servers answer; the test edits the answers and counts the calls."""

    intensity: pd.DataFrame
    status: int = 200
    bad_rows: dict[int, Any] = field(default_factory=dict)
    forecast_bump: float = 0.0
    units: str = "lbs_co2_per_mwh"
    calls: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _em_row(self, row: pd.Series) -> dict[str, Any]:
        return {
            "zone": "US-TEX-ERCO",
            "carbonIntensity": float(row["ci_lca_gco2eq_per_kwh"]),
            "datetime": row["datetime_utc"].replace("Z", ".000Z"),
            "updatedAt": "2024-08-21T01:58:00.000Z",
            "emissionFactorType": "lifecycle",
            "isEstimated": False,
            "estimationMethod": None,
            "temporalGranularity": "hourly",
        }

    def _hours(self, first: pd.Timestamp, count: int) -> pd.DataFrame:
        starts = pd.to_datetime(self.intensity["datetime_utc"], utc=True)
        return self.intensity[(starts >= first) & (starts < first + pd.Timedelta(hours=count))]

    async def em_history(self, request: web.Request) -> web.Response:
        self._count("em_history")
        if request.headers.get("auth-token") != TOKEN:
            return web.json_response({"error": "invalid token"}, status=401)
        if self.status != 200:
            return web.Response(status=self.status, text="upstream unavailable")
        assert (request.query.get("zoneKey") or request.query.get("zone")) == "US-TEX-ERCO"
        rows = [
            self._em_row(r)
            for _, r in self._hours(pd.Timestamp(NOW) - pd.Timedelta(hours=24), 24).iterrows()
        ]
        for index, value in self.bad_rows.items():
            rows[index]["carbonIntensity"] = value
        return web.json_response(
            {"zone": "US-TEX-ERCO", "history": rows, "temporalGranularity": "hourly"}
        )

    async def em_forecast(self, request: web.Request) -> web.Response:
        self._count("em_forecast")
        if request.headers.get("auth-token") != TOKEN:
            return web.json_response({"error": "invalid token"}, status=401)
        hours = int(float(request.query.get("horizonHours", "24")))
        rows = [
            {
                "carbonIntensity": float(r["ci_lca_gco2eq_per_kwh"])
                + (self.forecast_bump if i == 0 else 0.0),
                "datetime": r["datetime_utc"].replace("Z", ".000Z"),
            }
            for i, (_, r) in enumerate(self._hours(pd.Timestamp(NOW), hours).iterrows())
        ]
        return web.json_response(
            {"zone": "US-TEX-ERCO", "updatedAt": "2024-08-21T01:58:00.000Z", "forecast": rows}
        )

    async def wt_login(self, request: web.Request) -> web.Response:
        self._count("wt_login")
        expected = base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "bad credentials"}, status=403)
        return web.json_response({"token": "wt-jwt"})

    def _wt_points(self, first: pd.Timestamp, hours: int, signal: str) -> list[dict[str, Any]]:
        points = []
        for _, row in self._hours(first, hours).iterrows():
            start = pd.Timestamp(row["datetime_utc"])
            for step in range(12):  # WattTime's 5-minute points
                if signal == "co2_aoer":  # the average: ERCOT's direct intensity, in lbs/MWh
                    value = float(row["ci_direct_gco2eq_per_kwh"]) * LBS_PER_G
                else:  # marginal: no marginal series in shared data; gas-fired values, labelled
                    value = 900.0 + 10.0 * step
                points.append(
                    {
                        "point_time": (start + pd.Timedelta(minutes=5 * step)).isoformat(),
                        "value": value,
                    }
                )
        return points

    def _wt_meta(self, request: web.Request) -> dict[str, Any]:
        return {
            "region": request.query["region"],
            "signal_type": request.query["signal_type"],
            "units": self.units,
            "data_point_period_seconds": 300,
            "model": {"date": "2024-01-01"},
            "warnings": [],
            "generated_at": "2024-08-21T02:00:00+00:00",
        }

    async def wt_historical(self, request: web.Request) -> web.Response:
        self._count("wt_historical")
        assert request.headers.get("Authorization") == "Bearer wt-jwt"
        first = pd.Timestamp(NOW) - pd.Timedelta(hours=6)
        data = self._wt_points(first, 6, request.query["signal_type"])
        return web.json_response({"data": data, "meta": self._wt_meta(request)})

    async def wt_forecast(self, request: web.Request) -> web.Response:
        self._count("wt_forecast")
        hours = int(request.query.get("horizon_hours", "24"))
        data = self._wt_points(pd.Timestamp(NOW), hours, request.query["signal_type"])
        return web.json_response({"data": data, "meta": self._wt_meta(request)})


@pytest.fixture
async def apis(data_dir: Path) -> AsyncIterator[FakeApis]:
    """Recorded-shape fixture built from shared data: the loopback server."""
    need("electricitymaps")
    need("watttime")
    frame = pd.read_csv(
        data_dir / "ercot" / "ercot_carbon_intensity_electricitymaps_hourly_2021_2024.csv"
    )
    fake = FakeApis(frame)
    app = web.Application()
    app.router.add_get("/v3/carbon-intensity/history", fake.em_history)
    app.router.add_get("/v3/carbon-intensity/forecast", fake.em_forecast)
    app.router.add_get("/login", fake.wt_login)
    app.router.add_get("/v3/historical", fake.wt_historical)
    app.router.add_get("/v3/forecast", fake.wt_forecast)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(autouse=True)
def _watttime_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The watttime client copies credentials into WATTTIME_USER/PASSWORD; undone after a test.
    monkeypatch.delenv("WATTTIME_USER", raising=False)
    monkeypatch.delenv("WATTTIME_PASSWORD", raising=False)


def settings(tmp_path: Path) -> SourceSettings:
    return SourceSettings(
        state_dir=tmp_path,
        electricitymaps_token=TOKEN,
        watttime_username=WT_USER,
        watttime_password=WT_PASSWORD,
    )


def carbon_source(
    opened: list[Source],
    apis: FakeApis,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    prefix: str,
    tmp_path: Path,
    source_settings: SourceSettings | None = None,
    **config: Any,
) -> Source:
    poll = CarbonConfig(
        **{
            "regions": {"ERCOT": {"electricitymaps": "US-TEX-ERCO", "watttime": "ERCOT_EASTTX"}},
            "electricitymaps_url": apis.url + "/v3",
            "watttime_url": apis.url,
            **FAST,
            **config,
        }
    )
    feeds = carbon.build_feeds(poll, source_settings or settings(tmp_path), executor)
    source = make_source(
        "carbon",
        list(feeds),
        poll,
        bootstrap=broker.bootstrap,
        prefix=prefix,
        state_dir=tmp_path,
        clock=Clock(NOW),
    )
    opened.append(source)
    return source


@pytest.fixture
def carbon_topic(broker: EmbeddedBroker, topic_prefix: str) -> str:
    name = topic_prefix + "grid.carbon.v1"
    create_topic(broker.bootstrap, name)
    return name


async def test_average_from_electricitymaps_and_marginal_from_watttime(
    opened: list[Source],
    apis: FakeApis,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    carbon_topic: str,
    tmp_path: Path,
) -> None:
    source = carbon_source(
        opened, apis, executor, broker, topic_prefix, tmp_path, marginal="watttime"
    )
    report = await source.poll_once()
    assert report.ok, report.errors
    assert report.published == 6 + 24  # the last six hours, a 24-hour forecast
    again = await source.poll_once()
    assert again.published == 0
    apis.forecast_bump = 25.0  # the next forecast changes one hour: a new vintage, sent again
    bumped = await source.poll_once()
    assert bumped.published == 1
    records = await read_topic_async(broker.bootstrap, carbon_topic)
    assert len(records) == 31
    assert {r["key"] for r in records} == {"ERCOT"}
    actual = [r for r in records if r["basis"] == "actual"]
    forecast = [r for r in records if r["basis"] == "forecast"]
    assert [r["interval_start"] for r in actual] == [
        f"2024-08-20T{h:02d}:00:00Z" for h in range(20, 24)
    ] + ["2024-08-21T00:00:00Z", "2024-08-21T01:00:00Z"]
    expected = apis.intensity.set_index("datetime_utc")["ci_lca_gco2eq_per_kwh"]
    for record in actual + forecast[:24]:
        assert record["average_intensity_g_per_kwh"] == expected[record["interval_start"]]
        # mean of the twelve 5-minute points 900..1010 lbs/MWh, in g/kWh
        assert record["marginal_intensity_g_per_kwh"] == pytest.approx(955.0 * 0.45359237)
    assert forecast[-1]["interval_start"] == "2024-08-21T02:00:00Z"
    assert forecast[-1]["average_intensity_g_per_kwh"] == pytest.approx(
        expected["2024-08-21T02:00:00Z"] + 25.0
    )


async def test_average_from_watttime_is_converted_to_grams_per_kwh(
    opened: list[Source],
    apis: FakeApis,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    carbon_topic: str,
    tmp_path: Path,
) -> None:
    source = carbon_source(
        opened, apis, executor, broker, topic_prefix, tmp_path, average="watttime", forecast=False
    )
    report = await source.poll_once()
    assert report.ok, report.errors
    assert report.published == 6 * 12  # 5-minute intervals
    records = await read_topic_async(broker.bootstrap, carbon_topic)
    direct = apis.intensity.set_index("datetime_utc")["ci_direct_gco2eq_per_kwh"]
    first = records[0]
    assert first["interval_start"] == "2024-08-20T20:00:00Z"
    assert first["interval_end"] == "2024-08-20T20:05:00Z"
    assert first["average_intensity_g_per_kwh"] == pytest.approx(direct["2024-08-20T20:00:00Z"])
    assert first["marginal_intensity_g_per_kwh"] is None
    assert apis.calls["wt_login"] == 1  # the client logs in once and keeps its token


async def test_bad_rows_are_rejected_and_the_rest_published(
    opened: list[Source],
    apis: FakeApis,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    carbon_topic: str,
    tmp_path: Path,
) -> None:
    apis.bad_rows = {20: None, 21: "n/a"}  # two of the last six hours
    source = carbon_source(opened, apis, executor, broker, topic_prefix, tmp_path, forecast=False)
    report = await source.poll_once()
    assert report.ok
    assert report.published == 4
    assert source.health.metrics.totals["rows_rejected.not_a_number"] == 1
    assert source.health.metrics.totals["rows_rejected.wrong_type"] == 1
    assert len(await read_topic_async(broker.bootstrap, carbon_topic)) == 4


async def test_unknown_units_make_the_answer_malformed(
    opened: list[Source],
    apis: FakeApis,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    carbon_topic: str,
    tmp_path: Path,
) -> None:
    apis.units = "tonnes_per_fortnight"
    source = carbon_source(
        opened, apis, executor, broker, topic_prefix, tmp_path, marginal="watttime", forecast=False
    )
    report = await source.poll_once()
    assert not report.ok  # nothing of the region is published: no half events
    assert report.published == 0
    assert source.health.metrics.totals["rows_rejected.unknown_units"] == 1
    assert await read_topic_async(broker.bootstrap, carbon_topic) == []


async def test_an_http_error_is_retried_and_the_token_never_logged(
    opened: list[Source],
    apis: FakeApis,
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    carbon_topic: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apis.status = 503
    source = carbon_source(opened, apis, executor, broker, topic_prefix, tmp_path, forecast=False)
    with caplog.at_level(logging.DEBUG):
        failed = await source.poll_once()
        assert not failed.ok
        assert "HTTP 503" in (source.health.last_error or "")
        apis.status = 200
        recovered = await source.poll_once()
    assert recovered.ok
    assert recovered.published == 6
    logged = " ".join(
        f"{record.getMessage()} {json.dumps(fields(record), default=str)}"
        for record in caplog.records
    )
    assert "503" in logged
    assert TOKEN not in logged
    assert WT_PASSWORD not in logged
    assert TOKEN not in json.dumps(source.health.body())


def test_missing_credentials_name_the_variable(tmp_path: Path) -> None:
    both = CarbonConfig(
        regions={"ERCOT": {"electricitymaps": "US-TEX-ERCO", "watttime": "ERCOT_EASTTX"}},
        marginal="watttime",
    )
    with pytest.raises(GridshiftError, match=r"GRIDSHIFT_SOURCE_ELECTRICITYMAPS_TOKEN$"):
        carbon.check_credentials(both, SourceSettings())
    with pytest.raises(GridshiftError, match=r"set GRIDSHIFT_SOURCE_WATTTIME_PASSWORD$"):
        carbon.check_credentials(
            both, SourceSettings(electricitymaps_token=TOKEN, watttime_username=WT_USER)
        )
    carbon.check_credentials(both, settings(tmp_path))  # complete: no error


def test_mapping_units_and_spacing() -> None:
    result = FeedResult()
    answer = {
        "data": [
            {"point_time": "2024-08-20T20:00:00+00:00", "value": 1000.0},
            {"point_time": "2024-08-20T20:05:00", "value": 1.0},  # naive: rejected
            {"point_time": "2024-08-20T20:10:00+00:00", "value": float("nan")},
        ],
        "meta": {"units": "lbs_co2_per_mwh", "data_point_period_seconds": 300},
    }
    points = carbon.watttime_points([answer], result)
    assert [p.value for p in points] == [pytest.approx(453.59237)]
    assert points[0].end - points[0].start == timedelta(minutes=5)
    assert sorted(r.reason for r in result.rejected) == ["bad_time", "not_a_number"]
