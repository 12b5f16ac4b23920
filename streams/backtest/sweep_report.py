"""A sweep's table (CSV and Parquet: one row per variant and strategy) and its report (Markdown
and PNG plots): net margin per design choice with its spread over the uncertain keys
(percentiles and the worst case, never one number), and energy cost against the CFE score."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from streams.backtest.plots import LABELS
from streams.backtest.sweep import STRATEGIES, SweepRun
from streams.backtest.sweep_spec import SweepSpec

PERCENTILES = (10, 50, 90)


def sweep_table(run: SweepRun) -> pd.DataFrame:
    """One row per variant and strategy: the varied keys, the window run, net margin and every
    score field, the seconds the variant took and its worker's peak memory."""
    rows: list[dict[str, Any]] = []
    for result in run.results:
        for strategy in STRATEGIES:
            rows.append(
                {
                    "variant": result["key"],
                    **result["settings"],
                    "window_start": result["start"],
                    "window_end": result["end"],
                    "strategy": strategy,
                    **result["scores"][strategy],
                    "seconds": result["seconds"],
                    "worker_peak_rss_mb": result["worker_peak_rss_mb"],
                }
            )
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, spec: SweepSpec) -> pd.DataFrame:
    """Per design choice and strategy, net margin over the uncertain draws: mean, percentiles,
    the worst case and how many draws."""
    keys = [*spec.design_keys, "strategy"]
    grouped = table.groupby(keys, sort=False, dropna=False)["net_margin_usd"]
    out = grouped.agg(["count", "mean", "min"]).rename(columns={"min": "worst"})
    for p in PERCENTILES:
        out[f"p{p}"] = grouped.quantile(p / 100.0)
    return out[["count", "mean", "p10", "p50", "p90", "worst"]].reset_index()


def write_sweep(run: SweepRun, spec: SweepSpec, out_dir: Path) -> Path:
    """Write sweep.csv, sweep.parquet, report.md and its plots into ``out_dir``; return the
    report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = sweep_table(run)
    table.to_csv(out_dir / "sweep.csv", index=False)
    table.to_parquet(out_dir / "sweep.parquet", index=False)
    stats = summary(table, spec)
    plots = [_net_plot(table, stats, spec, out_dir), _cost_cfe_plot(table, out_dir)]
    design = ", ".join(spec.design_keys) or "(none: one design)"
    worlds = ", ".join(f"{k} ({len(v)})" for k, v in spec.uncertain.items()) or "none"
    peak = table["worker_peak_rss_mb"].max()
    lines = [
        f"# Sweep: {spec.scenario_path.stem}",
        "",
        f"- {len(run.results)} variants x {len(STRATEGIES)} strategies; design keys: {design}; "
        f"uncertain keys (percentiles are over these): {worlds}",
        f"- this run: {run.ran} variants run, {run.skipped} already finished, "
        f"{run.seconds:.1f} s; peak worker memory {peak:,.0f} MB",
        "- table: sweep.csv, sweep.parquet (one row per variant and strategy)",
        "",
        "## Net margin per design choice ($, over the uncertain draws)",
        "",
        _markdown(stats),
        "",
        "## Plots",
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
        "",
    ]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _markdown(frame: pd.DataFrame) -> str:
    header = list(frame.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, str):
        return LABELS.get(value, value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def _net_plot(table: pd.DataFrame, stats: pd.DataFrame, spec: SweepSpec, out: Path) -> Path:
    """Net margin against the first design key: the median per strategy, the p10-p90 band and
    the worst case."""
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    key = spec.design_keys[0] if spec.design_keys else None
    for strategy in STRATEGIES:
        rows = stats[stats["strategy"] == strategy]
        if key is None:
            x: Any = np.zeros(len(rows))
            labels = None
        else:
            values = rows[key].tolist()
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            x = np.asarray(values, dtype=float) if numeric else np.arange(len(values))
            labels = None if numeric else [str(v) for v in values]
        order = np.argsort(x, kind="stable")
        x = np.asarray(x)[order]
        (line,) = ax.plot(x, rows["p50"].to_numpy()[order], marker="o", label=LABELS[strategy])
        ax.fill_between(
            x,
            rows["p10"].to_numpy()[order],
            rows["p90"].to_numpy()[order],
            color=line.get_color(),
            alpha=0.15,
        )
        ax.plot(x, rows["worst"].to_numpy()[order], ls=":", color=line.get_color())
        if labels is not None:
            ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_xlabel(key or "design")
    ax.set_ylabel("net margin $ (median; band p10-p90; dotted: worst)")
    ax.set_title(
        f"Net margin against {key or 'the design'}, over {len(table) // len(STRATEGIES)} variants"
    )
    fig.legend(loc="outside right upper")
    path = out / "net_margin.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _cost_cfe_plot(table: pd.DataFrame, out: Path) -> Path:
    """Energy cost against the hourly CFE score, one point per variant and strategy."""
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    for strategy in STRATEGIES:
        rows = table[table["strategy"] == strategy]
        ax.scatter(rows["cfe_score"], rows["energy_cost_usd"], s=18, label=LABELS[strategy])
    ax.set_xlabel("hourly CFE score")
    ax.set_ylabel("energy cost $")
    ax.set_title("Energy cost against CFE score, one point per variant")
    fig.legend(loc="outside right upper")
    path = out / "cost_vs_cfe.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
