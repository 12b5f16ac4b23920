"""Carbon intensity through the official clients: Electricity Maps (the ``electricitymaps``
SDK's generated API) and WattTime (the ``watttime`` package), as ``grid.carbon.v1`` events per
region, ``basis="actual"`` (recent history) and ``basis="forecast"``.

``average`` comes from one provider (Electricity Maps' carbon intensity, or WattTime's
``co2_aoer``), ``marginal`` optionally from WattTime's ``co2_moer``. Events follow the average
provider's intervals; the marginal value of an interval is the mean of the marginal points that
start inside it (WattTime's are 5-minute), ``None`` when there is none. When either call fails,
the region's feed publishes nothing that poll (no half events) and is retried.

Units: WattTime answers in lbs CO2/MWh (x 0.45359237 -> g/kWh); Electricity Maps in gCO2eq/kWh
(life-cycle unless ``emission_factor = "direct"``; its forecast endpoint has no such choice).
Both clients are synchronous; calls run in the source's worker thread. The hosts are
configurable (``electricitymaps_url``, ``watttime_url``), which is also how the tests point the
real clients at a loopback server. Credentials are ``SecretStr`` settings, unwrapped only here;
note that the watttime client itself copies them into ``WATTTIME_USER``/``WATTTIME_PASSWORD``
of this process's environment.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import numbers
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from schemas import CarbonEvent, topic_for
from streams.errors import GridshiftError
from streams.sources.checkpoint import Record
from streams.sources.config import CarbonConfig, SourceSettings, env_variable
from streams.sources.loop import FeedResult, MalformedResponseError, Rejected

CARBON_TOPIC = topic_for(CarbonEvent).name
#: WattTime's units -> factor to gCO2/kWh (1 lb = 453.59237 g; 1 MWh = 1,000 kWh).
WATTTIME_UNITS: dict[str, float] = {
    "lbs_co2_per_mwh": 0.45359237,
    "g_co2_per_kwh": 1.0,
    "kg_co2_per_mwh": 1.0,
}
_GRANULARITY: dict[str, timedelta] = {
    "5_minutes": timedelta(minutes=5),
    "15_minutes": timedelta(minutes=15),
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
}
Basis = Literal["actual", "forecast"]


@dataclass(frozen=True, slots=True)
class Point:
    """One provider value over [start, end), in gCO2/kWh."""

    start: datetime
    end: datetime
    value: float


# ------------------------------------------------------------------------------ clients


def check_credentials(config: CarbonConfig, settings: SourceSettings) -> None:
    """One line naming the missing variable(s) for each configured provider."""
    providers = config.providers()
    if "electricitymaps" in providers and settings.electricitymaps_token is None:
        raise GridshiftError(
            "the carbon source needs an Electricity Maps API token: "
            f"set {env_variable('electricitymaps_token')}"
        )
    if "watttime" in providers:
        missing = [
            env_variable(name)
            for name in ("watttime_username", "watttime_password")
            if getattr(settings, name) is None
        ]
        if missing:
            raise GridshiftError(
                f"the carbon source needs WattTime credentials: set {' and '.join(missing)}"
            )


class ElectricityMapsApi:
    """The Electricity Maps SDK's carbon-intensity API, pointed at ``url``.

    ``electricitymaps.create_client`` fixes the host and its adapter passes neither a request
    time-out nor the emission factor, so the same generated API is built here directly. Rows are
    read raw and validated one by one with the SDK's models: one bad row is rejected alone
    instead of failing the whole answer.
    """

    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        try:
            import openapi  # noqa: PLC0415 - optional extra (shipped by the electricitymaps wheel)
            from openapi.api.carbon_intensity_api import CarbonIntensityAPI  # noqa: PLC0415
        except ImportError as exc:
            raise GridshiftError(
                "carbon from Electricity Maps needs the sources extra (electricitymaps is "
                "missing): pip install 'gridshift[sources]'"
            ) from exc
        configuration = openapi.Configuration(host=url.rstrip("/"))
        configuration.api_key["authToken"] = token
        self._client = openapi.ApiClient(configuration)
        self._api = CarbonIntensityAPI(self._client)
        self.timeout_s = timeout_s

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.rest_client.pool_manager.clear()

    def history(self, zone: str, emission_factor: str) -> Any:
        """The last 24 hours of a zone (parsed JSON)."""
        from openapi.models.emission_factor_type import EmissionFactorType  # noqa: PLC0415

        response = self._api.get_carbon_intensity_history_without_preload_content(
            zone_key=zone,
            emission_factor_type=EmissionFactorType(emission_factor),
            _request_timeout=self.timeout_s,
        )
        return _json_body(response, "Electricity Maps history")

    def forecast(self, zone: str, hours: int) -> Any:
        """The forecast of a zone (parsed JSON)."""
        response = self._api.get_carbon_intensity_forecast_without_preload_content(
            zone_key=zone, horizon_hours=hours, _request_timeout=self.timeout_s
        )
        return _json_body(response, "Electricity Maps forecast")


def _json_body(response: Any, what: str) -> Any:
    status = int(response.status)
    if status != 200:
        text = bytes(response.data or b"")[:200].decode(errors="replace")
        raise GridshiftError(f"{what} answered HTTP {status}: {text}")
    try:
        return json.loads(response.data)
    except (TypeError, ValueError) as exc:
        raise MalformedResponseError("invalid_json", f"{what}: {exc}") from exc


class WattTimeApi:
    """The official watttime client (historical and forecast), pointed at ``url``."""

    def __init__(self, url: str, username: str, password: str) -> None:
        try:
            from watttime import (  # type: ignore[import-untyped]  # noqa: PLC0415 - no stubs; optional extra
                WattTimeForecast,
                WattTimeHistorical,
            )
        except ImportError as exc:
            raise GridshiftError(
                "carbon from WattTime needs the sources extra (watttime is missing): "
                "pip install 'gridshift[sources]'"
            ) from exc
        self.historical = WattTimeHistorical(username=username, password=password)
        self.forecasts = WattTimeForecast(username=username, password=password)
        for client in (self.historical, self.forecasts):
            client.url_base = url.rstrip("/")  # a class default (env WATTTIME_API_URL) otherwise

    def close(self) -> None:
        """Close the clients' HTTP sessions."""
        for client in (self.historical, self.forecasts):
            client.session.close()

    def history(self, region: str, signal: str, start: datetime, end: datetime) -> list[Any]:
        """Historical values of ``signal`` (one JSON answer per 30-day chunk)."""
        answers: list[Any] = self.historical.get_historical_jsons(start, end, region, signal)
        return answers

    def forecast(self, region: str, signal: str, hours: int) -> list[Any]:
        """The latest forecast of ``signal`` (as a one-answer list)."""
        return [self.forecasts.get_forecast_json(region, signal, horizon_hours=hours)]


# ------------------------------------------------------------------------------ mapping


def electricitymaps_points(body: Any, basis: Basis, result: FeedResult) -> list[Point]:
    """Points of an Electricity Maps history or forecast answer (rows checked with the SDK's
    models; a bad row is rejected, a bad answer is malformed)."""
    from openapi.models.carbon_intensity import CarbonIntensity  # noqa: PLC0415
    from openapi.models.carbon_intensity_forecast_response_forecast_inner import (  # noqa: PLC0415
        CarbonIntensityForecastResponseForecastInner as ForecastRow,
    )

    key = "history" if basis == "actual" else "forecast"
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise MalformedResponseError("invalid_response", f"no {key!r} list in the answer")
    if basis == "actual":
        granularity = _GRANULARITY.get(str(body.get("temporalGranularity", "hourly")))
        if granularity is None:
            raise MalformedResponseError(
                "invalid_response", f"granularity {body.get('temporalGranularity')!r}"
            )
    else:
        granularity = _spacing([row.get("datetime") for row in body[key] if isinstance(row, dict)])
    points: list[Point] = []
    model = CarbonIntensity if basis == "actual" else ForecastRow
    for row in body[key]:
        if isinstance(row, dict) and row.get("carbonIntensity") is None:
            result.rejected.append(Rejected("not_a_number", f"{row.get('datetime')}: no value"))
            continue
        try:
            parsed = model.model_validate(row)
        except ValidationError as exc:
            result.rejected.append(Rejected("wrong_type", f"{_short(row)}: {_first(exc)}"))
            continue
        start = _parse_time(parsed.dt)
        value = float(parsed.carbon_intensity)
        if start is None:
            result.rejected.append(Rejected("bad_time", f"datetime {parsed.dt!r}"))
        elif not math.isfinite(value):
            result.rejected.append(Rejected("not_a_number", f"{parsed.dt}: {value}"))
        else:
            points.append(Point(start, start + granularity, value))
    return points


def watttime_points(answers: Sequence[Any], result: FeedResult) -> list[Point]:
    """Points of WattTime answers (``{"data": [{"point_time", "value"}], "meta": {...}}``),
    converted to gCO2/kWh."""
    points: list[Point] = []
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise MalformedResponseError("invalid_response", "no 'data' list in the answer")
        meta: dict[str, Any] = answer["meta"] if isinstance(answer.get("meta"), dict) else {}
        units = str(meta.get("units"))
        factor = WATTTIME_UNITS.get(units)
        if factor is None:
            raise MalformedResponseError("unknown_units", f"units {units!r}")
        period = meta.get("data_point_period_seconds", 300)
        if isinstance(period, bool) or not isinstance(period, int) or period <= 0:
            raise MalformedResponseError("invalid_response", f"period {period!r}")
        for row in answer["data"]:
            if not isinstance(row, dict):
                result.rejected.append(Rejected("wrong_type", f"row {_short(row)}"))
                continue
            start = _parse_time(row.get("point_time"))
            value = row.get("value")
            if start is None:
                result.rejected.append(
                    Rejected("bad_time", f"point_time {row.get('point_time')!r}")
                )
            elif value is None or (isinstance(value, float) and not math.isfinite(value)):
                result.rejected.append(Rejected("not_a_number", f"{start}: value {value!r}"))
            elif isinstance(value, bool) or not isinstance(value, numbers.Real):
                result.rejected.append(Rejected("wrong_type", f"{start}: value {value!r}"))
            else:
                points.append(
                    Point(start, start + timedelta(seconds=period), float(value) * factor)
                )
    return points


def carbon_records(
    region: str,
    basis: Basis,
    *,
    average: Sequence[Point],
    marginal: Sequence[Point] | None,
    result: FeedResult,
    since: datetime | None = None,
) -> FeedResult:
    """``grid.carbon.v1`` records on the average's intervals (from ``since`` on), with the
    mean marginal value of each interval when a marginal series is given."""
    for point in sorted(average, key=lambda p: p.start):
        if since is not None and point.start < since:
            continue
        marginal_value = None
        if marginal is not None:
            inside = [m.value for m in marginal if point.start <= m.start < point.end]
            marginal_value = sum(inside) / len(inside) if inside else None
        try:
            event = CarbonEvent(
                region=region,
                basis=basis,
                average_intensity_g_per_kwh=point.value,
                marginal_intensity_g_per_kwh=marginal_value,
                interval_start=point.start,
                interval_end=point.end,
            )
        except ValidationError as exc:
            result.rejected.append(Rejected("invalid_event", f"{point.start}: {_first(exc)}"))
            continue
        # A forecast interval is forecast again and again: a changed value is a new vintage.
        result.records.append(
            Record(f"{CARBON_TOPIC}/{region}/{basis}", point.start, event, basis == "forecast")
        )
    return result


# ------------------------------------------------------------------------------ feeds


class CarbonFeed:
    """One region and basis: average (and marginal) from the configured providers."""

    sink = None

    def __init__(
        self,
        *,
        region: str,
        basis: Basis,
        config: CarbonConfig,
        executor: Executor,
        electricitymaps: ElectricityMapsApi | None,
        watttime: WattTimeApi | None,
    ) -> None:
        self.region = region
        self.basis = basis
        self.name = f"{region}/{basis}"
        self.topic = CARBON_TOPIC
        self.config = config
        self.names = config.regions[region]
        self.executor = executor
        self.electricitymaps = electricitymaps
        self.watttime = watttime

    async def fetch(self, now: datetime) -> FeedResult:
        """Call the provider(s) in the worker thread, then join and map."""
        loop = asyncio.get_running_loop()
        average_raw, marginal_raw = await loop.run_in_executor(self.executor, self._call, now)
        result = FeedResult()
        if self.config.average == "electricitymaps":
            average = electricitymaps_points(average_raw, self.basis, result)
        else:
            average = watttime_points(average_raw, result)
        marginal = None if marginal_raw is None else watttime_points(marginal_raw, result)
        since = (
            now - timedelta(hours=self.config.lookback_hours) if self.basis == "actual" else None
        )
        return carbon_records(
            self.region, self.basis, average=average, marginal=marginal, result=result, since=since
        )

    async def close(self) -> None:
        """Close the providers' connections (shared by the feeds; closing twice is harmless)."""
        for api in (self.electricitymaps, self.watttime):
            if api is not None:
                api.close()

    def _call(self, now: datetime) -> tuple[Any, Any]:
        start = now - timedelta(hours=self.config.lookback_hours)
        hours = self.config.forecast_hours
        if self.config.average == "electricitymaps":
            assert self.electricitymaps is not None
            assert self.names.electricitymaps is not None
            zone = self.names.electricitymaps
            average = (
                self.electricitymaps.history(zone, self.config.emission_factor)
                if self.basis == "actual"
                else self.electricitymaps.forecast(zone, hours)
            )
        else:
            average = self._watttime("co2_aoer", start, now, hours)
        marginal = (
            self._watttime("co2_moer", start, now, hours)
            if self.config.marginal != "none"
            else None
        )
        return average, marginal

    def _watttime(self, signal: str, start: datetime, now: datetime, hours: int) -> list[Any]:
        assert self.watttime is not None
        assert self.names.watttime is not None
        if self.basis == "actual":
            return self.watttime.history(self.names.watttime, signal, start, now)
        return self.watttime.forecast(self.names.watttime, signal, hours)


def build_feeds(
    config: CarbonConfig, settings: SourceSettings, executor: Executor
) -> list[CarbonFeed]:
    """The feeds of every configured region (actual, and forecast when enabled)."""
    if not config.regions:
        raise GridshiftError(
            "no carbon regions: add e.g. [carbon.regions.ERCOT] electricitymaps = "
            '"US-TEX-ERCO" to the sources file (--config)'
        )
    check_credentials(config, settings)
    providers = config.providers()
    electricitymaps = None
    watttime = None
    if "electricitymaps" in providers:
        assert settings.electricitymaps_token is not None  # checked above
        electricitymaps = ElectricityMapsApi(
            config.electricitymaps_url,
            settings.electricitymaps_token.get_secret_value(),
            config.timeout_s,
        )
    if "watttime" in providers:
        assert settings.watttime_username is not None
        assert settings.watttime_password is not None
        watttime = WattTimeApi(
            config.watttime_url,
            settings.watttime_username,
            settings.watttime_password.get_secret_value(),
        )
    bases: list[Basis] = ["actual", "forecast"] if config.forecast else ["actual"]
    return [
        CarbonFeed(
            region=region,
            basis=basis,
            config=config,
            executor=executor,
            electricitymaps=electricitymaps,
            watttime=watttime,
        )
        for region in sorted(config.regions)
        for basis in bases
    ]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _spacing(stamps: Sequence[Any]) -> timedelta:
    """The step between consecutive forecast points (the forecast answer does not say it);
    one hour when it cannot be told."""
    times = sorted(t for t in (_parse_time(s) for s in stamps) if t is not None)
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return min(steps) if steps else timedelta(hours=1)


def _short(row: Any) -> str:
    return json.dumps(row, default=str)[:120]


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc']) or '(row)'}: {error['msg']}"
