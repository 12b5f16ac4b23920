"""The debounced re-planner: sites marked dirty by input events trigger one joint solve of the
worker's fleet on the latest snapshots, off the event loop; each dirty site whose inputs
changed gets a new decision handed to ``publish``.

Bursts coalesce: while a batch is solving, new triggers only mark sites dirty again. A site whose
inputs did not change since its last decision is not re-decided (same input version).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from optimizer import FleetModel, FleetPlan, FleetSnapshot, FleetSpec, Horizon, OptimizerError
from schemas import DispatchDecision, Trigger
from streams.state import FleetState
from streams.translate import SnapshotView, build_snapshot, to_decision

log = logging.getLogger(__name__)

Publish = Callable[[DispatchDecision], Awaitable[None]]


class Planner:
    """Owns the compiled fleet models (one per set of ready sites) and the dirty set."""

    def __init__(
        self,
        state: FleetState,
        publish: Publish,
        *,
        horizon: Horizon,
        debounce_s: float,
        time_limit_s: float | None = None,
        carbon_budget_t_per_day: float | None = None,
    ) -> None:
        self.state = state
        self.publish = publish
        self.horizon = horizon
        self.debounce_s = debounce_s
        self.time_limit_s = time_limit_s
        # A daily cap prorated over the horizon's length (uniform over the day).
        self.carbon_budget_t = (
            None
            if carbon_budget_t_per_day is None
            else carbon_budget_t_per_day * sum(horizon.step_minutes) / (24 * 60)
        )
        self.models: dict[tuple[str, ...], FleetModel] = {}
        self.last_version: dict[str, str] = {}
        self.decisions_published = 0
        self.solver_failures = 0
        self._dirty: dict[str, Trigger] = {}
        self._wake = asyncio.Event()
        # One solver thread: cvxpy problems are not shared across threads, and the event loop
        # must never block on a solve.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridshift-solver")

    def mark_dirty(self, site_ids: frozenset[str], trigger: Trigger) -> None:
        for site_id in site_ids:
            self._dirty[site_id] = trigger  # the latest input is what the decision answers
        if site_ids:
            self._wake.set()

    async def run(self) -> None:
        """Solve dirty sites forever (until cancelled)."""
        try:
            while True:
                await self._wake.wait()
                if self.debounce_s > 0:
                    await asyncio.sleep(self.debounce_s)  # debounce window, not synchronisation
                self._wake.clear()
                batch, self._dirty = self._dirty, {}
                await self._replan(batch)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _replan(self, batch: dict[str, Trigger]) -> None:
        views = {
            site_id: view
            for site_id, site in self.state.sites.items()
            if (view := build_snapshot(self.state, site, self.horizon)) is not None
        }
        changed = sorted(
            site_id
            for site_id in batch
            if site_id in views and self.last_version.get(site_id) != views[site_id].input_version
        )
        if not changed:
            return
        loop = asyncio.get_running_loop()
        try:
            plan = await loop.run_in_executor(self._executor, self._solve, views)
        except OptimizerError:
            self.solver_failures += 1
            log.exception("solve failed sites=%s", ",".join(changed))
            return
        for site_id in changed:
            view = views[site_id]
            await self.publish(to_decision(view, plan.sites[site_id], batch[site_id], plan))
            self.last_version[site_id] = view.input_version
            self.decisions_published += 1
        self.state.prune(min(view.now for view in views.values()))

    def _solve(self, views: dict[str, SnapshotView]) -> FleetPlan:
        key = tuple(sorted(views))
        model = self.models.get(key)
        if model is None:
            spec = FleetSpec(
                sites=tuple(views[site_id].site.spec() for site_id in key),
                carbon_budget=self.carbon_budget_t is not None,
            )
            model = FleetModel(spec, self.horizon.n_steps, time_limit_s=self.time_limit_s)
            self.models[key] = model
        snapshot = FleetSnapshot(
            sites={k: v.snapshot for k, v in views.items()}, carbon_budget_t=self.carbon_budget_t
        )
        return model.plan(snapshot)
