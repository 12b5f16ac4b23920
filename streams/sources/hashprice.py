"""Hashprice from public on-chain facts and a BTC price, as ``market.hashprice.v1`` events.

The formula (revenue of one TH/s for one day)::

    hashrate_th_s            = difficulty x 2**32 / 600 s / 1e12
    hashprice_usd_per_th_day = blocks_per_day x (subsidy_btc + avg_fees_btc) x btc_usd
                               / hashrate_th_s,    blocks_per_day = 86,400 s / 600 s = 144

``difficulty`` makes 2**32 x difficulty hashes the expected work of one block, found every
600 s on average, so the network hashrate is implied by it (not a noisy observed estimate).
The subsidy is 50 BTC halved every 210,000 blocks (the block being mined: tip height + 1);
``avg_fees_btc`` is the mean fee per block over the last ``fee_blocks`` blocks. The shared
dataset's ``hashprice_subsidy_usd_per_th_day`` is this formula with fees left out (checked in
``tests/sources/test_hashprice.py``).

Provider: mempool.space's public REST API (``api_url``, configurable): ``/api/v1/blocks``
(tip height and difficulty), ``/api/v1/mining/reward-stats/{n}`` (total fees of the last n
blocks), ``/api/v1/prices`` (BTC/USD and its time; ``price_url`` may point elsewhere if it
answers the same shape). The event covers the ``interval_minutes`` slot (UTC) that holds the
price's time, so the same facts always give the same event.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from pydantic import ValidationError

from schemas import HashpriceEvent, topic_for
from streams.errors import GridshiftError
from streams.sources.checkpoint import Record
from streams.sources.config import HashpriceConfig
from streams.sources.loop import FeedResult, MalformedResponseError, Rejected

HASHPRICE_TOPIC = topic_for(HashpriceEvent).name
BLOCK_INTERVAL_S = 600
BLOCKS_PER_DAY = 86_400 // BLOCK_INTERVAL_S  # 144
HALVING_INTERVAL = 210_000
SATS_PER_BTC = 100_000_000


def block_subsidy_btc(height: int) -> float:
    """The block subsidy at ``height``: 50 BTC halved every 210,000 blocks (0 after 64
    halvings, as Bitcoin Core computes it)."""
    halvings = height // HALVING_INTERVAL
    return 0.0 if halvings >= 64 else 50.0 / 2**halvings


def network_hashrate_th_s(difficulty: float) -> float:
    """The network hashrate implied by ``difficulty`` (TH/s): 2**32 x difficulty hashes per
    600-second block."""
    return difficulty * 2**32 / BLOCK_INTERVAL_S / 1e12


def hashprice_usd_per_th_day(
    *, difficulty: float, subsidy_btc: float, fees_btc_per_block: float, btc_usd: float
) -> float:
    """US dollars one TH/s earns in one day (see the module docstring)."""
    revenue_usd_per_day = BLOCKS_PER_DAY * (subsidy_btc + fees_btc_per_block) * btc_usd
    return revenue_usd_per_day / network_hashrate_th_s(difficulty)


@dataclass(frozen=True, slots=True)
class ChainFacts:
    """The inputs of one hashprice, as the provider gave them."""

    height: int
    difficulty: float
    fees_btc_per_block: float
    btc_usd: float
    price_time: datetime

    @property
    def subsidy_btc(self) -> float:
        """Subsidy of the block being mined now (the one after the tip)."""
        return block_subsidy_btc(self.height + 1)

    def hashprice(self) -> float:
        """The hashprice these facts give."""
        return hashprice_usd_per_th_day(
            difficulty=self.difficulty,
            subsidy_btc=self.subsidy_btc,
            fees_btc_per_block=self.fees_btc_per_block,
            btc_usd=self.btc_usd,
        )


def parse_facts(blocks: Any, rewards: Any, prices: Any) -> ChainFacts:
    """:class:`ChainFacts` from the three mempool.space answers, or
    :class:`MalformedResponseError` naming the field."""
    if not isinstance(blocks, list) or not blocks or not isinstance(blocks[0], dict):
        raise MalformedResponseError("invalid_response", "/api/v1/blocks: no block list")
    tip = blocks[0]
    if not isinstance(rewards, dict):
        raise MalformedResponseError("invalid_response", "reward-stats: not an object")
    if not isinstance(prices, dict):
        raise MalformedResponseError("invalid_response", "prices: not an object")
    height = _integer(tip, "height", "blocks")
    start, end = (
        _integer(rewards, "startBlock", "reward-stats"),
        _integer(rewards, "endBlock", "reward-stats"),
    )
    total_fee_sats = _integer(rewards, "totalFee", "reward-stats")
    blocks_counted = end - start + 1
    if blocks_counted <= 0 or total_fee_sats < 0:
        raise MalformedResponseError(
            "invalid_response", f"reward-stats: blocks {start}..{end}, fees {total_fee_sats}"
        )
    stamp = _integer(prices, "time", "prices")
    return ChainFacts(
        height=height,
        difficulty=_positive(tip, "difficulty", "blocks"),
        fees_btc_per_block=total_fee_sats / blocks_counted / SATS_PER_BTC,
        btc_usd=_positive(prices, "USD", "prices"),
        price_time=datetime.fromtimestamp(stamp, UTC),
    )


def hashprice_record(facts: ChainFacts, interval_minutes: int) -> FeedResult:
    """The event of the slot holding the price's time (or the reason it is rejected)."""
    slot = timedelta(minutes=interval_minutes)
    day = facts.price_time.replace(hour=0, minute=0, second=0, microsecond=0)
    start = day + slot * ((facts.price_time - day) // slot)
    result = FeedResult()
    try:
        event = HashpriceEvent(
            hashprice_usd_per_th_day=facts.hashprice(),
            btc_usd=facts.btc_usd,
            interval_start=start,
            interval_end=start + slot,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        result.rejected.append(
            Rejected("invalid_event", f"{'.'.join(map(str, error['loc']))}: {error['msg']}")
        )
        return result
    result.records.append(Record(HASHPRICE_TOPIC, start, event))
    return result


class MempoolClient:
    """The three mempool.space calls (aiohttp, one session, each call under a time-out)."""

    def __init__(self, config: HashpriceConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def facts(self) -> ChainFacts:
        """Fetch and parse the inputs of one hashprice."""
        base = self.config.api_url.rstrip("/")
        blocks = await self._get(f"{base}/api/v1/blocks")
        rewards = await self._get(f"{base}/api/v1/mining/reward-stats/{self.config.fee_blocks}")
        prices = await self._get(self.config.prices_url())
        return parse_facts(blocks, rewards, prices)

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _get(self, url: str) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                headers={"User-Agent": "gridshift-source"},
            )
        async with self._session.get(url) as response:
            if response.status != 200:
                text = (await response.text())[:200]
                raise GridshiftError(f"{url} answered HTTP {response.status}: {text}")
            try:
                return await response.json(content_type=None)
            except ValueError as exc:
                raise MalformedResponseError("invalid_json", f"{url}: {exc}") from exc


class HashpriceFeed:
    """The hashprice feed: one event per ``interval_minutes`` slot."""

    name = "hashprice"
    topic = HASHPRICE_TOPIC
    sink = None

    def __init__(self, config: HashpriceConfig, client: MempoolClient | None = None) -> None:
        self.config = config
        self.client = client or MempoolClient(config)

    async def fetch(self, now: datetime) -> FeedResult:
        """Fetch the facts and compute the hashprice (``now`` is not used: the price's own
        time places the event)."""
        return hashprice_record(await self.client.facts(), self.config.interval_minutes)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.client.close()


def _integer(body: dict[str, Any], key: str, where: str) -> int:
    value = body.get(key)
    if isinstance(value, str) and value.isdigit():
        return int(value)  # mempool.space sends fee totals as strings of satoshis
    if isinstance(value, bool) or not isinstance(value, int):
        reason = "missing_field" if value is None else "wrong_type"
        raise MalformedResponseError(reason, f"{where}: {key} = {value!r}")
    return value


def _positive(body: dict[str, Any], key: str, where: str) -> float:
    value = body.get(key)
    if value is None:
        raise MalformedResponseError("missing_field", f"{where}: no {key}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MalformedResponseError("wrong_type", f"{where}: {key} = {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise MalformedResponseError("not_a_number", f"{where}: {key} = {value!r}")
    return number
