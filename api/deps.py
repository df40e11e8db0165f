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

import threading
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

from api.errors import ExportsBusyError
from geo.access.keys import authenticate
from geo.access.policy import ANONYMOUS, Principal, is_admin
from geo.access.ratelimit import ReportRateLimiter
from geo.access.sessions import SESSION_COOKIE, session_principal
from geo.chat.line import LineChannel
from geo.city.geocoding import Geocoder
from geo.db.engine import make_engine
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

    def __init__(self, url: str, *, limit: int, max_seconds: float) -> None:
        # One connection per place and no overflow: a place always finds its connection,
        # and the short timeout only guards against a leak turning into a hang.
        self.engine = make_engine(url, pool_size=limit, max_overflow=0, pool_timeout_s=5.0)
        self.max_seconds = max_seconds
        self._places = threading.BoundedSemaphore(limit)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A place and its connection for one export; ``ExportsBusyError`` when none is free."""
        if not self._places.acquire(blocking=False):
            raise ExportsBusyError
        try:
            with self.engine.connect() as conn:
                yield conn
        finally:
            self._places.release()

    def dispose(self) -> None:
        """Close the pool's connections (on shutdown)."""
        self.engine.dispose()


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


def client_address(request: Request) -> str | None:
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
