"""OGC API Features and vector tiles at ``/ogc``: tipg over ``geo.reports.ogc_views``.

tipg answers the landing page, conformance, collections, items (``bbox``, ``datetime``,
``limit``, ``next`` links, ``numberMatched``, property filters, CQL2) and tiles. This
module only chooses what a caller reads: the public catalog (schema ``ogc_public``) for
everyone without a staff key or session, the staff catalog (``ogc_staff``) for staff, with
the collection ids ``reports``, ``wards`` and ``zones`` in both. The caller is found by
the same dependency as every other route (``api.deps.PrincipalDep``).

The app is mounted, so its lifespan would never run: the main app's lifespan calls
``open_ogc`` and ``close_ogc``. tipg reads through asyncpg pools of its own, opened by
the first request to ``/ogc``, whose connections carry the public grid
(``ROUNDING_SETTING``); before a staff request reads the staff views, its connection is
told the field team to limit them to. With read replicas (``ISSUEMAP_DATABASE_REPLICA_URLS``)
there is a pool on each, and a request reads a fit replica unless its caller wrote lately
(``api.deps.reads_primary``), as every other read-only route does.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

import asyncpg  # type: ignore[import-untyped]
import jinja2
from cql2 import Expr
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from morecantile import Tile
from sqlalchemy.engine import make_url
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send
from tipg.collections import Catalog, Collection, pg_get_collection_index
from tipg.database import connection_factory
from tipg.dependencies import (
    ItemsOutputType,
    OutputType,
    QueryablesOutputType,
    TileParams,
    bbox_query,
    datetime_query,
    filter_query,
)
from tipg.errors import (
    DEFAULT_STATUS_CODES,
    InvalidLimit,
    InvalidPropertyName,
    NotFound,
    TiPgError,
    add_exception_handlers,
)
from tipg.factory import Endpoints
from tipg.resources.enums import MediaType
from tipg.settings import DatabaseSettings

from api import errors
from api.deps import (
    AppState,
    AppStateDep,
    PrincipalDep,
    app_state,
    reads_primary,
    set_app_state,
)
from api.params import accepted_query_names, refuse_names_outside, refuse_nul_characters
from api.routers import docs
from geo.city.coordinates import parse_bbox
from geo.db.engine import REPLICA_APPLICATION_NAME, REPLICA_CONNECT_TIMEOUT_S, ReplicaSet
from geo.errors import InvalidInputError, IssuemapError, NotFoundError
from geo.i18n import N_, translate
from geo.reports.ogc_views import (
    COLLECTIONS,
    PUBLIC_SCHEMA,
    REPORTS_DATETIME_COLUMN,
    STAFF_SCHEMA,
    VIEWER_TEAM_SETTING,
    catalog_schema,
    connection_settings,
    viewer_team,
)

OGC_PATH = "/ogc"
"""Where the main app mounts this one."""

_viewer_team: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "issuemap_ogc_viewer_team", default=None
)
"""The request's ``VIEWER_TEAM_SETTING`` (None: a public request, which leaves it alone)."""

BAD_FILTER_VALUE = N_(
    "A filter value does not fit the property it filters (a number, a date or a time "
    "that cannot be read): check the query parameters."
)


_on_replica: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "issuemap_ogc_on_replica", default=False
)
"""Whether the request may read a replica (False: the primary, as for anything unchecked)."""

# What a replica that is down or starting answers to a connection attempt.
_UNREACHABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class _ViewerPool:
    """tipg's pool: the primary's, or a fit replica's, set for the request's staff member.

    tipg only ever reads through it. A replica that cannot be reached is marked down (as
    the SQLAlchemy read pools do) and the primary serves the request.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        replica_pools: list[asyncpg.Pool] | None = None,
        replicas: ReplicaSet | None = None,
    ) -> None:
        self.pool = pool
        self.replica_pools = replica_pools or []
        self.replicas = replicas

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        index = (
            self.replicas.choose()
            if self.replicas is not None and self.replica_pools and _on_replica.get()
            else None
        )
        pool = self.pool
        conn = None
        if index is not None:
            pool = self.replica_pools[index]
            try:
                conn = await pool.acquire()
            except _UNREACHABLE:
                assert self.replicas is not None
                self.replicas.mark_down(index)
                pool = self.pool
        if conn is None:
            conn = await pool.acquire()
        try:
            yield conn
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, set for the staff member of this request (if any)."""
        async with self._connection() as conn:
            team = _viewer_team.get()
            if team is not None:
                await conn.execute("SELECT set_config($1, $2, false)", VIEWER_TEAM_SETTING, team)
            yield conn

    async def close(self) -> None:
        """Close every connection (on shutdown)."""
        for pool in [self.pool, *self.replica_pools]:
            await pool.close()


async def ogc_collection(
    request: Request,
    collectionId: Annotated[str, Path(description="Collection: reports, wards or zones.")],
    principal: PrincipalDep,
    state: AppStateDep,
) -> Collection:
    """The collection ``collectionId`` as the caller may read it (the public's or staff's)."""
    schema = catalog_schema(principal)
    _viewer_team.set(viewer_team(principal) if schema == STAFF_SCHEMA else None)
    _on_replica.set(not reads_primary(request, state))
    catalogs: dict[str, dict[str, Collection]] = request.app.state.ogc_catalogs
    found = catalogs[schema].get(collectionId)
    if found is None:
        raise NotFoundError(
            N_("There is no collection {collection!r}: use one of {choices}."),
            collection=collectionId,
            choices=", ".join(COLLECTIONS),
        )
    route = request.scope.get("route")
    if request.method == "GET" and isinstance(route, APIRoute):
        # tipg reads any parameter named as a property as a filter, and ignores the rest:
        # a misspelt filter would answer unfiltered, as if it had matched everything.
        properties = frozenset(column.name for column in found.properties)
        refuse_names_outside(request, accepted_query_names(route) | properties)
    return found


async def ogc_bbox(bbox: str | None = None) -> list[float] | None:
    """``bbox`` as the native API reads it (four finite numbers within WGS84), for tipg."""
    parsed = parse_bbox(bbox)
    return None if parsed is None else list(parsed)


MAX_ZOOM = 24
"""The deepest tile level served (WebMercatorQuad's last; tipg's own limit is none)."""

_OPEN_END = {"", ".."}


def _iso_instant(value: str) -> None:
    """Refuse ``value`` unless it is an ISO 8601 date or a date and time."""
    try:
        date.fromisoformat(value)
    except ValueError:
        try:
            datetime.fromisoformat(value)
        except ValueError as error:
            raise InvalidInputError(
                "datetime",
                N_("must be an ISO 8601 date (2024-05-01) or time (2024-05-01T08:00:00+07:00)"),
            ) from error


async def ogc_datetime(
    value: Annotated[str | None, Query(alias="datetime", description="Temporal filter.")] = None,
) -> list[str] | None:
    """``datetime``: an instant or an interval ``start/end`` (``..`` open), checked for tipg."""
    if value is None:
        return None
    parts = value.split("/")
    if len(parts) > 2 or all(part in _OPEN_END for part in parts):
        raise InvalidInputError(
            "datetime", N_("give a time, or an interval of two times separated by /")
        )
    for part in parts:
        if part not in _OPEN_END:
            _iso_instant(part)
    return parts


async def ogc_filter(
    query: Annotated[str | None, Query(alias="filter", description="CQL2 filter.")] = None,
    filter_lang: Annotated[
        str | None, Query(alias="filter-lang", description="cql2-text or cql2-json.")
    ] = None,
) -> Expr | None:
    """``filter`` as tipg reads it; one it cannot read is bad input, not a server error."""
    if filter_lang not in {None, "cql2-text", "cql2-json"}:
        raise InvalidInputError(
            "filter-lang", N_("must be one of {expected}"), expected="cql2-text, cql2-json"
        )
    try:
        return filter_query(query, None)
    except Exception as error:  # cql2 raises bare Exception and ValueError alike
        raise InvalidInputError("filter", N_("is not a CQL2 expression")) from error


async def ogc_tile(
    z: Annotated[int, Path(ge=0, le=MAX_ZOOM, description="Zoom level.")],
    x: Annotated[int, Path(ge=0, description="Column of the tile.")],
    y: Annotated[int, Path(ge=0, description="Row of the tile.")],
) -> Tile:
    """A tile's address, with a zoom level the tile matrix sets define."""
    return Tile(x, y, z)


NO_HTML = N_("/ogc answers in JSON (or GeoJSON, CSV and GeoJSON lines), not HTML")


def _without_html(
    choose: Callable[..., MediaType | None],
) -> Callable[..., Coroutine[Any, Any, MediaType | None]]:
    """The answer format tipg chooses (``f``, else ``Accept``), but never its HTML pages.

    Those pages load their scripts and styles from third-party sites, without the
    Content-Security-Policy every page of the service carries. A browser asking for HTML
    gets the JSON a client does; ``f=html`` is refused.
    """

    @functools.wraps(choose)
    async def chosen(**params: Any) -> MediaType | None:
        media = choose(**params)
        if media is not MediaType.html:
            return media
        if params.get("f"):
            raise InvalidInputError("f", NO_HTML)
        return None

    return chosen


UNKNOWN_PROPERTY = N_("the collection has no property {name!r}")
NOT_SELECTED = N_("{name} is not among the selected `properties`")
NO_SUCH_FEATURE = N_("There is no feature {feature!r} in this collection.")
LIMIT_TOO_HIGH = N_("must be at most {maximum:,}")


def _property(field: str | None, problem: str) -> Callable[[dict[str, str]], IssuemapError]:
    """A refused property as bad input in ``field`` (None: the parameter named after it)."""
    return lambda found: InvalidInputError(field or found["name"], problem, name=found["name"])


# tipg's refusals, recognised by the text it writes, and how each reads as ours.
_TIPG_REFUSALS: tuple[
    tuple[type[TiPgError], re.Pattern[str], Callable[[dict[str, str]], IssuemapError]], ...
] = (
    (
        InvalidPropertyName,
        re.compile(r"^Invalid property name: (?P<name>.*)$", re.S),
        _property(None, UNKNOWN_PROPERTY),
    ),
    (
        InvalidPropertyName,
        re.compile(r"^Property (?P<name>.*) does not exist\.$", re.S),
        _property("sortby", UNKNOWN_PROPERTY),
    ),
    (
        InvalidPropertyName,
        re.compile(r"^Cannot sort by (?P<name>.*): not in the selected", re.S),
        _property("sortby", NOT_SELECTED),
    ),
    (
        NotFound,
        re.compile(
            r"^(?:Item (?P<a>.*) in Collection .* does not exist|Invalid id (?P<b>.*) "
            r"for \S+ column)\.$",
            re.S,
        ),
        lambda found: NotFoundError(
            NO_SUCH_FEATURE, feature=(found["a"] or found["b"]).strip("'\"")
        ),
    ),
    (
        InvalidLimit,
        re.compile(r"setting of (?P<maximum>\d+)$", re.S),
        lambda found: InvalidInputError("limit", LIMIT_TOO_HIGH, maximum=int(found["maximum"])),
    ),
)


def _as_ours(error: TiPgError) -> IssuemapError | None:
    """A refusal of tipg's as the service's own error, which speaks the caller's language."""
    for kind, pattern, ours in _TIPG_REFUSALS:
        found = pattern.search(str(error)) if isinstance(error, kind) else None
        if found is not None:
            return ours(found.groupdict())
    return None


def _tipg_refusal(fallback: Callable[[Request, Exception], Any]) -> Callable[..., Any]:
    """The handler ``fallback`` of tipg's, answering in the caller's language where it can."""

    async def answer(request: Request, error: Exception) -> Any:
        ours = _as_ours(error) if isinstance(error, TiPgError) else None
        if ours is None:
            return await fallback(request, error)
        return errors.error_answer(request, ours)

    return answer


async def _bad_filter_value(request: Request, error: Exception) -> JSONResponse:
    """A filter the database could not read (``asyncpg``'s data errors) is bad input."""
    return JSONResponse(
        status_code=422,
        content={
            "detail": translate(errors.request_language(request), BAD_FILTER_VALUE),
            "error": "InvalidInputError",
        },
    )


async def ogc_docs(request: Request) -> HTMLResponse:
    """Swagger UI over ``/ogc``'s OpenAPI document, with the service's own copy of its assets."""
    ogc_root = str(request.scope.get("root_path", "")).rstrip("/")
    root = ogc_root.removesuffix(OGC_PATH)
    page = get_swagger_ui_html(
        openapi_url=f"{ogc_root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=docs.asset(root, f"{docs.SWAGGER}/swagger-ui-bundle.js"),
        swagger_css_url=docs.asset(root, f"{docs.SWAGGER}/swagger-ui.css"),
        swagger_favicon_url=docs.asset(root, f"{docs.SWAGGER}/favicon-32x32.png"),
    )
    # The docs pages' one CSP and nonce, not a copy of them.
    return docs._with_nonce(page)


class _RoutesOnFirstRequest:
    """Add the ``/ogc`` routes when the app is first called, not when it is made.

    Building tipg's routes is most of the cost of making the whole service app (FastAPI
    reads every endpoint's dependencies): a worker that starts, or an app that never serves
    ``/ogc``, need not pay it. The build has no awaits, so one request makes it whole
    before any other request reaches the routes.
    """

    def __init__(self, app: ASGIApp, *, build: Callable[[], None]) -> None:
        self.app = app
        self._build: Callable[[], None] | None = build

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._build is not None:
            # Forgotten only once it has worked: a build that failed fails every request
            # with its error rather than leaving an app with no routes answering 404.
            self._build()
            self._build = None
        await self.app(scope, receive, send)


def _add_routes(app: FastAPI) -> None:
    """Add tipg's endpoints, and the API documentation page its landing page links."""
    # tipg's own environment does not escape: a report's description would be page markup.
    templates = Jinja2Templates(
        env=jinja2.Environment(loader=jinja2.PackageLoader("tipg", "templates"), autoescape=True)
    )
    endpoints = Endpoints(
        title="issuemap: reports, wards and zones",
        templates=templates,
        # tipg types it as a plain function; FastAPI awaits a coroutine all the same.
        collection_dependency=ogc_collection,  # type: ignore[arg-type]
        with_tiles_viewer=False,
        # A mounted app's base URL is its parent's: tipg adds the prefix to its links.
        router_prefix=OGC_PATH,
    )
    app.include_router(endpoints.router)
    # tipg's landing page links its API documentation by this route name.
    app.add_api_route("/api.html", ogc_docs, name="swagger_ui_html", include_in_schema=False)


def create_ogc_app() -> FastAPI:
    """The ``/ogc`` application; mount it, and run ``open_ogc`` in the main lifespan.

    Its routes are added by its first request (``_RoutesOnFirstRequest``).
    """
    app = FastAPI(
        title="issuemap OGC API",
        openapi_url="/api",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(refuse_nul_characters), Depends(ogc_ready)],
    )
    app.add_middleware(_RoutesOnFirstRequest, build=functools.partial(_add_routes, app))
    app.dependency_overrides[bbox_query] = ogc_bbox
    app.dependency_overrides[datetime_query] = ogc_datetime
    app.dependency_overrides[filter_query] = ogc_filter
    app.dependency_overrides[TileParams] = ogc_tile
    for choose in (OutputType, QueryablesOutputType, ItemsOutputType):
        app.dependency_overrides[choose] = _without_html(choose)
    add_exception_handlers(app, DEFAULT_STATUS_CODES)
    for refusal in (InvalidPropertyName, NotFound, InvalidLimit):
        app.add_exception_handler(refusal, _tipg_refusal(app.exception_handlers[refusal]))
    errors.install(app)
    app.add_exception_handler(asyncpg.exceptions.DataError, _bad_filter_value)
    return app


def _asyncpg_dsn(database_url: str) -> str:
    """``database_url`` (any SQLAlchemy PostgreSQL URL) as asyncpg reads it."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _named(collections: list[Collection]) -> dict[str, Collection]:
    """A schema's collections by their ``/ogc`` id (the view's name), reports by report time."""
    named: dict[str, Collection] = {}
    for collection in collections:
        changes: dict[str, Any] = {"id": collection.table}
        if collection.table == "reports":
            changes["datetime_column"] = collection.get_column(REPORTS_DATETIME_COLUMN)
        named[collection.table] = collection.model_copy(update=changes)
    return named


@dataclass(frozen=True, slots=True)
class _Source:
    """Where ``/ogc`` reads, kept until its first request opens the pool."""

    dsn: str
    replica_dsns: tuple[str, ...]
    public_rounding_m: float
    pool_size: int
    lock: asyncio.Lock


async def open_ogc(
    app: FastAPI,
    state: AppState,
    *,
    database_url: str,
    public_rounding_m: float,
    pool_size: int,
    read_replicas: bool = True,
) -> None:
    """Make ``/ogc`` ready to serve (in the main app's lifespan); its first request connects.

    It reads ``database_url``, and the app's replicas too unless ``read_replicas`` is false
    (their URLs may lead through a pooler in transaction mode, which tipg cannot use).

    Connecting and reading the catalogs (each collection's extent scans its view) waits
    for a caller of ``/ogc``, so neither a worker's start nor an app that never serves
    ``/ogc`` (most tests) pays for it.
    """
    set_app_state(app, state)
    app.state.ogc_source = _Source(
        dsn=_asyncpg_dsn(database_url),
        replica_dsns=tuple(
            _asyncpg_dsn(url)
            for url in (state.reads.replicas.urls if state.reads and read_replicas else ())
        ),
        public_rounding_m=public_rounding_m,
        pool_size=pool_size,
        lock=asyncio.Lock(),
    )


def _on_standby(
    init: Callable[[asyncpg.Connection], Coroutine[Any, Any, None]],
) -> Callable[[asyncpg.Connection], Coroutine[Any, Any, None]]:
    """Make tipg's connection set-up ``init`` fit a replica's connections.

    Its last step creates its catalog functions as temporary objects, which a standby
    refuses (they are writes). Only reading the catalogs uses them, and that is done on
    the primary; the steps before it (the JSON codecs, the search path) are kept.
    """

    async def prepared(conn: asyncpg.Connection) -> None:
        with suppress(asyncpg.exceptions.ReadOnlySQLTransactionError):
            await init(conn)

    return prepared


async def _connect(app: FastAPI, source: _Source) -> None:
    """Open the pool and read both catalogs."""
    pool = await asyncpg.create_pool(
        source.dsn,
        min_size=1,
        max_size=source.pool_size,
        init=connection_factory([PUBLIC_SCHEMA, STAFF_SCHEMA], "pg_temp"),
        server_settings=connection_settings(source.public_rounding_m),
    )
    catalogs: dict[str, dict[str, Collection]] = {}
    async with pool.acquire() as conn:
        for schema in (PUBLIC_SCHEMA, STAFF_SCHEMA):
            found = await pg_get_collection_index(
                conn, settings=DatabaseSettings(schemas=[schema], datetime_extent=False)
            )
            catalogs[schema] = _named(found)
    app.state.ogc_catalogs = catalogs
    # tipg lists the collections from here; their list is the same for everyone.
    app.state.collection_catalog = Catalog(
        collections=catalogs[PUBLIC_SCHEMA], last_updated=datetime.now(UTC)
    )
    # Replicas connect when a request first reads one: one that is down now costs nothing.
    replica_pools = [
        await asyncpg.create_pool(
            dsn,
            min_size=0,
            max_size=source.pool_size,
            timeout=REPLICA_CONNECT_TIMEOUT_S,
            init=_on_standby(connection_factory([PUBLIC_SCHEMA, STAFF_SCHEMA], "pg_temp")),
            server_settings=connection_settings(source.public_rounding_m)
            | {"application_name": REPLICA_APPLICATION_NAME},
        )
        for dsn in source.replica_dsns
    ]
    state = app_state(app)
    app.state.pool = _ViewerPool(
        pool, replica_pools, state.reads.replicas if state.reads is not None else None
    )


async def ogc_ready(request: Request) -> None:
    """Connect ``/ogc`` on its first request (one request connects; the others wait)."""
    app = request.app
    if getattr(app.state, "pool", None) is not None:
        return
    source: _Source = app.state.ogc_source
    async with source.lock:
        if getattr(app.state, "pool", None) is None:
            await _connect(app, source)


async def close_ogc(app: FastAPI) -> None:
    """Close ``/ogc``'s pool, if a request opened it (in the main app's lifespan)."""
    pool: _ViewerPool | None = getattr(app.state, "pool", None)
    if pool is not None:
        app.state.pool = None
        await pool.close()
