"""``gridshift replay``: publish a grid history into the input topics with its event times.

As fast as possible (``speed=None``) or paced at N x real time by event time. A progress bar
shows events/s and the simulated time. Stopping (Ctrl-C) is clean: everything sent so far is
flushed and the position to resume from is returned.

Besides the history's own events (prices, day-ahead prices, carbon, hashprice), a replay can
publish *extra* events, each at the instant it became known: a scenario's 4CP forecast signals,
day-ahead reserve prices and grid emergencies (:func:`scenario_replay`), built by the same code
as the backtest's (``streams/backtest/report.py``). An extra goes out first in the first interval
starting at or after its instant, which is when the backtest's gridshift strategy, deciding at
each interval start with everything known by then, applies it: so a replay into the worker and
the backtest on the same window see the same events at the same decision times.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from pydantic import BaseModel
from tqdm import tqdm

from schemas.registry import TOPICS
from streams.backtest.events import IntervalBatch, history_intervals
from streams.backtest.history import GridHistory
from streams.backtest.report import flexible_extras
from streams.backtest.run import timeline
from streams.backtest.scenario import Scenario, load_markets, load_scenario, resolve_scenario
from streams.errors import GridshiftError
from streams.sdk import Publisher

#: The input topic of each event model (an extra event names no topic of its own).
_INPUT_TOPIC: dict[type[BaseModel], str] = {t.model: t.name for t in TOPICS if t.is_input}


@dataclass
class ReplayOutcome:
    """How far a replay got."""

    events: int
    intervals: int
    last_interval: datetime | None
    next_interval: datetime | None  # where to resume (--start), None when the history ended
    interrupted: bool


@dataclass
class ScenarioReplay:
    """A scenario's window as a replay publishes it: the market history and the extra events
    (4CP signals, reserve prices, emergencies) with the instant each became known."""

    scenario: Scenario
    history: GridHistory
    extra: list[tuple[datetime, BaseModel]]
    starts: list[datetime]  # the interval starts of the window (the backtest's decision times)


def scenario_replay(
    name_or_path: str, data_dir: Path | None, start: datetime, end: datetime
) -> ScenarioReplay:
    """The window [start, end) of a scenario (a shipped name or a file): its markets' history,
    and the extras its ``[coincident_peak]``, ``[reserves]`` and ``[emergencies]`` give the
    backtest's gridshift strategy, built by the backtest's own code."""
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise GridshiftError("a scenario replay needs a UTC window with --end after --start")
    path = resolve_scenario(name_or_path)
    scenario = load_scenario(path)
    market = load_markets(scenario, data_dir, path.parent)
    history = market.history.window(pd.Timestamp(start), pd.Timestamp(end))
    starts = timeline(start, end, scenario.step_minutes)
    extras = flexible_extras(
        scenario, data_dir=data_dir, scenario_dir=path.parent, start=start, end=end, starts=starts
    )
    return ScenarioReplay(scenario, history, extras.live, starts)


def topic_of(event: BaseModel) -> str:
    """The input topic an event is published to."""
    try:
        return _INPUT_TOPIC[type(event)]
    except KeyError:
        raise GridshiftError(f"{type(event).__name__} is no input event of the contract") from None


def with_extras(
    batches: Iterable[IntervalBatch], extra: Sequence[tuple[datetime, BaseModel]]
) -> list[IntervalBatch]:
    """The history's batches with each extra event put first in the first batch starting at or
    after the instant it became known (the first batch for what was known before the history
    starts); extras known after the last batch start come in a batch of their own at that
    instant. Within a batch the extras keep their order (by instant, then as given)."""
    out = list(batches)
    if not extra:
        return out
    starts = [b.start for b in out]
    pending: dict[int, list[tuple[str, BaseModel]]] = {}
    late: dict[datetime, list[tuple[str, BaseModel]]] = {}
    for known, event in sorted(extra, key=lambda item: item[0]):
        k = bisect.bisect_left(starts, known)
        if k < len(out):
            pending.setdefault(k, []).append((topic_of(event), event))
        else:
            late.setdefault(known, []).append((topic_of(event), event))
    for k, events in pending.items():
        out[k] = IntervalBatch(out[k].start, [*events, *out[k].events], out[k].prices)
    out += [IntervalBatch(known, events) for known, events in sorted(late.items())]
    return out


async def replay_history(
    history: GridHistory,
    publisher: Publisher,
    *,
    speed: float | None = None,
    show_progress: bool = True,
    extra: Sequence[tuple[datetime, BaseModel]] = (),
) -> ReplayOutcome:
    """Publish every interval's events in order, each ``extra`` event (with the instant it
    became known) at that instant (:func:`with_extras`); pace by event time when ``speed`` is
    set."""
    batches = with_extras(history_intervals(history), extra)
    loop = asyncio.get_running_loop()
    events = intervals = 0
    last: datetime | None = None
    wall_start = shown_at = loop.time()
    interrupted = False
    bar = tqdm(
        total=len(batches), unit="interval", desc="replay", disable=None if show_progress else True
    )
    try:
        for batch in batches:
            if speed is not None and last is not None:
                due = wall_start + (batch.start - batches[0].start).total_seconds() / speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing by event time is the feature here
            for topic, event in batch.events:
                await publisher.publish(topic, event)
            events += len(batch.events)
            intervals += 1
            last = batch.start
            now = loop.time()
            if now - shown_at >= 0.25:  # redraw a few times a second, not per interval
                bar.update(intervals - bar.n)
                bar.set_postfix_str(
                    f"{events / max(now - wall_start, 1e-9):,.0f} ev/s, at {last:%Y-%m-%d %H:%M}Z"
                )
                shown_at = now
        bar.update(intervals - bar.n)
    except asyncio.CancelledError:
        interrupted = True
    finally:
        bar.close()
        with contextlib.suppress(Exception):
            await publisher.flush()
    following = [b.start for b in batches[intervals : intervals + 1]]
    return ReplayOutcome(events, intervals, last, following[0] if following else None, interrupted)
