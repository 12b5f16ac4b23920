"""``gridshift demo``: one real week of ERCOT through the live pipeline, end to end.

Starts (or uses) a broker and a worker, replays the week interval by interval (each interval's
decision is awaited before the next is sent, so every interval gets decided), prints decisions
whose set-points move, and ends with a summary per site.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Never
from zoneinfo import ZoneInfo

import pandas as pd
from tqdm import tqdm

from schemas import DispatchDecision
from streams.backtest.events import IntervalBatch, history_intervals
from streams.backtest.history import (
    ERCOT_REPLAY,
    data_file,
    ercot_mapping_path,
    load_mapping,
    plural,
    read_history,
)
from streams.backtest.synthetic import SYNTHETIC_LABEL, synthetic_week
from streams.engine.fleet import Fleet, SiteConfig
from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.sdk import DecisionSubscriber, Publisher
from streams.settings import Settings
from streams.worker.service import bootstrap_servers, running_worker

DEFAULT_WEEK_START = datetime(2024, 8, 18, 5, 0, tzinfo=UTC)  # 2024-08-18 00:00 CDT
DISPLAY_TZ = ZoneInfo("America/Chicago")
DECISION_TIMEOUT_S = 30.0
_MOVE_MW = 0.5

Echo = Callable[[str], None]


@dataclass
class SiteTotals:
    """What one site did over the week (from the decisions as published)."""

    mining_mwh: float = 0.0
    gpu_mwh: float = 0.0
    energy_cost_usd: float = 0.0
    mining_revenue_usd: float = 0.0
    gpu_revenue_usd: float = 0.0
    curtailed_hours: float = 0.0
    intervals: int = 0

    @property
    def net_margin_usd(self) -> float:
        return self.mining_revenue_usd + self.gpu_revenue_usd - self.energy_cost_usd


@dataclass
class DemoResult:
    """The decisions (last per site and interval) and the totals per site."""

    label: str
    decisions: dict[tuple[str, datetime], DispatchDecision] = field(default_factory=dict)
    totals: dict[str, SiteTotals] = field(default_factory=dict)


def load_week(
    data_dir: Path | None, week_start: datetime, days: int = 7
) -> tuple[list[IntervalBatch], str]:
    """Real intervals from the data folder, or a labelled synthetic week without one."""
    start, end = pd.Timestamp(week_start), pd.Timestamp(week_start + timedelta(days=days))
    if data_dir is None:
        return list(history_intervals(synthetic_week(week_start).window(start, end))), (
            SYNTHETIC_LABEL
        )
    history = read_history(
        data_file(data_dir, ERCOT_REPLAY), load_mapping(ercot_mapping_path())
    ).window(start, end)
    if history.frame.empty:
        raise GridshiftError(
            f"no ERCOT rows from {week_start:%Y-%m-%d} (the replay table covers 2024-06..2024-12)"
        )
    return list(history_intervals(history)), (
        f"real ERCOT HB_SOUTH data, {len(history.frame)} intervals"
    )


async def run_demo(
    settings: Settings,
    fleet: Fleet,
    data_dir: Path | None,
    week_start: datetime = DEFAULT_WEEK_START,
    *,
    days: int = 7,
    echo: Echo = print,
) -> DemoResult:
    """Replay ``days`` from ``week_start`` through broker and worker; return what was decided."""
    rows, label = load_week(data_dir, week_start, days)
    echo(
        f"gridshift demo: {label}; {plural(len(fleet.sites), 'site')}: "
        + ", ".join(s.site_id for s in fleet.sites)
    )
    # A fresh topic namespace per run, so a shared broker never mixes two demos.
    # The replayed prices are 15-minute intervals: the committed step is one interval long.
    run_settings = settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}demo-{uuid.uuid4().hex[:8]}.",
            "horizon_fine_steps": 4,
            "horizon_fine_minutes": 15,
            "http_enabled": False,  # the demo prints; it needs no port
        }
    )
    prefix = run_settings.topic_prefix
    result = DemoResult(label=label)
    nodes = {site.price_node for site in fleet.sites}
    regions = {site.carbon_region for site in fleet.sites}
    if len(nodes) != 1 or len(regions) != 1:
        raise GridshiftError("the demo replays one price node and region: use a one-node fleet")
    async with (
        _scratch_datadir(),
        bootstrap_servers(run_settings) as bootstrap,
        running_worker(run_settings, fleet, bootstrap),
        DecisionSubscriber(
            KafkaConnection.from_settings(run_settings, bootstrap),
            topic_prefix=prefix,
            from_beginning=True,
        ) as subscriber,
        Publisher(
            KafkaConnection.from_settings(run_settings, bootstrap), topic_prefix=prefix
        ) as publisher,
    ):
        arrived = asyncio.Event()

        async def collect() -> None:
            async for decision in subscriber:
                result.decisions[(decision.site_id, decision.interval_start)] = decision
                arrived.set()

        collector = asyncio.create_task(collect())
        try:
            await _replay_lockstep(
                rows,
                fleet=fleet,
                node=nodes.pop(),
                region=regions.pop(),
                publisher=publisher,
                result=result,
                arrived=arrived,
            )
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
    result.totals = summarise(fleet, result.decisions, rows[0].start)
    for line in summary_lines(result):
        echo(line)
    return result


@contextlib.asynccontextmanager
async def _scratch_datadir() -> AsyncIterator[None]:
    """faust creates its data folder (``<app id>-data``) in the working directory even though
    the worker's tables live in memory: for the demo's lifetime it goes to a temporary folder,
    so a demo run leaves nothing behind in the user's folder. A folder set by the user wins."""
    if "APP_DATADIR" in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="gridshift-demo-") as scratch:
        os.environ["APP_DATADIR"] = scratch
        try:
            yield
        finally:
            os.environ.pop("APP_DATADIR", None)


async def _replay_lockstep(
    rows: list[IntervalBatch],
    *,
    fleet: Fleet,
    node: str,
    region: str,
    publisher: Publisher,
    result: DemoResult,
    arrived: asyncio.Event,
) -> None:
    previous: dict[str, tuple[float, float]] = {}
    progress = progress_bar(len(rows))
    try:
        for row in rows:
            for topic, event in row.events:
                await publisher.publish(topic, event)
            await publisher.flush()
            wanted = [(site.site_id, row.start) for site in fleet.sites]
            deadline = asyncio.get_running_loop().time() + DECISION_TIMEOUT_S
            while not all(key in result.decisions for key in wanted):
                arrived.clear()
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise GridshiftError(
                        f"no decision for {row.start} within "
                        f"{DECISION_TIMEOUT_S:.0f}s: is the worker running?"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), timeout=remaining)
            for site_id, start in wanted:
                decision = result.decisions[(site_id, start)]
                setpoints = (decision.mining_mw, decision.gpu_mw)
                last = previous.get(site_id)
                if (
                    last is None
                    or max(abs(a - b) for a, b in zip(setpoints, last, strict=True)) > _MOVE_MW
                ):
                    progress.write(describe(decision, row.prices[node]))
                previous[site_id] = setpoints
            progress.update(1)
    finally:
        progress.close()


def progress_bar(total: int) -> tqdm[Never]:
    """The replay's bar on stderr; none when stderr is not a terminal (``disable=None``), so
    redirected output holds the decision lines only, never interleaved with bar frames."""
    return tqdm(total=total, unit="interval", desc="replaying", leave=False, disable=None)


def describe(decision: DispatchDecision, price: float) -> str:
    """One readable line for a decision."""
    local = decision.interval_start.astimezone(DISPLAY_TZ)
    action = "(shed)" if "mining_off" in decision.binding_constraints else "(run)"
    return (
        f"{local:%a %m-%d %H:%M %Z}  {decision.site_id:<16} price {price:>9.2f} $/MWh  "
        f"mining {decision.mining_mw:6.2f} MW {action:<6}  gpu {decision.gpu_mw:6.2f} MW  "
        f"break-even {decision.mining_breakeven_usd_per_mwh:6.1f}"
    )


def summarise(
    fleet: Fleet, decisions: dict[tuple[str, datetime], DispatchDecision], first: datetime
) -> dict[str, SiteTotals]:
    """Totals per site from the committed (first-step) set-points of each decided interval."""
    totals = {site.site_id: SiteTotals() for site in fleet.sites}
    sites = fleet.by_id()
    for (site_id, start), decision in sorted(decisions.items()):
        if start < first:
            continue
        hours = (decision.interval_end - decision.interval_start) / timedelta(hours=1)
        site_totals = totals[site_id]
        site_totals.intervals += 1
        site_totals.mining_mwh += decision.mining_mw * hours
        site_totals.gpu_mwh += decision.gpu_mw * hours
        site_totals.energy_cost_usd += decision.economics.energy_cost_usd
        site_totals.mining_revenue_usd += decision.economics.mining_revenue_usd
        site_totals.gpu_revenue_usd += decision.economics.gpu_revenue_usd
        if decision.mining_mw < _mining_headroom(sites[site_id], decision) - _MOVE_MW:
            site_totals.curtailed_hours += hours
    return totals


def _mining_headroom(site: SiteConfig, decision: DispatchDecision) -> float:
    """MW mining could have drawn beside the GPUs under the interconnect."""
    return max(0.0, min(site.mining_capacity_mw, site.interconnect_mw / site.pue - decision.gpu_mw))


def summary_lines(result: DemoResult) -> list[str]:
    header = (
        f"{'site':<16} {'intervals':>9} {'mining MWh':>11} {'GPU MWh':>9} "
        f"{'energy $':>11} {'mining $':>10} {'GPU $':>11} {'margin $':>11} {'curtailed h':>11}"
    )
    lines = ["", f"summary ({result.label}):", header]
    for site_id, t in result.totals.items():
        lines.append(
            f"{site_id:<16} {t.intervals:>9d} {t.mining_mwh:>11.1f} {t.gpu_mwh:>9.1f} "
            f"{t.energy_cost_usd:>11,.0f} {t.mining_revenue_usd:>10,.0f} "
            f"{t.gpu_revenue_usd:>11,.0f} {t.net_margin_usd:>11,.0f} {t.curtailed_hours:>11.2f}"
        )
    lines.append(
        "money at each interval's real-time price; curtailed h = mining held below the "
        "envelope left by GPUs"
    )
    return lines
