"""Prometheus metrics at ``/metrics``, and one structured log line per request.

``RequestMetrics`` (an ASGI middleware) times every HTTP request and counts it by method,
route template and status; the route is the template the request matched
(``/api/reports/{report_id}``), never the path it asked for, so no caller can mint series
by asking for new paths (a path no route takes is counted as ``<unmatched>``). It also
writes one JSON log line per request (logger ``issuemap.requests``) with the method, the
route, the path with every secret query value and path parameter hidden (``?key=``,
``/r/{token}``), the status, the duration, the client and a request id (``X-Request-ID``,
taken from the caller when it is a plain token, else drawn, and sent back); no header is
ever logged, so API keys, cookies, ``Authorization`` and LINE signatures stay out.

Intake is counted by channel, and routing failures by reason, through the observer
``geo.reports.intake`` tells of every report it files; the database pool's use is kept by
pool events; the outbox backlog, the live tailer's lag and whether the database answers are
read from PostgreSQL when ``/metrics`` is scraped.

Several web workers (``issuemap serve --workers N``) keep their counts in the folder named
by ``PROMETHEUS_MULTIPROC_DIR`` (``serve`` makes one per run), and ``/metrics`` answers for
all of them, whichever worker the scrape reaches (prometheus_client's multiprocess mode).
Otherwise each application keeps its own registry, so several apps in one process (tests)
count apart.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import DATABASE_UNAVAILABLE
from geo.cli.service import MULTIPROCESS_DIR_VARIABLE, REDACTED, is_secret_name, redact_url
from geo.reports.intake import INTAKE_OBSERVER
from geo.reports.live import tailer_lag_s
from geo.reports.notifications import outbox_backlog
from geo.settings import MetricsSettings

REQUEST_LOGGER: Final = "issuemap.requests"
"""The logger of the one line per request (``issuemap serve`` writes it as JSON)."""

UNMATCHED: Final = "<unmatched>"
"""The route label of a request no route took (a 404 for an unknown path, mostly)."""

CHANNELS: Final = ("api", "web", "open311", "line")
"""Intake's channels (a ``Submission``'s ``source``); any other counts as ``other``."""

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Request durations in seconds: intake takes a few milliseconds, exports may take minutes."""

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other a client makes up counts as ``other``."""

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

log = logging.getLogger(REQUEST_LOGGER)


def multiprocess_dir() -> str | None:
    """The folder several web workers share their counts through, when it is in use.

    prometheus_client decides when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``;
    a folder named only later (a single in-process worker) is not used, or every count
    would be read from a folder that holds none.
    """
    path = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if not path or values.ValueClass is values.MutexValue:
        return None
    return path


class Metrics:
    """One application's metrics: what it counts, and the registry ``/metrics`` reads."""

    def __init__(self, settings: MetricsSettings, *, shared_dir: str | None = None) -> None:
        self.allowed = tuple(ipaddress.ip_network(n) for n in settings.metrics_allow)
        self.shared_dir = shared_dir
        self.registry = CollectorRegistry(auto_describe=True)
        # Shared counts live in the folder, and the registry reads them all from there.
        own = None if shared_dir else self.registry
        self.requests = Counter(
            "issuemap_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=own,
        )
        self.latency = Histogram(
            "issuemap_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ("method", "route"),
            registry=own,
            buckets=LATENCY_BUCKETS,
        )
        self.intake = Counter(
            "issuemap_intake_reports",
            "Reports filed, by channel (api, web, open311, line).",
            ("channel",),
            registry=own,
        )
        self.routing_failures = Counter(
            "issuemap_routing_failures",
            "Reports that intake could not route to a team, by channel and reason: "
            "outside_service_area (refused) or no_team (stored, but no team is responsible).",
            ("channel", "reason"),
            registry=own,
        )
        self.pool_checked_out = Gauge(
            "issuemap_db_pool_checked_out",
            "Connections of the shared database pool in use now (all workers).",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.pool_limit = Gauge(
            "issuemap_db_pool_limit",
            "Most connections the shared database pool may open, overflow included (all workers).",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.database = DatabaseCollector()
        self.registry.register(self.database)
        if shared_dir:
            multiprocess.MultiProcessCollector(self.registry, path=shared_dir)  # type: ignore[no-untyped-call]

    def watch(self, engine: Engine) -> None:
        """Follow ``engine``'s pool use, and read the database through it at scrapes."""
        self.database.engine = engine
        pool = engine.pool
        if not isinstance(pool, QueuePool):
            return
        self.pool_limit.set(pool.size() + pool._max_overflow)
        checked_out = self.pool_checked_out

        # Set to the pool's own figure, never counted up and down: a count could drift when
        # a connection attempt fails, and a set is right again at the next event.
        def out(dbapi_connection: object, record: ConnectionPoolEntry, proxy: object) -> None:
            checked_out.set(pool.checkedout())

        def back(dbapi_connection: object, record: ConnectionPoolEntry) -> None:
            # The connection coming back is still counted as out while this event runs.
            checked_out.set(max(pool.checkedout() - 1, 0))

        event.listen(pool, "checkout", out)
        event.listen(pool, "checkin", back)

    def allows(self, request: Request) -> bool:
        """Whether ``request`` may read ``/metrics``: it comes from an allowed address.

        Its client and every address its ``X-Forwarded-For`` and ``X-Real-IP`` name must be
        allowed: a proxy in front appends the address it saw, so a remote caller who
        writes ``127.0.0.1`` there is refused, trusted proxies or not.
        """
        claimed = [request.client.host if request.client else ""]
        for header in ("x-forwarded-for", "x-real-ip"):
            for value in request.headers.getlist(header):
                claimed.extend(part.strip() for part in value.split(","))
        return all(self._allowed(address) for address in claimed)

    def _allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.allowed)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The metrics and their content type, in the format the ``Accept`` header asks for.

        Prometheus' text format unless OpenMetrics is asked for (prometheus_client chooses).
        """
        if self.shared_dir:
            forget_dead_workers(self.shared_dir)
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    @contextlib.contextmanager
    def observing_intake(self) -> Iterator[None]:
        """Count what intake files and fails to route while the block runs."""
        token = INTAKE_OBSERVER.set(IntakeCounter(self))
        try:
            yield
        finally:
            INTAKE_OBSERVER.reset(token)


@dataclass(frozen=True, slots=True)
class IntakeCounter:
    """The intake observer (``geo.reports.intake.IntakeObserver``) that counts in ``Metrics``."""

    metrics: Metrics

    def filed(self, source: str, *, team_id: int | None) -> None:
        """Count a stored report, and a routing failure when no team took it."""
        channel = source if source in CHANNELS else "other"
        self.metrics.intake.labels(channel=channel).inc()
        if team_id is None:
            self.metrics.routing_failures.labels(channel=channel, reason="no_team").inc()

    def outside(self, source: str) -> None:
        """Count a report refused because its point is outside the service area."""
        channel = source if source in CHANNELS else "other"
        self.metrics.routing_failures.labels(channel=channel, reason="outside_service_area").inc()


class DatabaseCollector(Collector):
    """What PostgreSQL tells at each scrape: whether it answers, the outbox, the tailer."""

    def __init__(self) -> None:
        self.engine: Engine | None = None

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on what the database answers."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Read the figures now, through one pooled connection."""
        if self.engine is None:
            return
        try:
            with self.engine.connect() as conn:
                backlog = outbox_backlog(conn)
                lag = tailer_lag_s(conn)
        except DATABASE_UNAVAILABLE:
            yield GaugeMetricFamily(
                "issuemap_database_up", "Whether the database answered this scrape.", value=0
            )
            return
        yield GaugeMetricFamily(
            "issuemap_database_up", "Whether the database answered this scrape.", value=1
        )
        yield GaugeMetricFamily(
            "issuemap_outbox_backlog",
            "Notifications (e-mails, webhook calls, chat messages) waiting to be delivered.",
            value=backlog,
        )
        yield GaugeMetricFamily(
            "issuemap_live_tailer_up",
            "Whether a live tailer leads (reads new report events and sends them to maps).",
            value=0 if lag is None else 1,
        )
        if lag is not None:
            yield GaugeMetricFamily(
                "issuemap_live_tailer_lag_seconds",
                "Seconds since the live tailer last read new report events; live maps hear "
                "of a change at most this much (plus one poll) later.",
                value=lag,
            )


_WORKER_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def forget_dead_workers(folder: str) -> None:
    """Drop the pool gauges of web workers that have ended, so they no longer add up."""
    for entry in Path(folder).iterdir():
        found = _WORKER_FILE.match(entry.name)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, as another user


_ROUTE_NOTE = "issuemap.route"
"""The key of ``request.state`` under which ``note_route`` leaves the route's template and
the request's path parameters."""


async def note_route(request: Request) -> None:
    """An application-wide dependency: note the route that takes the request, and its path.

    The request's scope is the route's own, which a middleware on the way may have copied
    (the CSRF check does), so the template goes where ``RequestMetrics`` finds it: the
    request's ``state``, one dictionary shared by every copy.
    """
    path = getattr(request.scope.get("route"), "path", None)
    if isinstance(path, str):
        setattr(request.state, _ROUTE_NOTE, (path, dict(request.path_params)))


def route_template(scope: Scope, app: object) -> str:
    """The template of the route of ``app`` that took the request (``<unmatched>`` if none).

    A mounted application of its own (``/static``, ``/ogc``, ``/admin``) counts as one
    route, ``/ogc/{path}``.
    """
    noted = scope.get("state", {}).get(_ROUTE_NOTE)
    if noted is not None:
        return str(noted[0])
    for route in getattr(app, "routes", ()):
        if isinstance(route, Mount) and route.matches(scope)[0] is Match.FULL:
            return f"{route.path}/{{path}}"
    return UNMATCHED


def logged_path(scope: Scope) -> str:
    """The request's path and query as a log may show them: secret values hidden."""
    path = scope.get("path", "")
    noted = scope.get("state", {}).get(_ROUTE_NOTE)
    params = noted[1] if noted is not None else {}
    for name, value in params.items():
        if is_secret_name(name) and str(value):
            path = path.replace(str(value), REDACTED)
    query = scope.get("query_string", b"").decode("latin-1")
    return redact_url(f"{path}?{query}" if query else path)


class RequestMetrics:
    """Counts, times and logs every HTTP request (add it inside the proxy-headers one)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request, then count and log it (a 500 if the app raised)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Shared with every copy of the scope, so note_route can leave the route's name.
        scope.setdefault("state", {})
        app = scope.get("app")  # the outer application: a mounted one puts itself here
        request_id = _request_id(scope)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            with self.metrics.observing_intake():
                await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, app, status, time.perf_counter() - started, request_id)

    def _record(
        self, scope: Scope, app: object, status: int, seconds: float, request_id: str
    ) -> None:
        method = scope.get("method", "")
        if method not in METHODS:
            # Any token is a method to HTTP: a label per made-up one would be a new series.
            method = "other"
        route = route_template(scope, app)
        metrics = self.metrics
        metrics.requests.labels(method=method, route=route, status=str(status)).inc()
        metrics.latency.labels(method=method, route=route).observe(seconds)
        if log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "method": method,
                    "route": route,
                    "path": logged_path(scope),
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "client": client[0] if client else None,
                    "request_id": request_id,
                },
            )


def _request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is a plain token, else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            if _REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


router = APIRouter(include_in_schema=False)


def app_metrics(app: FastAPI) -> Metrics:
    """The metrics ``install`` gave ``app``."""
    metrics: Metrics = app.state.metrics
    return metrics


@router.get("/metrics")
def metrics_page(request: Request) -> Response:
    """The service's metrics in Prometheus' text format, for the allowed addresses only."""
    metrics = app_metrics(request.app)
    if not metrics.allows(request):
        # As for any path that does not exist: a stranger learns nothing is here.
        raise StarletteHTTPException(status_code=404)
    body, content_type = metrics.exposition(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


def install(app: FastAPI, settings: MetricsSettings) -> Metrics:
    """Give ``app`` its metrics, ``/metrics`` and the request middleware; return them.

    Call it before the proxy-headers middleware is added, so requests are seen with the
    client address that middleware gives them; ``app`` must have ``note_route`` among its
    application-wide dependencies.
    """
    metrics = Metrics(settings, shared_dir=multiprocess_dir())
    app.state.metrics = metrics
    app.include_router(router)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return metrics
