"""Allocation and ramp planning: small cases checked by hand, and properties over random fleets
(never above the target, every miner off or within its range, steps within the ramp limit)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.agent.allocation import (
    EPSILON_W,
    MAX_STEPS,
    MinerSpec,
    allocate,
    changed,
    ramp_totals,
)


def test_most_efficient_first_marginal_miner_takes_the_remainder() -> None:
    fleet = [
        MinerSpec("slow", 3000, 25.0, min_w=1500),
        MinerSpec("fast", 3000, 18.0, min_w=1500),
        MinerSpec("mid", 3000, 22.0, min_w=1500),
    ]
    assert allocate(fleet, 7000) == {"fast": 3000, "mid": 3000, "slow": 0.0}
    assert allocate(fleet, 7600) == {"fast": 3000, "mid": 3000, "slow": 1600}
    assert allocate(fleet, 0) == {"fast": 0.0, "mid": 0.0, "slow": 0.0}
    assert allocate(fleet, 1e9) == {"fast": 3000, "mid": 3000, "slow": 3000}


def test_on_off_miner_that_does_not_fit_is_skipped_for_a_smaller_one() -> None:
    fleet = [MinerSpec("big", 5000, 18.0), MinerSpec("small", 2000, 30.0)]
    assert allocate(fleet, 4000) == {"big": 0.0, "small": 2000}


def test_ramp_totals_end_at_the_target_in_equal_bounded_steps() -> None:
    assert ramp_totals(12_000, 7_500, 2_000) == [10_500, 9_000, 7_500]
    assert ramp_totals(0, 6_000, 3_000) == [3_000, 6_000]
    assert ramp_totals(5_000, 5_000.1, 1_000) == []
    with pytest.raises(ValueError, match="positive"):
        ramp_totals(0, 1, 0)


def test_changed_lists_only_moves() -> None:
    assert changed({"a": 100.0, "b": 0.0}, {"a": 100.2, "b": 50.0, "c": 0.0}) == {
        "b": 50.0,
        "c": 0.0,
    }


miners = st.lists(
    st.builds(
        MinerSpec,
        name=st.text("abcdefgh", min_size=1, max_size=6),
        max_w=st.floats(500, 6000),
        efficiency_j_per_th=st.floats(10, 40),
        min_w=st.one_of(st.none(), st.floats(100, 500)),
    ),
    max_size=12,
    unique_by=lambda m: m.name,
)


@given(miners, st.floats(0, 80_000))
def test_allocation_never_exceeds_the_target_and_respects_each_range(
    fleet: list[MinerSpec], target: float
) -> None:
    plan = allocate(fleet, target)
    assert set(plan) == {m.name for m in fleet}
    assert sum(plan.values()) <= target + EPSILON_W
    for miner in fleet:
        watts = plan[miner.name]
        if miner.adjustable:
            assert watts == 0.0 or miner.min_w <= watts <= miner.max_w  # type: ignore[operator]
        else:
            assert watts in (0.0, miner.max_w)


@given(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(1, 1e5))
def test_ramp_steps_are_within_the_limit_and_reach_the_target(
    current: float, target: float, step: float
) -> None:
    totals = ramp_totals(current, target, step)
    if abs(target - current) <= EPSILON_W:
        assert totals == []
        return
    assert totals[-1] == target
    assert len(totals) <= MAX_STEPS
    limit = max(step, abs(target - current) / MAX_STEPS)  # wider steps past MAX_STEPS
    previous = current
    for total in totals:
        assert abs(total - previous) <= limit * (1 + 1e-9)
        previous = total
