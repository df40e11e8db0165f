"""API keys and roles.

Keys are random 256-bit tokens; only their SHA-256 is stored (a slow password hash adds
nothing for keys this long), with a short prefix so staff can tell keys apart. Roles, least
to most trusted: public, field_team (bound to one team), planner (reads everything), admin.
A key past its ``expires_at`` is refused like a revoked one. ``last_used_at`` is written at
most once a minute per key, so using a key is not a write on every request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection, text

from geo.access.policy import ANONYMOUS, Principal
from geo.errors import AuthenticationError, InvalidInputError, NotFoundError
from geo.i18n import N_
from geo.vocabulary import NAME_MAX, ROLES

KEY_PREFIX = "im_"

USED_EVERY: Final = timedelta(minutes=1)
"""How stale a key's ``last_used_at`` may get before a request writes it again."""


def hash_secret(secret: str) -> str:
    """The stored form of a bearer secret: an API key, a session token, a staged check's token.

    Only this digest is kept, so a copy of the database signs no one in.
    """
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key: ``secret`` is shown once and never stored."""

    id: int
    secret: str
    role: str
    team_id: int | None


def bound_team(
    conn: Connection, role: str, team_code: str | None, *, missing: str, stray: str
) -> int | None:
    """The id of the team a ``field_team`` key or account is bound to; None for other roles.

    A field team must name an existing team by code (``missing`` otherwise) and no other
    role may name one (``stray``): the messages say which thing, key or account, is meant.
    """
    if role != "field_team":
        if team_code:
            raise InvalidInputError("team", stray)
        return None
    if not team_code:
        raise InvalidInputError("team", missing)
    team_id = conn.execute(
        text("SELECT id FROM teams WHERE code = :code"), {"code": team_code}
    ).scalar_one_or_none()
    if team_id is None:
        raise NotFoundError(N_("There is no team {code!r}."), code=team_code)
    return int(team_id)


def create_api_key(
    conn: Connection,
    *,
    name: str,
    role: str,
    team_code: str | None = None,
    owner_email: str | None = None,
    expires_at: datetime | None = None,
) -> NewKey:
    """Create a key with ``role``; field-team keys name their team by code.

    ``owner_email`` names the staff account responsible for the key; ``expires_at`` is when
    it stops working (never, when None).
    """
    if role not in ROLES:
        raise InvalidInputError("role", N_("must be one of {choices}"), choices=", ".join(ROLES))
    if not name.strip():
        raise InvalidInputError("name", N_("must not be empty"))
    if "\x00" in name:
        raise InvalidInputError("name", N_("must not contain NUL characters"))
    if len(name.strip()) > NAME_MAX:
        raise InvalidInputError("name", N_("must be at most {n} characters"), n=NAME_MAX)
    team_id = bound_team(
        conn,
        role,
        team_code,
        missing=N_("a field_team key must name its team"),
        stray=N_("only field_team keys are bound to a team"),
    )
    owner_id: int | None = None
    if owner_email:
        owner_id = conn.execute(
            text("SELECT id FROM users WHERE email = lower(:email)"), {"email": owner_email}
        ).scalar_one_or_none()
        if owner_id is None:
            raise InvalidInputError("owner", N_("names no staff account"))
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = conn.execute(
        text(
            "INSERT INTO api_keys (name, role, team_id, key_hash, prefix, owner_id, expires_at) "
            "VALUES (:name, :role, :team_id, :hash, :prefix, :owner_id, :expires_at) "
            "RETURNING id"
        ),
        {
            "owner_id": owner_id,
            "expires_at": expires_at,
            "name": name.strip(),
            "role": role,
            "team_id": team_id,
            "hash": hash_secret(secret),
            "prefix": secret[: len(KEY_PREFIX) + 6],
        },
    ).scalar_one()
    return NewKey(id=int(key_id), secret=secret, role=role, team_id=team_id)


def authenticate(conn: Connection, key: str | None) -> Principal:
    """The principal for ``key``; no key is the anonymous public."""
    if key is None or key == "":
        return ANONYMOUS
    if len(key) > 200 or not key.startswith(KEY_PREFIX):
        raise AuthenticationError(N_("The API key is not valid."))
    row = conn.execute(
        text(
            "SELECT id, name, role, team_id, "
            "coalesce(last_used_at < now() - :every, true) AS stale FROM api_keys "
            "WHERE key_hash = :hash AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > now())"
        ),
        {"hash": hash_secret(key), "every": USED_EVERY},
    ).one_or_none()
    if row is None:
        raise AuthenticationError(N_("The API key is not valid, or has been revoked."))
    if row.stale:
        # The caller's transaction commits it (``api.deps.authenticate_key`` opens one).
        conn.execute(
            text("UPDATE api_keys SET last_used_at = now() WHERE id = :id"), {"id": row.id}
        )
    return Principal(role=row.role, team_id=row.team_id, key_id=row.id, name=row.name)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as its list shows it: never its secret, only the prefix that tells it apart."""

    id: int
    name: str
    prefix: str
    role: str
    team_id: int | None
    owner_email: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


def list_api_keys(conn: Connection) -> list[KeyInfo]:
    """Every key, newest first, with its owner, expiry and last use."""
    rows = conn.execute(
        text(
            "SELECT k.id, k.name, k.prefix, k.role, k.team_id, u.email AS owner_email, "
            "k.created_at, k.expires_at, k.last_used_at, k.revoked_at "
            "FROM api_keys AS k LEFT JOIN users AS u ON u.id = k.owner_id ORDER BY k.id DESC"
        )
    ).all()
    return [KeyInfo(**row._mapping) for row in rows]


def revoke_api_key(conn: Connection, key_id: int) -> None:
    """Revoke a key; it stops working at once."""
    done = conn.execute(
        text("UPDATE api_keys SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"),
        {"id": key_id},
    ).rowcount
    if not done:
        raise NotFoundError(N_("There is no active API key with id {id}."), id=key_id)
