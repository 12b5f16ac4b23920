"""Stopping an aiokafka consumer within a bound, also when the broker is gone (faust's consumer
thread and the telemetry lane both stop one this way).

aiokafka 0.14.0 (the version pinned here): ``AIOKafkaConsumer.stop()`` closes its fetcher, whose
``close()`` cancels each fetch task in flight and then awaits it. A fetch that failed because the
broker is gone sits in ``Fetcher._proc_fetch_request``'s retry back-off (``asyncio.sleep`` after
the ``KafkaError``), outside the ``except CancelledError`` that guards its send, so the cancel
comes back out of ``close()`` as a ``CancelledError`` in a task nobody cancelled, and ``stop()``
ends there, before it closes its client. In faust's consumer thread that error ended the thread's
shutdown before it told the worker it was done: the worker's stop then waited mode's
``ServiceThread.shutdown_timeout`` (60 s) for it; in the telemetry lane it escaped the worker's
stop (exit status 1, the broker watch never closed). Measured before this module: a worker told
to stop after its broker went took 60.1 s to exit, with status 1.

:func:`stop_consumer` tells that stray cancel from a real one (``Task.cancelling()``), finishes
what ``stop()`` skipped (the other fetch tasks, the client's connections), and bounds the whole
stop; nothing of aiokafka is patched. It reads two private attributes (``_fetcher``,
``_client``), so it is tied to aiokafka 0.14.x: re-check it when aiokafka is upgraded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

#: Longest an aiokafka consumer's stop may take (leaving the group, closing its connections); it
#: answers in milliseconds with a live broker, and waits on nothing once the broker is gone.
CLIENT_STOP_TIMEOUT_S = 3.0


async def stop_consumer(consumer: Any, what: str, timeout_s: float = CLIENT_STOP_TIMEOUT_S) -> None:
    """Stop ``consumer`` (an ``AIOKafkaConsumer``) within ``timeout_s``: a stop that fails or
    overruns is said in one log line, not raised (the worker is stopping either way)."""
    try:
        async with asyncio.timeout(timeout_s):
            try:
                await consumer.stop()
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this stop itself is being cancelled
                # aiokafka's fetcher handed out a fetch task's cancel (module docstring).
                await _finish_close(consumer)
    except TimeoutError:
        log.warning(
            "kafka consumer not stopped in time, left to close with the process",
            extra={"consumer": what, "timeout_s": timeout_s},
        )
    except Exception as exc:
        log.warning("kafka consumer stop failed", extra={"consumer": what, "error": repr(exc)})


async def _finish_close(consumer: Any) -> None:
    """What ``AIOKafkaConsumer.stop()`` skips after its fetcher's close raised: the fetch tasks
    it did not reach, and the client (its metadata task and connections)."""
    fetcher = getattr(consumer, "_fetcher", None)
    pending = [task for task in getattr(fetcher, "_pending_tasks", ()) if not task.done()]
    for task in pending:
        task.cancel()
    # return_exceptions: each task's cancel comes back as a value, not raised here.
    await asyncio.gather(*pending, return_exceptions=True)
    client = getattr(consumer, "_client", None)
    if client is not None:
        await client.close()
