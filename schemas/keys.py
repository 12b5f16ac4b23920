"""Kafka message keys: each event is keyed by the entity it is about (DESIGN.md topic table),
so one entity's events stay in order on one partition."""

from __future__ import annotations

from pydantic import BaseModel

from schemas import (
    CarbonEvent,
    ComputeDemandEvent,
    DispatchDecision,
    GridSignalEvent,
    PriceEvent,
    TelemetryEvent,
)


def event_key(event: BaseModel) -> bytes | None:
    """The key an event is published under; ``None`` for fleet-wide events (hashprice)."""
    match event:
        case PriceEvent():
            return event.node.encode()
        case CarbonEvent():
            return event.region.encode()
        case GridSignalEvent():
            return (event.site_id or event.region or "").encode()
        case TelemetryEvent() | ComputeDemandEvent() | DispatchDecision():
            return event.site_id.encode()
    return None
