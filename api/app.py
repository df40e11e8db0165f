"""Application factory. The lifespan owns the engine and builds the one typed ``AppState``."""

from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI
from pydantic import ValidationError
from servestatic import ServeStaticASGI  # type: ignore[import-untyped]
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import errors, metrics
from api.admin_ui import mount_admin
from api.deps import AppState, ExportSlots, ReadYourWrites, RecentWriters, set_app_state
from api.head import HeadAsGet
from api.ogc import OGC_PATH, close_ogc, create_ogc_app, open_ogc
from api.params import refuse_nul_characters, refuse_unknown_parameters
from api.routers import (
    admin,
    docs,
    export,
    line,
    live,
    login,
    maps,
    open311,
    reports,
    resident,
    service,
    teams,
    tiles,
    work,
)
from geo.access.ratelimit import ReportRateLimiter
from geo.chat.context import ChatContext
from geo.chat.line import LineChannel
from geo.chat.line_api import LINE_LIMITS
from geo.city.geocoding import Geocoder, make_geocoder
from geo.db.engine import ReadPool, ReplicaSet, make_engine
from geo.maps.assets import StaticAssets, build_static, is_hashed, use_static_assets
from geo.reports.live import LiveHub
from geo.settings import (
    AccountSettings,
    BoundarySettings,
    ChatSettings,
    CitySettings,
    DatabaseSettings,
    GeocoderSettings,
    IntakeSettings,
    LineSettings,
    MapSettings,
    MetricsSettings,
    NotificationSettings,
    Open311Settings,
    PrivacySettings,
    ProxySettings,
    RateLimitSettings,
    RoutingSettings,
    settings_problems,
)

STATIC = Path(str(resources.files("api") / "static"))
"""The static files: ``live.js`` and ``vendor/`` (which ``scripts/vendor_assets.sh`` fills
before a build), package data of ``api``, so an installed issuemap serves them without its
checkout."""

STATIC_DIST = Path(str(resources.files("api") / "static_dist"))
"""``/static``: every static file under its own and its content-hashed name, with gzip and
brotli variants (``geo.maps.assets.build_static``; ``scripts/vendor_assets.sh`` builds it,
and start-up brings it up to date with edited files)."""


@functools.cache
def _static_files() -> tuple[StaticAssets, ServeStaticASGI]:
    """``/static`` brought up to date and indexed, once per process.

    The files are the package's own and do not change while it runs, and indexing them
    (every hashed copy and variant) cost more than the rest of making an app: every app a
    process makes serves the one index.
    """
    assets = build_static(STATIC, STATIC_DIST)
    static = ServeStaticASGI(
        None, root=STATIC_DIST, prefix="/static", immutable_file_test=lambda _, url: is_hashed(url)
    )
    return assets, static


@dataclass(frozen=True)
class AppSettings:
    """Every settings group the service reads; each defaults to the environment."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    geocoder: GeocoderSettings = field(default_factory=GeocoderSettings)
    open311: Open311Settings = field(default_factory=Open311Settings)
    maps: MapSettings = field(default_factory=MapSettings)
    boundaries: BoundarySettings = field(default_factory=BoundarySettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    proxies: ProxySettings = field(default_factory=ProxySettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    city: CitySettings = field(default_factory=CitySettings)
    line: LineSettings = field(default_factory=LineSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


class CsrfUnlessApiWithoutCookies:
    """The CSRF check (``api.routers.login.CsrfMiddleware``), except for cookieless API calls.

    A forged cross-site request can only borrow the cookies a browser adds to it, so one
    that carries none has nothing to forge; asgi-csrf lets such a request through unchecked
    too, but first signs a fresh token in case the page asks for one (about 60 us of a
    filed report's 2 ms on a loaded 2-core box). No ``/api/`` route asks for one (a page
    that does is served outside ``/api/``), so there those requests go straight on. Every
    request with a cookie is checked as before.
    """

    def __init__(self, app: ASGIApp, *, secret: str, secure: str) -> None:
        self._app = app
        self._checked = login.CsrfMiddleware(app, secret=secret, secure=secure)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request on, through the CSRF check unless it needs none."""
        if (
            scope["type"] == "http"
            and scope["path"].startswith("/api/")
            and not any(name == b"cookie" for name, _ in scope["headers"])
        ):
            await self._app(scope, receive, send)
            return
        await self._checked(scope, receive, send)


def _line_channel(settings: AppSettings, geocoder: Geocoder) -> LineChannel | None:
    """The city's LINE channel, when its secret is set (``LineSettings.enabled``)."""
    if not settings.line.enabled:
        return None
    context = ChatContext(
        routing=settings.routing,
        intake=settings.intake,
        chat=settings.chat,
        geocoder=geocoder,
        public_url=settings.notifications.public_url,
        public_rounding_m=settings.privacy.public_rounding_m,
        limits=LINE_LIMITS,
        zone=settings.city.zone,
    )
    return LineChannel(settings.line, context)


def create_app(settings: AppSettings | None = None) -> FastAPI:
    """Build the issuemap application; settings default to the ``ISSUEMAP_*`` environment.

    A setting that is not valid stops the service here, before it serves anything, with a
    ``RuntimeError`` naming each variable and what is wrong with it, never its value.
    """
    if settings is None:
        try:
            settings = AppSettings()
        except ValidationError as error:
            # `from None`: pydantic's own message, in the chained traceback, would print the
            # value, and ISSUEMAP_SMTP_URL or ISSUEMAP_DATABASE_URL may hold a password.
            raise RuntimeError(f"invalid settings: {settings_problems(error)}") from None
    if settings.database.database_url is None:
        raise RuntimeError(
            "ISSUEMAP_DATABASE_URL is not set: start the service with `issuemap serve`, "
            "which provides a local database when none is configured."
        )
    url = settings.database.database_url
    # Connections that keep session state (LISTEN, tipg's) cannot go through a pooler in
    # transaction mode: they may be given a URL of their own.
    session_url = settings.database.database_session_url or url
    ogc = create_ogc_app()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = settings.database
        engine = make_engine(
            url,
            pool_size=db.pool_size,
            pool_timeout_s=db.pool_timeout_s,
            prepared_statements=db.database_prepared_statements,
        )
        observed.watch(engine)
        geocoder = make_geocoder(settings.geocoder)
        replicas = ReplicaSet.from_settings(engine, db)
        with_replicas = bool(replicas.urls)
        started = AppState(
            engine=engine,
            exports=ExportSlots(
                url,
                limit=settings.database.export_max_concurrent,
                max_seconds=settings.database.export_max_seconds,
                replicas=replicas if with_replicas else None,
                prepared_statements=db.database_prepared_statements,
            ),
            live=LiveHub(session_url),
            geocoder=geocoder,
            routing=settings.routing,
            intake=settings.intake,
            open311=settings.open311,
            maps=settings.maps,
            boundaries=settings.boundaries,
            privacy=settings.privacy,
            report_limits=ReportRateLimiter(engine, settings.rate_limits),
            notifications=settings.notifications,
            city=settings.city,
            line=_line_channel(settings, geocoder),
            accounts=settings.accounts,
            reads=ReadPool(
                engine,
                replicas,
                pool_size=db.pool_size,
                pool_timeout_s=db.pool_timeout_s,
                prepared_statements=db.database_prepared_statements,
            )
            if with_replicas
            else None,
            writers=RecentWriters(db.database_replica_after_write_s) if with_replicas else None,
        )
        set_app_state(app, started)
        replicas.start()
        started.live.start()
        await open_ogc(
            ogc,
            started,
            database_url=session_url,
            read_replicas=settings.database.database_session_url is None,
            public_rounding_m=settings.privacy.public_rounding_m,
            pool_size=settings.database.pool_size,
        )
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's scans, which otherwise show up as pauses in intake's tail latency.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await close_ogc(ogc)
            started.live.stop()
            if started.line is not None:
                started.line.close()
            started.exports.dispose()
            replicas.stop()
            if started.reads is not None:
                started.reads.dispose()
            started.engine.dispose()

    app = FastAPI(
        title="issuemap",
        summary="Citizen issue reports, routed by PostGIS to the field team that fixes them.",
        version="0.1.0",
        lifespan=lifespan,
        # note_route first: a request another of them refuses is still counted by its route.
        dependencies=[
            Depends(metrics.note_route),
            Depends(refuse_nul_characters),
            Depends(refuse_unknown_parameters),
        ],
        # FastAPI's own pages load their assets from a CDN; api.routers.docs serves ours.
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    app.add_exception_handler(maps.KeyInUrl, maps.key_redirect)
    app.add_exception_handler(login.SignInRequired, login.sign_in_redirect)
    for router in (
        service.router,
        login.router,
        maps.router,
        reports.router,
        resident.router,
        export.router,
        teams.router,
        admin.catalogue_router,
        admin.router,
        open311.router,
        live.router,
        line.router,
        work.router,
        tiles.router,
        docs.router,
    ):
        app.include_router(router)
    # Pages name the hashed copies, which never change: browsers keep them for good.
    assets, static = _static_files()
    use_static_assets(assets)
    app.mount("/static", static, name="static")
    # A mounted app of its own: tipg's routes, errors and catalog stay under /ogc.
    app.mount(OGC_PATH, ogc)
    mount_admin(app)
    # Innermost: it notes writers by the client address the proxy-headers middleware gives.
    app.add_middleware(ReadYourWrites)
    # Inside the proxy-headers middleware (added after it), so it sees the client's scheme.
    app.add_middleware(
        CsrfUnlessApiWithoutCookies,
        secret=login.csrf_secret(settings.accounts),
        secure=settings.accounts.session_cookie_secure,
    )
    # Inside the proxy-headers middleware, so each request is logged with its client.
    observed = metrics.install(app, settings.metrics)
    if settings.proxies.trusted_proxies:
        # The client address (rate limits, idempotency scopes) comes from X-Forwarded-For
        # only for these peers. `issuemap serve` turns uvicorn's own copy of this middleware
        # off, which would otherwise trust 127.0.0.1 whatever the settings say.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.proxies.trusted_proxies)
    # Outermost: every route and mounted app answers a HEAD as its GET, without the body.
    app.add_middleware(HeadAsGet)
    return app
