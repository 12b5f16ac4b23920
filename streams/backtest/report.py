"""Running a scenario's backtest end to end, and writing its report (Markdown and PNG plots).

The run: load the markets, settle the window against what the data covers (refuse, or clip on
request), align every series to the interval grid under the hold rules, run the four strategies
on the same events, score them over the scored intervals only, and keep a ledger of everything
done to the data and assumed by the decisions. The figures are built in
:mod:`streams.backtest.plots`; this module saves them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm import tqdm

from streams.backtest.coverage import CLIPPED, Series, Window, align, known_at, window
from streams.backtest.history import plural, utc_values
from streams.backtest.ledger import DataLedger, build_ledger
from streams.backtest.plots import LABELS, dispatch_figure, emissions_figure, margin_figure
from streams.backtest.run import (
    Actuals,
    Dispatch,
    Score,
    actuals,
    run_always_on,
    run_gridshift,
    run_oracle,
    run_threshold,
    score,
    timeline,
)
from streams.backtest.scenario import Scenario, load_markets
from streams.engine.fleet import Fleet
from streams.errors import GridshiftError

__all__ = ["LABELS", "BacktestResult", "run_backtest", "write_report"]


@dataclass
class BacktestResult:
    """Everything a report needs."""

    scenario: Scenario
    fleet: Fleet
    actuals: Actuals
    dispatch: dict[str, Dispatch]
    scores: dict[str, Score]
    ledger: DataLedger
    window: Window
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def notes(self) -> list[str]:
        """The data ledger as one line per treatment or assumption."""
        return self.ledger.notes()

    def regret_usd(self, strategy: str) -> float:
        return self.scores["oracle"].net_margin_usd - self.scores[strategy].net_margin_usd


def run_backtest(
    scenario: Scenario,
    data_dir: Path | None,
    scenario_dir: Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    clip_to_data: bool = False,
    show_progress: bool = True,
) -> BacktestResult:
    """Load the markets, run every strategy over the period and score them.

    ``data_dir`` is needed only when the scenario names a ``data:`` path; relative paths
    resolve against ``scenario_dir``. A period the data does not cover is refused, or with
    ``clip_to_data`` cut to the covered part (the report says so at the top).
    """
    start, end = start or scenario.start, end or scenario.end
    if end <= start:
        raise GridshiftError("the backtest window is empty: --end must be after --start")
    fleet = scenario.fleet()
    market = load_markets(scenario, data_dir, scenario_dir)
    nodes = sorted({s.price_node for s in fleet.sites})
    regions = sorted({s.carbon_region for s in fleet.sites})
    step_minutes, lag, hold = scenario.step_minutes, scenario.price_lag_intervals, scenario.hold
    period = window(
        [market.prices[n] for n in nodes] + [market.hashprice],
        start,
        end,
        step_minutes,
        clip=clip_to_data,
    )
    starts = timeline(period.start, period.end, step_minutes)
    grid = utc_values(pd.DatetimeIndex(starts))
    step = timedelta(minutes=step_minutes)
    prices = {n: align(market.prices[n], grid, step, hold.limit("price")) for n in nodes}
    carbon = {r: align(market.carbon[r], grid, step, hold.limit("carbon")) for r in regions}
    hashprice = align(market.hashprice, grid, step, hold.limit("hashprice"))
    known = {n: known_at(market.prices[n], grid, lag) for n in nodes}
    # The live watchdog, armed so that it fires exactly in the gaps longer than the hold limit:
    # a price is normally up to (lag + 1) market intervals old, less one backtest step.
    pace = _longest_interval(market.prices[n] for n in nodes)
    watchdog = hold.limit("price") + lag * pace + max(timedelta(0), pace - step)
    act = actuals(
        fleet,
        starts,
        step_minutes,
        prices=prices,
        carbon=carbon,
        hashprice=hashprice,
        known=known,
        fresh_for=watchdog,
    )
    if act.warmup >= len(starts):
        raise GridshiftError(
            "no price becomes known within the period: widen it (prices are known "
            f"{plural(lag, 'interval')} after they start)"
        )
    history = market.history.window(
        pd.Timestamp(period.start) - pd.Timedelta(days=1), pd.Timestamp(period.end)
    )
    dispatch: dict[str, Dispatch] = {}
    seconds: dict[str, float] = {}
    with tqdm(
        total=2 * len(starts),
        unit="interval",
        desc=scenario.name,
        leave=False,
        disable=None if show_progress else True,
    ) as bar:
        clock = time.perf_counter()
        dispatch["gridshift"] = run_gridshift(
            fleet,
            history,
            starts,
            scenario.horizon.build(),
            lag=lag,
            carbon_budget_t_per_day=scenario.fleet_carbon_budget_t_per_day,
            stale_price_after=watchdog,
            progress=bar.update,
        )
        seconds["gridshift"] = time.perf_counter() - clock
        clock = time.perf_counter()
        dispatch["oracle"] = run_oracle(
            fleet,
            history,
            starts,
            step_minutes,
            carbon_budget_t_per_day=scenario.fleet_carbon_budget_t_per_day,
            progress=bar.update,
        )
        seconds["oracle"] = time.perf_counter() - clock
    dispatch["always_on"] = run_always_on(fleet, act)
    dispatch["threshold"] = run_threshold(fleet, act, lag)
    scores = {name: score(fleet, act, d) for name, d in dispatch.items()}
    window_start, window_end = pd.Timestamp(period.start), pd.Timestamp(period.end)
    removed = market.history.removed
    removed = removed[
        (removed["interval_start_utc"] >= window_start)
        & (removed["interval_start_utc"] < window_end)
    ]
    ledger = build_ledger(
        fleet=fleet,
        act=act,
        prices=prices,
        carbon=carbon,
        hashprice=hashprice,
        removed=removed,
        jumps=market.jumps,
        hold=hold,
        window=period,
        lag=lag,
        watchdog=watchdog,
        decision_notes=dispatch["gridshift"].notes,
        decisions=len(dispatch["gridshift"].decisions),
    )
    return BacktestResult(scenario, fleet, act, dispatch, scores, ledger, period, seconds)


def _longest_interval(series: Iterable[Series]) -> timedelta:
    """The longest interval of the markets used (their prices arrive at that pace)."""
    longest: timedelta = max(
        pd.Timedelta(np.max(s.ends - s.starts)).to_pytimedelta() for s in series
    )
    return longest


def summary_rows(result: BacktestResult) -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    for name in ("gridshift", "threshold", "always_on", "oracle"):
        s = result.scores[name]
        rows.append(
            {
                "strategy": LABELS[name],
                "net margin $": s.net_margin_usd,
                "energy $": s.energy_cost_usd,
                "mining $": s.mining_revenue_usd,
                "GPU $": s.gpu_revenue_usd,
                "SLA shortfall MWh": s.sla_shortfall_mwh,
                "MWh shed in spikes": s.mwh_shed_in_spikes,
                "t CO2 location": s.emissions_location_t,
                "t CO2 market": s.emissions_market_t,
                "CFE score": s.cfe_score,
                "regret vs oracle $": result.regret_usd(name),
            }
        )
    return rows


def _fmt(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"


def markdown_table(rows: list[dict[str, float | str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(row[h]) for h in header) + " |" for row in rows]
    return "\n".join(lines)


def compared(difference: float, what: str) -> str:
    """``$1,617 more than what`` / ``$1,617 less than what`` / ``the same as what``."""
    if round(difference) == 0:
        return f"the same as {what}"
    return f"${abs(difference):,.0f} {'more' if difference > 0 else 'less'} than {what}"


def write_report(result: BacktestResult, out_dir: Path) -> Path:
    """Write report.md and its plots into ``out_dir``; return the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        _save(dispatch_figure(result), out_dir / "price_vs_dispatch.png"),
        _save(margin_figure(result), out_dir / "cumulative_margin.png"),
        _save(emissions_figure(result), out_dir / "emissions.png"),
    ]
    sc = result.scenario
    act = result.actuals
    grid = result.scores["gridshift"]
    sites = result.fleet.sites
    end = act.starts[-1] + timedelta(minutes=sc.step_minutes)
    scored = int(act.scored.sum())
    lines = [f"# Backtest: {sc.title}", ""]
    if result.ledger.clipped:
        told = result.ledger.clipped.removeprefix(CLIPPED)
        lines += [f"> **Clipped to the data.** {told[0].upper()}{told[1:]}.", ""]
    versus_threshold = compared(
        grid.net_margin_usd - result.scores["threshold"].net_margin_usd, "the price-threshold rule"
    )
    versus_always_on = compared(
        grid.net_margin_usd - result.scores["always_on"].net_margin_usd, "mining always on"
    )
    lines += [
        sc.description,
        "",
        f"- period: {act.starts[0]:%Y-%m-%d %H:%M}Z to {end:%Y-%m-%d %H:%M}Z, "
        f"{plural(len(act.starts), 'interval')} of {sc.step_minutes} min, "
        f"{scored:,} scored (see Data treatment)",
        f"- fleet: {plural(len(sites), 'site')}, "
        f"{sum(s.interconnect_mw for s in sites):,.0f} MW of interconnect",
        f"- prices known {plural(sc.price_lag_intervals, 'interval')} after they start "
        "(0 = ex-ante real-time prices); snapshots hold only data available at decision time",
        f"- run time: gridshift {result.seconds.get('gridshift', 0):.1f} s, "
        f"oracle {result.seconds.get('oracle', 0):.1f} s",
        "",
        "## Results",
        "",
        markdown_table(summary_rows(result)),
        "",
        f"gridshift earns {versus_threshold} and {versus_always_on}; its regret against "
        f"perfect foresight is ${result.regret_usd('gridshift'):,.0f}.",
    ]
    if sc.carbon_neutral_target is not None:
        market = grid.emissions_market_t
        emitted = "n/a (no carbon data)" if math.isnan(market) else f"{market:,.1f} t"
        lines.append(
            f"Carbon-neutral target {sc.carbon_neutral_target:.0%}: hourly CFE score "
            f"{grid.cfe_score:.1%}, market-based emissions {emitted}."
        )
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Data treatment", "", *result.ledger.markdown()]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
