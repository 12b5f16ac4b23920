"""The debounced re-planner: sites marked dirty by input events are solved on their latest
snapshot, off the event loop, and each new plan is handed to ``publish``.

Bursts coalesce: while a batch is solving, new triggers only mark sites dirty again. A site whose
inputs did not change since its last decision is not re-decided (same input version).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from optimizer import DispatchModel, OptimizerError, Plan
from schemas import DispatchDecision, Trigger
from streams.state import FleetState
from streams.translate import SnapshotView, build_snapshot, to_decision

log = logging.getLogger(__name__)

Publish = Callable[[DispatchDecision], Awaitable[None]]


class Planner:
    """Owns the compiled models (one per site) and the dirty set."""

    def __init__(
        self,
        state: FleetState,
        publish: Publish,
        *,
        n_steps: int,
        step: timedelta,
        debounce_s: float,
    ) -> None:
        self.state = state
        self.publish = publish
        self.n_steps = n_steps
        self.step = step
        self.debounce_s = debounce_s
        self.models: dict[str, DispatchModel] = {}
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
                for site_id, trigger in sorted(batch.items()):
                    await self._replan(site_id, trigger)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _replan(self, site_id: str, trigger: Trigger) -> None:
        site = self.state.sites[site_id]
        view = build_snapshot(self.state, site, self.n_steps, self.step)
        if view is None:
            log.debug("site not ready to plan (needs price and hashprice) site=%s", site_id)
            return
        if self.last_version.get(site_id) == view.input_version:
            return
        loop = asyncio.get_running_loop()
        try:
            plan = await loop.run_in_executor(self._executor, self._solve, view)
        except OptimizerError:
            self.solver_failures += 1
            log.exception("solve failed site=%s interval=%s", site_id, view.now)
            return
        decision = to_decision(view, plan, trigger)
        await self.publish(decision)
        self.last_version[site_id] = view.input_version
        self.decisions_published += 1
        self.state.prune(view.now)

    def _solve(self, view: SnapshotView) -> Plan:
        model = self.models.get(view.site.site_id)
        if model is None:
            model = self.models[view.site.site_id] = DispatchModel(view.site.spec(), self.n_steps)
        return model.plan(view.snapshot)
