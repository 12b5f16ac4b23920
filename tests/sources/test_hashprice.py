"""Hashprice: the formula against the shared BTC dataset, and the source end to end with the
real aiohttp client calling a loopback server that answers like mempool.space (recorded-shape
fixture built from shared data), publishing to the embedded broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web

from streams.kafka.broker import EmbeddedBroker
from streams.sources import hashprice as hp
from streams.sources.config import HashpriceConfig
from streams.sources.loop import MalformedResponseError, Source
from tests.sources.harness import FAST, Clock, create_topic, make_source, read_topic_async, utc

BTC_FILE = "bitcoin/btc_daily_price_difficulty_hashrate_2020-04_2024-12.csv"


def test_the_formula_gives_the_datasets_subsidy_hashprice(data_dir: Path) -> None:
    """Every day of 2020-04..2024-12: difficulty -> hashrate, 144 blocks x subsidy x close
    price / hashrate = the file's hashprice_subsidy_usd_per_th_day (fees excluded there)."""
    days = pd.read_csv(data_dir / BTC_FILE)
    computed = [
        hp.hashprice_usd_per_th_day(
            difficulty=row.difficulty,
            subsidy_btc=row.block_subsidy_btc,
            fees_btc_per_block=0.0,
            btc_usd=row.btc_usd_close,
        )
        for row in days.itertuples()
    ]
    assert len(computed) > 1_600
    assert computed == pytest.approx(list(days["hashprice_subsidy_usd_per_th_day"]), rel=1e-9)
    per_th = [
        hp.BLOCKS_PER_DAY * row.block_subsidy_btc / hp.network_hashrate_th_s(row.difficulty)
        for row in days.itertuples()
    ]
    assert per_th == pytest.approx(list(days["subsidy_btc_per_th_day"]), rel=1e-9)
    mean_2024 = days[days["date_utc"].str.startswith("2024")]["hashprice_subsidy_usd_per_th_day"]
    assert 0.05 < mean_2024.mean() < 0.07  # "about 0.060 $/TH/day in 2024" (data README)


def test_subsidy_halves_every_210000_blocks() -> None:
    assert hp.block_subsidy_btc(0) == 50.0
    assert hp.block_subsidy_btc(209_999) == 50.0
    assert hp.block_subsidy_btc(210_000) == 25.0
    assert hp.block_subsidy_btc(630_000) == 6.25  # May 2020
    assert hp.block_subsidy_btc(840_000) == 3.125  # April 2024
    assert hp.block_subsidy_btc(64 * 210_000) == 0.0


@pytest.mark.parametrize(
    ("blocks", "rewards", "prices", "reason"),
    [
        ([], {}, {}, "invalid_response"),
        ([{"height": 1}], {"startBlock": 1, "endBlock": 2, "totalFee": "0"}, {"time": 1, "USD": 1},
         "missing_field"),
        ([{"height": 1, "difficulty": 1.0}], {"startBlock": 1, "endBlock": 2, "totalFee": "x"},
         {"time": 1, "USD": 1}, "wrong_type"),
        ([{"height": 1, "difficulty": 1.0}], {"startBlock": 1, "endBlock": 2, "totalFee": "0"},
         {"time": 1, "USD": "67000"}, "wrong_type"),
        ([{"height": 1, "difficulty": 1.0}], {"startBlock": 1, "endBlock": 2, "totalFee": "0"},
         {"time": 1, "USD": float("nan")}, "not_a_number"),
    ],
)  # fmt: skip
def test_malformed_answers_name_their_field(
    blocks: Any, rewards: Any, prices: Any, reason: str
) -> None:
    with pytest.raises(MalformedResponseError) as raised:
        hp.parse_facts(blocks, rewards, prices)
    assert raised.value.reason == reason


@dataclass
class Mempool:
    """mempool.space's three endpoints as they answer (shapes from its API docs), with the
    difficulty and price of one day of the shared BTC file."""

    difficulty: float
    btc_usd: float
    price_time: int
    height: int = 858_000
    total_fee_sats: int = 0
    status: int = 200
    prices_body: Any = None
    hold: asyncio.Event | None = None
    calls: dict[str, int] = field(default_factory=dict)

    async def blocks(self, _request: web.Request) -> web.Response:
        self.calls["blocks"] = self.calls.get("blocks", 0) + 1
        if self.hold is not None:
            await self.hold.wait()
        if self.status != 200:
            return web.Response(status=self.status, text="Service Unavailable")
        tip = {
            "id": "00000000000000000001" + "0" * 44,
            "height": self.height,
            "version": 536870912,
            "timestamp": self.price_time - 300,
            "tx_count": 3000,
            "size": 1_500_000,
            "weight": 3_993_000,
            "difficulty": self.difficulty,
        }
        return web.json_response([tip, {**tip, "height": self.height - 1}])

    async def rewards(self, request: web.Request) -> web.Response:
        blocks = int(request.match_info["blocks"])
        return web.json_response(
            {
                "startBlock": self.height - blocks + 1,
                "endBlock": self.height,
                "totalReward": str(blocks * 312_500_000 + self.total_fee_sats),
                "totalFee": str(self.total_fee_sats),
                "totalTx": str(blocks * 3000),
            }
        )

    async def prices(self, _request: web.Request) -> web.Response:
        body = self.prices_body or {"time": self.price_time, "USD": self.btc_usd, "EUR": 1.0}
        return web.json_response(body)


@pytest.fixture
async def mempool(data_dir: Path) -> AsyncIterator[tuple[Mempool, str, pd.Series]]:
    """Recorded-shape fixture built from shared data (2024-08-20's difficulty and close)."""
    days = pd.read_csv(data_dir / BTC_FILE).set_index("date_utc")
    day = days.loc["2024-08-20"]
    fake = Mempool(
        difficulty=float(day["difficulty"]),
        btc_usd=float(day["btc_usd_close"]),
        price_time=int(utc("2024-08-20T12:34:56+00:00").timestamp()),
    )
    app = web.Application()
    app.router.add_get("/api/v1/blocks", fake.blocks)
    app.router.add_get("/api/v1/mining/reward-stats/{blocks}", fake.rewards)
    app.router.add_get("/api/v1/prices", fake.prices)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield fake, f"http://127.0.0.1:{runner.addresses[0][1]}", day
    finally:
        if fake.hold is not None:
            fake.hold.set()  # let a held request finish before the server stops
        await runner.cleanup()


def hashprice_source(
    opened: list[Source], url: str, broker: EmbeddedBroker, prefix: str, tmp_path: Path,
    **config: Any,
) -> Source:  # fmt: skip
    poll = HashpriceConfig(**{"api_url": url, **FAST, **config})
    source = make_source(
        "hashprice",
        [hp.HashpriceFeed(poll)],
        poll,
        bootstrap=broker.bootstrap,
        prefix=prefix,
        state_dir=tmp_path,
        clock=Clock(utc("2024-08-20T12:40:00+00:00")),
    )
    opened.append(source)
    return source


@pytest.fixture
def hashprice_topic(broker: EmbeddedBroker, topic_prefix: str) -> str:
    name = topic_prefix + "market.hashprice.v1"
    create_topic(broker.bootstrap, name)
    return name


@pytest.mark.e2e
async def test_hashprice_from_mempool_reaches_the_topic_once_per_hour(
    opened: list[Source],
    mempool: tuple[Mempool, str, pd.Series],
    broker: EmbeddedBroker,
    topic_prefix: str,
    hashprice_topic: str,
    tmp_path: Path,
) -> None:
    fake, url, day = mempool
    source = hashprice_source(opened, url, broker, topic_prefix, tmp_path)
    assert (await source.poll_once()).published == 1
    assert (await source.poll_once()).published == 0  # the same facts: the same hour's event
    fake.price_time += 3_600  # an hour later
    fake.total_fee_sats = 144 * 10_000_000  # 0.1 BTC of fees per block
    assert (await source.poll_once()).published == 1
    records = await read_topic_async(broker.bootstrap, hashprice_topic)
    assert [r["interval_start"] for r in records] == [
        "2024-08-20T12:00:00Z",
        "2024-08-20T13:00:00Z",
    ]
    assert records[0]["key"] == ""  # fleet-wide: no key
    assert records[0]["btc_usd"] == day["btc_usd_close"]
    assert records[0]["hashprice_usd_per_th_day"] == pytest.approx(
        day["hashprice_subsidy_usd_per_th_day"], rel=1e-9
    )
    assert records[1]["hashprice_usd_per_th_day"] == pytest.approx(
        day["hashprice_subsidy_usd_per_th_day"] * (3.125 + 0.1) / 3.125, rel=1e-9
    )


@pytest.mark.e2e
async def test_outage_timeout_and_malformed_answers_publish_nothing(
    opened: list[Source],
    mempool: tuple[Mempool, str, pd.Series],
    broker: EmbeddedBroker,
    topic_prefix: str,
    hashprice_topic: str,
    tmp_path: Path,
) -> None:
    fake, url, _ = mempool
    source = hashprice_source(opened, url, broker, topic_prefix, tmp_path, timeout_s=0.5)
    fake.status = 503
    down = await source.poll_once()
    assert not down.ok
    assert "HTTP 503" in (source.health.last_error or "")
    fake.status = 200
    fake.hold = asyncio.Event()  # mempool.space accepts the request and never answers
    hung = await source.poll_once()
    assert not hung.ok
    assert source.health.metrics.totals["fetch_errors.timeout"] == 1
    fake.hold.set()
    fake.hold = None
    fake.prices_body = {"time": fake.price_time, "USD": "NaN"}
    malformed = await source.poll_once()
    assert not malformed.ok
    assert source.health.metrics.totals["rows_rejected.wrong_type"] == 1
    assert source.health.consecutive_failures == 3
    assert not source.health.healthy
    fake.prices_body = None
    assert (await source.poll_once()).published == 1
    assert source.health.healthy
    assert len(await read_topic_async(broker.bootstrap, hashprice_topic)) == 1
