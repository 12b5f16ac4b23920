"""The Kafka connection: where the broker is and how to reach it (SASL, TLS), resolved once
from :class:`Settings` at the edge and passed down as one :class:`KafkaConnection`.

Every client of the worker, SDK and CLI connects the same way from it: aiokafka clients take
``connection.client(...)``; the faust app takes the same facts through
``streams/worker/_transport.py``. Passwords stay ``SecretStr`` in settings and are only
unwrapped into the client options here; they are never logged or printed (``repr`` hides them).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka.helpers import create_ssl_context

from streams.errors import GridshiftError

if TYPE_CHECKING:  # only the annotation: the SDK stays free of the settings' optimizer import
    from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Sasl:
    """SASL credentials (the password is not part of ``repr``)."""

    mechanism: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Bootstrap servers plus the security every client needs to reach them."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    sasl: Sasl | None = None
    #: Extra aiokafka options for every client (e.g. a test's shorter request time-out).
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, bootstrap: str | None = None) -> KafkaConnection:
        """The connection ``settings`` describe (``bootstrap`` overrides theirs, e.g. an
        embedded broker's); one clear line when the SASL settings are incomplete."""
        target = bootstrap or settings.kafka_bootstrap
        if not target:
            raise GridshiftError(
                "no broker: pass --bootstrap HOST:PORT or set GRIDSHIFT_KAFKA_BOOTSTRAP"
            )
        return cls(
            bootstrap=target,
            security_protocol=settings.kafka_security_protocol,
            ssl_context=_ssl_context(settings),
            sasl=_sasl(settings),
        )

    def options(self) -> dict[str, Any]:
        """Security keyword arguments for any aiokafka client."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol, **self.extra}
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.sasl is not None:
            options.update(
                sasl_mechanism=self.sasl.mechanism,
                sasl_plain_username=self.sasl.username,
                sasl_plain_password=self.sasl.password,
            )
        return options

    def client(self, **kwargs: Any) -> dict[str, Any]:
        """All keyword arguments of an aiokafka client: bootstrap, security, then ``kwargs``."""
        return {"bootstrap_servers": self.bootstrap, **self.options(), **kwargs}

    def first_broker(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server (what the health probe asks)."""
        host, _, port = self.bootstrap.split(",", maxsplit=1)[0].rpartition(":")
        return host, int(port)


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A TLS context when the protocol uses TLS (system CAs unless a CA file is given)."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
    return context


def _sasl(settings: Settings) -> Sasl | None:
    if not settings.kafka_security_protocol.startswith("SASL"):
        return None
    password = settings.kafka_sasl_password
    if not (settings.kafka_sasl_mechanism and settings.kafka_sasl_username and password):
        raise GridshiftError(
            f"{settings.kafka_security_protocol} needs GRIDSHIFT_KAFKA_SASL_MECHANISM, "
            "GRIDSHIFT_KAFKA_SASL_USERNAME and GRIDSHIFT_KAFKA_SASL_PASSWORD"
        )
    return Sasl(
        settings.kafka_sasl_mechanism, settings.kafka_sasl_username, password.get_secret_value()
    )
