"""Benchmark: issue #14's targets on every ERCOT flexible-load scenario.

Runs the backtest (gridshift MPC, today's practice, threshold, always on, perfect-foresight
oracle) of each scenario and prints, per scenario: every strategy's net value, gridshift's
share of the oracle's gain over "mining always on", the fleet's demand at the realised 4CP
peaks against always-on (whole fleet, and mining only: the GPU floor is firm load no strategy
sheds), and the hours curtailed against today's practice (the 4CP alert rule): all of them,
and those with the settled price at or below break-even (curtailment the price does not
explain: 4CP, grid requests, or on 15-minute prices a reaction to a price known one interval
late). Then the 4CP totals over the summers and one JSON line with every figure.

Scenarios: ``ercot-flexible-load`` over summers 2022, 2023 and 2024 (hourly day-ahead prices)
and ``ercot-flexible-load-rt`` (June-December 2024, 15-minute real-time prices). Each summer
takes a minute or so; the real-time run several minutes.

    python bench/flexible.py [--data-dir DIR] [--only summer-2023,rt-2024]
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

STRATEGIES = ("gridshift", "todays_practice", "threshold", "always_on", "oracle")


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


def _peaks(result: BacktestResult) -> list[datetime]:
    from streams.backtest.coincident_peak_history import read_4cp  # noqa: PLC0415

    act = result.actuals
    end = act.starts[-1] + timedelta(minutes=result.scenario.step_minutes)
    table = read_4cp(_DATA_DIR)
    inside = table[(table["start_utc"] >= act.starts[0]) & (table["start_utc"] < end)]
    return [t.to_pydatetime() for t in inside["start_utc"]]


_DATA_DIR: Path | None = None


def run_case(case: Case, data_dir: Path | None) -> dict[str, Any]:
    path = resolve_scenario(case.scenario)
    scenario = load_scenario(path)
    clock = time.perf_counter()
    result = run_backtest(
        scenario, data_dir, path.parent, start=case.start, end=case.end, show_progress=False
    )
    seconds = time.perf_counter() - clock
    s = result.scores
    net = {n: s[n].net_margin_usd for n in STRATEGIES if n in s}
    gain = net["oracle"] - net["always_on"]
    captured = (net["gridshift"] - net["always_on"]) / gain if gain > 0 else float("nan")
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
        "captured": round(captured, 4),
        "beats_practice_usd": round(net["gridshift"] - net["todays_practice"]),
        "peaks_mw": peaks,
        "hours_curtailed": {
            n: round(s[n].hours_curtailed, 2) for n in ("gridshift", "todays_practice")
        },
        "hours_curtailed_below_breakeven": {
            n: round(_hours_curtailed_below_breakeven(result, n), 2)
            for n in ("gridshift", "todays_practice")
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
        f"gridshift - today's practice = ${row['beats_practice_usd']:,}"
    )
    for n in ("gridshift", "todays_practice", "oracle", "always_on"):
        if n in pk:
            imp = " / ".join(f"{v:.1f}" for v in pk[n]["import"])
            print(f"  at peaks {n:<16} import MW {imp}")
    print(
        f"  hours curtailed: gridshift {row['hours_curtailed']['gridshift']:.0f}, "
        f"today's practice {row['hours_curtailed']['todays_practice']:.0f}; "
        "of them with the settled price at or below break-even: gridshift "
        f"{row['hours_curtailed_below_breakeven']['gridshift']:.0f}, today's practice "
        f"{row['hours_curtailed_below_breakeven']['todays_practice']:.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    global _DATA_DIR  # noqa: PLW0603
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--only", default="", help="comma-separated case keys")
    args = parser.parse_args(argv)
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
            row = run_case(case, data_dir)
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
        print(
            f"\n4CP over {totals['peaks']} realised peaks of the summers run: demand at the peaks "
            f"/ always-on, whole fleet: {totals['import']}; mining only: {totals['mining']}; "
            f"hours curtailed {totals['hours_curtailed']}, of them at or below break-even "
            f"{totals['hours_curtailed_below_breakeven']}"
        )
    print(json.dumps({"bench": "flexible", "cases": rows, "four_cp": totals}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
