"""The report's figures, built from a backtest result; saving them is the report's job.

Rules every figure follows: dates carry the year and say UTC; set-points held over an interval
are drawn as steps, not slopes; each strategy has one fixed colour and line style in every
figure, and gridshift is drawn as a wide band under the others, so a baseline equal to it stays
visible on top instead of hiding it; legends sit outside the data; intervals that are not scored
are shaded; no bar stands for data that does not exist.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter

if TYPE_CHECKING:
    from streams.backtest.report import BacktestResult

LABELS = {
    "gridshift": "gridshift (MPC)",
    "always_on": "mining always on",
    "threshold": "price threshold",
    "oracle": "perfect-foresight oracle",
    "todays_practice": "today's practice",
    "peak_foresight": "gridshift, 4CP known (ceiling)",
}
#: One look per strategy in every figure: colour, line style, width, drawing order.
STYLE: dict[str, dict[str, Any]] = {
    "gridshift": {"color": "#1f4e9c", "linestyle": "-", "linewidth": 4.0, "alpha": 0.55},
    "oracle": {"color": "#2e8b3a", "linestyle": "--", "linewidth": 1.5},
    "threshold": {"color": "#d9730d", "linestyle": "-.", "linewidth": 1.5},
    "always_on": {"color": "#555555", "linestyle": ":", "linewidth": 1.5},
    # A flexible-load scenario's two more (when they ran): the ceiling a lighter shade of
    # gridshift's blue.
    "todays_practice": {"color": "#8e44ad", "linestyle": (0, (6, 2, 1, 2)), "linewidth": 1.5},
    "peak_foresight": {"color": "#8fb3e8", "linestyle": "-", "linewidth": 1.5},
}
#: Drawing order, gridshift first (underneath); a strategy that did not run is left out.
ORDER = ("gridshift", "peak_foresight", "oracle", "todays_practice", "threshold", "always_on")
_UNSCORED: dict[str, Any] = {"color": "#bbbbbb", "alpha": 0.35, "linewidth": 0}


def dispatch_figure(result: BacktestResult) -> Figure:
    """gridshift's fleet dispatch against the price on the day with the highest price."""
    act = result.actuals
    day_len = int(24 * 60 / result.scenario.step_minutes)
    masked = np.where(act.scored, act.price, -np.inf)
    site, peak = np.unravel_index(int(np.argmax(masked)), masked.shape)
    first = max(0, min(int(peak) - day_len // 2, len(act.starts) - day_len))
    window = slice(first, first + day_len)
    edges = _edges(act.starts[window], result.scenario.step_minutes)
    d = result.dispatch["gridshift"]
    layers = [
        ("GPU inference (own) MW", d.gpu[:, window].sum(axis=0), "#3b6fb6"),
        ("routed inference MW", d.routed[:, window].sum(axis=0), "#7fa7dc"),
        ("mining MW", d.mining[:, window].sum(axis=0), "#f2a93b"),
    ]
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    lower = np.zeros(len(edges) - 1)
    for label, values, colour in layers:
        if not values.any() and label.startswith("routed"):
            continue  # no pool in this fleet
        upper = lower + values
        ax.fill_between(
            edges,
            _closed(lower),
            _closed(upper),
            step="post",
            color=colour,
            alpha=0.85,
            linewidth=0,
            label=label,
        )
        lower = upper
    other = result.dispatch["threshold"]
    total = (other.gpu + other.routed + other.mining)[:, window].sum(axis=0)
    ax.plot(
        edges,
        _closed(total),
        drawstyle="steps-post",
        color=STYLE["threshold"]["color"],
        linestyle="--",
        linewidth=1.2,
        label=f"{LABELS['threshold']}: total MW",
    )
    ax.set_ylabel("fleet MW")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_ylim(bottom=0)
    node = result.fleet.sites[int(site)].price_node
    twin = ax.twinx()
    twin.plot(
        edges,
        _closed(act.price[int(site), window]),
        drawstyle="steps-post",
        color="#c0392b",
        linewidth=1.4,
        label=f"{node} price $/MWh (right axis)",
    )
    twin.set_ylabel(f"{node} $/MWh")
    _shade_unscored(ax, result, window)
    ax.set_title(
        f"{LABELS['gridshift']} dispatch against the {node} price\nthe day around its highest "
        f"scored price ({act.starts[int(peak)]:%Y-%m-%d %H:%M}Z)"
    )
    _dates(ax, edges)
    _legend_below(fig, [ax, twin])
    return fig


def _ran(result: BacktestResult) -> list[str]:
    """The strategies of ``result`` in :data:`ORDER`."""
    return [name for name in ORDER if name in result.scores]


def margin_figure(result: BacktestResult) -> Figure:
    """Cumulative energy margin (mining + GPU - energy) over mining always on: GPU revenue
    dwarfs the differences, so absolute curves would lie on top of each other. The 4CP charge
    and reserve revenue are not in it (they are not spread over intervals): the title says so
    when a strategy has either, and :func:`value_figure` draws them."""
    act = result.actuals
    edges = _edges(act.starts, result.scenario.step_minutes)
    baseline = np.cumsum(result.scores["always_on"].margin_by_interval)
    names = _ran(result)
    curves = {
        name: (np.cumsum(result.scores[name].margin_by_interval) - baseline) / 1e3 for name in names
    }
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    ax.axhline(0.0, **_line("always_on"), label=f"{LABELS['always_on']} (reference)")
    drawn = [name for name in names if name != "always_on"]
    for position, name in enumerate(drawn):
        # Each equality is said once, on the curve drawn first (gridshift's band underneath).
        later = [*drawn[position + 1 :], "always_on"]
        same = [
            result.label(other)
            for other in later
            if np.max(np.abs(curves[name] - curves[other])) < 1e-3
        ]
        label = result.label(name) + (f" (= {', '.join(same)})" if same else "")
        ax.plot(edges, _closed(curves[name]), drawstyle="steps-post", **_line(name), label=label)
    _shade_unscored(ax, result, slice(0, len(act.starts)))
    ax.set_ylabel("cumulative energy margin over mining always on, $k")
    title = "Cumulative energy margin by strategy, relative to mining always on"
    grid_value = any(
        s.peak_charge_usd != 0 or s.reserve_revenue_usd != 0 for s in result.scores.values()
    )
    if grid_value:
        title += "\n(energy only: the 4CP charge and reserve revenue are in value_by_strategy.png)"
    ax.set_title(title)
    _dates(ax, edges)
    _legend_below(fig, [ax])
    return fig


def emissions_figure(result: BacktestResult) -> Figure:
    """Emissions by strategy (location-based, and market-based when a site has carbon-free
    supply), or a statement that there is no carbon data."""
    names = _ran(result)
    location = [result.scores[n].emissions_location_t for n in names]
    has_cfe = any(s.ppa_mw > 0 or s.onsite_cfe_mw > 0 for s in result.fleet.sites)
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    ax.set_title("Emissions by strategy" + ("" if has_cfe else " (location-based)"))
    if all(np.isnan(v) for v in location):
        ax.set_title("Emissions by strategy")
        regions = sorted({s.carbon_region for s in result.fleet.sites})
        ax.text(
            0.5,
            0.5,
            f"no carbon data for {', '.join(regions)}:\nemissions not reported",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=12,
        )
        ax.set_axis_off()
        return fig
    x = np.arange(len(names))
    width = 0.4 if has_cfe else 0.6
    bars = ax.bar(
        x - (0.2 if has_cfe else 0.0),
        location,
        width,
        color=[STYLE[n]["color"] for n in names],
        label="location-based",
    )
    ax.bar_label(bars, fmt="{:,.0f}", fontsize=8)
    if has_cfe:
        market = [result.scores[n].emissions_market_t for n in names]
        hatched = ax.bar(
            x + 0.2,
            market,
            width,
            color=[STYLE[n]["color"] for n in names],
            alpha=0.45,
            hatch="//",
            label="market-based (after PPA and on-site CFE)",
        )
        ax.bar_label(hatched, fmt="{:,.0f}", fontsize=8)
    # Wrapped: six strategy names side by side would run into each other.
    ax.set_xticks(x, [textwrap.fill(result.label(n), 16) for n in names], fontsize=9)
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_ylabel("t CO2")
    ax.margins(y=0.15)  # room for the value labels
    if has_cfe:
        _legend_below(fig, [ax])
    return fig


#: The strategies of a flexible-load value breakdown, gridshift first.
VALUE_ORDER = ("gridshift", "peak_foresight", "todays_practice", "threshold", "oracle")


def value_figure(result: BacktestResult) -> Figure:
    """What each strategy earns over mining always on, split into its parts: energy margin,
    the 4CP charge it avoided and its reserve revenue, with the net as a marker (a scenario
    with ``[coincident_peak]`` or ``[reserves]``: the cumulative-margin figure counts energy
    only)."""
    names = [n for n in VALUE_ORDER if n in result.scores]
    base = result.scores["always_on"]
    parts = {
        "energy margin": [
            (result.scores[n].energy_margin_usd - base.energy_margin_usd) / 1e3 for n in names
        ],
        "4CP charge avoided": [
            (base.peak_charge_usd - result.scores[n].peak_charge_usd) / 1e3 for n in names
        ],
        "reserve revenue": [
            (result.scores[n].reserve_revenue_usd - base.reserve_revenue_usd) / 1e3 for n in names
        ],
    }
    net = [sum(values) for values in zip(*parts.values(), strict=True)]
    fig, ax = plt.subplots(figsize=(10, 4.8), layout="constrained")
    y = np.arange(len(names))
    height = 0.8 / len(parts)
    hatches = ("", "//", "..")
    for k, values in enumerate(parts.values()):
        ax.barh(
            y - 0.4 + height * (k + 0.5),
            values,
            height,
            color=[_color(n) for n in names],
            hatch=hatches[k],
            edgecolor="white",
        )
    ax.scatter(net, y, marker="D", color="black", zorder=4)
    for value, row in zip(net, y, strict=True):
        ax.annotate(
            f"${value:,.0f}k",
            (value, row),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=8,
        )
    ax.axvline(0.0, color="#555555", linewidth=1.0)
    ax.set_yticks(y, [result.label(n) for n in names])
    ax.invert_yaxis()  # gridshift on top
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xlabel("$k over mining always on")
    ax.set_title("Value by strategy over mining always on: energy, 4CP, reserve")
    # The parts are told apart by hatching, the strategies by colour: a neutral key for both.
    handles: list[Artist] = [
        Patch(facecolor="#999999", hatch=hatch, edgecolor="white", label=part)
        for part, hatch in zip(parts, hatches, strict=True)
    ]
    handles.append(Line2D([], [], marker="D", color="black", linestyle="", label="net"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    return fig


def _color(name: str) -> str:
    return str(STYLE[name]["color"])


def _line(name: str) -> dict[str, Any]:
    style = dict(STYLE[name])
    style["zorder"] = 2 if name == "gridshift" else 3
    return style


def _edges(starts: Sequence[datetime], step_minutes: int) -> pd.DatetimeIndex:
    """Interval starts plus the last interval's end: steps cover each whole interval."""
    index = pd.DatetimeIndex(starts)
    return index.append(pd.DatetimeIndex([index[-1] + pd.Timedelta(minutes=step_minutes)]))


def _closed(values: np.ndarray) -> np.ndarray:
    """``values`` with the last repeated, to pair with :func:`_edges`."""
    return np.append(values, values[-1])


def _dates(ax: Axes, edges: pd.DatetimeIndex) -> None:
    """Dates with the year on the x axis; hours too when the span is a few days."""
    span = edges[-1] - edges[0]
    # matplotlib.dates ships no annotations for these two constructors.
    locator = mdates.AutoDateLocator(minticks=4, maxticks=8)  # type: ignore[no-untyped-call]
    fmt = "%Y-%m-%d\n%H:%M" if span <= pd.Timedelta(days=4) else "%Y-%m-%d"
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz="UTC"))  # type: ignore[no-untyped-call]
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("UTC")


def _shade_unscored(ax: Axes, result: BacktestResult, window: slice) -> None:
    act = result.actuals
    scored = act.scored[window]
    starts = act.starts[window]
    step = pd.Timedelta(minutes=result.scenario.step_minutes)
    flips = np.flatnonzero(np.diff(np.concatenate([[0], (~scored).astype(int), [0]])))
    for n, (a, b) in enumerate(zip(flips[::2], flips[1::2], strict=True)):
        ax.axvspan(
            starts[a],
            pd.Timestamp(starts[b - 1]) + step,
            **_UNSCORED,
            label="not scored" if n == 0 else None,
        )


def _legend_below(fig: Figure, axes: list[Axes]) -> None:
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=9)
