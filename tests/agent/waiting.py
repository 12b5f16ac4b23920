"""Bounded, event-driven waits for the agent and VEN tests (no sleeps as synchronisation)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

WAIT_S = 30.0


async def until(
    predicate: Callable[[], bool], *events: asyncio.Event, timeout_s: float = WAIT_S
) -> None:
    """Wait (bounded by ``timeout_s``) until ``predicate()`` holds, re-checking it whenever one
    of ``events`` (the change signals of the objects the predicate reads) is set."""
    if not events:
        raise ValueError("until() needs at least one event that signals a change")
    async with asyncio.timeout(timeout_s):
        while not predicate():
            waits = [asyncio.create_task(event.wait()) for event in events]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
            for event in events:
                event.clear()
