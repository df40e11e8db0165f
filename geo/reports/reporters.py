"""Reports filed by chat, as their reporter may reach them: linking, listing, rating.

Which chat user filed a report is kept in ``report_chats``, apart from ``reports``, so no
query of reports can leak a chat user id into a public output. Everything here is asked
on behalf of one chat user and only ever answers about that user's own reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from geo.errors import ConflictError, InvalidInputError, NotFoundError
from geo.i18n import N_
from geo.vocabulary import FIXED_STATUSES, OPEN_STATUSES, RATING_MAX, RATING_MIN

NOT_YOURS = N_("You have no report {id}.")
"""A report that does not exist, is hidden, or was filed by someone else: all alike."""

NOT_FIXED = N_("Report {id} has not been fixed yet; you can rate it once it is.")
"""A rating for work that is not done."""

OWN_REPORTS_MAX = 50
"""Most reports ``open_reports_of`` lists at once."""


def link_report(conn: Connection, *, report_id: int, channel: str, user_id: str) -> None:
    """Record that chat user ``user_id`` on ``channel`` filed ``report_id``; the caller commits.

    A report keeps its first reporter: linking it again changes nothing.
    """
    conn.execute(
        text(
            "INSERT INTO report_chats (report_id, channel, user_id) "
            "VALUES (:report_id, :channel, :user_id) ON CONFLICT (report_id) DO NOTHING"
        ),
        {"report_id": report_id, "channel": channel, "user_id": user_id},
    )


@dataclass(frozen=True, slots=True)
class OwnReport:
    """One of a chat user's reports: enough to name it and link its status page."""

    id: int
    token: str
    status: str
    category: str
    """The category's code (``geo.city.catalogue.category_names`` gives its name)."""
    created_at: datetime


def open_reports_of(
    conn: Connection, *, channel: str, user_id: str, limit: int = 10
) -> list[OwnReport]:
    """The open reports ``user_id`` filed on ``channel``, newest first (at most ``limit``).

    Hidden reports are left out: their status page answers "not found" to everyone.
    """
    rows = conn.execute(
        text(
            "SELECT r.id, r.token, r.status, c.code AS category, r.created_at "
            "FROM report_chats AS rc JOIN reports AS r ON r.id = rc.report_id "
            "JOIN categories AS c ON c.id = r.category_id "
            "WHERE rc.channel = :channel AND rc.user_id = :user_id "
            "AND r.status = ANY(:open) AND r.hidden_at IS NULL "
            "ORDER BY r.created_at DESC, r.id DESC LIMIT :limit"
        ),
        {
            "channel": channel,
            "user_id": user_id,
            "open": list(OPEN_STATUSES),
            "limit": max(1, min(limit, OWN_REPORTS_MAX)),
        },
    ).all()
    return [
        OwnReport(
            id=int(r.id),
            token=r.token,
            status=r.status,
            category=r.category,
            created_at=r.created_at,
        )
        for r in rows
    ]


def rate_report(
    conn: Connection,
    *,
    report_id: int,
    channel: str,
    user_id: str,
    rating: int,
    now: datetime | None = None,
) -> None:
    """Store ``user_id``'s ``rating`` of the fixed work on ``report_id``; the caller commits.

    Only the report's own chat reporter may rate it, and only once its status is one of
    ``FIXED_STATUSES``; rating again replaces the earlier rating. Raises
    ``InvalidInputError`` (field ``rating``) outside ``RATING_MIN``..``RATING_MAX``,
    ``NotFoundError`` when the report is not theirs (or hidden, or unknown), and
    ``ConflictError`` when it is not fixed.
    """
    if isinstance(rating, bool) or not RATING_MIN <= rating <= RATING_MAX:
        raise InvalidInputError(
            "rating",
            N_("must be a whole number from {min} to {max}"),
            min=RATING_MIN,
            max=RATING_MAX,
        )
    status = conn.execute(
        text(
            "SELECT r.status FROM reports AS r "
            "JOIN report_chats AS rc ON rc.report_id = r.id "
            "WHERE r.id = :id AND rc.channel = :channel AND rc.user_id = :user_id "
            "AND r.hidden_at IS NULL FOR UPDATE OF r"
        ),
        {"id": report_id, "channel": channel, "user_id": user_id},
    ).scalar_one_or_none()
    if status is None:
        raise NotFoundError(NOT_YOURS, id=report_id)
    if status not in FIXED_STATUSES:
        raise ConflictError(NOT_FIXED, id=report_id)
    conn.execute(
        text("UPDATE reports SET rating = :rating, rated_at = :at WHERE id = :id"),
        {"rating": rating, "at": now or datetime.now(UTC), "id": report_id},
    )


def report_token(conn: Connection, report_id: int) -> str | None:
    """The status-page token of ``report_id``, or None when it is unknown or hidden.

    For telling a resident where to follow a report they were just offered or joined.
    """
    found = conn.execute(
        text("SELECT token FROM reports WHERE id = :id AND hidden_at IS NULL"), {"id": report_id}
    ).scalar_one_or_none()
    return None if found is None else str(found)
