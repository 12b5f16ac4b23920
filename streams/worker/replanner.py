"""The debounced re-planner of the live worker: sites marked dirty by input events trigger one
decision round of :class:`~streams.engine.decider.Decider`, solved off the event loop; each new
decision is handed to ``publish``.

Bursts coalesce: a round starts a debounce window after its first trigger, and while a round is
solving, new triggers only mark sites dirty again. Telemetry, which arrives by the thousand per
second and rarely changes a plan much, waits a longer window (``telemetry_debounce_s``) than the
inputs an operator needs answered at once (prices, carbon, grid signals): one of those arriving
cuts the wait short, so a price spike is never queued behind telemetry, and the round it starts
takes every dirty site with it (the fleet is solved jointly anyway). A site whose inputs did not
change since its last decision is not re-decided (same input version).

A round that fails (its decisions could not be delivered, say the broker was away longer than
the producer waits, or a topic was missing) is not dropped: its sites are marked dirty again, its
inputs go back to the ledger unacked, and the round is retried after a capped exponential
back-off; the failure is logged and shown by /health until a round succeeds.

A round whose decisions were delivered acks its inputs only once the broker is there
(:meth:`~streams.worker.acks.AckLedger.release` waits for it): an offset committed while the
broker is away would land in whatever log it has when it is back. If it does not come back in
time, the inputs go back to the ledger unacked and the next round, due at once, acks them; /health
shows the acks waiting (``input acks``) until they go out.

A site that cannot be decided yet (no real-time price for its node, no hashprice) is not silent
either: the re-planner logs what its sites wait for whenever that changes, and remembers since
when inputs have gone unanswered, for /health.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aiokafka.errors import KafkaError
from faust.exceptions import FaustError

from schemas import DispatchDecision, Trigger
from streams.engine.decider import Decider
from streams.engine.state import FleetState
from streams.kafka.watch import DeliveryUncertainError
from streams.worker import _heap as heap
from streams.worker.acks import AckLedger, Parked
from streams.worker.health import Faults, by_reason, describe, waiting_sites

log = logging.getLogger(__name__)

Publish = Callable[[DispatchDecision], Awaitable[None]]
#: The part a failing round is reported as (/health, ``gridshift_failures_total``).
ROUNDS = "decision rounds"
#: The part reported while delivered rounds' inputs wait for the broker to be acked.
ACKS = "input acks"
#: Failures that are the broker's or a topic's, not a bug: logged without a traceback.
_DELIVERY_ERRORS = (DeliveryUncertainError, KafkaError, FaustError, TimeoutError, OSError)


class Replanner:
    """Owns the dirty set and runs decision rounds; the :class:`Decider` owns the models."""

    def __init__(
        self,
        state: FleetState,
        publish: Publish,
        decider: Decider,
        *,
        debounce_s: float,
        telemetry_debounce_s: float | None = None,
        ledger: AckLedger | None = None,
        on_solve: Callable[[float], object] | None = None,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        faults: Faults | None = None,
    ) -> None:
        self.faults = faults or Faults()
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.rounds_failed = 0
        self.ledger = ledger
        self.on_solve = on_solve
        self.state = state
        self.publish = publish
        self.decider = decider
        self.debounce_s = debounce_s
        self.telemetry_debounce_s = (
            debounce_s if telemetry_debounce_s is None else telemetry_debounce_s
        )
        self.decisions_published = 0
        self.solver_failures = 0
        self._dirty: dict[str, Trigger] = {}
        # The sites this worker decides (its partitions); None until the group assigns them.
        self.owned: frozenset[str] | None = None
        #: Monotonic time of the oldest input that marked a site dirty and was not answered by
        #: a round in which every site could be decided (None: nothing waits).
        self.unanswered_since: float | None = None
        self._marked_in_round: float | None = None  # first mark since the round started
        self._waiting_said: dict[str, list[str]] = {}
        self._wake = asyncio.Event()
        self._due: float | None = None  # monotonic time the next round starts; None = no round
        # One solver thread: cvxpy problems are not shared across threads, and the event loop
        # must never block on a solve.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridshift-solver")

    def own(self, site_ids: frozenset[str]) -> None:
        """Decide only these sites from now on (a rebalance moved partitions)."""
        self.owned = site_ids
        self.decider.set_scope(site_ids, self.state.sites)
        self._dirty = {s: t for s, t in self._dirty.items() if s in site_ids}
        self.note_waiting()

    def note_waiting(self) -> dict[str, list[str]]:
        """What the sites decided here wait for (``{reason: [sites]}``); logged when it
        changes, so a worker that cannot decide says why instead of staying silent."""
        scope = self.owned if self.owned is not None else self.state.sites.keys()
        waiting = by_reason(waiting_sites(self.state, scope))
        if waiting != self._waiting_said:
            if waiting:
                log.info(
                    "waiting for inputs before deciding",
                    extra={
                        "waiting_for": {reason: len(sites) for reason, sites in waiting.items()},
                        "sites": sorted({s for sites in waiting.values() for s in sites})[:20],
                    },
                )
            else:
                log.info("every site has the inputs it needs to be decided")
            self._waiting_said = waiting
        return waiting

    def ledger_outstanding(self) -> int:
        """Inputs waiting for a round to deliver what they caused."""
        return self.ledger.outstanding() if self.ledger else 0

    def mark_dirty(self, site_ids: frozenset[str], trigger: Trigger) -> None:
        if self.owned is not None:
            site_ids = site_ids & self.owned
        for site_id in site_ids:
            self._dirty[site_id] = trigger  # the latest input is what the decision answers
        if not site_ids:
            return
        now = time.monotonic()
        if self.unanswered_since is None:
            self.unanswered_since = now
        if self._marked_in_round is None:
            self._marked_in_round = now
        window = self.telemetry_debounce_s if trigger == "telemetry" else self.debounce_s
        due = time.monotonic() + window
        if self._due is None or due < self._due:
            self._due = due
            self._wake.set()

    async def run(self) -> None:
        """Solve dirty sites forever (until cancelled)."""
        delay = self.retry_initial_s
        models_settled = 0
        try:
            while True:
                await self._wake.wait()
                await self._debounce()
                batch, self._dirty = self._dirty, {}
                answered = self.ledger.take() if self.ledger else []
                self._marked_in_round = None
                try:
                    unready = await self._replan(batch)
                except Exception as exc:
                    # Keep serving. The inputs stay unacked (a restart reads them again) and the
                    # round is retried here; a decision delivered twice keeps its id.
                    self.rounds_failed += 1
                    self.faults.fail(ROUNDS, exc)
                    _round_failed(exc, len(batch), delay)
                    self._requeue(batch, answered)
                    await asyncio.sleep(delay)  # back-off before the retry, not synchronisation
                    delay = min(delay * 2, self.retry_max_s)
                    continue
                delay = self.retry_initial_s
                self.faults.ok(ROUNDS)
                if not unready:
                    # Answered, except what came in while the round ran.
                    self.unanswered_since = self._marked_in_round
                self.note_waiting()
                if self.ledger and not await self._release(self.ledger, answered):
                    # Given back unacked: the next round (due now) takes them again, after a
                    # pause (the release already waited for the broker; this only bounds a
                    # gate that refuses at once).
                    await asyncio.sleep(self.retry_initial_s)
                    self._wake.set()
                if self.decider.compiled_models != models_settled:
                    # A new fleet model lives as long as the worker: out of the collector's way.
                    heap.settle()
                    models_settled = self.decider.compiled_models
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _debounce(self) -> None:
        """Wait until the round is due; a trigger that makes it due sooner wakes this early."""
        while self._due is not None and (remaining := self._due - time.monotonic()) > 0:
            self._wake.clear()
            # Each pass ends at the deadline or at a trigger that moved it earlier: bounded.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
        self._due = None
        self._wake.clear()

    async def _deliver(self, decision: DispatchDecision) -> None:
        await self.publish(decision)
        self.decisions_published += 1

    async def _release(self, ledger: AckLedger, answered: list[Parked]) -> bool:
        """Ack a delivered round's inputs once the broker is there; False: given back."""
        if await ledger.release(answered):
            self.faults.ok(ACKS)
            return True
        error = f"inputs not acked ({ledger.why_deferred}); the next round acks them"
        self.faults.fail(ACKS, error)
        log.warning(
            "inputs decided but not acked: the broker is away; they wait for the next round",
            extra={"inputs": len(answered)},
        )
        return False

    def _requeue(self, batch: dict[str, Trigger], answered: list[Parked]) -> None:
        """Put a failed round back: its sites dirty (newer triggers win), its inputs unacked."""
        self.decider.forget(batch)
        for site_id, trigger in batch.items():
            self._dirty.setdefault(site_id, trigger)
        if self.ledger:
            self.ledger.restore(answered)
        self._wake.set()

    async def _replan(self, batch: dict[str, Trigger]) -> set[str]:
        """One round; returns the sites of ``batch`` that could not be decided (not ready)."""
        decider = self.decider
        rnd = decider.prepare(self.state, batch)
        loop = asyncio.get_running_loop()
        # The same round sequence as the backtest's (Decider.complete), off the event loop.
        result = await loop.run_in_executor(self._executor, decider.complete, rnd)
        decisions = result.decisions
        if result.error is not None:
            self.solver_failures += 1
            log.error(
                "solve failed, publishing fallbacks",
                extra={"sites": ",".join(rnd.changed), "error": str(result.error)},
            )
        if result.plan is not None and self.on_solve is not None:
            self.on_solve(result.plan.wall_time_s)
        for decision in decisions:
            if decision.fallback != "none":
                log.warning(
                    "fallback decision",
                    extra={
                        "site": decision.site_id,
                        "kind": decision.fallback,
                        "reason": decision.fallback_reason,
                    },
                )
        # All of a round's decisions are in flight together: one producer batch, one wait,
        # instead of a broker round trip (and a linger) per site.
        await asyncio.gather(*(self._deliver(decision) for decision in decisions))
        if rnd.views:
            self.state.prune(min(view.now for view in rnd.views.values()))
        # Not decided and not ready (a stale site that already has its fail-safe is answered).
        return set(waiting_sites(self.state, (s for s in batch if s not in rnd.views)))


def _round_failed(exc: Exception, sites: int, retry_in_s: float) -> None:
    extra = {"sites": sites, "retry_in_s": round(retry_in_s, 1), "error": describe(exc)}
    message = "decision round failed; inputs stay uncommitted"
    if isinstance(exc, _DELIVERY_ERRORS):
        log.error(message, extra=extra)  # the broker's trouble, not a bug: no traceback
    else:
        log.error(message, extra=extra, exc_info=exc)
