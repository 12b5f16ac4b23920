"""A coroutine run as a background task for as long as a context lasts, then cancelled and
awaited (the worker's broker watch and telemetry lane)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def background(
    run: Coroutine[Any, Any, None], name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``run`` as task ``name``; on exit cancel it and wait until it has stopped."""
    task = asyncio.create_task(run, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
