"""The worker's HTTP API (aiohttp): ingest for agents that cannot speak Kafka, the latest plan
per site, a server-sent-event stream of decisions, the live dashboard page (``web/``), health
and Prometheus metrics.

Writes need ``Authorization: Bearer <GRIDSHIFT_HTTP_TOKEN>``; without a configured token they
are refused. Only these routes are served; faust's own web server stays off.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from schemas import INPUT_ROUTES, INPUT_TOPICS, DispatchDecision
from streams.engine.fleet import Fleet
from streams.errors import GridshiftError
from streams.sdk import Publisher
from streams.worker.metrics import Metrics

if TYPE_CHECKING:
    from streams.worker.health import HealthReport

SSE_QUEUE = 256  # per client; a slow client loses its oldest decisions, never the worker's memory


class DecisionHub:
    """The latest decision per site, and a bounded queue per live SSE client."""

    def __init__(self) -> None:
        self.latest: dict[str, DispatchDecision] = {}
        self.last_at: float | None = None
        self._clients: set[asyncio.Queue[DispatchDecision]] = set()

    def publish(self, decision: DispatchDecision) -> None:
        self.latest[decision.site_id] = decision
        self.last_at = time.monotonic()
        for queue in self._clients:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(decision)

    @contextlib.contextmanager
    def subscribe(self) -> Any:
        queue: asyncio.Queue[DispatchDecision] = asyncio.Queue(SSE_QUEUE)
        self._clients.add(queue)
        try:
            yield queue
        finally:
            self._clients.discard(queue)


def build_api(
    *,
    fleet: Fleet,
    hub: DecisionHub,
    metrics: Metrics,
    publisher: Publisher,
    token: str | None,
    health: Callable[[], Awaitable[HealthReport]],
) -> web.Application:
    """The aiohttp application; ``publisher`` sends validated writes to the input topics."""
    routes = web.RouteTableDef()
    page = (
        resources.files("streams.worker").joinpath("web/dashboard.html").read_text(encoding="utf-8")
    )

    def authorised(request: web.Request) -> None:
        if token is None:
            raise web.HTTPForbidden(text="writes are disabled: set GRIDSHIFT_HTTP_TOKEN")
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPUnauthorized(text="missing or wrong bearer token")

    @routes.post("/v1/events/{topic}")
    # Short routes per input kind (the contract's topic table), beside /v1/events/{topic}.
    @routes.post("/v1/{kind:" + "|".join(INPUT_ROUTES) + "}")
    async def ingest(request: web.Request) -> web.Response:
        authorised(request)
        kind = request.match_info.get("kind")
        topic = INPUT_ROUTES[kind] if kind else request.match_info["topic"]
        if topic not in INPUT_TOPICS:
            raise web.HTTPNotFound(
                text=f"not an input topic; choose from {', '.join(INPUT_TOPICS)}"
            )
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text=f"not JSON: {exc}") from exc
        events = body if isinstance(body, list) else [body]
        try:
            count = await publisher.publish_many(topic, events)
        except GridshiftError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        return web.json_response({"published": count, "topic": topic}, status=202)

    @routes.get("/v1/sites")
    async def sites(_: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    **site.model_dump(mode="json"),
                    "latest_decision_id": d.decision_id
                    if (d := hub.latest.get(site.site_id))
                    else None,
                }
                for site in fleet.sites
            ]
        )

    @routes.get("/v1/sites/{site_id}/decision")
    async def latest(request: web.Request) -> web.Response:
        decision = hub.latest.get(request.match_info["site_id"])
        if decision is None:
            raise web.HTTPNotFound(text="no decision for this site yet")
        return web.Response(text=decision.model_dump_json(), content_type="application/json")

    @routes.get("/v1/decisions/stream")
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        with hub.subscribe() as queue:
            for decision in list(hub.latest.values()):
                await response.write(_sse(decision))
            while True:
                decision = await queue.get()
                await response.write(_sse(decision))

    @routes.get("/")
    async def dashboard(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    @routes.get("/health")
    async def healthcheck(_: web.Request) -> web.Response:
        report = await health()
        return web.json_response(report.body(), status=200 if report.healthy else 503)

    @routes.get("/metrics")
    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8")

    app = web.Application(client_max_size=1_000_000)
    app.add_routes(routes)
    return app


def _sse(decision: DispatchDecision) -> bytes:
    return f"event: decision\ndata: {decision.model_dump_json()}\n\n".encode()


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``app`` on host:port (0 = a free port); yields the bound port."""
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else str(exc)
        raise GridshiftError(
            f"cannot serve HTTP on {host}:{port} ({reason}); set GRIDSHIFT_HTTP_PORT"
        ) from exc
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    try:
        yield bound
    finally:
        await runner.cleanup()
