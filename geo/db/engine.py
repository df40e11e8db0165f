"""Engines, sessions, schema migrations and the "database that is just there" helper."""

from __future__ import annotations

import itertools
import select
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
    application_name: str | None = None,
    connect_timeout_s: int | None = None,
    prepared_statements: bool = True,
) -> Engine:
    """Create the sync SQLAlchemy engine shared by the API, the CLI and notebooks.

    The pool may grow by ``max_overflow`` connections (as many as ``pool_size`` unless
    told); a checkout waits at most ``pool_timeout_s`` before ``sqlalchemy.exc.TimeoutError``.
    A connection is checked before it is handed out as ``check_liveness`` describes.

    Sessions run with ``jit = off``: PostgreSQL compiles a query to machine code when its
    cost estimate is high, and the aggregates behind the ward dashboard cross that line at
    national scale, where compiling took longer than the query (567 ms against 242 ms
    without); no query of this service runs long enough to win the compile time back.

    ``application_name`` names the connections in ``pg_stat_activity``; a connection
    attempt gives up after ``connect_timeout_s`` (libpq waits for ever unless told).

    ``prepared_statements=False`` keeps every statement unprepared (psycopg's
    ``prepare_threshold=None``, which ``execute_prepared`` follows too), for a pgBouncer
    older than 1.21 in transaction mode: the next transaction may run on a server
    connection that does not know a statement prepared on another.
    """
    connect_args: dict[str, Any] = {"options": "-c jit=off"}
    if application_name is not None:
        connect_args["application_name"] = application_name
    if connect_timeout_s is not None:
        connect_args["connect_timeout"] = connect_timeout_s
    connect_args |= _preparing(prepared_statements)
    engine = create_engine(
        normalise_url(url),
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=pool_timeout_s,
    )
    check_liveness(engine, ping_after_idle_s)
    return engine


def _preparing(prepared_statements: bool) -> dict[str, Any]:
    """The ``connect_args`` that turn psycopg's prepared statements off, when asked to."""
    return {} if prepared_statements else {"prepare_threshold": None}


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


REPLICA_APPLICATION_NAME = "issuemap-replica"
"""``application_name`` of the connections that serve reads on a replica."""

REPLICA_CHECK_APPLICATION_NAME = "issuemap-replica-check"
"""``application_name`` of the connection that checks a replica's health and lag."""

REPLICA_CONNECT_TIMEOUT_S = 2
"""A replica that does not accept a connection this fast counts as down (libpq's minimum)."""

_PRIMARY_POSITION = text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
_REPLAYED_POSITION = text(
    "SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS replayed"
)


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """What the last check found of one read replica (``/healthz`` can show it)."""

    name: str
    """The replica's URL without its password."""
    usable: bool
    """Whether reads go to it: it answers, is a standby, and lags no more than allowed."""
    lag_s: float | None
    """Seconds its replay is behind the primary (0 when caught up); None when unknown."""
    checked_at: datetime | None
    """When it was last checked (UTC); None before the first check."""
    problem: str | None = None
    """Why it is not used, in a few words: down, lagging, not a standby."""


class ReplicaSet:
    """PostgreSQL streaming replicas of the primary, and which of them may serve reads now.

    A thread checks each replica every ``check_s`` seconds, so no request ever waits on a
    check: it compares the primary's current WAL position with the position the replica
    has replayed. A replica that has replayed everything lags 0 s; one behind lags by how
    long the primary has been past the position it has replayed, as the checks saw it (to
    within one check). Not the age of the last transaction it replayed
    (``pg_last_xact_replay_timestamp``): that is unknown until a replica restarted has
    replayed one, and on a primary written to rarely it is old however fresh the replica.
    A replica that is down, not a standby (promoted), or lags more than
    ``max_lag_s`` is skipped until a check finds it fit again; a request that cannot
    connect to one marks it down at once (``mark_down``).

    ``prepared_statements=False`` keeps the checks unprepared, as ``make_engine`` does.
    """

    def __init__(
        self,
        primary: Engine,
        urls: Sequence[str],
        *,
        max_lag_s: float,
        check_s: float,
        prepared_statements: bool = True,
    ) -> None:
        self.primary = primary
        self.urls = tuple(normalise_url(url) for url in urls)
        self.max_lag_s = max_lag_s
        self.check_s = check_s
        self._checkers = [
            create_engine(
                url,
                pool_size=1,
                max_overflow=0,
                pool_pre_ping=True,
                connect_args={
                    "application_name": REPLICA_CHECK_APPLICATION_NAME,
                    "connect_timeout": REPLICA_CONNECT_TIMEOUT_S,
                }
                | _preparing(prepared_statements),
            )
            for url in self.urls
        ]
        self._status = [
            ReplicaStatus(name=_public_name(url), usable=False, lag_s=None, checked_at=None)
            for url in self.urls
        ]
        self._usable: tuple[int, ...] = ()
        self._positions: deque[tuple[float, int]] = deque()
        """(when, the primary's WAL position then) at each recent check, oldest first."""
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, primary: Engine, settings: DatabaseSettings) -> ReplicaSet:
        """The replicas ``settings`` name for ``primary``, with its lag and check limits."""
        return cls(
            primary,
            settings.database_replica_urls,
            max_lag_s=settings.database_replica_max_lag_s,
            check_s=settings.database_replica_check_s,
            prepared_statements=settings.database_prepared_statements,
        )

    def start(self) -> None:
        """Check every replica once, then keep checking them in a thread until ``stop``."""
        if not self.urls or self._thread is not None:
            return
        self.check()
        self._thread = threading.Thread(target=self._watch, name="issuemap-replicas", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.check_s):
            self.check()

    def stop(self) -> None:
        """Stop checking and close the checking connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for checker in self._checkers:
            checker.dispose()

    def check(self) -> None:
        """Measure each replica's health and lag now, and choose the ones reads may use."""
        try:
            with self.primary.connect() as conn:
                position = int(conn.execute(_PRIMARY_POSITION).scalar_one())
        except exc.DBAPIError:
            # Without the primary's position no lag can be told; keep the last verdicts.
            return
        now = time.monotonic()
        self._positions.append((now, position))
        # Older checks are not needed to tell a lag up to the limit (and a bit beyond it).
        while now - self._positions[0][0] > self.max_lag_s + 2 * self.check_s:
            self._positions.popleft()
        found = [self._measure(i, now) for i in range(len(self.urls))]
        self._status = found
        self._usable = tuple(i for i, status in enumerate(found) if status.usable)

    def _measure(self, index: int, checked: float) -> ReplicaStatus:
        name = self._status[index].name
        now = datetime.now(UTC)
        try:
            with self._checkers[index].connect() as conn:
                row = conn.execute(_REPLAYED_POSITION).one()
        except exc.DBAPIError:
            return ReplicaStatus(name, usable=False, lag_s=None, checked_at=now, problem="down")
        if not row.standby or row.replayed is None:
            return ReplicaStatus(
                name, usable=False, lag_s=None, checked_at=now, problem="not a standby"
            )
        replayed = int(row.replayed)
        # Since the first check that found the primary past what the replica has replayed.
        behind_since = next((t for t, pos in self._positions if pos > replayed), checked)
        lag = checked - behind_since
        if lag > self.max_lag_s:
            return ReplicaStatus(name, usable=False, lag_s=lag, checked_at=now, problem="lagging")
        return ReplicaStatus(name, usable=True, lag_s=lag, checked_at=now)

    def choose(self) -> int | None:
        """The index of the replica the next read goes to (in turn), or None: the primary."""
        usable = self._usable
        if not usable:
            return None
        return usable[next(self._turn) % len(usable)]

    def mark_down(self, index: int) -> None:
        """Take replica ``index`` out of use until a check finds it up again."""
        self._usable = tuple(i for i in self._usable if i != index)
        before = self._status[index]
        self._status[index] = replace(before, usable=False, problem="down")

    def status(self) -> list[ReplicaStatus]:
        """What the last check found of each replica, in the configured order."""
        return list(self._status)


def _public_name(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class ReadPool:
    """Connection pools on each replica of a ``ReplicaSet``, falling back to ``primary``.

    Extra keyword arguments (the pool's size, ``prepared_statements``) go to ``make_engine``
    for each replica's pool. The primary belongs to the caller; ``dispose`` closes only the
    replicas' pools.
    """

    def __init__(self, primary: Engine, replicas: ReplicaSet, **pool: Any) -> None:
        self.primary = primary
        self.replicas = replicas
        self.engines = [
            make_engine(
                url,
                application_name=REPLICA_APPLICATION_NAME,
                connect_timeout_s=REPLICA_CONNECT_TIMEOUT_S,
                **pool,
            )
            for url in replicas.urls
        ]

    @contextmanager
    def connect(self, *, primary: bool = False) -> Iterator[Connection]:
        """A connection to a fit replica, or to the primary if asked or when none is fit.

        A replica that refuses the connection is marked down and the primary serves. The
        connection's transaction is rolled back when the block ends: it only reads.
        """
        index = None if primary else self.replicas.choose()
        if index is None:
            conn = self.primary.connect()
        else:
            try:
                conn = self.engines[index].connect()
            except exc.DBAPIError:
                self.replicas.mark_down(index)
                conn = self.primary.connect()
        with conn:
            yield conn

    def dispose(self) -> None:
        """Close the replicas' pools (on shutdown)."""
        for engine in self.engines:
            engine.dispose()


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement in PostgreSQL's own ``$n`` form, and its bind names in ``$n`` order.

    For the statements every request runs (intake, the report rate limit), which
    ``execute_prepared`` sends as server-side prepared statements (unless the connection
    has them turned off).
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

    The statement is prepared on the server at its first run, unless the connection has
    prepared statements off (``make_engine(prepared_statements=False)``); then it is sent
    unprepared every time.
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
    # An explicit prepare=True would override the connection's prepare_threshold=None.
    prepare = cur.connection.prepare_threshold is not None
    cur.execute(statement.sql, [params[name] for name in statement.names], prepare=prepare)
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


@contextmanager
def read_pool(settings: DatabaseSettings, primary: Engine, **pool: Any) -> Iterator[ReadPool]:
    """Reads for analysis outside the service (notebooks, scripts), as the service reads.

    Each ``connect()`` of the pool yielded goes to a fit replica of those ``settings``
    names (up, a standby, lagging no more than ``database_replica_max_lag_s``), in turn, and
    to ``primary`` when none is fit or none is set; a thread keeps checking them until the
    block ends. For work that only reads: anything that writes, even temporary tables,
    needs ``primary`` itself. Extra keyword arguments size each replica's pool.
    """
    replicas = ReplicaSet.from_settings(primary, settings)
    replicas.start()
    reads = ReadPool(
        primary, replicas, prepared_statements=settings.database_prepared_statements, **pool
    )
    try:
        yield reads
    finally:
        reads.dispose()
        replicas.stop()
