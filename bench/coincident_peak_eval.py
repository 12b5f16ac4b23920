"""Evaluation: the 4CP probability forecaster on every ERCOT summer with load data and 4CP
labels (2019, 2020, 2022, 2023, 2024), out of sample, beside the naive rule "flag 15:00-18:00
Central when the day-ahead forecast exceeds the month-to-date peak".

The model is the one used (``fit_calibrated``: the Jeffreys-prior fit recalibrated on the
training summers' own leave-one-out predictions), issued at 06:00 Central the day before. Two
protocols: leave one summer out (fit on the other four) and earlier summers only (fit on the
summers before; 2022-2024); then leave one out without the recalibration, and the fit used
before (L2 weight 1, no Jeffreys prior, recalibrated), for comparison. Per
summer: Brier score and log loss against the climatology (the training base rate), the
expected number of peaks (sum of probabilities, 4 if calibrated), peaks caught / hours flagged
at a few thresholds, the naive rule, and the model's top hours at the naive rule's budget.
Then the pooled reliability table and the fitted coefficients. The last line is one JSON
object with every figure. Takes about a minute.

    python bench/coincident_peak_eval.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

import pandas as pd

from streams.backtest.coincident_peak_history import (
    THRESHOLDS,
    SummerScore,
    evaluate,
    fit_calibrated,
    labelled_years,
    reliability,
    resolve_data_dir,
    summer_frame,
)
from streams.engine.coincident_peak import (
    FEATURE_NAMES,
    TARIFF_2025_USD_PER_KW_YEAR,
    charge_usd_per_mw_per_peak,
)
from streams.errors import GridshiftError


def table(scores: list[SummerScore]) -> None:
    head = (
        f"{'summer':>6} {'hours':>5} {'peaks':>5} {'base':>7} {'brier':>8} {'clim':>8} "
        f"{'logloss':>8} {'clim':>8} {'E[pk]':>5} "
        + " ".join(f"{'p>=' + format(t, 'g'):>9}" for t in THRESHOLDS)
        + f" {'naive':>7} {'top-N':>5}"
    )
    print(head)
    for s in scores:
        caught = " ".join(f"{c:>2}/{n:<6}" for _, c, n in s.caught)
        print(
            f"{s.year:>6} {s.hours:>5} {s.peaks:>5} {s.base_rate:>7.5f} "
            f"{s.brier * 1e4:>8.4f} {s.brier_climatology * 1e4:>8.4f} "
            f"{s.log_loss:>8.5f} {s.log_loss_climatology:>8.5f} {s.expected_peaks:>5.2f} "
            f"{caught} {s.naive_caught:>2}/{s.naive_flagged:<4} {s.model_caught_at_naive_budget:>5}"
        )
    totals = [
        (sum(s.caught[k][1] for s in scores), sum(s.caught[k][2] for s in scores))
        for k in range(len(THRESHOLDS))
    ]
    print(
        f"{'all':>6} {sum(s.hours for s in scores):>5} {sum(s.peaks for s in scores):>5} "
        f"{'':>7} {'':>8} {'':>8} {'':>8} {'':>8} "
        f"{sum(s.expected_peaks for s in scores):>5.2f} "
        + " ".join(f"{c:>2}/{n:<6}" for c, n in totals)
        + f" {sum(s.naive_caught for s in scores):>2}/{sum(s.naive_flagged for s in scores):<4}"
        + f" {sum(s.model_caught_at_naive_budget for s in scores):>5}"
    )
    print("(Brier x 1e4; c/n = peaks caught / hours flagged; top-N: the model's N best hours,")
    print(" N = the naive rule's hours flagged)")


def shedding(
    frame: pd.DataFrame, margin: float, *, l2: float = 0.0, jeffreys: bool = True, title: str = ""
) -> dict[str, Any]:
    """1 MW of flexible load shed for whole flagged hours, per summer (leave one summer out).

    The optimizer sheds where p x $/MW per peak exceeds the margin, i.e. at p >= margin /
    charge; cost = hours shed x margin + peaks missed x charge. The naive rule is costed alike.
    ``l2`` and ``jeffreys`` choose the fit (the model used by default).
    """
    charge = charge_usd_per_mw_per_peak(TARIFF_2025_USD_PER_KW_YEAR)
    threshold = margin / charge
    scores = evaluate(frame, "leave_one_out", thresholds=(threshold,), l2=l2, jeffreys=jeffreys)
    rows = []
    print(
        f"\n== shedding 1 MW at a ${margin:g}/MWh margin{title}: model sheds at "
        f"p >= {threshold:.4f} =="
    )
    print(
        f"{'summer':>6} {'model c/n':>10} {'cost $':>9} "
        f"{'naive c/n':>10} {'cost $':>9} {'never $':>9}"
    )
    for s in scores:
        _, caught, flagged = s.caught[0]
        model_cost = flagged * margin + (s.peaks - caught) * charge
        naive_cost = s.naive_flagged * margin + (s.peaks - s.naive_caught) * charge
        never = s.peaks * charge
        print(
            f"{s.year:>6} {caught:>3}/{flagged:<6} {model_cost:>9,.0f} "
            f"{s.naive_caught:>3}/{s.naive_flagged:<6} {naive_cost:>9,.0f} {never:>9,.0f}"
        )
        rows.append(
            {
                "year": s.year,
                "model_cost_usd": model_cost,
                "naive_cost_usd": naive_cost,
                "never_shed_usd": never,
                "model_caught": caught,
                "model_flagged": flagged,
            }
        )
    print(
        f"{'all':>6} {'':>10} {sum(r['model_cost_usd'] for r in rows):>9,.0f} {'':>10} "
        f"{sum(r['naive_cost_usd'] for r in rows):>9,.0f} "
        f"{sum(r['never_shed_usd'] for r in rows):>9,.0f}"
    )
    return {"margin_usd_per_mwh": margin, "threshold": threshold, "summers": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="shared data folder [GRIDSHIFT_DATA_DIR]")
    parser.add_argument(
        "--margin-usd-per-mwh",
        type=float,
        default=100.0,
        help="what 1 MWh of shed flexible load gives up (a miner's margin) [100]",
    )
    args = parser.parse_args()
    try:
        frame = summer_frame(resolve_data_dir(args.data_dir))
    except GridshiftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    figures: dict[str, Any] = {"benchmark": "coincident_peak"}
    for protocol in ("leave_one_out", "earlier"):
        scores = evaluate(frame, protocol)
        print(f"\n== {protocol} ==")
        table(scores)
        figures[protocol] = [asdict(s) for s in scores]
    # The same without the recalibration, for comparison (docs/COINCIDENT_PEAK.md).
    plain = evaluate(frame, "leave_one_out", calibrate=False)
    print("\n== leave_one_out, penalised fit without recalibration ==")
    table(plain)
    figures["leave_one_out_uncalibrated"] = [asdict(s) for s in plain]
    plain_bins = reliability(frame, calibrate=False)
    figures["reliability_uncalibrated"] = [asdict(b) for b in plain_bins]
    print("\n== reliability (leave-one-summer-out probabilities, pooled) ==")
    print(f"{'bin':>15} {'hours':>6} {'mean p':>8} {'observed':>9} {'peaks':>5}")
    bins = reliability(frame)
    for b in bins:
        label = f"[{b.lower:g}, {b.upper:g})"
        print(
            f"{label:>15} {b.hours:>6} {b.mean_probability:>8.5f} "
            f"{b.observed_rate:>9.5f} {b.peaks:>5}"
        )
    figures["reliability"] = [asdict(b) for b in bins]
    figures["shedding"] = shedding(frame, args.margin_usd_per_mwh)
    # The fit used before the Jeffreys prior (ridge weight 1, recalibrated), side by side.
    ridge = evaluate(frame, "leave_one_out", l2=1.0, jeffreys=False)
    print("\n== leave_one_out, the previous fit (L2 weight 1, no Jeffreys prior), recalibrated ==")
    table(ridge)
    figures["leave_one_out_previous_fit"] = [asdict(s) for s in ridge]
    figures["reliability_previous_fit"] = [
        asdict(b) for b in reliability(frame, l2=1.0, jeffreys=False)
    ]
    figures["shedding_previous_fit"] = shedding(
        frame, args.margin_usd_per_mwh, l2=1.0, jeffreys=False, title=", the previous fit"
    )
    model = fit_calibrated(frame, labelled_years(frame))
    print("\n== fitted on", model.trained_on, "==")
    print(f"intercept {model.intercept:+.6f}")
    for name, weight in zip(FEATURE_NAMES, model.weights, strict=True):
        print(f"{name:>16} {weight:+.6f}")
    print(f"recalibration a {model.calibration[0]:+.4f}, b {model.calibration[1]:.4f}")
    figures["model"] = asdict(model)
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
