"""Live report events: one LISTEN connection per process, fanned out to subscribers.

PostgreSQL triggers (migration 0005) NOTIFY ``issuemap_reports`` when reports are created
or change status. Each server process runs one ``LiveHub``: a thread that LISTENs and
hands every event to the subscribers' callbacks, so several server processes all see
every change. Events carry no personal data.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

CHANNEL = "issuemap_reports"
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

    def __init__(self, url: str, *, poll_s: float = 0.5, retry_s: float = 1.0) -> None:
        self._conninfo = libpq_conninfo(url)
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="issuemap-live", daemon=True)

    def start(self, *, wait_s: float = 10.0) -> None:
        """Start listening; return once the LISTEN is in place (or after ``wait_s``)."""
        self._thread.start()
        self._ready.wait(wait_s)

    def stop(self) -> None:
        """Stop listening and wait for the thread to end."""
        self._stop.set()
        self._thread.join(timeout=5)

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

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    # A reconnect may have missed events: tell clients to refresh.
                    self._publish({"kind": "resync"})
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=self._poll_s):
                            self._publish(json.loads(note.payload))
            except psycopg.Error:
                log.warning("live connection lost; reconnecting", exc_info=True)
                self._stop.wait(self._retry_s)


def matches(event: Event, *, zone_id: int | None, team_id: int | None) -> bool:
    """Whether an event concerns the area a client watches (bulk and resync always do)."""
    if event.get("kind") != "report":
        return True
    if zone_id is not None and event.get("zone_id") != zone_id:
        return False
    return not (team_id is not None and event.get("team_id") != team_id)
