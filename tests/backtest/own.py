"""A user's own folder for backtest tests: a SYNTHETIC canonical table and a scenario file that
names it by a relative path, both written by the tests themselves (never real data)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from streams.backtest.report import BacktestResult, run_backtest
from streams.backtest.scenario import load_scenario
from tests.factories import mining_site

START = "2024-08-18T05:00:00Z"
DAY_END = "2024-08-19T05:00:00Z"


def own_table(
    folder: Path,
    name: str = "own.csv",
    *,
    days: int = 1,
    price: float | list[float] = 30.0,
    drop: Iterable[int] = (),
    **columns: Any,
) -> Path:
    """``days`` of 15-minute canonical rows from :data:`START` at ``price`` (flat by default),
    carbon 400 g/kWh and hashprice 0.05 $/TH/day; a column given as None is left out, any
    other value replaces it; ``drop`` removes rows by position."""
    starts = pd.date_range(START, periods=days * 96, freq="15min")
    frame = pd.DataFrame(
        {
            "interval_start_utc": starts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "price_usd_per_mwh": price,
            "carbon_g_per_kwh": 400.0,
            "hashprice_usd_per_th_day": 0.05,
        }
    )
    for column, value in columns.items():
        if value is None:
            frame = frame.drop(columns=[column])
        else:
            frame[column] = value
    frame.drop(index=list(drop)).to_csv(folder / name, index=False)
    return folder / name


def site_toml(**overrides: object) -> str:
    """``[[sites]]`` of :func:`tests.factories.mining_site` (with ``overrides``)."""
    site = mining_site(**overrides).model_dump(exclude_defaults=True)
    return "[[sites]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in site.items())


def own_scenario(
    folder: Path,
    *,
    file: str = "own.csv",
    end: str = DAY_END,
    lag: int = 1,
    top: str = "",
    market: str = "",
    site: str | None = None,
    name: str = "scenario.toml",
) -> Path:
    """A scenario over one day from :data:`START` on the ``file`` table, one mining site."""
    path = folder / name
    path.write_text(
        f'name = "own"\ntitle = "own data"\ndescription = "a user\'s own table"\n'
        f'start = "{START}"\nend = "{end}"\nprice_lag_intervals = {lag}\n{top}\n'
        "[horizon]\nfine_steps = 4\nfine_minutes = 15\nhours = 2\n\n"
        f'[[markets]]\nnode = "HB_SOUTH"\nregion = "ERCOT"\nfile = "{file}"\n{market}\n'
        f"{site if site is not None else site_toml()}",
        encoding="utf-8",
    )
    return path


def backtest(path: Path, data_dir: Path | None = None, **kwargs: Any) -> BacktestResult:
    """The scenario at ``path`` backtested with its own folder as the base of its paths."""
    return run_backtest(load_scenario(path), data_dir, path.parent, show_progress=False, **kwargs)


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)
