"""Request dependencies: the app's state, a connection per request, the caller and their role.

The lifespan builds one ``AppState`` and keeps it on ``app.state``; routes read it, and the
settings groups in it, only through the dependencies here. ``AdminDep`` and ``StaffDep``
are the permission rules: a route or router that takes them refuses anyone else with 401
(no key) or 403 (another role) before any of its own work.

Dependencies that only read the state or the caller are coroutines: FastAPI runs a plain
function dependency on the thread pool, a hand-off to another thread and back for each
one on each request. Only those that wait on the database are plain functions.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Cookie, Depends, FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader
from sqlalchemy import Connection, Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ExportsBusyError
from geo.access.keys import authenticate
from geo.access.policy import ANONYMOUS, Principal, is_admin
from geo.access.ratelimit import ReportRateLimiter
from geo.access.sessions import SESSION_COOKIE, session_principal
from geo.chat.line import LineChannel
from geo.city.geocoding import Geocoder
from geo.db.engine import ReadPool, ReplicaSet, make_engine
from geo.errors import AuthenticationError, PermissionDeniedError
from geo.i18n import N_
from geo.reports.live import LiveHub
from geo.settings import (
    AccountSettings,
    BoundarySettings,
    CitySettings,
    IntakeSettings,
    MapSettings,
    NotificationSettings,
    Open311Settings,
    PrivacySettings,
    RoutingSettings,
)


class ExportSlots:
    """The exports one worker runs at once, each on one connection of a pool of their own.

    An export holds its connection for as long as the client takes to download it. On the
    shared pool a few dozen slow downloads took every connection, and health and intake
    waited behind them; here they never touch it. An export beyond ``limit`` is refused at
    once rather than queued, since a queued download would hold its client just as long.
    """

    def __init__(
        self,
        url: str,
        *,
        limit: int,
        max_seconds: float,
        replicas: ReplicaSet | None = None,
        prepared_statements: bool = True,
    ) -> None:
        # One connection per place and no overflow: a place always finds its connection,
        # and the short timeout only guards against a leak turning into a hang.
        pool: dict[str, Any] = {
            "pool_size": limit,
            "max_overflow": 0,
            "pool_timeout_s": 5.0,
            "prepared_statements": prepared_statements,
        }
        self.engine = make_engine(url, **pool)
        self.max_seconds = max_seconds
        self._places = threading.BoundedSemaphore(limit)
        self.reads = None if replicas is None else ReadPool(self.engine, replicas, **pool)
        """The same places' pools on the replicas, when there are replicas."""

    @contextmanager
    def connection(self, *, primary: bool = True) -> Iterator[Connection]:
        """A place and its connection for one export; ``ExportsBusyError`` when none is free.

        ``primary=False`` lets the export read a fit replica (``reads_primary`` decides).
        """
        if not self._places.acquire(blocking=False):
            raise ExportsBusyError
        try:
            if primary or self.reads is None:
                with self.engine.connect() as conn:
                    yield conn
            else:
                with self.reads.connect() as conn:
                    yield conn
        finally:
            self._places.release()

    def dispose(self) -> None:
        """Close the pools' connections (on shutdown)."""
        self.engine.dispose()
        if self.reads is not None:
            self.reads.dispose()


@dataclass(frozen=True, slots=True)
class AppState:
    """What the lifespan builds once and every request reads: pools, services, settings."""

    engine: Engine
    exports: ExportSlots
    live: LiveHub
    geocoder: Geocoder
    routing: RoutingSettings
    intake: IntakeSettings
    open311: Open311Settings
    maps: MapSettings
    boundaries: BoundarySettings
    privacy: PrivacySettings
    report_limits: ReportRateLimiter
    notifications: NotificationSettings
    """Whether status changes queue e-mails, and what the links in them point at."""
    city: CitySettings
    """The city's time zone, in which resident pages and the public list tell times."""
    line: LineChannel | None = None
    """The city's LINE Official Account; None while it is not connected."""
    accounts: AccountSettings = field(default_factory=AccountSettings)
    """Staff sign-in: session lifetimes, the lock after wrong passwords, the cookie."""
    reads: ReadPool | None = None
    """Read-only work's pools on the replicas; None: every read on ``engine``."""
    writers: RecentWriters | None = None
    """Who wrote lately, so their reads stay on the primary (with ``reads``)."""


def app_state(app: FastAPI) -> AppState:
    """The state ``app``'s lifespan stored (only while the app runs)."""
    state: AppState = app.state.issuemap
    return state


def set_app_state(app: FastAPI, state: AppState) -> None:
    """Keep ``state`` as ``app``'s one application state (the lifespan does this)."""
    app.state.issuemap = state


def replace_app_state(app: FastAPI, **changes: Any) -> None:
    """Swap parts of a running app's state, e.g. a setting or a service in a test."""
    set_app_state(app, replace(app_state(app), **changes))


async def get_app_state(request: Request) -> AppState:
    """The application state of the app serving this request."""
    return app_state(request.app)


AppStateDep = Annotated[AppState, Depends(get_app_state)]


def get_connection(state: AppStateDep) -> Iterator[Connection]:
    """A connection inside a transaction that commits when the request succeeds."""
    with state.engine.begin() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(get_connection)]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing; a request with any other may write."""

WROTE_COOKIE = "issuemap_wrote"
"""Set on a browser's write (``ReadYourWrites``): its reads stay on the primary meanwhile."""


class RecentWriters:
    """When each caller last wrote, in this worker, for ``window_s`` seconds.

    A caller is its credential (key, session, key cookie; kept only as a digest) or, for
    the public, its address. Another worker does not know of the write: a browser carries
    ``WROTE_COOKIE`` to any worker, but a cookieless API client that writes through one
    worker and reads at once through another may read a replica that has not replayed its
    write yet (within ``ISSUEMAP_DATABASE_REPLICA_MAX_LAG_S``).
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._last: dict[bytes, float] = {}

    def wrote(self, caller: bytes) -> None:
        """Note that ``caller`` wrote just now."""
        now = time.monotonic()
        if len(self._last) > 10_000:
            # A burst of distinct callers: forget those whose window has passed.
            self._last = {k: t for k, t in self._last.items() if now - t < self.window_s}
        self._last[caller] = now

    def wrote_lately(self, caller: bytes) -> bool:
        """Whether ``caller`` wrote within the window."""
        last = self._last.get(caller)
        return last is not None and time.monotonic() - last < self.window_s


def caller_tag(connection: HTTPConnection) -> bytes:
    """Who sends ``connection`` (``RecentWriters``): its credential's digest, or its address."""
    headers = connection.headers
    credential = (
        headers.get("x-api-key")
        or headers.get("authorization")
        or connection.cookies.get(SESSION_COOKIE)
        or connection.cookies.get(KEY_COOKIE)
    )
    if credential:
        return hashlib.blake2b(credential.encode(), digest_size=16).digest()
    return b"address:" + (client_address(connection) or "").encode()


class ReadYourWrites:
    """Note each write, so the same caller's reads go to the primary for a while after it.

    A request with a method other than GET, HEAD or OPTIONS that succeeds (below 400) is a
    write. Its caller is noted in ``RecentWriters``; a browser (a request carrying cookies)
    also gets ``WROTE_COOKIE`` for as long, so whichever worker serves its next page sends
    the reads to the primary. Cookieless API calls get no cookie, which would subject their
    later calls to the CSRF check. Without replicas this does nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request on, noting its caller if it writes."""
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self._app(scope, receive, send)
            return
        # Read from the app, not app_state(): a request may come before the lifespan ran.
        state: AppState | None = getattr(scope["app"].state, "issuemap", None)
        writers = None if state is None or state.reads is None else state.writers
        if writers is None:
            await self._app(scope, receive, send)
            return

        async def noting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                connection = HTTPConnection(scope)
                writers.wrote(caller_tag(connection))
                if connection.cookies:
                    cookie = (
                        f"{WROTE_COOKIE}=1; Max-Age={max(1, round(writers.window_s))}; "
                        "Path=/; HttpOnly; SameSite=Lax"
                    )
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())],
                    }
            await send(message)

        await self._app(scope, receive, noting_send)


def reads_primary(request: Request, state: AppState) -> bool:
    """Whether this request's reads must go to the primary rather than a replica.

    They must when the request may write, and when its caller wrote lately
    (``ReadYourWrites``): a replica replays a write a moment after the primary commits it.
    """
    if state.reads is None or state.writers is None or request.method not in SAFE_METHODS:
        return True
    return WROTE_COOKIE in request.cookies or state.writers.wrote_lately(caller_tag(request))


def get_read_connection(request: Request, state: AppStateDep) -> Iterator[Connection]:
    """A read-only transaction: on a fit replica when there is one, else on the primary.

    For routes that never write. A replica that is down or lags too far is skipped, and
    ``reads_primary`` decides when the caller must read the primary anyway.
    """
    if state.reads is None:
        yield from get_connection(state)
        return
    with state.reads.connect(primary=reads_primary(request, state)) as conn:
        yield conn


ReadConnDep = Annotated[Connection, Depends(get_read_connection)]
"""A connection for a route that only reads (map pages, searches, exports, tiles, dashboards)."""


async def get_export_slots(state: AppStateDep) -> ExportSlots:
    """The export places of this worker."""
    return state.exports


ExportSlotsDep = Annotated[ExportSlots, Depends(get_export_slots)]


SessionCookie = Annotated[str | None, Cookie(alias=SESSION_COOKIE, include_in_schema=False)]

API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="APIKey",
    description="API key of a field team, planner or admin.",
    auto_error=False,
)
"""The key as a security scheme, so the API docs offer to send it (Swagger UI's Authorize)."""


async def get_principal(
    state: AppStateDep,
    x_api_key: Annotated[str | None, Depends(API_KEY_HEADER)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    session: SessionCookie = None,
) -> Principal:
    """The caller: from ``X-API-Key`` or ``Authorization: Bearer``, else the staff session.

    A key header wins over a session cookie; a session that has ended is the public, so
    a public page still answers. Anonymous requests, most of the intake traffic, never
    touch the database here.
    """
    key = x_api_key
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if key:
        return await run_in_threadpool(authenticate_key, state.engine, key)
    if session:
        return await run_in_threadpool(authenticate_session, state, session)
    return ANONYMOUS


def authenticate_key(engine: Engine, key: str) -> Principal:
    """The principal of ``key``, on a short transaction of its own (run it in a thread).

    A transaction, since a key's first use in a minute notes its ``last_used_at``.
    """
    with engine.begin() as conn:
        return authenticate(conn, key)


def authenticate_session(state: AppState, token: str) -> Principal:
    """The staff member of session ``token``, or the public once it has ended (in a thread)."""
    with state.engine.begin() as conn:
        found = session_principal(conn, token, now=datetime.now(UTC), settings=state.accounts)
    return found or ANONYMOUS


async def get_routing(state: AppStateDep) -> RoutingSettings:
    """The routing settings the app was started with."""
    return state.routing


async def get_intake(state: AppStateDep) -> IntakeSettings:
    """The intake settings the app was started with."""
    return state.intake


async def get_geocoder(state: AppStateDep) -> Geocoder:
    """The configured geocoder (offline gazetteer unless settings say otherwise)."""
    return state.geocoder


async def get_open311(state: AppStateDep) -> Open311Settings:
    """Open311 endpoint settings."""
    return state.open311


async def get_privacy(state: AppStateDep) -> PrivacySettings:
    """What the public may see of a report's location (``geo.access.policy``)."""
    return state.privacy


async def get_maps(state: AppStateDep) -> MapSettings:
    """The map settings the app was started with."""
    return state.maps


async def get_city(state: AppStateDep) -> CitySettings:
    """The city's settings (its time zone) the app was started with."""
    return state.city


async def get_boundaries(state: AppStateDep) -> BoundarySettings:
    """Limits of boundary imports."""
    return state.boundaries


async def get_line_channel(state: AppStateDep) -> LineChannel:
    """The LINE channel; while the city has not connected LINE, a 404 as for an unknown path."""
    if state.line is None:
        raise StarletteHTTPException(status_code=404)
    return state.line


LineChannelDep = Annotated[LineChannel, Depends(get_line_channel)]


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def client_address(request: HTTPConnection) -> str | None:
    """The client's network address: the peer's, or the one a trusted proxy forwarded.

    ``api.app`` rewrites the peer from ``X-Forwarded-For`` only for the proxies in
    ``ISSUEMAP_TRUSTED_PROXIES``; rate limits and idempotency scopes both read it here.
    """
    return request.client.host if request.client else None


def limit_reports(request: Request, state: AppState, principal: Principal) -> None:
    """Count one report filed by this caller; ``RateLimitedError`` (429) over its limit.

    Routes that file reports call it (on the thread pool) before they read the body, so a
    refused request costs no more than the one counting statement and a look-up of when
    its window ends. ``POST /api/reports`` counts a JSON report on the connection that
    stores it instead (``geo.reports.intake.file_report``).
    """
    state.report_limits.hit(principal, client_address(request))


def limit_reports_by_key(state: AppState, api_key: str | None, address: str | None) -> None:
    """``limit_reports`` for a caller whose key came in the body (Open311's ``api_key``).

    A key that is not valid is refused here as it would be on filing (401 or, in
    Open311's words, 403); no key counts the client address.
    """
    principal = authenticate_key(state.engine, api_key.strip()) if api_key else ANONYMOUS
    state.report_limits.hit(principal, address)


async def require_staff(principal: PrincipalDep) -> Principal:
    """The caller, who must hold a field-team, planner or admin key (else 401)."""
    if not principal.is_staff:
        raise AuthenticationError(N_("This needs a field-team, planner or admin key."))
    return principal


async def require_admin(principal: PrincipalDep) -> Principal:
    """The caller, who must be an administrator: 401 without a key, 403 with another."""
    if not principal.identified:
        raise AuthenticationError(N_("This needs an administrator's API key."))
    if not is_admin(principal):
        raise PermissionDeniedError(N_("Only administrators may do this."))
    return principal


StaffDep = Annotated[Principal, Depends(require_staff)]
AdminDep = Annotated[Principal, Depends(require_admin)]

KEY_COOKIE = "issuemap_key"
"""Where a staff map page opened with ``?key=`` keeps the key (HttpOnly, SameSite=Strict)."""

KeyCookie = Annotated[str | None, Cookie(alias=KEY_COOKIE, include_in_schema=False)]


async def get_browser_principal(
    state: AppStateDep, principal: PrincipalDep, cookie: KeyCookie = None
) -> Principal:
    """The caller of a page or stream a browser opens: the key header, else the key cookie.

    Only read-only GET routes (map pages, the live stream) take the cookie, so a request
    forged from another site can never change anything with it.
    """
    if cookie and not principal.is_staff:
        return await run_in_threadpool(authenticate_key, state.engine, cookie)
    return principal


BrowserPrincipalDep = Annotated[Principal, Depends(get_browser_principal)]
RoutingDep = Annotated[RoutingSettings, Depends(get_routing)]
IntakeDep = Annotated[IntakeSettings, Depends(get_intake)]
GeocoderDep = Annotated[Geocoder, Depends(get_geocoder)]
Open311Dep = Annotated[Open311Settings, Depends(get_open311)]
PrivacyDep = Annotated[PrivacySettings, Depends(get_privacy)]
MapSettingsDep = Annotated[MapSettings, Depends(get_maps)]
BoundariesDep = Annotated[BoundarySettings, Depends(get_boundaries)]
CityDep = Annotated[CitySettings, Depends(get_city)]
