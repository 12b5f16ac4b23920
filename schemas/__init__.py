"""The wire contract of gridshift: pydantic v2 models for every Kafka topic, and the topic table.

Depends on nothing else in the repository.
"""

from schemas.base import IntervalEvent, StrictModel
from schemas.deadletter import DeadLetter, RejectReason
from schemas.decision import (
    DispatchDecision,
    Economics,
    PlanStep,
    ReserveCommitment,
    SolverReport,
    Trigger,
)
from schemas.grid import (
    CarbonEvent,
    GridSignalEvent,
    PpaSupplyEvent,
    PriceEvent,
    ReservePriceEvent,
    ReserveProduct,
)
from schemas.market import ComputeDemandEvent, HashpriceEvent
from schemas.registry import (
    DEADLETTER_TOPIC,
    DECISION_TOPIC,
    INPUT_ROUTES,
    INPUT_TOPICS,
    ROUTED_TOPIC,
    SITE_KEYED_INPUTS,
    TOPICS,
    TOPICS_BY_MODEL,
    TOPICS_BY_NAME,
    TopicContract,
    json_schemas,
    topic_for,
)
from schemas.site import TelemetryEvent

__all__ = [
    "DEADLETTER_TOPIC",
    "DECISION_TOPIC",
    "INPUT_ROUTES",
    "INPUT_TOPICS",
    "ROUTED_TOPIC",
    "SITE_KEYED_INPUTS",
    "TOPICS",
    "TOPICS_BY_MODEL",
    "TOPICS_BY_NAME",
    "CarbonEvent",
    "ComputeDemandEvent",
    "DeadLetter",
    "DispatchDecision",
    "Economics",
    "GridSignalEvent",
    "HashpriceEvent",
    "IntervalEvent",
    "PlanStep",
    "PpaSupplyEvent",
    "PriceEvent",
    "RejectReason",
    "ReserveCommitment",
    "ReservePriceEvent",
    "ReserveProduct",
    "SolverReport",
    "StrictModel",
    "TelemetryEvent",
    "TopicContract",
    "Trigger",
    "json_schemas",
    "topic_for",
]
