"""Reserve on the decision path: which hours are sold, open or closed, what each is expected to
pay, and the book of what was sold.

**The commitment rule.** Reserve is sold day-ahead, by the hour (UTC hour boundaries, which are
ERCOT's). An hour is *committed* by the first decision round whose plan covers the whole hour
while the hour still starts at least :data:`COMMIT_LEAD` ahead of the round's ``now``: the MW
that plan holds in it (per product, the least over the steps that start in the hour, rounded
down to the kW) are sold and remembered (:class:`CommitmentBook`). From then on the hour is
*closed sold*: its committed MW are a floor the optimizer keeps (penalty slack, never
infeasible), and no more can be sold in it. An hour whose start is still ``COMMIT_LEAD`` or more
ahead is *open*: the optimizer may plan up to the qualified MW in it, at the expected price.
Any other hour is *closed unsold*: nothing can be held for pay in it.

Why this rule: ERCOT's day-ahead market for operating day D closes at 10:00 on D-1, so each
hour is sold between 14 h (hour 00:00) and 38 h (hour 23:00) before it starts. A deadline rule
("all of D at 10:00 on D-1") needs a horizon of 38 h; the live horizon is 24 h. Committing each
hour when it first enters the horizon (about 23 h ahead with the 24 h horizon) lands inside
ERCOT's range, uses only what was known then, needs no calendar or time-zone logic, and works
for any horizon longer than the lead. The 14 h lead (ERCOT's shortest) only matters after a
start or a gap: an hour seen for the first time less than 14 h ahead is never sold.

**Expected prices.** A step reads its product's price at its start: the day-ahead clearing
price where one covers it (known for hours already cleared); else the price of the same hour a
day earlier (ERCOT clears the next day at about 13:30, so an hour committed before that has no
price of its own yet); else the last known price held. The decision notes how many steps were
priced each way.

**By the hour in the plan too.** Steps of the same open hour (15-minute steps) plan the same
MW (``ReserveSnapshot.same_sale_as_previous``): a plan that sells reserve in three quarters and
not the fourth (to shed mining at a 4CP interval, say) is not a sale the market offers. Sold
hours are not tied: their committed MW are already a floor in every step, and a cap in one
quarter must cost a shortfall there only.

**Deployment.** A ``reserve_deployment`` grid signal caps the site's import through the signal
machinery (its ``reduction_mw`` below the site's draw), so mining is curtailed at once; the MW it
deploys (up to what was sold for that step) count as reserve held, so delivering a deployment
is not a shortfall.

This module reads the state and the book; it never reads a clock or changes the state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from optimizer import ReserveSnapshot
from schemas import DispatchDecision
from streams.engine.curves import Lookup
from streams.engine.fleet import SiteConfig

#: How far ahead an hour must start to be sold (ERCOT's shortest day-ahead lead).
COMMIT_LEAD = timedelta(hours=14)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: How long sold hours are remembered after they end (a restart or a late round may ask).
KEEP_SOLD = timedelta(days=1)


def hour_of(instant: datetime) -> datetime:
    """The start of the (UTC) hour holding ``instant``."""
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class CommitmentBook:
    """What each site sold, by hour (UTC start) and product, and the rule that sells it."""

    lead: timedelta = COMMIT_LEAD
    sold: dict[str, dict[datetime, dict[str, float]]] = field(default_factory=dict)

    def hour(self, site_id: str, hour: datetime) -> Mapping[str, float] | None:
        """What ``site_id`` sold for ``hour``, or None if that hour was not sold."""
        return self.sold.get(site_id, {}).get(hour)

    def is_open(self, site_id: str, hour: datetime, now: datetime) -> bool:
        """True while reserve may still be sold for ``hour`` (seen from ``now``)."""
        return hour >= now + self.lead and self.hour(site_id, hour) is None

    def commit(
        self,
        site_id: str,
        now: datetime,
        starts: Sequence[datetime],
        end: datetime,
        held: Mapping[str, NDArray[np.float64]],
    ) -> list[datetime]:
        """Sell the open hours the plan covers whole (``starts`` of its steps, ``end`` of the
        last): per product the least MW ``held`` over the steps that start in the hour. Returns
        the hours sold (also those sold at 0 MW: they close all the same)."""
        if not held:
            return []
        book = self.sold.setdefault(site_id, {})
        steps: dict[datetime, list[int]] = {}
        for k, start in enumerate(starts):
            steps.setdefault(hour_of(start), []).append(k)
        made = []
        for hour, ks in steps.items():
            if hour + HOUR > end or not self.is_open(site_id, hour, now):
                continue
            book[hour] = {p: _kw_floor(float(np.min(curve[ks]))) for p, curve in held.items()}
            made.append(hour)
        for hour in [h for h in book if h + HOUR + KEEP_SOLD <= now]:
            del book[hour]
        return made

    def within(
        self, site_id: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, dict[str, float]]]:
        """The sold hours overlapping [start, end), in time order."""
        book = self.sold.get(site_id, {})
        return sorted((h, mw) for h, mw in book.items() if h < end and h + HOUR > start)

    def restore(self, decisions: Iterable[DispatchDecision]) -> None:
        """Remember what published decisions say was sold (e.g. after a restart)."""
        for decision in decisions:
            book = self.sold.setdefault(decision.site_id, {})
            for sold in decision.reserve_commitments:
                book[hour_of(sold.interval_start)] = {
                    p: float(mw) for p, mw in sold.reserve_mw.items()
                }


def _kw_floor(mw: float) -> float:
    """Round down to the kW, so the plan that sold it can hold it (solver dust aside)."""
    return max(0.0, math.floor(mw * 1000.0 + 1e-6) / 1000.0)


@dataclass(frozen=True, slots=True)
class ReserveInputs:
    """The reserve part of a site's snapshot, with the notes it leaves."""

    reserves: dict[str, ReserveSnapshot]
    deployed_mw: np.ndarray | None
    notes: list[str]


#: Where a step's expected reserve price came from (codes of :func:`price_path`).
DAY_AHEAD, EARLIER, HELD, UNKNOWN = range(4)


def price_path(
    covering: Sequence[Lookup | None], day_before: Sequence[Lookup | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Expected price per step and where it came from: the day-ahead price covering the step,
    else the same hour a day earlier, else the last known price held, else 0 (unknown).
    The same for every site of a region in a round (the caller shares it)."""
    price = np.zeros(len(covering))
    how = np.full(len(covering), UNKNOWN)
    for k, (now, before) in enumerate(zip(covering, day_before, strict=True)):
        if now is not None and not now.held:
            price[k], how[k] = now.value, DAY_AHEAD
        elif before is not None and not before.held:
            price[k], how[k] = before.value, EARLIER
        elif now is not None:
            price[k], how[k] = now.value, HELD
    return price, how


def reserve_inputs(
    site: SiteConfig,
    *,
    now: datetime,
    starts: Sequence[datetime],
    ends: Sequence[datetime],
    hours: Sequence[datetime],
    prices: Mapping[str, tuple[np.ndarray, np.ndarray]],
    book: CommitmentBook,
    deployments: Sequence[tuple[datetime, datetime, float]],
) -> ReserveInputs:
    """Per product and step: expected price, MW that may be held, MW sold; the MW deployed.

    ``hours`` is each step's hour (:func:`hour_of` its start); ``prices`` maps each product to
    its :func:`price_path` (a product missing has no price yet); ``deployments`` are the site's
    active reserve deployments (start, end, MW).
    """
    n = len(starts)
    site_book = book.sold.get(site.site_id, {})
    sold = [site_book.get(h) for h in hours]
    is_sold = np.array([s is not None for s in sold])
    cutoff = now + book.lead
    is_open = ~is_sold & np.array([h >= cutoff for h in hours])
    counted = is_sold | is_open  # steps where the price matters
    n_sold, n_open = int(is_sold.sum()), int(is_open.sum())
    notes = [
        f"reserve: {n_sold} of {n} steps in hours sold day-ahead, {n_open} open to sell "
        f"(hours starting {_hours(book.lead)} h or more ahead), {n - n_sold - n_open} closed unsold"
    ]
    # Reserve is sold by the hour: steps of one open hour (15-minute steps) plan the same MW.
    # Only open hours: a sold hour already holds its committed MW as a floor, and tying it
    # would let one quarter's cap (a grid request, the GPU floor) cut the held MW of the whole
    # hour, or push the GPUs below their floor to keep mining for it.
    tied = np.array(
        [k > 0 and hours[k] == hours[k - 1] and is_open[k] and is_open[k - 1] for k in range(n)],
        dtype=float,
    )
    same_hour = tied if tied.any() else None  # hourly steps, or no open hour: nothing to tie
    reserves: dict[str, ReserveSnapshot] = {}
    for product in site.reserve_products:
        price, how = prices.get(product, (np.zeros(n), np.full(n, UNKNOWN)))
        committed = (
            np.array([s.get(product, 0.0) if s is not None else 0.0 for s in sold])
            if n_sold
            else np.zeros(n)
        )
        # Sold hours hold exactly what was sold (more would not be paid); open hours up to
        # the qualified MW; closed unsold hours nothing.
        limit = np.where(is_open, site.reserve_max_for(product), committed)
        reserves[product] = ReserveSnapshot(
            price_usd_per_mw_h=price,
            max_mw=limit,
            committed_mw=committed,
            same_sale_as_previous=same_hour,
        )
        _, earlier, held, unknown = np.bincount(how[counted], minlength=4).tolist()
        if earlier or held:
            notes.append(
                f"reserve price {product}: {earlier} steps from the same hour a day earlier, "
                f"{held} held at the last known price (no day-ahead clearing price yet)"
            )
        if unknown:
            notes.append(
                f"reserve price {product} unknown in {site.carbon_region} for {unknown} steps: "
                "nothing sold there earns"
            )
    return ReserveInputs(reserves, _deployed(sold, starts, ends, deployments), notes)


def _deployed(
    sold: Sequence[Mapping[str, float] | None],
    starts: Sequence[datetime],
    ends: Sequence[datetime],
    deployments: Sequence[tuple[datetime, datetime, float]],
) -> np.ndarray | None:
    """Per step: MW a deployment curtails, up to what was sold for the step (None: none)."""
    if not deployments:
        return None
    out = np.zeros(len(starts))
    for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
        asked = sum(mw for s, e, mw in deployments if s < end and e > start)
        out[k] = min(asked, sum((sold[k] or {}).values()))
    return out


def _hours(delta: timedelta) -> str:
    return f"{delta / HOUR:g}"
