"""The 4CP forecaster on history: reading the shared ERCOT files, point-in-time features,
fitting, evaluation, the forecaster's signals for a backtest window and the realised charge.

Owns the two sources and their clocks:

- ``ercot/ercot_load_eia930_hourly_2019_2024.csv`` (EIA-930): ``period_utc`` labels an hour by
  its END, as EIA does (gridstatus' EIA reader also takes ``period`` as the interval end).
  Checked on this file: the day's highest hour, taken as hour-ending, is the hour holding
  ERCOT's 4CP interval or the one after it on 19 of the 20 4CP days of 2019-2024; read as
  hour-starting it would always lag the 4CP interval by one to two hours. So the hour starts at
  ``period_utc - 1 h``.
- ``ercot/ercot_4cp_intervals_1996_2024.csv``: ERCOT's 4CP 15-minute intervals, Central
  prevailing time, with both the interval ending and the interval start; we use the start,
  converted to UTC through the IANA zone (CDT all summer). 2021 is missing in the source.

The model itself (features, coefficients, probability, signal formula) is pure and lives in
:mod:`streams.engine.coincident_peak`; this module only feeds it history and scores it.
Reads the data folder through a path argument or ``GRIDSHIFT_DATA_DIR``, never copies it, and
imports nothing of ``streams.worker`` or a Kafka client.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal, cast

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeResult, minimize
from scipy.special import expit

from optimizer.value import FloatArray
from schemas import GridSignalEvent
from streams.backtest.history import data_file
from streams.engine.coincident_peak import (
    CENTRAL,
    FEATURE_NAMES,
    ISSUE_DAYS_BEFORE,
    MAX_INCENTIVE_USD_PER_MWH,
    PEAK_MONTHS,
    TARIFF_2025_USD_PER_KW_YEAR,
    CoincidentPeakModel,
    build_features,
    charge_usd_per_mw_per_peak,
    forecast_signal,
    issue_time,
    reference_peak_mw,
    signal_incentive_usd_per_mwh,
)

EIA_LOAD = Path("ercot") / "ercot_load_eia930_hourly_2019_2024.csv"
FOUR_CP = Path("ercot") / "ercot_4cp_intervals_1996_2024.csv"
REGION = "ERCOT"
#: Probabilities at which "peaks caught vs hours flagged" is counted. At $17,125 per MW per peak
#: an hour with p = 0.5 % costs ~$86/MWh in expectation, about a miner's margin: the optimizer
#: sheds mining around there, so the low thresholds are the ones that matter.
THRESHOLDS = (0.002, 0.005, 0.01, 0.02, 0.05)
#: The naive rule's window: hours starting 15:00, 16:00 and 17:00 Central (15:00-18:00).
NAIVE_HOURS = (15, 16, 17)
HOUR = timedelta(hours=1)


# --- reading ------------------------------------------------------------------------------


def resolve_data_dir(data_dir: Path | str | None = None) -> Path | None:
    """The data folder: the argument, else ``GRIDSHIFT_DATA_DIR``, else ``None``."""
    if data_dir is not None:
        return Path(data_dir)
    configured = os.environ.get("GRIDSHIFT_DATA_DIR")
    return Path(configured) if configured else None


def read_hourly_load(data_dir: Path | str | None = None) -> pd.DataFrame:
    """ERCOT hourly actual demand and day-ahead demand forecast (EIA-930), by hour start.

    Columns: ``start_utc`` (tz-aware UTC hour start), ``demand_mw``, ``forecast_mw``,
    ``local_date`` (``datetime.date``, Central) and ``local_hour`` (0-23, Central).
    """
    path = data_file(resolve_data_dir(data_dir), EIA_LOAD)
    raw = pd.read_csv(path, usecols=["period_utc", "demand_mw", "demand_forecast_da_mw"])
    # EIA labels an hour by its end (module docstring): the hour starts one hour earlier.
    start = pd.to_datetime(raw["period_utc"], utc=True) - pd.Timedelta(hours=1)
    local = start.dt.tz_convert(CENTRAL)
    frame = pd.DataFrame(
        {
            "start_utc": start,
            "demand_mw": pd.to_numeric(raw["demand_mw"], errors="coerce"),
            "forecast_mw": pd.to_numeric(raw["demand_forecast_da_mw"], errors="coerce"),
            "local_date": local.dt.date,
            "local_hour": local.dt.hour.astype(int),
        }
    )
    return frame.sort_values("start_utc", ignore_index=True)


def read_4cp(data_dir: Path | str | None = None) -> pd.DataFrame:
    """ERCOT's 4CP intervals: ``year``, ``month`` (1-12), ``start_utc``, ``end_utc``."""
    path = data_file(resolve_data_dir(data_dir), FOUR_CP)
    raw = pd.read_csv(path)
    # Central prevailing time: localise through the zone (CDT in June-September), and refuse
    # a non-existent or ambiguous wall time rather than guess.
    start = (
        pd.to_datetime(raw["interval_start_local"])
        .dt.tz_localize(CENTRAL, ambiguous="raise", nonexistent="raise")
        .dt.tz_convert("UTC")
    )
    end = (
        pd.to_datetime(raw["interval_ending_local"])
        .dt.tz_localize(CENTRAL, ambiguous="raise", nonexistent="raise")
        .dt.tz_convert("UTC")
    )
    if not ((end - start) == pd.Timedelta(minutes=15)).all():
        raise ValueError(f"{path}: every 4CP interval must last 15 minutes")
    month = pd.to_datetime(raw["month"], format="%B").dt.month
    return pd.DataFrame(
        {"year": raw["year"].astype(int), "month": month, "start_utc": start, "end_utc": end}
    ).sort_values("start_utc", ignore_index=True)


def realised_peaks(year: int, data_dir: Path | str | None = None) -> list[datetime]:
    """The year's 4CP interval starts (UTC), June to September; fewer than 4 if the source
    lacks them (2021 is missing entirely)."""
    peaks = read_4cp(data_dir)
    return [ts.to_pydatetime() for ts in peaks.loc[peaks["year"] == year, "start_utc"]]


# --- point-in-time features ---------------------------------------------------------------


def daily_peaks(load: pd.DataFrame) -> dict[date, float]:
    """Each Central day's highest actual hourly demand (days without any value are left out)."""
    peaks = load.dropna(subset=["demand_mw"]).groupby("local_date")["demand_mw"].max()
    return {d: float(v) for d, v in peaks.items()}


def daily_forecast_peaks(load: pd.DataFrame) -> dict[date, float]:
    """Each Central day's highest day-ahead demand forecast (ERCOT's, published the day before)."""
    peaks = load.dropna(subset=["forecast_mw"]).groupby("local_date")["forecast_mw"].max()
    return {d: float(v) for d, v in peaks.items()}


def decision_time(day: date) -> datetime:
    """When the probabilities of operating ``day`` are issued (the engine's rule)."""
    return issue_time(day)


def point_in_time_frame(load: pd.DataFrame, peaks: Iterable[datetime] = ()) -> pd.DataFrame:
    """One row per June-September hour with the features known at its decision time.

    Columns: ``start_utc``, ``decision_utc``, ``year``, ``month``, ``local_date``,
    ``local_hour``, ``forecast_mw``, ``reference_mw`` (the model's reference peak, known at
    ``decision_utc`` on the day before), ``mtd_peak_mw`` (the naive rule's input: same-month
    actual peak through the day before, known at 00:00 on the day, not at ``decision_utc``; NaN
    on the month's first day), the model's features by name, and ``y`` (1 when the hour holds
    one of ``peaks``, 4CP interval starts). Days without a reference peak or with a missing
    forecast are left out.
    """
    known = daily_peaks(load)
    forecast_peaks = daily_forecast_peaks(load)
    in_season = load[
        load["start_utc"].dt.tz_convert(CENTRAL).dt.month.isin(PEAK_MONTHS)
        & load["forecast_mw"].notna()
    ]
    peak_hours = {pd.Timestamp(p).floor("h") for p in peaks}
    rows: list[dict[str, object]] = []
    for key, hours in in_season.groupby("local_date", sort=True):
        day = cast(date, key)
        issue_day = day - timedelta(days=ISSUE_DAYS_BEFORE)
        reference = reference_peak_mw(known, day, forecast_peaks.get(issue_day))
        if reference is None or not (hours["forecast_mw"] > 0).all():
            continue
        # The same-month actual peak through yesterday: what the naive rule, decided on the
        # day itself, compares against.
        first = day.replace(day=1)
        month_days = [first + timedelta(days=k) for k in range(day.day - 1)]
        month_known = [known[d] for d in month_days if d in known]
        mtd = max(month_known) if month_known else None
        day_peak = float(hours["forecast_mw"].max())
        issued = decision_time(day)
        for start, hour, mw in zip(
            hours["start_utc"], hours["local_hour"], hours["forecast_mw"], strict=True
        ):
            features = build_features(
                forecast_mw=float(mw),
                day_forecast_peak_mw=day_peak,
                reference_peak_mw=reference,
                day=day,
                local_hour=int(hour),
            )
            rows.append(
                {
                    "start_utc": start,
                    "decision_utc": issued,
                    "year": day.year,
                    "month": day.month,
                    "local_date": day,
                    "local_hour": int(hour),
                    "forecast_mw": float(mw),
                    "reference_mw": reference,
                    "mtd_peak_mw": math.nan if mtd is None else mtd,
                    **dict(zip(FEATURE_NAMES, features.vector(), strict=True)),
                    "y": 1.0 if start in peak_hours else 0.0,
                }
            )
    return pd.DataFrame(rows)


def summer_frame(data_dir: Path | str | None = None) -> pd.DataFrame:
    """:func:`point_in_time_frame` of the whole shared history, labelled with ERCOT's 4CP."""
    peaks = read_4cp(data_dir)["start_utc"].dt.to_pydatetime()
    return point_in_time_frame(read_hourly_load(data_dir), list(peaks))


def labelled_years(frame: pd.DataFrame) -> list[int]:
    """Summers with both load data and 4CP labels (a summer without any label is unscored)."""
    by_year = frame.groupby("year")["y"].sum()
    return sorted(int(y) for y, n in by_year.items() if n > 0)


# --- fitting and predicting ---------------------------------------------------------------


def features_matrix(frame: pd.DataFrame) -> FloatArray:
    """The feature columns as a (rows, features) array in :data:`FEATURE_NAMES` order."""
    matrix: FloatArray = frame[list(FEATURE_NAMES)].to_numpy(dtype=float)
    return matrix


#: The one coefficient whose sign the physics fixes: the farther an hour from 16:30 Central,
#: the less likely it holds the peak (all 112 intervals of 1996-2024 started 14:00-17:59).
#: Firth's objective has a second optimum with this weight positive, higher in penalised
#: likelihood (by 2.25 nats on 2019-2024), which flags midnight hours of days with a flat
#: forecast (18 % on 2020-09-28 00:00); the bound keeps the fit in the plausible one.
_NON_POSITIVE = ("hour_offset_sq",)


def fit_model(
    frame: pd.DataFrame, years: Sequence[int], l2: float = 0.0, *, jeffreys: bool = True
) -> CoincidentPeakModel:
    """Logistic regression on the given summers' hours, with Firth's penalty (Jeffreys prior).

    About four peaks a summer in ~2,900 hours, and none yet on a weekend or holiday: the
    ``non_workday`` class is separated (maximum likelihood drives its odds to zero). Firth's
    penalty, + 1/2 log det of the Fisher information, is the standard remedy for separation
    (Firth 1993; Heinze and Schemper 2002): the estimates stay finite without a penalty weight
    to choose. It also inflates rare-event probabilities (Puhr et al. 2017): the recalibration
    of :func:`fit_calibrated` takes that out. ``hour_offset_sq`` is held at or below zero
    (:data:`_NON_POSITIVE`). ``l2`` (on standardised features, intercept free) adds a ridge
    penalty; ``jeffreys`` False with ``l2`` = 1 is the fit used before (docs/COINCIDENT_PEAK.md).
    Features are standardised for the fit; the result is mapped back to raw units.
    """
    rows = frame[frame["year"].isin(years)]
    x, y = features_matrix(rows), rows["y"].to_numpy(dtype=float)
    if y.sum() < 1:
        raise ValueError(f"no 4CP label in summers {sorted(years)}: nothing to fit")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])

    bounds: list[tuple[float | None, float | None]] = [(None, None)] * z.shape[1]
    for name in _NON_POSITIVE:
        bounds[1 + FEATURE_NAMES.index(name)] = (None, 0.0)
    # Firth's objective is not concave: from zero alone, fits on two summers stopped in a worse
    # optimum. The ridge solution (the convex fit used before) is a second start; the better
    # of the two is kept.
    starts = [np.zeros(z.shape[1])]
    if jeffreys:
        ridge = _minimise(_penalised_loss(z, y, 1.0, jeffreys=False), starts[0], bounds)
        if ridge is not None:
            starts.append(np.asarray(ridge.x, dtype=float))
    fits = [_minimise(_penalised_loss(z, y, l2, jeffreys=jeffreys), w0, bounds) for w0 in starts]
    done = [f for f in fits if f is not None]
    if not done:
        raise RuntimeError(f"logistic fit did not converge on summers {sorted(years)}")
    result = min(done, key=lambda f: float(f.fun))
    w = np.asarray(result.x, dtype=float)
    weights = w[1:] / scale
    intercept = float(w[0] - np.sum(w[1:] * mean / scale))
    return CoincidentPeakModel(
        intercept=intercept,
        weights=tuple(float(v) for v in weights),
        trained_on=tuple(sorted(int(v) for v in years)),
        l2=l2,
        jeffreys=jeffreys,
    )


Loss = Callable[[FloatArray], tuple[float, FloatArray]]


def _penalised_loss(z: FloatArray, y: FloatArray, l2: float, *, jeffreys: bool) -> Loss:
    """The negative log-likelihood of the logistic model on design ``z`` (intercept first),
    with Firth's penalty (- 1/2 log det of the Fisher information) and a ridge on the
    non-intercept weights, and its gradient."""

    def loss(w: FloatArray) -> tuple[float, FloatArray]:
        eta = z @ w
        p = _sigmoid(eta)
        value = float(np.sum(np.logaddexp(0.0, eta) - y * eta)) + 0.5 * l2 * float(w[1:] @ w[1:])
        residual = y - p
        if jeffreys:
            weight = p * (1.0 - p)
            information = (z * weight[:, None]).T @ z
            _, log_det = np.linalg.slogdet(information)
            # The hat values h_i of the weighted design give the penalty's gradient:
            # d/dw 1/2 log det I(w) = z' (h * (1/2 - p)).
            hat = np.einsum("ij,jk,ik->i", z, np.linalg.inv(information), z) * weight
            value -= 0.5 * float(log_det)
            residual = residual + hat * (0.5 - p)
        grad = -(z.T @ residual)
        grad[1:] += l2 * w[1:]
        return value, grad

    return loss


def _minimise(
    loss: Loss, start: FloatArray, bounds: list[tuple[float | None, float | None]]
) -> OptimizeResult | None:
    """L-BFGS-B from ``start``; None when it fails (or the information matrix turns singular
    on the way, which a far start can do)."""
    try:
        result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    except np.linalg.LinAlgError:
        return None
    return result if result.success else None


def fit_calibrated(
    frame: pd.DataFrame, years: Sequence[int], l2: float = 0.0, *, jeffreys: bool = True
) -> CoincidentPeakModel:
    """:func:`fit_model`, then recalibrated on the training summers only.

    A penalised fit on ~4 peaks a summer is mis-scaled out of sample (the L2 fit used before
    shrank its logits toward the base rate; the Jeffreys-prior fit is a little over-confident:
    docs/COINCIDENT_PEAK.md, reliability). The fix is a logistic recalibration
    p' = sigmoid(a + b x logit(p)) with (a, b) fitted by maximum likelihood on the *out-of-
    sample* predictions of the training summers (each predicted by a fit on the other training
    summers), so the summer scored never enters. It is linear in the logit, so the result is
    again a :class:`CoincidentPeakModel` (coefficients x b, intercept a + b x intercept). With
    fewer than two training summers there is nothing to hold out: the plain fit is returned.
    """
    base = fit_model(frame, years, l2=l2, jeffreys=jeffreys)
    if len(years) < 2:
        return base
    logits, labels = [], []
    for held in years:
        inner = fit_model(frame, [y for y in years if y != held], l2=l2, jeffreys=jeffreys)
        rows = frame[frame["year"] == held]
        logits.append(_logit(predict(inner, rows)))
        labels.append(rows["y"].to_numpy(dtype=float))
    z, y = np.concatenate(logits), np.concatenate(labels)
    design = np.column_stack([np.ones(len(z)), z])

    def loss(w: FloatArray) -> tuple[float, FloatArray]:
        eta = design @ w
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta)), design.T @ (_sigmoid(eta) - y)

    # b > 0: a recalibration may rescale the logit, never turn it around (a negative slope
    # would flip every coefficient's sign, the hour term's included).
    result = minimize(
        loss, np.array([0.0, 1.0]), jac=True, method="L-BFGS-B", bounds=[(None, None), (1e-6, None)]
    )
    if not result.success:
        raise RuntimeError(f"recalibration did not converge: {result.message}")
    a, b = (float(v) for v in result.x)
    return CoincidentPeakModel(
        intercept=a + b * base.intercept,
        weights=tuple(b * w for w in base.weights),
        trained_on=base.trained_on,
        l2=l2,
        jeffreys=jeffreys,
        calibration=(a, b),
    )


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-15, 1 - 1e-15)
    out: FloatArray = np.log(q / (1 - q))
    return out


def predict(model: CoincidentPeakModel, frame: pd.DataFrame) -> FloatArray:
    """The model's probabilities for every row (vectorised; equal to ``model.probability``)."""
    eta = model.intercept + features_matrix(frame) @ np.asarray(model.weights)
    return _sigmoid(eta)


def _sigmoid(eta: FloatArray) -> FloatArray:
    # expit is overflow-free and keeps relative precision for tiny p (night hours ~1e-8).
    out: FloatArray = np.asarray(expit(eta), dtype=float)
    return out


def naive_flags(frame: pd.DataFrame, *, at_offer: bool = False) -> FloatArray:
    """The rule of thumb: flag 15:00-18:00 Central when the day-ahead forecast exceeds the
    month-to-date actual peak (every such hour on a month's first day, having no peak yet).

    Decided on the day (``at_offer`` False) it compares with the month's actual peak through
    the day before. Decided at the day-ahead offer (``at_offer`` True: before the day's reserve
    is sold) it can only compare with what is known then, the model's reference peak (the
    month's actual peak through two days before and ERCOT's forecast of the day before's peak,
    :func:`~streams.engine.coincident_peak.reference_peak_mw`); a month's first day is still
    flagged whole."""
    window = frame["local_hour"].isin(NAIVE_HOURS).to_numpy()
    mtd = frame["mtd_peak_mw"].to_numpy(dtype=float)
    forecast = frame["forecast_mw"].to_numpy(dtype=float)
    if at_offer:
        first_day = np.array([d.day == 1 for d in frame["local_date"]], dtype=bool)
        above = first_day | (forecast > frame["reference_mw"].to_numpy(dtype=float))
    else:
        above = np.isnan(mtd) | (forecast > mtd)
    flags: FloatArray = (window & above).astype(float)
    return flags


# --- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SummerScore:
    """Out-of-sample scores of one summer (June-September hours)."""

    year: int
    protocol: str
    trained_on: tuple[int, ...]
    hours: int
    peaks: int
    base_rate: float  # of the training summers: the climatology forecast
    brier: float
    brier_climatology: float
    log_loss: float
    log_loss_climatology: float
    expected_peaks: float  # sum of the probabilities; 4 when calibrated in total
    caught: tuple[tuple[float, int, int], ...]  # (threshold, peaks caught, hours flagged)
    naive_caught: int
    naive_flagged: int
    model_caught_at_naive_budget: int  # the model's top-N hours, N = naive_flagged
    peak_probabilities: tuple[float, ...]  # the model's p at each realised peak hour


Protocol = Literal["leave_one_out", "earlier"]


def score_summer(
    frame: pd.DataFrame,
    model: CoincidentPeakModel,
    year: int,
    protocol: str,
    thresholds: Sequence[float] = THRESHOLDS,
) -> SummerScore:
    if year in model.trained_on:
        raise ValueError(f"the model was trained on {year}: not an out-of-sample score")
    test = frame[frame["year"] == year]
    train = frame[frame["year"].isin(model.trained_on)]
    p, y = predict(model, test), test["y"].to_numpy(dtype=float)
    base = float(train["y"].mean())
    flags = naive_flags(test).astype(bool)
    budget = int(flags.sum())
    top = np.argsort(-p, kind="stable")[:budget]
    return SummerScore(
        year=year,
        protocol=protocol,
        trained_on=model.trained_on,
        hours=len(test),
        peaks=int(y.sum()),
        base_rate=base,
        brier=float(np.mean((p - y) ** 2)),
        brier_climatology=float(np.mean((base - y) ** 2)),
        log_loss=_log_loss(p, y),
        log_loss_climatology=_log_loss(np.full_like(y, base), y),
        expected_peaks=float(p.sum()),
        caught=tuple(
            (t, int(((p >= t) & (y == 1)).sum()), int((p >= t).sum())) for t in thresholds
        ),
        naive_caught=int((flags & (y == 1)).sum()),
        naive_flagged=budget,
        model_caught_at_naive_budget=int(y[top].sum()),
        peak_probabilities=tuple(float(v) for v in p[y == 1]),
    )


def _log_loss(p: FloatArray, y: FloatArray) -> float:
    q = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def evaluate(
    frame: pd.DataFrame,
    protocol: Protocol = "leave_one_out",
    thresholds: Sequence[float] = THRESHOLDS,
    l2: float = 0.0,
    calibrate: bool = True,
    *,
    jeffreys: bool = True,
) -> list[SummerScore]:
    """Score every labelled summer out of sample.

    ``leave_one_out``: each summer by a model fitted on all the others. ``earlier``: each
    summer by a model fitted only on the summers before it (at least two of them), the way it
    would have run live. ``calibrate``: the model is :func:`fit_calibrated` (the one used),
    else the plain penalised fit; ``l2`` and ``jeffreys`` as in :func:`fit_model`.
    """
    fit = fit_calibrated if calibrate else fit_model
    years = labelled_years(frame)
    scores = []
    for year in years:
        if protocol == "leave_one_out":
            train = [y for y in years if y != year]
        else:
            train = [y for y in years if y < year]
            if len(train) < 2:
                continue
        model = fit(frame, train, l2=l2, jeffreys=jeffreys)
        scores.append(score_summer(frame, model, year, protocol, thresholds))
    return scores


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    hours: int
    mean_probability: float
    observed_rate: float
    peaks: int


def reliability(
    frame: pd.DataFrame,
    edges: Sequence[float] = (0.0, 0.001, 0.005, 0.02, 0.1, 1.0),
    l2: float = 0.0,
    calibrate: bool = True,
    *,
    jeffreys: bool = True,
) -> list[ReliabilityBin]:
    """Calibration table of the leave-one-summer-out probabilities, pooled over summers
    (``calibrate`` as in :func:`evaluate`)."""
    fit = fit_calibrated if calibrate else fit_model
    years = labelled_years(frame)
    parts = []
    for year in years:
        model = fit(frame, [y for y in years if y != year], l2=l2, jeffreys=jeffreys)
        test = frame[frame["year"] == year]
        parts.append(pd.DataFrame({"p": predict(model, test), "y": test["y"].to_numpy()}))
    pooled = pd.concat(parts, ignore_index=True)
    bins = []
    for lower, upper in itertools.pairwise(edges):
        inside = pooled[(pooled["p"] >= lower) & (pooled["p"] < upper)]
        bins.append(
            ReliabilityBin(
                lower=lower,
                upper=upper,
                hours=len(inside),
                mean_probability=float(inside["p"].mean()) if len(inside) else math.nan,
                observed_rate=float(inside["y"].mean()) if len(inside) else math.nan,
                peaks=int(inside["y"].sum()),
            )
        )
    return bins


# --- signals for a backtest and the realised charge --------------------------------------


def peak_signal_schedule(
    start: datetime,
    end: datetime,
    *,
    data_dir: Path | str | None = None,
    model: CoincidentPeakModel | None = None,
    tariff_usd_per_kw_year: float = TARIFF_2025_USD_PER_KW_YEAR,
    min_probability: float = 1e-3,
    region: str = REGION,
) -> list[tuple[datetime, GridSignalEvent]]:
    """The forecaster's coincident-peak signals for hours overlapping [start, end), each with
    the time it is issued (:data:`~streams.engine.coincident_peak.ISSUE_TIME` Central on the
    day before its operating day), in issue-then-interval order.

    Without ``model``, one is fitted (:func:`fit_calibrated`) on every labelled summer except
    those the window touches, so a backtest never prices peaks with a model that saw them.
    Hours below ``min_probability`` get no signal (at 0.1 % the expected charge is ~$17/MWh).
    """
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise ValueError("start and end must be tz-aware with end after start")
    frame = summer_frame(data_dir)
    window = frame[
        (frame["start_utc"] + pd.Timedelta(HOUR) > pd.Timestamp(start))
        & (frame["start_utc"] < pd.Timestamp(end))
    ]
    if window.empty:
        return []
    if model is None:
        touched = set(window["year"].unique().tolist())
        model = fit_calibrated(frame, [y for y in labelled_years(frame) if y not in touched])
    probabilities = predict(model, window)
    out = []
    for (issued, hour_start), p in zip(
        zip(window["decision_utc"], window["start_utc"], strict=True), probabilities, strict=True
    ):
        if p < min_probability:
            continue
        begin = pd.Timestamp(hour_start).to_pydatetime()
        event = forecast_signal(begin, float(p), tariff_usd_per_kw_year, region)
        out.append((pd.Timestamp(issued).to_pydatetime(), event))
    out.sort(key=lambda item: (item[0], item[1].interval_start))
    return out


def peak_signals(
    start: datetime,
    end: datetime,
    *,
    data_dir: Path | str | None = None,
    model: CoincidentPeakModel | None = None,
    tariff_usd_per_kw_year: float = TARIFF_2025_USD_PER_KW_YEAR,
    min_probability: float = 1e-3,
    region: str = REGION,
) -> list[GridSignalEvent]:
    """The events of :func:`peak_signal_schedule`, without their issue times."""
    return [
        event
        for _, event in peak_signal_schedule(
            start,
            end,
            data_dir=data_dir,
            model=model,
            tariff_usd_per_kw_year=tariff_usd_per_kw_year,
            min_probability=min_probability,
            region=region,
        )
    ]


def realised_peak_signals(
    start: datetime,
    end: datetime,
    *,
    data_dir: Path | str | None = None,
    tariff_usd_per_kw_year: float = TARIFF_2025_USD_PER_KW_YEAR,
    region: str = REGION,
) -> list[GridSignalEvent]:
    """Perfect foresight for the oracle: one signal per realised 4CP interval in [start, end),
    15 minutes long, priced at probability 1 (the full $/MW per peak over that interval)."""
    peaks = read_4cp(data_dir)
    inside = peaks[(peaks["start_utc"] >= pd.Timestamp(start)) & (peaks["start_utc"] < end)]
    out = []
    for begin, finish in zip(inside["start_utc"], inside["end_utc"], strict=True):
        first, last = begin.to_pydatetime(), finish.to_pydatetime()
        hours = (last - first) / HOUR
        incentive = signal_incentive_usd_per_mwh(1.0, tariff_usd_per_kw_year, hours)
        out.append(
            GridSignalEvent(
                interval_start=first,
                interval_end=last,
                signal_id=f"4cp-actual:{first:%Y-%m-%dT%H:%MZ}",
                signal_type="coincident_peak",
                region=region,
                incentive_usd_per_mwh=min(incentive, MAX_INCENTIVE_USD_PER_MWH),
            )
        )
    return out


def realised_peak_schedule(
    start: datetime,
    end: datetime,
    *,
    data_dir: Path | str | None = None,
    tariff_usd_per_kw_year: float = TARIFF_2025_USD_PER_KW_YEAR,
    region: str = REGION,
    missed: Collection[datetime] = (),
) -> list[tuple[datetime, GridSignalEvent]]:
    """A perfect 4CP forecast on the forecaster's clock: each realised interval in
    [start, end) at probability 1, known at :func:`~streams.engine.coincident_peak.issue_time`
    of its Central operating day (06:00 Central on the day before) and not before.

    ``missed`` are interval starts (UTC) left out, as a forecaster that missed them would: what
    the rest is worth without them. Each must be a realised interval in the window.

    gridshift fed this instead of :func:`peak_signal_schedule` is the ceiling of any 4CP
    forecaster issued when gridshift's is: everything else (prices, reserve sale, emergencies)
    is still known only when it was. The gap between it and gridshift is what the forecast
    costs; the gap between it and the oracle is what knowing prices in advance is worth.
    """
    realised = realised_peak_signals(
        start, end, data_dir=data_dir, tariff_usd_per_kw_year=tariff_usd_per_kw_year, region=region
    )
    unknown = set(missed) - {event.interval_start for event in realised}
    if unknown:
        listed = ", ".join(f"{t:%Y-%m-%dT%H:%MZ}" for t in sorted(unknown))
        known = ", ".join(f"{e.interval_start:%Y-%m-%dT%H:%MZ}" for e in realised) or "none"
        raise ValueError(
            f"not a realised 4CP interval in the window: {listed} (the window's: {known})"
        )
    out = [
        (issue_time(event.interval_start.astimezone(CENTRAL).date()), event)
        for event in realised
        if event.interval_start not in missed
    ]
    out.sort(key=lambda item: (item[0], item[1].interval_start))
    return out


def realised_charge_usd(
    starts: Sequence[datetime],
    grid_import_mw: Sequence[float] | FloatArray,
    peaks: Sequence[datetime],
    tariff_usd_per_kw_year: float = TARIFF_2025_USD_PER_KW_YEAR,
) -> float:
    """What a site's import at the realised 4CP intervals costs: sum over peaks of the import
    (MW) in the backtest interval holding the peak's start x tariff x 1000 / 4.

    ``starts`` are the backtest's interval starts (equal steps, sorted); a peak outside the
    window adds nothing. With 15-minute steps this is ERCOT's own measure; with coarser steps
    the step's mean import stands in for the 15-minute one.
    """
    if len(starts) != len(grid_import_mw):
        raise ValueError("starts and grid_import_mw must have the same length")
    if not starts:
        return 0.0
    step = starts[1] - starts[0] if len(starts) > 1 else timedelta(minutes=15)
    charge = charge_usd_per_mw_per_peak(tariff_usd_per_kw_year)
    total = 0.0
    for peak in peaks:
        k = bisect.bisect_right(starts, peak) - 1
        if 0 <= k < len(starts) and peak < starts[k] + step:
            total += float(grid_import_mw[k]) * charge
    return total
