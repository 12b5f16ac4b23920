"""``gridshift source ...`` through the real entry point (``streams.cli.main``, the group
registered the way streams/cli.py will): help, a one-shot ERCOT poll to the broker, mistakes
as one line and a non-zero exit, and a running source's /health, /metrics and lock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pandas as pd
import pytest

from schemas import PriceEvent
from streams import cli as top
from streams.errors import GridshiftError
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.connection import KafkaConnection
from streams.sources.checkpoint import Record
from streams.sources.cli import source
from streams.sources.config import PollConfig, SourceSettings
from streams.sources.loop import FeedResult, KafkaOut
from streams.sources.runner import Plan, run
from tests.sources.harness import (
    FAST,
    ErcotNetwork,
    create_topic,
    need,
    raw_da_spp,
    raw_rt_spp,
    read_topic_async,
)

# gridstatus 0.37 calls DataFrame.rename(inplace=True), deprecated by the pandas 3 this venv has.
GRIDSTATUS_ON_PANDAS_3 = "ignore:The inplace keyword in DataFrame.rename"
pytestmark = pytest.mark.filterwarnings(GRIDSTATUS_ON_PANDAS_3)


@pytest.fixture
def gridshift(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``gridshift`` with the source group registered, the environment clean, and the root
    logger put back afterwards (the CLI points it at the captured stderr)."""
    monkeypatch.setitem(top.cli.commands, "source", source)
    for name in (
        "GRIDSHIFT_KAFKA_BOOTSTRAP",
        "GRIDSHIFT_TOPIC_PREFIX",
        "GRIDSHIFT_SOURCE_CONFIG",
        "GRIDSHIFT_SOURCE_PJM_API_KEY",
        "GRIDSHIFT_SOURCE_ELECTRICITYMAPS_TOKEN",
        "PJM_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def gridshift_main(*args: str) -> int:
    return top.main(list(args))


def error_lines(captured: str) -> list[str]:
    return [line for line in captured.splitlines() if line.startswith("gridshift:")]


@pytest.mark.usefixtures("gridshift")
def test_help_lists_every_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert gridshift_main("source", "--help") == 0
    text = capsys.readouterr().out
    for command in ("iso", "carbon", "hashprice", "reserve", "coincident-peak", "check"):
        assert f"  {command} " in text
    assert gridshift_main("source", "iso", "--help") == 0
    text = capsys.readouterr().out
    for option in ("--node", "--config", "--state-dir", "--health-port", "--once", "--bootstrap"):
        assert option in text
    for command in ("reserve", "coincident-peak"):
        assert gridshift_main("source", command, "--help") == 0
        text = capsys.readouterr().out
        for option in ("--config", "--state-dir", "--health-port", "--once", "--bootstrap"):
            assert option in text


def recent_prices(data_dir: Path, hours: int = 6) -> pd.DataFrame:
    """Real HB_SOUTH prices of 2024-08-20 (shared data) re-dated to the last ``hours`` hours:
    the command runs on the wall clock, and rows older than its window are late."""
    raw = pd.read_csv(data_dir / "ercot" / "ercot_hb_south_rt_da_spp_15min_2024-06_2024-12.csv")
    values = raw[raw["interval_start_utc"] >= "2024-08-20T18:00:00Z"].head(hours * 4)
    end = pd.Timestamp.now(tz="UTC").floor("h")
    starts = pd.date_range(end - pd.Timedelta(hours=hours), periods=hours * 4, freq="15min")
    local = starts.tz_convert("US/Central").tz_localize(None)
    return pd.DataFrame(
        {
            "interval_start_local": local.strftime("%Y-%m-%dT%H:%M:%S"),
            "hb_south_rt_spp_usd_mwh": values["hb_south_rt_spp_usd_mwh"].to_numpy(),
            "hb_south_da_spp_usd_mwh": values["hb_south_da_spp_usd_mwh"].to_numpy(),
        }
    )


@pytest.mark.e2e
@pytest.mark.usefixtures("gridshift")
async def test_iso_once_publishes_and_exits_zero(
    broker: EmbeddedBroker,
    topic_prefix: str,
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    need("gridstatus")
    prices = recent_prices(data_dir)
    network = ErcotNetwork(rt=raw_rt_spp(prices), da=raw_da_spp(prices))
    network.install(monkeypatch)
    config = tmp_path / "sources.toml"
    config.write_text('[iso.ERCOT]\nnodes = ["HB_SOUTH"]\nload = false\n')
    create_topic(broker.bootstrap, topic_prefix + "grid.price.v1")
    args = ["source", "iso", "ercot", "--once", "--config", str(config), "--state-dir",
            str(tmp_path / "state"), "--health-port", "0", "--bootstrap", broker.bootstrap,
            "--topic-prefix", topic_prefix]  # fmt: skip
    # The command runs its own event loop (asyncio.run), so it runs in a thread here.
    assert await asyncio.to_thread(gridshift_main, *args) == 0
    records = await read_topic_async(broker.bootstrap, topic_prefix + "grid.price.v1")
    assert len(records) == 24 + 6
    assert (tmp_path / "state" / "iso-ercot.checkpoint.json").exists()
    assert "poll done" in capsys.readouterr().err
    network.fail = 2  # the next poll finds ERCOT down: the one-shot run says so and exits 1
    assert await asyncio.to_thread(gridshift_main, *args) == 1
    lines = error_lines(capsys.readouterr().err)
    assert lines == ["gridshift: error: the iso-ercot poll failed (see the log above)"]


@pytest.mark.usefixtures("gridshift")
def test_missing_credentials_are_one_line_and_exit_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gridshift_main("source", "iso", "PJM", "--node", "PJM_WESTERN_HUB") == 1
    assert capsys.readouterr().err.splitlines() == [
        "gridshift: error: the PJM source needs a PJM Data Miner API key: "
        "set GRIDSHIFT_SOURCE_PJM_API_KEY"
    ]
    config = tmp_path / "sources.toml"
    config.write_text('[carbon.regions.ERCOT]\nelectricitymaps = "US-TEX-ERCO"\n')
    assert gridshift_main("source", "carbon", "--config", str(config)) == 1
    assert capsys.readouterr().err.splitlines() == [
        "gridshift: error: the carbon source needs an Electricity Maps API token: "
        "set GRIDSHIFT_SOURCE_ELECTRICITYMAPS_TOKEN"
    ]


@pytest.mark.usefixtures("gridshift")
def test_configuration_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sources.toml"
    config.write_text("[hashprice]\nintervall_minutes = 60\n")
    assert gridshift_main("source", "hashprice", "--config", str(config)) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"gridshift: error: sources file {config}: unknown key 'intervall_minutes' in "
        "[hashprice]; did you mean 'interval_minutes'?"
    ]
    assert gridshift_main("source", "iso", "ERCOT") == 1
    assert "no price nodes for ERCOT" in capsys.readouterr().err
    assert gridshift_main("source", "hashprice") == 1  # no broker configured
    assert capsys.readouterr().err.splitlines() == [
        "gridshift: error: no broker: pass --bootstrap HOST:PORT or set GRIDSHIFT_KAFKA_BOOTSTRAP"
    ]
    assert gridshift_main("source", "iso", "MISO") == 2
    assert "'MISO' is not one of" in capsys.readouterr().err


@dataclass
class CountingFeed:
    """A feed without a provider: one new price per fetch; ``fetched`` counts the fetches."""

    name: str = "counting"
    topic: str | None = "grid.price.v1"
    sink: None = None
    fetches: int = 0
    second: asyncio.Event = field(default_factory=asyncio.Event)

    async def fetch(self, now: datetime) -> FeedResult:
        self.fetches += 1
        if self.fetches == 2:  # the first poll was wholly done (published, checkpointed)
            self.second.set()
        start = datetime(2024, 8, 20, tzinfo=UTC) + timedelta(minutes=15 * self.fetches)
        event = PriceEvent(
            node="HB_SOUTH",
            price_usd_per_mwh=float(self.fetches),
            interval_start=start,
            interval_end=start + timedelta(minutes=15),
        )
        return FeedResult(records=[Record("grid.price.v1/HB_SOUTH/real_time", start, event)])

    async def close(self) -> None:
        """Nothing to release."""


@pytest.mark.e2e
async def test_a_running_source_serves_health_and_metrics_and_holds_its_lock(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    create_topic(broker.bootstrap, topic_prefix + "grid.price.v1")
    feed = CountingFeed()
    poll = PollConfig(**FAST)
    settings = SourceSettings(state_dir=tmp_path, health_port=0)
    ready: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def out() -> KafkaOut:
        return KafkaOut(
            KafkaConnection(broker.bootstrap), topic_prefix=topic_prefix, partitions=1,
            timeout_s=5.0,
        )  # fmt: skip

    stop = asyncio.Event()
    task = asyncio.create_task(
        run(
            Plan("test-source", [feed], poll),
            settings,
            out(),
            stop=stop,
            clock=lambda: datetime(2024, 8, 21, tzinfo=UTC),
            on_ready=lambda _source, port: ready.set_result(port),
        )
    )
    try:
        port = await asyncio.wait_for(ready, 30)
        await asyncio.wait_for(feed.second.wait(), 30)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/health") as response:
                assert response.status == 200
                body = await response.json()
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                metrics = await response.text()
        assert body["source"] == "test-source"
        assert body["healthy"] is True
        assert body["counts"]["events_published"] >= 1
        assert 'gridshift_source_polls_total{outcome="ok",source="test-source"}' in metrics
        assert "gridshift_source_last_success_timestamp_seconds" in metrics
        with pytest.raises(GridshiftError, match="already running"):
            await run(Plan("test-source", [CountingFeed()], poll), settings, out(), once=True)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    # Stopped: the port is closed and the lock is free again.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"http://127.0.0.1:{port}/health")
    assert await run(
        Plan("test-source", [CountingFeed()], poll),
        SourceSettings(state_dir=tmp_path, health_enabled=False),
        out(),
        once=True,
        clock=lambda: datetime(2024, 8, 21, tzinfo=UTC),
    )
