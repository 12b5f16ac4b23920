"""docker-compose.yml cannot be started here (no Docker engine), so it is parsed and checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import TOPICS
from streams.settings import Settings
from streams.worker.metrics import Metrics
from streams.worker.routing import ROUTED_TOPIC
from tests.conftest import REPO


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "topics",
        "gridshift-1",
        "gridshift-2",
        "prometheus",
        "grafana",
    }


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
    expected = [t.name for t in TOPICS] + [ROUTED_TOPIC]
    assert sorted(topics["environment"]["TOPICS"].split()) == sorted(expected)
    assert "kafka-topics.sh" in topics["command"][0]


@pytest.mark.parametrize("service", ["gridshift-1", "gridshift-2"])
def test_workers_are_built_here_and_configured_by_valid_settings(
    compose: dict[str, Any], service: str
) -> None:
    worker = compose["services"][service]
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


def test_two_workers_share_one_group_and_expose_their_http_api(compose: dict[str, Any]) -> None:
    one, two = compose["services"]["gridshift-1"], compose["services"]["gridshift-2"]
    assert one["environment"] == two["environment"]  # same group id, same fleet
    assert one["environment"]["GRIDSHIFT_APP_ID"] == "gridshift"
    assert one["ports"] == ["8780:8780"]
    assert two["ports"] == ["8781:8780"]
    assert one["environment"]["GRIDSHIFT_HTTP_PORT"] == "8780"
    # Two workers need at least two partitions to share.
    assert int(one["environment"]["GRIDSHIFT_TOPIC_PARTITIONS"]) >= 2


def test_monitoring_profile_scrapes_both_workers_into_a_grafana_dashboard(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for mount in services[name]["volumes"]:
            assert (REPO / mount.split(":")[0]).exists(), mount
    scrape = yaml.safe_load((REPO / "ops/prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["gridshift-1:8780", "gridshift-2:8780"]
    datasource = yaml.safe_load(
        (REPO / "ops/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    dashboard = json.loads((REPO / "ops/grafana/dashboards/gridshift.json").read_text())
    exposed = Metrics().exposition().decode()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = re.findall(r"gridshift_[a-z_]+", target["expr"])
            assert names, target
            for name in names:
                assert name in exposed, f"{panel['title']}: {name} is not a worker metric"


def test_dockerfile_runs_as_non_root_with_a_health_check() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER gridshift" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "/health" in dockerfile
    assert 'ENTRYPOINT ["gridshift"]' in dockerfile
    assert Path(REPO / "pyproject.toml").is_file()
