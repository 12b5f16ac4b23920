"""Kafka message keys: each event is keyed by the entity it is about, as the contract's topic
table says (:attr:`~schemas.registry.TopicContract.key_fields`), so one entity's events stay in
order on one partition."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.registry import TOPICS

_KEY_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {t.model: t.key_fields for t in TOPICS}


def event_key(event: BaseModel) -> bytes | None:
    """The key an event is published under; ``None`` for fleet-wide events (hashprice)."""
    for name in _KEY_FIELDS.get(type(event), ()):
        value = getattr(event, name)
        if value:
            return str(value).encode()
    return None
