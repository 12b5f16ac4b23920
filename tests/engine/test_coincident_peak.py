"""The 4CP probability model without data: features by hand, the look-ahead guard, the fitted
coefficients' shape and signs, and the signal formula the snapshot turns into a peak charge.
Every number here is SYNTHETIC, chosen to be checked by hand."""

from __future__ import annotations

import ast
import math
from dataclasses import FrozenInstanceError
from datetime import date, timedelta
from pathlib import Path

import pytest

from streams.engine import coincident_peak as cp
from streams.engine.coincident_peak import (
    FEATURE_NAMES,
    FITTED,
    CoincidentPeakModel,
    PeakFeatures,
    build_features,
    charge_usd_per_mw_per_peak,
    day_probabilities,
    is_non_workday,
    probability,
    reference_peak_mw,
    signal_incentive_usd_per_mwh,
)

AUG = {date(2024, 8, d): 70_000.0 + 100 * d for d in range(1, 32)}
DAY = date(2024, 8, 14)  # a Wednesday
FORECASTS = [(h, 60_000.0 + (1_000.0 * (16 - abs(16 - h)))) for h in range(24)]  # peak at 16


def test_features_are_computed_from_plain_values() -> None:
    f = build_features(
        forecast_mw=72_100.0,
        day_forecast_peak_mw=72_100.0,
        reference_peak_mw=70_000.0,
        day=DAY,
        local_hour=17,
    )
    assert f.forecast_excess == pytest.approx(0.03)
    assert f.day_shape == 0.0
    assert f.hour_offset_sq == 1.0  # 17:30 is an hour from 16:30
    assert f.non_workday == 0.0
    assert f.month_left == pytest.approx(17 / 31)
    assert len(f.vector()) == len(FEATURE_NAMES)


def test_non_workdays_are_weekends_and_the_summer_holidays() -> None:
    assert is_non_workday(date(2024, 6, 30))  # Sunday
    assert is_non_workday(date(2024, 7, 4))  # Thursday, Independence Day
    assert is_non_workday(date(2021, 7, 5))  # Monday, the 4th fell on a Sunday
    assert is_non_workday(date(2020, 7, 3))  # Friday, the 4th fell on a Saturday
    assert is_non_workday(date(2024, 9, 2))  # Labor Day
    assert not is_non_workday(date(2024, 9, 9))
    assert not is_non_workday(date(2024, 7, 5))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        build_features(
            forecast_mw=0.0, day_forecast_peak_mw=1.0, reference_peak_mw=1.0, day=DAY, local_hour=1
        )
    with pytest.raises(ValueError, match="local_hour"):
        build_features(
            forecast_mw=1.0, day_forecast_peak_mw=1.0, reference_peak_mw=1.0, day=DAY, local_hour=24
        )
    with pytest.raises(ValueError, match="weights"):
        CoincidentPeakModel(intercept=0.0, weights=(1.0,))


def test_reference_peak_reads_only_days_over_when_issued_the_day_before() -> None:
    # Issued on the 13th for the 14th: the 13th's actual demand is not over yet, so the actual
    # peaks end on the 12th; the 13th enters through ERCOT's day-ahead forecast of its peak.
    assert cp.ISSUE_DAYS_BEFORE == 1 and cp.ISSUE_TIME.hour < 10  # before the DAM closes
    assert reference_peak_mw(AUG, DAY) == AUG[date(2024, 8, 12)]
    assert reference_peak_mw(AUG, DAY, 75_000.0) == 75_000.0
    assert reference_peak_mw(AUG, DAY, 60_000.0) == AUG[date(2024, 8, 12)]
    # On the 1st nothing of the month is known yet: the trailing week of July stands in.
    july = {date(2024, 7, 24) + timedelta(days=k): 80_000.0 - k for k in range(8)}
    assert reference_peak_mw({**july, **AUG}, date(2024, 8, 1)) == 80_000.0
    assert reference_peak_mw({}, DAY) is None
    assert reference_peak_mw({}, DAY, 71_000.0) == 71_000.0
    # A huge July day does not leak into mid-August: the reference is month-to-date.
    assert reference_peak_mw({date(2024, 7, 31): 99_000.0, **AUG}, DAY) == AUG[date(2024, 8, 12)]


def test_changing_the_future_leaves_the_day_unchanged() -> None:
    before = day_probabilities(DAY, FORECASTS, AUG, previous_day_forecast_peak_mw=71_000.0)
    # Everything from the issue day on (its actual demand is still running) may change.
    issue_day = DAY - timedelta(days=1)
    future = {d: (v * 1.5 if d >= issue_day else v) for d, v in AUG.items()}
    future[date(2024, 9, 1)] = 1e6
    assert (
        day_probabilities(DAY, FORECASTS, future, previous_day_forecast_peak_mw=71_000.0) == before
    )
    # ...while the past does matter: a higher peak two days ago lowers the day's odds, and so
    # does a higher forecast for the issue day.
    past = {**AUG, date(2024, 8, 12): 90_000.0}
    assert sum(day_probabilities(DAY, FORECASTS, past)) < sum(
        day_probabilities(DAY, FORECASTS, AUG)
    )
    hot = day_probabilities(DAY, FORECASTS, AUG, previous_day_forecast_peak_mw=90_000.0)
    assert sum(hot) < sum(before)


def test_probabilities_peak_at_the_forecast_peak_and_vanish_at_night() -> None:
    p = day_probabilities(DAY, FORECASTS, AUG)
    assert all(0.0 <= v <= 1.0 for v in p)
    assert max(range(24), key=p.__getitem__) == 16
    assert p[3] < 1e-4 < p[16]


def test_no_probability_outside_the_summer_or_without_history() -> None:
    assert day_probabilities(date(2024, 5, 31), FORECASTS, AUG) == [0.0] * 24
    assert day_probabilities(date(2024, 10, 1), FORECASTS, AUG) == [0.0] * 24
    assert day_probabilities(DAY, FORECASTS, {}) == [0.0] * 24


def test_fitted_coefficients_have_the_expected_signs_and_are_frozen() -> None:
    w = dict(zip(FEATURE_NAMES, FITTED.weights, strict=True))
    assert w["forecast_excess"] > 0 and w["day_shape"] > 0
    assert w["hour_offset_sq"] < 0 and w["non_workday"] < 0 and w["month_left"] < 0
    # Fitted with Firth's penalty and recalibrated: the over-confident fit's logits were
    # flattened (slope < 1), and the record says so.
    _, b = FITTED.calibration
    assert 0.0 < b < 1.0
    assert FITTED.jeffreys and FITTED.l2 == 0.0
    with pytest.raises(FrozenInstanceError):
        FITTED.intercept = 0.0  # type: ignore[misc]


def test_probability_is_monotone_in_the_forecast_and_stable_at_extremes() -> None:
    def at(excess: float) -> float:
        return probability(PeakFeatures(excess, 0.0, 0.0, 0.0, 0.5))

    values = [at(x) for x in (-0.2, -0.05, 0.0, 0.05, 0.2)]
    assert values == sorted(values)
    assert probability(PeakFeatures(-1e6, 0.0, 0.0, 0.0, 0.0)) == 0.0
    assert probability(PeakFeatures(1e6, 0.0, 0.0, 0.0, 0.0)) == 1.0
    assert cp.sigmoid(0.0) == 0.5


def test_signal_formula() -> None:
    assert charge_usd_per_mw_per_peak(68.5) == pytest.approx(17_125.0)
    assert signal_incentive_usd_per_mwh(1.0, 68.5, 1.0) == pytest.approx(17_125.0)
    assert signal_incentive_usd_per_mwh(0.02, 68.5, 1.0) == pytest.approx(342.5)
    assert signal_incentive_usd_per_mwh(1.0, 68.5, 0.25) == pytest.approx(68_500.0)
    assert signal_incentive_usd_per_mwh(0.0, 68.5, 1.0) == 0.0
    # The snapshot charges incentive x step hours: the steps covering one signal add up to
    # probability x $/MW per peak, whatever the step length.
    p, hours = 0.03, 1.0
    incentive = signal_incentive_usd_per_mwh(p, 68.5, hours)
    for step in (1 / 12, 0.25, 0.5, 1.0):
        covered = incentive * step * round(hours / step)
        assert covered == pytest.approx(p * 17_125.0)
    for bad in (-0.1, 1.1, math.nan):
        with pytest.raises(ValueError, match="probability"):
            signal_incentive_usd_per_mwh(bad, 68.5, 1.0)
    with pytest.raises(ValueError, match="interval_hours"):
        signal_incentive_usd_per_mwh(0.5, 68.5, 0.0)
    with pytest.raises(ValueError, match="tariff"):
        signal_incentive_usd_per_mwh(0.5, -1.0, 1.0)


def test_the_model_module_stays_pure() -> None:
    source = Path(cp.__file__).read_text()
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    # The standard library's calendar and time-zone rules, and the contract's signal event.
    allowed = {"__future__", "calendar", "math", "collections", "dataclasses", "datetime"}
    assert names <= allowed | {"zoneinfo", "schemas"}
