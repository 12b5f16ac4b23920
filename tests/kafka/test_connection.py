"""The Kafka connection: SASL/TLS settings reach every client, and credentials never show in
logs or output."""

from __future__ import annotations

import logging
import ssl

import faust
import pytest

from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.settings import load_settings
from streams.worker._transport import faust_credentials

SECRET = "s3cr3t-pa55"


@pytest.fixture
def sasl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("GRIDSHIFT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("GRIDSHIFT_KAFKA_SASL_USERNAME", "gridshift")
    monkeypatch.setenv("GRIDSHIFT_KAFKA_SASL_PASSWORD", SECRET)


@pytest.mark.usefixtures("sasl_env")
def test_sasl_over_tls_reaches_aiokafka_and_faust() -> None:
    connection = KafkaConnection.from_settings(load_settings(), "kafka:9093")
    options = connection.client()
    assert options["bootstrap_servers"] == "kafka:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("gridshift", SECRET)
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(connection)
    assert SECRET not in repr(connection)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "gridshift"


@pytest.mark.usefixtures("sasl_env")
def test_the_password_is_never_printed_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings()
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
    assert SECRET not in settings.model_dump_json()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("streams").info("settings %s", settings)
    assert SECRET not in caplog.text


def test_plaintext_needs_nothing_and_sasl_without_credentials_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = KafkaConnection.from_settings(load_settings(), "h:1")
    assert plain.options() == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(plain) is None
    monkeypatch.setenv("GRIDSHIFT_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(GridshiftError, match="SASL_PLAINTEXT needs GRIDSHIFT_KAFKA_SASL_MECHANISM"):
        KafkaConnection.from_settings(load_settings(), "h:1")
