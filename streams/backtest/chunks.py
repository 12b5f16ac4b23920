"""A long gridshift backtest split into chunks that run side by side, each started a warm-up
earlier so that its results do not depend on where the period was cut.

The live strategy carries state from one interval to the next: the fleet state's curves (read a
day back, for the day-before reserve prices and the day-ahead forecast's error), the decider's
last decisions (the ramp anchor and a reduction signal's baseline), the mining restore after a
fail-safe, and the reserve sold for the hours ahead (up to the horizon plus the commitment's
lead). A chunk therefore starts ``warmup`` before its first recorded interval, fed the history
from a day before that, and runs the same decision code through the warm-up without recording
it. The default warm-up is the horizon plus a day: by the chunk's first interval every
commitment still in force and every decision the next one anchors on was made inside the
warm-up, from the same inputs the unchunked run saw. ``tests/backtest/test_chunks.py`` checks
chunked == unchunked on synthetic and real data.

Chunks run in a process pool (spawn: safe under any parent, threads included); each returns its
dispatch and its peak resident memory. With one worker the chunks run here, one after another
(what the tests use to compare the stitching without the pool's start-up).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import resource
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from optimizer import Horizon
from streams.backtest.history import GridHistory
from streams.backtest.run import Dispatch, Progress, run_gridshift
from streams.engine.fleet import Fleet

#: The history fed to a chunk starts this long before its warm-up (as the unchunked run's does
#: before the period): day-before reads.
LOOKBACK = timedelta(days=1)
#: ... and ends this long after its last interval plus the horizon: day-ahead prices are
#: published up to a day before the hour they price.
LOOKAHEAD = timedelta(days=2)


def default_warmup(horizon: Horizon) -> timedelta:
    """The horizon plus a day (see the module's docstring for why)."""
    return timedelta(minutes=sum(horizon.step_minutes)) + timedelta(days=1)


@dataclass(frozen=True)
class ChunkRun:
    """A stitched run: the dispatch and each chunk's peak resident memory (bytes)."""

    dispatch: Dispatch
    peak_rss_bytes: list[int]
    chunks: int


@dataclass(frozen=True)
class _Chunk:
    """One chunk's work: intervals ``starts[begin:end]``, recorded from ``keep``."""

    fleet: Fleet
    history: GridHistory
    starts: list[datetime]
    keep: int
    horizon: Horizon
    lag: int
    carbon_budget_t_per_day: float | None
    stale_price_after: timedelta | None
    extra: list[tuple[datetime, BaseModel]]
    decompose: bool


def bounds(k_total: int, chunks: int, warm_steps: int) -> list[tuple[int, int, int]]:
    """(warm-up start, first recorded, end) per chunk: ``chunks`` near-equal spans."""
    chunks = max(1, min(chunks, k_total))
    edges = [round(k_total * c / chunks) for c in range(chunks + 1)]
    return [(max(0, a - warm_steps), a, b) for a, b in itertools.pairwise(edges) if b > a]


def run_gridshift_chunked(
    fleet: Fleet,
    history: GridHistory,
    starts: list[datetime],
    horizon: Horizon,
    *,
    lag: int,
    workers: int = 1,
    chunks: int | None = None,
    warmup: timedelta | None = None,
    carbon_budget_t_per_day: float | None = None,
    stale_price_after: timedelta | None = None,
    progress: Progress | None = None,
    extra: Sequence[tuple[datetime, BaseModel]] = (),
    decompose: bool = True,
) -> ChunkRun:
    """:func:`~streams.backtest.run.run_gridshift` over ``starts`` in ``chunks`` (default: one
    per worker) run by ``workers`` processes, stitched into one dispatch."""
    count = chunks or max(1, workers)
    step = (starts[1] - starts[0]) if len(starts) > 1 else timedelta(minutes=15)
    warm = warmup if warmup is not None else default_warmup(horizon)
    warm_steps = math.ceil(warm / step)
    span = timedelta(minutes=sum(horizon.step_minutes))
    jobs = []
    for begin, first, end in bounds(len(starts), count, warm_steps):
        window = history.window(
            pd.Timestamp(starts[begin] - LOOKBACK), pd.Timestamp(starts[end - 1] + span + LOOKAHEAD)
        )
        jobs.append(
            _Chunk(
                fleet,
                window,
                starts[begin:end],
                first - begin,
                horizon,
                lag,
                carbon_budget_t_per_day,
                stale_price_after,
                [(at, event) for at, event in extra if at < starts[end - 1] + step],
                decompose,
            )
        )
    if workers <= 1 or len(jobs) == 1:
        results = []
        for job in jobs:
            results.append(_run(job))
            if progress is not None:
                progress(len(job.starts) - job.keep)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
            futures = [pool.submit(_run, job) for job in jobs]
            results = []
            for job, future in zip(jobs, futures, strict=True):
                results.append(future.result())
                if progress is not None:
                    progress(len(job.starts) - job.keep)
    return ChunkRun(stitch([d for d, _ in results]), [rss for _, rss in results], len(jobs))


def _run(job: _Chunk) -> tuple[Dispatch, int]:
    """One chunk (in a worker process): its recorded part and the process's peak RSS."""
    out = run_gridshift(
        job.fleet,
        job.history,
        job.starts,
        job.horizon,
        lag=job.lag,
        carbon_budget_t_per_day=job.carbon_budget_t_per_day,
        stale_price_after=job.stale_price_after,
        extra=job.extra,
        decompose=job.decompose,
        keep_from=job.keep,
    )
    return _tail(out, job.keep), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _tail(out: Dispatch, keep: int) -> Dispatch:
    """The dispatch from interval ``keep`` on (decisions before it were never recorded)."""
    return Dispatch(
        out.mining[:, keep:].copy(),
        out.gpu[:, keep:].copy(),
        out.grid_import[:, keep:].copy(),
        out.routed[:, keep:].copy(),
        out.routed_revenue_usd[:, keep:].copy(),
        out.decisions,
        out.notes,
        {p: mw[:, keep:].copy() for p, mw in out.reserve.items()},
        None if out.failsafe is None else out.failsafe[keep:].copy(),
    )


def stitch(parts: Sequence[Dispatch]) -> Dispatch:
    """Consecutive chunks' dispatches as one."""

    def joined(name: str) -> Any:
        return np.concatenate([getattr(p, name) for p in parts], axis=1)

    out = Dispatch(
        joined("mining"),
        joined("gpu"),
        joined("grid_import"),
        joined("routed"),
        joined("routed_revenue_usd"),
        notes=sum((p.notes for p in parts), start=Counter()),
    )
    for p in parts:
        out.decisions.extend(p.decisions)
    for product in sorted({name for p in parts for name in p.reserve}):
        out.reserve[product] = np.concatenate(
            [p.reserve.get(product, np.zeros_like(p.mining)) for p in parts], axis=1
        )
    if all(p.failsafe is not None for p in parts):
        out.failsafe = np.concatenate([p.failsafe for p in parts if p.failsafe is not None])
    return out
