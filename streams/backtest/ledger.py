"""The data ledger of a backtest: everything done to the data of the window, and everything the
decisions assumed, so that nothing assumed is silent.

Built once per run from the alignments (observed / held / missing per series), the rows removed
(or sorted) while reading, what the 4CP list and the reserve-price tables cover
(:class:`SideSources`), the warm-up, a clipped period and the gridshift decisions' notes;
rendered as the report's "Data treatment" section and as one-line notes. Counts cover the
backtest window only. It reads no file and aligns no series itself
(:mod:`streams.backtest.coverage` does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from streams.backtest.coverage import (
    Alignment,
    BoolArray,
    HoldRules,
    Window,
    describe_gap,
    stretches,
)
from streams.backtest.flexible import MCPC_COLUMNS
from streams.backtest.history import duration, plural, removal_notes, utc_values
from streams.backtest.notes import tell
from streams.backtest.run import Actuals
from streams.engine.coincident_peak import CENTRAL
from streams.engine.fleet import Fleet

#: Gaps listed one by one per series; more are counted.
LISTED_GAPS = 5
#: The months whose peaks the 4CP charge is taken at (Central time).
SUMMER = range(6, 10)
_MONTHS = ("", "January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip


@dataclass(frozen=True)
class SideSources:
    """What the 4CP list and the reserve-price tables cover, for the data treatment (built
    where a backtest reads them; None where the scenario has no such table)."""

    #: ``(year, month)`` of every interval the 4CP list has.
    peak_months: frozenset[tuple[int, int]] | None = None
    #: Per reserve product, per backtest interval: whether its hour has a clearing price.
    reserve_known: dict[str, BoolArray] | None = None
    reserve_source: str = ""


def listed_months(table: pd.DataFrame) -> frozenset[tuple[int, int]]:
    """The ``(year, month)`` pairs of a 4CP table (``read_4cp``: ``year``, ``month``)."""
    return frozenset(zip(table["year"].astype(int), table["month"].astype(int), strict=True))


def clearing_known(table: pd.DataFrame, starts: Sequence[datetime]) -> dict[str, BoolArray]:
    """Per product, per backtest interval: whether the MCPC table (``read_mcpc``) has a
    clearing price for its hour (a product the table lacks: never)."""
    grid = pd.DatetimeIndex(starts).tz_convert("UTC").floor("h")
    indexed = table.set_index("start_utc")
    return {
        product: (
            indexed[product].reindex(grid).notna().to_numpy()
            if product in indexed.columns
            else np.zeros(len(grid), dtype=bool)
        )
        for product in MCPC_COLUMNS.values()
    }


@dataclass(frozen=True)
class LedgerRow:
    """One series over the window, in backtest intervals (rows removed: in table rows)."""

    series: str
    source: str
    observed: int
    held: int
    missing: int
    dropped: int
    skipped: int
    duplicates: int


@dataclass
class DataLedger:
    """What was done to the data of one backtest window, and what its decisions assumed."""

    rows: list[LedgerRow]
    lines: list[str]  # treatments and assumptions, one sentence each
    decisions: list[str] = field(default_factory=list)  # decision notes, counted by kind
    clipped: str | None = None

    def notes(self) -> list[str]:
        """Every line of the ledger (the table's rows said in words)."""
        out = [self.clipped] if self.clipped else []
        for row in self.rows:
            parts = [
                f"{plural(row.held, 'interval')} held" if row.held else "",
                f"{plural(row.missing, 'interval')} missing" if row.missing else "",
                f"{plural(row.dropped, 'row')} dropped" if row.dropped else "",
                f"{plural(row.skipped, 'row')} skipped" if row.skipped else "",
                f"{plural(row.duplicates, 'duplicate row')}" if row.duplicates else "",
            ]
            done = ", ".join(p for p in parts if p)
            if done:
                out.append(f"{row.series} ({row.source}): {done}")
        return out + self.lines + self.decisions

    def markdown(self) -> list[str]:
        header = (
            "| series | source | intervals observed | held (gap within the limit) | missing "
            "| rows dropped (no price, bounds, sentinels) | rows skipped (source flags) "
            "| duplicate rows |"
        )
        lines = [header, "|" + "---|" * 8]
        lines += [
            f"| {r.series} | {r.source} | {r.observed:,} | {r.held:,} | {r.missing:,} | "
            f"{r.dropped:,} | {r.skipped:,} | {r.duplicates:,} |"
            for r in self.rows
        ]
        reserve = (
            ", one missing a reserve price pays no reserve revenue"
            if any(r.series.endswith(" reserve price") for r in self.rows)
            else ""
        )
        lines += [
            "",
            "Intervals are the backtest's; an interval missing a price or the hashprice is not "
            f"scored for any strategy, one missing carbon is left out of the emissions{reserve}.",
            "",
        ]
        items = ([f"**{self.clipped}**"] if self.clipped else []) + self.lines
        lines += [f"- {line}" for line in items] or ["- every interval observed"]
        if self.decisions:
            lines += ["", "What the gridshift decisions assumed (decisions per kind of note):", ""]
            lines += [f"- {line}" for line in self.decisions]
        return lines


def build_ledger(
    *,
    fleet: Fleet,
    act: Actuals,
    prices: dict[str, Alignment],
    carbon: dict[str, Alignment],
    hashprice: Alignment,
    removed: pd.DataFrame,
    jumps: list[pd.Timestamp],
    hold: HoldRules,
    window: Window,
    lag: int,
    watchdog: timedelta,
    decision_notes: Counter[str],
    decisions: int,
    sides: SideSources | None = None,
) -> DataLedger:
    """The ledger of one run (``removed``: the removals, and rows sorted, of the window's
    rows; ``sides``: what the 4CP list and reserve prices cover)."""
    region_of = {s.price_node: s.carbon_region for s in fleet.sites}
    rows: list[LedgerRow] = []
    lines: list[str] = []
    by_series: dict[str, pd.DataFrame] = {}
    for category, group in removed.groupby("category"):
        for node, rows_of_node in group.groupby("node"):
            key = f"{region_of.get(str(node), node)} carbon" if category == "carbon" else node
            by_series[f"{key}|{category}"] = rows_of_node

    def count(key: str, category: str) -> int:
        return len(by_series.get(f"{key}|{category}", ()))

    alignments = [*prices.values(), hashprice, *carbon.values()]
    for a in alignments:
        s = a.series
        key = s.key if s.kind == "price" else s.label
        rows.append(
            LedgerRow(
                s.label,
                s.source,
                int(a.observed.sum()),
                int(a.held.sum()),
                int(a.missing.sum()),
                count(key, "dropped") + (count(s.label, "carbon") if s.kind == "carbon" else 0),
                count(key, "skipped"),
                count(key, "duplicate"),
            )
        )
    sides = sides or SideSources()
    reserve_rows, reserve_lines = _reserve_prices(fleet, act, sides)
    rows += reserve_rows
    lines += _missing_peaks(sides, act.starts)
    if act.warmup:
        first = act.starts[0]
        end = act.starts[act.warmup] if act.warmup < len(act.starts) else act.starts[-1]
        verb = "is" if act.warmup == 1 else "are"
        lines.append(
            f"warm-up: the first {plural(act.warmup, 'interval')} ({first:%Y-%m-%d %H:%M}Z to "
            f"{end:%Y-%m-%d %H:%M}Z) {verb} run but not scored: no price was known yet (prices "
            f"are known {plural(lag, 'interval')} after they start), so every strategy is "
            "scored from the same information"
        )
    for a in [*prices.values(), hashprice]:
        lines += _gaps(a, hold, "not scored")
    if act.relearning:
        lines.append(
            f"after those gaps, {plural(act.relearning, 'interval')} with prices again "
            f"{'is' if act.relearning == 1 else 'are'} run but not scored until a new price is "
            "known, as in the warm-up"
        )
    if act.restoring:
        lines.append(
            f"{plural(act.restoring, 'interval')} after a gap, while gridshift's mining came back "
            "in the live fail-safe's staggered steps (the baselines restart at once), "
            f"{'is' if act.restoring == 1 else 'are'} run but not scored for any strategy"
        )
    for a in carbon.values():
        lines += _carbon(a, fleet, hold)
    lines += reserve_lines
    if hashprice.series.constant:
        lines.append(f"hashprice: {hashprice.series.source} for every interval")
    start, end = pd.Timestamp(act.starts[0]), pd.Timestamp(act.starts[-1])
    inside = [t for t in jumps if start <= t <= end]
    if inside:
        shown = ", ".join(f"{t:%Y-%m-%d}" for t in inside[:3])
        lines.append(
            f"hashprice: {plural(len(inside), 'change')} by more than 5x from one value to the "
            f"next ({shown}): kept, check the source"
        )
    lines += removal_notes(removed)
    if watchdog:
        lines.append(
            f"gridshift's price watchdog (the live fail-safe) fires after {duration(watchdog)} "
            "without a new price: the hold limit plus the time a price takes to become known"
        )
    told: Counter[str] = Counter()
    for kind, n in decision_notes.items():
        told[tell(kind)] += n
    notes = [
        f"{n:,} of {decisions:,} decisions: {text}"
        for text, n in sorted(told.items(), key=lambda item: -item[1])
    ]
    return DataLedger(rows, lines, notes, window.clipped)


def _missing_peaks(sides: SideSources, starts: Sequence[datetime]) -> list[str]:
    """Each June-September month the window touches that the 4CP list lacks: the charge is not
    scored there (no peak is known), which a "no peak in window" would otherwise hide."""
    if sides.peak_months is None or not starts:
        return []
    local = pd.DatetimeIndex(starts).tz_convert(CENTRAL)
    touched = {(y, m) for y, m in zip(local.year, local.month, strict=True) if m in SUMMER}
    lacking = sorted(touched - sides.peak_months)
    lines = []
    for year in sorted({y for y, _ in lacking}):
        if not any((year, m) in sides.peak_months for m in SUMMER):
            lines.append(
                f"4CP list has no intervals for {year} (missing in the source): the 4CP charge "
                f"is not scored for June-September {year}"
            )
            continue
        months = " and ".join(f"{_MONTHS[m]} {year}" for y, m in lacking if y == year)
        lines.append(
            f"4CP list has no interval for {months} (missing in the source): the 4CP charge "
            f"is not scored for {months}"
        )
    return lines


def _reserve_prices(
    fleet: Fleet, act: Actuals, sides: SideSources
) -> tuple[list[LedgerRow], list[str]]:
    """A row per reserve product the fleet sells, and the stretches without a clearing price:
    reserve held there is paid nothing, for every strategy."""
    if sides.reserve_known is None or not act.starts:
        return [], []
    products = list(dict.fromkeys(p for site in fleet.sites for p in site.reserve_products))
    grid = utc_values(pd.DatetimeIndex(act.starts))
    step = timedelta(hours=act.hours)
    rows, lines = [], []
    never = np.zeros(len(grid), dtype=bool)
    for product in products:
        known = sides.reserve_known.get(product, never)
        missing = int((~known).sum())
        label, source = f"{product} reserve price", sides.reserve_source
        rows.append(LedgerRow(label, source, int(known.sum()), 0, missing, 0, 0, 0))
        if missing:
            gaps = stretches(~known, grid, step)
            listed = "; ".join(describe_gap(begin, end) for begin, end, _ in gaps[:LISTED_GAPS])
            more = len(gaps) - LISTED_GAPS
            tail = f"; and {plural(more, 'more gap')}" if more > 0 else ""
            lines.append(
                f"{label} ({source}): {plural(missing, 'interval')} without a clearing price: "
                f"{listed}{tail}; reserve held in them is paid nothing, for every strategy"
            )
    return rows, lines


def _carbon(a: Alignment, fleet: Fleet, hold: HoldRules) -> list[str]:
    """A region without carbon data is said (never shown as 0 t); gaps in it are counted."""
    s = a.series
    if not s.empty:
        return _gaps(a, hold, "left out of the emissions")
    priced = sum(
        1 for site in fleet.sites if site.carbon_region == s.key and site.carbon_price_usd_per_t > 0
    )
    unpriced = f"; the carbon price of {plural(priced, 'site')} was not applied" if priced else ""
    return [
        f"no carbon data for region {s.key}: its emissions are not reported (n/a), and its "
        f"decisions planned with zero emissions{unpriced}"
    ]


def _gaps(a: Alignment, hold: HoldRules, consequence: str) -> list[str]:
    s = a.series
    limit = duration(pd.Timedelta(hold.limit(s.kind)))
    out = []
    missing = int(np.sum(a.missing))
    if missing:
        listed = "; ".join(
            f"{describe_gap(begin, end)}" for begin, end, _ in a.long_gaps[:LISTED_GAPS]
        )
        more = len(a.long_gaps) - LISTED_GAPS
        tail = f"; and {plural(more, 'more gap')}" if more > 0 else ""
        out.append(
            f"{s.label} ({s.source}): {plural(missing, 'interval')} {consequence}, no data "
            f"within the {limit} hold limit: {listed}{tail}"
        )
    return out
