"""The worker's HTTP API (aiohttp): ingest for agents that cannot speak Kafka, the latest plan
per site, a server-sent-event stream of decisions, the live dashboard page (``web/``), health
and Prometheus metrics.

Who may do what (docs/SECURITY.md):

* ``/health`` and ``/metrics`` answer anyone: probes and Prometheus reach them by any name.
* Every other route checks the ``Host`` header against the allowed names (a port is ignored),
  so a DNS-rebinding page cannot read the API through a victim's browser: 421 otherwise.
* Writes need ``Authorization: Bearer <GRIDSHIFT_HTTP_TOKEN>`` (refused when it is unset).
  Reads (the sites, decisions, the stream) need the read token or the write token; with no
  token set at all they are open on a loopback bind and refused on any other. The dashboard
  page itself holds no data and is served without a token; its API calls carry one.
* The scheme is parsed as RFC 7235 says: case-insensitive, and required.

Every refusal is a 4xx with one line of text. Writes are checked against the fleet before
anything is published: a malformed body is 400, an unknown site, price node or carbon region
422. Anything unexpected is one logged traceback and a one-line 500. Only these routes are
served; faust's own web server stays off.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from enum import Enum
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from schemas import INPUT_ROUTES, INPUT_TOPICS, TOPICS_BY_NAME, DispatchDecision
from streams.engine.codec import DuplicateKeyError, loads_unique
from streams.engine.fleet import Fleet
from streams.errors import GridshiftError
from streams.sdk import Publisher, validate_event
from streams.worker.metrics import Metrics

if TYPE_CHECKING:
    from streams.worker.health import HealthReport

log = logging.getLogger(__name__)

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


class Level(Enum):
    """What a route needs from its caller."""

    PUBLIC = "public"  # probes and Prometheus: no Host check, no token
    PAGE = "page"  # the dashboard page: holds no data, so a Host check but no token
    READ = "read"  # the read token or the write token (open on loopback with no token set)
    WRITE = "write"  # the write token


_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})  # noqa: S104 - names, not a bind
_SHOWN_KEYS = 12  # an unknown key's answer names at most this many known ones
# A region key (carbon, signals, reserve prices) names a site's carbon_region in the sites file.
_KEY_LABELS = {"site_id": "site", "node": "price node", "region": "region"}


def host_name(value: str) -> str:
    """The name in a ``Host`` header value (or an allowed-hosts entry): lower case, without
    its port or a trailing dot. ``[::1]:8780`` -> ``[::1]``; ``Example.COM.:80`` ->
    ``example.com``."""
    value = value.strip().lower()
    if value.startswith("["):  # an IPv6 literal keeps its brackets; only the port goes
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def is_loopback(bind_host: str) -> bool:
    """True when the API is bound to a loopback address (nothing else can connect)."""
    if bind_host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind_host.strip("[]")).is_loopback
    except ValueError:
        return False


def bearer_credentials(header: str) -> bytes | None:
    """The credentials of an ``Authorization: Bearer <token>`` header, as the client sent
    them, or None. RFC 7235: the scheme is case-insensitive and must be there (a bare token
    is refused); non-ASCII bytes arrive as surrogate escapes and go back to their bytes."""
    scheme, _, credentials = header.strip(" \t").partition(" ")
    credentials = credentials.strip(" \t")
    if scheme.lower() != "bearer" or not credentials:
        return None
    try:
        return credentials.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte decodes to: not a token we issued
        return None


class Access:
    """Who may call which route: the tokens, the bind address and the allowed Host names."""

    def __init__(
        self,
        *,
        write_token: str | None,
        read_token: str | None,
        allowed_hosts: str | Iterable[str],
        bind_host: str,
    ) -> None:
        self.write = write_token.encode() if write_token else None
        self.read = read_token.encode() if read_token else None
        self.bind_host = bind_host
        entries = allowed_hosts.split(",") if isinstance(allowed_hosts, str) else allowed_hosts
        names = {host_name(entry) for entry in entries} - {""}
        self.any_host = "*" in names
        bind = host_name(f"[{bind_host}]" if bind_host.count(":") > 1 else bind_host)
        if bind not in _WILDCARD_BINDS:
            names.add(bind)  # the address the API is bound to is one clients use
        self.allowed_hosts = frozenset(names - {"*"})
        self.loopback = is_loopback(bind_host)

    def warnings(self) -> list[tuple[str, dict[str, Any]]]:
        """What an operator should know at start-up about this configuration (message and
        log fields)."""
        found: list[tuple[str, dict[str, Any]]] = []
        if self.write is None and self.read is None and not self.loopback:
            found.append(
                (
                    "http reads are refused: not bound to loopback and no token is set",
                    {"bind_host": self.bind_host, "fix": "set GRIDSHIFT_HTTP_READ_TOKEN"},
                )
            )
        if self.any_host:
            found.append(
                ("http Host check is off", {"setting": "GRIDSHIFT_HTTP_ALLOWED_HOSTS has '*'"})
            )
        return found

    def check_host(self, request: web.Request) -> None:
        """421 unless the request names an allowed host (DNS rebinding names the attacker's)."""
        if self.any_host:
            return
        given = request.headers.get("Host", "")
        if host_name(given) not in self.allowed_hosts:
            raise web.HTTPMisdirectedRequest(
                text=f"host {given[:80]!r} is not served here; add it to "
                "GRIDSHIFT_HTTP_ALLOWED_HOSTS if clients really use it"
            )

    def check(self, request: web.Request, level: Level) -> None:
        """Refuse (401, 403) a caller who may not use a route of ``level``."""
        if level in (Level.PUBLIC, Level.PAGE):
            return
        if level is Level.WRITE:
            if self.write is None:
                raise web.HTTPForbidden(text="writes are disabled: set GRIDSHIFT_HTTP_TOKEN")
            accepted: tuple[bytes, ...] = (self.write,)
        else:
            accepted = tuple(t for t in (self.read, self.write) if t is not None)
            if not accepted:
                if self.loopback:
                    return  # nothing but this machine can connect, and no token was asked for
                raise web.HTTPForbidden(
                    text=f"reads are refused: the API is bound to {self.bind_host}, not "
                    "loopback; set GRIDSHIFT_HTTP_READ_TOKEN"
                )
        given = bearer_credentials(request.headers.get("Authorization", ""))
        # Compare with every accepted token (no early exit): the time taken says nothing.
        matched = [given is not None and hmac.compare_digest(given, t) for t in accepted]
        if any(matched):
            return
        if (
            level is Level.WRITE
            and given is not None
            and self.read is not None
            and hmac.compare_digest(given, self.read)
        ):
            raise web.HTTPForbidden(text="the read token cannot write; use GRIDSHIFT_HTTP_TOKEN")
        raise web.HTTPUnauthorized(
            text="missing or wrong bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": 'Bearer realm="gridshift"'},
        )


class FleetKeys:
    """The keys the fleet file knows, by event field: an input keyed by anything else would
    be accepted here and dead-lettered (or ignored) by the worker, so HTTP refuses it."""

    def __init__(self, fleet: Fleet) -> None:
        self.known: dict[str, frozenset[str]] = {
            "site_id": frozenset(s.site_id for s in fleet.sites),
            "node": frozenset(s.price_node for s in fleet.sites),
            "region": frozenset(s.carbon_region for s in fleet.sites),
        }

    def unknown(self, topic: str, event: BaseModel) -> str | None:
        """One line naming ``event``'s key and the known ones, or None when the fleet has it."""
        for name in TOPICS_BY_NAME[topic].key_fields:  # the contract's key: first field set
            value = getattr(event, name, None)
            if value is None:
                continue
            known = self.known.get(name)
            if known is None or value in known:
                return None
            shown = sorted(known)[:_SHOWN_KEYS]
            more = f" and {len(known) - len(shown)} more" if len(known) > len(shown) else ""
            return (
                f"unknown {_KEY_LABELS[name]} {value!r}: not in the sites file "
                f"(known: {', '.join(shown)}{more})"
            )
        return None


async def read_events(request: web.Request) -> list[dict[str, Any]]:
    """The body as a list of JSON objects (one object, or a non-empty list of them); 400 with
    one line for anything else. Bytes, not ``request.json()``: invalid UTF-8 and deep nesting
    raise ``UnicodeDecodeError`` and ``RecursionError``, which that lets through as a 500."""
    raw = await request.read()  # beyond client_max_size aiohttp answers 413 itself
    try:
        body = loads_unique(raw)
    except RecursionError as exc:
        raise web.HTTPBadRequest(text="not an event: JSON nested too deeply") from exc
    except DuplicateKeyError as exc:  # validated and re-encoded, the duplicate would vanish
        raise web.HTTPBadRequest(text=str(exc)) from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise web.HTTPBadRequest(text=f"not JSON: {exc}") from exc
    events = body if isinstance(body, list) else [body]
    if not events or not all(isinstance(event, dict) for event in events):
        raise web.HTTPBadRequest(
            text="expected a JSON object or a non-empty list of objects, one per event"
        )
    return events


def validate_all(topic: str, events: Sequence[dict[str, Any]], keys: FleetKeys) -> list[BaseModel]:
    """Every event as its topic's model, with a key the fleet knows, or one 400/422 line
    (``event 2: ...`` in a list): nothing is published unless everything is valid."""
    models = []
    for number, event in enumerate(events, start=1):
        where = f"event {number}: " if len(events) > 1 else ""
        try:
            model = validate_event(topic, event)
        except GridshiftError as exc:
            raise web.HTTPBadRequest(text=f"{where}{exc}") from exc
        except RecursionError as exc:  # nesting json.loads took but json.dumps cannot
            raise web.HTTPBadRequest(text=f"{where}JSON nested too deeply") from exc
        problem = keys.unknown(topic, model)
        if problem is not None:
            raise web.HTTPUnprocessableEntity(text=f"{where}{problem}")
        models.append(model)
    return models


@web.middleware
async def _one_line_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Anything a handler did not turn into an HTTP answer: one traceback in the log (it is a
    bug) and a one-line 500 to the client, instead of aiohttp's page."""
    try:
        return await handler(request)
    except (web.HTTPException, ConnectionError):
        raise  # answers, and clients gone away (aiohttp handles those quietly)
    except Exception as exc:
        log.exception("http request failed", extra={"method": request.method, "path": request.path})
        raise web.HTTPInternalServerError(
            text="internal error; the worker log has the details"
        ) from exc


def build_api(
    *,
    fleet: Fleet,
    hub: DecisionHub,
    metrics: Metrics,
    publisher: Publisher,
    token: str | None,
    health: Callable[[], Awaitable[HealthReport]],
    read_token: str | None = None,
    allowed_hosts: str | Iterable[str] = ("localhost", "127.0.0.1", "[::1]"),
    bind_host: str = "127.0.0.1",
) -> web.Application:
    """The aiohttp application; ``publisher`` sends validated writes to the input topics.

    ``token`` guards writes, ``read_token`` (or ``token``) reads; ``allowed_hosts`` are the
    Host names browser-facing routes answer (plus ``bind_host`` unless it is a wildcard).
    """
    access = Access(
        write_token=token, read_token=read_token, allowed_hosts=allowed_hosts, bind_host=bind_host
    )
    for message, fields in access.warnings():
        log.warning(message, extra=fields)
    keys = FleetKeys(fleet)
    routes = web.RouteTableDef()
    levels: dict[Callable[..., Any], Level] = {}
    page = (
        resources.files("streams.worker").joinpath("web/dashboard.html").read_text(encoding="utf-8")
    )

    def needs(level: Level) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def mark(handler: Callable[..., Any]) -> Callable[..., Any]:
            levels[handler] = level
            return handler

        return mark

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Unknown routes (404, 405) are guarded like reads: say nothing to strangers.
        level = levels.get(request.match_info.handler, Level.READ)
        if level is not Level.PUBLIC:
            access.check_host(request)
        access.check(request, level)
        return await handler(request)

    @routes.post("/v1/events/{topic}")
    # Short routes per input kind (the contract's topic table), beside /v1/events/{topic}.
    @routes.post("/v1/{kind:" + "|".join(INPUT_ROUTES) + "}")
    @needs(Level.WRITE)
    async def ingest(request: web.Request) -> web.Response:
        kind = request.match_info.get("kind")
        topic = INPUT_ROUTES[kind] if kind else request.match_info["topic"]
        if topic not in INPUT_TOPICS:
            raise web.HTTPNotFound(
                text=f"not an input topic; choose from {', '.join(INPUT_TOPICS)}"
            )
        models = validate_all(topic, await read_events(request), keys)
        try:
            count = await publisher.publish_many(topic, models)
        except GridshiftError as exc:  # validated above: what is left is the broker's answer
            raise web.HTTPServiceUnavailable(text=f"not published: {exc}") from exc
        return web.json_response({"published": count, "topic": topic}, status=202)

    @routes.get("/v1/sites")
    @needs(Level.READ)
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
    @needs(Level.READ)
    async def latest(request: web.Request) -> web.Response:
        decision = hub.latest.get(request.match_info["site_id"])
        if decision is None:
            raise web.HTTPNotFound(text="no decision for this site yet")
        return web.Response(text=decision.model_dump_json(), content_type="application/json")

    @routes.get("/v1/decisions/stream")
    @needs(Level.READ)
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        with hub.subscribe() as queue, contextlib.suppress(ConnectionError):
            for decision in list(hub.latest.values()):
                await response.write(_sse(decision))
            while True:
                decision = await queue.get()
                await response.write(_sse(decision))
        return response  # the client went away

    @routes.get("/")
    @needs(Level.PAGE)
    async def dashboard(_: web.Request) -> web.Response:
        return web.Response(
            text=page,
            content_type="text/html",
            charset="utf-8",
            # The page reads its token from the URL fragment: never cache it, frame it or
            # send it on as a referrer.
            headers={
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY",
            },
        )

    @routes.get("/health")
    @needs(Level.PUBLIC)
    async def healthcheck(_: web.Request) -> web.Response:
        report = await health()
        return web.json_response(report.body(), status=200 if report.healthy else 503)

    @routes.get("/metrics")
    @needs(Level.PUBLIC)
    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8")

    app = web.Application(client_max_size=1_000_000, middlewares=[_one_line_errors, guard])
    app.add_routes(routes)
    app.on_response_prepare.append(_no_sniffing)
    return app


async def _no_sniffing(_: web.Request, response: web.StreamResponse) -> None:
    """Browsers take every answer as the type it says it is (no JSON run as a script)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


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
