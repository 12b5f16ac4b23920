"""docker-compose.yml cannot be started here (no Docker engine), so it is parsed and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import TOPICS
from streams.settings import Settings
from tests.conftest import REPO


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "topics", "gridshift"}


def test_kafka_runs_in_kraft_mode_with_a_persistent_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "EXTERNAL://localhost:29092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["ports"] == ["29092:29092"]
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"]
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "kafka-data" in compose["volumes"]
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_topic_init_creates_every_contract_topic(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert sorted(topics["environment"]["TOPICS"].split()) == sorted(t.name for t in TOPICS)
    assert "kafka-topics.sh" in topics["command"][0]


def test_worker_is_built_here_and_configured_by_valid_settings(compose: dict[str, Any]) -> None:
    worker = compose["services"]["gridshift"]
    assert worker["build"] == "."
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    env = worker["environment"]
    assert env["GRIDSHIFT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    fields = set(Settings.model_fields)
    for name, _value in env.items():
        field = name.removeprefix("GRIDSHIFT_").lower()
        assert field in fields, f"{name} is not a gridshift setting"
    settings = Settings(**{k.removeprefix("GRIDSHIFT_").lower(): v for k, v in env.items()})
    assert settings.session_timeout_s == 30.0
    mount = worker["volumes"][0].split(":")
    assert (REPO / mount[0]).resolve().is_file()
    assert mount[1] == env["GRIDSHIFT_SITES_FILE"]


def test_worker_exposes_its_http_api(compose: dict[str, Any]) -> None:
    worker = compose["services"]["gridshift"]
    assert worker["ports"] == ["8780:8780"]
    assert worker["environment"]["GRIDSHIFT_HTTP_PORT"] == "8780"


def test_dockerfile_runs_as_non_root_with_a_health_check() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER gridshift" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "/health" in dockerfile
    assert 'ENTRYPOINT ["gridshift"]' in dockerfile
    assert Path(REPO / "pyproject.toml").is_file()
