"""Shaped PPAs for scoring (issue #14 item 4): a site's contracted carbon-free supply follows the
hourly shape of wind, solar or both, instead of the flat ``SiteConfig.ppa_mw``.

The shape comes from a generation-by-fuel table (the shared
``ercot/ercot_fuel_mix_ci_eia930_hourly_2022.csv``: ``datetime_utc``, ``wind_mw``,
``solar_mw``): shape = generation / max (``basis = "nameplate"``: ``ppa_mw`` is the contract's
nameplate, the hourly MW never exceeds it) or generation / mean (``basis = "average"``:
``ppa_mw`` is the average MW delivered over the profile's year). The table covers one year
(2022): any backtest hour takes the value of the same month, day and UTC hour of that year
(29 February takes 28 February), a typical-year profile, not the year's actual weather.

The scoring reads the shape on the backtest grid (hourly CFE score, market-based emissions). The
optimizer sees it the way a live worker would: as ``grid.ppa.v1`` forecast events, one per
shaped site and hour (:func:`ppa_supply_rows`, published by :mod:`streams.backtest.events` when
each UTC day's day-ahead prices are released), which the engine reads per horizon step, the
flat ``ppa_mw`` where none covers a step. The forecast is the same typical-year shape the
scoring uses: a contract profile known ahead, not a weather forecast with its errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from optimizer.value import FloatArray
from streams.engine.fleet import Fleet
from streams.errors import GridshiftError

Profile = Literal["wind", "solar", "wind+solar"]
Basis = Literal["nameplate", "average"]
TIME_COLUMN = "datetime_utc"


def read_shape(path: Path, profile: Profile, basis: Basis) -> pd.Series:
    """The profile's hourly shape indexed by (month, day, hour) UTC: generation / max or /
    mean of the file's year."""
    columns = [f"{fuel}_mw" for fuel in profile.split("+")]
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise GridshiftError(f"cannot read the PPA profile table {path}: {exc}") from exc
    missing = [c for c in (TIME_COLUMN, *columns) if c not in table.columns]
    if missing:
        raise GridshiftError(f"{path.name}: no column {', '.join(missing)} for ppa profile")
    at = pd.to_datetime(table[TIME_COLUMN], utc=True, format="ISO8601")
    generation = table[columns].apply(pd.to_numeric, errors="coerce").clip(lower=0).sum(axis=1)
    scale = float(generation.max() if basis == "nameplate" else generation.mean())
    if not np.isfinite(scale) or scale <= 0:
        raise GridshiftError(f"{path.name}: no {profile} generation to shape a PPA")
    key = pd.MultiIndex.from_arrays([at.dt.month, at.dt.day, at.dt.hour])
    shape = pd.Series((generation / scale).to_numpy(dtype=float), index=key)
    return shape[~shape.index.duplicated(keep="first")]


def shape_on_grid(shape: pd.Series, starts: Sequence[datetime]) -> FloatArray:
    """The shape at every backtest interval (same month, day, UTC hour of the profile's year;
    29 February as 28 February; an hour the table lacks holds the nearest earlier value)."""
    keys = []
    for t in pd.DatetimeIndex(starts).tz_convert("UTC"):
        day = 28 if (t.month, t.day) == (2, 29) else t.day
        keys.append((t.month, day, t.hour))
    values = shape.reindex(pd.MultiIndex.from_tuples(keys)).to_numpy(dtype=float)
    series = pd.Series(values).ffill().bfill().fillna(0.0)
    out: FloatArray = series.to_numpy(dtype=float)
    return out


def shaped_ppa_mw(
    fleet: Fleet, starts: Sequence[datetime], shape: pd.Series, sites: Sequence[str] = ()
) -> FloatArray:
    """Per site and interval, the PPA MW: ``ppa_mw`` x shape at the sites named (all sites
    when none), the flat ``ppa_mw`` elsewhere."""
    on_grid = shape_on_grid(shape, starts)
    chosen = set(sites) or {s.site_id for s in fleet.sites}
    rows = [
        s.ppa_mw * on_grid if s.site_id in chosen else np.full(len(starts), s.ppa_mw)
        for s in fleet.sites
    ]
    out: FloatArray = np.vstack(rows) if rows else np.zeros((0, len(starts)))
    return out


#: The columns of :func:`ppa_supply_rows` (also :attr:`GridHistory.ppa`).
PPA_COLUMNS = ("site_id", "interval_start_utc", "interval_end_utc", "supply_mw")


def ppa_supply_rows(
    fleet: Fleet, hours: Sequence[datetime], shape: pd.Series, sites: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per shaped site (all sites when none are named) and hour start: the PPA MW
    expected over that hour (``ppa_mw`` x shape), the rows the backtest publishes as
    ``grid.ppa.v1`` forecast events. Sites without a PPA (``ppa_mw`` 0) get none."""
    on_grid = shape_on_grid(shape, hours) if len(hours) else np.zeros(0)
    chosen = set(sites) or {s.site_id for s in fleet.sites}
    starts = pd.DatetimeIndex(hours).tz_convert("UTC") if len(hours) else pd.DatetimeIndex([])
    frames = [
        pd.DataFrame(
            {
                "site_id": s.site_id,
                "interval_start_utc": starts,
                "interval_end_utc": starts + pd.Timedelta(hours=1),
                "supply_mw": s.ppa_mw * on_grid,
            }
        )
        for s in fleet.sites
        if s.site_id in chosen and s.ppa_mw > 0
    ]
    if not frames:
        return pd.DataFrame(columns=list(PPA_COLUMNS))
    return pd.concat(frames, ignore_index=True).sort_values(
        ["interval_start_utc", "site_id"], kind="stable", ignore_index=True
    )
