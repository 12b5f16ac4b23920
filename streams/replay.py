"""``gridshift replay``: publish a grid history into the input topics with its event times.

As fast as possible (``speed=None``) or paced at N x real time by event time. A progress bar
shows events/s and the simulated time. Stopping (Ctrl-C) is clean: everything sent so far is
flushed and the position to resume from is returned.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

from tqdm import tqdm

from streams.backtest.events import history_intervals
from streams.backtest.history import GridHistory
from streams.sdk import Publisher


@dataclass
class ReplayOutcome:
    """How far a replay got."""

    events: int
    intervals: int
    last_interval: datetime | None
    next_interval: datetime | None  # where to resume (--start), None when the history ended
    interrupted: bool


async def replay_history(
    history: GridHistory,
    publisher: Publisher,
    *,
    speed: float | None = None,
    show_progress: bool = True,
) -> ReplayOutcome:
    """Publish every interval's events in order; pace by event time when ``speed`` is set."""
    batches = list(history_intervals(history))
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
