"""What the HTTP API shows to whom, asked as an outside client would (raw HTTP, the Host header
chosen byte for byte): reads need a token, except /health and /metrics; the Host header must
name this server (DNS rebinding); with no token set, reads are open only on a loopback bind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from tests.e2e.harness import worker_on, worker_settings
from tests.e2e.test_http_requests import Answer, http, raw_request
from tests.factories import hashprice, mining_site

pytestmark = pytest.mark.e2e
WRITE, READ = "wr1te-t0ken", "r3ad-t0ken"
HASHPRICE = hashprice().model_dump_json().encode()
FLEET = Fleet(sites=(mining_site(),))


@contextlib.asynccontextmanager
async def start(broker: EmbeddedBroker, **http_settings: object) -> AsyncIterator[int]:
    """A worker serving HTTP with ``http_settings``; yields its port."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = worker_settings(prefix, http_enabled=True, http_port=0, **http_settings)
    async with worker_on(broker.bootstrap, FLEET, settings) as worker:
        assert worker.http_port is not None
        yield worker.http_port


@pytest.fixture(scope="module")
async def guarded(broker: EmbeddedBroker) -> AsyncIterator[int]:
    """A worker with a write token and a read token, on loopback."""
    async with start(broker, http_token=WRITE, http_read_token=READ) as port:
        yield port


def token(value: str) -> bytes:
    return f"Bearer {value}".encode()


async def get(port: int, path: str, **options: bytes) -> Answer:
    return await raw_request(port, http("GET", path, **options))


@pytest.mark.parametrize("path", ["/v1/sites", "/v1/sites/site-a/decision", "/v1/nowhere"])
async def test_reads_need_a_token(guarded: int, path: str) -> None:
    answer = await get(guarded, path)
    assert answer.status == 401, answer.body
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert await get(guarded, path, authorization=token("guess")) == Answer(
        401, answer.headers, answer.body
    )


async def test_the_read_token_and_the_write_token_read(guarded: int) -> None:
    for value in (READ, WRITE):
        answer = await get(guarded, "/v1/sites", authorization=token(value))
        assert answer.status == 200
        (site,) = json.loads(answer.body)
        assert site["site_id"] == "site-a"


async def test_the_decision_stream_needs_a_token(guarded: int) -> None:
    assert (await get(guarded, "/v1/decisions/stream")).status == 401
    # With the token the stream opens (its head is read; the body never ends).
    request = http("GET", "/v1/decisions/stream", authorization=token(READ))
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", guarded)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 200")
    assert b"text/event-stream" in head


async def test_the_read_token_cannot_write(guarded: int) -> None:
    path = "/v1/events/market.hashprice.v1"
    answer = await raw_request(guarded, http("POST", path, HASHPRICE, authorization=token(READ)))
    assert answer.status == 403
    assert b"read token cannot write" in answer.body
    answer = await raw_request(guarded, http("POST", path, HASHPRICE, authorization=token(WRITE)))
    assert answer.status == 202


@pytest.mark.parametrize("path", ["/health", "/metrics"])
async def test_probes_answer_anyone_by_any_name(guarded: int, path: str) -> None:
    assert (await get(guarded, path)).status == 200
    assert (await get(guarded, path, host=b"gridshift-1:8780")).status == 200


async def test_the_page_needs_no_token_and_holds_no_data(guarded: int) -> None:
    answer = await get(guarded, "/")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert b"site-a" not in answer.body
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "host",
    [
        b"evil.example",
        b"evil.example:8780",
        b"127.0.0.1.evil.example",
        b"localhost.evil",
        b"evil\xe9.example",
        b"",
    ],
)
@pytest.mark.parametrize("path", ["/", "/v1/sites", "/v1/decisions/stream"])
async def test_a_foreign_host_is_misdirected(guarded: int, path: str, host: bytes) -> None:
    """A DNS-rebinding page reaches this server under its own name: refused, token or not."""
    answer = await get(guarded, path, host=host, authorization=token(READ))
    assert answer.status == 421, answer.body
    assert b"GRIDSHIFT_HTTP_ALLOWED_HOSTS" in answer.body


@pytest.mark.parametrize("host", [b"localhost:8780", b"LOCALHOST", b"localhost.", b"[::1]:1"])
async def test_allowed_hosts_ignore_the_port_and_case(guarded: int, host: bytes) -> None:
    answer = await get(guarded, "/v1/sites", host=host, authorization=token(READ))
    assert answer.status == 200, answer.body


async def test_a_request_without_host_is_misdirected(guarded: int) -> None:
    request = b"GET /v1/sites HTTP/1.0\r\nAuthorization: " + token(READ) + b"\r\n\r\n"
    answer = await raw_request(guarded, request)
    assert answer.status == 421


async def test_without_tokens_reads_are_open_on_loopback(broker: EmbeddedBroker) -> None:
    async with start(broker) as port:
        assert (await get(port, "/v1/sites")).status == 200
        answer = await raw_request(port, http("POST", "/v1/events/grid.price.v1", HASHPRICE))
        assert answer.status == 403
        assert b"GRIDSHIFT_HTTP_TOKEN" in answer.body
        assert (await get(port, "/v1/sites", host=b"evil.example")).status == 421


async def test_without_tokens_reads_are_refused_off_loopback(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Bound to every interface with no token: nothing but the probes and the page answer,
    and the worker says so when it starts."""
    caplog.set_level(logging.WARNING, logger="streams.worker.http")
    async with start(broker, http_host="0.0.0.0") as port:
        assert any(
            r.getMessage().startswith("http reads are refused") and r.levelno == logging.WARNING
            for r in caplog.records
        )
        for path in ("/v1/sites", "/v1/decisions/stream"):
            answer = await get(port, path)
            assert answer.status == 403
            assert answer.body.decode().startswith("reads are refused")
            assert "GRIDSHIFT_HTTP_READ_TOKEN" in answer.body.decode()
        assert (await get(port, "/health")).status == 200
        assert (await get(port, "/")).status == 200
