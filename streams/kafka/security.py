"""Kafka connection security: SASL and TLS settings turned into client options.

One place builds what aiokafka (SDK, CLI) and faust (worker) need from :class:`Settings`, so
every client connects the same way. Passwords stay ``SecretStr`` until handed to the client and
are never logged or printed.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from streams.errors import GridshiftError
from streams.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A TLS context when the protocol uses TLS (system CAs unless a CA file is given)."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
    return context


def _sasl(settings: Settings) -> tuple[str, str, str] | None:
    if not settings.kafka_security_protocol.startswith("SASL"):
        return None
    password = settings.kafka_sasl_password
    if not (settings.kafka_sasl_mechanism and settings.kafka_sasl_username and password):
        raise GridshiftError(
            f"{settings.kafka_security_protocol} needs GRIDSHIFT_KAFKA_SASL_MECHANISM, "
            "GRIDSHIFT_KAFKA_SASL_USERNAME and GRIDSHIFT_KAFKA_SASL_PASSWORD"
        )
    return settings.kafka_sasl_mechanism, settings.kafka_sasl_username, password.get_secret_value()


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer/AIOKafkaConsumer."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    sasl = _sasl(settings)
    if sasl is not None:
        mechanism, username, password = sasl
        options.update(
            sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password
        )
    return options


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for the faust app (None for plaintext)."""
    context = ssl_context(settings)
    sasl = _sasl(settings)
    if sasl is not None:
        mechanism, username, password = sasl
        return faust.SASLCredentials(
            username=username, password=password, ssl_context=context, mechanism=mechanism
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
