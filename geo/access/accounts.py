"""Staff accounts: people who sign in with an e-mail address and a password.

Passwords are hashed with Argon2id (argon2-cffi's ``PasswordHasher`` and its defaults); a
hash made with older parameters is replaced on the next good sign-in. A wrong password, an
unknown address and a disabled account all get the same message, and an unknown address
still costs one hash verification, so neither the answer nor its time tells whether an
address has an account. ``AccountSettings.lock_after`` wrong passwords in a row lock the
account for ``lock_minutes``.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, text

from geo.access.keys import bound_team
from geo.errors import AuthenticationError, InvalidInputError, NotFoundError
from geo.i18n import N_
from geo.settings import AccountSettings
from geo.vocabulary import EMAIL_MAX, NAME_MAX, STAFF_ROLES

PASSWORD_MIN: Final = 12
"""Shortest password accepted for a staff account."""

PASSWORD_MAX: Final = 1024
"""Longest password accepted: longer ones only cost hashing time."""

_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]\\]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Verified against for addresses with no account, so a miss costs what a hit does;
    # made on first use, so importing this module (``is_email``) costs no hashing.
    return _hasher.hash("issuemap: no such account")


SIGN_IN_FAILED: Final = N_("The e-mail address or the password is not right.")
"""The one answer to an unknown address, a wrong password and a disabled account."""

LOCKED: Final = N_(
    "This account is locked for a while after too many wrong passwords. Try again later."
)


def is_email(contact: str | None) -> bool:
    """Whether ``contact`` is an e-mail address we may write to (not a phone number)."""
    if contact is None or not _EMAIL.match(contact.strip()):
        return False
    try:
        Address(addr_spec=contact.strip())
    except (ValueError, IndexError):
        return False
    return True


class AccountLockedError(AuthenticationError):
    """Too many wrong passwords in a row: the account refuses sign-ins until ``until``."""

    def __init__(self, until: datetime) -> None:
        super().__init__(LOCKED)
        self.until = until


@dataclass(frozen=True, slots=True)
class User:
    """A staff account as the rest of issuemap sees it (never its password hash)."""

    id: int
    email: str
    name: str
    role: str
    team_id: int | None
    disabled: bool = False


def hash_password(password: str) -> str:
    """The stored form of ``password``: an Argon2id hash string (``$argon2id$...``)."""
    return _hasher.hash(password)


def check_password(password: str, *, field: str = "password") -> None:
    """Refuse a password that breaks the policy: 12 to 1024 characters, not one repeated."""
    if "\x00" in password:
        raise InvalidInputError(field, N_("must not contain NUL characters"))
    if len(password) < PASSWORD_MIN:
        raise InvalidInputError(field, N_("must be at least {n} characters"), n=PASSWORD_MIN)
    if len(password) > PASSWORD_MAX:
        raise InvalidInputError(field, N_("must be at most {n} characters"), n=PASSWORD_MAX)
    if len(set(password)) == 1:
        raise InvalidInputError(field, N_("must not be one character repeated"))


def normal_email(email: str) -> str:
    """``email`` as accounts store it (trimmed, lower-case); ``InvalidInputError`` if not one."""
    cleaned = email.strip().lower()
    if len(cleaned) > EMAIL_MAX or "\x00" in cleaned or not is_email(cleaned):
        raise InvalidInputError("email", N_("must be an e-mail address"))
    return cleaned


def create_user(
    conn: Connection,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    team_code: str | None = None,
) -> User:
    """Create a staff account; field-team members name their team by code."""
    address = normal_email(email)
    shown = name.strip()
    if not shown:
        raise InvalidInputError("name", N_("must not be empty"))
    if "\x00" in shown:
        raise InvalidInputError("name", N_("must not contain NUL characters"))
    if len(shown) > NAME_MAX:
        raise InvalidInputError("name", N_("must be at most {n} characters"), n=NAME_MAX)
    if role not in STAFF_ROLES:
        raise InvalidInputError(
            "role", N_("must be one of {choices}"), choices=", ".join(STAFF_ROLES)
        )
    team_id = bound_team(
        conn,
        role,
        team_code,
        missing=N_("a field_team account must name its team"),
        stray=N_("only field_team accounts belong to a team"),
    )
    check_password(password)
    taken = conn.execute(
        text("SELECT 1 FROM users WHERE email = :email"), {"email": address}
    ).first()
    if taken is not None:
        raise InvalidInputError("email", N_("already has an account"))
    user_id = conn.execute(
        text(
            "INSERT INTO users (email, name, role, team_id, password_hash) "
            "VALUES (:email, :name, :role, :team_id, :hash) RETURNING id"
        ),
        {
            "email": address,
            "name": shown,
            "role": role,
            "team_id": team_id,
            "hash": hash_password(password),
        },
    ).scalar_one()
    return User(id=int(user_id), email=address, name=shown, role=role, team_id=team_id)


def verify_login(
    conn: Connection, email: str, password: str, *, now: datetime, settings: AccountSettings
) -> User:
    """The account ``email`` and ``password`` sign in to, else ``AuthenticationError``.

    The error's message is the same for an unknown address, a wrong password and a
    disabled account. A locked account says so (``AccountLockedError``): after
    ``settings.lock_after`` wrong tries the lock is no secret to whoever made them. A good
    sign-in clears the count of wrong ones and notes ``last_login_at``.
    """
    address = email.strip().lower()
    if len(password) > PASSWORD_MAX or len(address) > EMAIL_MAX or "\x00" in address:
        _spend_a_hash()
        raise AuthenticationError(SIGN_IN_FAILED)
    row = conn.execute(
        text(
            "SELECT id, email, name, role, team_id, password_hash, disabled_at, "
            "failed_logins, locked_until FROM users WHERE email = :email FOR UPDATE"
        ),
        {"email": address},
    ).one_or_none()
    if row is None:
        _spend_a_hash()
        raise AuthenticationError(SIGN_IN_FAILED)
    if row.locked_until is not None and row.locked_until > now:
        _spend_a_hash()
        if row.disabled_at is not None:
            # A disabled account answers as an unknown one would, locked or not.
            raise AuthenticationError(SIGN_IN_FAILED)
        raise AccountLockedError(row.locked_until)
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        failed = row.failed_logins + 1
        locked_until = now + timedelta(minutes=settings.lock_minutes)
        locks = failed >= settings.lock_after
        conn.execute(
            text("UPDATE users SET failed_logins = :failed, locked_until = :until WHERE id = :id"),
            {
                "failed": 0 if locks else failed,
                "until": locked_until if locks else None,
                "id": row.id,
            },
        )
        if locks and row.disabled_at is None:
            raise AccountLockedError(locked_until) from None
        raise AuthenticationError(SIGN_IN_FAILED) from None
    if row.disabled_at is not None:
        raise AuthenticationError(SIGN_IN_FAILED)
    changes = {"id": row.id, "now": now, "hash": row.password_hash}
    if _hasher.check_needs_rehash(row.password_hash):
        changes["hash"] = hash_password(password)
    conn.execute(
        text(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = :now, "
            "password_hash = :hash WHERE id = :id"
        ),
        changes,
    )
    return User(id=row.id, email=row.email, name=row.name, role=row.role, team_id=row.team_id)


def _spend_a_hash() -> None:
    """One Argon2 verification that always fails: the time a real check takes."""
    with contextlib.suppress(VerificationError):
        _hasher.verify(_dummy_hash(), "not the password")


def list_users(conn: Connection) -> list[User]:
    """Every staff account, by e-mail address."""
    rows = conn.execute(
        text(
            "SELECT id, email, name, role, team_id, disabled_at IS NOT NULL AS disabled "
            "FROM users ORDER BY email"
        )
    ).all()
    return [
        User(
            id=r.id, email=r.email, name=r.name, role=r.role, team_id=r.team_id, disabled=r.disabled
        )
        for r in rows
    ]


def disable_user(conn: Connection, email: str) -> User:
    """Disable the account ``email``: it can no longer sign in, and its sessions end."""
    address = normal_email(email)
    row = conn.execute(
        text(
            "UPDATE users SET disabled_at = coalesce(disabled_at, now()) WHERE email = :email "
            "RETURNING id, email, name, role, team_id"
        ),
        {"email": address},
    ).one_or_none()
    if row is None:
        raise NotFoundError(N_("There is no account for {email}."), email=address)
    conn.execute(text("DELETE FROM staff_sessions WHERE user_id = :id"), {"id": row.id})
    return User(
        id=row.id, email=row.email, name=row.name, role=row.role, team_id=row.team_id, disabled=True
    )
