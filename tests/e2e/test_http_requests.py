"""Malformed HTTP requests, sent as raw bytes to a real worker: every one gets a 4xx with one
line of text, never a 500 and never an error-level traceback in the worker's log; the
``Authorization`` scheme is parsed as RFC 7235 says (case-insensitive, and required)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from streams.engine.fleet import Fleet
from streams.kafka.broker import EmbeddedBroker
from tests.e2e.harness import worker_on, worker_settings
from tests.factories import hashprice, mining_site

pytestmark = pytest.mark.e2e
TOKEN = "s3cret-write"
HASHPRICE = hashprice().model_dump_json().encode()


@dataclass(frozen=True)
class Answer:
    """An HTTP response as read off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(port: int, request: bytes, timeout_s: float = 10.0) -> Answer:
    """Send ``request`` byte for byte (no client library in between) and read the answer."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            }
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length)
        finally:
            writer.close()
            await writer.wait_closed()
    return Answer(status, headers, body)


def http(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    host: bytes = b"127.0.0.1",
    authorization: bytes | None = None,
    content_type: bytes = b"application/json",
) -> bytes:
    """One HTTP/1.1 request as raw bytes (the connection closes after the answer)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + host, b"Connection: close"]
    if authorization is not None:
        lines.append(b"Authorization: " + authorization)
    if body or method == "POST":
        lines += [b"Content-Type: " + content_type, f"Content-Length: {len(body)}".encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def bearer(token: str = TOKEN) -> bytes:
    return f"Bearer {token}".encode()


@pytest.fixture(scope="module")
async def port(broker: EmbeddedBroker) -> AsyncIterator[int]:
    """One worker with a write token for every request of this module."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = worker_settings(prefix, http_enabled=True, http_port=0, http_token=TOKEN)
    async with worker_on(broker.bootstrap, Fleet(sites=(mining_site(),)), settings) as worker:
        assert worker.http_port is not None
        yield worker.http_port


def assert_clean(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing at ERROR or above and no traceback was logged while the request was served."""
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]


BAD_BODIES = {
    "a JSON number": b"5",
    "JSON null": b"null",
    "a JSON string": b'"price"',
    "a list of numbers": b"[1, 2]",
    "an empty list": b"[]",
    "an empty body": b"",
    "invalid UTF-8": b'{"hashprice_usd_per_th_day": "\xff\xfe"}',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep nesting in a field": b'{"btc_usd": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    "not JSON": b"{hashprice: 1}",
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_a_bad_body_is_a_400_with_one_line(
    port: int, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    answer = await raw_request(
        port, http("POST", "/v1/events/market.hashprice.v1", body, authorization=bearer())
    )
    assert answer.status == 400, answer.body
    text = answer.body.decode()
    assert text and "\n" not in text.strip()
    assert_clean(caplog)


AUTHORIZATIONS = {
    # RFC 7235: the scheme is a case-insensitive token, followed by the credentials.
    "Bearer": (bearer(), 202),
    "lowercase bearer": (f"bearer {TOKEN}".encode(), 202),
    "upper-case BEARER, two spaces": (f"BEARER  {TOKEN}".encode(), 202),
    "the raw token, no scheme": (TOKEN.encode(), 401),
    "another scheme": (f"Basic {TOKEN}".encode(), 401),
    "the scheme alone": (b"Bearer", 401),
    "a wrong token": (bearer("wrong"), 401),
    "non-ASCII bytes": (b"Bearer s3cr\xe9t", 401),
    "non-ASCII bytes after the token": (bearer() + b"\xe9", 401),
    "empty": (b"", 401),
}


@pytest.mark.parametrize(("authorization", "status"), AUTHORIZATIONS.values(), ids=AUTHORIZATIONS)
async def test_the_authorization_scheme_is_parsed_case_insensitively_and_required(
    port: int, authorization: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    answer = await raw_request(
        port, http("POST", "/v1/events/market.hashprice.v1", HASHPRICE, authorization=authorization)
    )
    assert answer.status == status, answer.body
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert b"\n" not in answer.body.strip()
    assert_clean(caplog)


async def test_a_missing_authorization_header_is_a_401(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    answer = await raw_request(port, http("POST", "/v1/events/market.hashprice.v1", HASHPRICE))
    assert answer.status == 401
    assert_clean(caplog)
