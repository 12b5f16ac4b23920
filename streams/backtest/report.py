"""Running a scenario's backtest end to end, and writing its report (Markdown and PNG plots)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm import tqdm

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

LABELS = {
    "gridshift": "gridshift (MPC)",
    "always_on": "mining always on",
    "threshold": "price threshold",
    "oracle": "perfect-foresight oracle",
}


@dataclass
class BacktestResult:
    """Everything a report needs."""

    scenario: Scenario
    fleet: Fleet
    actuals: Actuals
    dispatch: dict[str, Dispatch]
    scores: dict[str, Score]
    notes: list[str]
    seconds: dict[str, float] = field(default_factory=dict)

    def regret_usd(self, strategy: str) -> float:
        return self.scores["oracle"].net_margin_usd - self.scores[strategy].net_margin_usd


def run_backtest(
    scenario: Scenario,
    data_dir: Path,
    scenario_dir: Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    show_progress: bool = True,
) -> BacktestResult:
    """Load the markets, run every strategy over the period and score them."""
    start, end = start or scenario.start, end or scenario.end
    if end <= start:
        raise GridshiftError("the backtest window is empty: --end must be after --start")
    fleet = scenario.fleet()
    history = load_markets(scenario, data_dir, scenario_dir)
    history = history.window(pd.Timestamp(start) - pd.Timedelta(days=1), pd.Timestamp(end))
    starts = timeline(start, end, scenario.step_minutes)
    act = actuals(history, fleet, starts, scenario.step_minutes)
    if np.isnan(act.price).any() or np.isnan(act.hashprice).any():
        raise GridshiftError(
            f"no market data before {start:%Y-%m-%d %H:%M}Z for some site: move --start later"
        )
    horizon = scenario.horizon.build()
    dispatch: dict[str, Dispatch] = {}
    seconds: dict[str, float] = {}
    lag = scenario.price_lag_intervals
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
            horizon,
            lag=lag,
            carbon_budget_t_per_day=scenario.fleet_carbon_budget_t_per_day,
            progress=bar.update,
        )
        seconds["gridshift"] = time.perf_counter() - clock
        clock = time.perf_counter()
        dispatch["oracle"] = run_oracle(
            fleet,
            history,
            starts,
            scenario.step_minutes,
            carbon_budget_t_per_day=scenario.fleet_carbon_budget_t_per_day,
            progress=bar.update,
        )
        seconds["oracle"] = time.perf_counter() - clock
    dispatch["always_on"] = run_always_on(fleet, act)
    dispatch["threshold"] = run_threshold(fleet, act, lag)
    scores = {name: score(fleet, act, d) for name, d in dispatch.items()}
    notes = list(history.notes)
    undecided = dispatch["gridshift"].undecided_intervals(len(fleet.sites), len(starts))
    if undecided:
        notes.append(
            f"{undecided} site-intervals before the first known price ran the fail-safe "
            "(mining off, GPUs at their floor)"
        )
    return BacktestResult(scenario, fleet, act, dispatch, scores, notes, seconds)


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
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"


def markdown_table(rows: list[dict[str, float | str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(row[h]) for h in header) + " |" for row in rows]
    return "\n".join(lines)


def write_report(result: BacktestResult, out_dir: Path) -> Path:
    """Write report.md and its plots into ``out_dir``; return the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        _plot_stack(result, out_dir),
        _plot_margin(result, out_dir),
        _plot_emissions(result, out_dir),
    ]
    sc = result.scenario
    act = result.actuals
    grid = result.scores["gridshift"]
    lines = [
        f"# Backtest: {sc.title}",
        "",
        sc.description,
        "",
        f"- period: {act.starts[0]:%Y-%m-%d %H:%M}Z to {act.starts[-1]:%Y-%m-%d %H:%M}Z, "
        f"{len(act.starts)} intervals of {sc.step_minutes} min",
        f"- fleet: {len(result.fleet.sites)} sites, "
        f"{sum(s.interconnect_mw for s in result.fleet.sites):,.0f} MW of interconnect",
        f"- prices known {sc.price_lag_intervals} interval(s) after they start "
        "(0 = ex-ante real-time prices); snapshots hold only data available at decision time",
        f"- run time: gridshift {result.seconds.get('gridshift', 0):.1f} s, "
        f"oracle {result.seconds.get('oracle', 0):.1f} s",
        "",
        "## Results",
        "",
        markdown_table(summary_rows(result)),
        "",
        f"gridshift beats the price-threshold rule by "
        f"${grid.net_margin_usd - result.scores['threshold'].net_margin_usd:,.0f} and mining "
        f"always on by ${grid.net_margin_usd - result.scores['always_on'].net_margin_usd:,.0f}; "
        f"its regret against perfect foresight is ${result.regret_usd('gridshift'):,.0f}.",
    ]
    if sc.carbon_neutral_target is not None:
        lines.append(
            f"Carbon-neutral target {sc.carbon_neutral_target:.0%}: hourly CFE score "
            f"{grid.cfe_score:.1%}, market-based emissions {grid.emissions_market_t:,.1f} t."
        )
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Data treatment", ""] + [f"- {note}" for note in result.notes or ["none"]]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def _plot_stack(result: BacktestResult, out_dir: Path) -> Path:
    """Price against the dispatch stack on the day with the highest price."""
    act = result.actuals
    day_len = int(24 * 60 / result.scenario.step_minutes)
    peak = int(np.nanargmax(act.price.max(axis=0)))
    first = max(0, min(peak - day_len // 2, len(act.starts) - day_len))
    window = slice(first, first + day_len)
    times = pd.DatetimeIndex(act.starts[window])
    d = result.dispatch["gridshift"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.stackplot(
        times,
        d.gpu[:, window].sum(axis=0),
        d.mining[:, window].sum(axis=0),
        labels=["GPU inference MW", "mining MW"],
        colors=["#3b6fb6", "#f2a93b"],
        alpha=0.85,
    )
    ax.set_ylabel("fleet MW")
    ax.legend(loc="upper left")
    twin = ax.twinx()
    twin.plot(
        times,
        act.price[0, window],
        color="#c0392b",
        linewidth=1.4,
        label=f"{result.fleet.sites[0].price_node} price",
    )
    twin.set_ylabel("$/MWh")
    twin.legend(loc="upper right")
    ax.set_title("Dispatch stack against price, highest-price day")
    ax.set_xlabel("UTC")
    fig.autofmt_xdate()
    return _save(fig, out_dir / "price_vs_dispatch.png")


def _plot_margin(result: BacktestResult, out_dir: Path) -> Path:
    """Cumulative margin gained over mining always on: GPU revenue dwarfs the differences, so
    absolute curves would lie on top of each other."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    baseline = np.cumsum(result.scores["always_on"].margin_by_interval)
    for name in ("oracle", "gridshift", "threshold", "always_on"):
        ax.plot(
            pd.DatetimeIndex(result.actuals.starts),
            (np.cumsum(result.scores[name].margin_by_interval) - baseline) / 1e3,
            label=LABELS[name],
        )
    ax.set_ylabel("cumulative margin over mining always on, $k")
    ax.set_title("Cumulative margin by strategy, relative to mining always on")
    ax.legend()
    fig.autofmt_xdate()
    return _save(fig, out_dir / "cumulative_margin.png")


def _plot_emissions(result: BacktestResult, out_dir: Path) -> Path:
    names = ["gridshift", "threshold", "always_on", "oracle"]
    location = [result.scores[n].emissions_location_t for n in names]
    market = [result.scores[n].emissions_market_t for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, location, 0.4, label="location-based")
    ax.bar(x + 0.2, market, 0.4, label="market-based (after PPA)")
    ax.set_xticks(x, [LABELS[n] for n in names], rotation=10)
    ax.set_ylabel("t CO2")
    ax.set_title("Emissions by strategy")
    ax.legend()
    return _save(fig, out_dir / "emissions.png")


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
