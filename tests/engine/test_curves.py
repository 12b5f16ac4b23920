"""Curves answer "what was in force at t" from points that started at or before t; windows
answer it from the window covering t only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.engine.curves import Curve, Point, Windows

T0 = datetime(2024, 8, 20, tzinfo=UTC)
Q = timedelta(minutes=15)


def point(k: int, value: float, priority: int = 2) -> Point:
    return Point(T0 + k * Q, T0 + (k + 1) * Q, value, priority)


def test_value_in_force_and_hold_last() -> None:
    curve = Curve()
    curve.put(point(0, 10.0))
    curve.put(point(1, 20.0))
    assert curve.at(T0 - Q) is None
    covered = curve.at(T0 + Q + timedelta(minutes=5))
    assert covered is not None and covered.value == 20.0 and not covered.held
    held = curve.at(T0 + 5 * Q)
    assert held is not None and held.value == 20.0 and held.held


def test_real_time_beats_forecast_for_the_same_interval() -> None:
    curve = Curve()
    assert curve.put(point(0, 99.0, priority=2))
    assert not curve.put(point(0, 11.0, priority=0))
    lookup = curve.at(T0)
    assert lookup is not None and lookup.value == 99.0


def test_points_out_of_order_are_kept_sorted() -> None:
    curve = Curve()
    for k in (3, 0, 2, 1):
        curve.put(point(k, float(k)))
    assert curve.latest_start() == T0 + 3 * Q
    assert [curve.at(T0 + k * Q).value for k in range(4)] == [0.0, 1.0, 2.0, 3.0]  # type: ignore[union-attr]


def test_prune_keeps_the_last_point_for_hold_last() -> None:
    curve = Curve()
    for k in range(10):
        curve.put(point(k, float(k)))
    curve.prune_before(T0 + 5 * Q)
    assert len(curve) == 6
    lookup = curve.at(T0 + 5 * Q)
    assert lookup is not None and lookup.value == 5.0


def test_a_window_applies_over_its_own_interval_only() -> None:
    windows: Windows[str] = Windows()
    windows.put(T0 + 4 * Q, T0 + 5 * Q, "tomorrow")
    assert windows.at(T0) is None  # announced ahead: says nothing about now
    assert windows.at(T0 + 4 * Q) == "tomorrow"
    assert windows.at(T0 + 5 * Q) is None  # ended: not held


def test_the_window_that_started_last_wins_where_windows_overlap() -> None:
    windows: Windows[str] = Windows()
    windows.put(T0, T0 + 8 * Q, "long")
    windows.put(T0 + 2 * Q, T0 + 3 * Q, "short")
    assert [windows.at(T0 + k * Q) for k in (0, 2, 3, 7, 8)] == [
        "long",
        "short",
        "long",
        "long",
        None,
    ]
    windows.put(T0 + 2 * Q, T0 + 3 * Q, "corrected")  # same start: replaces
    assert windows.at(T0 + 2 * Q) == "corrected"
    assert len(windows) == 2


def test_prune_forgets_windows_that_ended() -> None:
    windows: Windows[str] = Windows()
    windows.put(T0, T0 + 8 * Q, "long")
    windows.put(T0 + 2 * Q, T0 + 3 * Q, "short")
    windows.prune_before(T0 + 4 * Q)
    assert len(windows) == 1
    assert windows.at(T0 + 5 * Q) == "long"
