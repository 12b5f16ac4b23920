"""The backtest report (issue 13, items 8 and 10 and the decisions' notes): plots that name the
strategy, show the year, draw held set-points as steps and keep legends off the data; wording a
reader does not trip over; and a data-treatment section that also says what the decisions
assumed. Tables are SYNTHETIC, written by the tests into their own folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

import streams.backtest.report as report_module
from streams.backtest.report import BacktestResult, compared, write_report
from tests.backtest.own import backtest, own_scenario, own_table, site_toml

SPIKE = [30.0] * 50 + [900.0] * 4 + [30.0] * 42  # one evening above break-even


@pytest.fixture
def spiky(tmp_path: Path) -> BacktestResult:
    own_table(tmp_path, price=SPIKE)
    return backtest(own_scenario(tmp_path))


def figures_of(result: BacktestResult, out: Path, monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    drawn: list[Figure] = []

    def keep(fig: Figure, path: Path) -> Path:
        fig.canvas.draw()
        drawn.append(fig)
        return path

    monkeypatch.setattr(report_module, "_save", keep)
    write_report(result, out)
    return drawn


def test_the_dispatch_plot_names_strategy_and_node_shows_the_year_and_draws_steps(
    spiky: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatch, *_ = figures_of(spiky, tmp_path / "r", monkeypatch)
    title = dispatch.axes[0].get_title()
    assert title == (
        "gridshift (MPC) dispatch against the HB_SOUTH price\nthe day around its highest scored "
        "price (2024-08-18 17:30Z)"
    )
    assert any("2024" in t.get_text() for t in dispatch.axes[0].get_xticklabels())
    lines = [line for ax in dispatch.axes for line in ax.get_lines()]
    assert lines
    assert all(line.get_drawstyle() == "steps-post" for line in lines)


def test_legends_sit_outside_every_plot_area(
    spiky: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for fig in figures_of(spiky, tmp_path / "r", monkeypatch):
        legends = [*fig.legends, *(legend for ax in fig.axes if (legend := ax.get_legend()))]
        for legend in legends:
            box = legend.get_window_extent()
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent()), fig.axes[0].get_title()


def test_coincident_strategies_stay_distinguishable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flat prices below break-even: every strategy does the same, and each curve says so."""
    own_table(tmp_path)
    result = backtest(own_scenario(tmp_path))
    _, margin, emissions = figures_of(result, tmp_path / "r", monkeypatch)
    labels = [str(line.get_label()) for line in margin.axes[0].get_lines()]
    assert labels[0] == "mining always on (reference)"
    assert labels[1].startswith("gridshift (MPC) (= perfect-foresight oracle, price threshold")
    styles = {(line.get_color(), line.get_linestyle()) for line in margin.axes[0].get_lines()}
    assert len(styles) == 4
    # No PPA or on-site supply: market-based emissions would repeat the location-based bars.
    assert [p.get_label() for p in emissions.axes[0].containers] == ["location-based"]


def test_wording(tmp_path: Path) -> None:
    own_table(tmp_path, price=SPIKE, drop=range(30, 35))
    text = write_report(backtest(own_scenario(tmp_path)), tmp_path / "r").read_text()
    assert "$-" not in text
    assert "1 sites" not in text and "fleet: 1 site," in text
    assert "days" not in text and "0 day" not in text
    assert compared(-1617.4, "the price-threshold rule") == (
        "$1,617 less than the price-threshold rule"
    )
    assert compared(0.2, "x") == "the same as x"


def test_the_report_says_what_the_decisions_assumed(tmp_path: Path) -> None:
    own_table(tmp_path)
    battery = site_toml(battery_power_mw=5.0, battery_energy_mwh=10.0)
    result = backtest(own_scenario(tmp_path, site=battery))
    decided = len(result.dispatch["gridshift"].decisions)
    assert decided == 95
    assert (
        f"{decided} of {decided} decisions: battery charge assumed empty (a backtest has no "
        "telemetry)"
    ) in result.notes
    text = write_report(result, tmp_path / "r").read_text()
    assert "What the gridshift decisions assumed (decisions per kind of note):" in text
    assert "price held at the last known value over later horizon steps" in text
