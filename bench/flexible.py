"""Benchmark: issue #14's targets on every ERCOT flexible-load scenario.

Runs the backtest (gridshift MPC, today's practice, threshold, always on, perfect-foresight
oracle, and gridshift with the realised 4CP peaks known at its forecaster's issue time: the
measured ceiling of a 4CP forecast) of each scenario and prints, per scenario: every
strategy's net value, gridshift's and the ceiling's share of the oracle's gain over "mining
always on", the fleet's demand at the realised 4CP peaks against always-on (whole fleet, and
mining only: the GPU floor is firm load no strategy sheds), and the hours curtailed against
today's practice (the 4CP alert rule): all of them, and those with the settled price at or
below break-even (curtailment the price does not explain: 4CP, grid requests, or on 15-minute
prices a reaction to a price known one interval late). Then the 4CP totals over the summers
and one JSON line with every figure.

Scenarios: ``ercot-flexible-load`` over summers 2022, 2023 and 2024 (hourly day-ahead prices)
and ``ercot-flexible-load-rt`` (June-December 2024, 15-minute real-time prices). Each summer
takes about 20 s, the real-time run 2-3 minutes (gridshift, the oracle and the ceiling each).

    python bench/flexible.py [--data-dir DIR] [--only summer-2023,rt-2024]
        [--missed-peaks 2024-06-30T22:30]   # the ceiling without the peaks named
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from streams.backtest.coincident_peak_history import resolve_data_dir
from streams.backtest.report import BacktestResult, run_backtest
from streams.backtest.scenario import load_scenario, resolve_scenario
from streams.errors import GridshiftError
from streams.windows import utc_bound

STRATEGIES = ("gridshift", "peak_foresight", "todays_practice", "threshold", "always_on", "oracle")


@dataclass(frozen=True)
class Case:
    key: str
    scenario: str
    start: datetime
    end: datetime


def _summer(year: int) -> Case:
    # June-September in Central daylight time (UTC-5): 05:00 UTC on the 1st.
    return Case(
        f"summer-{year}",
        "ercot-flexible-load",
        datetime(year, 6, 1, 5, tzinfo=UTC),
        datetime(year, 10, 1, 5, tzinfo=UTC),
    )


CASES = (
    _summer(2022),
    _summer(2023),
    _summer(2024),
    Case(
        "rt-2024",
        "ercot-flexible-load-rt",
        datetime(2024, 6, 1, 5, tzinfo=UTC),
        datetime(2025, 1, 1, 0, tzinfo=UTC),
    ),
)


def _at_peaks(result: BacktestResult, name: str, what: str) -> list[float]:
    """Fleet MW (``import`` or ``mining`` at the meter: mining x PUE) in the interval holding
    each realised 4CP interval of the window."""
    act, d = result.actuals, result.dispatch[name]
    step = timedelta(minutes=result.scenario.step_minutes)
    pue = np.array([s.pue for s in result.fleet.sites])[:, None]
    series = d.grid_import if what == "import" else d.mining * pue
    peaks = _peaks(result)
    out = []
    for peak in peaks:
        for k, begin in enumerate(act.starts):
            if begin <= peak < begin + step:
                out.append(float(series[:, k].sum()))
                break
    return out


def _hours_curtailed_below_breakeven(result: BacktestResult, name: str) -> float:
    """Hours in which a site mined less than its room (by more than 1 %) although its settled
    price was at or below break-even: curtailment the settled price does not explain (4CP,
    grid requests, and on 15-minute prices a reaction to a price known one interval late),
    scored intervals only. For today's practice mostly its 4CP alert hours and conservation
    requests; for gridshift its 4CP hedge and requests. (Per site; the score's
    ``hours_curtailed`` is per fleet: the two differ only with several sites.)"""
    act = result.actuals
    room = result.dispatch["always_on"].mining
    mining = result.dispatch[name].mining
    with np.errstate(invalid="ignore"):
        cheap = act.price <= act.breakeven
    shed = (room - mining > 0.01 * room) & cheap
    return float((shed.any(axis=0) & act.scored).sum() * act.hours)


def _margin_given_up_below_breakeven(result: BacktestResult, name: str) -> float:
    """What those hours cost: the mining margin (break-even less price, per MWh at the meter) of
    the MW curtailed below the room while the settled price was at or below break-even, scored
    intervals only. An hour counts alike in ``_hours_curtailed_below_breakeven`` whether it
    curtailed 25 MW at a $4/MWh margin or 90 MW at $60/MWh; this tells them apart."""
    act = result.actuals
    pue = np.array([s.pue for s in result.fleet.sites])[:, None]
    shed = np.maximum(result.dispatch["always_on"].mining - result.dispatch[name].mining, 0.0)
    with np.errstate(invalid="ignore"):
        margin = np.where(act.price <= act.breakeven, act.breakeven - act.price, 0.0)
    value = np.nan_to_num(shed * pue * margin) * act.hours
    return float(value[:, act.scored].sum())


def _peaks(result: BacktestResult) -> list[datetime]:
    from streams.backtest.coincident_peak_history import read_4cp  # noqa: PLC0415

    act = result.actuals
    end = act.starts[-1] + timedelta(minutes=result.scenario.step_minutes)
    table = read_4cp(_DATA_DIR)
    inside = table[(table["start_utc"] >= act.starts[0]) & (table["start_utc"] < end)]
    return [t.to_pydatetime() for t in inside["start_utc"]]


_DATA_DIR: Path | None = None


def run_case(
    case: Case, data_dir: Path | None, missed_peaks: tuple[datetime, ...] = ()
) -> dict[str, Any]:
    path = resolve_scenario(case.scenario)
    scenario = load_scenario(path)
    clock = time.perf_counter()
    result = run_backtest(
        scenario,
        data_dir,
        path.parent,
        start=case.start,
        end=case.end,
        show_progress=False,
        peak_foresight=True,
        missed_peaks=[t for t in missed_peaks if case.start <= t < case.end],
    )
    missed = [f"{t:%Y-%m-%dT%H:%MZ}" for t in result.missed_peaks]
    seconds = time.perf_counter() - clock
    s = result.scores
    net = {n: s[n].net_margin_usd for n in STRATEGIES if n in s}
    gain = net["oracle"] - net["always_on"]
    captured = (net["gridshift"] - net["always_on"]) / gain if gain > 0 else float("nan")
    # The ceiling of any 4CP forecast issued when gridshift's is (realised peaks at its issue
    # time, nothing else foreseen): the share of the oracle's gain left to a better forecaster.
    ceiling = (net["peak_foresight"] - net["always_on"]) / gain if gain > 0 else float("nan")
    peaks = {
        n: {"import": _at_peaks(result, n, "import"), "mining": _at_peaks(result, n, "mining")}
        for n in STRATEGIES
        if n in s
    }
    return {
        "case": case.key,
        "scenario": case.scenario,
        "start": case.start.isoformat(),
        "end": case.end.isoformat(),
        "step_minutes": result.scenario.step_minutes,
        "seconds": round(seconds, 1),
        "net_usd": {n: round(v) for n, v in net.items()},
        "breakdown": {
            n: {
                "energy_margin_usd": round(s[n].energy_margin_usd),
                "peak_charge_usd": round(s[n].peak_charge_usd),
                "reserve_usd": round(s[n].reserve_revenue_usd),
                "t_co2": round(s[n].emissions_location_t),
                "hours_curtailed": round(s[n].hours_curtailed, 2),
            }
            for n in net
        },
        "captured": round(captured, 6),
        "captured_with_peaks_known": round(ceiling, 6),
        "peaks_missed_by_the_ceiling": missed,
        "beats_practice_usd": round(net["gridshift"] - net["todays_practice"]),
        "peaks_mw": peaks,
        "hours_curtailed": {
            n: round(s[n].hours_curtailed, 2) for n in ("gridshift", "todays_practice")
        },
        "hours_curtailed_below_breakeven": {
            n: round(_hours_curtailed_below_breakeven(result, n), 2)
            for n in ("gridshift", "todays_practice")
        },
        "margin_given_up_below_breakeven_usd": {
            n: round(_margin_given_up_below_breakeven(result, n))
            for n in ("gridshift", "peak_foresight", "todays_practice")
        },
        "emergency_mw_reduced": {
            n: [round(e.reduced_mw, 1) for e in result.event_imports.get(n, [])]
            for n in ("gridshift", "todays_practice", "oracle")
        },
    }


def _share(values: list[float], reference: list[float]) -> float:
    total = sum(reference)
    return sum(values) / total if total > 0 else float("nan")


def print_case(row: dict[str, Any]) -> None:
    net = row["net_usd"]
    print(f"\n{row['case']} ({row['scenario']}, {row['step_minutes']} min, {row['seconds']} s)")
    for n, v in net.items():
        b = row["breakdown"][n]
        print(
            f"  {n:<16} net {v:>13,}  energy {b['energy_margin_usd']:>13,}  "
            f"4CP {b['peak_charge_usd']:>11,}  reserve {b['reserve_usd']:>11,}  "
            f"t CO2 {b['t_co2']:>8,}  h curtailed {b['hours_curtailed']:>7,.1f}"
        )
    pk = row["peaks_mw"]
    print(
        f"  captured {row['captured']:.1%} of the oracle's gain over always on; "
        f"gridshift - today's practice = ${row['beats_practice_usd']:,}; with the realised 4CP "
        f"peaks known at the forecaster's issue time {row['captured_with_peaks_known']:.1%}"
        + (
            f" (all but {', '.join(row['peaks_missed_by_the_ceiling'])})"
            if row["peaks_missed_by_the_ceiling"]
            else ""
        )
    )
    for n in ("gridshift", "peak_foresight", "todays_practice", "oracle", "always_on"):
        if n in pk:
            imp = " / ".join(f"{v:.1f}" for v in pk[n]["import"])
            print(f"  at peaks {n:<16} import MW {imp}")
    print(
        f"  hours curtailed: gridshift {row['hours_curtailed']['gridshift']:.0f}, "
        f"today's practice {row['hours_curtailed']['todays_practice']:.0f}; "
        "of them with the settled price at or below break-even: gridshift "
        f"{row['hours_curtailed_below_breakeven']['gridshift']:.0f}, today's practice "
        f"{row['hours_curtailed_below_breakeven']['todays_practice']:.0f}; the mining margin "
        "they gave up: gridshift "
        f"${row['margin_given_up_below_breakeven_usd']['gridshift']:,}, today's practice "
        f"${row['margin_given_up_below_breakeven_usd']['todays_practice']:,} (peaks known "
        f"${row['margin_given_up_below_breakeven_usd']['peak_foresight']:,})"
    )


def main(argv: list[str] | None = None) -> int:
    global _DATA_DIR  # noqa: PLW0603
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--only", default="", help="comma-separated case keys")
    parser.add_argument(
        "--missed-peaks",
        default="",
        help="comma-separated realised 4CP interval starts (UTC, e.g. 2024-06-30T22:30) the "
        "peaks-known ceiling is not told of, in the cases whose window holds them",
    )
    args = parser.parse_args(argv)
    try:
        missed = tuple(
            utc_bound(datetime.fromisoformat(t)) for t in args.missed_peaks.split(",") if t
        )
    except ValueError as exc:
        parser.error(f"--missed-peaks: {exc} (write UTC starts like 2024-06-30T22:30)")
    data_dir = resolve_data_dir(args.data_dir)
    if data_dir is None:
        print("no data: pass --data-dir or set GRIDSHIFT_DATA_DIR", file=sys.stderr)
        return 2
    _DATA_DIR = data_dir
    wanted = {k for k in args.only.split(",") if k}
    rows = []
    for case in CASES:
        if wanted and case.key not in wanted:
            continue
        try:
            row = run_case(case, data_dir, missed)
        except GridshiftError as exc:
            print(f"{case.key}: {exc}", file=sys.stderr)
            return 1
        print_case(row)
        rows.append(row)
    summers = [r for r in rows if r["case"].startswith("summer-")]
    totals: dict[str, Any] = {}
    if summers:
        for what in ("import", "mining"):
            ref = [v for r in summers for v in r["peaks_mw"]["always_on"][what]]
            totals[what] = {
                n: round(_share([v for r in summers for v in r["peaks_mw"][n][what]], ref), 4)
                for n in ("gridshift", "todays_practice", "oracle")
            }
        totals["peaks"] = sum(len(r["peaks_mw"]["always_on"]["import"]) for r in summers)
        for key in ("hours_curtailed", "hours_curtailed_below_breakeven"):
            totals[key] = {
                n: round(sum(r[key][n] for r in summers), 1)
                for n in ("gridshift", "todays_practice")
            }
        totals["margin_given_up_below_breakeven_usd"] = {
            n: sum(r["margin_given_up_below_breakeven_usd"][n] for r in summers)
            for n in ("gridshift", "peak_foresight", "todays_practice")
        }
        print(
            f"\n4CP over {totals['peaks']} realised peaks of the summers run: demand at the peaks "
            f"/ always-on, whole fleet: {totals['import']}; mining only: {totals['mining']}; "
            f"hours curtailed {totals['hours_curtailed']}, of them at or below break-even "
            f"{totals['hours_curtailed_below_breakeven']} (mining margin given up in them "
            f"{totals['margin_given_up_below_breakeven_usd']})"
        )
    print(json.dumps({"bench": "flexible", "cases": rows, "four_cp": totals}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
