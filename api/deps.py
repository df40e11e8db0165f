"""Request dependencies: a connection per request, the caller's role, settings on the app."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Cookie, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection

from api.errors import ExportsBusyError
from geo.access.keys import ANONYMOUS, Principal, authenticate
from geo.city.geocoding import Geocoder
from geo.db.engine import make_engine
from geo.settings import IntakeSettings, Open311Settings, PrivacySettings, RoutingSettings


def get_connection(request: Request) -> Iterator[Connection]:
    """A connection inside a transaction that commits when the request succeeds."""
    with request.app.state.engine.begin() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(get_connection)]


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


def get_export_slots(request: Request) -> ExportSlots:
    """The export places of this worker."""
    slots: ExportSlots = request.app.state.exports
    return slots


async def get_principal(
    request: Request,
    x_api_key: Annotated[
        str | None, Header(description="API key of a field team, planner or admin.")
    ] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The caller: from ``X-API-Key`` or ``Authorization: Bearer``; none is the public.

    Anonymous requests, most of the intake traffic, never touch the database here.
    """
    key = x_api_key
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        return ANONYMOUS
    return await run_in_threadpool(_authenticate, request, key)


def _authenticate(request: Request, key: str) -> Principal:
    with request.app.state.engine.connect() as conn:
        return authenticate(conn, key)


def get_routing(request: Request) -> RoutingSettings:
    """The routing settings the app was started with."""
    settings: RoutingSettings = request.app.state.routing
    return settings


def get_intake(request: Request) -> IntakeSettings:
    """The intake settings the app was started with."""
    settings: IntakeSettings = request.app.state.intake
    return settings


def get_geocoder(request: Request) -> Geocoder:
    """The configured geocoder (offline gazetteer unless settings say otherwise)."""
    geocoder: Geocoder = request.app.state.geocoder
    return geocoder


def get_open311(request: Request) -> Open311Settings:
    """Open311 endpoint settings."""
    settings: Open311Settings = request.app.state.open311
    return settings


def get_privacy(request: Request) -> PrivacySettings:
    """What the public may see of a report's location (``geo.access.policy``)."""
    settings: PrivacySettings = request.app.state.privacy
    return settings


PrincipalDep = Annotated[Principal, Depends(get_principal)]

KEY_COOKIE = "issuemap_key"
"""Where a staff map page opened with ``?key=`` keeps the key (HttpOnly, SameSite=Strict)."""

KeyCookie = Annotated[str | None, Cookie(alias=KEY_COOKIE, include_in_schema=False)]


async def get_browser_principal(
    request: Request, principal: PrincipalDep, cookie: KeyCookie = None
) -> Principal:
    """The caller of a page or stream a browser opens: the key header, else the key cookie.

    Only read-only GET routes (map pages, the live stream) take the cookie, so a request
    forged from another site can never change anything with it.
    """
    if cookie and not principal.is_staff:
        return await run_in_threadpool(_authenticate, request, cookie)
    return principal


BrowserPrincipalDep = Annotated[Principal, Depends(get_browser_principal)]
RoutingDep = Annotated[RoutingSettings, Depends(get_routing)]
IntakeDep = Annotated[IntakeSettings, Depends(get_intake)]
GeocoderDep = Annotated[Geocoder, Depends(get_geocoder)]
Open311Dep = Annotated[Open311Settings, Depends(get_open311)]
PrivacyDep = Annotated[PrivacySettings, Depends(get_privacy)]
