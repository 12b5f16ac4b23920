"""Sweeps (issue 16, items 2-4): the grid of variants, each validated by the strict scenario
model; resumable runs; a process pool and a real Dask LocalCluster giving the same results as
one process; the table and report; one-line errors. Most tables are SYNTHETIC (written by the
tests into their own folder, two days); one test reads the real ERCOT replay table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from streams.backtest.sweep import VARIANTS_DIR, Task, run_sweep, run_task
from streams.backtest.sweep_cli import sweep
from streams.backtest.sweep_report import write_sweep
from streams.backtest.sweep_spec import SweepSpec, build_spec, expand, parse_vary
from streams.errors import GridshiftError
from tests.backtest.own import own_scenario, own_table

SPIKY = ([30.0] * 60 + [900.0] * 6 + [30.0] * 30) * 2  # two days, an evening spike each


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    own_table(tmp_path, days=2, price=SPIKY)
    return own_scenario(tmp_path, end="2024-08-20T05:00:00Z")


def spec_of(scenario: Path, *vary: str, uncertain: tuple[str, ...] = ()) -> SweepSpec:
    return build_spec(str(scenario), vary, uncertain)


def scores(results: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(r["key"], r["scores"]) for r in results]


def test_the_grid_is_the_product_of_the_varied_keys_each_applied(scenario: Path) -> None:
    spec = spec_of(
        scenario, "convert_share=0,0.5,1", "horizon.hours=1,2", uncertain=("gpu_demand_share=0.8",)
    )
    variants = expand(spec)
    assert len(variants) == 6
    assert len({v.key for v in variants}) == 6
    half = next(
        v
        for v in variants
        if v.settings == {"convert_share": 0.5, "horizon.hours": 1, "gpu_demand_share": 0.8}
    )
    site = half.scenario.sites[0]
    hall = 25.0 + 8.0  # mining + GPU capacity as written
    assert site.gpu_capacity_mw == pytest.approx(0.5 * hall)
    assert site.mining_capacity_mw == pytest.approx(0.5 * hall)
    assert site.gpu_floor_mw == pytest.approx(5.0 / 8.0 * 0.5 * hall)  # same fraction of GPUs
    assert site.gpu_demand_mw == pytest.approx(0.8 * 0.5 * hall)
    assert half.scenario.horizon.hours == 1


def test_a_window_replays_the_same_fleet_on_another_stretch_of_the_market(scenario: Path) -> None:
    spec = build_spec(str(scenario), (), ("window=2024-08-18,2024-08-19",), window_days=0.5)
    first, second = expand(spec)
    assert (first.start.isoformat(), second.start.isoformat()) == (
        "2024-08-18T00:00:00+00:00",
        "2024-08-19T00:00:00+00:00",
    )
    assert (second.end - second.start).total_seconds() == 12 * 3600
    assert spec.uncertain == {"window": ["2024-08-18", "2024-08-19"]}  # uncertain wherever given


@pytest.mark.parametrize(
    ("vary", "said"),
    [
        ("sites.0.gpu_capacity_mx=1", "did you mean sites.0.gpu_capacity_mw?"),
        ("convert_shares=0.5", "did you mean convert_share?"),
        ("sites.3.pue=1.1", "sites has 1 item(s) in the scenario"),
        ("convert_share=1.5", "convert_share = 1.5: give a share from 0 to 1"),
        ("sites.0.gpu_floor_mw=50", "gpu_floor_mw cannot exceed gpu_capacity_mw"),
        ("horizon.hours", "write KEY=V1,V2,..."),
    ],
)
def test_a_bad_key_or_value_is_one_line_naming_the_fix(
    scenario: Path, vary: str, said: str
) -> None:
    with pytest.raises(GridshiftError) as caught:
        expand(spec_of(scenario, vary))
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


def test_parse_vary_reads_numbers_booleans_and_text() -> None:
    assert parse_vary("--vary", ["a=1,2.5,true,x"]) == {"a": [1, 2.5, True, "x"]}


def counting(calls: list[str]) -> Callable[[Task], dict[str, Any]]:
    def runner(task: Task) -> dict[str, Any]:
        calls.append(task.key)
        return run_task(task)

    return runner


def test_a_resumed_sweep_runs_only_the_missing_variants(scenario: Path, tmp_path: Path) -> None:
    spec = spec_of(scenario, "convert_share=0,0.5,1")
    out = tmp_path / "sweep"
    calls: list[str] = []
    first = run_sweep(spec, out, None, show_progress=False, runner=counting(calls))
    assert (first.ran, len(calls)) == (3, 3)
    (out / VARIANTS_DIR / f"{calls[1]}.json").unlink()  # as if stopped before it finished
    (out / VARIANTS_DIR / f"{calls[2]}.json").write_text("{", encoding="utf-8")  # cut short
    again = run_sweep(spec, out, None, show_progress=False, runner=counting(calls))
    assert (again.ran, again.skipped) == (2, 1)
    assert calls[3:] == calls[1:3]
    assert scores(again.results) == scores(first.results)
    third = run_sweep(spec, out, None, show_progress=False, runner=counting(calls))
    assert (third.ran, len(calls)) == (0, 5)


def test_a_process_pool_gives_the_results_of_one_process(scenario: Path, tmp_path: Path) -> None:
    spec = spec_of(scenario, "convert_share=0.2,0.5,1", uncertain=("gpu_demand_share=0.7,1",))
    serial = run_sweep(spec, tmp_path / "one", None, show_progress=False)
    pooled = run_sweep(spec, tmp_path / "two", None, workers=2, show_progress=False)
    assert pooled.ran == serial.ran == 6
    assert scores(pooled.results) == scores(serial.results)


def test_a_dask_local_cluster_gives_the_results_of_the_local_run(
    scenario: Path, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    spec = spec_of(scenario, "convert_share=0.3,1", uncertain=("gpu_demand_share=0.7,1",))
    local = run_sweep(spec, tmp_path / "local", None, show_progress=False)
    with distributed.LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        remote = run_sweep(
            spec, tmp_path / "dask", None, scheduler=cluster.scheduler_address, show_progress=False
        )
    assert remote.ran == 4
    assert scores(remote.results) == scores(local.results)


def test_the_table_and_report_show_percentiles_and_the_worst_case(
    scenario: Path, tmp_path: Path
) -> None:
    spec = spec_of(scenario, "convert_share=0,0.5", uncertain=("gpu_demand_share=0.7,0.85,1",))
    run = run_sweep(spec, tmp_path / "s", None, show_progress=False)
    report = write_sweep(run, spec, tmp_path / "s")
    table = pd.read_parquet(tmp_path / "s" / "sweep.parquet")
    assert len(table) == 6 * 4
    assert {
        "convert_share",
        "gpu_demand_share",
        "strategy",
        "net_margin_usd",
        "cfe_score",
        "energy_cost_usd",
        "regret_usd",
    } <= set(table.columns)
    assert len(pd.read_csv(tmp_path / "s" / "sweep.csv")) == 24
    text = report.read_text(encoding="utf-8")
    assert "| convert_share | strategy | count | mean | p10 | p50 | p90 | worst |" in text
    for plot in ("net_margin.png", "cost_vs_cfe.png"):
        assert (tmp_path / "s" / plot).stat().st_size > 0
    gridshift = table[(table["strategy"] == "gridshift") & (table["convert_share"] == 0.5)]
    worst = gridshift["net_margin_usd"].min()
    assert f"{worst:,.0f}" in text


def test_the_command_runs_and_says_a_bad_key_in_one_line(scenario: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    done = runner.invoke(
        sweep, [str(scenario), "--vary", "convert_share=0,1", "--out", str(out), "--workers", "1"]
    )
    assert done.exit_code == 0, done.output
    assert "2 variants (2 run, 0 already done)" in done.output
    assert (out / "report.md").is_file()
    bad = runner.invoke(sweep, [str(scenario), "--vary", "site.0.pue=1.1", "--out", str(out)])
    assert isinstance(bad.exception, GridshiftError)
    assert str(bad.exception) == "--vary site.0.pue: unknown key 'site' (did you mean sites?)"
    empty = runner.invoke(sweep, [str(scenario)])
    assert isinstance(empty.exception, GridshiftError)
    assert "nothing to vary" in str(empty.exception)


def test_the_shipped_sweep_file_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "scenarios" / "sweeps" / "miner-to-ai-host.toml"
    spec = build_spec(None, sweep_file=path)
    variants = expand(spec)
    assert len(variants) == 11 * 3 * 4
    assert spec.design_keys == ["convert_share"]
    assert json.dumps(spec.uncertain)


@pytest.mark.data
def test_real_market_windows_of_the_seed_scenario(data_dir: Path, tmp_path: Path) -> None:
    spec = build_spec(
        "miner-to-ai-host",
        ("convert_share=0.4,0.6",),
        ("window=2024-08-19,2024-12-09",),
        window_days=1,
    )
    run = run_sweep(spec, tmp_path / "real", data_dir, workers=2, show_progress=False)
    table = write_sweep(run, spec, tmp_path / "real")
    assert table.is_file()
    margins = {
        (r["settings"]["convert_share"], r["settings"]["window"]): r["scores"]["gridshift"][
            "net_margin_usd"
        ]
        for r in run.results
    }
    assert len(set(margins.values())) == 4  # each design and price path its own outcome
