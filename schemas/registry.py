"""The topic table of the contract: each topic's name, the model its values follow, what its key
is (and which fields make it), whether it is keyed by site, and its short HTTP route. The stream
app declares its faust topics, message keys, routing and HTTP routes from this table and nowhere
else.

Every topic name is spelled once, here: code that publishes or reads a topic names it by its
model (``topic_for(PriceEvent).name``) or by a constant below, never by a string literal, so a
renamed or re-versioned topic cannot leave a module writing to the old name
(``tests/schemas/test_topic_names.py`` scans ``streams/`` for such literals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from schemas.deadletter import DeadLetter
from schemas.decision import DispatchDecision
from schemas.grid import (
    CarbonEvent,
    GridSignalEvent,
    PpaSupplyEvent,
    PriceEvent,
    ReservePriceEvent,
)
from schemas.market import ComputeDemandEvent, HashpriceEvent
from schemas.site import TelemetryEvent


@dataclass(frozen=True, slots=True)
class TopicContract:
    """One topic of the wire contract."""

    name: str
    model: type[BaseModel]
    key: str
    description: str
    is_input: bool
    #: The event fields whose first non-empty value is the message key (none: no key).
    key_fields: tuple[str, ...] = ()
    #: Keyed by site id, so a site's events land on its own partition without routing.
    site_keyed: bool = False
    #: The short HTTP ingest route (``POST /v1/<route>``) of an input topic.
    route: str | None = None


TOPICS: tuple[TopicContract, ...] = (
    TopicContract(
        "grid.price.v1", PriceEvent, "price node", "Node prices, $/MWh.", True,
        key_fields=("node",), route="prices",
    ),
    TopicContract(
        "grid.carbon.v1", CarbonEvent, "grid region", "Carbon intensity.", True,
        key_fields=("region",), route="carbon",
    ),
    TopicContract(
        "grid.signal.v1", GridSignalEvent, "region or site", "Grid requests and caps.", True,
        key_fields=("site_id", "region"), route="signals",
    ),
    TopicContract(
        "grid.reserve.v1", ReservePriceEvent, "grid region", "Reserve capacity prices.", True,
        key_fields=("region",), route="reserve-prices",
    ),
    TopicContract(
        "grid.ppa.v1", PpaSupplyEvent, "site", "Contracted carbon-free (PPA) supply.", True,
        key_fields=("site_id",), site_keyed=True, route="ppa",
    ),
    TopicContract(
        "site.telemetry.v1", TelemetryEvent, "site", "Site measurements.", True,
        key_fields=("site_id",), site_keyed=True, route="telemetry",
    ),
    TopicContract(
        "market.hashprice.v1", HashpriceEvent, "none", "Mining revenue.", True,
        route="hashprice",
    ),
    TopicContract(
        "compute.demand.v1", ComputeDemandEvent, "site", "GPU demand and value.", True,
        key_fields=("site_id",), site_keyed=True, route="compute-demand",
    ),
    TopicContract(
        "dispatch.decision.v1", DispatchDecision, "site", "Set-points and plan.", False,
        key_fields=("site_id",), site_keyed=True,
    ),
    TopicContract("gridshift.deadletter.v1", DeadLetter, "original key", "Rejected inputs.", False),
)  # fmt: skip

TOPICS_BY_NAME: dict[str, TopicContract] = {t.name: t for t in TOPICS}
INPUT_TOPICS: tuple[str, ...] = tuple(t.name for t in TOPICS if t.is_input)
SITE_KEYED_INPUTS: frozenset[str] = frozenset(t.name for t in TOPICS if t.is_input and t.site_keyed)
INPUT_ROUTES: dict[str, str] = {t.route: t.name for t in TOPICS if t.route is not None}
TOPICS_BY_MODEL: dict[type[BaseModel], TopicContract] = {t.model: t for t in TOPICS}


def topic_for(model: type[BaseModel]) -> TopicContract:
    """The contract topic whose values follow ``model`` (each model has exactly one)."""
    try:
        return TOPICS_BY_MODEL[model]
    except KeyError:
        raise KeyError(f"{model.__name__} is not the value model of any contract topic") from None


DECISION_TOPIC = topic_for(DispatchDecision).name
DEADLETTER_TOPIC = topic_for(DeadLetter).name
#: The worker's internal repartition topic (``streams.worker.routing``): site-keyed copies of
#: the inputs that are not keyed by site. Not part of the wire contract (no model, no channel
#: in the AsyncAPI document; its values are framed raw bytes), but a topic name all the same:
#: deployments create it and grant the worker on it, so its name lives with the others.
ROUTED_TOPIC = "internal.site-inputs.v1"


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per topic, keyed by topic name, with the topic and key documented."""
    out: dict[str, dict[str, Any]] = {}
    for topic in TOPICS:
        schema = topic.model.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:gridshift:topic:{topic.name}"
        schema["x-topic"] = topic.name
        schema["x-key"] = topic.key
        schema["x-summary"] = topic.description
        out[topic.name] = schema
    return out
