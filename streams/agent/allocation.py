"""Spreading a site's decided mining MW over its miners, and staggering the way there.

Pure functions of their arguments (no clock, no I/O), so the control loop and the tests share
them. ``allocate`` is greedy by efficiency: the miners with the fewest J/TH run first at full
power, the marginal miner that accepts power targets takes the remainder, the rest pause. It
never allocates more than the target: a decided MW is an upper bound (grid signals cap it), so
the shortfall is at most one miner's minimum power. ``ramp_totals`` cuts the move from the
current total to the target into steps of at most ``max_step_w``, so a site never steps its
whole load at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Below this many watts two set-points are the same (float noise, not a command).
EPSILON_W = 0.5


@dataclass(frozen=True, slots=True)
class MinerSpec:
    """What the allocation needs to know about one controllable miner."""

    name: str
    max_w: float
    efficiency_j_per_th: float
    #: Lowest power target, W; ``None`` = on/off only (it runs at ``max_w`` or pauses).
    min_w: float | None = None

    @property
    def adjustable(self) -> bool:
        """Whether power targets below ``max_w`` are possible."""
        return self.min_w is not None and self.min_w < self.max_w


def allocate(miners: Sequence[MinerSpec], target_w: float) -> dict[str, float]:
    """Watts for every miner (0 = paused), summing to at most ``target_w``.

    Most efficient first (ties by name, so the answer is deterministic); a miner runs at full
    power while it fits whole, an adjustable miner takes a remainder of at least its ``min_w``,
    and on/off miners that do not fit are skipped in favour of smaller ones further down.
    """
    remaining = max(0.0, target_w)
    plan: dict[str, float] = {}
    for miner in sorted(miners, key=lambda m: (m.efficiency_j_per_th, m.name)):
        if remaining + EPSILON_W >= miner.max_w:
            watts = miner.max_w
        elif miner.adjustable and miner.min_w is not None and remaining >= miner.min_w:
            watts = remaining
        else:
            watts = 0.0
        plan[miner.name] = watts
        remaining = max(0.0, remaining - watts)
    return plan


#: More steps than this and each step widens (memory and time stay bounded).
MAX_STEPS = 10_000


def ramp_totals(current_w: float, target_w: float, max_step_w: float) -> list[float]:
    """The totals to pass through from ``current_w`` to ``target_w``, ending at the target,
    each at most ``max_step_w`` from the one before (empty when already there; at most
    :data:`MAX_STEPS` of them, wider steps past that)."""
    if max_step_w <= 0:
        raise ValueError("max_step_w must be positive")
    gap = target_w - current_w
    if abs(gap) <= EPSILON_W:
        return []
    steps = min(MAX_STEPS, math.ceil(abs(gap) / max_step_w - 1e-9))
    return [*(current_w + gap * k / steps for k in range(1, steps)), target_w]


def changed(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """The set-points of ``after`` that differ from ``before`` (a miner absent before counts)."""
    return {
        name: watts
        for name, watts in after.items()
        if name not in before or abs(before[name] - watts) > EPSILON_W
    }
