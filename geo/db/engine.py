"""Engines, sessions, schema migrations and the "database that is just there" helper."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from psycopg import RawCursor
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from geo.db.cluster import LocalCluster
from geo.settings import DatabaseSettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalise_url(url: str) -> str:
    """Return ``url`` with the psycopg 3 driver, whatever scheme the user wrote."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


PING_AFTER_IDLE_S = 1.0
"""A pooled connection idle this long is pinged before it is handed out (pgxpool's default)."""

_RETURNED_AT = "issuemap.returned_at"


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    pool_timeout_s: float = 30.0,
    ping_after_idle_s: float = PING_AFTER_IDLE_S,
) -> Engine:
    """Create the sync SQLAlchemy engine shared by the API, the CLI and notebooks.

    The pool may grow by ``max_overflow`` connections (as many as ``pool_size`` unless
    told); a checkout waits at most ``pool_timeout_s`` before ``sqlalchemy.exc.TimeoutError``.
    A connection is checked before it is handed out as ``check_liveness`` describes.

    Sessions run with ``jit = off``: PostgreSQL compiles a query to machine code when its
    cost estimate is high, and the aggregates behind the ward dashboard cross that line at
    national scale, where compiling took longer than the query (567 ms against 242 ms
    without); no query of this service runs long enough to win the compile time back.
    """
    engine = create_engine(
        normalise_url(url),
        connect_args={"options": "-c jit=off"},
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=pool_timeout_s,
    )
    check_liveness(engine, ping_after_idle_s)
    return engine


def check_liveness(engine: Engine, ping_after_idle_s: float) -> None:
    """Hand out only live connections, without a round trip per checkout on a busy pool.

    ``pool_pre_ping`` sends ``SELECT 1`` on every checkout: one extra round trip for each
    request, a seventh of a web worker's time at intake. A connection back in the pool less
    than ``ping_after_idle_s`` ago is pinged only when its socket has something to read: an
    idle connection is sent nothing, except the FATAL message and end of stream of a server
    that closed it (restart, ``pg_terminate_backend``, an idle timeout), so a zero-timeout
    poll finds those without writing a byte (as urllib3 checks a pooled socket before
    reusing it). One idle longer is pinged (as pgxpool pings one idle over a second), which
    also covers a peer gone silent. A failed ping raises SQLAlchemy's ``InvalidatePoolError``:
    the pool replaces every connection older than now (a server that dropped one dropped
    them all) and hands out a fresh one. A connection that dies while checked out fails its
    own statement; SQLAlchemy invalidates the pool for that too.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def returned(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def check(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None:
            return  # Just connected.
        idle = time.monotonic() - returned_at
        if idle < ping_after_idle_s and not _has_input(dbapi_connection):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # whatever the driver raised, the connection is unusable
            raise exc.InvalidatePoolError(f"liveness ping failed: {error}") from error


def _has_input(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket can be read (or the connection is known broken)."""
    if dbapi_connection.closed:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement in PostgreSQL's own ``$n`` form, and its bind names in ``$n`` order.

    For the statements every request runs (intake, the report rate limit), which
    ``execute_prepared`` sends as server-side prepared statements.
    """

    sql: str
    names: tuple[str, ...]

    @classmethod
    def compile(cls, statement: str) -> Prepared:
        """Compile ``statement``, written with ``:name`` binds as for ``text()``."""
        compiled = text(statement).compile(dialect=PGDialect_psycopg(paramstyle="numeric_dollar"))  # type: ignore[no-untyped-call]
        return cls(str(compiled), tuple(compiled.positiontup or ()))


_HOT_CURSOR = "issuemap.hot_cursor"


def execute_prepared(conn: Connection, statement: Prepared, params: Mapping[str, Any]) -> Any:
    """Run ``statement`` on ``conn``'s psycopg connection; return its first row or None.

    It runs in ``conn``'s transaction (or in autocommit, if ``conn`` is), through a
    ``RawCursor``: the statement is already in ``$n`` form, so psycopg neither re-parses
    its placeholders on every call (it caches that only for statements under 4 kB) nor goes
    through SQLAlchemy's execution machinery. The cursor lives as long as its database
    connection (in the pool entry's ``info``): setting one up per call cost a fifth of the
    client's time per report. Rows are named tuples.
    """
    if not conn.in_transaction():
        # Make SQLAlchemy own the transaction psycopg is about to open, so the caller's
        # commit() or rollback() applies to this statement.
        conn.begin()
    pooled = conn.connection
    cur = pooled.info.get(_HOT_CURSOR)
    if cur is None or cur.closed:
        driver = pooled.driver_connection
        assert driver is not None
        cur = pooled.info[_HOT_CURSOR] = RawCursor(driver, row_factory=namedtuple_row)
    cur.execute(statement.sql, [params[name] for name in statement.names], prepare=True)
    return cur.fetchone()


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic filter: leave PostGIS's own tables out of schema comparisons."""
    return not (type_ == "table" and name == "spatial_ref_sys")


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at our migrations and at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Apply every pending migration (creating PostGIS first if the role may)."""
    command.upgrade(alembic_config(url), "head")


def analyze_routing_tables(conn: Connection) -> None:
    """Refresh planner statistics after boundaries or routes change.

    Without them PostgreSQL may test every polygon instead of using the GiST index, which
    made bulk routing several times slower on a freshly loaded city.
    """
    for table in ("wards", "zones", "teams", "categories", "category_routes"):
        conn.execute(text(f"ANALYZE {table}"))


def postgis_version(conn: Connection) -> str:
    """The PostGIS library version the database runs (the health check asks for it)."""
    return str(conn.execute(text("SELECT postgis_lib_version()")).scalar_one())


def is_empty(engine: Engine) -> bool:
    """Whether the database holds no city at all yet (so the demo city may be loaded)."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT NOT (EXISTS (SELECT 1 FROM wards) OR EXISTS (SELECT 1 FROM zones) "
                    "OR EXISTS (SELECT 1 FROM teams) OR EXISTS (SELECT 1 FROM categories) "
                    "OR EXISTS (SELECT 1 FROM reports))"
                )
            ).scalar_one()
        )


@contextmanager
def database(settings: DatabaseSettings, *, migrate: bool = True) -> Iterator[str]:
    """Yield a migrated database URL: the configured one, or a local cluster we start.

    A local cluster started here is stopped again when the block ends; one that was already
    running (another ``issuemap`` process) is left running. ``migrate=False`` leaves the
    schema as it is (a backup is taken before an upgrade, a restore brings its own).
    """
    if settings.database_url is not None:
        url = normalise_url(str(settings.database_url))
        if migrate:
            upgrade(url)
        yield url
        return
    cluster = LocalCluster(settings.data_dir, durable=True)
    started = cluster.start()
    try:
        cluster.ensure_database(settings.local_database)
        url = cluster.url(settings.local_database)
        if migrate:
            upgrade(url)
        yield url
    finally:
        if started:
            cluster.stop()
