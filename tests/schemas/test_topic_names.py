"""Topic names have one home, the registry: each name is unique, each model names one topic, and
no module of ``streams/`` spells a topic name as a string literal (it asks the registry)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from schemas import (
    DEADLETTER_TOPIC,
    DECISION_TOPIC,
    ROUTED_TOPIC,
    TOPICS,
    TOPICS_BY_MODEL,
    DeadLetter,
    DispatchDecision,
    StrictModel,
    topic_for,
)

ROOT = Path(__file__).resolve().parents[2]
#: A topic-shaped token: dotted lower-case words ending in a version, ``grid.price.v1``.
TOPIC_SHAPED = re.compile(r"(?<![\w.])[a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)+\.v\d+(?![\w.])")
#: Files still spelling topic names, each waiting on a change asked of its owner. An entry is
#: removed when its file is fixed (``test_pending_files_are_still_pending`` insists on it).
PENDING: dict[str, str] = {}


def topic_literals(path: Path) -> list[tuple[int, str]]:
    """``(line, string)`` of every string literal in ``path`` that holds a topic-shaped name.

    Docstrings and other prose (any string with whitespace) may mention topics: only the strings
    that could be a topic name or a key built from one (``f"{prefix}grid.price.v1"``,
    ``"grid.carbon.v1/" + region``) count."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # A bare string statement (a docstring) is documentation, not a value.
    prose = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        if id(node) in prose or any(c.isspace() for c in node.value):
            continue
        if TOPIC_SHAPED.search(node.value):
            found.append((node.lineno, node.value))
    return sorted(found)


def streams_topic_literals() -> dict[str, list[tuple[int, str]]]:
    """Every file under ``streams/`` with topic literals, by path relative to the repository."""
    out: dict[str, list[tuple[int, str]]] = {}
    for path in sorted((ROOT / "streams").rglob("*.py")):
        if literals := topic_literals(path):
            out[path.relative_to(ROOT).as_posix()] = literals
    return out


def test_no_module_of_streams_spells_a_topic_name() -> None:
    offenders = {p: lits for p, lits in streams_topic_literals().items() if p not in PENDING}
    assert offenders == {}, "name topics through schemas.topic_for(<Model>).name or its constants"


def test_pending_files_are_still_pending() -> None:
    # A fixed file must leave PENDING, so the exemption cannot outlive its reason.
    found = streams_topic_literals()
    assert [p for p in PENDING if p not in found] == []


def test_the_scan_finds_literals_and_ignores_prose(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text(
        '"""Publishes on grid.price.v1."""\n'
        'A = "site.telemetry.v1"\n'
        "def f(prefix: str, region: str) -> str:\n"
        '    """Reads market.hashprice.v1 as well."""\n'
        '    help_text = "events go to dispatch.decision.v1 afterwards"\n'
        '    url = "https://mempool.space/api/v1/blocks"\n'
        '    version = "gridshift-1.v2.tar"\n'
        '    return f"{prefix}grid.carbon.v1/{region}" + help_text + url + version\n',
        encoding="utf-8",
    )
    assert topic_literals(module) == [(2, "site.telemetry.v1"), (8, "grid.carbon.v1/")]


def test_topic_names_are_unique() -> None:
    names = [t.name for t in TOPICS] + [ROUTED_TOPIC]
    assert len(names) == len(set(names)), names
    for name in names:
        assert TOPIC_SHAPED.fullmatch(name), name


def test_each_model_names_exactly_one_topic() -> None:
    models = [t.model for t in TOPICS]
    assert len(models) == len(set(models))
    for topic in TOPICS:
        assert topic_for(topic.model) is topic
    assert len(TOPICS_BY_MODEL) == len(TOPICS)


def test_http_routes_are_unique() -> None:
    routes = [t.route for t in TOPICS if t.route is not None]
    assert len(routes) == len(set(routes))


def test_a_model_without_a_topic_is_refused() -> None:
    class Unpublished(StrictModel):
        pass

    with pytest.raises(KeyError, match="Unpublished is not the value model"):
        topic_for(Unpublished)


def test_the_registry_spells_each_name_once() -> None:
    # DECISION_TOPIC and the like are looked up from the table, not a second spelling.
    spelled = sorted(value for _, value in topic_literals(ROOT / "schemas" / "registry.py"))
    assert spelled == sorted([t.name for t in TOPICS] + [ROUTED_TOPIC])
    assert topic_for(DispatchDecision).name == DECISION_TOPIC
    assert topic_for(DeadLetter).name == DEADLETTER_TOPIC


# The constants other modules import keep their names and now come from the registry.
PUBLIC_CONSTANTS = [
    ("streams.agent.controller", "TELEMETRY_TOPIC", "TelemetryEvent"),
    ("streams.worker.telemetry", "TELEMETRY", "TelemetryEvent"),
    ("streams.worker.health", "PRICE_TOPIC", "PriceEvent"),
    ("streams.worker.health", "HASHPRICE_TOPIC", "HashpriceEvent"),
    ("streams.openadr.ven", "SIGNAL_TOPIC", "GridSignalEvent"),
    ("streams.openadr.ven", "TELEMETRY_TOPIC", "TelemetryEvent"),
    ("streams.sources.carbon", "CARBON_TOPIC", "CarbonEvent"),
    ("streams.sources.reserve", "RESERVE_TOPIC", "ReservePriceEvent"),
    ("streams.sources.coincident_peak", "SIGNAL_TOPIC", "GridSignalEvent"),
    ("streams.sources.iso", "PRICE_TOPIC", "PriceEvent"),
    ("streams.sources.hashprice", "HASHPRICE_TOPIC", "HashpriceEvent"),
]


@pytest.mark.parametrize(("module", "constant", "model"), PUBLIC_CONSTANTS)
def test_module_constants_come_from_the_registry(module: str, constant: str, model: str) -> None:
    value_model: type[BaseModel] = getattr(importlib.import_module("schemas"), model)
    assert getattr(importlib.import_module(module), constant) == topic_for(value_model).name


def test_routing_names_the_registry_routed_topic() -> None:
    from streams.worker import routing  # noqa: PLC0415 - the worker is imported for this check only

    assert routing.ROUTED_TOPIC == ROUTED_TOPIC
