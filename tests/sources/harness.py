"""Helpers of the source tests: the optional libraries (skipped with a reason when missing),
recorded-shape provider answers built from the shared data, a plain Kafka reader, and sources
wired to the embedded broker.

"Recorded-shape fixture built from shared data": the column names, dtypes, JSON keys and units
are those the real client library returns (read from its source), and the values come from
../shared/data; only the transport (the library's network method) is replaced.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.kafka.connection import KafkaConnection
from streams.sources.checkpoint import Checkpoint
from streams.sources.config import PollConfig
from streams.sources.health import HealthState, SourceMetrics
from streams.sources.loop import Feed, KafkaOut, Source

EXTRA = "the optional 'sources' extra is not installed (pip install 'gridshift[sources]')"
WAIT_S = 30.0
SENTINEL = b"__sentinel__"
#: gridstatus.ercot.DAM_CLEARING_PRICES_FOR_CAPACITY_RTID (NP4-188-CD).
AS_PRICES_REPORT = 12329
#: The seven-day load forecast by forecast zone (NP3-565-CD).
LOAD_FORECAST_REPORT = 12311


def need(module: str) -> ModuleType:
    """``module``, or skip the test saying which extra is missing."""
    found: ModuleType = pytest.importorskip(module, reason=f"{module} missing: {EXTRA}")
    return found


# ------------------------------------------------------------------------------ Kafka


def create_topic(bootstrap: str, name: str) -> None:
    """One partition, so the order of everything on the topic is the order it was sent."""
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the answer
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(timeout=WAIT_S)


def read_topic(bootstrap: str, topic: str, timeout_s: float = WAIT_S) -> list[dict[str, Any]]:
    """Every record on ``topic`` (one partition), read with a plain confluent-kafka consumer:
    a sentinel is produced first, and everything before it is what was published."""
    marker = SENTINEL + uuid.uuid4().hex.encode()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=marker, value=b"{}")
    assert producer.flush(timeout_s) == 0, "sentinel not acknowledged"
    # Assigned, not subscribed: the embedded broker joins a group only after its session time-out.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    records: list[dict[str, Any]] = []
    end = time.monotonic() + timeout_s
    try:
        while True:
            if time.monotonic() > end:
                raise AssertionError(f"sentinel not read from {topic} within {timeout_s}s")
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            key = message.key() or b""
            if key == marker:
                return records
            if key.startswith(SENTINEL):
                continue  # an earlier read's sentinel
            records.append({"key": key.decode(), **json.loads(message.value() or b"{}")})
    finally:
        consumer.close()


async def read_topic_async(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """:func:`read_topic` off the event loop."""
    return await asyncio.to_thread(read_topic, bootstrap, topic)


# ------------------------------------------------------------------------------ sources


@dataclass
class Clock:
    """A wall clock the test moves."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


FAST = {
    "poll_interval_s": 0.01,
    "backoff_initial_s": 0.01,
    "backoff_max_s": 0.04,
    "timeout_s": 5.0,
}


def make_source(
    name: str,
    feeds: list[Feed],
    poll: PollConfig,
    *,
    bootstrap: str,
    prefix: str,
    state_dir: Path,
    clock: Callable[[], datetime],
) -> Source:
    """A source as ``streams.sources.runner.run`` builds it, without the health server."""
    metrics = SourceMetrics(name)
    return Source(
        name=name,
        feeds=feeds,
        poll=poll,
        out=KafkaOut(
            KafkaConnection(bootstrap),
            topic_prefix=prefix,
            partitions=1,
            timeout_s=poll.timeout_s,
        ),
        checkpoint=Checkpoint.open(
            state_dir / f"{name}.checkpoint.json",
            timedelta(hours=poll.dedup_window_hours),
            name,
        ),
        health=HealthState(name, poll.unhealthy_after_failures, metrics),
        clock=clock,
        jitter=0.0,
    )


# ------------------------------------------------------------------------------ ERCOT


def ercot_prices(data_dir: Path, start: str, hours: int) -> pd.DataFrame:
    """ERCOT HB_SOUTH real-time and day-ahead prices from the shared 15-minute file."""
    frame = pd.read_csv(data_dir / "ercot" / "ercot_hb_south_rt_da_spp_15min_2024-06_2024-12.csv")
    frame["start"] = pd.to_datetime(frame["interval_start_utc"], utc=True)
    first = pd.Timestamp(start, tz="UTC")
    window = frame[(frame["start"] >= first) & (frame["start"] < first + pd.Timedelta(hours=hours))]
    return window.reset_index(drop=True)


def raw_rt_spp(prices: pd.DataFrame, node: str = "HB_SOUTH") -> pd.DataFrame:
    """The rows of ERCOT's RTM SPP document (NP6-905-CD) as gridstatus reads them before
    parsing: DeliveryDate, DeliveryHour, DeliveryInterval, SettlementPointName/Type/Price."""
    local = pd.to_datetime(prices["interval_start_local"])
    return pd.DataFrame(
        {
            "DeliveryDate": local.dt.strftime("%m/%d/%Y"),
            "DeliveryHour": local.dt.hour + 1,
            "DeliveryInterval": local.dt.minute // 15 + 1,
            "SettlementPointName": node,
            "SettlementPointType": "HU",
            "SettlementPointPrice": prices["hb_south_rt_spp_usd_mwh"],
            "DSTFlag": "N",
        }
    )


def raw_da_spp(prices: pd.DataFrame, node: str = "HB_SOUTH") -> pd.DataFrame:
    """The rows of ERCOT's DAM SPP document (NP4-190-CD): DeliveryDate, HourEnding "01:00",
    SettlementPoint, SettlementPointPrice, DSTFlag (one row per hour)."""
    local = pd.to_datetime(prices["interval_start_local"])
    hourly = prices[local.dt.minute == 0]
    hour_local = pd.to_datetime(hourly["interval_start_local"])
    return pd.DataFrame(
        {
            "DeliveryDate": hour_local.dt.strftime("%m/%d/%Y"),
            "HourEnding": (hour_local.dt.hour + 1).map(lambda h: f"{h:02d}:00"),
            "SettlementPoint": node,
            "SettlementPointPrice": hourly["hb_south_da_spp_usd_mwh"],
            "DSTFlag": "N",
        }
    ).reset_index(drop=True)


def ercot_load(data_dir: Path, start: str, hours: int) -> pd.DataFrame:
    """ERCOT demand and its day-ahead forecast from the shared EIA-930 hourly file."""
    frame = pd.read_csv(data_dir / "ercot" / "ercot_load_eia930_hourly_2019_2024.csv")
    frame["start"] = pd.to_datetime(frame["period_utc"], utc=True)
    first = pd.Timestamp(start, tz="UTC")
    window = frame[(frame["start"] >= first) & (frame["start"] < first + pd.Timedelta(hours=hours))]
    return window.reset_index(drop=True)


def supply_demand_json(load: pd.DataFrame) -> dict[str, Any]:
    """ERCOT's supply-demand dashboard JSON (what ``_get_supply_demand_json`` returns): one
    point per interval end (epoch ms), ``demand`` MW, ``forecast`` 0 for measured points."""
    ends = load["start"] + pd.Timedelta(minutes=5)
    return {
        "data": [
            {
                "epoch": int(end.timestamp() * 1000),
                "demand": float(mw),
                "forecast": 0,
                "capacity": 90_000.0,
            }
            for end, mw in zip(ends, load["demand_mw"], strict=True)
        ]
    }


def raw_load_forecast(load: pd.DataFrame) -> pd.DataFrame:
    """ERCOT's seven-day load forecast by forecast zone (NP3-565-CD) before parsing:
    DeliveryDate, HourEnding, the four zones, SystemTotal, DSTFlag."""
    local = load["start"].dt.tz_convert("US/Central")
    total = load["demand_forecast_da_mw"]
    return pd.DataFrame(
        {
            "DeliveryDate": local.dt.strftime("%m/%d/%Y"),
            "HourEnding": (local.dt.hour + 1).map(lambda h: f"{h:02d}:00"),
            "North": total * 0.3,
            "South": total * 0.3,
            "West": total * 0.1,
            "Houston": total * 0.3,
            "SystemTotal": total,
            "DSTFlag": "N",
        }
    )


def raw_as_prices(mcpc: pd.DataFrame) -> pd.DataFrame:
    """ERCOT's DAM clearing prices for capacity document (NP4-188-CD) before parsing, as
    gridstatus reads it: DeliveryDate, HourEnding "01:00", AncillaryType (REGUP, REGDN, RRS,
    ECRS, NSPIN), MCPC, DSTFlag; one row per hour and product. ``mcpc``: rows of the shared
    ercot_dam_as_mcpc_hourly_*.csv (a product without values is left out, as before ECRS)."""
    columns = {
        "REGUP": "dam_mcpc_regup_usd_per_mw_h",
        "REGDN": "dam_mcpc_regdn_usd_per_mw_h",
        "RRS": "dam_mcpc_rrs_usd_per_mw_h",
        "ECRS": "dam_mcpc_ecrs_usd_per_mw_h",
        "NSPIN": "dam_mcpc_nspin_usd_per_mw_h",
    }
    rows = [
        {
            "DeliveryDate": pd.Timestamp(row["delivery_date"]).strftime("%m/%d/%Y"),
            "HourEnding": f"{int(row['hour_ending']):02d}:00",
            "AncillaryType": kind,
            "MCPC": float(row[column]),
            "DSTFlag": row["repeated_hour_flag"],
        }
        for _, row in mcpc.iterrows()
        for kind, column in columns.items()
        if pd.notna(row[column])
    ]
    return pd.DataFrame(rows)


def raw_load_html(load: pd.DataFrame) -> pd.DataFrame:
    """The table of ERCOT's "Actual Loads of Forecast Zones" page for one operating day as
    ``pd.read_html`` gives it to gridstatus: Oper Day, Hour Ending (100 .. 2400), the four
    forecast zones and TOTAL (MW). ``load``: rows with ``start`` (the hour's start, UTC) and
    ``demand_mw``."""
    begin = load["start"].dt.tz_convert("US/Central")
    total = load["demand_mw"]
    return pd.DataFrame(
        {
            "Oper Day": begin.dt.strftime("%m/%d/%Y"),
            "Hour Ending": (begin.dt.hour + 1) * 100,
            "North": total * 0.3,
            "South": total * 0.3,
            "West": total * 0.1,
            "Houston": total * 0.3,
            "TOTAL": total,
        }
    ).reset_index(drop=True)


@dataclass
class ErcotNetwork:
    """Stands in for ERCOT's servers behind gridstatus's network methods: the documents the
    test sets are what ``Ercot.get_spp``/``get_load``/``get_load_forecast`` then parse with
    gridstatus's own code. ``fail`` makes the next calls raise; ``hold`` makes them hang."""

    rt: pd.DataFrame
    da: pd.DataFrame
    supply_demand: dict[str, Any] = field(default_factory=lambda: {"data": []})
    load_forecast: pd.DataFrame | None = None
    forecast_published: pd.Timestamp = field(
        default_factory=lambda: pd.Timestamp("2024-08-20T06:00", tz="US/Central")
    )
    #: Several NP3-565-CD vintages (publish time, raw document); else ``load_forecast``.
    load_forecasts: list[tuple[pd.Timestamp, pd.DataFrame]] = field(default_factory=list)
    #: NP4-188-CD documents by publish day (ISO date, the day before delivery).
    as_prices: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: "Actual Loads of Forecast Zones" pages by operating day (YYYYMMDD).
    load_html: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: The ERCOT calendar day gridstatus takes as "today" (its date checks read the real
    #: clock; None keeps the real one).
    today: str | None = None
    pages_read: list[str] = field(default_factory=list)
    fail: int = 0
    hold: threading.Event | None = None
    calls: int = 0

    def _network(self) -> None:
        self.calls += 1
        if self.hold is not None:
            assert self.hold.wait(WAIT_S), "the test never released the held call"
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError("www.ercot.com: connection refused")

    def _document(self, report_type_id: int) -> Any:
        from gridstatus.ercot import Document  # noqa: PLC0415

        stamp = self.forecast_published
        return Document(
            url=f"recorded://{report_type_id}",
            publish_date=stamp,
            constructed_name=f"{report_type_id}.csv.zip",
            friendly_name=str(report_type_id),
            friendly_name_timestamp=stamp,
        )

    def documents(self, ercot: Any, report_type_id: int, **_: Any) -> list[Any]:
        self._network()
        return [self._document(report_type_id)]

    def document(self, ercot: Any, report_type_id: int, **kw: Any) -> Any:
        self._network()
        if report_type_id == LOAD_FORECAST_REPORT and self.load_forecasts:
            from gridstatus.ercot import Document  # noqa: PLC0415

            # The newest vintage published before the asked time, as ERCOT's document list.
            before = pd.Timestamp(kw["published_before"])
            index, stamp = max(
                ((i, published) for i, (published, _) in enumerate(self.load_forecasts)
                 if published < before),
                key=lambda item: item[1],
            )  # fmt: skip
            return Document(
                url=f"recorded://{index}/{report_type_id}",
                publish_date=stamp,
                constructed_name=f"{report_type_id}.csv.zip",
                friendly_name=str(report_type_id),
                friendly_name_timestamp=stamp,
            )
        if report_type_id == AS_PRICES_REPORT:
            from gridstatus.ercot import Document  # noqa: PLC0415

            day = pd.Timestamp(kw["date"]).date().isoformat()
            if day not in self.as_prices:
                # What gridstatus's _get_document raises: max() of an empty document list.
                raise ValueError("max() arg is an empty sequence")
            stamp = pd.Timestamp(f"{day}T13:30", tz="US/Central")
            return Document(
                url=f"recorded://{day}/{report_type_id}",
                publish_date=stamp,
                constructed_name=f"{report_type_id}.csv.zip",
                friendly_name=str(report_type_id),
                friendly_name_timestamp=stamp,
            )
        return self._document(report_type_id)

    def read_doc(self, ercot: Any, doc: Any, parse: bool = True, verbose: bool = False,
                 **_: Any) -> pd.DataFrame:  # fmt: skip
        report = int(doc.url.rsplit("/", 1)[1])
        if report == LOAD_FORECAST_REPORT and self.load_forecasts:
            raw = self.load_forecasts[int(doc.url.split("/")[2])][1]
            return ercot.parse_doc(raw.copy(), verbose=verbose) if parse else raw.copy()
        if report == AS_PRICES_REPORT:
            raw = self.as_prices[doc.url.split("/")[2]]
            return ercot.parse_doc(raw.copy(), verbose=verbose) if parse else raw.copy()
        raw = {12301: self.rt, 12331: self.da, 12311: self.load_forecast}[report]
        assert raw is not None, f"no recorded document for report {report}"
        return ercot.parse_doc(raw.copy(), verbose=verbose) if parse else raw.copy()

    def settlement_points(self, ercot: Any, verbose: bool = False) -> pd.DataFrame:
        return pd.DataFrame({"RESOURCE_NODE": ["SOME_RESOURCE_NODE"]})

    def supply_demand_json(self, ercot: Any, verbose: bool = False) -> dict[str, Any]:
        self._network()
        return self.supply_demand

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Replace only gridstatus.Ercot's network methods."""
        gridstatus = need("gridstatus")
        # Plain functions (not bound methods) so each receives the Ercot instance as ``self``.
        network = self

        def get_documents(ercot: Any, **kw: Any) -> list[Any]:
            return network.documents(ercot, **kw)

        def get_document(ercot: Any, **kw: Any) -> Any:
            return network.document(ercot, **kw)

        def read_doc(ercot: Any, doc: Any, **kw: Any) -> pd.DataFrame:
            return network.read_doc(ercot, doc, **kw)

        def settlement_points(ercot: Any, **_: Any) -> pd.DataFrame:
            return network.settlement_points(ercot)

        def supply_demand(ercot: Any, **_: Any) -> dict[str, Any]:
            return network.supply_demand_json(ercot)

        def read_html(url: str, **_: Any) -> list[pd.DataFrame]:
            # Only ERCOT's load pages are read with pd.read_html here; key: YYYYMMDD.
            network._network()
            day = url.rsplit("/", 1)[1].split("_", 1)[0]
            network.pages_read.append(day)
            assert day in network.load_html, f"no recorded load page for {day}"
            return [network.load_html[day].copy()]

        # gridstatus's date checks read the real clock: read ``today`` at call time instead,
        # so a test moves ERCOT's calendar with its own clock (None: the real one).
        real_is_today = gridstatus.utils.is_today
        real_within = gridstatus.utils.is_within_last_days

        def is_today(date: Any, tz: str) -> bool:
            if network.today is None:
                return bool(real_is_today(date, tz))
            day = gridstatus.utils._handle_date(date, tz=tz).date()
            return bool(day == pd.Timestamp(network.today).date())

        def is_within_last_days(date: Any, days: int, tz: str) -> bool:
            if network.today is None:
                return bool(real_within(date, days, tz))
            today = pd.Timestamp(network.today).date()
            day = gridstatus.utils._handle_date(date, tz=tz).date()
            return bool(today - timedelta(days=days) <= day <= today)

        monkeypatch.setattr(gridstatus.utils, "is_today", is_today)
        monkeypatch.setattr(gridstatus.utils, "is_within_last_days", is_within_last_days)
        monkeypatch.setattr(pd, "read_html", read_html)
        for name, replacement in (
            ("_get_documents", get_documents),
            ("_get_document", get_document),
            ("read_doc", read_doc),
            ("_get_settlement_point_mapping", settlement_points),
            ("_get_supply_demand_json", supply_demand),
        ):
            monkeypatch.setattr(gridstatus.Ercot, name, replacement)


def utc(text: str) -> datetime:
    """A UTC instant from ISO text."""
    return datetime.fromisoformat(text).astimezone(UTC)
