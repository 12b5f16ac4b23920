"""The site agent's control loop: decisions in, set-points out, telemetry back.

Four tasks share one state: the decision follower (keeps the newest decision whose interval has
not ended, drops late and out-of-order ones), the watchdog (no decision for
``decision_timeout_s`` of wall clock = fail-safe: mining down to ``failsafe_mining_fraction`` of
the fleet, GPUs left as they are because their floor is contracted), the ramp (moves the
miners toward the current mining target in batches of at most ``max_step_mw``, ``batch_delay_s``
apart, re-reading the target before every batch), and the reporter (polls miners and GPUs every
``interval_s`` and publishes a TelemetryEvent). GPU set-points go to NVML and/or the replica hook
from a fifth, latest-wins task so a slow hook never holds up the miners.

A miner that stops answering is taken out of the allocation and assumed to draw what it drew
last (its max_w if never read), so the others never push the site over its target; it rejoins
when it answers a poll. A miner that refuses a power target is driven on/off from then on.
Must not import the worker or the optimizer: decisions arrive over Kafka only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from schemas import DispatchDecision, TelemetryEvent, topic_for
from streams.agent.allocation import MinerSpec, allocate, changed, ramp_totals
from streams.agent.config import AgentConfig
from streams.agent.gpus import GpuDriverError, NvmlGpus, ReplicaHook
from streams.agent.miners import MinerDriver, MinerReading, MinerUnreachable
from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.sdk import DecisionSubscriber, Publisher, PublishError

log = logging.getLogger(__name__)

TELEMETRY_TOPIC = topic_for(TelemetryEvent).name

Mode = Literal["waiting", "following", "fail_safe"]

#: Upper bound of batches one ramp may take before it gives the loop back (progress is one
#: batch, a refusal or an unreachable miner per iteration, so this is never reached in practice).
MAX_BATCHES_PER_RAMP = 100_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SiteAgent:
    """Follows one site's decisions and drives its miners and GPUs."""

    def __init__(
        self,
        config: AgentConfig,
        connection: KafkaConnection | str,
        *,
        miners: Sequence[MinerDriver] = (),
        nvml: NvmlGpus | None = None,
        hook: ReplicaHook | None = None,
        topic_prefix: str = "",
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if config.site_id is None:
            raise ValueError("the agent needs a site_id (AgentConfig.for_site)")
        self.site_id: str = config.site_id
        self.config = config
        self.connection = connection
        self.topic_prefix = topic_prefix
        self.clock = clock
        self.miners = {m.config.label: m for m in miners}
        self.nvml = nvml
        self.hook = hook
        self._io = asyncio.Semaphore(config.miner_io.concurrency)
        # State shared by the tasks (one event loop: no locks needed between awaits).
        self.mode: Mode = "waiting"
        self.latest: DispatchDecision | None = None
        self.target_w: float | None = None
        self.commanded: dict[str, float] = {}
        self.readings: dict[str, MinerReading] = {}
        self.unreachable: set[str] = set()
        self.refused: set[str] = set()
        self.late_ignored = 0
        self.failsafe_trips = 0
        self.telemetry_sent = 0
        self.gpu_mw_sent: float | None = None
        #: Commanded mining watts after each batch (what the ramp tests check).
        self.batch_totals_w: list[float] = []
        #: Set whenever the state above changes (for supervisors and tests to wait on).
        self.changed = asyncio.Event()
        self._last_decision_at = time.monotonic()
        self._decision_seen = asyncio.Event()
        self._target_changed = asyncio.Event()
        self._gpu_pending: DispatchDecision | None = None
        self._gpu_changed = asyncio.Event()

    # -- the service ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (or a task fails), then stop everything it started."""
        if self.nvml is not None:
            await self.nvml.open()
        try:
            async with (
                Publisher(self.connection, topic_prefix=self.topic_prefix) as publisher,
                DecisionSubscriber(
                    self.connection,
                    topic_prefix=self.topic_prefix,
                    sites=[self.site_id],
                    from_beginning=self.config.decisions.from_beginning,
                    group_id=self.config.decisions.group_id,
                ) as decisions,
            ):
                await self.poll_miners()
                log.info(
                    "site agent started",
                    extra={"site_id": self.site_id, "miners": len(self.miners)},
                )
                self._last_decision_at = time.monotonic()
                tasks = [
                    asyncio.create_task(self._follow(decisions), name="agent-decisions"),
                    asyncio.create_task(self._watchdog(), name="agent-watchdog"),
                    asyncio.create_task(self._ramp_loop(), name="agent-ramp"),
                    asyncio.create_task(self._gpu_loop(), name="agent-gpu"),
                    asyncio.create_task(self._report_loop(publisher), name="agent-telemetry"),
                ]
                stopper = asyncio.create_task(stop.wait(), name="agent-stop")
                try:
                    done, _ = await asyncio.wait(
                        [*tasks, stopper], return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done - {stopper}:
                        error = task.exception()
                        if error is not None:
                            raise error
                        raise GridshiftError(f"{task.get_name()} ended by itself")
                finally:
                    for task in (*tasks, stopper):
                        task.cancel()
                    await asyncio.gather(*tasks, stopper, return_exceptions=True)
        finally:
            if self.nvml is not None:
                await self.nvml.close()
            log.info("site agent stopped", extra={"site_id": self.site_id})

    # -- decisions and the watchdog ---------------------------------------------------------

    async def _follow(self, decisions: DecisionSubscriber) -> None:
        async for decision in decisions:
            self.on_decision(decision)

    def on_decision(self, decision: DispatchDecision) -> bool:
        """Take ``decision`` as the plan unless it is late or older than the one held."""
        if decision.site_id != self.site_id:
            return False
        now = self.clock()
        late_by = now - decision.interval_end
        if late_by > timedelta(seconds=self.config.watchdog.late_after_s):
            self.late_ignored += 1
            self.changed.set()
            log.warning(
                "late decision ignored",
                extra={
                    "decision_id": decision.decision_id,
                    "interval_end": decision.interval_end.isoformat(),
                    "late_s": round(late_by.total_seconds(), 1),
                    "mode": self.mode,
                },
            )
            return False
        if self.latest is not None and decision.interval_start < self.latest.interval_start:
            log.info("older decision ignored", extra={"decision_id": decision.decision_id})
            return False
        if self.mode == "fail_safe":
            log.warning("decisions are back: leaving the fail-safe (staggered restore)")
        self.latest = decision
        self.mode = "following"
        self._last_decision_at = time.monotonic()
        self._decision_seen.set()
        self._set_target(decision.mining_mw * 1e6, why=f"decision {decision.decision_id}")
        self._gpu_pending = decision
        self._gpu_changed.set()
        self.changed.set()
        return True

    async def _watchdog(self) -> None:
        timeout = self.config.watchdog.decision_timeout_s
        while True:
            remaining = self._last_decision_at + timeout - time.monotonic()
            if remaining > 0:
                self._decision_seen.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._decision_seen.wait(), remaining)
                continue
            if self.mode != "fail_safe":
                self.trip_fail_safe(f"no decision for {timeout:.0f} s")
            # Stay tripped until a decision arrives (on_decision resets the clock).
            self._decision_seen.clear()
            await self._decision_seen.wait()

    def trip_fail_safe(self, reason: str) -> None:
        """Mining to the fail-safe share of the fleet (staggered like any ramp)."""
        self.mode = "fail_safe"
        self.failsafe_trips += 1
        self.changed.set()
        target = self.config.watchdog.failsafe_mining_fraction * self.config.fleet_max_w
        log.warning(
            "watchdog: fail-safe",
            extra={"site_id": self.site_id, "reason": reason, "mining_w": target},
        )
        self._set_target(target, why="fail-safe")

    def _set_target(self, watts: float, *, why: str) -> None:
        self.target_w = watts
        self._target_changed.set()
        log.info("mining target", extra={"mining_w": round(watts, 1), "why": why})

    # -- the ramp ---------------------------------------------------------------------------

    async def _ramp_loop(self) -> None:
        while True:
            await self._target_changed.wait()
            self._target_changed.clear()
            await self.ramp()

    async def ramp(self) -> None:
        """Move the miners toward ``target_w`` in staggered batches (target re-read each)."""
        delay = self.config.ramp.batch_delay_s
        last_batch_at: float | None = None
        for _ in range(MAX_BATCHES_PER_RAMP):
            plan = self._next_batch()
            if plan is None:
                return
            if last_batch_at is not None:
                wait = last_batch_at + delay - time.monotonic()
                if wait > 0:
                    # Pacing, not synchronisation: a new target never shortens the gap between
                    # batches, so a burst of decisions cannot step the whole load at once. The
                    # plan is made again afterwards, from the target in force then.
                    await asyncio.sleep(wait)
                    continue
            await self._apply(plan)
            last_batch_at = time.monotonic()
            self.batch_totals_w.append(sum(self.commanded.values()))
            self.changed.set()

    def _next_batch(self) -> dict[str, float] | None:
        """The set-points of the next batch, or ``None`` when the miners are where they
        should be. One batch moves the commanded total by at most ``max_step_mw`` (or by one
        miner, when a miner is larger than the step)."""
        if self.target_w is None:
            return None
        specs = self._specs()
        goal = max(0.0, self.target_w - self._reserved_w())
        current = sum(self.commanded.get(spec.name, 0.0) for spec in specs)
        totals = ramp_totals(current, goal, self.config.ramp.max_step_mw * 1e6) or [goal]
        for total in totals:
            plan = allocate(specs, total)
            if changed(self.commanded, plan):
                return plan
        return None

    def _specs(self) -> list[MinerSpec]:
        """The miners the allocation may use (answering ones; refusers as on/off)."""
        return [
            MinerSpec(
                name=name,
                max_w=driver.config.max_w,
                efficiency_j_per_th=driver.config.efficiency_j_per_th,
                min_w=None if name in self.refused else driver.config.min_w,
            )
            for name, driver in self.miners.items()
            if name not in self.unreachable
        ]

    def _reserved_w(self) -> float:
        """What the miners that do not answer are assumed to draw."""
        reserved = 0.0
        for name in self.unreachable:
            reading = self.readings.get(name)
            if reading is not None:
                reserved += reading.watts
            else:
                reserved += self.commanded.get(name, self.miners[name].config.max_w)
        return reserved

    async def _apply(self, plan: dict[str, float]) -> None:
        """Send one batch of set-points (concurrently, each bounded by the miner timeout)."""
        moves = changed(self.commanded, plan)
        await asyncio.gather(*(self._command(name, watts) for name, watts in moves.items()))
        log.info(
            "batch applied",
            extra={
                "site_id": self.site_id,
                "miners": len(moves),
                "mining_w": round(sum(self.commanded.values()), 1),
                "target_w": round(self.target_w or 0.0, 1),
            },
        )

    async def _command(self, name: str, watts: float) -> None:
        driver = self.miners[name]
        was_running = self.commanded.get(name, 1.0) > 0.0  # unknown = assume running
        async with self._io:
            try:
                if watts <= 0.0:
                    if await driver.pause():
                        self.commanded[name] = 0.0
                    else:
                        self._lost(name, "refused to pause")
                    return
                adjustable = driver.config.min_w is not None and name not in self.refused
                if adjustable and not await driver.set_power_limit(watts):
                    self.refused.add(name)
                    log.warning(
                        "miner refused a power target: on/off from now on",
                        extra={"miner": name, "watts": round(watts, 1)},
                    )
                    return  # the next batch re-plans with this miner on/off
                if not was_running and not await driver.resume():
                    self._lost(name, "refused to resume")
                    return
                self.commanded[name] = watts
            except MinerUnreachable as exc:
                self._lost(name, str(exc))

    def _lost(self, name: str, why: str) -> None:
        if name not in self.unreachable:
            self.unreachable.add(name)
            log.warning(
                "miner not answering: out of the allocation", extra={"miner": name, "error": why}
            )
            self._target_changed.set()  # re-plan without it

    # -- GPUs -------------------------------------------------------------------------------

    async def _gpu_loop(self) -> None:
        while True:
            await self._gpu_changed.wait()
            self._gpu_changed.clear()
            decision = self._gpu_pending
            if decision is None:
                continue
            last = self.gpu_mw_sent
            if last is not None and abs(decision.gpu_mw - last) < self.config.gpu.min_change_mw:
                continue
            try:
                if self.nvml is not None:
                    await self.nvml.apply(decision)
                if self.hook is not None:
                    await self.hook.apply(decision)
            except GpuDriverError as exc:
                log.warning(
                    "GPU set-point failed; retried with the next decision",
                    extra={"error": str(exc)},
                )
                continue
            self.gpu_mw_sent = decision.gpu_mw
            self.changed.set()

    # -- telemetry --------------------------------------------------------------------------

    async def poll_miners(self) -> None:
        """Read every miner; a change of who answers triggers a re-plan."""

        async def one(name: str, driver: MinerDriver) -> None:
            async with self._io:
                try:
                    reading = await driver.read()
                except MinerUnreachable as exc:
                    self._lost(name, str(exc))
                    return
            self.readings[name] = reading
            if name not in self.commanded:  # first sight: take the miner as it is
                self.commanded[name] = reading.watts if reading.mining else 0.0
            if name in self.unreachable:
                self.unreachable.discard(name)
                log.info("miner answers again: back in the allocation", extra={"miner": name})
                self._target_changed.set()

        await asyncio.gather(*(one(name, driver) for name, driver in self.miners.items()))
        self.changed.set()

    async def _report_loop(self, publisher: Publisher) -> None:
        period = self.config.telemetry.interval_s
        started = self.clock()
        while True:
            try:
                await self.report(publisher, started)
            except PublishError as exc:
                # Control goes on without the broker; the next report covers this period too.
                log.warning("telemetry not delivered", extra={"error": str(exc)})
            else:
                started = self.clock()
            await asyncio.sleep(period)
            await self.poll_miners()

    async def report(self, publisher: Publisher, since: datetime) -> TelemetryEvent:
        """Publish what the site measured since ``since`` (miners answering now, GPUs)."""
        answering = [
            (name, reading)
            for name, reading in self.readings.items()
            if name not in self.unreachable
        ]
        gpu_mw, gpu_util = self.gpu_mw_sent or 0.0, 0.0
        if self.nvml is not None:
            try:
                gpu = await self.nvml.read()
                gpu_mw, gpu_util = gpu.watts / 1e6, gpu.utilization_pct
            except GpuDriverError as exc:
                log.warning("GPU reading failed", extra={"error": str(exc)})
        now = self.clock()
        event = TelemetryEvent(
            interval_start=min(since, now - timedelta(milliseconds=1)),
            interval_end=now,
            site_id=self.site_id,
            mining_mw=sum(r.watts for _, r in answering) / 1e6,
            gpu_mw=gpu_mw,
            cooling_mw=self.config.telemetry.cooling_mw,
            miners_online=sum(1 for _, r in answering if r.mining),
            mining_available_mw=sum(self.miners[n].config.max_w for n, _ in answering) / 1e6,
            hashrate_th_s=sum(r.hashrate_th_s for _, r in answering),
            gpu_utilization_pct=gpu_util,
        )
        await publisher.publish(TELEMETRY_TOPIC, event)
        await publisher.flush()
        self.telemetry_sent += 1
        self.changed.set()
        return event
