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
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel
from tqdm import tqdm

from optimizer.value import FloatArray
from streams.backtest.chunks import run_gridshift_chunked
from streams.backtest.coincident_peak_history import (
    peak_signal_schedule,
    read_4cp,
    realised_charge_usd,
    realised_peak_schedule,
    summer_frame,
)
from streams.backtest.coverage import CLIPPED, Series, Window, align, known_at, window
from streams.backtest.emergencies import (
    EventImport,
    GridEmergency,
    curtail_in_events,
    imports_during,
    in_window,
    read_grid_events,
    requests_without_window,
)
from streams.backtest.flexible import (
    demand_at_peaks_mw,
    hold_sold_reserve,
    mcpc_on_grid,
    naive_peak_hours,
    read_mcpc,
    reserve_price_schedule,
    reserve_revenue_usd,
    todays_practice_day_ahead_plan,
    todays_practice_mining,
    todays_practice_reserve,
)
from streams.backtest.history import GridHistory, plural, utc_values
from streams.backtest.ledger import (
    DataLedger,
    SideSources,
    build_ledger,
    clearing_known,
    listed_months,
)
from streams.backtest.plots import (
    LABELS,
    dispatch_figure,
    emissions_figure,
    margin_figure,
    value_figure,
)
from streams.backtest.ppa import read_shape, shaped_ppa_mw
from streams.backtest.run import (
    Actuals,
    Dispatch,
    Progress,
    Score,
    _facility_import,
    actuals,
    run_always_on,
    run_oracle,
    run_threshold,
    score,
    timeline,
)
from streams.backtest.scenario import MarketData, Paths, Scenario, load_markets
from streams.backtest.trace import write_intervals, write_summary
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
    #: Grid emergencies in the window (``[emergencies]``), and per strategy the fleet's import
    #: during each and the MW reduced against always-on.
    emergencies: list[GridEmergency] = field(default_factory=list)
    event_imports: dict[str, list[EventImport]] = field(default_factory=dict)
    #: The realised 4CP interval starts (UTC) in the window, the ones the 4CP charge is taken at.
    peaks: list[datetime] = field(default_factory=list)
    #: Requests in the window the events table lists without a time window (no signal made).
    emergencies_left_out: list[str] = field(default_factory=list)
    #: Realised 4CP interval starts the peak-foresight run was not told of (``missed_peaks``).
    missed_peaks: list[datetime] = field(default_factory=list)

    def label(self, strategy: str) -> str:
        """The strategy's name in tables and figures; the peak-foresight run names the peaks
        it was not told of."""
        if strategy == "peak_foresight" and self.missed_peaks:
            return f"gridshift, 4CP known but {_peak_list(self.missed_peaks)}"
        return LABELS[strategy]

    @property
    def notes(self) -> list[str]:
        """The data ledger as one line per treatment or assumption."""
        return self.ledger.notes()

    def heading(self) -> str:
        """The scenario's title, naming the window run when it is not the file's."""
        starts = self.actuals.starts
        end = starts[-1] + timedelta(minutes=self.scenario.step_minutes)
        return self.scenario.heading(starts[0], end)

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
    workers: int = 1,
    decompose: bool = True,
    peak_foresight: bool = False,
    missed_peaks: Collection[datetime] = (),
) -> BacktestResult:
    """Load the markets, run every strategy over the period and score them.

    ``data_dir`` is needed only when the scenario names a ``data:`` path; relative paths
    resolve against ``scenario_dir``. A period the data does not cover is refused, or with
    ``clip_to_data`` cut to the covered part (the report says so at the top).

    ``workers`` > 1 runs gridshift in that many chunks side by side, each with a warm-up
    (:mod:`streams.backtest.chunks`); ``decompose`` False solves every round jointly (the
    earlier code path, for comparisons).

    ``peak_foresight`` adds gridshift run again with every realised 4CP interval known at the
    forecaster's issue time (:func:`realised_peak_schedule`): the ceiling of any 4CP forecast,
    which splits gridshift's gap to the oracle into what the forecast costs and what knowing
    prices in advance is worth; ``missed_peaks`` (realised interval starts) are left out of it,
    as a forecaster that missed them would.
    """
    start, end = start or scenario.start, end or scenario.end
    if end <= start:
        raise GridshiftError("the backtest window is empty: --end must be after --start")
    if missed_peaks and not peak_foresight:
        raise GridshiftError(
            "--missed-peak needs --peak-foresight (the peaks it names are left out of that run)"
        )
    if peak_foresight and scenario.coincident_peak is None:
        raise GridshiftError(
            f"--peak-foresight needs 4CP in the scenario: {scenario.name} has no "
            "[coincident_peak] table (see docs/SCENARIOS.md)"
        )
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
    if scenario.ppa is not None:
        ppa = scenario.ppa
        table = Paths(scenario_dir.absolute(), data_dir).resolve(ppa.file, "ppa.file")
        act.ppa = shaped_ppa_mw(fleet, starts, read_shape(table, ppa.profile, ppa.basis), ppa.sites)
    if act.warmup >= len(starts):
        raise GridshiftError(
            "no price becomes known within the period: widen it (prices are known "
            f"{plural(lag, 'interval')} after they start)"
        )
    history = market.history.window(
        pd.Timestamp(period.start) - pd.Timedelta(days=1), pd.Timestamp(period.end)
    )
    extras = flexible_extras(
        scenario,
        data_dir=data_dir,
        scenario_dir=scenario_dir,
        start=period.start,
        end=period.end,
        starts=starts,
        missed_peaks=missed_peaks,
    )
    cp, rs = scenario.coincident_peak, scenario.reserves
    live = _LiveRun(scenario, fleet, history, starts, lag, workers, watchdog, decompose)
    runs: dict[str, Callable[..., Dispatch]] = {
        "gridshift": partial(live, extras.live),
        "oracle": partial(
            run_oracle,
            fleet,
            history,
            starts,
            step_minutes,
            carbon_budget_t_per_day=scenario.fleet_carbon_budget_t_per_day,
            extra=extras.foresight,
            decompose=decompose,
        ),
    }
    if peak_foresight:
        runs["peak_foresight"] = partial(live, extras.peaks_known)
    dispatch, seconds = _timed(runs, len(starts), scenario.name, show_progress)
    _leave_out_restores(act, dispatch["gridshift"])
    dispatch.update(_baselines(fleet, act, lag))
    practice_plan: FloatArray | None = None
    if cp is not None or rs is not None or scenario.emergencies is not None:
        dispatch["todays_practice"], practice_plan = _todays_practice(
            fleet,
            act,
            dispatch,
            data_dir,
            cp.region if cp else None,
            mcpc=extras.mcpc,
            day_ahead=_day_ahead_prices(fleet, market, grid, step, hold.limit("price")),
        )
    event_imports = _emergency_response(
        scenario, fleet, act, dispatch, extras.emergencies, mcpc=extras.mcpc, plan=practice_plan
    )
    scores = {name: score(fleet, act, d) for name, d in dispatch.items()}
    _score_extras(scenario, fleet=fleet, act=act, dispatch=dispatch, scores=scores, extras=extras)
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
        sides=extras.sides,
    )
    return BacktestResult(
        scenario,
        fleet,
        act,
        dispatch,
        scores,
        ledger,
        period,
        seconds,
        extras.emergencies,
        event_imports,
        extras.peaks,
        extras.emergencies_left_out,
        sorted(missed_peaks),
    )


def _peak_list(peaks: Iterable[datetime]) -> str:
    return ", ".join(f"{t:%Y-%m-%d %H:%M}Z" for t in peaks)


def _timed(
    runs: dict[str, Callable[..., Dispatch]], intervals: int, desc: str, show_progress: bool
) -> tuple[dict[str, Dispatch], dict[str, float]]:
    """Each planning strategy run in turn under one progress bar; its dispatch and seconds."""
    dispatch: dict[str, Dispatch] = {}
    seconds: dict[str, float] = {}
    with tqdm(
        total=len(runs) * intervals,
        unit="interval",
        desc=desc,
        leave=False,
        disable=None if show_progress else True,
    ) as bar:
        for name, run in runs.items():
            clock = time.perf_counter()
            dispatch[name] = run(progress=bar.update)
            seconds[name] = time.perf_counter() - clock
    return dispatch, seconds


@dataclass(frozen=True)
class _LiveRun:
    """The live decision code over the backtest window, fed a given set of extra events (the
    4CP forecast for gridshift, the realised peaks at its issue time for the ceiling)."""

    scenario: Scenario
    fleet: Fleet
    history: GridHistory
    starts: list[datetime]
    lag: int
    workers: int
    watchdog: timedelta
    decompose: bool

    def __call__(self, extra: list[tuple[datetime, BaseModel]], progress: Progress) -> Dispatch:
        return run_gridshift_chunked(
            self.fleet,
            self.history,
            self.starts,
            self.scenario.horizon.build(),
            lag=self.lag,
            workers=self.workers,
            carbon_budget_t_per_day=self.scenario.fleet_carbon_budget_t_per_day,
            stale_price_after=self.watchdog,
            progress=progress,
            extra=extra,
            decompose=self.decompose,
        ).dispatch


@dataclass
class _Extras:
    """4CP and reserve inputs: events with the instant each is known (gridshift), the same as
    foresight (oracle), the realised peaks and the actual MCPC on the backtest grid."""

    live: list[tuple[datetime, BaseModel]]
    foresight: list[BaseModel]
    peaks: list[datetime]
    mcpc: dict[str, FloatArray]
    #: ``live`` with the 4CP forecast replaced by the realised peaks at its issue time.
    peaks_known: list[tuple[datetime, BaseModel]] = field(default_factory=list)
    emergencies: list[GridEmergency] = field(default_factory=list)
    #: Requests in the window the events table lists without a time window (no signal made).
    emergencies_left_out: list[str] = field(default_factory=list)
    #: What the 4CP list and the reserve prices cover (said in the data treatment).
    sides: SideSources = field(default_factory=SideSources)


def flexible_extras(
    scenario: Scenario,
    *,
    data_dir: Path | None,
    scenario_dir: Path,
    start: datetime,
    end: datetime,
    starts: list[datetime],
    missed_peaks: Collection[datetime] = (),
) -> _Extras:
    # What a flexible load earns besides energy: 4CP signals and reserve prices, each with the
    # instant it is known (gridshift), and what really happened (the oracle).
    live: list[tuple[datetime, BaseModel]] = []
    foresight: list[BaseModel] = []
    peaks: list[datetime] = []
    sides = SideSources()
    forecast: list[tuple[datetime, BaseModel]] = []
    known: list[tuple[datetime, BaseModel]] = []
    cp = scenario.coincident_peak
    if cp is not None:
        forecast += peak_signal_schedule(
            start,
            end,
            data_dir=data_dir,
            tariff_usd_per_kw_year=cp.tariff_usd_per_kw_year,
            min_probability=cp.min_probability,
            region=cp.region,
        )
        realised = partial(
            realised_peak_schedule,
            start,
            end,
            data_dir=data_dir,
            tariff_usd_per_kw_year=cp.tariff_usd_per_kw_year,
            region=cp.region,
        )
        try:
            known += realised(missed=missed_peaks)
        except ValueError as exc:
            raise GridshiftError(f"missed peaks: {exc}") from exc
        foresight += [event for _, event in realised()]
        table = read_4cp(data_dir)
        inside = table[
            (table["start_utc"] >= pd.Timestamp(start)) & (table["start_utc"] < pd.Timestamp(end))
        ]
        peaks = [t.to_pydatetime() for t in inside["start_utc"]]
        sides = SideSources(peak_months=listed_months(table))
    mcpc: dict[str, FloatArray] = {}
    rs = scenario.reserves
    if rs is not None:
        paths = Paths(scenario_dir.absolute(), data_dir)
        files = [paths.resolve(f, f"reserves.files[{i}]") for i, f in enumerate(rs.files)]
        prices_table = read_mcpc(files)
        schedule = reserve_price_schedule(prices_table, rs.region, start - timedelta(days=1), end)
        live += schedule
        foresight += [event for _, event in schedule]
        mcpc = mcpc_on_grid(prices_table, starts)
        sides = SideSources(
            sides.peak_months,
            clearing_known(prices_table, starts),
            ", ".join(f.name for f in files),
        )
    emergencies: list[GridEmergency] = []
    left_out: list[str] = []
    em = scenario.emergencies
    if em is not None:
        paths = Paths(scenario_dir.absolute(), data_dir)
        table = paths.resolve(em.file, "emergencies.file")
        emergencies = in_window(read_grid_events(table, em.region), start, end)
        left_out = requests_without_window(table, start, end)
        # gridshift hears each request when it was issued; the oracle knows it with its day.
        live += [(e.known, e.signal) for e in emergencies]
        foresight += [e.signal for e in emergencies]
    return _Extras(
        live=forecast + live,
        foresight=foresight,
        peaks=peaks,
        mcpc=mcpc,
        peaks_known=known + live,
        emergencies=emergencies,
        emergencies_left_out=left_out,
        sides=sides,
    )


def _score_extras(
    scenario: Scenario,
    *,
    fleet: Fleet,
    act: Actuals,
    dispatch: dict[str, Dispatch],
    scores: dict[str, Score],
    extras: _Extras,
) -> None:
    """The realised 4CP charge and the reserve revenue of every strategy, into its score."""
    cp, rs = scenario.coincident_peak, scenario.reserves
    starts, peaks, mcpc = act.starts, extras.peaks, extras.mcpc
    hours = np.where(act.scored, act.hours, 0.0)
    for name, d in dispatch.items():
        s = scores[name]
        if cp is not None:
            payers = [i for i, site in enumerate(fleet.sites) if site.carbon_region == cp.region]
            s.peak_charge_usd = sum(
                realised_charge_usd(starts, d.grid_import[i], peaks, cp.tariff_usd_per_kw_year)
                for i in payers
            )
            s.demand_at_peaks_mw = demand_at_peaks_mw(starts, d.grid_import[payers], peaks)
        if rs is not None:
            s.reserve_revenue_usd = reserve_revenue_usd(d.reserve, mcpc, hours)


def _emergency_response(
    scenario: Scenario,
    fleet: Fleet,
    act: Actuals,
    dispatch: dict[str, Dispatch],
    emergencies: list[GridEmergency],
    *,
    mcpc: dict[str, FloatArray],
    plan: FloatArray | None,
) -> dict[str, list[EventImport]]:
    """With ``[emergencies]``: today's practice curtails all mining in every request (its
    reserve is paid only for what still runs), and per strategy the import during each
    request. ``plan`` is the mining the practice sold reserve from (see
    :func:`_todays_practice`)."""
    em = scenario.emergencies
    if em is None:
        return {}
    step = timedelta(minutes=scenario.step_minutes)
    practice = dispatch["todays_practice"]
    practice.mining = curtail_in_events(
        fleet, act.starts, step, practice.mining, events=emergencies, region=em.region
    )
    practice.grid_import = _facility_import(fleet, practice.mining, practice.gpu + practice.routed)
    sold_from = practice.mining if plan is None else np.minimum(plan, practice.mining)
    practice.reserve = todays_practice_reserve(fleet, sold_from, mcpc or None)
    rows = [i for i, site in enumerate(fleet.sites) if site.carbon_region == em.region]
    reference = dispatch["always_on"].grid_import
    return {
        name: imports_during(
            act.starts, step, emergencies, d.grid_import, always_on_import=reference, rows=rows
        )
        for name, d in dispatch.items()
    }


def _todays_practice(
    fleet: Fleet,
    act: Actuals,
    dispatch: dict[str, Dispatch],
    data_dir: Path | None,
    peak_region: str | None,
    *,
    mcpc: dict[str, FloatArray],
    day_ahead: FloatArray | None,
) -> tuple[Dispatch, FloatArray]:
    """Today's practice, and the mining it sold reserve from: the threshold rule, off
    15:00-18:00 Central on the naive 4CP days, and reserve offered in the first qualified
    product that cleared.

    With day-ahead prices (``day_ahead``, sites x intervals) and reserve prices, the offer is
    made day-ahead (:func:`todays_practice_day_ahead_plan`: all mining in hours whose day-ahead
    price is at or below break-even, except the 4CP alert hours known at the offer) and the
    sold MW keep running through real-time prices above break-even, as gridshift's sold reserve
    does; only the day's own 4CP alert (decided on the day) curtails them. Without them, all
    mining the rule ran counts as offered (the rule then never fails an offer)."""
    threshold = dispatch["threshold"]
    summer = summer_frame(data_dir) if peak_region is not None else None
    on_the_day = naive_peak_hours(summer) if summer is not None else set()
    mining = todays_practice_mining(fleet, act.starts, threshold.mining, on_the_day, peak_region)
    plan = mining
    if day_ahead is not None and mcpc:
        at_offer = naive_peak_hours(summer, at_offer=True) if summer is not None else set()
        plan = todays_practice_day_ahead_plan(
            fleet,
            act.starts,
            room=dispatch["always_on"].mining,
            day_ahead_price=day_ahead,
            breakeven=act.breakeven,
            peak_hours=at_offer,
            peak_region=peak_region,
        )
        # A site whose market has no day-ahead prices at all keeps the rule without a
        # day-ahead view (all mining it ran counts as offered), not "never sells".
        plan = np.where(np.isnan(day_ahead).all(axis=1, keepdims=True), mining, plan)
        sold = todays_practice_reserve(fleet, plan, mcpc)
        # The sold MW keep running through real-time prices, but not through the day's own 4CP
        # alert: a peak costs far more than the sale, so the practice curtails and fails it
        # (scored as not paid: the payment is lost, no further charge, generous to the rule).
        mining = todays_practice_mining(
            fleet, act.starts, hold_sold_reserve(threshold.mining, sold), on_the_day, peak_region
        )
    sold = todays_practice_reserve(fleet, np.minimum(plan, mining), mcpc or None)
    out = Dispatch(
        mining,
        threshold.gpu,
        _facility_import(fleet, mining, threshold.gpu + threshold.routed),
        threshold.routed,
        threshold.routed_revenue_usd,
    )
    out.reserve = sold
    return out, plan


def _day_ahead_prices(
    fleet: Fleet, market: MarketData, grid: np.ndarray, step: timedelta, limit: timedelta
) -> FloatArray | None:
    """Each site's day-ahead price per interval (NaN where none), or None when no market
    of the scenario has day-ahead prices."""
    frame = market.history.frame
    if "day_ahead_price_usd_per_mwh" not in frame.columns:
        return None
    by_node = {
        node: align(
            Series.of(
                "price",
                node,
                "day-ahead",
                frame[frame["node"] == node],
                "day_ahead_price_usd_per_mwh",
            ),
            grid,
            step,
            limit,
        ).values
        for node in {s.price_node for s in fleet.sites}
    }
    prices = np.vstack([by_node[s.price_node] for s in fleet.sites])
    return None if np.isnan(prices).all() else prices


def _baselines(fleet: Fleet, act: Actuals, lag: int) -> dict[str, Dispatch]:
    """Mining always on and the price-threshold rule, which runs the GPUs and pools as
    always-on does: those sites x intervals arrays are held once (nothing writes them after;
    a strategy that changes a set-point replaces the array, as :func:`_emergency_response`
    does)."""
    always_on = run_always_on(fleet, act)
    return {
        "always_on": always_on,
        "threshold": run_threshold(fleet, act, lag, always_on=always_on),
    }


def _longest_interval(series: Iterable[Series]) -> timedelta:
    """The longest interval of the markets used (their prices arrive at that pace)."""
    longest: timedelta = max(
        pd.Timedelta(np.max(s.ends - s.starts)).to_pytimedelta() for s in series
    )
    return longest


def summary_rows(result: BacktestResult) -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    names = ["gridshift", "peak_foresight", "todays_practice", "threshold", "always_on", "oracle"]
    for name in [n for n in names if n in result.scores]:
        s = result.scores[name]
        rows.append(
            {
                "strategy": result.label(name),
                "net margin $": s.net_margin_usd,
                "energy margin $": s.energy_margin_usd,
                "4CP charge $": s.peak_charge_usd,
                "reserve $": s.reserve_revenue_usd,
                "hours curtailed": s.hours_curtailed,
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
    if value == 0:
        return "0"  # "0.000" read as a rounded figure ($0.000 of 4CP charge)
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
    """Write report.md, its plots, intervals.csv and summary.json (:mod:`trace`) into
    ``out_dir``; return the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        _save(dispatch_figure(result), out_dir / "price_vs_dispatch.png"),
        _save(margin_figure(result), out_dir / "cumulative_margin.png"),
        _save(emissions_figure(result), out_dir / "emissions.png"),
    ]
    if result.scenario.coincident_peak is not None or result.scenario.reserves is not None:
        plots.append(_save(value_figure(result), out_dir / "value_by_strategy.png"))
    sc = result.scenario
    act = result.actuals
    grid = result.scores["gridshift"]
    sites = result.fleet.sites
    end = act.starts[-1] + timedelta(minutes=sc.step_minutes)
    scored = int(act.scored.sum())
    lines = [f"# Backtest: {result.heading()}", ""]
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
        f"- {sc.price_timing()}; snapshots hold only data available at decision time",
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
    # A total over the sites with carbon data is not the fleet's: say so where it is read.
    uncovered = [s.site_id for i, s in enumerate(sites) if np.isnan(act.carbon[i]).all()]
    if uncovered and len(uncovered) < len(sites):
        lines.append(
            f"The t CO2 columns cover {len(sites) - len(uncovered)} of {len(sites)} sites: "
            f"no carbon data for {', '.join(uncovered[:5])}"
            f"{f' and {len(uncovered) - 5} more' if len(uncovered) > 5 else ''}."
        )
    if sc.carbon_neutral_target is not None:
        market = grid.emissions_market_t
        emitted = "n/a (no carbon data)" if math.isnan(market) else f"{market:,.1f} t"
        lines.append(
            f"Carbon-neutral target {sc.carbon_neutral_target:.0%}: hourly CFE score "
            f"{grid.cfe_score:.1%}, market-based emissions {emitted}."
        )
    if sc.coincident_peak is not None or sc.reserves is not None:
        lines += ["", "## Flexible-load value", ""]
        lines += _flexible_lines(result)
    if sc.ppa is not None:
        lines += ["", "## Hourly CFE against the shaped PPA", ""]
        lines += _ppa_lines(result)
    if sc.emergencies is not None:
        lines += ["", "## MW off the grid during each emergency", ""]
        lines += _emergency_lines(result)
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Data treatment", "", *result.ledger.markdown()]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # The figures' inputs, for recomputing them without gridshift (issue #14).
    write_intervals(result, out_dir)
    write_summary(result, out_dir)
    return report


def _flexible_lines(result: BacktestResult) -> list[str]:
    """gridshift against today's practice and the oracle, the fleet's demand at the realised
    4CP peaks and the reserve revenue."""
    sc = result.scenario
    lines: list[str] = []
    grid = result.scores["gridshift"]
    if "todays_practice" in result.scores:
        practice = result.scores["todays_practice"]
        versus = compared(grid.net_margin_usd - practice.net_margin_usd, "today's practice")
        lines.append(
            f"gridshift earns {versus} "
            f"(threshold + 15:00-18:00 curtailment on forecast-peak days + mining offered as "
            f"reserve day-ahead in hours whose day-ahead price is at or below break-even, the "
            "sold MW kept running); the oracle earns "
            f"${result.scores['oracle'].net_margin_usd:,.0f}."
        )
    if "peak_foresight" in result.scores:
        lines += ["", _peak_foresight_line(result)]
    if sc.coincident_peak is not None:
        lines += [
            "",
            f"4CP at ${sc.coincident_peak.tariff_usd_per_kw_year:g}/kW-year: fleet grid import "
            "(MW) at each realised peak in the window:",
            "",
        ]
        # A summer the 4CP list lacks has no peak to score, not a peak avoided: said here too.
        unlisted = [line for line in result.ledger.lines if line.startswith("4CP list has no")]
        none = "no peak in window" + (f" ({'; '.join(unlisted)})" if unlisted else "")
        for name, s in result.scores.items():
            at = ", ".join(f"{mw:,.1f}" for mw in s.demand_at_peaks_mw) or none
            lines.append(f"- {result.label(name)}: {at} (charge ${s.peak_charge_usd:,.0f})")
    if sc.reserves is not None:
        lines += ["", "Reserve revenue (MW held x hours x actual MCPC):", ""]
        lines += [
            f"- {result.label(name)}: ${s.reserve_revenue_usd:,.0f}"
            for name, s in result.scores.items()
        ]
    return lines


def _peak_foresight_line(result: BacktestResult) -> str:
    """gridshift's gap to the oracle split by the ceiling of a 4CP forecast: what the forecast
    costs (peaks known at its issue time) and what the rest of the oracle's foresight is worth.
    With peaks left out (``missed_peaks``) there is no such split: it names them instead."""
    net = {name: s.net_margin_usd for name, s in result.scores.items()}
    ceiling, grid, oracle = net["peak_foresight"], net["gridshift"], net["oracle"]
    gain = oracle - net["always_on"]
    share = (
        f" ({(ceiling - net['always_on']) / gain:.1%} of the oracle's gain over mining always "
        f"on, gridshift {(grid - net['always_on']) / gain:.1%})"
        if gain > 0
        else ""
    )
    told = "every realised 4CP interval"
    if result.missed_peaks:
        return (
            f"With {told} but {_peak_list(result.missed_peaks)} (left out with --missed-peak) "
            "known at the forecaster's issue time (06:00 Central the day before) and nothing "
            f"else, the same engine earns ${ceiling:,.0f}{share}, ${oracle - ceiling:,.0f} "
            "less than the oracle, the missed peaks included."
        )
    return (
        f"With {told} known at the forecaster's issue time (06:00 Central the day before) and "
        f"nothing else, the same engine earns ${ceiling:,.0f}{share}: of gridshift's "
        f"${oracle - grid:,.0f} gap to the oracle, ${ceiling - grid:,.0f} is the 4CP forecast's "
        f"and ${oracle - ceiling:,.0f} the rest of the oracle's foresight (prices, reserve "
        "prices and grid requests known with their day)."
    )


def _ppa_lines(result: BacktestResult) -> list[str]:
    """The shaped PPA and every strategy's hourly CFE score and market-based emissions."""
    ppa = result.scenario.ppa
    assert ppa is not None
    shaped = result.actuals.ppa
    hours = np.where(result.actuals.scored, result.actuals.hours, 0.0)
    delivered = float((shaped * hours).sum()) if shaped is not None else 0.0
    contracted = sum(s.ppa_mw for s in result.fleet.sites) * float(hours.sum())
    rule = (
        "the nameplate, shape = generation / max"
        if ppa.basis == "nameplate"
        else "the average MW, shape = generation / mean"
    )
    lines = [
        f"PPA shaped as {ppa.profile} (ppa_mw is {rule}), typical-year 2022 profile: "
        f"{delivered:,.0f} MWh over the scored intervals against {contracted:,.0f} MWh flat. "
        + (
            "gridshift and the oracle plan against this shape (grid.ppa.v1 forecasts released "
            "with each day's day-ahead prices)."
            if ppa.forecast
            else "Scoring only: gridshift plans against the flat ppa_mw."
        ),
        "",
        "| strategy | hourly CFE score | t CO2 market-based |",
        "|---|---|---|",
    ]
    for name in [n for n in LABELS if n in result.scores]:
        s = result.scores[name]
        lines.append(f"| {result.label(name)} | {s.cfe_score:.1%} | {_fmt(s.emissions_market_t)} |")
    return lines


def _emergency_lines(result: BacktestResult) -> list[str]:
    """Per grid request in the window and strategy: the fleet's average import over the
    request's intervals and the MW reduced against mining always on."""
    left_out = (
        [
            "",
            f"Left out ({len(result.emergencies_left_out)}): the events table gives no time "
            "window for these requests, so no signal was made and no strategy answered them: "
            + "; ".join(result.emergencies_left_out)
            + ".",
        ]
        if result.emergencies_left_out
        else []
    )
    if not result.emergencies:
        return ["No conservation request or emergency in the window.", *left_out]
    names = [n for n in LABELS if n in result.event_imports]
    lines = [
        "Fleet grid import, average MW over the intervals each request overlaps (MW reduced "
        "against mining always on). Requests reach gridshift when issued (else at their "
        "start), the oracle with their day; today's practice curtails all mining in each.",
        "",
        "| request | " + " | ".join(result.label(n) for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    by_label = {n: {e.label: e for e in result.event_imports[n]} for n in names}
    for event in result.emergencies:
        cells = []
        for n in names:
            found = by_label[n].get(event.label)
            cells.append(
                "-" if found is None else f"{found.import_mw:,.1f} ({found.reduced_mw:,.1f})"
            )
        lines.append(f"| {event.label} | " + " | ".join(cells) + " |")
    return lines + left_out


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _leave_out_restores(act: Actuals, gridshift: Dispatch) -> None:
    """After a gap, the live fail-safe brings mining back in staggered steps while the baselines
    restart at once: a data artefact, not a decision. Those intervals are not scored for any
    strategy, like the gap itself (counted in the data treatment)."""
    if gridshift.failsafe is None:
        return
    restoring = gridshift.failsafe & act.scored
    act.restoring = int(restoring.sum())
    act.scored = act.scored & ~restoring
