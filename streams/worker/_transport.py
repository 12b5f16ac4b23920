"""faust's aiokafka transport with the consumer fetch wait made configurable, and the faust
form of the Kafka connection's credentials.

faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for worker consumers; against a broker whose
long-poll sleeps instead of waking on data (Tansu) that puts every decision ~1 s late. This module
keeps faust's consumer and only overrides that one number, read from the app.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.kafka.connection import KafkaConnection


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    logger = faust_aiokafka.logger  # keep faust's logger name so its verbosity stays tunable

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer: aiokafka.AIOKafkaConsumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when start() builds its Fetcher, after construction.
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", 1500)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    logger = faust_aiokafka.logger

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """aiokafka transport whose worker consumer honours ``App.fetch_max_wait_ms``."""

    Consumer: ClassVar[type[Any]] = _Consumer


class App(faust.App):
    """A faust App that builds :class:`Transport` and carries the consumer fetch wait."""

    logger = logging.getLogger("faust.app.base")

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)


def faust_credentials(connection: KafkaConnection) -> Any:
    """``broker_credentials`` for the faust app (None for plaintext)."""
    if connection.sasl is not None:
        return faust.SASLCredentials(
            username=connection.sasl.username,
            password=connection.sasl.password,
            ssl_context=connection.ssl_context,
            mechanism=connection.sasl.mechanism,
        )
    if connection.ssl_context is not None:
        return faust.SSLCredentials(connection.ssl_context)
    return None
