"""The rolling horizon: fine steps near now, coarse steps later (same foresight, a fraction of the
variables). Default: 12 x 5 min, then hourly to 24 h (35 steps)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from optimizer.errors import SpecError


@dataclass(frozen=True, slots=True)
class Horizon:
    """Step lengths in minutes, in order from now."""

    step_minutes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.step_minutes:
            raise SpecError("horizon", "needs at least one step")
        if any(m <= 0 for m in self.step_minutes):
            raise SpecError("horizon.step_minutes", "every step must be longer than zero")
        if sum(self.step_minutes) > 48 * 60:
            raise SpecError("horizon", "longer than 48 h")

    @classmethod
    def mixed(
        cls,
        fine_steps: int = 12,
        fine_minutes: int = 5,
        coarse_minutes: int = 60,
        total_hours: float = 24.0,
    ) -> Horizon:
        """``fine_steps`` x ``fine_minutes``, then ``coarse_minutes`` steps to ``total_hours``."""
        steps = [fine_minutes] * fine_steps
        remaining = int(total_hours * 60) - fine_minutes * fine_steps
        if remaining < 0:
            raise SpecError("horizon", "the fine steps alone are longer than the horizon")
        steps += [coarse_minutes] * (remaining // coarse_minutes)
        if remaining % coarse_minutes:
            steps.append(remaining % coarse_minutes)
        return cls(tuple(steps))

    @property
    def n_steps(self) -> int:
        return len(self.step_minutes)

    @property
    def step_hours(self) -> tuple[float, ...]:
        return tuple(m / 60.0 for m in self.step_minutes)

    def starts(self, now: datetime) -> tuple[datetime, ...]:
        """Start of every step, counting from ``now`` (pure: ``now`` is an input)."""
        out, at = [], now
        for minutes in self.step_minutes:
            out.append(at)
            at += timedelta(minutes=minutes)
        return tuple(out)

    def step(self, index: int) -> timedelta:
        return timedelta(minutes=self.step_minutes[index])
