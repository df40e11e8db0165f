"""Live report events: one LISTEN connection per process, fanned out to subscribers.

Each server process runs one ``LiveHub``: a thread that LISTENs on ``issuemap_reports``
and hands every event to its subscribers, so several server processes all see every
change. One hub per database, elected with an advisory lock, is the *tailer*: a few times
a second it reads new audit events (reports created, status changes, merges) and NOTIFYs
them in batches. Intake transactions never NOTIFY themselves, because a NOTIFYing commit
holds a database-wide lock and would serialise every intake commit. If the tailer's
process dies, its lock goes with its connection and another hub takes over. A batch of
more than ``BULK_AFTER`` events (an import) becomes one ``bulk`` event, and so does a
backlog longer than one read, however long: the tailer skips to its end. Events carry no
personal data. Each stream shapes them for its audience (``LiveAudience``): staff get the
reports they may work whole; everyone else gets no team or zone, and the location on the
public grid (``geo.access.policy``), as every other public output.

A report forwarded to another team (``geo.reports.forwarding``) or re-routed against new
boundaries or routes (``geo.reports.store.reroute_reports``: ``issuemap reports reroute``
and the admin's re-route button) is an ``update`` carrying its new team and zone and, for
staff, the ones it left (``from_team_id``, ``from_zone_id``). A stream watching the team or
zone it left gets a ``leave`` event with only its id (``for_stream``), so a list or map
there drops it, while one watching where it went gets the update and shows it. A re-route
writes its audit events in one statement, so one that moves more than ``BULK_AFTER``
reports reaches every stream as one ``bulk`` event (pages offer to reload), never as a
message per report.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from geo.access.policy import (
    ANONYMOUS,
    Principal,
    is_field_team,
    sees_event_whole,
    sees_hidden,
    visible_point,
)

CHANNEL = "issuemap_reports"
BULK_AFTER = 200
APPLICATION_NAME = "issuemap-live"
_LOCK = "issuemap.live.tailer"
# Event ids are taken before commit, so a transaction can commit after a later id has been
# read; re-reading this many ids back (and skipping those already sent) catches it.
_LOOKBACK_IDS = 2000
# Rows one poll reads: well over _LOOKBACK_IDS, so every read reaches events not yet sent.
_READ_ROWS = 10_000
_PAYLOAD_BYTES = 7000  # NOTIFY payloads must stay under 8,000 bytes

_LIVE_KINDS = "('created', 'status', 'merged', 'hidden', 'unhidden', 'forwarded', 'rerouted')"
"""The audit events live streams hear of."""

# Each poll reads the ids of the events since a little before the last one sent (the look-back
# catches late commits), then reads whole only those not sent yet. Reading the whole look-back
# window with its reports four times a second took about 100 ms of the database and 12 ms of
# the web worker's CPU per poll on the demo city during a load test; the ids take 4 and 0.5.
_NEW_IDS = f"""
SELECT COALESCE(array_agg(id ORDER BY id), '{{}}') FROM (
    SELECT id FROM report_events
    WHERE id > %(after)s AND kind IN {_LIVE_KINDS}
    ORDER BY id
    LIMIT %(limit)s
) AS window_ids
"""
_TAIL = """
SELECT e.id AS event_id, e.kind AS event_kind, r.id, r.status, c.code AS category,
       r.ward_id, r.zone_id, r.team_id, ST_Y(r.geom) AS lat, ST_X(r.geom) AS lon,
       r.created_at, r.due_at, r.updated_at, r.hidden_at IS NOT NULL AS hidden,
       e.kind IN ('forwarded', 'rerouted') AS moved,
       CAST(COALESCE(e.data ->> 'from_team_id', e.data #>> '{from,team_id}') AS integer),
       CAST(COALESCE(e.data ->> 'from_zone_id', e.data #>> '{from,zone_id}') AS integer)
FROM report_events AS e
JOIN reports AS r ON r.id = e.report_id
JOIN categories AS c ON c.id = r.category_id
WHERE e.id = ANY(%(ids)s)
ORDER BY e.id
"""
# The rest of a backlog longer than one read: where it ends, and how many events it holds.
_BACKLOG = f"""
SELECT COALESCE(max(id), %(last)s), count(*) FILTER (WHERE kind IN {_LIVE_KINDS})
FROM report_events WHERE id > %(last)s
"""
log = logging.getLogger(__name__)

Event = dict[str, Any]
Subscriber = Callable[[Event], None]


def libpq_conninfo(url: str) -> str:
    """A libpq connection string for a SQLAlchemy URL (psycopg wants no driver prefix)."""
    parsed = make_url(url)
    query = dict(parsed.query)
    parts = {
        "host": query.pop("host", None) or parsed.host,
        "port": parsed.port,
        "dbname": parsed.database,
        "user": parsed.username,
        "password": parsed.password,
    }
    return psycopg.conninfo.make_conninfo(
        **{k: str(v) for k, v in parts.items() if v is not None},
        **{k: str(v) for k, v in query.items()},
    )


class LiveHub:
    """Listens for report events in a background thread and calls every subscriber."""

    def __init__(self, url: str, *, poll_s: float = 0.25, retry_s: float = 1.0) -> None:
        self._conninfo = libpq_conninfo(url)
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="issuemap-live", daemon=True)
        # ``stop`` writes to one end: the listener, waiting on its connection and the other
        # end, ends at once rather than at its next poll.
        self._wake, self._waker = socket.socketpair()

    def start(self, *, wait_s: float = 10.0) -> None:
        """Start listening; return once the LISTEN is in place (or after ``wait_s``)."""
        self._thread.start()
        self._ready.wait(wait_s)

    def stop(self) -> None:
        """Stop listening and wait for the thread to end."""
        self._stop.set()
        with suppress(OSError):  # stopped before: the ends are closed
            self._waker.send(b"\0")
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._wake.close()
            self._waker.close()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every event; the returned function unsubscribes."""
        with self._lock:
            self._subscribers.add(callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.discard(callback)

        return unsubscribe

    def _publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop the others
                log.exception("live subscriber failed")

    def _deliver(self, conn: psycopg.Connection[Any]) -> None:
        """Publish the notifications already received, without waiting for more."""
        for note in conn.notifies(timeout=0):
            # Decoding costs CPU: skip it while nobody here is watching.
            if self._subscribers:
                for event in json.loads(note.payload):
                    self._publish(event)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, application_name=APPLICATION_NAME
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    # A reconnect may have missed events: tell clients to refresh.
                    self._publish({"kind": "resync"})
                    tailer: _Tailer | None = None
                    while not self._stop.is_set():
                        if tailer is None and _try_lead(conn):
                            tailer = _Tailer(conn)
                        if tailer is not None:
                            tailer.send_new_events()
                        # Notifications that came with the tailer's reads are kept by
                        # psycopg, not left on the socket: take them before waiting on it.
                        self._deliver(conn)
                        select.select([conn.fileno(), self._wake.fileno()], [], [], self._poll_s)
                        self._deliver(conn)
            except psycopg.Error:
                log.warning("live connection lost; reconnecting", exc_info=True)
                self._stop.wait(self._retry_s)


# The tailer's hub holds the lock for as long as it leads, and runs a statement of its own
# each poll: how long ago that statement started is how stale the live streams may be.
# The advisory lock's bigint key shows in pg_locks as two oids (high and low 32 bits).
_TAILER_LAG = text(
    """
    SELECT extract(epoch FROM statement_timestamp() - a.query_start)
    FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND (CAST(l.classid AS bigint) << 32 | CAST(l.objid AS bigint))
          = CAST(hashtext(:lock) AS bigint)
    """
)


def tailer_lag_s(conn: Connection) -> float | None:
    """Seconds since the live tailer last read the event log; None when no hub leads.

    A healthy tailer reads a few times a second (``LiveHub`` ``poll_s``); a longer lag
    means events reach live maps that much later. Any process may ask, not only the
    tailer's: the answer comes from PostgreSQL, which sees every hub's connection.
    """
    lag = conn.execute(_TAILER_LAG, {"lock": _LOCK}).scalar_one_or_none()
    return None if lag is None else max(0.0, float(lag))


def _try_lead(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_LOCK,)).fetchone()
    return bool(row and row[0])


class _Tailer:
    """Reads new audit events and NOTIFYs them; runs in the elected hub only."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        row = conn.execute("SELECT COALESCE(max(id), 0) FROM report_events").fetchone()
        self._last = int(row[0]) if row else 0
        self._sent: set[int] = set()

    def send_new_events(self) -> None:
        after = max(self._last - _LOOKBACK_IDS, 0)
        # One array, decoded at once: a row per id cost as much again as the query.
        found = self._conn.execute(_NEW_IDS, {"after": after, "limit": _READ_ROWS}).fetchone()
        ids: list[int] = found[0] if found else []
        fresh = [i for i in ids if i not in self._sent]
        if not fresh:
            return
        self._last = max(self._last, max(fresh))
        self._sent.update(fresh)
        self._sent = {i for i in self._sent if i > self._last - _LOOKBACK_IDS}
        if len(ids) >= _READ_ROWS:
            self._skip_backlog(len(fresh))
            return
        if len(fresh) > BULK_AFTER:
            self._notify([{"kind": "bulk", "count": len(fresh)}])
            return
        rows = self._conn.execute(_TAIL, {"ids": fresh}).fetchall()
        self._notify([_event(row) for row in rows])

    def _skip_backlog(self, read: int) -> None:
        """Send the rest of a backlog longer than one read as one ``bulk`` event with ``read``.

        A large import or re-route, read a batch per poll, would hold later events back
        behind it and send a bulk event per batch; its end is taken in one query instead.
        """
        row = self._conn.execute(_BACKLOG, {"last": self._last}).fetchone()
        end, more = (int(row[0]), int(row[1])) if row else (self._last, 0)
        self._last = end
        self._sent = {
            int(i[0])
            for i in self._conn.execute(
                "SELECT id FROM report_events WHERE id > %s", (end - _LOOKBACK_IDS,)
            )
        }
        self._notify([{"kind": "bulk", "count": read + more}])

    def _notify(self, events: list[Event]) -> None:
        batch: list[str] = []
        size = 2
        for event in events:
            text = json.dumps(event, default=str)
            if batch and size + len(text) + 1 > _PAYLOAD_BYTES:
                self._send(batch)
                batch, size = [], 2
            batch.append(text)
            size += len(text) + 1
        if batch:
            self._send(batch)

    def _send(self, batch: list[str]) -> None:
        self._conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, "[" + ",".join(batch) + "]"))


def _event(row: Any) -> Event:
    (
        event_id,
        kind,
        report_id,
        status,
        category,
        ward,
        zone,
        team,
        lat,
        lon,
        created,
        due,
        updated,
        hidden,
        moved,
        from_team,
        from_zone,
    ) = row
    event: Event = {
        "kind": "report",
        "op": "insert" if kind == "created" else "update",
        "id": report_id,
        # The audit event's id: a page that also hears of a change in an API answer (which
        # carries the same id) can tell a stream event older than what it shows.
        "event_id": event_id,
        "status": status,
        "category": category,
        "ward_id": ward,
        "zone_id": zone,
        "team_id": team,
        "lat": lat,
        "lon": lon,
        "created_at": created.isoformat(),
        "due_at": due.isoformat(),
        "updated_at": updated.isoformat(),
        # Hidden from the public by staff (``geo.reports.moderation``), when this was read.
        "hidden": bool(hidden),
    }
    if moved:
        event["from_team_id"] = from_team
        event["from_zone_id"] = from_zone
    return event


def matches(event: Event, *, zone_id: int | None, team_id: int | None) -> bool:
    """Whether an event concerns the area a client watches (bulk and resync always do)."""
    if event.get("kind") != "report":
        return True
    if zone_id is not None and event.get("zone_id") != zone_id:
        return False
    return not (team_id is not None and event.get("team_id") != team_id)


def left(event: Event, *, zone_id: int | None, team_id: int | None) -> bool:
    """Whether a forwarded or re-routed report's event leaves the area a client watches.

    It matched that zone or team (``matches``) before the forward and no longer does.
    """
    if event.get("kind") != "report" or "from_team_id" not in event:
        return False
    before = event | {"zone_id": event.get("from_zone_id"), "team_id": event.get("from_team_id")}
    return matches(before, zone_id=zone_id, team_id=team_id) and not matches(
        event, zone_id=zone_id, team_id=team_id
    )


_STAFF_ONLY = ("team_id", "zone_id", "from_team_id", "from_zone_id", "event_id")
"""Event fields only staff who see the report whole receive."""


@dataclass(frozen=True, slots=True)
class LiveAudience:
    """Who a stream is for, and so how much of each report event it may carry."""

    principal: Principal
    public_rounding_m: float
    team_zones: frozenset[int] = frozenset()
    """Zones of a field team's own: it sees their reports whole, as it does in lists."""

    def sees_whole(self, event: Event) -> bool:
        """Whether the report is one this audience may read with every field."""
        return sees_event_whole(
            self.principal,
            team_id=event.get("team_id"),
            zone_id=event.get("zone_id"),
            own_zones=self.team_zones,
        )

    def shape(self, event: Event) -> Event:
        """``event`` as this audience may see it (bulk and resync events pass unchanged).

        A hidden report reaches the public only as a ``resync``: the page reloads its
        reports, among which it no longer is.
        """
        if event.get("kind") != "report":
            return event
        if event.get("hidden") and not sees_hidden(self.principal):
            return {"kind": "resync"}
        if self.sees_whole(event):
            return event
        shown = {k: v for k, v in event.items() if k not in _STAFF_ONLY}
        if event.get("lat") is not None and event.get("lon") is not None:
            shown["lat"], shown["lon"] = visible_point(
                float(event["lat"]),
                float(event["lon"]),
                ANONYMOUS,
                public_rounding_m=self.public_rounding_m,
            )
        return shown


def for_stream(
    event: Event, audience: LiveAudience, *, zone_id: int | None, team_id: int | None
) -> Event | None:
    """What a stream for ``audience`` watching ``zone_id``/``team_id`` sends for ``event``.

    ``event`` shaped for the audience when it concerns the area watched; a ``leave`` event
    (``{"kind": "report", "op": "leave", "id": ...}``) when a forward or a re-route took the
    report out of it; else nothing. The public never hears of a hidden report leaving.
    """
    if matches(event, zone_id=zone_id, team_id=team_id):
        return audience.shape(event)
    if left(event, zone_id=zone_id, team_id=team_id) and (
        not event.get("hidden") or sees_hidden(audience.principal)
    ):
        return {"kind": "report", "op": "leave", "id": event["id"]}
    return None


def live_audience(
    engine: Engine, principal: Principal, *, public_rounding_m: float
) -> LiveAudience:
    """The audience of a stream opened by ``principal`` (looks up a field team's zones)."""
    zones: frozenset[int] = frozenset()
    if is_field_team(principal) and principal.team_id is not None:
        with engine.connect() as conn:
            zones = frozenset(
                int(z)
                for z in conn.execute(
                    text("SELECT id FROM zones WHERE team_id = :team"),
                    {"team": principal.team_id},
                ).scalars()
            )
    return LiveAudience(principal, public_rounding_m, zones)
