"""Idempotent POSTs: a retried request with the same ``Idempotency-Key`` gets the first answer.

The record is written in the same transaction as the work it describes, and an advisory
lock on the key makes a concurrent retry wait for the first attempt to finish.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from geo.errors import ConflictError, InvalidInputError

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_key(key: str) -> str:
    """Refuse keys that are empty, too long or not printable ASCII."""
    if not _KEY.fullmatch(key):
        raise InvalidInputError(
            "Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces"
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


def claim(conn: Connection, *, scope: str, key: str, fingerprint: str) -> StoredAnswer | None:
    """Lock ``key`` for this transaction; return the stored answer if it was used before.

    The same key with a different request is a conflict, not a replay.
    """
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"idempotency:{scope}:{key}"},
    )
    row = conn.execute(
        text(
            "SELECT request_sha256, status_code, response FROM idempotency_keys "
            "WHERE scope = :scope AND key = :key"
        ),
        {"scope": scope, "key": key},
    ).one_or_none()
    if row is None:
        return None
    if row.request_sha256 != fingerprint:
        raise ConflictError(
            "This Idempotency-Key was already used for a different request; use a new key."
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
) -> None:
    """Store the answer, in the caller's transaction, for later replays."""
    conn.execute(
        text(
            "INSERT INTO idempotency_keys (scope, key, request_sha256, status_code, response) "
            "VALUES (:scope, :key, :fp, :status, CAST(:body AS jsonb))"
        ),
        {
            "scope": scope,
            "key": key,
            "fp": fingerprint,
            "status": status_code,
            "body": json.dumps(body, default=str, ensure_ascii=False),
        },
    )
