"""The data ledger of a backtest: everything done to the data of the window, and everything the
decisions assumed, so that nothing assumed is silent.

Built once per run from the alignments (observed / held / missing per series), the rows removed
while reading, the warm-up, a clipped period and the gridshift decisions' notes; rendered as the
report's "Data treatment" section and as one-line notes. Counts cover the backtest window only.
It computes no coverage itself (:mod:`streams.backtest.coverage` does).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from streams.backtest.coverage import Alignment, HoldRules, Window, describe_gap
from streams.backtest.history import duration, plural, removal_notes
from streams.backtest.notes import tell
from streams.backtest.run import Actuals
from streams.engine.fleet import Fleet

#: Gaps listed one by one per series; more are counted.
LISTED_GAPS = 5


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
        lines += [
            "",
            "Intervals are the backtest's; an interval missing a price or the hashprice is not "
            "scored for any strategy, one missing carbon is left out of the emissions.",
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
) -> DataLedger:
    """The ledger of one run (``removed``: the removals of the window's rows)."""
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
