"""Issue #14, every number of a backtest report traceable: the real CLI backtests four days of
the ercot-flexible-load scenario around ERCOT's August 2023 4CP (2023-08-10 16:45 CDT), and
every strategy's 4CP charge and reserve revenue are recomputed here from what the run wrote per
interval and the raw ERCOT files, with the standard library only.

Nothing of gridshift is imported (``streams``, ``schemas``, ``optimizer``, not even
``tests.factories``; a test reads this module's own source to hold that). The clocks are read
from the files as documented in the data README, not as gridshift reads them:

- 4CP intervals: wall-clock start and ending in Central prevailing time, localised through
  ``America/Chicago`` (an ambiguous or non-existent wall time fails the test).
- MCPC 2022-2024: ``delivery_date`` and ``hour_ending`` (1-24) in Central prevailing time,
  ``repeated_hour_flag = Y`` the second pass through the fall-back hour; the file's own
  ``interval_start_utc`` must agree with that reading on every row.
- MCPC 2021: hour-beginning ``interval_start_local`` labels with a fixed offset.

What the run must write into its ``--out`` folder (besides report.md):

- ``intervals.csv``: one row per strategy, site and interval with ``strategy``, ``site_id``,
  ``interval_start_utc``, ``interval_end_utc`` (ISO 8601, Z), ``scored`` (1/0),
  ``grid_import_mw`` and ``reserve_<product>_mw`` per qualified product;
- ``summary.json``: ``{"strategies": {key: {"label", "peak_charge_usd", "reserve_revenue_usd",
  "demand_at_peaks_mw"}}, "coincident_peak": {"peaks_utc": [...]}}``, unrounded. The peaks the
  run charged must be written: with hourly steps the import is often the same in the hours
  either side of a peak, so a peak read an hour off would not change any charge.

The rules recomputed: 4CP charge = sum over the realised 4CP intervals in the window of the
import (MW) in the run's interval holding the peak's start x tariff ($/kW-year) x 1000 / 4,
over the sites of the scenario's ``[coincident_peak] region``; reserve revenue = sum over scored
intervals of reserve MW held per product x the interval's hours x that product's day-ahead MCPC
of the hour holding the interval (a blank price pays nothing).
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios" / "ercot-flexible-load.toml"
#: Four days (UTC) holding the August 2023 4CP interval, with ECRS and RRS sold: ~6 s to run.
START, END = "2023-08-08", "2023-08-12"
AUGUST_2023_PEAK = datetime(2023, 8, 10, 21, 45, tzinfo=UTC)  # 16:45 CDT
CENTRAL = ZoneInfo("America/Chicago")
HOUR = timedelta(hours=1)
#: ERCOT's MCPC columns of the shared files, by reserve product of a scenario's sites.
MCPC_COLUMN = {
    "reg_up": "dam_mcpc_regup_usd_per_mw_h",
    "reg_down": "dam_mcpc_regdn_usd_per_mw_h",
    "rrs": "dam_mcpc_rrs_usd_per_mw_h",
    "ecrs": "dam_mcpc_ecrs_usd_per_mw_h",
    "non_spin": "dam_mcpc_nspin_usd_per_mw_h",
}
PROJECT_PACKAGES = {"streams", "schemas", "optimizer", "tests"}
FOUR_CP = "ercot/ercot_4cp_intervals_1996_2024.csv"


@dataclass(frozen=True)
class Interval:
    """One row of the run's intervals.csv."""

    strategy: str
    site_id: str
    start: datetime
    end: datetime
    scored: bool
    grid_import_mw: float
    reserve_mw: dict[str, float]


@dataclass(frozen=True)
class Run:
    """What the CLI wrote, and the scenario it ran."""

    out: Path
    scenario: dict[str, Any]
    intervals: list[Interval]
    summary: dict[str, Any]
    report: str

    @property
    def strategies(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = self.summary["strategies"]
        return found


# --- reading the raw files, without gridshift ------------------------------------------------


def utc(text: str) -> datetime:
    """An ISO 8601 instant with Z or an offset, as UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"{text!r} has no offset"
    return parsed.astimezone(UTC)


def central(text: str, form: str, *, hours: int = 0, fold: int | None = None) -> datetime:
    """A Central prevailing wall time (``text`` in ``form``, plus ``hours`` of wall clock) as
    UTC. A wall time DST skips is refused; one it repeats is refused unless ``fold`` names the
    pass (0 the first, 1 the second)."""
    wall = datetime.strptime(text, form).replace(tzinfo=CENTRAL) + timedelta(hours=hours)
    if fold is None and wall.replace(fold=0).utcoffset() != wall.replace(fold=1).utcoffset():
        raise ValueError(f"{text} +{hours} h is ambiguous or does not exist in Central time")
    instant = wall.replace(fold=fold or 0).astimezone(UTC)
    if instant.astimezone(CENTRAL).replace(tzinfo=None) != wall.replace(tzinfo=None):
        raise ValueError(f"{text} +{hours} h does not exist in Central time")
    return instant


def realised_peaks(path: Path) -> list[datetime]:
    """ERCOT's 4CP interval starts (UTC): Central wall-clock starts, each 15 minutes long."""
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            start = central(row["interval_start_local"], "%Y-%m-%d %H:%M")
            end = central(row["interval_ending_local"], "%Y-%m-%d %H:%M")
            assert end - start == timedelta(minutes=15), row
            out.append(start)
    return sorted(out)


def mcpc_hour_start(row: dict[str, str]) -> datetime:
    """The UTC start of an MCPC row's hour, from its Central labels."""
    if "hour_ending" in row:
        return central(
            row["delivery_date"],
            "%Y-%m-%d",
            hours=int(row["hour_ending"]) - 1,  # hour ending 1 begins at 00:00
            fold=1 if row["repeated_hour_flag"] == "Y" else 0,  # the fall-back hour's pass
        )
    return utc(row["interval_start_local"])  # 2021: hour-beginning, fixed offset


def read_mcpc(paths: list[Path]) -> dict[datetime, dict[str, float | None]]:
    """Hour start (UTC) -> product -> MCPC ($/MW-h; None where the cell is blank). An hour
    listed twice must carry the same prices."""
    out: dict[datetime, dict[str, float | None]] = {}
    for path in paths:
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                start = mcpc_hour_start(row)
                assert start == utc(row["interval_start_utc"]), (path.name, row)
                prices = {
                    product: float(row[column]) if row.get(column, "").strip() else None
                    for product, column in MCPC_COLUMN.items()
                }
                assert out.setdefault(start, prices) == prices, f"{start} twice, differently"
    return out


def resolve(entry: str, data_dir: Path) -> Path:
    """A scenario path: ``data:`` under the data folder, else relative to the scenario."""
    if entry.startswith("data:"):
        return data_dir / entry.removeprefix("data:")
    return (SCENARIO.parent / entry).resolve()


# --- reading what the run wrote --------------------------------------------------------------


def read_intervals(path: Path) -> list[Interval]:
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        needed = {"strategy", "site_id", "interval_start_utc", "interval_end_utc", "scored"}
        assert needed | {"grid_import_mw"} <= set(columns), columns
        products = {m.group(1): c for c in columns if (m := re.fullmatch(r"reserve_(\w+)_mw", c))}
        for row in reader:
            out.append(
                Interval(
                    row["strategy"],
                    row["site_id"],
                    utc(row["interval_start_utc"]),
                    utc(row["interval_end_utc"]),
                    row["scored"] == "1",
                    float(row["grid_import_mw"]),
                    {p: float(row[c]) for p, c in products.items()},
                )
            )
    return out


def shown(number: str) -> tuple[float, float]:
    """A figure as the report prints it, and half its last printed digit (the rounding)."""
    digits = number.replace(",", "").replace("$", "")
    decimals = len(digits.partition(".")[2])
    return float(digits), 0.5 * 10.0**-decimals


def report_lines(report: str, label: str) -> tuple[list[tuple[float, float]], float, float]:
    """The Flexible-load section's figures of one strategy: MW at each peak, 4CP charge,
    reserve revenue (with rounding each)."""
    peak = re.search(rf"^- {re.escape(label)}: (.*) \(charge \$([\d,]+)\)$", report, re.M)
    reserve = re.search(rf"^- {re.escape(label)}: \$([\d,.]+)$", report, re.M)
    assert peak is not None and reserve is not None, f"no 4CP or reserve line for {label}"
    at = [] if peak.group(1) == "no peak in window" else peak.group(1).split(", ")
    charge, half = shown(peak.group(2))
    revenue, _ = shown(reserve.group(1))
    assert half == 0.5
    return [shown(mw) for mw in at], charge, revenue


def results_table(report: str, label: str) -> dict[str, str]:
    """The Results table's row of one strategy, by column header."""
    section = report.partition("\n## Results\n")[2].partition("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows, "no Results table"
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    for line in rows[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == label:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no Results row for {label}")


# --- the run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``gridshift backtest`` as a user runs it, on this checkout, writing to a fresh folder."""
    if not (data_dir / FOUR_CP).exists():
        pytest.skip(f"{FOUR_CP} not in the data folder {data_dir}")
    out = tmp_path_factory.mktemp("traceability") / "report"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "streams.cli", "backtest", str(SCENARIO)]
    command += ["--data-dir", str(data_dir), "--start", START, "--end", END, "--out", str(out)]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    missing = [
        name for name in ("intervals.csv", "summary.json", "report.md") if not (out / name).exists()
    ]
    if missing:
        pytest.fail(
            f"the backtest wrote no {', '.join(missing)} in {out} (it wrote "
            f"{sorted(p.name for p in out.iterdir())}): issue #14 needs intervals.csv (strategy, "
            "site_id, interval_start_utc, interval_end_utc, scored, grid_import_mw, "
            "reserve_<product>_mw) and summary.json (strategies -> peak_charge_usd, "
            "reserve_revenue_usd, demand_at_peaks_mw, label; coincident_peak -> peaks_utc) "
            "beside report.md"
        )
    return Run(
        out,
        tomllib.loads(SCENARIO.read_text(encoding="utf-8")),
        read_intervals(out / "intervals.csv"),
        json.loads((out / "summary.json").read_text(encoding="utf-8")),
        (out / "report.md").read_text(encoding="utf-8"),
    )


def test_this_module_uses_no_gridshift_code() -> None:
    """The recomputation is independent by construction: no import of the project."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0] if node.level == 0 else ".")
    assert imported, "the source check found no imports at all"
    assert not imported & (PROJECT_PACKAGES | {"."}), imported & (PROJECT_PACKAGES | {"."})
    called = {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    assert "__import__" not in called
    assert "importlib" not in imported


@pytest.mark.data
def test_4cp_charge_is_the_import_at_the_raw_peaks_times_the_tariff(
    run: Run, data_dir: Path
) -> None:
    cp = run.scenario["coincident_peak"]
    per_mw_per_peak = float(cp["tariff_usd_per_kw_year"]) * 1000.0 / 4.0
    payers = {s["site_id"] for s in run.scenario["sites"] if s["carbon_region"] == cp["region"]}
    first = min(r.start for r in run.intervals)
    last = max(r.end for r in run.intervals)
    peaks = [p for p in realised_peaks(data_dir / FOUR_CP) if first <= p < last]
    assert peaks == [AUGUST_2023_PEAK]  # the window holds the August 2023 4CP, no other
    charged_at = [utc(t) for t in run.summary["coincident_peak"]["peaks_utc"]]
    assert charged_at == peaks, "the run charged other 4CP intervals than ERCOT's"
    assert set(run.strategies) == {r.strategy for r in run.intervals}
    assert {"gridshift", "oracle", "todays_practice", "always_on"} <= set(run.strategies)
    charged = {}
    for name, figures in run.strategies.items():
        at_peaks = []
        for peak in peaks:
            holding = [
                r
                for r in run.intervals
                if r.strategy == name and r.site_id in payers and r.start <= peak < r.end
            ]
            assert len(holding) == len(payers), (name, peak, holding)
            at_peaks.append(math.fsum(r.grid_import_mw for r in holding))
        charge = math.fsum(mw * per_mw_per_peak for mw in at_peaks)
        charged[name] = charge
        assert figures["peak_charge_usd"] == pytest.approx(charge, abs=0.005), name  # the cent
        assert figures["demand_at_peaks_mw"] == pytest.approx(at_peaks, abs=1e-9), name
        label = figures["label"]
        mws, printed, _ = report_lines(run.report, label)
        assert abs(printed - charge) <= 0.5, (label, printed, charge)  # printed to the dollar
        assert len(mws) == len(at_peaks)
        assert all(abs(v - mw) <= half for (v, half), mw in zip(mws, at_peaks, strict=True))
        table, half = shown(results_table(run.report, label)["4CP charge $"])
        assert abs(table - charge) <= half, (label, table, charge)
    # Not vacuous: at the peak mining always on pays for the whole site, the oracle less.
    assert charged["always_on"] > charged["oracle"] > 0


@pytest.mark.data
def test_reserve_revenue_is_the_mw_held_times_the_raw_mcpc(run: Run, data_dir: Path) -> None:
    mcpc = read_mcpc([resolve(f, data_dir) for f in run.scenario["reserves"]["files"]])
    qualified = {p for s in run.scenario["sites"] for p in s.get("reserve_products", [])}
    earned = {}
    for name, figures in run.strategies.items():
        terms = []
        for r in run.intervals:
            if r.strategy != name or not r.scored:
                continue
            hour = r.start.replace(minute=0, second=0, microsecond=0)
            assert r.end <= hour + HOUR, f"{r.start}-{r.end} spans two MCPC hours"
            hours = (r.end - r.start) / HOUR
            for product, mw in r.reserve_mw.items():
                assert product in qualified, f"{product} held, but no site is qualified for it"
                price = mcpc.get(hour, {}).get(product)
                if mw and price is not None:  # a blank clearing price pays nothing
                    terms.append(mw * hours * price)
        revenue = math.fsum(terms)
        earned[name] = revenue
        assert figures["reserve_revenue_usd"] == pytest.approx(revenue, abs=0.005), name
        label = figures["label"]
        _, _, printed = report_lines(run.report, label)
        assert abs(printed - revenue) <= 0.5, (label, printed, revenue)  # printed to the dollar
        table, half = shown(results_table(run.report, label)["reserve $"])
        assert abs(table - revenue) <= half, (label, table, revenue)
    # Not vacuous: gridshift, the oracle and today's practice sold reserve, the others none.
    assert min(earned["gridshift"], earned["oracle"], earned["todays_practice"]) > 1000.0
    assert earned["always_on"] == earned["threshold"] == 0.0
