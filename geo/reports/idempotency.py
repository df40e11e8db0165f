"""Idempotent POSTs: a retried request with the same ``Idempotency-Key`` gets the first answer.

The record is written in the same transaction as the work it describes, and an advisory
lock on the key makes a concurrent retry wait for the first attempt to finish.

Keys belong to their caller: an API key's holder, else the client's address, so one
resident's key ``1`` never blocks another's. They last ``ttl`` (24 hours by default,
``ISSUEMAP_IDEMPOTENCY_TTL_HOURS``); an expired key is free again, and each stored answer
deletes a bounded batch of expired ones, so no scheduled job is needed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, text

from geo.errors import ConflictError, InvalidInputError
from geo.i18n import N_

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

PURGE_BATCH = 100
"""Most expired keys one stored answer deletes: enough to outpace any arrival rate, since
every new key deletes up to this many, and small enough to cost nothing noticeable."""

MAX_SCOPE = 64
"""Length of the ``scope`` column: ``key:`` and an id, or ``addr:`` and an IPv6 address."""


def scope_for(*, key_id: int | None, client_address: str | None) -> str:
    """Whose keys these are: the API key's holder, else the client's network address."""
    if key_id is not None:
        return f"key:{key_id}"
    return f"addr:{client_address or 'unknown'}"[:MAX_SCOPE]


def check_key(key: str) -> str:
    """Refuse keys that are empty, too long or not printable ASCII."""
    if not _KEY.fullmatch(key):
        raise InvalidInputError(
            "Idempotency-Key", N_("must be 1 to 255 printable ASCII characters without spaces")
        )
    return key


def request_fingerprint(*parts: bytes | str) -> str:
    """SHA-256 over the parts of a request that make it "the same request"."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The first answer to a request."""

    status_code: int
    body: dict[str, Any]


_CLAIM = text(
    """
    WITH expired AS (
        DELETE FROM idempotency_keys
        WHERE scope = :scope AND key = :key AND created_at < now() - make_interval(secs => :ttl)
    )
    SELECT request_sha256, status_code, response FROM idempotency_keys
    WHERE scope = :scope AND key = :key AND created_at >= now() - make_interval(secs => :ttl)
    """
)

_REMEMBER = text(
    """
    WITH purged AS (
        DELETE FROM idempotency_keys WHERE (scope, key) IN (
            SELECT scope, key FROM idempotency_keys
            WHERE created_at < now() - make_interval(secs => :ttl)
            ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED
        )
    )
    INSERT INTO idempotency_keys (scope, key, request_sha256, status_code, response)
    VALUES (:scope, :key, :fp, :status, CAST(:body AS jsonb))
    """
)


def claim(
    conn: Connection, *, scope: str, key: str, fingerprint: str, ttl: timedelta
) -> StoredAnswer | None:
    """Lock ``key`` for this transaction; return the stored answer if it was used before.

    The same key with a different request is a conflict, not a replay. A key older than
    ``ttl`` has expired: it is forgotten here and may name a new request.
    """
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"idempotency:{scope}:{key}"},
    )
    # After the lock, in a statement of its own: its snapshot then sees what a concurrent
    # first attempt with this key committed while we waited. The key's expired record goes
    # in the same statement, which reads only a live one.
    row = conn.execute(
        _CLAIM, {"scope": scope, "key": key, "ttl": ttl.total_seconds()}
    ).one_or_none()
    if row is None:
        return None
    if row.request_sha256 != fingerprint:
        raise ConflictError(
            N_("This Idempotency-Key was already used for a different request; use a new key.")
        )
    return StoredAnswer(status_code=row.status_code, body=row.response)


def remember(
    conn: Connection,
    *,
    scope: str,
    key: str,
    fingerprint: str,
    status_code: int,
    body: dict[str, Any],
    ttl: timedelta,
) -> None:
    """Store the answer, in the caller's transaction, for later replays.

    The same statement deletes up to ``PURGE_BATCH`` expired keys (found through the index
    on ``created_at``; rows another transaction holds are skipped, never waited for).
    """
    conn.execute(
        _REMEMBER,
        {
            "ttl": ttl.total_seconds(),
            "batch": PURGE_BATCH,
            "scope": scope,
            "key": key,
            "fp": fingerprint,
            "status": status_code,
            "body": json.dumps(body, default=str, ensure_ascii=False),
        },
    )
