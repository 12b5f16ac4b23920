"""docker-compose.yml cannot be started here (no Docker engine), so it is parsed and checked,
with the Kafka files it mounts (ops/kafka): SASL on every listener, ACLs that let only the
workers write decisions, nothing published beyond this machine, secrets only from .env."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import DECISION_TOPIC, INPUT_TOPICS, TOPICS
from streams.kafka.connection import KafkaConnection
from streams.settings import Settings
from streams.worker.metrics import Metrics
from streams.worker.routing import ROUTED_TOPIC
from streams.worker.telemetry import lane_group
from tests.conftest import REPO

KAFKA_OPS = REPO / "ops/kafka"
WORKER, SOURCE, READER = "User:gridshift-worker", "User:gridshift-source", "User:gridshift-reader"
AGENT, VEN = "User:gridshift-agent", "User:gridshift-ven"
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:(?P<op>:[?-])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def env_example() -> dict[str, str]:
    """The variables ops/env.example defines (what an operator copies to .env)."""
    lines = (REPO / "ops/env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` against ``env``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in env:
            return env[name]
        assert op == ":-", f"${{{name}}} has no default and is not in ops/env.example"
        return str(arg)

    return _REFERENCE.sub(one, value)


def container_settings(env: dict[str, str], dot_env: dict[str, str]) -> Settings:
    """The settings a worker container gets: its compose environment, interpolated from .env
    (here ops/env.example), and nothing from this machine's environment."""
    values = {k.removeprefix("GRIDSHIFT_").lower(): interpolate(v, dot_env) for k, v in env.items()}
    return Settings.model_validate(values)


def properties(path: Path) -> dict[str, str]:
    """A Java properties file (key=value lines; no continuation lines are used)."""
    lines = path.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@dataclass(frozen=True)
class Grant:
    """One line of ops/kafka/acls.txt."""

    principal: str
    operations: frozenset[str]
    kind: str
    pattern: str
    names: tuple[str, ...]

    def covers(self, kind: str, name: str) -> bool:
        if kind != self.kind:
            return False
        if self.pattern == "literal":
            return name in self.names or "*" in self.names
        assert self.pattern == "prefixed", self.pattern
        return any(name.startswith(prefix) for prefix in self.names)


def grants() -> list[Grant]:
    found = []
    for line in (KAFKA_OPS / "acls.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        principal, operations, kind, pattern, names = line.split()
        found.append(
            Grant(
                principal, frozenset(operations.split(",")), kind, pattern, tuple(names.split(","))
            )
        )
    return found


def allowed(principal: str, operation: str, kind: str, name: str) -> bool:
    return any(
        g.principal == principal and operation in g.operations and g.covers(kind, name)
        for g in grants()
    )


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "topics",
        "gridshift-1",
        "gridshift-2",
        "prometheus",
        "grafana",
        "source-ercot",
        "source-caiso",
        "source-pjm",
        "source-nyiso",
        "source-carbon",
        "source-hashprice",
        "gridshift-agent",
        "gridshift-ven",
    }
    # Everything beyond Kafka and the workers runs only when its profile is asked for.
    optional = set(compose["services"]) - {"kafka", "topics", "gridshift-1", "gridshift-2"}
    assert all(compose["services"][name].get("profiles") for name in optional)


def test_kafka_runs_in_kraft_mode_with_a_persistent_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    conf = properties(KAFKA_OPS / "server.properties")
    assert conf["process.roles"] == "broker,controller"
    assert conf["controller.quorum.voters"] == "1@localhost:9093"
    assert conf["controller.listener.names"] == "CONTROLLER"
    assert "INTERNAL://kafka:9092" in conf["advertised.listeners"]
    assert "HOST://localhost:29092" in conf["advertised.listeners"]
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"]
    assert "./ops/kafka:/etc/gridshift/kafka:ro" in kafka["volumes"]
    assert conf["log.dirs"] == "/var/lib/kafka/data"
    assert conf["auto.create.topics.enable"] == "false"
    assert "kafka-data" in compose["volumes"]
    health = " ".join(kafka["healthcheck"]["test"])
    assert "kafka-broker-api-versions.sh" in health
    assert "--command-config /tmp/gridshift-kafka/admin.properties" in health
    # kafka-storage format takes a base64 UUID (16 bytes) as the cluster id.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", kafka["environment"]["CLUSTER_ID"])


def test_every_kafka_listener_authenticates_and_the_authorizer_denies_by_default() -> None:
    conf = properties(KAFKA_OPS / "server.properties")
    protocols = dict(pair.split(":") for pair in conf["listener.security.protocol.map"].split(","))
    listeners = [entry.split("://")[0] for entry in conf["listeners"].split(",")]
    assert set(listeners) == set(protocols) == {"INTERNAL", "HOST", "CONTROLLER"}
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}  # no PLAINTEXT listener at all
    assert "CONTROLLER://localhost:9093" in conf["listeners"]  # not on the network
    assert conf["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert conf["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert conf["authorizer.class.name"].endswith(".StandardAuthorizer")
    assert conf["allow.everyone.if.no.acl.found"] == "false"
    assert conf["super.users"] == "User:admin"
    assert not any("password" in value for value in conf.values())  # rendered at start only


def test_kafka_is_published_on_loopback_only_through_a_sasl_listener(
    compose: dict[str, Any],
) -> None:
    conf = properties(KAFKA_OPS / "server.properties")
    ports = {
        entry.split("://")[1].rpartition(":")[2]: entry.split("://")[0]
        for entry in conf["listeners"].split(",")
    }
    protocols = dict(pair.split(":") for pair in conf["listener.security.protocol.map"].split(","))
    for published in compose["services"]["kafka"]["ports"]:
        host_ip, _host_port, container_port = published.split(":")
        assert host_ip == "127.0.0.1", published
        assert protocols[ports[container_port]].startswith("SASL_"), published


def test_every_published_port_is_on_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published}"


def test_scram_users_are_made_at_format_and_init_from_env_only(compose: dict[str, Any]) -> None:
    start = (KAFKA_OPS / "start.sh").read_text()
    init = (KAFKA_OPS / "init.sh").read_text()
    assert "kafka-storage.sh format" in start
    assert '--add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"' in start
    assert "exec /opt/kafka/bin/kafka-server-start.sh" in start
    assert "--entity-type users" in init
    assert "SCRAM-SHA-512=[password=" in init
    users = set(re.findall(r"(gridshift-[a-z]+):KAFKA_[A-Z]+_PASSWORD", init))
    assert {f"User:{user}" for user in users} == {WORKER, SOURCE, READER, AGENT, VEN}
    assert {g.principal for g in grants()} == {WORKER, SOURCE, READER, AGENT, VEN}
    assert compose["services"]["kafka"]["entrypoint"][-1] == "/etc/gridshift/kafka/start.sh"
    assert compose["services"]["topics"]["entrypoint"][-1] == "/etc/gridshift/kafka/init.sh"


def test_kafka_scripts_are_valid_bash() -> None:
    for script in ("start.sh", "init.sh", "lib.sh"):
        checked = subprocess.run(
            ["bash", "-n", str(KAFKA_OPS / script)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr


def test_secrets_come_from_env_and_placeholders_are_refused(compose: dict[str, Any]) -> None:
    example = env_example()
    secrets = {"PASSWORD", "TOKEN"}
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in secrets):
                reference = _REFERENCE.fullmatch(str(value))
                assert reference, f"{name}.{key} is not from .env"
                assert reference["op"] == ":?", f"{name}.{key} has a default"
    assert all(value.startswith("change-me") for value in example.values())
    lib = (KAFKA_OPS / "lib.sh").read_text()
    assert "change-me*" in lib  # start.sh and init.sh refuse the placeholders
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_topic_init_creates_every_contract_topic(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    expected = [t.name for t in TOPICS] + [ROUTED_TOPIC]
    assert sorted(topics["environment"]["TOPICS"].split()) == sorted(expected)
    init = (KAFKA_OPS / "init.sh").read_text()
    assert "kafka-topics.sh" in init
    assert 'kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin" --add' in init
    assert '<"$here/acls.txt"' in init


def test_only_workers_write_decisions() -> None:
    writers = {
        g.principal
        for g in grants()
        if g.operations & {"Write", "All"} and g.covers("topic", DECISION_TOPIC)
    }
    assert writers == {WORKER}


def test_workers_read_inputs_and_write_their_outputs() -> None:
    for topic in (*INPUT_TOPICS, ROUTED_TOPIC):
        assert allowed(WORKER, "Read", "topic", topic), topic
    for topic in (DECISION_TOPIC, "gridshift.deadletter.v1", ROUTED_TOPIC, *INPUT_TOPICS):
        assert allowed(WORKER, "Write", "topic", topic), topic  # inputs: HTTP ingest
    assert allowed(WORKER, "Create", "topic", "gridshift-__assignor-__leader")  # faust's own
    for group in ("gridshift", lane_group("gridshift")):  # GRIDSHIFT_APP_ID in compose
        assert allowed(WORKER, "Read", "group", group), group


def test_sources_only_write_inputs_and_readers_only_read_decisions() -> None:
    everything = [t.name for t in TOPICS] + [ROUTED_TOPIC, "gridshift-__assignor-__leader"]
    for topic in everything:
        assert allowed(SOURCE, "Write", "topic", topic) == (topic in INPUT_TOPICS), topic
        assert not allowed(SOURCE, "Read", "topic", topic), topic
        assert allowed(READER, "Read", "topic", topic) == (topic == DECISION_TOPIC), topic
        assert not allowed(READER, "Write", "topic", topic), topic
    operations = {op for g in grants() if g.principal in (SOURCE, READER) for op in g.operations}
    assert operations <= {"Read", "Write", "Describe"}
    assert allowed(READER, "Read", "group", "gridshift-reader-site-a")
    assert not allowed(READER, "Read", "group", "gridshift")  # not the workers' group


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
    dot_env = env_example()
    settings = container_settings(env, dot_env)
    assert settings.session_timeout_s == 30.0
    # Production watches its live feed: silence and a lagging decision clock make /health 503.
    assert settings.health_decision_silence_s is not None
    assert settings.health_max_clock_lag_s is not None
    connection = KafkaConnection.from_settings(settings)
    assert connection.security_protocol == "SASL_PLAINTEXT"
    assert connection.sasl is not None
    assert connection.sasl.mechanism == "SCRAM-SHA-512"
    assert f"User:{connection.sasl.username}" == WORKER
    assert connection.sasl.password == dot_env["KAFKA_WORKER_PASSWORD"]
    mount = worker["volumes"][0].split(":")
    assert (REPO / mount[0]).resolve().is_file()
    assert mount[1] == env["GRIDSHIFT_SITES_FILE"]


def test_two_workers_share_one_group_and_expose_their_http_api(compose: dict[str, Any]) -> None:
    one, two = compose["services"]["gridshift-1"], compose["services"]["gridshift-2"]
    assert one["environment"] == two["environment"]  # same group id, same fleet
    assert one["environment"]["GRIDSHIFT_APP_ID"] == "gridshift"
    assert one["ports"] == ["127.0.0.1:8780:8780"]
    assert two["ports"] == ["127.0.0.1:8781:8780"]
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


def test_the_http_api_is_guarded_by_tokens_and_allowed_hosts(compose: dict[str, Any]) -> None:
    env = compose["services"]["gridshift-1"]["environment"]
    dot_env = env_example()
    settings = container_settings(env, dot_env)
    assert settings.http_token is not None
    assert settings.http_read_token is not None
    assert settings.http_token.get_secret_value() != settings.http_read_token.get_secret_value()
    hosts = settings.http_allowed_hosts.split(",")
    assert "*" not in hosts
    assert {"localhost", "127.0.0.1", "gridshift-1", "gridshift-2"} <= set(hosts)
    init = (KAFKA_OPS / "init.sh").read_text()
    assert "HTTP_WRITE_TOKEN HTTP_READ_TOKEN" in init  # checked before a worker starts
    assert '$HTTP_WRITE_TOKEN == "$HTTP_READ_TOKEN"' in init


def test_dockerfile_runs_as_non_root_with_a_health_check() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER gridshift" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "/health" in dockerfile
    assert 'ENTRYPOINT ["gridshift"]' in dockerfile
    assert Path(REPO / "pyproject.toml").is_file()


def test_the_image_can_run_a_shipped_backtest() -> None:
    """`gridshift backtest northern-data` in the image needs the scenarios package and the
    backtest extra (pandas, pyarrow, matplotlib); the wheel test proves the same install runs."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY scenarios ./scenarios" in dockerfile
    assert 'ARG EXTRAS="[backtest]"' in dockerfile
    assert 'pip install ".${EXTRAS}"' in dockerfile
