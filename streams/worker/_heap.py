"""Garbage-collection pauses kept off the decision path.

CPython's full (generation 2) collection walks every tracked object. In a worker that holds
faust, aiokafka, pydantic models and compiled cvxpy problems that walk took 50-80 ms on these
machines, and it lands on whatever price is in flight at the time: it was the slowest price ->
decision of a benchmark run. Objects that live as long as the worker (the started app, the
compiled fleet models) are therefore collected once and then frozen (``gc.freeze``): later
collections walk only what is newer. Frozen objects are still freed when their reference count
drops to zero; only reference cycles among them are left to the end of the process.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what is garbage now, then take every survivor out of later collections."""
    gc.collect()
    gc.freeze()
