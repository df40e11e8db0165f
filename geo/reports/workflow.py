"""Working a report: allowed status changes, the audit trail, and merging duplicates.

Statuses move along open -> acknowledged -> in progress -> resolved -> closed, can be
reopened, or end as rejected or as a duplicate of another report. Every change is a
``report_events`` row saying who, when, from what to what, with an optional note and
after-photo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from geo.access.policy import Principal, may_work_reports
from geo.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from geo.i18n import N_
from geo.reports.intake import PhotoUpload
from geo.reports.notifications import enqueue_event
from geo.reports.photos import process_photo
from geo.reports.search import get_report
from geo.reports.store import store_photo
from geo.settings import IntakeSettings, NotificationSettings
from geo.vocabulary import (
    CONFIRMED_MOVES,
    NOTE_MAX,
    OPEN_STATUSES,
    REPORT_STATUSES,
    UNDO_WINDOW_S,
)

TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"acknowledged", "in_progress", "resolved", "rejected"}),
    "acknowledged": frozenset({"in_progress", "resolved", "rejected"}),
    "in_progress": frozenset({"resolved", "rejected"}),
    "resolved": frozenset({"closed", "reopened"}),
    "closed": frozenset({"reopened"}),
    "reopened": frozenset({"acknowledged", "in_progress", "resolved", "rejected"}),
    "rejected": frozenset({"reopened"}),
    "duplicate": frozenset({"reopened"}),
}
"""Allowed next statuses. ``duplicate`` is reached only by merging (``merge_duplicate``)."""

MERGEABLE = frozenset(OPEN_STATUSES)
"""A report still being worked can be merged into another."""


def next_statuses(status: str) -> list[str]:
    """The statuses a report in ``status`` may move to, in workflow order."""
    return [s for s in REPORT_STATUSES if s in TRANSITIONS.get(status, frozenset())]


def _require_worker(principal: Principal) -> None:
    if not may_work_reports(principal):
        raise PermissionDeniedError(
            N_("Only field teams and administrators may change a report's status.")
        )


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A recorded status change."""

    report_id: int
    event_id: int
    from_status: str
    to_status: str
    at: datetime


def change_status(
    conn: Connection,
    report_id: int,
    to_status: str,
    *,
    principal: Principal,
    note: str | None = None,
    public_note: str | None = None,
    notify: NotificationSettings | None = None,
) -> StatusChange:
    """Move a report to ``to_status`` if the workflow allows it, and log the event.

    ``note`` stays in the staff-only audit trail; ``public_note`` is what residents see
    (Open311 ``status_notes``), so a staff note quoting a phone number is never published.
    The reporter's e-mail (when ``notify`` configures mail) and the
    ``report.status_changed`` webhook calls are queued in the same transaction
    (``geo.reports.notifications``).

    ``notify`` is passed in, never read from the environment here: the service passes the
    settings it was started with (``AppState.notifications``), so a broken mail setting
    stops it at start instead of surfacing on a status change. A caller outside the service
    (a notebook, a script) builds ``NotificationSettings()`` itself if its changes should
    mail reporters; without it (``None``) no e-mail is queued, webhook calls still are.
    """
    _require_worker(principal)
    if to_status not in REPORT_STATUSES:
        raise InvalidInputError(
            "status",
            N_("unknown status {status!r}; use one of {choices}"),
            status=to_status,
            choices=", ".join(REPORT_STATUSES),
        )
    if to_status == "duplicate":
        raise InvalidInputError("status", N_("mark duplicates by merging them into the original"))
    return _move(
        conn,
        report_id,
        to_status,
        principal=principal,
        note=note,
        public_note=public_note,
        notify=notify,
    )


def reopen_report(
    conn: Connection,
    report_id: int,
    *,
    principal: Principal,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    notify: NotificationSettings | None = None,
) -> StatusChange:
    """Reopen a finished report at a resident's word, brought by any key (an Open311 update).

    Residents do not work reports, but one who finds the problem back may say so. The
    workflow still decides: only a report it lets move to ``reopened`` is reopened (409
    otherwise). ``note`` (the resident's words) stays in the staff-only audit trail, with
    ``data`` (who sent it, the client's own ids); the change is announced as any other.
    """
    return _move(
        conn, report_id, "reopened", principal=principal, note=note, notify=notify, data=data
    )


def add_comment(
    conn: Connection,
    report_id: int,
    *,
    principal: Principal,
    note: str | None,
    data: dict[str, Any] | None = None,
) -> int:
    """Keep what someone said about a report (an Open311 update) for staff: the event's id.

    A ``comment`` event in the audit trail by ``principal``, holding their words (``note``)
    and ``data``; the report's status stays as it is (``from_status`` = ``to_status``, as a
    forward records it). Nothing of it is published: only staff say what the public reads.
    """
    _check_notes(note, None)
    get_report(conn, report_id, principal)  # 404 for a report the caller may not see
    event_id = conn.execute(
        text(
            "INSERT INTO report_events "
            "(report_id, kind, actor, from_status, to_status, note, data) "
            "SELECT id, 'comment', :actor, status, status, :note, CAST(:data AS jsonb) "
            "FROM reports WHERE id = :id RETURNING id"
        ),
        {"id": report_id, "actor": principal.actor, "note": note, "data": json.dumps(data or {})},
    ).scalar_one()
    return int(event_id)


def _move(
    conn: Connection,
    report_id: int,
    to_status: str,
    *,
    principal: Principal,
    note: str | None = None,
    public_note: str | None = None,
    notify: NotificationSettings | None = None,
    data: dict[str, Any] | None = None,
) -> StatusChange:
    """Move a report to ``to_status`` if the workflow allows it, and log the event."""
    _check_notes(note, public_note)
    get_report(conn, report_id, principal)  # 404 for a report the caller may not see
    row = conn.execute(
        text("SELECT status, duplicate_of, resolved_at FROM reports WHERE id = :id FOR UPDATE"),
        {"id": report_id},
    ).one()
    if to_status not in TRANSITIONS[row.status]:
        allowed = ", ".join(next_statuses(row.status)) or "none"
        raise ConflictError(
            N_("Report {id} is {status}; it can move to: {allowed}, not {to_status}."),
            id=report_id,
            status=row.status,
            allowed=allowed,
            to_status=to_status,
        )
    if row.status == "duplicate" and row.duplicate_of is not None:
        conn.execute(
            text("UPDATE reports SET supporters = supporters - 1 WHERE id = :original"),
            {"original": row.duplicate_of},
        )
    changed = conn.execute(
        text(
            """
            WITH moved AS (
                UPDATE reports SET status = CAST(:to AS varchar), updated_at = now(),
                    resolved_at = CASE WHEN CAST(:to AS varchar) = 'resolved' THEN now()
                                       WHEN CAST(:to AS varchar) = 'reopened' THEN NULL
                                       ELSE resolved_at END,
                    duplicate_of = CASE WHEN CAST(:to AS varchar) = 'reopened' THEN NULL
                                        ELSE duplicate_of END
                WHERE id = :id RETURNING id, updated_at
            )
            INSERT INTO report_events
                (report_id, at, kind, actor, from_status, to_status, note, public_note, data)
            SELECT id, updated_at, 'status', :actor, :from, CAST(:to AS varchar), :note,
                   :public_note, CAST(:data AS jsonb)
            FROM moved
            RETURNING id, at
            """
        ),
        {
            "id": report_id,
            "to": to_status,
            "from": row.status,
            "actor": principal.actor,
            "note": note,
            "public_note": public_note,
            "data": json.dumps(_resolved_before(row.resolved_at, to_status) | (data or {})),
        },
    ).one()
    enqueue_event(
        conn,
        event="report.status_changed",
        event_id=int(changed.id),
        email=notify is not None and notify.email_enabled,
        # A move that ends the work may be undone for a while: announce it once final.
        delay_s=UNDO_WINDOW_S if to_status in CONFIRMED_MOVES else 0.0,
    )
    return StatusChange(
        report_id=report_id,
        event_id=int(changed.id),
        from_status=row.status,
        to_status=to_status,
        at=changed.at,
    )


def _resolved_before(resolved_at: datetime | None, to_status: str) -> dict[str, Any]:
    """What a status event keeps of the report's ``resolved_at`` when the move changes it.

    Resolving sets it and reopening clears it; an undo (``undo_status_change``) puts the
    old value back from here.
    """
    if to_status not in {"resolved", "reopened"}:
        return {}
    return {"resolved_at_before": resolved_at.isoformat() if resolved_at else None}


@dataclass(frozen=True, slots=True)
class WorkedReport:
    """A status change as its route answers it: the change, the after-photo, what is next."""

    change: StatusChange
    photo_ids: list[int]
    next_statuses: list[str]


def work_report(
    engine: Engine,
    report_id: int,
    to_status: str,
    *,
    principal: Principal,
    intake: IntakeSettings,
    note: str | None = None,
    public_note: str | None = None,
    photo: PhotoUpload | None = None,
    notify: NotificationSettings | None = None,
) -> WorkedReport:
    """Change a report's status with an optional after-photo, in one transaction.

    The photo is checked and decoded before a connection is taken (its public copy has no
    EXIF); it is stored on the status change's event, or not at all if the change is refused.
    ``notify`` is as for ``change_status``.
    """
    processed = (
        process_photo(photo.data, declared_type=photo.declared_type, intake=intake)
        if photo is not None
        else None
    )
    with engine.begin() as conn:
        done = change_status(
            conn,
            report_id,
            to_status,
            principal=principal,
            note=note,
            public_note=public_note,
            notify=notify,
        )
        photo_ids = []
        if processed is not None:
            photo_ids.append(
                store_photo(
                    conn,
                    report_id=report_id,
                    event_id=done.event_id,
                    content_type=processed.content_type,
                    width=processed.width,
                    height=processed.height,
                    sha256=processed.sha256,
                    public_bytes=processed.public_bytes,
                    original_bytes=processed.original_bytes,
                )
            )
        report = get_report(conn, report_id, principal)
    return WorkedReport(
        change=done, photo_ids=photo_ids, next_statuses=next_statuses(report["status"])
    )


def undo_status_change(
    conn: Connection,
    event_id: int,
    *,
    principal: Principal,
    notify: NotificationSettings | None = None,
    report_id: int | None = None,
) -> StatusChange:
    """Take back status change ``event_id``: the report's status (and ``resolved_at``) as before.

    Only the person (or key) who made the change may, only while it is the report's
    latest event and only for ``UNDO_WINDOW_S`` seconds. The undo is itself a status event
    in the audit trail, whose staff note says what it undid. What the public was to see of
    the undone change goes: its after-photos are deleted and its public note is cleared
    (kept, for staff, in the undo's ``data``). The undone change's notifications that have
    not gone out yet are deleted (a move that ends the work waits
    ``UNDO_WINDOW_S`` before its are sent, see ``change_status``); if some had already gone
    out, the undo is announced as any status change is, so nobody is left believing the
    undone one. ``notify`` is as for ``change_status``; with ``report_id`` the event must
    be one of that report's.
    """
    _require_worker(principal)
    event = conn.execute(
        text(
            "SELECT id, report_id, kind, actor, from_status, to_status, public_note, data, "
            "extract(epoch FROM now() - at) AS age_s FROM report_events WHERE id = :id"
        ),
        {"id": event_id},
    ).one_or_none()
    if (
        event is None
        or event.kind != "status"
        or (report_id is not None and event.report_id != report_id)
    ):
        raise NotFoundError(N_("There is no status change {id} of this report."), id=event_id)
    get_report(conn, event.report_id, principal)  # 404 for a report the caller may not see
    report = conn.execute(
        text("SELECT status FROM reports WHERE id = :id FOR UPDATE"), {"id": event.report_id}
    ).one()
    if event.actor != principal.actor:
        raise PermissionDeniedError(N_("Only the person who made a change may undo it."))
    latest = conn.execute(
        text(
            "SELECT id FROM report_events WHERE report_id = :id ORDER BY at DESC, id DESC LIMIT 1"
        ),
        {"id": event.report_id},
    ).scalar_one()
    if latest != event.id or report.status != event.to_status:
        raise ConflictError(
            N_("Report {id} has changed since; only its latest change can be undone."),
            id=event.report_id,
        )
    if float(event.age_s) > UNDO_WINDOW_S:
        raise ConflictError(
            N_("A change can be undone for {seconds} seconds only; this one is older."),
            seconds=UNDO_WINDOW_S,
        )
    if event.from_status == "duplicate":
        # Leaving "duplicate" dropped the link to the original; merging again restores it.
        raise ConflictError(
            N_("Report {id} was a duplicate; merge it into its original again instead."),
            id=event.report_id,
        )
    data = event.data or {}
    # What the public was to read of the undone change goes with it: its after-photos, and
    # its public note, which the undo keeps for staff.
    removed = sorted(
        int(p)
        for p in conn.execute(
            text("DELETE FROM report_photos WHERE event_id = :event RETURNING id"),
            {"event": event.id},
        ).scalars()
    )
    withdrawn: dict[str, Any] = {"undoes": event.id}
    if event.public_note:
        withdrawn["public_note"] = event.public_note
    if removed:
        withdrawn["photos_removed"] = removed
    conn.execute(
        text("UPDATE report_events SET public_note = NULL WHERE id = :event"), {"event": event.id}
    )
    undone = conn.execute(
        text(
            """
            WITH moved AS (
                UPDATE reports SET status = CAST(:back AS varchar), updated_at = now(),
                    resolved_at = CASE WHEN :restore THEN CAST(:resolved_at AS timestamptz)
                                       ELSE resolved_at END
                WHERE id = :id RETURNING id, updated_at
            )
            INSERT INTO report_events
                (report_id, at, kind, actor, from_status, to_status, note, data)
            SELECT id, updated_at, 'status', :actor, :from, CAST(:back AS varchar), :note,
                   CAST(:data AS jsonb)
            FROM moved
            RETURNING id, at
            """
        ),
        {
            "id": event.report_id,
            "back": event.from_status,
            "from": event.to_status,
            "restore": "resolved_at_before" in data,
            "resolved_at": data.get("resolved_at_before"),
            "actor": principal.actor,
            "note": f"undone: the change to {event.to_status} (event {event.id}) taken back",
            "data": json.dumps(withdrawn),
        },
    ).one()
    announced = conn.execute(
        text(
            "WITH unsent AS (DELETE FROM outbox WHERE report_id = :report "
            "AND payload ->> 'event_id' = :event AND delivered_at IS NULL AND failed_at IS NULL "
            "RETURNING id) "
            "SELECT count(*) FROM outbox WHERE report_id = :report "
            "AND payload ->> 'event_id' = :event AND id NOT IN (SELECT id FROM unsent)"
        ),
        {"report": event.report_id, "event": str(event.id)},
    ).scalar_one()
    if announced:
        enqueue_event(
            conn,
            event="report.status_changed",
            event_id=int(undone.id),
            email=notify is not None and notify.email_enabled,
        )
    return StatusChange(
        report_id=int(event.report_id),
        event_id=int(undone.id),
        from_status=event.to_status,
        to_status=event.from_status,
        at=undone.at,
    )


def _check_notes(note: str | None, public_note: str | None) -> None:
    for field, value in (("note", note), ("public_note", public_note)):
        if value is not None and len(value) > NOTE_MAX:
            raise InvalidInputError(
                field, N_("must be at most {limit:,} characters"), limit=NOTE_MAX
            )


def merge_duplicate(
    conn: Connection,
    duplicate_id: int,
    original_id: int,
    *,
    principal: Principal,
    note: str | None = None,
    public_note: str | None = None,
    notify: NotificationSettings | None = None,
) -> StatusChange:
    """Close ``duplicate_id`` as a duplicate of ``original_id``; the original gains a supporter.

    The duplicate's reporter is told by e-mail (when ``notify`` configures mail, as for
    ``change_status``) and ``report.merged`` webhooks are called, queued in the same
    transaction.
    """
    _require_worker(principal)
    _check_notes(note, public_note)
    if duplicate_id == original_id:
        raise InvalidInputError("original_id", N_("a report cannot duplicate itself"))
    get_report(conn, duplicate_id, principal)
    original = get_report(conn, original_id, principal)
    rows = {
        r.id: r
        for r in conn.execute(
            text(
                "SELECT id, status, duplicate_of FROM reports WHERE id = ANY(:ids) "
                "ORDER BY id FOR UPDATE"
            ),
            {"ids": [duplicate_id, original_id]},
        )
    }
    duplicate = rows[duplicate_id]
    if duplicate.status not in MERGEABLE:
        raise ConflictError(
            N_("Report {id} is {status}; only open work can be merged."),
            id=duplicate_id,
            status=duplicate.status,
        )
    if original["status"] == "duplicate":
        raise ConflictError(
            N_(
                "Report {id} is itself a duplicate of report {original}; "
                "merge into that one instead."
            ),
            id=original_id,
            original=original["duplicate_of"],
        )
    event = conn.execute(
        text(
            """
            WITH moved AS (
                UPDATE reports SET status = 'duplicate', duplicate_of = :original,
                    updated_at = now()
                WHERE id = :id RETURNING id, updated_at
            ), supported AS (
                UPDATE reports SET supporters = supporters + 1 WHERE id = :original
            )
            INSERT INTO report_events
                (report_id, at, kind, actor, from_status, to_status, note, public_note, data)
            SELECT id, updated_at, 'merged', :actor, :from, 'duplicate', :note, :public_note,
                   jsonb_build_object('duplicate_of', CAST(:original AS bigint))
            FROM moved
            RETURNING id, at
            """
        ),
        {
            "id": duplicate_id,
            "original": original_id,
            "from": duplicate.status,
            "actor": principal.actor,
            "note": note,
            "public_note": public_note,
        },
    ).one()
    enqueue_event(
        conn,
        event="report.merged",
        event_id=int(event.id),
        email=notify is not None and notify.email_enabled,
    )
    return StatusChange(
        report_id=duplicate_id,
        event_id=int(event.id),
        from_status=duplicate.status,
        to_status="duplicate",
        at=event.at,
    )


def report_events(conn: Connection, report_id: int, principal: Principal) -> list[dict[str, Any]]:
    """A report's audit trail, oldest first (staff only)."""
    if not principal.is_staff:
        raise PermissionDeniedError(N_("Only staff may read a report's audit trail."))
    get_report(conn, report_id, principal)
    rows = conn.execute(
        text(
            "SELECT e.id, e.at, e.kind, e.actor, e.from_status, e.to_status, e.note, "
            "e.public_note, e.data, "
            "ARRAY(SELECT p.id FROM report_photos AS p WHERE p.event_id = e.id) AS photo_ids "
            "FROM report_events AS e WHERE e.report_id = :id ORDER BY e.at, e.id"
        ),
        {"id": report_id},
    ).mappings()
    return [dict(r) for r in rows]
