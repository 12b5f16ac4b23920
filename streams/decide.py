"""Deciding: from the fleet's state to dispatch decisions, the one code path shared by the live
worker (through :class:`~streams.planner.Planner`) and the offline backtest.

A decision round builds every ready site's snapshot, solves the fleet jointly (one compiled
model per set of ready sites), and returns decisions for the requested sites whose inputs
changed since their last decision.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from optimizer import (
    FleetModel,
    FleetPlan,
    FleetSnapshot,
    FleetSpec,
    Horizon,
    PoolSnapshot,
    PoolSpec,
)
from schemas import DispatchDecision, Trigger
from streams.sites import PoolConfig
from streams.state import FleetState
from streams.translate import SnapshotView, build_snapshot, to_decision


class Decider:
    """Owns the compiled fleet models and what was last decided per site."""

    def __init__(
        self,
        horizon: Horizon,
        *,
        pools: tuple[PoolConfig, ...] = (),
        carbon_budget_t_per_day: float | None = None,
        time_limit_s: float | None = None,
    ) -> None:
        self.horizon = horizon
        self.pools = pools
        self.time_limit_s = time_limit_s
        # A daily cap prorated over the horizon's length (uniform over the day).
        self.carbon_budget_t = (
            None
            if carbon_budget_t_per_day is None
            else carbon_budget_t_per_day * sum(horizon.step_minutes) / (24 * 60)
        )
        self.models: dict[tuple[str, ...], FleetModel] = {}
        self.last_version: dict[str, str] = {}

    def views(self, state: FleetState, now: datetime | None = None) -> dict[str, SnapshotView]:
        """Snapshots of every site that can be planned (price and hashprice known)."""
        return {
            site_id: view
            for site_id, site in state.sites.items()
            if (view := build_snapshot(state, site, self.horizon, now=now)) is not None
        }

    def pending(self, views: dict[str, SnapshotView], site_ids: list[str]) -> list[str]:
        """The requested sites that are ready and whose inputs changed since their decision."""
        return sorted(
            s for s in site_ids if s in views and self.last_version.get(s) != views[s].input_version
        )

    def solve(self, views: dict[str, SnapshotView]) -> FleetPlan:
        """One joint solve of every ready site (raises OptimizerError on failure)."""
        key = tuple(sorted(views))
        model = self.models.get(key)
        sites = tuple(views[site_id].site for site_id in key)
        pools = [
            PoolSpec(pool.pool_id, eligible)
            for pool in self.pools
            if (eligible := pool.eligible(sites))
        ]
        if model is None:
            spec = FleetSpec(
                sites=tuple(site.spec() for site in sites),
                pools=tuple(pools),
                carbon_budget=self.carbon_budget_t is not None,
            )
            model = FleetModel(spec, self.horizon.n_steps, time_limit_s=self.time_limit_s)
            self.models[key] = model
        n = self.horizon.n_steps
        by_id = {pool.pool_id: pool for pool in self.pools}
        snapshot = FleetSnapshot(
            sites={k: v.snapshot for k, v in views.items()},
            pools={
                p.pool_id: PoolSnapshot(
                    demand_mw=np.full(n, by_id[p.pool_id].demand_mw),
                    value_usd_per_mwh=np.full(n, by_id[p.pool_id].value_usd_per_mwh),
                )
                for p in pools
            },
            carbon_budget_t=self.carbon_budget_t,
        )
        return model.plan(snapshot)

    def decisions(
        self,
        views: dict[str, SnapshotView],
        plan: FleetPlan,
        triggers: dict[str, Trigger],
    ) -> list[DispatchDecision]:
        """Decisions for the given sites from a solved plan; remembers their input versions."""
        out = []
        for site_id, trigger in sorted(triggers.items()):
            view = views[site_id]
            out.append(to_decision(view, plan.sites[site_id], trigger, plan))
            self.last_version[site_id] = view.input_version
        return out

    def decide(
        self, state: FleetState, triggers: dict[str, Trigger], now: datetime | None = None
    ) -> list[DispatchDecision]:
        """One synchronous round: views, solve, decisions (used offline)."""
        views = self.views(state, now)
        changed = self.pending(views, list(triggers))
        if not changed:
            return []
        plan = self.solve(views)
        return self.decisions(views, plan, {s: triggers[s] for s in changed})
