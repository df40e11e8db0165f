"""A durable inbox of chat-platform events: store first, handle later, in order, once.

A webhook stores the events it receives (``store_events``) and answers at once; the work
(downloading photos, routing, answering) happens in ``process_pending``, which any number
of processes may run at the same time:

- an event id already stored (a redelivery) is not stored again, so it has no second effect;
- one user's events are handled one at a time, oldest first: a worker takes a transaction
  advisory lock on (channel, user) before touching that user's oldest pending event, so two
  workers never interleave one conversation;
- each event is handled in its own transaction, which also marks it processed, so a crash
  leaves it pending and it is handled again, never half;
- the answer is sent only after that transaction has committed, so nobody hears of something
  that was rolled back;
- a handler that raises rolls back what it did and counts an attempt with its error; after
  ``max_attempts`` the event is set aside (processed, with ``last_error``) so one poisoned
  event never blocks the user's later ones.

Nothing here knows a platform: the channel's adapter (``geo.chat.line``) gives the handler
and the sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects.postgresql import insert

from geo.chat.messages import Reply
from geo.db.schema import ChatInboxEvent

log = logging.getLogger(__name__)

ERROR_MAX: Final = 1000
"""Longest error text kept on a failed event."""


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """An event as a webhook received it: the platform's event id, its user, its body."""

    event_id: str
    user_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """A stored event waiting to be handled."""

    id: int
    channel: str
    user_id: str
    payload: dict[str, Any]


def store_events(conn: Connection, channel: str, events: Sequence[InboxEvent]) -> int:
    """Store ``events`` of ``channel``; return how many were new.

    One ``INSERT .. ON CONFLICT (channel, event_id) DO NOTHING``: an event id stored before
    (the platform redelivered it) is skipped, as is a repeat within ``events``. The caller
    commits.
    """
    if not events:
        return 0
    statement = (
        insert(ChatInboxEvent)
        .values(
            [
                {
                    "channel": channel,
                    "event_id": e.event_id,
                    "user_id": e.user_id,
                    "payload": e.payload,
                }
                for e in events
            ]
        )
        .on_conflict_do_nothing(index_elements=["channel", "event_id"])
        .returning(ChatInboxEvent.id)
    )
    return len(conn.execute(statement).all())


# The oldest pending event nobody is working on; its user is the candidate to claim.
_CANDIDATE = text(
    "SELECT id, user_id FROM chat_inbox "
    "WHERE channel = :channel AND processed_at IS NULL "
    "AND NOT (user_id = ANY(CAST(:skip AS text[]))) "
    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
)

# Collisions of the two hashes only make two users wait for each other, never interleave one.
_LOCK_USER = text("SELECT pg_try_advisory_xact_lock(hashtext(:channel), hashtext(:user_id))")

# Under the user's lock: that user's oldest pending event. Not SKIP LOCKED: a worker that
# locked the row a moment ago without the user's lock will let go of it, and skipping it
# would handle a later event first.
_OLDEST = text(
    "SELECT id, payload, attempts FROM chat_inbox "
    "WHERE channel = :channel AND user_id = :user_id AND processed_at IS NULL "
    "ORDER BY id LIMIT 1 FOR UPDATE"
)

_DONE = text("UPDATE chat_inbox SET processed_at = now() WHERE id = :id")

_FAILED = text(
    "UPDATE chat_inbox SET attempts = attempts + 1, last_error = :error, "
    "processed_at = CASE WHEN attempts + 1 >= :max_attempts THEN now() END "
    "WHERE id = :id RETURNING processed_at IS NOT NULL AS parked"
)


def _error_text(error: Exception) -> str:
    # PostgreSQL text cannot hold NUL, and an error may quote the input that caused it.
    return f"{type(error).__name__}: {error}".replace("\x00", "\\x00")[:ERROR_MAX]


def _claim(conn: Connection, channel: str, skip: set[str]) -> tuple[PendingEvent, int] | None:
    """Inside ``conn``'s transaction: lock a user and return their oldest pending event.

    Users whose lock another worker holds are added to ``skip``. None when no pending
    event is left that this worker may take.
    """
    while True:
        candidate = conn.execute(
            _CANDIDATE, {"channel": channel, "skip": sorted(skip)}
        ).one_or_none()
        if candidate is None:
            return None
        user_id = str(candidate.user_id)
        if conn.execute(_LOCK_USER, {"channel": channel, "user_id": user_id}).scalar_one():
            row = conn.execute(_OLDEST, {"channel": channel, "user_id": user_id}).one_or_none()
            if row is not None:
                event = PendingEvent(
                    id=int(row.id), channel=channel, user_id=user_id, payload=dict(row.payload)
                )
                return event, int(row.attempts)
        # Another worker has this user: leave them all to it for this round. Letting go of
        # the candidate row (rolling back) lets that worker lock it without waiting on us.
        skip.add(user_id)
        conn.rollback()
        conn.begin()


def process_pending(
    engine: Engine,
    channel: str,
    *,
    handler: Callable[[Connection, PendingEvent], list[Reply]],
    send: Callable[[PendingEvent, list[Reply]], None],
    limit: int = 100,
    max_attempts: int = 5,
) -> int:
    """Handle up to ``limit`` pending events of ``channel``; return how many were settled.

    ``handler`` runs inside the event's transaction (it must not commit); ``send`` gets its
    answer after that transaction committed. An event whose handler raised stays pending
    for a later round (its user is left alone for the rest of this one) until it has
    failed ``max_attempts`` times; then it is set aside with its last error, and the
    user's later events go on. A failing ``send`` is logged: the event was handled, and
    handling it again would do it twice.
    """
    settled = 0
    skip: set[str] = set()
    while settled < limit:
        with engine.connect() as conn:
            conn.begin()
            claimed = _claim(conn, channel, skip)
            if claimed is None:
                conn.rollback()
                return settled
            event, attempts = claimed
            replies: list[Reply] | None = None
            try:
                with conn.begin_nested():
                    replies = handler(conn, event)
                conn.execute(_DONE, {"id": event.id})
            except Exception as error:
                log.warning(
                    "chat event %s of %s failed (attempt %d of %d): %s",
                    event.id,
                    channel,
                    attempts + 1,
                    max_attempts,
                    error,
                    exc_info=True,
                )
                parked = conn.execute(
                    _FAILED,
                    {
                        "id": event.id,
                        "error": _error_text(error),
                        "max_attempts": max_attempts,
                    },
                ).scalar_one()
                if not parked:
                    skip.add(event.user_id)
                else:
                    settled += 1
                replies = None
            else:
                settled += 1
            conn.commit()
        if replies:
            try:
                send(event, replies)
            except Exception:
                log.exception("sending the answer to chat event %s of %s failed", event.id, channel)
    return settled
