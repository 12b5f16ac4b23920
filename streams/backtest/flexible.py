"""What a flexible load earns besides energy, in a backtest: ERCOT's 4CP transmission charge,
day-ahead ancillary-service (reserve) capacity payments, and today's practice of flexible
mining fleets as a baseline.

- Reserve prices: ERCOT's day-ahead ancillary-service clearing prices (MCPC, $/MW per hour,
  report NP4-181-ER) become :class:`~schemas.ReservePriceEvent` s available at the day-ahead
  market's publication, :data:`DAM_PUBLICATION` Central on the day before delivery (past data
  only: a decision never sees a price before it was published).
- 4CP: the forecaster's signals (:func:`~streams.backtest.coincident_peak_history.
  peak_signal_schedule`) reach gridshift at their issue time; the oracle gets the realised peaks;
  every strategy pays the realised charge on its import at the realised peak intervals.
- Today's practice (assembled in ``streams.backtest.report._todays_practice`` from the
  functions here): the break-even price threshold, a curtailment 15:00-18:00 Central on days
  ERCOT's day-ahead load forecast exceeds the month-to-date peak (June-September), and its
  mining offered as reserve at the MCPC: sold day-ahead in the
  hours whose day-ahead price is at or below break-even (:func:`todays_practice_day_ahead_plan`)
  and kept running through real-time prices above it (:func:`hold_sold_reserve`), as
  gridshift's sold reserve is.

docs/SCENARIOS.md documents the scenario keys (``[coincident_peak]``, ``[reserves]``),
docs/RESERVES.md and docs/COINCIDENT_PEAK.md the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.value import FloatArray
from schemas import ReservePriceEvent
from streams.backtest.coincident_peak_history import naive_flags
from streams.engine.coincident_peak import CENTRAL
from streams.engine.fleet import Fleet
from streams.errors import GridshiftError

#: When ERCOT publishes the day-ahead market (energy and ancillary services): about 13:30
#: Central on the day before delivery.
DAM_PUBLICATION = time(13, 30)
#: The MCPC columns of the shared files -> the engine's reserve products.
MCPC_COLUMNS = {
    "dam_mcpc_regup_usd_per_mw_h": "reg_up",
    "dam_mcpc_regdn_usd_per_mw_h": "reg_down",
    "dam_mcpc_rrs_usd_per_mw_h": "rrs",
    "dam_mcpc_ecrs_usd_per_mw_h": "ecrs",
    "dam_mcpc_nspin_usd_per_mw_h": "non_spin",
}
HOUR = pd.Timedelta(hours=1)


def read_mcpc(paths: Sequence[Path]) -> pd.DataFrame:
    """Hourly MCPC by product: ``start_utc`` (tz-aware) and one column per product present in
    the files (blank cells, e.g. ECRS before 2023-06-10, stay NaN: no price, no event)."""
    frames = []
    for path in paths:
        try:
            raw = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise GridshiftError(f"cannot read reserve prices {path}: {exc}") from exc
        if "interval_start_utc" not in raw.columns:
            raise GridshiftError(f"{path}: no interval_start_utc column (an MCPC table?)")
        frame = pd.DataFrame(
            {"start_utc": pd.to_datetime(raw["interval_start_utc"], utc=True, format="ISO8601")}
        )
        for column, product in MCPC_COLUMNS.items():
            if column in raw.columns:
                frame[product] = pd.to_numeric(raw[column], errors="coerce").astype(float)
        frames.append(frame)
    if not frames:
        return pd.DataFrame({"start_utc": pd.Series([], dtype="datetime64[ns, UTC]")})
    table = pd.concat(frames, ignore_index=True)
    table = table.drop_duplicates("start_utc", keep="last").sort_values("start_utc")
    return table.reset_index(drop=True)


def published_at(start_utc: pd.Timestamp) -> datetime:
    """When the day-ahead price of the hour starting at ``start_utc`` became known: 13:30
    Central on the day before its Central delivery day."""
    delivery = start_utc.tz_convert(CENTRAL).date()
    day_before = delivery - timedelta(days=1)
    return datetime.combine(day_before, DAM_PUBLICATION, tzinfo=CENTRAL).astimezone(
        start_utc.tzinfo
    )


def reserve_price_schedule(
    table: pd.DataFrame, region: str, start: datetime, end: datetime
) -> list[tuple[datetime, ReservePriceEvent]]:
    """The MCPC hours overlapping [start, end) as events with their publication time, oldest
    first (a negative or missing price gives no event)."""
    rows = table[
        (table["start_utc"] + HOUR > pd.Timestamp(start)) & (table["start_utc"] < pd.Timestamp(end))
    ]
    out: list[tuple[datetime, ReservePriceEvent]] = []
    products = [p for p in MCPC_COLUMNS.values() if p in rows.columns]
    for _, row in rows.iterrows():
        begin = row["start_utc"]
        known = published_at(begin)
        for product in products:
            price = float(row[product])
            if not np.isfinite(price) or price < 0.0:
                continue
            out.append(
                (
                    known,
                    ReservePriceEvent(
                        interval_start=begin.to_pydatetime(),
                        interval_end=(begin + HOUR).to_pydatetime(),
                        region=region,
                        product=product,
                        price_usd_per_mw_h=min(price, 100_000.0),
                    ),
                )
            )
    out.sort(key=lambda item: (item[0], item[1].interval_start))
    return out


def mcpc_on_grid(table: pd.DataFrame, starts: Sequence[datetime]) -> dict[str, FloatArray]:
    """Each product's actual MCPC ($/MW-h) for every backtest interval (0 where unknown: an
    hour without a clearing price pays nothing)."""
    grid = pd.DatetimeIndex(starts).tz_convert("UTC").floor("h")
    indexed = table.set_index("start_utc")
    out: dict[str, FloatArray] = {}
    for product in MCPC_COLUMNS.values():
        if product in indexed.columns:
            values = indexed[product].reindex(grid).to_numpy(dtype=float)
            out[product] = np.nan_to_num(values, nan=0.0)
    return out


def reserve_revenue_usd(
    reserve: dict[str, FloatArray], mcpc: dict[str, FloatArray], hours: FloatArray
) -> float:
    """Reserve MW held per product x hours (0 where not scored) x the actual MCPC."""
    total = 0.0
    for product, held in reserve.items():
        price = mcpc.get(product)
        if price is not None:
            total += float((held * hours * price[None, :]).sum())
    return total


def naive_peak_hours(frame: pd.DataFrame, *, at_offer: bool = False) -> set[pd.Timestamp]:
    """The hour starts (UTC) today's practice curtails for 4CP: 15:00-18:00 Central on June-
    September days when the day-ahead load forecast exceeds the month-to-date actual peak.

    ``frame`` is the forecaster's :func:`summer_frame` (read once, for both alerts);
    ``at_offer``: the alert as it can be known at the day-ahead offer, before the day's reserve
    is sold (``naive_flags(..., at_offer=True)``); else as decided on the day."""
    flags = naive_flags(frame, at_offer=at_offer)
    return {pd.Timestamp(t) for t, f in zip(frame["start_utc"], flags, strict=True) if f > 0}


def todays_practice_mining(
    fleet: Fleet,
    starts: Sequence[datetime],
    threshold_mining: FloatArray,
    peak_hours: set[pd.Timestamp],
    peak_region: str | None,
) -> FloatArray:
    """The threshold rule's mining, off in the naive 4CP hours at sites of ``peak_region``."""
    curtail = np.array([pd.Timestamp(t).floor("h") in peak_hours for t in starts], dtype=bool)
    mining = threshold_mining.copy()
    for i, site in enumerate(fleet.sites):
        if peak_region is not None and site.carbon_region == peak_region:
            mining[i, curtail] = 0.0
    return mining


def todays_practice_day_ahead_plan(
    fleet: Fleet,
    starts: Sequence[datetime],
    *,
    room: FloatArray,
    day_ahead_price: FloatArray,
    breakeven: FloatArray,
    peak_hours: set[pd.Timestamp],
    peak_region: str | None,
) -> FloatArray:
    """The mining today's practice expects to run when it offers reserve in the day-ahead
    market: all of it (``room``) where the hour's day-ahead price is at or below break-even,
    none in ``peak_hours`` (its 4CP alert as known at the offer), none where no day-ahead
    price is known.

    A sold MW is an obligation for the whole hour (ERCOT settles a failure to provide, since
    2024-06-27 at up to the real-time reserve price, which the shared data does not have), so
    the offer is made from what is known before delivery, not from the real-time prices the
    fleet later curtails on.
    """
    with np.errstate(invalid="ignore"):
        expected = day_ahead_price <= breakeven
    return todays_practice_mining(
        fleet, starts, np.where(expected, room, 0.0), peak_hours, peak_region
    )


def hold_sold_reserve(mining: FloatArray, sold: dict[str, FloatArray]) -> FloatArray:
    """Mining that keeps every MW sold running (the obligation): at least the sold total."""
    held = mining
    if sold:
        held = np.maximum(mining, np.sum(list(sold.values()), axis=0))
    return held


def todays_practice_reserve(
    fleet: Fleet, mining: FloatArray, mcpc: dict[str, FloatArray] | None = None
) -> dict[str, FloatArray]:
    """All running mining offered as reserve, in the site's first qualified product (up to its
    reserve limit): the operator cannot know which product will clear higher.

    With ``mcpc`` (each product's clearing price per interval, 0 where the market had none),
    the offer goes in each interval to the first qualified product the market ran then: before
    ECRS existed (2023-06-10) an ECRS-first site offers RRS, as an operator would, instead of
    nothing."""
    out: dict[str, FloatArray] = {}
    for i, site in enumerate(fleet.sites):
        if not site.reserve_products:
            continue
        if mcpc is None:
            product = site.reserve_products[0]
            held = out.setdefault(product, np.zeros_like(mining))
            held[i] = np.minimum(mining[i], site.reserve_max_for(product))
            continue
        unassigned = np.ones(mining.shape[1], dtype=bool)
        for product in site.reserve_products:
            price = mcpc.get(product)
            if price is None:
                continue
            here = unassigned & (price > 0.0)
            held = out.setdefault(product, np.zeros_like(mining))
            held[i, here] = np.minimum(mining[i, here], site.reserve_max_for(product))
            unassigned &= ~here
    return out


def demand_at_peaks_mw(
    starts: Sequence[datetime], grid_import: FloatArray, peaks: Sequence[datetime]
) -> list[float]:
    """The fleet's grid import (MW) in the interval holding each realised peak in the window."""
    if not starts:
        return []
    step = starts[1] - starts[0] if len(starts) > 1 else timedelta(minutes=15)
    out = []
    for peak in peaks:
        for k, begin in enumerate(starts):
            if begin <= peak < begin + step:
                out.append(float(grid_import[:, k].sum()))
                break
    return out
