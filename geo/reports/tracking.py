"""What a resident may follow of their report: the status page behind ``/r/{token}``.

The token (``reports.token``: 24 URL-safe characters, 144 random bits) is the page's only
key, never the report's id. A tracked report carries nothing private: no reporter name or
contact, no staff note, and its place on the public grid (``geo.access.policy``), the same
as every public output. A report staff have hidden is not found here.

The public timeline is the report's creation, its status changes with the note staff
wrote for the public and any after-photo, and the teams it was forwarded to (never the staff
reason); re-routing and staff notes stay in the audit trail. A status change that was undone
(``geo.reports.workflow.undo_status_change``) is not shown, nor is the undo: to the public it
never happened, while the audit trail keeps both.
The page also lists open reports nearby that may be the same problem, so the resident can
add their support to one of them instead (``support_report``), which joins their report
to it as a duplicate: the supporters of a report are the duplicates joined to it, whether
a resident or staff joined them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from geo.access.policy import ANONYMOUS, point_sql
from geo.errors import ConflictError, InvalidInputError, NotFoundError
from geo.i18n import N_
from geo.reports.intake import visible_duplicates
from geo.reports.notifications import TeamNames, enqueue_event
from geo.vocabulary import OPEN_STATUSES_SQL

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{24}")
"""A status-page token as the schema makes them (``geo.db.schema.REPORT_TOKEN_SQL``)."""

PUBLIC_EVENT_KINDS = ("created", "status", "merged", "forwarded")
"""Events a resident sees on the timeline; the others (re-routing, hiding) are staff's."""


NOT_FOUND = N_("There is no report with this address.")
"""What a malformed token, an unknown one and a hidden report all answer."""

NOT_NEARBY = N_("That report is not one of the open reports nearby.")
"""A support for a report the status page does not offer."""


def is_token(value: str) -> bool:
    """Whether ``value`` has the shape of a status-page token (checked before any query)."""
    return TOKEN_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One public event: when, the status it moved to, the public note, after-photos."""

    at: datetime
    kind: str
    status: str | None
    public_note: str | None
    photo_ids: tuple[int, ...]
    forwarded_to: TeamNames | None = None
    """The team a ``forwarded`` event passed the report to."""


@dataclass(frozen=True, slots=True)
class NearbyReport:
    """An open report near a new one that may be the same problem (never its place)."""

    id: int
    status: str
    created_at: datetime
    supporters: int
    distance_m: float
    """From the report's public place to this one's: both on the public grid."""


@dataclass(frozen=True, slots=True)
class TrackedReport:
    """A report as its status page shows it to anyone holding the token."""

    id: int
    token: str
    category: str
    category_name_th: str
    category_name_en: str
    description: str
    status: str
    created_at: datetime
    due_at: datetime
    overdue: bool
    resolved_at: datetime | None
    team_name: str | None
    team_name_th: str | None
    team_name_en: str | None
    lat: float
    lon: float
    supporters: int
    duplicate_of: int | None
    duplicate_of_status: str | None
    photo_ids: tuple[int, ...]
    timeline: tuple[TimelineEntry, ...]
    nearby: tuple[NearbyReport, ...]


_REPORT = f"""
SELECT r.id, r.token, r.status, r.created_at, r.due_at, r.resolved_at,
       (r.status IN {OPEN_STATUSES_SQL} AND r.due_at < now()) AS overdue,
       r.description, r.supporters, r.duplicate_of, o.status AS duplicate_of_status,
       c.code AS category, c.name_th AS category_name_th, c.name_en AS category_name_en,
       t.name AS team_name, t.name_th AS team_name_th, t.name_en AS team_name_en,
       {{lat}} AS lat, {{lon}} AS lon,
       ARRAY(SELECT p.id FROM report_photos AS p
             WHERE p.report_id = r.id AND p.event_id IS NULL ORDER BY p.id) AS photo_ids
FROM reports AS r
JOIN categories AS c ON c.id = r.category_id
LEFT JOIN teams AS t ON t.id = r.team_id
LEFT JOIN reports AS o ON o.id = r.duplicate_of AND o.hidden_at IS NULL
WHERE r.token = :token AND r.hidden_at IS NULL
"""

_TIMELINE = """
SELECT e.id, CAST(e.data ->> 'undoes' AS bigint) AS undoes, e.at, e.kind, e.to_status,
       e.public_note,
       ARRAY(SELECT p.id FROM report_photos AS p WHERE p.event_id = e.id ORDER BY p.id)
           AS photo_ids,
       t.code AS team_code, t.name AS team_name, t.name_th AS team_name_th,
       t.name_en AS team_name_en
FROM report_events AS e
LEFT JOIN teams AS t ON e.kind = 'forwarded' AND t.id = CAST(e.data ->> 'to_team_id' AS integer)
WHERE e.report_id = :id AND e.kind = ANY(:kinds)
ORDER BY e.at, e.id
"""

# Open reports of the same category filed before this one, close to it and recent: the
# likely duplicates intake found when it stored it (``geo.reports.store``), as they are now.
_NEARBY = f"""
SELECT n.id, n.status, n.created_at, n.supporters, ST_Y(n.geom) AS lat, ST_X(n.geom) AS lon,
       round(ST_Distance(n.geom::geography, r.geom::geography)::numeric, 1) AS distance_m
FROM reports AS r
JOIN reports AS n ON n.category_id = r.category_id AND n.id < r.id
WHERE r.id = :id
  AND n.status IN {OPEN_STATUSES_SQL}
  AND n.hidden_at IS NULL
  AND n.created_at >= r.created_at - make_interval(days => :days)
  AND ST_DWithin(n.geom::geography, r.geom::geography, :radius)
  AND (CAST(:target AS bigint) IS NULL OR n.id = CAST(:target AS bigint))
ORDER BY distance_m, n.id
LIMIT 25
"""


def track_report(
    conn: Connection,
    token: str,
    *,
    public_rounding_m: float,
    duplicate_radius_m: float,
    duplicate_window_days: int,
) -> TrackedReport:
    """The report behind status-page ``token`` as the public may see it.

    While the report is still open and untouched, ``nearby`` lists the open reports close
    to it that may be the same problem (``duplicate_radius_m``, ``duplicate_window_days``:
    ``IntakeSettings``), their distance measured between public places so the page never
    tells more about either place than the public map does. Raises ``NotFoundError`` for
    a malformed or unknown token and for a hidden report, alike.
    """
    if not is_token(token):
        raise NotFoundError(NOT_FOUND)
    point = point_sql(ANONYMOUS, public_rounding_m=public_rounding_m)
    row = (
        conn.execute(
            text(_REPORT.format(lat=point.lat, lon=point.lon)), point.params | {"token": token}
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise NotFoundError(NOT_FOUND)
    nearby: tuple[NearbyReport, ...] = ()
    if row["status"] == "open":
        nearby = _nearby(
            conn,
            int(row["id"]),
            lat=float(row["lat"]),
            lon=float(row["lon"]),
            public_rounding_m=public_rounding_m,
            radius_m=duplicate_radius_m,
            window_days=duplicate_window_days,
        )
    return TrackedReport(
        id=int(row["id"]),
        token=row["token"],
        category=row["category"],
        category_name_th=row["category_name_th"],
        category_name_en=row["category_name_en"],
        description=row["description"] or "",
        status=row["status"],
        created_at=row["created_at"],
        due_at=row["due_at"],
        overdue=bool(row["overdue"]),
        resolved_at=row["resolved_at"],
        team_name=row["team_name"],
        team_name_th=row["team_name_th"],
        team_name_en=row["team_name_en"],
        lat=float(row["lat"]),
        lon=float(row["lon"]),
        supporters=int(row["supporters"]),
        duplicate_of=row["duplicate_of"] if row["duplicate_of_status"] is not None else None,
        duplicate_of_status=row["duplicate_of_status"],
        photo_ids=tuple(row["photo_ids"]),
        timeline=public_timeline(conn, int(row["id"])),
        nearby=nearby,
    )


def _undone(rows: list[Any]) -> set[int]:
    """Ids of the events an undo took back and of the undos themselves.

    Read newest first (an undo's id is always its change's plus some), so an undo that was
    itself undone takes nothing back: the change it undid stands again.
    """
    gone: set[int] = set()
    for r in sorted(rows, key=lambda r: int(r["id"]), reverse=True):
        if r["undoes"] is not None:
            if r["id"] not in gone:
                gone.add(int(r["undoes"]))
            gone.add(int(r["id"]))
    return gone


def public_timeline(conn: Connection, report_id: int) -> tuple[TimelineEntry, ...]:
    """A report's public events, oldest first: no actors, no staff notes, nothing undone."""
    rows = list(
        conn.execute(
            text(_TIMELINE), {"id": report_id, "kinds": list(PUBLIC_EVENT_KINDS)}
        ).mappings()
    )
    gone = _undone(rows)
    return tuple(
        TimelineEntry(
            at=r["at"],
            kind=r["kind"],
            status=r["to_status"],
            public_note=r["public_note"],
            photo_ids=tuple(r["photo_ids"]),
            forwarded_to=(
                TeamNames(r["team_code"], r["team_name"], r["team_name_th"], r["team_name_en"])
                if r["team_code"] is not None
                else None
            ),
        )
        for r in rows
        if r["id"] not in gone
    )


def public_record(conn: Connection, report_id: int) -> dict[str, Any]:
    """What a report's readers learn of its progress: public notes and after-photo ids.

    ``public_notes`` are the public notes of its status changes, oldest first, each with
    the status it moved to; ``after_photo_ids`` the photos staff attached to those changes.
    """
    timeline = public_timeline(conn, report_id)
    return {
        "public_notes": [
            {"at": e.at, "status": e.status, "note": e.public_note}
            for e in timeline
            if e.public_note
        ],
        "after_photo_ids": [i for e in timeline for i in e.photo_ids],
    }


def _nearby(
    conn: Connection,
    report_id: int,
    *,
    lat: float,
    lon: float,
    public_rounding_m: float,
    radius_m: float,
    window_days: int,
    target: int | None = None,
) -> tuple[NearbyReport, ...]:
    """Open reports near ``report_id`` (public place ``lat``, ``lon``) that may be the same."""
    found = tuple(
        dict(r)
        for r in conn.execute(
            text(_NEARBY),
            {"id": report_id, "days": window_days, "radius": radius_m, "target": target},
        ).mappings()
    )
    # Measured from the report's public place, not its exact one: anyone with the link
    # may read this page, and distances from an exact place to known ones give it away.
    grid = max(public_rounding_m, 0.0)
    shown = visible_duplicates(found, lat=lat, lon=lon, grid_m=grid)
    return tuple(
        NearbyReport(
            id=int(d["id"]),
            status=d["status"],
            created_at=d["created_at"],
            supporters=int(d["supporters"]),
            distance_m=float(d["distance_m"]),
        )
        for d in shown
    )


def support_report(
    conn: Connection,
    token: str,
    original_id: int,
    *,
    public_rounding_m: float,
    duplicate_radius_m: float,
    duplicate_window_days: int,
) -> int:
    """The resident of ``token`` supports ``original_id`` instead: return its supporters.

    Their report is joined to the original as a duplicate, the original gains a supporter,
    and the change is logged as a ``merged`` event by the reporter, just as staff would
    merge it. Only a report still open and untouched can be joined, and only to one of the
    nearby open reports its status page offers; anything else is refused, naming the field.
    A second press of the button finds the report already joined and changes nothing.
    The caller commits.
    """
    if not is_token(token):
        raise NotFoundError(NOT_FOUND)
    row = conn.execute(
        text(
            "SELECT id, status, duplicate_of FROM reports "
            "WHERE token = :token AND hidden_at IS NULL FOR UPDATE"
        ),
        {"token": token},
    ).one_or_none()
    if row is None:
        raise NotFoundError(NOT_FOUND)
    if row.status == "duplicate" and row.duplicate_of == original_id:
        supporters = conn.execute(
            text("SELECT supporters FROM reports WHERE id = :id"), {"id": original_id}
        ).scalar_one()
        return int(supporters)
    if row.status != "open":
        raise ConflictError(N_("This report is already being handled, so it cannot be joined now."))
    place = point_sql(ANONYMOUS, public_rounding_m=public_rounding_m)
    here = conn.execute(
        text(f"SELECT {place.lat} AS lat, {place.lon} AS lon FROM reports AS r WHERE r.id = :id"),
        place.params | {"id": row.id},
    ).one()
    offered = _nearby(
        conn,
        int(row.id),
        lat=float(here.lat),
        lon=float(here.lon),
        public_rounding_m=public_rounding_m,
        radius_m=duplicate_radius_m,
        window_days=duplicate_window_days,
        target=original_id,
    )
    if not offered:
        raise InvalidInputError("report_id", NOT_NEARBY)
    supported = conn.execute(
        text(
            """
            WITH original AS (
                UPDATE reports SET supporters = supporters + 1
                WHERE id = :original AND status IN """
            + OPEN_STATUSES_SQL
            + """
                RETURNING id, supporters
            ), moved AS (
                UPDATE reports SET status = 'duplicate', duplicate_of = :original,
                    updated_at = now()
                WHERE id = :id AND EXISTS (SELECT 1 FROM original)
                RETURNING id, updated_at
            ), logged AS (
                INSERT INTO report_events (report_id, at, kind, actor, from_status, to_status,
                                           data)
                SELECT id, updated_at, 'merged', 'public', 'open', 'duplicate',
                       jsonb_build_object('duplicate_of', CAST(:original AS bigint),
                                          'by', 'reporter')
                FROM moved
                RETURNING id
            )
            SELECT o.supporters, (SELECT id FROM logged) AS event_id FROM original AS o
            """
        ),
        {"id": row.id, "original": original_id},
    ).one_or_none()
    if supported is None:
        raise ConflictError(N_("That report is no longer open; your report stays as it is."))
    # Webhooks hear of the join as of any merge; the resident who pressed the button needs
    # no mail about it, so none is queued.
    enqueue_event(conn, event="report.merged", event_id=int(supported.event_id), email=False)
    return int(supported.supporters)
