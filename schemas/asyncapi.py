"""The event contract as an AsyncAPI 3.0 document, generated from the topic table and models.

Every topic is a channel whose address is the topic name; its one message carries the model's
JSON Schema (kept in ``components.schemas``) and documents the key. The worker receives on the
input channels and sends on the decision and dead-letter channels.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.registry import TOPICS

ASYNCAPI_VERSION = "3.0.0"


def _channel_id(topic: str) -> str:
    return topic.replace(".", "_")


def asyncapi_document(version: str = "1.0.0") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every gridshift topic."""
    _, definitions = models_json_schema(
        [(topic.model, "serialization") for topic in TOPICS],
        ref_template="#/components/schemas/{model}",
    )
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        channel = _channel_id(topic.name)
        name = topic.model.__name__
        messages[name] = {
            "name": name,
            "title": name,
            "summary": topic.description,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": topic.key}}},
        }
        channels[channel] = {
            "address": topic.name,
            "description": topic.description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        action = "receive" if topic.is_input else "send"
        operations[f"{action}_{channel}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": ("The worker consumes " if topic.is_input else "The worker publishes ")
            + topic.name,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "gridshift",
            "version": version,
            "description": "Power orchestration between Bitcoin mining and GPU inference: grid "
            "prices, carbon, signals and telemetry in; dispatch decisions out. JSON values, "
            "keys name the entity an event is about, event time in interval_start/interval_end. "
            "Records are partitioned by their key with Kafka's default (murmur2) partitioner: "
            "librdkafka clients (confluent-kafka, Go, .NET, Rust) set "
            "partitioner=murmur2_random; a site-keyed input on another partition is forwarded "
            "to its site's worker, one hop more.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "production": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "Apache Kafka (KRaft) from docker-compose.yml",
            },
            "embedded": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The embedded Tansu broker (`gridshift broker --port 9092`)",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": definitions["$defs"], "messages": messages},
    }
