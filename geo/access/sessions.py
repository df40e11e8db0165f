"""Staff browser sessions: a random cookie token, stored only as its SHA-256.

A session ends ``AccountSettings.session_idle_minutes`` after its last request, and
``session_max_hours`` after sign-in however busy it is. Its last request is written at
most once a minute, so loading a page is not a write each time. A disabled, locked or
deleted account has no session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection, text

from geo.access.accounts import User, verify_login
from geo.access.keys import hash_secret
from geo.access.policy import Principal
from geo.settings import AccountSettings

SESSION_COOKIE: Final = "issuemap_session"
"""The cookie that carries a staff session's token."""

TOKEN_MAX: Final = 100
"""Longest cookie value looked up; real tokens are 43 characters."""

TOUCH_EVERY: Final = timedelta(minutes=1)
"""How stale ``last_seen_at`` may get before a request writes it again."""


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just started: ``token`` goes into the cookie and is never stored."""

    token: str
    csrf_token: str
    expires_at: datetime


def start_session(
    conn: Connection, user: User, *, now: datetime, settings: AccountSettings
) -> NewSession:
    """Start a session for ``user`` (who has just signed in)."""
    # The person's sessions that have ended go now, so the table holds live ones only.
    conn.execute(
        text(
            "DELETE FROM staff_sessions WHERE user_id = :user_id "
            "AND (expires_at <= :now OR last_seen_at <= :idle_since)"
        ),
        {
            "user_id": user.id,
            "now": now,
            "idle_since": now - timedelta(minutes=settings.session_idle_minutes),
        },
    )
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires_at = now + timedelta(hours=settings.session_max_hours)
    conn.execute(
        text(
            "INSERT INTO staff_sessions "
            "(token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at) "
            "VALUES (:hash, :user_id, :csrf, :now, :now, :expires_at)"
        ),
        {
            "hash": hash_secret(token),
            "user_id": user.id,
            "csrf": csrf,
            "now": now,
            "expires_at": expires_at,
        },
    )
    return NewSession(token=token, csrf_token=csrf, expires_at=expires_at)


def session_principal(
    conn: Connection, token: str | None, *, now: datetime, settings: AccountSettings
) -> Principal | None:
    """The signed-in staff member of session ``token``; None for no, or no longer, a session.

    A lock (wrong passwords in a row) stops new sign-ins only: anyone may guess at an
    address, and guessing must not sign its owner out of the work in hand.
    """
    if not token or len(token) > TOKEN_MAX:
        return None
    idle = timedelta(minutes=settings.session_idle_minutes)
    row = conn.execute(
        text(
            "SELECT s.last_seen_at, u.id, u.name, u.role, u.team_id "
            "FROM staff_sessions AS s JOIN users AS u ON u.id = s.user_id "
            "WHERE s.token_hash = :hash AND s.expires_at > :now "
            "AND s.last_seen_at > :idle_since AND u.disabled_at IS NULL"
        ),
        {"hash": hash_secret(token), "now": now, "idle_since": now - idle},
    ).one_or_none()
    if row is None:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        conn.execute(
            text("UPDATE staff_sessions SET last_seen_at = :now WHERE token_hash = :hash"),
            {"now": now, "hash": hash_secret(token)},
        )
    return user_principal(
        User(id=row.id, email="", name=row.name, role=row.role, team_id=row.team_id)
    )


def user_principal(user: User) -> Principal:
    """How staff member ``user`` appears to the policy: their role, team and name."""
    return Principal(role=user.role, team_id=user.team_id, name=user.name, user_id=user.id)


def end_session(conn: Connection, token: str | None) -> None:
    """End session ``token`` (logout); an unknown token is already ended."""
    if token and len(token) <= TOKEN_MAX:
        conn.execute(
            text("DELETE FROM staff_sessions WHERE token_hash = :hash"),
            {"hash": hash_secret(token)},
        )


def end_stale_sessions(conn: Connection, *, now: datetime, settings: AccountSettings) -> int:
    """Delete sessions past their end (idle or absolute); how many were deleted."""
    idle = timedelta(minutes=settings.session_idle_minutes)
    return conn.execute(
        text("DELETE FROM staff_sessions WHERE expires_at <= :now OR last_seen_at <= :since"),
        {"now": now, "since": now - idle},
    ).rowcount


def sign_in(
    conn: Connection, email: str, password: str, *, now: datetime, settings: AccountSettings
) -> NewSession:
    """Check ``email`` and ``password`` (``verify_login``) and start the person's session.

    Raises ``AuthenticationError`` (or ``AccountLockedError``) as ``verify_login`` does; the
    count of wrong passwords it wrote must still be committed by the caller.
    """
    user = verify_login(conn, email, password, now=now, settings=settings)
    return start_session(conn, user, now=now, settings=settings)
