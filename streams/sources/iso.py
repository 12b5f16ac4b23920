"""ISO prices and load through gridstatus: real-time and day-ahead prices by node as
``grid.price.v1`` events, and system load and load forecasts as rows of the load file.

Which gridstatus method gives what is one table (:data:`ISOS`, read from gridstatus 0.37.0):
ERCOT's settlement point prices (``get_spp``, hubs and load zones: what a large load pays),
the per-dataset LMP methods of CAISO, PJM and NYISO, and each ISO's ``get_load`` and
``get_load_forecast``. gridstatus is synchronous (requests), so each call runs in the source's
one worker thread; the poll's time-out stops waiting for it, and the single thread makes a hung
call hold back the next one instead of piling up threads.

The mapping functions (:func:`price_records`, :func:`load_records`) are pure: a DataFrame as
gridstatus returns it in, records and rejected rows out. Rows of other locations are ignored
(the per-dataset methods return every node); a row with a missing time, a NaN or non-number
price, another market or an out-of-contract value is rejected and counted; a frame without the
needed columns is a malformed answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import numbers
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd
from pydantic import ValidationError

from schemas import PriceEvent, topic_for
from streams.errors import GridshiftError
from streams.sources.checkpoint import Record
from streams.sources.config import IsoConfig, SourceSettings, env_variable
from streams.sources.loop import FeedResult, MalformedResponseError, Rejected
from streams.sources.sink import JsonlSink, LoadRow

log = logging.getLogger(__name__)

PRICE_TOPIC = topic_for(PriceEvent).name
Window = Literal["recent", "ahead", "today", "now"]


@dataclass(frozen=True, slots=True)
class Dataset:
    """One gridstatus method and the columns of its answer."""

    method: str
    value_column: str
    #: ``recent``: [now - lookback, now]; ``ahead``: [now - lookback, now + day_ahead_hours];
    #: ``today``: date="today"; ``now``: the latest report published before now.
    window: Window
    location_column: str | None = "Location"
    vintage_column: str | None = None
    #: The ``Market`` column's value for this dataset (rows of another market are rejected).
    market_value: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: The keyword that filters locations at the source (else rows are filtered here).
    locations_argument: str | None = None


@dataclass(frozen=True, slots=True)
class IsoSpec:
    """How gridstatus serves one ISO."""

    client_class: str
    timezone: str
    real_time: Dataset
    day_ahead: Dataset
    load: Dataset
    load_forecast: Dataset


def _lmp(method: str, window: Window, market: str, location: str = "Location") -> Dataset:
    return Dataset(method, "LMP", window, location_column=location, market_value=market)


def _load(method: str = "get_load") -> Dataset:
    return Dataset(method, "Load", "today", location_column=None)


ISOS: dict[str, IsoSpec] = {
    "ERCOT": IsoSpec(
        "Ercot",
        "US/Central",
        real_time=Dataset(
            "get_spp", "SPP", "recent", market_value="REAL_TIME_15_MIN",
            kwargs={"market": "REAL_TIME_15_MIN"}, locations_argument="locations",
        ),
        day_ahead=Dataset(
            "get_spp", "SPP", "ahead", market_value="DAY_AHEAD_HOURLY",
            kwargs={"market": "DAY_AHEAD_HOURLY"}, locations_argument="locations",
        ),
        load=_load(),
        # The seven-day forecast by forecast zone; "System Total" is ERCOT-wide (4CP needs it).
        load_forecast=Dataset(
            "get_load_forecast", "System Total", "now", location_column=None,
            vintage_column="Publish Time",
        ),
    ),
    "CAISO": IsoSpec(
        "CAISO",
        "US/Pacific",
        real_time=_lmp("get_lmp_real_time_15_min", "recent", "REAL_TIME_15_MIN"),
        day_ahead=_lmp("get_lmp_day_ahead_hourly", "ahead", "DAY_AHEAD_HOURLY"),
        load=_load(),
        load_forecast=Dataset(
            "get_load_forecast", "Load Forecast", "today", location_column=None,
            vintage_column="Publish Time",
        ),
    ),
    "PJM": IsoSpec(
        "PJM",
        "US/Eastern",
        # PJM names a pnode in "Location Name" (there is no "Location" column).
        real_time=_lmp("get_lmp_real_time_5_min", "recent", "REAL_TIME_5_MIN", "Location Name"),
        day_ahead=_lmp("get_lmp_day_ahead_hourly", "ahead", "DAY_AHEAD_HOURLY", "Location Name"),
        load=_load(),
        load_forecast=Dataset(
            "get_load_forecast", "Load Forecast", "today", location_column=None,
            vintage_column="Publish Time",
        ),
    ),
    "NYISO": IsoSpec(
        "NYISO",
        "US/Eastern",
        real_time=_lmp("get_lmp_real_time_5_min", "recent", "REAL_TIME_5_MIN"),
        day_ahead=_lmp("get_lmp_day_ahead_hourly", "ahead", "DAY_AHEAD_HOURLY"),
        load=_load(),
        load_forecast=Dataset(
            "get_load_forecast", "Load Forecast", "today", location_column=None,
            vintage_column="Forecast Time",
        ),
    ),
}  # fmt: skip


def make_client(iso: str, settings: SourceSettings) -> Any:
    """The gridstatus client of ``iso`` (PJM needs its API key); one line when the extra or
    a credential is missing."""
    if iso == "PJM" and settings.pjm_api_key is None:
        raise GridshiftError(
            f"the PJM source needs a PJM Data Miner API key: set {env_variable('pjm_api_key')}"
        )
    try:
        import gridstatus  # noqa: PLC0415 - optional extra, loaded only by this command
    except ImportError as exc:
        raise GridshiftError(
            "'gridshift source' needs the sources extra (gridstatus is missing): "
            "pip install 'gridshift[sources]'"
        ) from exc
    quiet_library_logger("gridstatus")
    client_class = getattr(gridstatus, ISOS[iso].client_class)
    if iso == "PJM" and settings.pjm_api_key is not None:
        return client_class(api_key=settings.pjm_api_key.get_secret_value())
    return client_class()


def quiet_library_logger(name: str) -> None:
    """Route a library's logger into our structured logs at WARNING: gridstatus attaches its
    own DEBUG stream handler, which would print unstructured lines beside ours."""
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = True


class IsoFeed:
    """One dataset of one ISO (a market's prices, load, or the load forecast)."""

    def __init__(
        self,
        *,
        iso: str,
        kind: Literal["real_time", "day_ahead", "load", "load_forecast"],
        dataset: Dataset,
        client: Any,
        config: IsoConfig,
        executor: Executor,
        sink: JsonlSink | None = None,
    ) -> None:
        self.iso = iso
        self.name = kind
        self.kind = kind
        self.dataset = dataset
        self.client = client
        self.config = config
        self.executor = executor
        self.sink = sink
        self.topic = None if sink is not None else PRICE_TOPIC
        self.nodes = config.node_map()

    async def fetch(self, now: datetime) -> FeedResult:
        """Call gridstatus in the worker thread, then map the frame."""
        loop = asyncio.get_running_loop()
        frame = await loop.run_in_executor(self.executor, self._call, now)
        match self.kind:
            case "load" | "load_forecast" as kind:
                return load_records(frame, iso=self.iso, kind=kind, dataset=self.dataset)
            case market:
                return price_records(frame, nodes=self.nodes, market=market, dataset=self.dataset)

    async def close(self) -> None:
        """Nothing to release (gridstatus opens a connection per call)."""

    def _call(self, now: datetime) -> Any:
        kwargs = dict(self.dataset.kwargs) | self._window(now)
        if self.dataset.locations_argument:
            kwargs[self.dataset.locations_argument] = list(self.nodes)
        return call_gridstatus(self.client, self.dataset.method, **kwargs)

    def _window(self, now: datetime) -> dict[str, Any]:
        window = self.dataset.window
        if window == "today":
            return {"date": "today"}
        stamp = pd.Timestamp(now)
        if window == "now":
            return {"date": stamp}
        start = stamp - pd.Timedelta(hours=self.config.lookback_hours)
        hours_ahead = self.config.day_ahead_hours if window == "ahead" else 0.0
        return {"date": start, "end": stamp + pd.Timedelta(hours=hours_ahead)}


def call_gridstatus(client: Any, method_name: str, **kwargs: Any) -> Any:
    """``client.<method_name>(**kwargs)``; any failure as a :class:`GridshiftError` caused by
    the library's own exception (``__cause__``, for callers that tell failures apart)."""
    method = getattr(client, method_name)
    # gridstatus's date-range decorator catches the real error, *prints* it and then fails
    # with "No objects to concatenate"; its LMP decorator refuses error="raise". So stdout
    # is captured (this thread is the only one printing while it runs) and the printed
    # cause is put into the error we raise.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return method(**kwargs)
    except Exception as exc:
        said = " | ".join(
            line.strip() for line in printed.getvalue().splitlines() if line.startswith("Error")
        )
        raise GridshiftError(
            f"gridstatus {method_name} failed: {type(exc).__name__}: {exc}"
            + (f" ({said[:300]})" if said else "")
        ) from exc


def require_nodes(iso: str, config: IsoConfig) -> None:
    """One line when no price node is configured for ``iso``."""
    if not config.nodes:
        raise GridshiftError(
            f"no price nodes for {iso}: list them as [iso.{iso}] nodes = [...] in the sources "
            "file (--config), or pass --node"
        )


def build_feeds(
    iso: str, config: IsoConfig, client: Any, executor: Executor, sink: JsonlSink | None
) -> list[IsoFeed]:
    """The feeds of one ISO as configured (markets, then load and its forecast)."""
    require_nodes(iso, config)
    spec = ISOS[iso]
    feeds: list[IsoFeed] = []
    overrides = {"real_time": config.real_time_method, "day_ahead": config.day_ahead_method}
    for market in config.markets:
        dataset: Dataset = getattr(spec, market)
        override = overrides[market]
        if override is not None:
            # Another method of the same shape (e.g. PJM hourly real-time): the market check
            # of the default method no longer applies.
            dataset = Dataset(
                override,
                dataset.value_column,
                dataset.window,
                location_column=dataset.location_column,
            )
        feeds.append(
            IsoFeed(
                iso=iso,
                kind=market,
                dataset=dataset,
                client=client,
                config=config,
                executor=executor,
            )
        )
    if config.load and sink is not None:
        for kind in ("load", "load_forecast"):
            feeds.append(
                IsoFeed(
                    iso=iso,
                    kind=kind,
                    dataset=getattr(spec, kind),
                    client=client,
                    config=config,
                    executor=executor,
                    sink=sink,
                )
            )
    for feed in feeds:
        if not callable(getattr(client, feed.dataset.method, None)):
            raise GridshiftError(
                f"gridstatus {type(client).__name__} has no method {feed.dataset.method} "
                f"(check [iso.{iso}] {feed.kind}_method)"
            )
    return feeds


# ------------------------------------------------------------------------------ mapping


def price_records(
    frame: Any,
    *,
    nodes: Mapping[str, str],
    market: Literal["real_time", "day_ahead"],
    dataset: Dataset,
) -> FeedResult:
    """``grid.price.v1`` records from a gridstatus price frame (rows of ``nodes`` only)."""
    location_column = dataset.location_column or "Location"
    columns = ["Interval Start", "Interval End", location_column, dataset.value_column]
    require_columns(frame, columns, dataset.method)
    has_market = "Market" in frame.columns
    selected = frame[columns + (["Market"] if has_market else [])]
    result = FeedResult()
    for row in selected.itertuples(index=False, name=None):
        start_raw, end_raw, location, value = row[:4]
        node = nodes.get(str(location))
        if node is None:
            continue  # another node of the ISO: not ours
        where = f"{location} {start_raw}"
        if has_market and dataset.market_value and str(row[4]) != dataset.market_value:
            result.rejected.append(Rejected("wrong_market", f"{where}: market {row[4]!r}"))
            continue
        times = interval_of(start_raw, end_raw, where, result)
        price = number_of(value, where, result)
        if times is None or price is None:
            continue
        try:
            event = PriceEvent(
                node=node,
                market=market,
                price_usd_per_mwh=price,
                interval_start=times[0],
                interval_end=times[1],
            )
        except ValidationError as exc:
            result.rejected.append(Rejected("invalid_event", f"{where}: {first_error(exc)}"))
            continue
        result.records.append(Record(f"{PRICE_TOPIC}/{node}/{market}", times[0], event))
    return result


def load_records(
    frame: Any,
    *,
    iso: str,
    kind: Literal["load", "load_forecast"],
    dataset: Dataset,
) -> FeedResult:
    """Load-file records from a gridstatus load or load-forecast frame; of a forecast, only
    the newest vintage of each interval (a frame may hold several)."""
    columns = ["Interval Start", "Interval End", dataset.value_column]
    if dataset.vintage_column:
        columns.append(dataset.vintage_column)
    require_columns(frame, columns, dataset.method)
    result = FeedResult()
    newest: dict[datetime, LoadRow] = {}
    for row in frame[columns].itertuples(index=False, name=None):
        where = f"{iso} {kind} {row[0]}"
        times = interval_of(row[0], row[1], where, result)
        value = number_of(row[2], where, result)
        if times is None or value is None:
            continue
        vintage = None
        if dataset.vintage_column:
            vintage = instant(row[3])
            if vintage is None:
                result.rejected.append(Rejected("bad_time", f"{where}: vintage {row[3]!r}"))
                continue
        try:
            load = LoadRow(
                iso=iso,
                kind=kind,
                interval_start=times[0],
                interval_end=times[1],
                load_mw=value,
                published_at=vintage,
            )
        except ValidationError as exc:
            result.rejected.append(Rejected("invalid_event", f"{where}: {first_error(exc)}"))
            continue
        kept = newest.get(times[0])
        if kept is None or (vintage and kept.published_at and vintage >= kept.published_at):
            newest[times[0]] = load
    for start, load in sorted(newest.items()):
        # A forecast interval gets a new vintage every hour: written again when its value
        # changed (the publish time alone does not count).
        result.records.append(
            Record(
                f"load/{iso}/{kind}",
                start,
                load,
                revisable=kind == "load_forecast",
                volatile=frozenset({"published_at"}),
            )
        )
    return result


def require_columns(frame: Any, columns: list[str], method: str) -> None:
    """Raise :class:`MalformedResponseError` unless ``frame`` is a DataFrame with ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise MalformedResponseError(
            "wrong_type", f"{method} returned {type(frame).__name__}, not a DataFrame"
        )
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise MalformedResponseError(
            "missing_columns",
            f"{method} answered without {missing} (columns: {list(map(str, frame.columns))[:12]})",
        )


def instant(value: Any) -> datetime | None:
    """A tz-aware UTC datetime, or ``None`` for a missing, naive or non-time value."""
    if not isinstance(value, datetime) or value is pd.NaT:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        return None
    converted: datetime = pd.Timestamp(value).tz_convert(UTC).to_pydatetime(warn=False)
    return converted


def interval_of(
    start_raw: Any, end_raw: Any, where: str, result: FeedResult
) -> tuple[datetime, datetime] | None:
    """The row's interval in UTC, or ``None`` (rejected as ``bad_time``)."""
    start, end = instant(start_raw), instant(end_raw)
    if start is None or end is None:
        result.rejected.append(
            Rejected("bad_time", f"{where}: interval {start_raw!r} .. {end_raw!r}")
        )
        return None
    if end - start > timedelta(days=2):
        result.rejected.append(Rejected("bad_time", f"{where}: interval longer than two days"))
        return None
    return start, end


def number_of(value: Any, where: str, result: FeedResult) -> float | None:
    """A finite float, or ``None`` (rejected as ``wrong_type`` or ``not_a_number``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        result.rejected.append(Rejected("wrong_type", f"{where}: value {value!r}"))
        return None
    number = float(value)
    if not math.isfinite(number):
        result.rejected.append(Rejected("not_a_number", f"{where}: value {value!r}"))
        return None
    return number


def first_error(exc: ValidationError) -> str:
    """The first complaint of a validation error, as one short line."""
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc']) or '(event)'}: {error['msg']}"
