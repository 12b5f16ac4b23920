"""A coroutine run as a background task for as long as a context lasts, then cancelled and
awaited (the worker's broker watch and telemetry lane).

Such a task is meant to run until the context ends. If it stops earlier (it raised, returned, or
was cancelled by someone else) that is said at once in the log, not when the worker stops; the
task stays in view (``Worker.tasks``), so /health reports it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def background(
    run: Coroutine[Any, Any, None], name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``run`` as task ``name``; on exit cancel it and wait until it has stopped."""
    task = asyncio.create_task(run, name=name)
    stopping = False

    def stopped(done: asyncio.Task[None]) -> None:
        if stopping:
            return  # the context is ending: this is the intended stop
        if done.cancelled():
            log.error("background task cancelled", extra={"task": name})
            return
        error = done.exception()
        if error is None:
            log.error("background task ended", extra={"task": name})
        else:
            log.error("background task died", extra={"task": name}, exc_info=error)

    task.add_done_callback(stopped)
    try:
        yield task
    finally:
        stopping = True
        task.cancel()
        # A task that died was logged when it died (and shown by /health); its error must not
        # mask whatever ends the context.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
