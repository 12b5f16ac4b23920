"""ERCOT flexible-load value in the backtest: reserve prices known only from the day-ahead
publication, 4CP charged on every strategy, today's practice as a baseline, and the shipped
scenario's report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from streams.backtest.coincident_peak_history import summer_frame
from streams.backtest.flexible import (
    hold_sold_reserve,
    mcpc_on_grid,
    naive_peak_hours,
    published_at,
    read_mcpc,
    reserve_price_schedule,
    todays_practice_day_ahead_plan,
    todays_practice_reserve,
)
from streams.backtest.plots import margin_figure
from streams.backtest.report import (
    BacktestResult,
    markdown_table,
    run_backtest,
    summary_rows,
    write_report,
)
from streams.backtest.scenario import load_scenario, scenario_paths
from streams.cli import cli
from streams.engine.fleet import Fleet
from streams.errors import GridshiftError
from tests.backtest.own import backtest, own_scenario, own_table, site_toml
from tests.factories import mining_site

AUGUST = datetime(2023, 8, 7, 5, tzinfo=UTC)


def shipped(name: str, data_dir: Path, start: datetime, days: int) -> BacktestResult:
    """A shipped scenario backtested over ``days`` from ``start`` (real data)."""
    path = scenario_paths()[name]
    return run_backtest(
        load_scenario(path),
        data_dir,
        path.parent,
        start=start,
        end=start + timedelta(days=days),
        show_progress=False,
    )


def test_a_reserve_price_is_known_from_the_day_ahead_publication_only(tmp_path: Path) -> None:
    table = tmp_path / "mcpc.csv"
    table.write_text(
        "interval_start_utc,dam_mcpc_regup_usd_per_mw_h,dam_mcpc_ecrs_usd_per_mw_h\n"
        "2023-08-10T05:00:00Z,3.0,\n"  # 00:00 CDT on the 10th: ECRS blank -> no event
        "2023-08-10T23:00:00Z,4.0,400.0\n"
    )
    events = reserve_price_schedule(
        read_mcpc([table]),
        "ERCOT",
        datetime(2023, 8, 10, tzinfo=UTC),
        datetime(2023, 8, 11, tzinfo=UTC),
    )
    assert [(e.product, e.price_usd_per_mw_h) for _, e in events] == [
        ("reg_up", 3.0),
        ("reg_up", 4.0),
        ("ecrs", 400.0),
    ]
    # 13:30 CDT on the 9th = 18:30 UTC, before the delivery day, never after the hour starts.
    assert {when for when, _ in events} == {datetime(2023, 8, 9, 18, 30, tzinfo=UTC)}
    assert published_at(pd.Timestamp("2023-08-10T05:00:00Z")) < datetime(2023, 8, 10, 5, tzinfo=UTC)


@pytest.mark.data
def test_the_ercot_flexible_load_scenario_prices_4cp_and_reserves(
    data_dir: Path, tmp_path: Path
) -> None:
    # Holds the 2023-08-10 4CP interval.
    result = shipped("ercot-flexible-load", data_dir, AUGUST, days=7)
    scores = result.scores
    assert set(scores) == {"gridshift", "todays_practice", "threshold", "always_on", "oracle"}
    # Every strategy pays the realised 4CP charge on its import at the peak.
    for s in scores.values():
        assert len(s.demand_at_peaks_mw) == 1
        assert s.peak_charge_usd == pytest.approx(s.demand_at_peaks_mw[0] * 68.5 * 1000 / 4)
    assert scores["always_on"].demand_at_peaks_mw[0] > 100.0
    assert scores["gridshift"].demand_at_peaks_mw[0] < 30.0  # only GPU hosting left on
    # gridshift and the oracle sell reserve; today's practice offers running mining; the
    # simple baselines none.
    assert scores["gridshift"].reserve_revenue_usd > 0
    assert scores["oracle"].reserve_revenue_usd > 0
    assert scores["todays_practice"].reserve_revenue_usd > 0
    assert scores["threshold"].reserve_revenue_usd == 0 == scores["always_on"].reserve_revenue_usd
    net = {name: s.net_margin_usd for name, s in scores.items()}
    assert net["gridshift"] > net["todays_practice"] > net["always_on"]
    assert net["oracle"] >= net["gridshift"]
    report = write_report(result, tmp_path / "report").read_text()
    assert "## Flexible-load value" in report
    assert "today's practice" in report and "4CP charge $" in report
    # The value breakdown is drawn too (energy, 4CP, reserve per strategy).
    assert (tmp_path / "report" / "value_by_strategy.png").stat().st_size > 10_000
    assert "![value_by_strategy](value_by_strategy.png)" in report


def test_todays_practice_offers_the_first_product_the_market_ran() -> None:
    # SYNTHETIC: an ECRS-first site over three hours; ECRS clears only in the last (the market
    # had no ECRS before 2023-06-10), RRS in all.
    fleet = Fleet(sites=(mining_site(reserve_products=["ecrs", "rrs"], reserve_max_mw=10.0),))
    mining = np.array([[25.0, 4.0, 25.0]])
    mcpc = {"ecrs": np.array([0.0, 0.0, 50.0]), "rrs": np.array([5.0, 6.0, 7.0])}
    held = todays_practice_reserve(fleet, mining, mcpc)
    assert held["ecrs"].tolist() == [[0.0, 0.0, 10.0]]
    assert held["rrs"].tolist() == [[10.0, 4.0, 0.0]]  # never both in one hour
    # Without prices (the old call): the first qualified product, whatever the market ran.
    blind = todays_practice_reserve(fleet, mining)
    assert set(blind) == {"ecrs"} and blind["ecrs"].tolist() == [[10.0, 4.0, 10.0]]


@pytest.mark.data
def test_ecrs_is_absent_before_2023_06_10_and_nothing_is_sold_in_it(data_dir: Path) -> None:
    files = [data_dir / "ercot" / "ercot_dam_as_mcpc_hourly_2022_2024.csv"]
    table = read_mcpc(files)
    launch = datetime(2023, 6, 10, 5, tzinfo=UTC)  # ECRS's first operating day, 00:00 CDT
    schedule = reserve_price_schedule(table, "ERCOT", datetime(2022, 7, 1, tzinfo=UTC), launch)
    products = {e.product for _, e in schedule}
    assert "rrs" in products and "ecrs" not in products
    starts = [launch + timedelta(hours=k - 24) for k in range(48)]
    grid = mcpc_on_grid(table, starts)
    assert (grid["ecrs"][:24] == 0).all() and (grid["ecrs"][24:] > 0).all()
    # A 2022 run: gridshift sells RRS only; the ECRS steps are noted as unpriced.
    result = shipped("ercot-flexible-load", data_dir, datetime(2022, 7, 18, 5, tzinfo=UTC), days=2)
    reserve = result.dispatch["gridshift"].reserve
    assert float(reserve.get("ecrs", np.zeros(1)).sum()) == 0.0
    assert float(reserve["rrs"].sum()) > 0.0
    assert any("ecrs unknown" in note for note in result.dispatch["gridshift"].notes)


@pytest.mark.data
def test_the_real_time_scenario_sheds_the_july_2024_peak(data_dir: Path) -> None:
    path = scenario_paths()["ercot-flexible-load-rt"]
    scenario = load_scenario(path)
    assert scenario.step_minutes == 15 and scenario.price_lag_intervals == 1
    start = datetime(2024, 6, 30, 5, tzinfo=UTC)
    result = run_backtest(
        scenario,
        data_dir,
        path.parent,
        start=start,
        end=start + timedelta(days=2),  # the 4CPs of 06-30 17:30 and 07-01 16:45 CDT
        show_progress=False,
    )
    scores = result.scores
    for s in scores.values():
        assert len(s.demand_at_peaks_mw) == 2
        assert s.peak_charge_usd == pytest.approx(sum(s.demand_at_peaks_mw) * 68.5 * 1000 / 4)
    # July 1 (a month's first day): the forecaster's probabilities, issued on June 30 before
    # the day-ahead market, reach the plan that sells July 1's reserve, so nothing sold keeps
    # the miners on at the peak. (Issued at midnight, sold ECRS/RRS held 120 MW through it.)
    assert scores["gridshift"].demand_at_peaks_mw[1] < 30.0
    assert scores["always_on"].demand_at_peaks_mw[1] > 100.0
    assert scores["gridshift"].reserve_revenue_usd > 0


@pytest.mark.data
def test_the_peak_foresight_ceiling_knows_the_peaks_at_the_forecasters_issue_time(
    data_dir: Path, tmp_path: Path
) -> None:
    # 2024-06-30 17:30 CDT (a Sunday) and 2024-07-01 16:45 CDT. Known at the forecaster's
    # issue time (06:00 Central the day before), the same engine sheds both and keeps the
    # reserve it sells for those afternoons out of their way; told of July 1 only, it runs
    # through the Sunday. gridshift and the oracle are not touched by the extra run.
    path = scenario_paths()["ercot-flexible-load"]
    start = datetime(2024, 6, 28, 5, tzinfo=UTC)

    def run(**kwargs: Any) -> BacktestResult:
        return run_backtest(
            load_scenario(path),
            data_dir,
            path.parent,
            start=start,
            end=start + timedelta(days=4),
            show_progress=False,
            **kwargs,
        )

    result, plain = run(peak_foresight=True), run()
    scores = result.scores
    ceiling = scores["peak_foresight"]
    assert ceiling.demand_at_peaks_mw[0] < 30.0 and ceiling.demand_at_peaks_mw[1] < 30.0
    assert ceiling.reserve_revenue_usd > 0  # reserve prices reach it as they reach gridshift
    net = {name: s.net_margin_usd for name, s in scores.items()}
    assert net["oracle"] >= net["peak_foresight"] > net["gridshift"]
    assert ceiling.hours_curtailed < scores["gridshift"].hours_curtailed
    for name in ("gridshift", "oracle", "todays_practice"):
        assert plain.scores[name].net_margin_usd == scores[name].net_margin_usd
    report = write_report(result, tmp_path / "report").read_text()
    gap, forecast = net["oracle"] - net["gridshift"], net["peak_foresight"] - net["gridshift"]
    assert (
        f"of gridshift's ${gap:,.0f} gap to the oracle, ${forecast:,.0f} is the 4CP forecast's "
        f"and ${net['oracle'] - net['peak_foresight']:,.0f} the rest of the oracle's foresight"
    ) in report
    assert "| gridshift, 4CP known (ceiling) |" in report
    # The cumulative figure draws every strategy that ran and says it counts energy only.
    [axes] = margin_figure(result).axes
    drawn = {str(line.get_label()) for line in axes.get_lines()}
    assert {"gridshift, 4CP known (ceiling)", "today's practice"} <= {
        label.split(" (=")[0] for label in drawn
    }
    assert "energy only: the 4CP charge and reserve revenue" in axes.get_title()
    missed = run(peak_foresight=True, missed_peaks=[datetime(2024, 6, 30, 22, 30, tzinfo=UTC)])
    left = missed.scores["peak_foresight"]
    assert left.demand_at_peaks_mw[0] > 100.0 > 30.0 > left.demand_at_peaks_mw[1]
    assert "| gridshift, 4CP known but 2024-06-30 22:30Z |" in markdown_table(summary_rows(missed))


def test_missed_peaks_need_the_peak_foresight_run(tmp_path: Path) -> None:
    own_table(tmp_path)
    with pytest.raises(GridshiftError, match="--missed-peak needs --peak-foresight"):
        backtest(own_scenario(tmp_path), missed_peaks=[datetime(2024, 8, 18, 21, tzinfo=UTC)])


def test_peak_foresight_needs_4cp_in_the_scenario(tmp_path: Path) -> None:
    own_table(tmp_path)
    with pytest.raises(GridshiftError, match=r"needs 4CP in the scenario: own has no"):
        backtest(own_scenario(tmp_path), peak_foresight=True)


def test_the_cli_passes_peak_foresight_and_missed_peaks_through(tmp_path: Path) -> None:
    # SYNTHETIC table, no 4CP: the flags reach run_backtest, whose errors the CLI shows in one line.
    own_table(tmp_path)
    scenario = str(own_scenario(tmp_path))
    runner = CliRunner()
    out = runner.invoke(cli, ["backtest", scenario, "--peak-foresight", "--workers", "1"])
    assert isinstance(out.exception, GridshiftError)
    assert "needs 4CP in the scenario" in str(out.exception)
    out = runner.invoke(
        cli, ["backtest", scenario, "--missed-peak", "2024-08-18T21:00", "--workers", "1"]
    )
    assert isinstance(out.exception, GridshiftError)
    assert str(out.exception).startswith("--missed-peak needs --peak-foresight")


def test_todays_practice_sells_reserve_day_ahead_and_keeps_it_through_real_time_spikes() -> None:
    # SYNTHETIC: one site, four intervals. Day-ahead the second hour looks cheap, so the
    # practice sells 10 MW of RRS in it; in real time its price spikes and the threshold rule
    # curtails, but the sold 10 MW keep running. The third hour looked dear day-ahead: nothing
    # sold, nothing held. A 4CP alert hour (the fourth) is never sold either.
    fleet = Fleet(sites=(mining_site(reserve_products=["rrs"], reserve_max_mw=10.0),))
    starts = [datetime(2024, 8, 20, 20, tzinfo=UTC) + timedelta(hours=k) for k in range(4)]
    room = np.full((1, 4), 25.0)
    plan = todays_practice_day_ahead_plan(
        fleet,
        starts,
        room=room,
        day_ahead_price=np.array([[30.0, 30.0, 200.0, 30.0]]),
        breakeven=np.full((1, 4), 60.0),
        peak_hours={pd.Timestamp(starts[3])},
        peak_region="ERCOT",
    )
    assert plan.tolist() == [[25.0, 25.0, 0.0, 0.0]]
    sold = todays_practice_reserve(fleet, plan, {"rrs": np.full(4, 5.0)})
    assert sold["rrs"].tolist() == [[10.0, 10.0, 0.0, 0.0]]
    real_time = np.array([[25.0, 0.0, 0.0, 0.0]])  # the threshold rule and the 4CP alert
    assert hold_sold_reserve(real_time, sold).tolist() == [[25.0, 10.0, 0.0, 0.0]]
    # An unknown day-ahead price sells nothing (no offer without a price).
    blind = todays_practice_day_ahead_plan(
        fleet,
        starts,
        room=room,
        day_ahead_price=np.full((1, 4), np.nan),
        breakeven=np.full((1, 4), 60.0),
        peak_hours=set(),
        peak_region="ERCOT",
    )
    assert not blind.any()


@pytest.mark.data
def test_on_real_time_prices_todays_practice_holds_what_it_sold_day_ahead(data_dir: Path) -> None:
    # The 2024-08-20 evening: HB_SOUTH real-time prices far above break-even while the
    # day-ahead prices of those hours were not. The practice sold those hours day-ahead, so it
    # keeps the sold MW running (as gridshift keeps its own) instead of curtailing for free.
    result = shipped(
        "ercot-flexible-load-rt", data_dir, datetime(2024, 8, 20, 5, tzinfo=UTC), days=1
    )
    act = result.actuals
    practice = result.dispatch["todays_practice"]
    sold = sum(practice.reserve.values())
    assert isinstance(sold, np.ndarray) and sold.sum() > 0
    assert (practice.mining >= sold - 1e-9).all()  # every sold MW keeps running
    with np.errstate(invalid="ignore"):
        known_dear = act.known_price > act.breakeven
    held_through = known_dear & (practice.mining > 0)
    # The threshold rule would have curtailed all of these intervals.
    assert held_through.sum() >= 1
    assert (result.dispatch["threshold"].mining[held_through] == 0).all()
    # Hours whose day-ahead price was above break-even are never sold, even where the real-time
    # price later paid and the practice mined (read from the raw file, not through the project).
    replay = pd.read_csv(
        data_dir / "replay" / "ercot_replay_15min_2024-06-01_2024-12-31.csv",
        usecols=["interval_start_utc", "hb_south_da_spp_usd_mwh"],
    )
    replay.index = pd.to_datetime(replay["interval_start_utc"], utc=True)
    day_ahead = replay["hb_south_da_spp_usd_mwh"].reindex(pd.DatetimeIndex(act.starts))
    dear = (day_ahead.to_numpy()[None, :] > act.breakeven) & act.scored
    assert (dear & (practice.mining > 0)).any()
    assert sold[dear].sum() == 0


@pytest.mark.data
def test_todays_practice_keeps_its_offer_time_alert_hours_unsold(data_dir: Path) -> None:
    # 2022-07-06: the 4CP alert as knowable at the day-ahead offer fires, the one decided on the
    # day does not. The practice then mines those hours (no curtailment for 4CP) but never sold
    # them: it could not know on the day before that the alert would not hold.
    result = shipped("ercot-flexible-load", data_dir, datetime(2022, 7, 5, 5, tzinfo=UTC), days=2)
    summer = summer_frame(data_dir)
    offer_only = naive_peak_hours(summer, at_offer=True) - naive_peak_hours(summer)
    here = np.array([pd.Timestamp(t) in offer_only for t in result.actuals.starts])
    assert here.sum() >= 1
    practice = result.dispatch["todays_practice"]
    sold = sum(practice.reserve.values())
    assert isinstance(sold, np.ndarray)
    assert (practice.mining[:, here] > 0).all()
    assert (sold[:, here] == 0).all()
    # Elsewhere on those days it sold what it mined.
    assert sold[:, ~here].sum() > 0


def test_a_site_whose_market_has_no_day_ahead_prices_keeps_offering_what_it_runs(
    tmp_path: Path,
) -> None:
    # SYNTHETIC: two markets, one day. ERCOT's table has day-ahead prices (all above the
    # miners' break-even, so nothing is sold there day-ahead although the real-time price
    # pays); PJM's has none, so its site keeps the rule without a day-ahead view (all running
    # mining offered) instead of never selling.
    own_table(tmp_path, price=20.0, day_ahead_price_usd_per_mwh=900.0)
    own_table(tmp_path, "pjm.csv", price=20.0)
    (tmp_path / "mcpc.csv").write_text(
        "interval_start_utc,dam_mcpc_rrs_usd_per_mw_h\n"
        + "".join(
            f"{hour:%Y-%m-%dT%H:%M:%SZ},5.0\n"
            for hour in pd.date_range("2024-08-18T05:00:00Z", periods=24, freq="h")
        )
    )
    pjm = '\n[[markets]]\nnode = "PJM_DOM"\nregion = "PJM"\nfile = "pjm.csv"\n'
    reserve = 'reserve_products = ["rrs"]\nreserve_max_mw = 10.0\n'
    sites = (
        site_toml()
        + reserve
        + "\n"
        + site_toml(site_id="site-b", price_node="PJM_DOM", carbon_region="PJM")
        + reserve
    )
    top = '[reserves]\nfiles = ["mcpc.csv"]\nregion = "ERCOT"\n'
    result = backtest(own_scenario(tmp_path, market=pjm, site=sites, top=top))
    practice = result.dispatch["todays_practice"]
    sold = practice.reserve["rrs"]
    scored = result.actuals.scored
    assert (practice.mining[:, scored] > 0).all()  # both mine: the real-time price pays
    assert sold[0, scored].sum() == 0  # ERCOT: dear day-ahead, not sold
    assert (sold[1, scored] == 10.0).all()  # PJM: no day-ahead view, offers what it runs


@pytest.mark.data
def test_on_15_minute_steps_every_strategy_holds_reserve_by_the_hour(data_dir: Path) -> None:
    # ERCOT sells reserve by the hour. On 2024-07-01 the oracle (which knows the 4CP interval,
    # 21:45-22:00 UTC) used to hold 85 MW in three quarters of 21:00-22:00 and drop it for the
    # fourth, to shed mining at the peak: paid three quarters of an hour the market does not
    # sell by the quarter. Every strategy now holds the same MW through each hour.
    result = shipped(
        "ercot-flexible-load-rt", data_dir, datetime(2024, 7, 1, 5, tzinfo=UTC), days=1
    )
    hour = np.array([s.replace(minute=0) for s in result.actuals.starts])
    sellers = {"gridshift", "todays_practice", "oracle"}
    for strategy, dispatch in result.dispatch.items():
        assert bool(dispatch.reserve) == (strategy in sellers), strategy
        for product, held in dispatch.reserve.items():
            for h in np.unique(hour):
                quarters = held[:, hour == h]
                spread = float(np.ptp(quarters, axis=1).max())
                assert spread <= 1e-6, f"{strategy} {product} {h}: {quarters}"
    oracle = sum(result.dispatch["oracle"].reserve.values())
    assert isinstance(oracle, np.ndarray) and oracle.sum() > 0  # it still sells reserve
