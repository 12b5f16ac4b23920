"""The parent of a long backtest holds few sites x intervals arrays (issue #16): scoring builds
its terms one at a time, the threshold rule shares always-on's GPU and pool arrays, and large
set-point files are written a block of sites at a time. Each keeps the results bit-identical.
Arrays and tables are SYNTHETIC (random numbers, or the tests' own table)."""

from __future__ import annotations

import dataclasses
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from optimizer.value import FloatArray, emissions_kg, energy_cost_usd
from streams.backtest import trace
from streams.backtest.run import (
    Actuals,
    Dispatch,
    Score,
    _baseline,
    run_always_on,
    run_threshold,
    score,
)
from streams.engine.fleet import Fleet
from tests.backtest.own import backtest, own_scenario, own_table, site_toml
from tests.factories import mining_site

SPIKE = [30.0] * 50 + [900.0] * 4 + [30.0] * 42


def _reference_score(fleet: Fleet, act: Actuals, dispatch: Dispatch) -> Score:
    """The scoring as it was before it dropped its terms early: every term a full array."""
    sites = fleet.sites
    hours = np.where(act.scored, act.hours, 0.0)
    gpu_value = np.array([[s.gpu_value_usd_per_mwh] for s in sites])
    floor = np.array([[s.gpu_floor_mw] for s in sites])
    ppa = act.ppa if act.ppa is not None else np.array([[s.ppa_mw] for s in sites])
    pue = np.array([[s.pue] for s in sites])
    imp = dispatch.grid_import
    energy = energy_cost_usd(imp, hours, act.price)
    mining_revenue = dispatch.mining * hours * act.mining_revenue
    gpu_revenue = dispatch.gpu * hours * gpu_value + dispatch.routed_revenue_usd * act.scored
    unmatched = np.maximum(0.0, imp - ppa)
    facility = pue * (dispatch.mining + dispatch.gpu + dispatch.routed)
    n = len(act.starts)
    gpu = np.array([[s.firm_gpu_demand_mw] * n for s in sites])
    envelope = np.array([[(s.interconnect_mw + s.onsite_cfe_mw) / s.pue] for s in sites])
    capacity = np.array([[s.mining_capacity_mw] for s in sites])
    room = np.clip(envelope - gpu - np.zeros_like(gpu), 0.0, capacity)  # no pools here
    spikes = act.price > act.breakeven
    margin = (mining_revenue + gpu_revenue - energy).sum(axis=0)
    facility_mwh = float((facility * hours).sum())
    with_carbon = ~np.isnan(act.carbon) & act.scored
    carbon = np.nan_to_num(act.carbon)
    emissions = emissions_kg(imp, hours, carbon) * with_carbon
    emissions_market = emissions_kg(unmatched, hours, carbon) * with_carbon
    short = np.maximum(0.0, room - dispatch.mining)
    return Score(
        energy_cost_usd=float(energy.sum()),
        mining_revenue_usd=float(mining_revenue.sum()),
        gpu_revenue_usd=float(gpu_revenue.sum()),
        sla_shortfall_mwh=float((np.maximum(0.0, floor - dispatch.gpu) * hours).sum()),
        mining_mwh=float((dispatch.mining * hours).sum()),
        gpu_mwh=float(((dispatch.gpu + dispatch.routed) * hours).sum()),
        mwh_shed_in_spikes=float((short * hours)[spikes].sum()),
        emissions_location_t=float(emissions.sum()) / 1000.0,
        emissions_market_t=float(emissions_market.sum()) / 1000.0,
        cfe_score=1.0 - float((unmatched * hours).sum()) / facility_mwh,
        margin_by_interval=margin,
        mwh_curtailed=float((short * hours).sum()),
        hours_curtailed=float(
            (
                act.hours * (act.scored & (dispatch.mining.sum(axis=0) < 0.99 * room.sum(axis=0)))
            ).sum()
        ),
    )


def _random_run(n_sites: int, n_steps: int) -> tuple[Fleet, Actuals, Dispatch]:
    """A fleet of ``n_sites`` and random (SYNTHETIC) actuals and set-points over ``n_steps``."""
    rng = np.random.default_rng(16)
    fleet = Fleet(
        sites=tuple(
            mining_site(site_id=f"s{i}", pue=1.0 + 0.01 * i, ppa_mw=float(i % 7))
            for i in range(n_sites)
        )
    )
    start = datetime(2024, 6, 1, 5, tzinfo=UTC)
    starts = [start + k * timedelta(minutes=15) for k in range(n_steps)]

    def grid(scale: float) -> FloatArray:
        return rng.random((n_sites, n_steps)) * scale

    carbon = grid(600.0)
    carbon[:, : n_steps // 10] = np.nan  # unknown at first
    act = Actuals(
        starts,
        0.25,
        grid(400.0) - 50.0,
        grid(400.0),
        carbon,
        rng.random(n_steps) * 0.06,
        grid(120.0),
        grid(150.0),
        rng.random(n_steps) > 0.1,
    )
    dispatch = Dispatch(grid(25.0), grid(8.0), grid(35.0), np.zeros((n_sites, n_steps)), grid(3.0))
    return fleet, act, dispatch


def test_scoring_term_by_term_gives_the_very_same_numbers() -> None:
    fleet, act, dispatch = _random_run(12, 700)
    got, want = score(fleet, act, dispatch), _reference_score(fleet, act, dispatch)
    for f in dataclasses.fields(Score):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(b, np.ndarray):
            assert np.array_equal(a, b), f.name
        else:
            assert a == b, f.name  # bit-identical, not approximately


def test_scoring_holds_a_few_sites_x_intervals_arrays_at_a_time() -> None:
    fleet, act, dispatch = _random_run(40, 3000)  # ~1 MB per array
    one = dispatch.mining.nbytes
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        score(fleet, act, dispatch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Every term at once (the reference above) is ~14 arrays; dropping each when summed, 5.
    assert peak - before < 6 * one


def test_the_threshold_rule_shares_always_on_arrays_and_equals_its_own_build() -> None:
    fleet, act, _ = _random_run(5, 300)
    always_on = run_always_on(fleet, act)
    alone = run_threshold(fleet, act, 1)
    shared = run_threshold(fleet, act, 1, always_on=always_on)
    for name in ("mining", "gpu", "grid_import", "routed", "routed_revenue_usd"):
        assert np.array_equal(getattr(alone, name), getattr(shared, name)), name
    assert shared.gpu is always_on.gpu and shared.routed is always_on.routed
    _, room = _baseline(fleet, act)
    assert np.array_equal(room, always_on.mining)


def test_the_report_holds_the_baselines_gpu_arrays_once(tmp_path: Path) -> None:
    own_table(tmp_path, price=SPIKE)
    result = backtest(own_scenario(tmp_path))
    assert result.dispatch["threshold"].gpu is result.dispatch["always_on"].gpu
    assert not np.array_equal(
        result.dispatch["threshold"].mining, result.dispatch["always_on"].mining
    )  # the spike: the rule stopped mining, always-on did not


def test_parquet_written_a_block_of_sites_at_a_time_holds_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_table(tmp_path, price=SPIKE)
    sites = "\n".join(site_toml(site_id=f"site-{c}") for c in "abc")
    result = backtest(own_scenario(tmp_path, site=sites))
    monkeypatch.setattr(trace, "MAX_CSV_ROWS", 10)
    whole, blocks = tmp_path / "whole", tmp_path / "blocks"
    whole.mkdir()
    blocks.mkdir()
    monkeypatch.setattr(trace, "PARQUET_BLOCK_ROWS", 10**9)
    trace.write_intervals(result, whole)
    monkeypatch.setattr(trace, "PARQUET_BLOCK_ROWS", 1)  # one site per block
    trace.write_intervals(result, blocks)
    a = pq.read_table(whole / trace.INTERVALS_PARQUET)
    b = pq.read_table(blocks / trace.INTERVALS_PARQUET)
    assert a.schema.equals(b.schema, check_metadata=True)
    assert a.equals(b)
    strategies = len(result.dispatch)
    assert pq.ParquetFile(whole / trace.INTERVALS_PARQUET).num_row_groups == strategies
    assert pq.ParquetFile(blocks / trace.INTERVALS_PARQUET).num_row_groups == 3 * strategies
