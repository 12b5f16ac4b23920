"""The reserve source: ERCOT's day-ahead MCPCs (gridstatus ``Ercot().get_as_prices``) mapped
to ``grid.reserve.v1``, its rejects, when it asks for tomorrow, and end to end through the real
gridstatus client (only its network methods replaced by recorded-shape NP4-188-CD documents
built from the shared MCPC file) to the embedded broker, read back with a plain consumer."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from streams.errors import GridshiftError
from streams.kafka.broker import EmbeddedBroker
from streams.sources import iso, reserve
from streams.sources.config import ReserveConfig, SourceSettings
from streams.sources.loop import MalformedResponseError, Source
from streams.sources.reserve import ReserveFeed, reserve_records
from tests.sources.harness import (
    FAST,
    Clock,
    ErcotNetwork,
    create_topic,
    make_source,
    need,
    raw_as_prices,
    read_topic_async,
    utc,
)

GRIDSTATUS_ON_PANDAS_3 = "ignore:The inplace keyword in DataFrame.rename"
pytestmark = pytest.mark.filterwarnings(GRIDSTATUS_ON_PANDAS_3)

PRODUCTS: list[Any] = ["reg_up", "reg_down", "rrs", "ecrs", "non_spin"]
MCPC_COLUMNS = {
    "reg_up": "dam_mcpc_regup_usd_per_mw_h",
    "reg_down": "dam_mcpc_regdn_usd_per_mw_h",
    "rrs": "dam_mcpc_rrs_usd_per_mw_h",
    "ecrs": "dam_mcpc_ecrs_usd_per_mw_h",
    "non_spin": "dam_mcpc_nspin_usd_per_mw_h",
}


def as_prices_frame(hours: int = 3, **columns: list[Any]) -> pd.DataFrame:
    """Shaped like the real ``get_as_prices`` answer (gridstatus 0.37.0
    ``_finalize_as_price_df``: Time, Interval Start, Interval End as datetime64[ns,
    US/Central], Market "DAM", five float64 product columns); SYNTHETIC values."""
    start = pd.date_range("2024-08-20 00:00", periods=hours, freq="h", tz="US/Central")
    frame = pd.DataFrame(
        {
            "Time": start,
            "Interval Start": start,
            "Interval End": start + pd.Timedelta(hours=1),
            "Market": "DAM",
            "Non-Spinning Reserves": [5.0 + k for k in range(hours)],
            "Regulation Down": [6.0 + k for k in range(hours)],
            "Regulation Up": [7.0 + k for k in range(hours)],
            "Responsive Reserves": [8.0 + k for k in range(hours)],
            "ERCOT Contingency Reserve Service": [9.0 + k for k in range(hours)],
        }
    )
    for name, values in columns.items():
        frame[name.replace("_", " ")] = values
    return frame


def test_a_get_as_prices_frame_maps_to_one_event_per_product_and_hour() -> None:
    result = reserve_records(as_prices_frame(), region="ERCOT", products=PRODUCTS)
    assert result.rejected == []
    assert len(result.records) == 3 * 5
    by_key = {(r.payload.product, r.at.isoformat()): r for r in result.records}  # type: ignore[attr-defined]
    first = by_key[("ecrs", "2024-08-20T05:00:00+00:00")]  # 00:00 CDT
    assert first.series == "grid.reserve.v1/ERCOT/ecrs"
    event = first.payload.model_dump(mode="json")
    assert event == {
        "interval_start": "2024-08-20T05:00:00Z",
        "interval_end": "2024-08-20T06:00:00Z",
        "kind": "reserve_price",
        "region": "ERCOT",
        "product": "ecrs",
        "market": "day_ahead",
        "price_usd_per_mw_h": 9.0,
    }
    assert by_key[("non_spin", "2024-08-20T07:00:00+00:00")].payload.price_usd_per_mw_h == 7.0  # type: ignore[attr-defined]
    assert by_key[("reg_down", "2024-08-20T06:00:00+00:00")].payload.price_usd_per_mw_h == 7.0  # type: ignore[attr-defined]
    only = reserve_records(as_prices_frame(), region="ERCOT", products=["rrs"])
    assert {r.series for r in only.records} == {"grid.reserve.v1/ERCOT/rrs"}


def test_malformed_rows_are_rejected_and_counted_never_published() -> None:
    frame = as_prices_frame(
        4, Regulation_Up=[7.0, math.nan, 7.0, 7.0], Responsive_Reserves=[8.0, 8.0, -1.0, 8.0]
    )
    frame.loc[3, "Market"] = "RTM"
    result = reserve_records(frame, region="ERCOT", products=PRODUCTS)
    reasons = sorted(r.reason for r in result.rejected)
    assert reasons == ["invalid_event", "not_a_number", "wrong_market"]
    assert len(result.records) == 3 * 5 - 2  # hour 4 gone, one reg_up and one rrs
    assert all(r.payload.price_usd_per_mw_h >= 0 for r in result.records)  # type: ignore[attr-defined]


def test_a_product_the_document_lacks_is_skipped_not_rejected() -> None:
    # gridstatus fills ECRS with None when the document has none (before 2023-06-10).
    frame = as_prices_frame(2, ERCOT_Contingency_Reserve_Service=[None, None])
    result = reserve_records(frame, region="ERCOT", products=PRODUCTS)
    assert result.rejected == []
    assert {r.series.rsplit("/", 1)[1] for r in result.records} == set(PRODUCTS) - {"ecrs"}


def test_a_frame_without_a_product_column_is_malformed() -> None:
    frame = as_prices_frame().drop(columns=["Regulation Up"])
    with pytest.raises(MalformedResponseError, match="Regulation Up"):
        reserve_records(frame, region="ERCOT", products=PRODUCTS)
    assert reserve_records(frame, region="ERCOT", products=["rrs"]).records  # not needed


class NotYetPublished:
    """A stand-in client whose document list is empty: gridstatus's ``_get_document`` then
    raises this very ValueError (``max()`` of nothing)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_as_prices(self, date: str) -> pd.DataFrame:
        self.asked.append(date)
        raise ValueError("max() arg is an empty sequence")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize(
    ("central", "asked", "outcome"),
    [
        ("2024-08-20T12:59:00", [], "note"),  # before ahead_from_hour: not asked
        ("2024-08-20T15:00:00", ["2024-08-21"], "note"),  # asked, not there yet: a note
        ("2024-08-20T17:30:00", ["2024-08-21"], "error"),  # past ahead_late_hour: failure
    ],
)
async def test_tomorrow_is_asked_after_the_dam_and_late_is_an_error(
    executor: ThreadPoolExecutor, central: str, asked: list[str], outcome: str
) -> None:
    client = NotYetPublished()
    feed = ReserveFeed(which="ahead", client=client, config=ReserveConfig(), executor=executor)
    now = pd.Timestamp(central, tz="US/Central").to_pydatetime()
    if outcome == "error":
        with pytest.raises(GridshiftError, match="2024-08-21 by 17:00 Central"):
            await feed.fetch(now)
    else:
        result = await feed.fetch(now)
        assert result.records == []
        assert result.note is not None
        assert "2024-08-21" in result.note
    assert client.asked == asked


async def test_today_missing_is_an_error_and_other_failures_are_not_hidden(
    executor: ThreadPoolExecutor,
) -> None:
    feed = ReserveFeed(
        which="today", client=NotYetPublished(), config=ReserveConfig(), executor=executor
    )
    with pytest.raises(GridshiftError, match="not published the day-ahead MCPCs of 2024-08-20"):
        await feed.fetch(utc("2024-08-20T15:00:00+00:00"))

    class Down:
        def get_as_prices(self, date: str) -> pd.DataFrame:
            raise ConnectionError("www.ercot.com: connection refused")

    ahead = ReserveFeed(which="ahead", client=Down(), config=ReserveConfig(), executor=executor)
    with pytest.raises(GridshiftError, match="connection refused"):
        await ahead.fetch(utc("2024-08-20T20:00:00+00:00"))  # 15:00 CDT: not a "pending" note


# ------------------------------------------------------------------------------ end to end


def mcpc_rows(data_dir: Path, day: str) -> pd.DataFrame:
    frame = pd.read_csv(data_dir / "ercot" / "ercot_dam_as_mcpc_hourly_2022_2024.csv")
    return frame[frame["delivery_date"] == day].reset_index(drop=True)


@pytest.mark.e2e
@pytest.mark.data
async def test_reserve_prices_reach_the_topic_once_today_then_tomorrow(
    opened: list[Source],
    executor: ThreadPoolExecutor,
    broker: EmbeddedBroker,
    topic_prefix: str,
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need("gridstatus")
    today, tomorrow = mcpc_rows(data_dir, "2024-08-20"), mcpc_rows(data_dir, "2024-08-21")
    # Recorded-shape NP4-188-CD documents built from shared data, by publish day (D-1).
    network = ErcotNetwork(rt=pd.DataFrame(), da=pd.DataFrame())
    network.as_prices = {"2024-08-19": raw_as_prices(today)}
    network.install(monkeypatch)
    topic = topic_prefix + "grid.reserve.v1"
    create_topic(broker.bootstrap, topic)
    config = ReserveConfig(**FAST)
    client = iso.make_client("ERCOT", SourceSettings(state_dir=tmp_path))
    clock = Clock(pd.Timestamp("2024-08-20T12:00", tz="US/Central").to_pydatetime())
    source = make_source(
        "reserve",
        list(reserve.build_feeds(config, client, executor)),
        config,
        bootstrap=broker.bootstrap,
        prefix=topic_prefix,
        state_dir=tmp_path,
        clock=clock,
    )
    opened.append(source)

    morning = await source.poll_once()  # 12:00 Central: today only, tomorrow not asked
    assert morning.ok, morning.errors
    assert morning.published == 24 * 5
    assert "ahead" in morning.notes
    # 14:00: ERCOT has run the DAM for the 21st.
    network.as_prices["2024-08-20"] = raw_as_prices(tomorrow)
    clock.now = pd.Timestamp("2024-08-20T14:00", tz="US/Central").to_pydatetime()
    afternoon = await source.poll_once()
    assert afternoon.ok, afternoon.errors
    assert afternoon.published == 24 * 5  # tomorrow's; today's are duplicates
    assert afternoon.skipped == {"duplicate": 24 * 5}
    assert afternoon.notes == {}

    records = await read_topic_async(broker.bootstrap, topic)
    assert len(records) == 2 * 24 * 5
    assert {r["key"] for r in records} == {"ERCOT"}
    got = {(r["product"], r["interval_start"]): r["price_usd_per_mw_h"] for r in records}
    for rows in (today, tomorrow):
        for _, row in rows.iterrows():
            start = pd.Timestamp(row["interval_start_utc"]).strftime("%Y-%m-%dT%H:%M:%SZ")
            for product, column in MCPC_COLUMNS.items():
                assert got[(product, start)] == pytest.approx(float(row[column]), abs=0)
    # Hour ending 19 of 2024-08-20 (18:00 CDT), the 4CP day: ECRS $61.11 in the shared file.
    assert got[("ecrs", "2024-08-20T23:00:00Z")] == 61.11
    assert all(
        datetime.fromisoformat(r["interval_end"]) - datetime.fromisoformat(r["interval_start"])
        == pd.Timedelta(hours=1)
        for r in records
    )
    assert date.fromisoformat("2024-08-21") in {
        pd.Timestamp(r["interval_start"]).tz_convert("US/Central").date() for r in records
    }
