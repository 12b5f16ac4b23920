"""Deciding: from the fleet's state to dispatch decisions, the one code path shared by the live
worker (through :class:`~streams.worker.replanner.Replanner`) and the offline backtest.

A decision round builds every ready site's snapshot, solves the fleet jointly (one compiled
model per set of ready sites), and returns decisions for the requested sites whose inputs
changed since their last decision. A site is never left without a decision:

- a site whose price feed is silent for longer than ``stale_price_after`` (by event time, so a
  replay shows it too: behind the fleet's clock, i.e. the newest real-time price of any node, or
  behind the site's own telemetry) gets the fail-safe decision; when the feed returns, its
  mining comes back in staggered steps of ``restore_fraction`` of capacity per decision;
- when the solver fails, each site holds its last plan while that plan still covers the
  interval, else gets the fail-safe; both are flagged and counted.

Reserve: the decider keeps the book of reserve sold per site and hour
(:class:`~streams.engine.reserves.CommitmentBook`). Every optimal round sells the open hours its
plan covers whole (the rule is in :mod:`streams.engine.reserves`), before the decisions are
written, so each decision lists what is sold over its horizon; the next rounds keep it.

A worker of a scaled-out fleet decides only its own sites (:meth:`Decider.set_scope`): it
neither solves nor fail-safes sites it does not own (whose inputs it may never see), and it
keeps its share of the fleet-wide quantities: the carbon budget by interconnect capacity, each
inference pool's demand by its eligible sites.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from optimizer import (
    FleetModel,
    FleetPlan,
    FleetSnapshot,
    FleetSpec,
    Horizon,
    OptimizerError,
    Plan,
    PoolSnapshot,
    PoolSpec,
    SiteSnapshot,
    SiteSpec,
)
from optimizer.decompose import ANONYMOUS, components, merge, site_key
from schemas import DispatchDecision, TelemetryEvent, Trigger
from streams.engine.decisions import decision_id, to_decision
from streams.engine.fallback import fail_safe, hold_last_plan
from streams.engine.fleet import PoolConfig, SiteConfig
from streams.engine.reserves import COMMIT_LEAD, CommitmentBook
from streams.engine.snapshots import RoundReads, SnapshotView, build_snapshot
from streams.engine.state import FleetState

#: At most this many distinct problems solved one by one in a round; beyond, one joint solve of
#: the fleet (a small solve costs a few ms of cvxpy overhead, about what 10 sites add to a joint
#: one).
SEPARATE_MAX = 12


@dataclass
class Round:
    """One decision round: fresh snapshots, the sites to decide, and the stale ones."""

    views: dict[str, SnapshotView]
    changed: list[str]
    triggers: dict[str, Trigger]
    sites: dict[str, SiteConfig]
    stale: dict[str, tuple[datetime, str]] = field(default_factory=dict)  # site -> (now, why)


@dataclass
class RoundResult:
    """What a round produced: its decisions, and the plan (or the solver error) behind them."""

    decisions: list[DispatchDecision]
    plan: FleetPlan | None = None
    error: OptimizerError | None = None


class Decider:
    """Owns the compiled fleet models, the watchdog and what was last decided per site."""

    def __init__(
        self,
        horizon: Horizon,
        *,
        pools: tuple[PoolConfig, ...] = (),
        carbon_budget_t_per_day: float | None = None,
        time_limit_s: float | None = None,
        stale_price_after: timedelta | None = None,
        failsafe_mining_fraction: float = 0.0,
        restore_fraction: float = 0.25,
        reserve_commit_lead: timedelta = COMMIT_LEAD,
        decompose: bool = True,
    ) -> None:
        self.horizon = horizon
        self.decompose = decompose
        self.pools = pools
        self.time_limit_s = time_limit_s
        self.stale_price_after = stale_price_after
        self.failsafe_mining_fraction = failsafe_mining_fraction
        self.restore_fraction = restore_fraction
        # A daily cap prorated over the horizon's length (uniform over the day).
        self.carbon_budget_t = (
            None
            if carbon_budget_t_per_day is None
            else carbon_budget_t_per_day * sum(horizon.step_minutes) / (24 * 60)
        )
        self.models: dict[tuple[str, ...], FleetModel] = {}  # joint solves, by ready sites
        self.part_models: dict[FleetSpec, FleetModel] = {}  # independent problems, by shape
        self._parts: dict[Hashable, FleetPlan] = {}  # the last round's problems and their plans
        self._specs: dict[str, tuple[SiteConfig, SiteSpec, SiteSpec]] = {}
        self.last_version: dict[str, str] = {}
        self.last_decision: dict[str, DispatchDecision] = {}
        # The newest decision for an interval before the last decision's: what the site was
        # running when the last decision was made (a re-plan of the same interval anchors there).
        self.earlier_decision: dict[str, DispatchDecision] = {}
        self.restoring: dict[str, float] = {}  # site -> mining cap while coming back (MW)
        self.fallbacks: Counter[str] = Counter()
        self.scope: frozenset[str] | None = None  # the sites decided here; None = every site
        self.budget_share = 1.0
        self.pool_share: dict[str, float] = {}
        self.reserves = CommitmentBook(lead=reserve_commit_lead)

    @property
    def compiled_models(self) -> int:
        """How many fleet models this decider has compiled (joint and independent problems):
        each lives as long as the decider."""
        return len(self.models) + len(self.part_models)

    def set_scope(self, site_ids: frozenset[str], fleet: Mapping[str, SiteConfig]) -> None:
        """Decide only ``site_ids`` of ``fleet`` and prorate the fleet-wide quantities to them."""
        self.scope = site_ids
        total = sum(site.interconnect_mw for site in fleet.values())
        mine = sum(site.interconnect_mw for sid, site in fleet.items() if sid in site_ids)
        self.budget_share = mine / total if total > 0 else 0.0
        sites = tuple(fleet.values())
        for pool in self.pools:
            eligible = [site_id for site_id, _ in pool.eligible(sites)]
            served = sum(1 for site_id in eligible if site_id in site_ids)
            self.pool_share[pool.pool_id] = served / len(eligible) if eligible else 0.0

    # ------------------------------------------------------------------ rounds
    def prepare(
        self, state: FleetState, triggers: dict[str, Trigger], now: datetime | None = None
    ) -> Round:
        """Snapshots of the fresh sites; stale sites set aside for the fail-safe."""
        views: dict[str, SnapshotView] = {}
        stale: dict[str, tuple[datetime, str]] = {}
        reads = RoundReads(self.horizon)
        for site_id, site in state.sites.items():
            if self.scope is not None and site_id not in self.scope:
                continue  # another worker's site
            why = self._stale(state, site_id, now)
            if why is not None:
                stale[site_id] = why
                continue
            cap = self.restoring.get(site_id)
            view = build_snapshot(
                state,
                site,
                self.horizon,
                now=now,
                mining_cap_mw=cap,
                reads=reads,
                decided=self._decided(site_id),
                book=self.reserves,
            )
            if view is not None:
                views[site_id] = view
        changed = sorted(
            s for s in triggers if s in views and self.last_version.get(s) != views[s].input_version
        )
        stale = {
            s: v
            for s, v in stale.items()
            if self.last_version.get(s) != f"stale|{v[0].isoformat()}"
        }
        return Round(views, changed, triggers, state.sites, stale)

    def _stale(
        self, state: FleetState, site_id: str, now: datetime | None
    ) -> tuple[datetime, str] | None:
        if self.stale_price_after is None:
            return None
        site = state.sites[site_id]
        price_clock = state.clock(site)
        event_clock = now or _newest(state.event_clock, state.telemetry.get(site_id))
        if price_clock is None or event_clock is None:
            return None
        age = event_clock - price_clock
        if age <= self.stale_price_after:
            return None
        minutes = age.total_seconds() / 60
        return event_clock, f"price feed for {site.price_node} silent for {minutes:.0f} min"

    def solve(self, views: dict[str, SnapshotView]) -> FleetPlan:
        """The plan of every ready site (raises OptimizerError on failure).

        With ``decompose`` (the default) the fleet is split into the groups the LP couples
        (:func:`optimizer.decompose.components`: pools and the carbon budget), a lone site's
        problem is solved once for every site with the same spec and numbers, and a problem
        whose inputs are bit-identical to the last round's reuses that round's plan. The LP is
        separable, so the plans equal the joint solve's (within solver tolerance; tested). When
        more distinct problems changed than :data:`SEPARATE_MAX`, one joint solve is cheaper
        than that many small ones and the whole fleet is solved at once, as without it.
        """
        if not self.decompose:
            return self._solve_joint(views)
        key = tuple(sorted(views))
        pools = self._pools(key, views)
        groups = components(key, pools, carbon_budget=self.carbon_budget_t is not None)
        # A site eligible for a pool is solved with it, even alone: a lone (anonymous) problem
        # has no pools, so a pool only one site may serve would go unserved.
        pooled = frozenset(site_id for pool in pools for site_id, _ in pool.eligible)
        problems: dict[Hashable, list[tuple[str, ...]]] = {}
        for group in groups:
            if _lone(group, pooled):
                site_id = group[0]
                problem: Hashable = site_key(
                    self._spec(views[site_id], anonymous=True), views[site_id].snapshot
                )
            else:
                problem = (
                    group,
                    tuple(
                        site_key(self._spec(views[s], anonymous=True), views[s].snapshot)
                        for s in group
                    ),
                )
            problems.setdefault(problem, []).append(group)
        fresh = [p for p in problems if p not in self._parts]
        if len(fresh) > SEPARATE_MAX:
            self._parts = {}
            return self._solve_joint(views)
        parts: dict[Hashable, FleetPlan] = {p: self._parts[p] for p in problems if p not in fresh}
        for problem in fresh:
            group = problems[problem][0]
            parts[problem] = self._solve_part(group, views, pools, lone=_lone(group, pooled))
        self._parts = parts  # only the last round's: reuse needs bit-identical inputs to it
        sites: dict[str, Plan] = {}
        for problem, members in problems.items():
            part = parts[problem]
            for group in members:
                if _lone(group, pooled):
                    sites[group[0]] = part.sites[ANONYMOUS]
                else:
                    sites.update(part.sites)
        fresh_set = set(fresh)
        return merge(
            sites,
            [(parts[p], len(members), p in fresh_set) for p, members in problems.items()],
            {s: views[s].snapshot.step_hours for s in key},
        )

    def _spec(self, view: SnapshotView, *, anonymous: bool = False) -> SiteSpec:
        """The site's optimizer spec (``anonymous``: under :data:`ANONYMOUS`), built once per
        site config (a round asks for it hundreds of times)."""
        cached = self._specs.get(view.site.site_id)
        if cached is None or cached[0] is not view.site:
            spec = view.site.spec()
            cached = (view.site, spec, replace(spec, site_id=ANONYMOUS))
            self._specs[view.site.site_id] = cached
        return cached[2] if anonymous else cached[1]

    def _pools(self, key: tuple[str, ...], views: dict[str, SnapshotView]) -> list[PoolSpec]:
        sites = tuple(views[site_id].site for site_id in key)
        return [
            PoolSpec(pool.pool_id, eligible)
            for pool in self.pools
            if (eligible := pool.eligible(sites))
        ]

    def _solve_part(
        self,
        group: tuple[str, ...],
        views: dict[str, SnapshotView],
        pools: list[PoolSpec],
        *,
        lone: bool,
    ) -> FleetPlan:
        """One independent problem: a lone site under :data:`ANONYMOUS` (one compiled model per
        site shape), or a coupled group (or one pooled site) under its ids with its pools."""
        if lone:
            view = views[group[0]]
            spec = FleetSpec(sites=(self._spec(view, anonymous=True),))
            snapshots = {ANONYMOUS: view.snapshot}
            part_pools: list[PoolSpec] = []
        else:
            members = set(group)
            part_pools = [p for p in pools if any(s in members for s, _ in p.eligible)]
            spec = FleetSpec(
                sites=tuple(self._spec(views[s]) for s in group),
                pools=tuple(part_pools),
                carbon_budget=self.carbon_budget_t is not None,
            )
            snapshots = {s: views[s].snapshot for s in group}
        model = self.part_models.get(spec)
        if model is None:
            model = FleetModel(spec, self.horizon.n_steps, time_limit_s=self.time_limit_s)
            self.part_models[spec] = model
        return model.plan(self._fleet_snapshot(snapshots, part_pools))

    def _fleet_snapshot(
        self, snapshots: dict[str, SiteSnapshot], pools: list[PoolSpec]
    ) -> FleetSnapshot:
        n = self.horizon.n_steps
        by_id = {pool.pool_id: pool for pool in self.pools}
        share = self.pool_share
        return FleetSnapshot(
            sites=snapshots,
            pools={
                p.pool_id: PoolSnapshot(
                    demand_mw=np.full(n, by_id[p.pool_id].demand_mw * share.get(p.pool_id, 1.0)),
                    value_usd_per_mwh=np.full(n, by_id[p.pool_id].value_usd_per_mwh),
                )
                for p in pools
            },
            carbon_budget_t=(
                None if self.carbon_budget_t is None else self.carbon_budget_t * self.budget_share
            ),
        )

    def _solve_joint(self, views: dict[str, SnapshotView]) -> FleetPlan:
        """One joint solve of every ready site (one compiled model per set of ready sites)."""
        key = tuple(sorted(views))
        model = self.models.get(key)
        pools = self._pools(key, views)
        if model is None:
            spec = FleetSpec(
                sites=tuple(self._spec(views[site_id]) for site_id in key),
                pools=tuple(pools),
                carbon_budget=self.carbon_budget_t is not None,
            )
            model = FleetModel(spec, self.horizon.n_steps, time_limit_s=self.time_limit_s)
            self.models[key] = model
        return model.plan(self._fleet_snapshot({k: v.snapshot for k, v in views.items()}, pools))

    def decisions(self, rnd: Round, plan: FleetPlan) -> list[DispatchDecision]:
        """Optimal decisions for the changed sites, fail-safe ones for the stale sites; first,
        the open hours this plan covers are sold (every planned site, changed or not)."""
        for site_id, view in rnd.views.items():
            site_plan = plan.sites.get(site_id)
            if site_plan is not None and site_plan.reserve_mw:
                self.reserves.commit(
                    site_id, view.now, view.step_starts, view.step_ends[-1], site_plan.reserve_mw
                )
        out = []
        # Sites solved as one problem share one Plan object; with the same trigger, notes and
        # reserve sold, their decisions differ only in the site's identity, so the decision is
        # built (and validated) once and copied with the other site's id and version.
        built: dict[Hashable, DispatchDecision] = {}
        for s in rnd.changed:
            view, site_plan = rnd.views[s], plan.sites[s]
            sold = self.reserves.within(s, view.now, view.step_ends[-1])
            same = (id(site_plan), rnd.triggers[s], view.now, view.notes, _sold_key(sold))
            template = built.get(same) if self.decompose else None
            if template is None:
                decision = to_decision(view, site_plan, rnd.triggers[s], plan, sold=sold)
                built[same] = decision
            else:
                decision = template.model_copy(
                    update={
                        "site_id": s,
                        "input_version": view.input_version,
                        "decision_id": decision_id(s, view.now, view.input_version),
                    }
                )
            out.append(decision)
        out += self._stale_decisions(rnd)
        for decision in out:
            self._remember(decision, rnd)
        return out

    def fallback_decisions(self, rnd: Round, reason: str) -> list[DispatchDecision]:
        """The solver failed: hold each site's last plan if it covers now, else fail safe."""
        out = []
        for site_id in rnd.changed:
            view = rnd.views[site_id]
            last = self.last_decision.get(site_id)
            held = hold_last_plan(last, view.now, rnd.triggers[site_id], reason) if last else None
            out.append(
                held
                or fail_safe(
                    view.site,
                    view.now,
                    view.step_ends[0] - view.now,
                    rnd.triggers[site_id],
                    reason,
                    mining_fraction=self.failsafe_mining_fraction,
                )
            )
        out += self._stale_decisions(rnd)
        for decision in out:
            self._remember(decision, rnd)
        return out

    def _stale_decisions(self, rnd: Round) -> list[DispatchDecision]:
        step = self.horizon.step(0)
        return [
            fail_safe(
                rnd.sites[site_id],
                now,
                step,
                rnd.triggers.get(site_id, "timer"),
                why,
                mining_fraction=self.failsafe_mining_fraction,
            )
            for site_id, (now, why) in sorted(rnd.stale.items())
        ]

    def forget(self, site_ids: Iterable[str]) -> None:
        """Let these sites be decided again on unchanged inputs (their round was not delivered)."""
        for site_id in site_ids:
            self.last_version.pop(site_id, None)

    def _decided(self, site_id: str) -> tuple[DispatchDecision, ...]:
        """The site's recent decisions, newest first."""
        return tuple(
            d
            for d in (self.last_decision.get(site_id), self.earlier_decision.get(site_id))
            if d is not None
        )

    def _remember(self, decision: DispatchDecision, rnd: Round) -> None:
        site_id = decision.site_id
        prior = self.last_decision.get(site_id)
        if prior is not None and prior.interval_start < decision.interval_start:
            self.earlier_decision[site_id] = prior
        self.last_decision[site_id] = decision
        if decision.fallback == "none":
            self.last_version[site_id] = rnd.views[site_id].input_version
            cap = self.restoring.get(site_id)
            if cap is not None:
                capacity = rnd.views[site_id].site.mining_capacity_mw
                step = capacity * self.restore_fraction
                if cap + step >= capacity:
                    del self.restoring[site_id]
                else:
                    self.restoring[site_id] = cap + step
            return
        self.fallbacks[decision.fallback] += 1
        if site_id in rnd.stale:
            now, _ = rnd.stale[site_id]
            self.last_version[site_id] = f"stale|{now.isoformat()}"
            # Coming back, mining restarts from the fail-safe level in staggered steps.
            capacity = rnd.sites[site_id].mining_capacity_mw
            self.restoring[site_id] = decision.mining_mw + capacity * self.restore_fraction

    def complete(self, rnd: Round) -> RoundResult:
        """The rest of a prepared round: solve, then the decisions, or the fallbacks when the
        solver fails; the stale sites' fail-safes either way. The one round sequence: the live
        re-planner runs it in its solver thread, the backtest calls :meth:`decide`."""
        if not rnd.changed:
            out = self._stale_decisions(rnd)
            for decision in out:
                self._remember(decision, rnd)
            return RoundResult(out)
        try:
            plan = self.solve(rnd.views)
        except OptimizerError as exc:
            return RoundResult(self.fallback_decisions(rnd, f"solver failed: {exc}"), error=exc)
        return RoundResult(self.decisions(rnd, plan), plan=plan)

    def decide(
        self, state: FleetState, triggers: dict[str, Trigger], now: datetime | None = None
    ) -> list[DispatchDecision]:
        """One round in this thread (offline): :meth:`prepare`, then :meth:`complete`."""
        return self.complete(self.prepare(state, triggers, now)).decisions

    def plan_ahead(self, state: FleetState, now: datetime) -> tuple[Round, FleetPlan] | None:
        """The whole-horizon plan of every site at ``now`` from whatever ``state`` holds, built
        and solved like a live round (the backtest's perfect-foresight oracle gives it a state
        that already holds the future); None while no site can be planned yet (no price or
        hashprice known). Raises :class:`OptimizerError` when the solve fails."""
        triggers: dict[str, Trigger] = dict.fromkeys(state.sites, "price")
        rnd = self.prepare(state, triggers, now)
        if not rnd.views:
            return None
        return rnd, self.solve(rnd.views)


def _sold_key(sold: list[tuple[datetime, dict[str, float]]]) -> Hashable:
    return tuple((hour, tuple(sorted(mw.items()))) for hour, mw in sold)


def _newest(clock: datetime | None, telemetry: TelemetryEvent | None) -> datetime | None:
    """The later of the fleet clock and the site's telemetry: with every price feed silent, the
    site's telemetry still shows event time passing. Telemetry counts for its own site only:
    another site's telemetry, right or wrong, never fails this one safe."""
    if telemetry is None:
        return clock
    return telemetry.interval_start if clock is None else max(clock, telemetry.interval_start)


def _lone(group: tuple[str, ...], pooled: frozenset[str]) -> bool:
    """A group of one site that no pool may route to: solved anonymously, shared by every site
    with the same spec and numbers."""
    return len(group) == 1 and group[0] not in pooled
