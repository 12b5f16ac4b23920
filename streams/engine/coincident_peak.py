"""ERCOT coincident-peak (4CP) probability: the pure model behind the forecaster's signals.

Owns the feature definition (built from plain values known at decision time), the fitted
logistic coefficients, the probability that one operating hour holds its month's 4CP interval,
and the translation of that probability into the ``incentive_usd_per_mwh`` of a
``coincident_peak`` grid signal, which the snapshot turns into ``peak_cost_usd_per_mw``.

What is known when (docs/COINCIDENT_PEAK.md): the probabilities of operating day D (Central
time) are issued at :data:`ISSUE_TIME` Central on D-1, before ERCOT's day-ahead market closes
(10:00 on D-1), so a plan that sells D's reserve in that market already prices D's peak risk.
They use ERCOT's day-ahead demand forecast for D's hours and for D-1's, and the daily peaks of
*actual* demand on the days before D-1. Nothing of D-1's or D's actual demand and no forecast
for D+1 or later enters; :func:`reference_peak_mw` is where that rule is enforced.

Must not read files, clocks, the environment or topics, nor import pandas, the worker or a
Kafka client. Fitting and evaluation on history live in
:mod:`streams.backtest.coincident_peak_history`.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schemas import GridSignalEvent

#: The months whose system peaks set the 4CP charge (June-September).
PEAK_MONTHS = (6, 7, 8, 9)
#: One peak interval per summer month; the charge is the load's average over the four.
PEAKS_PER_YEAR = 4
#: ERCOT-wide transmission rate for 2025, $/kW-year (PUCT docket 57491; data/README.md).
TARIFF_2025_USD_PER_KW_YEAR = 68.5
#: Mid-point (local clock hours) of 16:00-17:00 Central, which held 83 of the 92 4CP intervals
#: of 1996-2018 (the 4CP file, before any summer we evaluate on): fixed a priori, not fitted.
PEAK_HOUR_CENTRE = 16.5
#: How far back the reference peak looks on a month's first day, before any day of the month
#: has been observed.
TRAILING_DAYS = 7
#: When the probabilities of operating day D are issued: this Central time on D-1
#: (:data:`ISSUE_DAYS_BEFORE`). ERCOT's day-ahead load forecast for D is public by then, and
#: ERCOT's day-ahead market (where reserve for D is sold) closes at 10:00 on D-1.
ISSUE_TIME = time(6, 0)
ISSUE_DAYS_BEFORE = 1
#: ERCOT's clock: operating days, the issue time and the peak hours are Central prevailing time.
CENTRAL = ZoneInfo("America/Chicago")
#: The wire contract's ceiling on an incentive (``GridSignalEvent.incentive_usd_per_mwh``).
MAX_INCENTIVE_USD_PER_MWH = 100_000.0

FEATURE_NAMES = ("forecast_excess", "day_shape", "hour_offset_sq", "non_workday", "month_left")


@dataclass(frozen=True, slots=True)
class PeakFeatures:
    """The model's inputs for one operating hour, every one known at the day's decision time.

    - ``forecast_excess``: day-ahead forecast for the hour / reference peak - 1 (how far the
      hour is forecast above the month's highest actual demand so far).
    - ``day_shape``: forecast for the hour / highest forecast of the day - 1 (0 at the day's
      forecast peak hour, negative elsewhere).
    - ``hour_offset_sq``: (hour mid-point - 16:30 local)^2, in hours^2.
    - ``non_workday``: 1 on Saturdays, Sundays, Independence Day (observed) and Labor Day.
    - ``month_left``: days of the month after this one / days in the month (the more days
      still to come, the more chances for a later day to beat this one).
    """

    forecast_excess: float
    day_shape: float
    hour_offset_sq: float
    non_workday: float
    month_left: float

    def vector(self) -> tuple[float, ...]:
        """The features in :data:`FEATURE_NAMES` order."""
        return (
            self.forecast_excess,
            self.day_shape,
            self.hour_offset_sq,
            self.non_workday,
            self.month_left,
        )


@dataclass(frozen=True, slots=True)
class CoincidentPeakModel:
    """A logistic regression in raw feature units: p = 1 / (1 + exp(-(intercept + w . x))).

    ``trained_on`` lists the summers whose 4CP labels fitted it, so a backtest can check that
    it never scores a summer the model has seen. ``l2`` and ``jeffreys`` record the fit's
    penalties (ridge weight on standardised features; Firth's Jeffreys-prior penalty).
    ``calibration`` records the recalibration (a, b) already folded into the coefficients:
    p = sigmoid(a + b x the penalised fit's logit); (0, 1) when none.
    """

    intercept: float
    weights: tuple[float, ...]
    trained_on: tuple[int, ...] = ()
    l2: float = 0.0
    jeffreys: bool = True
    calibration: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURE_NAMES):
            raise ValueError(f"expected {len(FEATURE_NAMES)} weights, got {len(self.weights)}")
        if not all(math.isfinite(v) for v in (self.intercept, *self.weights)):
            raise ValueError("coefficients must be finite")

    def logit(self, features: PeakFeatures) -> float:
        """Log-odds of the hour holding its month's 4CP interval."""
        return self.intercept + math.fsum(
            w * x for w, x in zip(self.weights, features.vector(), strict=True)
        )

    def probability(self, features: PeakFeatures) -> float:
        """P(this hour holds its month's 4CP interval)."""
        return sigmoid(self.logit(features))


#: Fitted on every summer with both load data and 4CP labels (2019, 2020, 2022, 2023, 2024;
#: ERCOT's 2021 list is missing from the source) with Firth's penalty, and recalibrated on their
#: leave-one-summer-out predictions, by
#: ``streams.backtest.coincident_peak_history.fit_calibrated``; a data test refits and
#: compares. Use it live; a backtest must use a model that excludes the summer it scores.
FITTED = CoincidentPeakModel(
    intercept=-2.5994086008105115,
    weights=(
        22.601321142213447,  # forecast_excess: +1 % above the month's peak so far, x1.25 odds
        103.70257066300819,  # day_shape: the day's forecast peak hour is the likely one
        -0.46055971353328695,  # hour_offset_sq: an hour from 16:30, x0.63; three, x0.016
        -0.8934095031198587,  # non_workday: x0.41 on weekends and holidays (one peak in 2024)
        -1.555451416174278,  # month_left: days still to come can beat today
    ),
    trained_on=(2019, 2020, 2022, 2023, 2024),
    calibration=(-0.7769734391318144, 0.8332047302329889),
)


def probability(features: PeakFeatures, model: CoincidentPeakModel = FITTED) -> float:
    """P(the hour described by ``features`` holds its month's 4CP interval)."""
    return model.probability(features)


def sigmoid(z: float) -> float:
    """The logistic function, without overflow for large |z|."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def is_non_workday(day: date) -> bool:
    """Weekends and the two federal holidays inside June-September, when offices stay shut."""
    if day.weekday() >= 5:
        return True
    if day.month == 7:
        # Independence Day falling on a weekend is observed on the Friday before or the Monday
        # after it.
        july4 = date(day.year, 7, 4)
        return day == july4 + timedelta(days={5: -1, 6: 1}.get(july4.weekday(), 0))
    # Labor Day: the first Monday of September.
    return day.month == 9 and day.weekday() == 0 and day.day <= 7


def build_features(
    *,
    forecast_mw: float,
    day_forecast_peak_mw: float,
    reference_peak_mw: float,
    day: date,
    local_hour: int,
) -> PeakFeatures:
    """The features of hour ``local_hour`` (0-23, Central prevailing time) of operating ``day``.

    ``reference_peak_mw`` is :func:`reference_peak_mw` for ``day``; ``day_forecast_peak_mw``
    the highest day-ahead forecast among the day's hours.
    """
    if not (forecast_mw > 0 and day_forecast_peak_mw > 0 and reference_peak_mw > 0):
        raise ValueError("forecasts and the reference peak must be positive MW")
    if not 0 <= local_hour <= 23:
        raise ValueError(f"local_hour must be 0-23, got {local_hour}")
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    return PeakFeatures(
        forecast_excess=forecast_mw / reference_peak_mw - 1.0,
        day_shape=forecast_mw / day_forecast_peak_mw - 1.0,
        hour_offset_sq=(local_hour + 0.5 - PEAK_HOUR_CENTRE) ** 2,
        non_workday=1.0 if is_non_workday(day) else 0.0,
        month_left=(days_in_month - day.day) / days_in_month,
    )


def reference_peak_mw(
    daily_peaks: Mapping[date, float],
    day: date,
    previous_day_forecast_peak_mw: float | None = None,
) -> float | None:
    """The highest demand known when ``day``'s probabilities are issued (on the day before):
    the month-to-date peak as it stands then.

    Reads the *actual* daily peaks only of days strictly before the day before ``day`` (the
    issue day's own demand is not over yet): those of ``day``'s month, or on the month's first
    day (nothing of the month known yet) the :data:`TRAILING_DAYS` before the issue day. The
    issue day itself enters through ERCOT's day-ahead forecast of its peak,
    ``previous_day_forecast_peak_mw`` (published the day before it), when given. ``None`` when
    nothing is known. This is the look-ahead guard: whatever ``daily_peaks`` holds for the
    issue day or later is never read.
    """
    issue_day = day - timedelta(days=ISSUE_DAYS_BEFORE)
    first = day.replace(day=1)
    since = first if day > first else issue_day - timedelta(days=TRAILING_DAYS)
    known = [
        daily_peaks[d]
        for d in (since + timedelta(days=k) for k in range((issue_day - since).days))
        if d in daily_peaks and math.isfinite(daily_peaks[d])
    ]
    if previous_day_forecast_peak_mw is not None and math.isfinite(previous_day_forecast_peak_mw):
        known.append(previous_day_forecast_peak_mw)
    return max(known) if known else None


def day_probabilities(
    day: date,
    forecasts_mw: Sequence[tuple[int, float]],
    daily_peaks: Mapping[date, float],
    model: CoincidentPeakModel = FITTED,
    *,
    previous_day_forecast_peak_mw: float | None = None,
) -> list[float]:
    """Per hour of operating ``day``: P(it holds the month's 4CP interval), issued at
    :data:`ISSUE_TIME` on the day before.

    ``forecasts_mw`` pairs each local clock hour of the day with its day-ahead demand forecast
    (23 or 25 pairs on DST days); ``daily_peaks`` maps earlier days to their actual peak demand
    (only days before the issue day are read); ``previous_day_forecast_peak_mw`` is ERCOT's
    day-ahead forecast of the issue day's highest hour (the model was fitted with it: leave it
    out only when it is unknown). Outside June-September, or before any demand is known, every
    probability is 0: there is no peak to price, or no honest way to price it.
    """
    if day.month not in PEAK_MONTHS or not forecasts_mw:
        return [0.0] * len(forecasts_mw)
    reference = reference_peak_mw(daily_peaks, day, previous_day_forecast_peak_mw)
    if reference is None:
        return [0.0] * len(forecasts_mw)
    day_peak = max(mw for _, mw in forecasts_mw)
    return [
        model.probability(
            build_features(
                forecast_mw=mw,
                day_forecast_peak_mw=day_peak,
                reference_peak_mw=reference,
                day=day,
                local_hour=hour,
            )
        )
        for hour, mw in forecasts_mw
    ]


def charge_usd_per_mw_per_peak(tariff_usd_per_kw_year: float) -> float:
    """What 1 MW present at one monthly peak interval costs: tariff x 1000 kW/MW / 4 peaks.

    At $68.5/kW-year that is $17,125 per MW per peak.
    """
    if not (math.isfinite(tariff_usd_per_kw_year) and tariff_usd_per_kw_year >= 0):
        raise ValueError("tariff_usd_per_kw_year must be finite and >= 0")
    return tariff_usd_per_kw_year * 1000.0 / PEAKS_PER_YEAR


def signal_incentive_usd_per_mwh(
    probability: float, tariff_usd_per_kw_year: float, interval_hours: float
) -> float:
    """The ``incentive_usd_per_mwh`` of a coincident-peak signal over one interval.

    incentive = probability x (tariff x 1000 / 4) / interval_hours

    where ``probability`` is P(the interval holds its month's 4CP interval). The snapshot
    multiplies the incentive by each horizon step's hours (``peak_cost_usd_per_mw``), so the
    steps covering the interval add up to probability x $/MW per peak: the expected charge of
    1 MW drawn flat through the interval. A 15-minute step inside an hourly signal carries a
    quarter of it, as if the peak were equally likely in each quarter of the hour.
    """
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    if not (math.isfinite(interval_hours) and interval_hours > 0):
        raise ValueError("interval_hours must be finite and > 0")
    return probability * charge_usd_per_mw_per_peak(tariff_usd_per_kw_year) / interval_hours


def issue_time(day: date) -> datetime:
    """When the probabilities of operating ``day`` are issued, in UTC: :data:`ISSUE_TIME`
    Central, :data:`ISSUE_DAYS_BEFORE` days before ``day`` (live source and backtest alike)."""
    issue_day = day - timedelta(days=ISSUE_DAYS_BEFORE)
    return datetime.combine(issue_day, ISSUE_TIME, tzinfo=CENTRAL).astimezone(UTC)


def forecast_signal(
    hour_start: datetime, probability: float, tariff_usd_per_kw_year: float, region: str
) -> GridSignalEvent:
    """The ``coincident_peak`` signal of one operating hour at ``probability``: the id is
    deterministic (``4cp-forecast:<hour start UTC>``), so a re-issued hour replaces the old one.
    A tariff so high that probability x charge exceeds the wire's ceiling sheds anyway."""
    incentive = signal_incentive_usd_per_mwh(probability, tariff_usd_per_kw_year, 1.0)
    return GridSignalEvent(
        interval_start=hour_start,
        interval_end=hour_start + timedelta(hours=1),
        signal_id=f"4cp-forecast:{hour_start:%Y-%m-%dT%H:%MZ}",
        signal_type="coincident_peak",
        region=region,
        incentive_usd_per_mwh=min(incentive, MAX_INCENTIVE_USD_PER_MWH),
    )
