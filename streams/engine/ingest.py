"""Ingesting one raw input message: decode, validate, admit, fold into the state.

The one function the faust agents, the telemetry lane and recovery call per message, kept free
of faust so it can be fuzzed directly: it either returns what the message changed or a
:class:`Rejection` with the reason, and never raises for bad input. A rejected message changes
nothing. Admission (inputs dated too far ahead of the wall clock) is the state's own rule
(:meth:`FleetState.admit`), so a restart that re-ingests committed inputs rejects the same ones
the live run did, and a state built without a wall clock (the backtest) admits everything.
"""

from __future__ import annotations

from typing import Any

from schemas import TOPICS_BY_NAME
from streams.engine.codec import Rejection, decode
from streams.engine.state import Applied, FleetState, InputEvent, UnknownSiteError


def ingest(state: FleetState, topic: str, raw: bytes | None, max_bytes: int) -> Applied | Rejection:
    """Fold the message on contract topic ``topic`` into ``state``, or say why not."""
    decoded = decode(raw, TOPICS_BY_NAME[topic].model, max_bytes)
    if isinstance(decoded, Rejection):
        return decoded
    event = _as_input(decoded)
    rejection = state.admit(event)
    if rejection is not None:
        return rejection
    try:
        return state.apply(event)
    except UnknownSiteError as exc:
        return Rejection("unknown_site", str(exc))


def _as_input(model: Any) -> InputEvent:
    """Narrow a decoded input model to the state's event union (the topic table guarantees it)."""
    event: InputEvent = model
    return event
