"""Staff hide a report from the public, with a reason, and may show it again; both audited.

A hidden report (``reports.hidden_at`` and ``hidden_reason``, set together) leaves every
public output (``geo.access.policy.visibility_sql``) and stays in staff views, where the
reason is shown. Each change writes a ``report_events`` row (kind ``hidden`` or
``unhidden``) naming the staff member and the reason, in the same transaction. Who may do
this is ``geo.access.policy.may_moderate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from geo.access.policy import Principal, may_moderate
from geo.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from geo.i18n import N_
from geo.vocabulary import NOTE_MAX


@dataclass(frozen=True, slots=True)
class Moderation:
    """A report hidden or shown again: its state afterwards and the audit event written."""

    report_id: int
    hidden: bool
    hidden_at: datetime | None
    hidden_reason: str | None
    event_id: int
    at: datetime


def check_reason(
    reason: str | None,
    *,
    required: bool,
    field: str = "reason",
    missing: str = N_("say why the report is hidden; the public will not see it"),
) -> str | None:
    """``reason`` trimmed; refused if empty (when ``required``), too long or holding a NUL.

    The error names ``field``; ``missing`` (a message id) says what an empty one lacks.
    Staff reasons and notes elsewhere (``geo.reports.forwarding``) are checked alike.
    """
    cleaned = (reason or "").strip()
    if not cleaned:
        if required:
            raise InvalidInputError(field, missing)
        return None
    if "\x00" in cleaned:
        raise InvalidInputError(field, N_("must not contain NUL characters"))
    if len(cleaned) > NOTE_MAX:
        raise InvalidInputError(field, N_("must be at most {limit:,} characters"), limit=NOTE_MAX)
    return cleaned


def _change(
    conn: Connection, report_id: int, *, principal: Principal, hide: bool, reason: str | None
) -> Moderation:
    if not may_moderate(principal):
        raise PermissionDeniedError(
            N_("Only planners and administrators may hide reports or show them again.")
        )
    current = conn.execute(
        text("SELECT hidden_at IS NOT NULL AS hidden FROM reports WHERE id = :id FOR UPDATE"),
        {"id": report_id},
    ).one_or_none()
    if current is None:
        raise NotFoundError(N_("There is no report {id}."), id=report_id)
    if current.hidden == hide:
        raise ConflictError(
            N_("Report {id} is already hidden from the public.")
            if hide
            else N_("Report {id} is not hidden."),
            id=report_id,
        )
    # One statement: the report's state and its audit event change together.
    row = conn.execute(
        text(
            """
            WITH changed AS (
                UPDATE reports
                SET hidden_at = CASE WHEN :hide THEN now() END,
                    hidden_reason = CASE WHEN :hide THEN CAST(:reason AS text) END
                WHERE id = :id
                RETURNING id, hidden_at, hidden_reason
            ), event AS (
                INSERT INTO report_events (report_id, kind, actor, note, data)
                SELECT id, :kind, :actor, :reason,
                       jsonb_build_object('reason', CAST(:reason AS text))
                FROM changed
                RETURNING id, at
            )
            SELECT c.id, c.hidden_at, c.hidden_reason, e.id AS event_id, e.at
            FROM changed AS c CROSS JOIN event AS e
            """
        ),
        {
            "id": report_id,
            "hide": hide,
            "reason": reason,
            "kind": "hidden" if hide else "unhidden",
            "actor": principal.actor,
        },
    ).one()
    return Moderation(
        report_id=row.id,
        hidden=hide,
        hidden_at=row.hidden_at,
        hidden_reason=row.hidden_reason,
        event_id=row.event_id,
        at=row.at,
    )


def hide_report(
    conn: Connection, report_id: int, *, principal: Principal, reason: str | None
) -> Moderation:
    """Take a report out of every public output, saying why; staff still see it and why.

    Done in ``conn``'s transaction, with its audit event.
    """
    checked = check_reason(reason, required=True)
    return _change(conn, report_id, principal=principal, hide=True, reason=checked)


def unhide_report(
    conn: Connection, report_id: int, *, principal: Principal, reason: str | None = None
) -> Moderation:
    """Show a hidden report to the public again; ``reason`` (optional) goes in the audit."""
    checked = check_reason(reason, required=False)
    return _change(conn, report_id, principal=principal, hide=False, reason=checked)
