"""Report rate limits that hold across every server process: ``limits`` over PostgreSQL.

The ``limits`` library parses the configured limits ("10/minute") and counts hits with its
fixed-window strategy; ``PostgresStorage`` is the ``limits`` storage it counts in, the
``rate_limits`` table, so all the workers of ``issuemap serve`` (and several servers on one
database) share one count. A hit is one atomic statement, prepared, on a pooled connection
in autocommit (intake's own, when it files the report on that connection next): an upsert
that starts a new window when the old one has expired, adds to the current one otherwise,
and returns the count. The same statement deletes a few expired counters of other callers,
so the table stays small without a scheduled job or a full-table delete. The table is
unlogged: a crash forgets the current windows, which only lets a caller start afresh.

Who is counted is ``caller_identity``: a key holder by the key (from any address), anyone
else by the client address, an IPv6 address by its /64 network, since one subscriber is
handed a whole /64 and could otherwise change address at every request. Which limit
applies is ``geo.access.policy.report_limit_tier``.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from limits import RateLimitItem, parse
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from geo.access.policy import Principal, report_limit_tier
from geo.db.engine import Prepared, execute_prepared
from geo.errors import RateLimitedError
from geo.settings import RateLimitSettings

PURGE_BATCH = 4
"""Most expired counters of other callers one hit deletes. Every counter is created by a
hit and each hit deletes up to this many, so expired rows never pile up; found through
the index on ``expires_at``, they cost next to nothing when there are none."""

MAX_IDENTITY = 64
"""Longest caller identity kept in a counter's key (``addr:`` and an IPv6 address fit)."""

_HIT = Prepared.compile(
    """
    WITH purged AS (
        DELETE FROM rate_limits WHERE key IN (
            SELECT key FROM rate_limits
            WHERE expires_at < now() AND key <> :key
            ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED
        )
    )
    INSERT INTO rate_limits AS r (key, count, expires_at)
    VALUES (:key, :amount, now() + make_interval(secs => :expiry))
    ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN r.expires_at <= now() THEN excluded.count
                     ELSE r.count + excluded.count END,
        expires_at = CASE WHEN r.expires_at <= now() THEN excluded.expires_at
                          ELSE r.expires_at END
    RETURNING count
    """
)
# A counter whose window is over is started afresh by the same statement, so a caller
# never depends on the purge having run. The purge skips the caller's own key: deleting a
# row the upsert then finds would be one command touching the same row twice.


class PostgresStorage(Storage):
    """A ``limits`` storage in the ``rate_limits`` table, shared by every server process.

    It implements what the fixed-window strategy uses (``incr``, ``get``, ``get_expiry``)
    and the housekeeping of the interface (``check``, ``clear``, ``reset``). Each call takes
    a pooled connection of ``engine`` in autocommit for one statement, or runs on
    ``connection`` when one is given (``on``).
    """

    STORAGE_SCHEME = None

    def __init__(self, engine: Engine, *, connection: Connection | None = None) -> None:
        # Database errors pass through unwrapped, so an outage is the service's usual 503.
        super().__init__(wrap_exceptions=False)
        self.engine = engine
        self.connection = connection

    def on(self, connection: Connection) -> PostgresStorage:
        """The same counters, counted on ``connection``, which its holder keeps in autocommit."""
        return PostgresStorage(self.engine, connection=connection)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """Errors ``limits`` would wrap in its ``StorageError`` if asked to."""
        return (SQLAlchemyError,)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        if self.connection is not None:
            yield self.connection
            return
        # One statement needs no BEGIN/COMMIT round trips of its own.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s window (a new one of ``expiry`` s if it has none)."""
        params = {"key": key, "amount": amount, "expiry": expiry, "batch": PURGE_BATCH}
        with self._connect() as conn:
            row = execute_prepared(conn, _HIT, params)
        return int(row[0])

    def get(self, key: str) -> int:
        """The count of ``key``'s current window (0 once it has expired)."""
        with self._connect() as conn:
            count = conn.execute(
                text("SELECT count FROM rate_limits WHERE key = :key AND expires_at > now()"),
                {"key": key},
            ).scalar_one_or_none()
        return int(count or 0)

    def get_expiry(self, key: str) -> float:
        """When ``key``'s window ends, in seconds since the epoch (now if it has none)."""
        with self._connect() as conn:
            ends = conn.execute(
                text(
                    "SELECT extract(epoch FROM expires_at) FROM rate_limits "
                    "WHERE key = :key AND expires_at > now()"
                ),
                {"key": key},
            ).scalar_one_or_none()
        return float(ends) if ends is not None else time.time()

    def check(self) -> bool:
        """Whether the table can be reached."""
        try:
            with self._connect() as conn:
                conn.execute(text("SELECT 1 FROM rate_limits LIMIT 1"))
        except DBAPIError:
            return False
        return True

    def reset(self) -> int | None:
        """Forget every counter (an operator's action, never done on a request)."""
        with self._connect() as conn:
            return conn.execute(text("DELETE FROM rate_limits")).rowcount

    def clear(self, key: str) -> None:
        """Forget ``key``'s counter."""
        with self._connect() as conn:
            conn.execute(text("DELETE FROM rate_limits WHERE key = :key"), {"key": key})


def address_bucket(address: str | None) -> str:
    """The part of a client address that is counted: an IPv6 address's /64, else as is."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:MAX_IDENTITY]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def caller_identity(principal: Principal, client_address: str | None) -> str:
    """Whose reports are counted together: the key's holder, else the client's address."""
    if principal.key_id is not None:
        return f"key:{principal.key_id}"
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    return f"addr:{address_bucket(client_address)}"[:MAX_IDENTITY]


class ReportRateLimiter:
    """The report-filing limits of ``settings`` for each tier, counted in PostgreSQL."""

    NAMESPACE = "report"

    def __init__(self, engine: Engine, settings: RateLimitSettings) -> None:
        self.storage = PostgresStorage(engine)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.limits: dict[str, RateLimitItem | None] = {
            tier: None if value == "none" else parse(value)
            for tier, value in (
                ("anonymous", settings.anonymous),
                ("app", settings.app),
                ("staff", settings.staff),
            )
        }

    def hit(
        self, principal: Principal, client_address: str | None, *, conn: Connection | None = None
    ) -> None:
        """Count one report by this caller; ``RateLimitedError`` if that is one too many.

        One statement when the report is allowed; a refusal reads when the window resets
        (``Retry-After``). With ``conn`` (in autocommit) the count is made on it, so intake
        counts and stores a report on one pooled connection; the count stands whatever
        becomes of the report.
        """
        item = self.limits[report_limit_tier(principal)]
        if item is None:
            return
        identity = caller_identity(principal, client_address)
        limiter = self.limiter if conn is None else FixedWindowRateLimiter(self.storage.on(conn))
        if limiter.hit(item, self.NAMESPACE, identity):
            return
        reset_at = limiter.get_window_stats(item, self.NAMESPACE, identity).reset_time
        raise RateLimitedError(math.ceil(max(reset_at - time.time(), 1.0)))
