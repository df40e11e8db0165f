"""Forwarding: a crew or a dispatcher sends a report to another team, saying why.

As Traffy Fondue's "ส่งต่อ": the report is not ours, another team must work it. The new team
owns it from then on (``reports.team_id``); its status and due time stay as they were. The
move is a ``report_events`` row of kind ``forwarded`` naming the person, the staff reason
(``note``, staff only), an optional ``public_note``, and ``data`` holding the teams' codes
(``from_team``, ``to_team``) and the ids a live stream needs to move the report between the
lists and maps watching it (``from_team_id``, ``to_team_id``, ``from_zone_id``, ``to_zone_id``).

The zone becomes the one intake routing would have given a report a city-wide category
route sends to the new team (``geo.city.routing``, rule 2b): that team's current zone
covering the report's point (the first code on ties), else none. So the report leaves the
old team's zone map and queue, appears in the new team's queue (which is by team) and on
its zone map when the place is in one of its zones, and the old crew, who no longer own it,
no longer see it through their zone either. A zone that does not cover the point is never
given: zone maps and zone measures count the reports lying in the zone.

The reporter hears of it through the outbox (``report.forwarded``: e-mail, their chat, and
webhooks subscribed to it), told the new team's name in their language and the public note
if staff wrote one, never the staff reason, which may hold private details.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from geo.access.policy import Principal, is_field_team, may_work_reports
from geo.errors import ConflictError, InvalidInputError, PermissionDeniedError
from geo.i18n import N_
from geo.reports.moderation import check_reason
from geo.reports.notifications import enqueue_event
from geo.reports.search import get_report
from geo.settings import NotificationSettings
from geo.vocabulary import CODE_MAX, OPEN_STATUSES

FORWARDED_EVENT = "report.forwarded"
"""The outbox and webhook event a forward is announced as."""


@dataclass(frozen=True, slots=True)
class Forwarded:
    """A recorded forward: the report, the audit event, the teams' codes and the new zone."""

    report_id: int
    event_id: int
    from_team: str | None
    """The team that had it; ``None`` for a report that was waiting, unassigned."""
    to_team: str
    zone_id: int | None
    at: datetime


def _check_team_code(code: str) -> str:
    if not code.strip():
        raise InvalidInputError("team", N_("choose the team to send the report to"))
    if "\x00" in code:
        raise InvalidInputError("team", N_("must not contain NUL characters"))
    if len(code) > CODE_MAX:
        raise InvalidInputError("team", N_("must be at most {limit:,} characters"), limit=CODE_MAX)
    return code.strip()


def forward_report(
    conn: Connection,
    report_id: int,
    *,
    to_team: str,
    reason: str,
    principal: Principal,
    notify: NotificationSettings | None,
    public_note: str | None = None,
) -> Forwarded:
    """Send open report ``report_id`` to the team with code ``to_team``, saying why.

    Field teams forward the reports their team owns, administrators any report; planners
    only look, and the public may not (``PermissionDeniedError``). A report the caller may
    not see is missing (``NotFoundError``). ``reason`` is required and stays in the staff
    audit trail; ``public_note`` (optional) is what the reporter and the public read. An
    unknown team, the team that has it already, an empty, too long or NUL-holding reason
    or note are ``InvalidInputError`` naming the field; a report that is not open work is a
    ``ConflictError``. Nothing is written unless the forward is made.

    Done in ``conn``'s transaction, the report's row locked: the new team and zone, the
    audit event and the reporter's notifications (``notify`` as for
    ``geo.reports.workflow.change_status``: without mail settings no e-mail is queued)
    commit together.
    """
    if not may_work_reports(principal):
        raise PermissionDeniedError(
            N_("Only field teams and administrators may send a report to another team.")
        )
    staff_reason = check_reason(
        reason, required=True, missing=N_("say why the report goes to another team")
    )
    note = check_reason(public_note, required=False, field="public_note")
    code = _check_team_code(to_team)
    get_report(conn, report_id, principal)  # 404 for a report the caller may not see
    current = conn.execute(
        text(
            "SELECT r.status, r.team_id, r.zone_id, t.code AS team_code "
            "FROM reports AS r LEFT JOIN teams AS t ON t.id = r.team_id "
            "WHERE r.id = :id FOR UPDATE OF r"
        ),
        {"id": report_id},
    ).one()
    if is_field_team(principal) and current.team_id != principal.team_id:
        # Seen through the crew's zone, but routed to another team (a category route).
        raise PermissionDeniedError(
            N_("Report {id} belongs to another team; only its own team may send it on."),
            id=report_id,
        )
    if current.status not in OPEN_STATUSES:
        raise ConflictError(
            N_("Report {id} is {status}; only open work can be sent to another team."),
            id=report_id,
            status=current.status,
        )
    team = conn.execute(
        text("SELECT id, code FROM teams WHERE code = :code"), {"code": code}
    ).one_or_none()
    if team is None:
        raise InvalidInputError("team", N_("there is no team {code!r}"), code=code)
    if team.id == current.team_id:
        raise InvalidInputError(
            "team", N_("report {id} is with team {code} already"), id=report_id, code=code
        )
    row = conn.execute(
        text(
            """
            WITH zone AS (
                -- Routing's rule 2b: the new team's current zone covering the point.
                SELECT z.id FROM reports AS r
                JOIN zones AS z ON z.team_id = :team AND z.retired_at IS NULL
                               AND ST_Covers(z.geom, r.geom)
                WHERE r.id = :id
                ORDER BY z.code COLLATE "C" LIMIT 1
            ), moved AS (
                UPDATE reports SET team_id = :team, zone_id = (SELECT id FROM zone),
                    updated_at = now()
                WHERE id = :id RETURNING id, zone_id, updated_at
            )
            INSERT INTO report_events
                (report_id, at, kind, actor, from_status, to_status, note, public_note, data)
            SELECT id, updated_at, 'forwarded', :actor, :status, :status, :note, :public_note,
                   jsonb_build_object(
                       'from_team', CAST(:from_code AS text),
                       'to_team', CAST(:to_code AS text),
                       'from_team_id', CAST(:from_team AS integer),
                       'to_team_id', CAST(:team AS integer),
                       'from_zone_id', CAST(:from_zone AS integer),
                       'to_zone_id', zone_id)
            FROM moved
            RETURNING id, at, CAST(data ->> 'to_zone_id' AS integer) AS zone_id
            """
        ),
        {
            "id": report_id,
            "team": team.id,
            "actor": principal.actor,
            "status": current.status,
            "note": staff_reason,
            "public_note": note,
            "from_code": current.team_code,
            "to_code": team.code,
            "from_team": current.team_id,
            "from_zone": current.zone_id,
        },
    ).one()
    enqueue_event(
        conn,
        event=FORWARDED_EVENT,
        event_id=int(row.id),
        email=notify is not None and notify.email_enabled,
    )
    return Forwarded(
        report_id=report_id,
        event_id=int(row.id),
        from_team=current.team_code,
        to_team=team.code,
        zone_id=row.zone_id,
        at=row.at,
    )
