"""Sweeps: many backtests of one scenario's variants, on one machine or a Dask cluster, resumable.

Each variant (:mod:`streams.backtest.sweep_spec`) is one :func:`run_backtest`; its result is
written to ``OUT/variants/<key>.json`` as soon as it arrives (``key``: a hash of the validated
variant and its period), so a sweep stopped by Ctrl-C or a crash re-runs only what is missing.
The table and the report (:mod:`streams.backtest.sweep_report`) are built from those files.

Execution: in this process for one worker, a local process pool for more
(:class:`concurrent.futures.ProcessPoolExecutor`), or an existing Dask ``distributed`` cluster
given its scheduler's address (its workers need gridshift installed and the data folder at the
same path). docs/SWEEPS.md is the reference.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import resource
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streams.backtest.report import run_backtest
from streams.backtest.scenario import Scenario
from streams.backtest.sweep_spec import SweepSpec, Variant, expand
from streams.errors import GridshiftError

STRATEGIES = ("gridshift", "threshold", "always_on", "oracle")
VARIANTS_DIR = "variants"


@dataclass(frozen=True)
class Task:
    """What a worker needs to run one variant (plain data: pickled to a process or a cluster)."""

    key: str
    settings: dict[str, Any]
    scenario: dict[str, Any]  # the validated scenario, as JSON data
    scenario_dir: str
    data_dir: str | None
    start: str
    end: str
    clip_to_data: bool


def run_task(task: Task) -> dict[str, Any]:
    """Run one variant's backtest; its scores per strategy (no per-interval arrays), the window
    actually run, the seconds taken and the worker's peak resident memory so far."""
    clock = time.perf_counter()
    result = run_backtest(
        Scenario.model_validate(task.scenario),
        Path(task.data_dir) if task.data_dir else None,
        Path(task.scenario_dir),
        start=datetime.fromisoformat(task.start),
        end=datetime.fromisoformat(task.end),
        clip_to_data=task.clip_to_data,
        show_progress=False,
    )
    scores: dict[str, dict[str, float]] = {}
    for name in STRATEGIES:
        s = result.scores[name]
        # The totals only (per-interval arrays and lists stay in the worker).
        fields = {
            f.name: float(getattr(s, f.name))
            for f in dataclasses.fields(s)
            if isinstance(getattr(s, f.name), int | float)
        }
        scores[name] = {
            "net_margin_usd": s.net_margin_usd,
            **fields,
            "regret_usd": result.regret_usd(name),
        }
    return {
        "key": task.key,
        "settings": task.settings,
        "start": result.window.start.isoformat(),
        "end": result.window.end.isoformat(),
        "scores": scores,
        "seconds": time.perf_counter() - clock,
        "worker_pid": os.getpid(),
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


@dataclass
class SweepRun:
    """What a sweep did: every variant's result (in grid order), how many distinct variants it
    ran now and how many were already finished."""

    results: list[dict[str, Any]]
    ran: int
    skipped: int
    seconds: float


def tasks_of(
    variants: list[Variant],
    spec: SweepSpec,
    data_dir: Path | None,
    *,
    clip_to_data: bool = False,
) -> list[Task]:
    return [
        Task(
            v.key,
            dict(v.settings),
            v.scenario.model_dump(mode="json", exclude_unset=True),
            str(spec.scenario_path.parent.absolute()),
            str(data_dir.absolute()) if data_dir else None,
            v.start.isoformat(),
            v.end.isoformat(),
            clip_to_data,
        )
        for v in variants
    ]


def run_sweep(
    spec: SweepSpec,
    out_dir: Path,
    data_dir: Path | None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    clip_to_data: bool = False,
    show_progress: bool = True,
    runner: Callable[[Task], dict[str, Any]] = run_task,
) -> SweepRun:
    """Run every variant not yet finished in ``out_dir``; return all of them."""
    clock = time.perf_counter()
    variants = expand(spec, start, end)
    tasks = tasks_of(variants, spec, data_dir, clip_to_data=clip_to_data)
    folder = out_dir / VARIANTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    done = {t.key: r for t in tasks if (r := _read(folder / f"{t.key}.json")) is not None}
    finished = len(done)
    # Variants that come out the same (e.g. any GPU demand share with no GPUs) run once.
    todo = list({t.key: t for t in tasks if t.key not in done}.values())
    with tqdm(
        total=len({t.key for t in tasks}),
        initial=len(done),
        unit="variant",
        desc="sweep",
        disable=None if show_progress else True,
    ) as bar:
        for result in _execute(todo, workers, scheduler, runner):
            _write(folder / f"{result['key']}.json", result)
            done[result["key"]] = result
            bar.update(1)
    ordered = [done[t.key] | {"settings": t.settings} for t in tasks]
    return SweepRun(ordered, len(todo), finished, time.perf_counter() - clock)


def _execute(
    tasks: list[Task],
    workers: int,
    scheduler: str | None,
    runner: Callable[[Task], dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    if not tasks:
        return
    if scheduler is not None:
        yield from _on_dask(tasks, scheduler, runner)
    elif workers <= 1:
        for task in tasks:
            yield runner(task)
    else:
        yield from _on_pool(tasks, workers, runner)


def _on_pool(
    tasks: list[Task], workers: int, runner: Callable[[Task], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """A local process pool; on Ctrl-C (or any failure) the queued variants are cancelled."""
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)))
    try:
        pending: set[Future[dict[str, Any]]] = {pool.submit(runner, t) for t in tasks}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _on_dask(
    tasks: list[Task], scheduler: str, runner: Callable[[Task], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """An existing Dask ``distributed`` cluster; its futures are cancelled when stopped."""
    try:
        # Typed as Any: distributed's Client API is untyped (mypy --strict: no-untyped-call).
        distributed: Any = importlib.import_module("distributed")
    except ImportError as exc:
        raise GridshiftError(
            "--scheduler needs the cluster extra (distributed missing): "
            "pip install 'gridshift[cluster]'"
        ) from exc
    try:
        client = distributed.Client(scheduler, timeout=10, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise GridshiftError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    try:
        futures = client.map(runner, tasks, key=[f"sweep-{t.key}" for t in tasks], pure=False)
        try:
            with client.as_current():  # as_completed looks for the current client
                for future in distributed.as_completed(futures):
                    yield future.result()
        finally:
            client.cancel(futures)
    finally:
        client.close()


def _read(path: Path) -> dict[str, Any] | None:
    """A finished variant's result, or None (absent, or cut short by a crash while written)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if "scores" in data else None


def _write(path: Path, result: dict[str, Any]) -> None:
    """Atomically: a crash leaves the old file or none, never half a file."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(result, indent=1, sort_keys=True), encoding="utf-8")
    partial.replace(path)
