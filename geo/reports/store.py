"""Storing reports: one routed insert at a time for intake, set-based for batches.

A report's ward, zone, team and due time are computed once, here, when it arrives, and
stored with it. Later boundary changes never touch them; ``reroute`` is the explicit,
audited way to apply new boundaries to stored reports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, Row, text

from geo.city.attention import Named
from geo.city.catalogue import require_category_id
from geo.city.coordinates import check_coordinates
from geo.city.routing import (
    _ROUTE_SELECT,
    ROUTE_ONE,
    nearest_ward_distance_m,
    single_input,
    staged_points,
    staged_route_select,
)
from geo.db.engine import Prepared, execute_prepared
from geo.errors import ConflictError, InvalidInputError, NotFoundError, OutsideServiceAreaError
from geo.i18n import N_
from geo.reports.notifications import CREATED_WEBHOOKS_SQL
from geo.settings import RoutingSettings
from geo.vocabulary import DESCRIPTION_MAX, OPEN_STATUSES, OPEN_STATUSES_SQL, REPORT_STATUSES

_REPORT_COLUMNS = (
    "category_id, description, status, created_at, updated_at, resolved_at, ward_id, "
    "ward_snapped, zone_id, team_id, due_at, source, external_id, is_demo, reporter_name, "
    "reporter_contact, address, location_source, media_url, geom"
)

# Likely duplicates: open reports of the input's category within ``dup_radius`` metres and
# ``dup_days`` days, looked up before the new report exists. ``near`` holds exactly the
# predicate of the partial index ``ix_reports_open_geom_created`` (open, not hidden) with its
# two keys (the box, the window's start), so the lookup reads only the open, recent reports
# near the point, however much closed history surrounds it. It is MATERIALIZED so the
# category test stays outside: given it too, the planner sometimes ANDed in the category
# index and read every recent report of the category.
_DUPLICATES = """
near AS MATERIALIZED (
    SELECT r.id, r.status, r.created_at, r.supporters, r.category_id, r.geom
    FROM input AS i
    JOIN reports AS r ON r.geom && ST_Expand(
        i.geom,
        i.dup_radius / (110000.0 * GREATEST(cos(radians(ST_Y(i.geom))), 0.01)),
        i.dup_radius / 110000.0)
      AND r.created_at >= i.created_at - make_interval(days => i.dup_days)
    -- The answer goes to whoever filed, so a report staff hid is never offered.
    WHERE r.status IN {open} AND r.hidden_at IS NULL
), dups AS (
    SELECT n.id, n.status, n.created_at, n.supporters, ST_Y(n.geom) AS lat, ST_X(n.geom) AS lon,
           round(ST_Distance(n.geom::geography, i.geom::geography)::numeric, 1) AS distance_m
    FROM input AS i
    JOIN near AS n ON n.category_id = i.category_id
    WHERE ST_DWithin(n.geom::geography, i.geom::geography, i.dup_radius)
    ORDER BY distance_m, n.id
    LIMIT 25
)""".replace("{open}", OPEN_STATUSES_SQL)


_DUPLICATE_INPUTS = (
    "CAST(:dup_radius AS float8) AS dup_radius",
    "CAST(:dup_days AS integer) AS dup_days",
)
_DUPLICATES_JSON = """(SELECT COALESCE(json_agg(json_build_object(
            'id', d.id, 'status', d.status, 'created_at', d.created_at,
            'supporters', d.supporters, 'distance_m', d.distance_m, 'lat', d.lat, 'lon', d.lon)
            ORDER BY d.distance_m, d.id), '[]') FROM dups AS d)"""


def _create_one(*, with_duplicates: bool) -> str:
    """The intake statement: route, store, audit and describe one report.

    It also queues the report's ``report.created`` webhook calls (``geo.reports.notifications``).
    """
    extra = _DUPLICATE_INPUTS
    dups = f",{_DUPLICATES}" if with_duplicates else ""
    dups_json = _DUPLICATES_JSON if with_duplicates else "'[]'::json"
    return f"""
WITH {single_input("code", *(extra if with_duplicates else ()))}, {ROUTE_ONE}{dups},
new AS (
    INSERT INTO reports ({_REPORT_COLUMNS}, language)
    SELECT i.category_id, :description, 'open', i.created_at, i.created_at, NULL, w.ward_id,
           w.snapped, a.zone_id, a.team_id, i.due_at, :source, :external_id, false,
           :reporter_name, :reporter_contact, :address, :location_source, :media_url, i.geom,
           :language
    FROM input AS i
    JOIN ward AS w ON true
    LEFT JOIN assignment AS a ON true
    RETURNING id, ward_id, ward_snapped, zone_id, team_id, due_at, created_at, token
), event AS (
    INSERT INTO report_events (report_id, at, kind, actor, to_status)
    SELECT id, created_at, 'created', :actor, 'open' FROM new
    RETURNING id, report_id
), {CREATED_WEBHOOKS_SQL}
SELECT new.*, w.ward_code, w.ward_name, z.code AS zone_code,
       t.code AS team_code, t.name AS team_name, {dups_json} AS duplicates
FROM new
JOIN ward AS w ON true
LEFT JOIN zones AS z ON z.id = new.zone_id
LEFT JOIN teams AS t ON t.id = new.team_id
"""


# Intake is the hot path (the single-report benchmark): its statement is prepared once per
# connection and sent without SQLAlchemy's execution machinery (``execute_prepared``).
_CREATE_ONE = {dups: Prepared.compile(_create_one(with_duplicates=dups)) for dups in (False, True)}


@dataclass(frozen=True, slots=True)
class CreatedReport:
    """What intake tells the reporter: the new id, where it was sent, what is nearby."""

    id: int
    ward_id: int
    snapped: bool
    zone_id: int | None
    team_id: int | None
    created_at: datetime
    due_at: datetime
    ward_code: str = ""
    ward_name: str = ""
    zone_code: str | None = None
    team_code: str | None = None
    team_name: str | None = None
    duplicates: tuple[dict[str, Any], ...] = ()
    token: str = ""
    """The status page's token (``/r/{token}``)."""


def create_report(
    conn: Connection,
    *,
    lon: float,
    lat: float,
    category: str,
    description: str,
    settings: RoutingSettings,
    source: str = "api",
    external_id: str | None = None,
    actor: str = "public",
    created_at: datetime | None = None,
    reporter_name: str | None = None,
    reporter_contact: str | None = None,
    address: str | None = None,
    location_source: str = "coordinates",
    media_url: str | None = None,
    duplicate_radius_m: float = 0.0,
    duplicate_window_days: int = 14,
    language: str | None = None,
) -> CreatedReport:
    """Route and store one report in a single statement; the caller commits.

    ``language`` is the one the resident reported in (``th`` or ``en``), for what they hear back.

    With ``duplicate_radius_m`` above zero the same statement also returns the open
    reports of the same category that lie that close and are at most
    ``duplicate_window_days`` old (looked up before the new report exists).

    Raises ``InvalidInputError`` for an unknown category or bad coordinates, and
    ``OutsideServiceAreaError`` when no ward takes the point. Nothing is written then.
    """
    check_coordinates(lon, lat)
    if len(description) > DESCRIPTION_MAX:
        raise InvalidInputError(
            "description", N_("must be at most {limit:,} characters"), limit=DESCRIPTION_MAX
        )
    row = execute_prepared(
        conn,
        _CREATE_ONE[duplicate_radius_m > 0],
        {
            "lon": lon,
            "lat": lat,
            "category": category,
            "description": description,
            "created_at": created_at or datetime.now(UTC),
            "source": source,
            "external_id": external_id,
            "actor": actor,
            "reporter_name": reporter_name,
            "reporter_contact": reporter_contact,
            "address": address,
            "location_source": location_source,
            "media_url": media_url,
            "dup_radius": duplicate_radius_m,
            "dup_days": duplicate_window_days,
            "snap_m": settings.snap_distance_m,
            "language": language,
        },
    )
    if row is None:
        require_category_id(conn, category)
        raise OutsideServiceAreaError(lat, lon, nearest_ward_distance_m(conn, lon=lon, lat=lat))
    return CreatedReport(
        id=row.id,
        ward_id=row.ward_id,
        snapped=row.ward_snapped,
        zone_id=row.zone_id,
        team_id=row.team_id,
        created_at=row.created_at,
        due_at=row.due_at,
        ward_code=row.ward_code,
        ward_name=row.ward_name,
        zone_code=row.zone_code,
        team_code=row.team_code,
        team_name=row.team_name,
        duplicates=tuple(row.duplicates),
        token=row.token,
    )


_PREVIEW = f"""
WITH {single_input("code", *_DUPLICATE_INPUTS)}, {ROUTE_ONE}, {_DUPLICATES}
SELECT w.ward_id, w.snapped, a.zone_id, a.team_id, i.due_at, {_DUPLICATES_JSON} AS duplicates
FROM input AS i
JOIN ward AS w ON true
LEFT JOIN assignment AS a ON true
"""


@dataclass(frozen=True, slots=True)
class ReportPreview:
    """Where a report would go and what is already open nearby, before it is stored."""

    ward_id: int
    zone_id: int | None
    team_id: int | None
    due_at: datetime
    duplicates: tuple[dict[str, Any], ...]


def preview_report(
    conn: Connection,
    *,
    lon: float,
    lat: float,
    category: str,
    settings: RoutingSettings,
    duplicate_radius_m: float,
    duplicate_window_days: int,
    created_at: datetime | None = None,
) -> ReportPreview:
    """Route a report and find its likely duplicates as ``create_report`` would, storing nothing.

    The same routing and duplicate CTEs as the intake statement, without its writes, so a
    channel that confirms before filing (a chat) shows the resident exactly what intake
    will do. Raises like ``create_report``.
    """
    check_coordinates(lon, lat)
    row = conn.execute(
        text(_PREVIEW),
        {
            "lon": lon,
            "lat": lat,
            "category": category,
            "created_at": created_at or datetime.now(UTC),
            "dup_radius": duplicate_radius_m,
            "dup_days": duplicate_window_days,
            "snap_m": settings.snap_distance_m,
        },
    ).one_or_none()
    if row is None:
        require_category_id(conn, category)
        raise OutsideServiceAreaError(lat, lon, nearest_ward_distance_m(conn, lon=lon, lat=lat))
    return ReportPreview(
        ward_id=row.ward_id,
        zone_id=row.zone_id,
        team_id=row.team_id,
        due_at=row.due_at,
        duplicates=tuple(row.duplicates),
    )


BATCH_EXTRA_COLUMNS: dict[str, str] = {
    "description": "text",
    "status": "text",
    "updated_at": "timestamptz",
    "resolved_at": "timestamptz",
    "source": "text",
    "external_id": "text",
    "is_demo": "boolean",
    "reporter_name": "text",
    "reporter_contact": "text",
    "address": "text",
    "location_source": "text",
    "media_url": "text",
}


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Outcome of a batch insert: how many were stored, and which rows were refused why."""

    inserted: int
    already_present: int
    rejected: pd.DataFrame  # index of the input frame, column "reason"


ROUTE_COLUMNS: dict[str, str] = {
    "ward_id": "int",
    "snapped": "boolean",
    "zone_id": "int",
    "team_id": "int",
    "due_at": "timestamptz",
}
"""What routing adds to a row (``geo.city.routing.route_points``), with SQL types."""


def _with_defaults(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with every ``BATCH_EXTRA_COLUMNS`` column, missing ones at their default."""
    frame = rows.copy()
    defaults: dict[str, object] = {
        "description": "",
        "status": "open",
        "resolved_at": None,
        "source": "import",
        "external_id": None,
        "is_demo": False,
        "reporter_name": None,
        "reporter_contact": None,
        "address": None,
        "location_source": "coordinates",
        "media_url": None,
    }
    for column, value in defaults.items():
        if column not in frame:
            frame[column] = value
    if "updated_at" not in frame:
        frame["updated_at"] = frame["created_at"]
    frame["idx"] = range(len(frame))
    return frame


def insert_reports(
    conn: Connection, rows: pd.DataFrame, *, settings: RoutingSettings, actor: str = "import"
) -> BatchResult:
    """Route and store many reports set-based; the caller owns the transaction.

    ``rows`` needs ``lon, lat, category_id, created_at`` and may carry any of
    ``BATCH_EXTRA_COLUMNS`` (status defaults to open, updated_at to created_at). Rows that
    lie outside the service area are not stored and come back in ``rejected``. A row whose
    ``(source, external_id)`` is already stored is skipped, so re-running an import adds
    nothing twice.
    """
    frame = _with_defaults(rows)
    with staged_points(conn, frame, extra=BATCH_EXTRA_COLUMNS) as table:
        # Set aside the rows already stored before routing, so re-running a big import
        # costs a lookup per row rather than as much as the first run.
        stored = conn.execute(
            text(
                f'DELETE FROM "{table}" AS s USING reports AS r '
                "WHERE r.source = s.source AND r.external_id = s.external_id"
            )
        ).rowcount
        counts = _insert_staged(conn, table, actor=actor, snap_m=settings.snap_distance_m)
    outside = list(counts.outside or [])
    rejected = pd.DataFrame({"reason": "outside the service area"}, index=rows.index[outside])
    return BatchResult(
        inserted=int(counts.inserted),
        already_present=stored + int(counts.routed) - int(counts.inserted),
        rejected=rejected,
    )


def insert_routed_reports(conn: Connection, rows: pd.DataFrame, *, actor: str = "import") -> int:
    """Store reports routed beforehand; return how many were stored. The caller commits.

    ``rows`` is what ``insert_reports`` takes plus the ``ROUTE_COLUMNS`` that
    ``geo.city.routing.route_points`` gives, each row with a ward. Routing may so run on
    another connection, overlapping with this one's writes. A row whose
    ``(source, external_id)`` is stored by then is skipped and not counted.
    """
    if not len(rows):
        return 0
    frame = _with_defaults(rows)
    with staged_points(conn, frame, extra=BATCH_EXTRA_COLUMNS | ROUTE_COLUMNS) as table:
        rows_sql = _INSERT_ROWS.format(rows=f'"{table}"')
        statement = f"WITH {rows_sql} SELECT count(*) FROM new"
        return int(conn.execute(text(statement), {"actor": actor}).scalar_one())


# The rows of ``{rows}``, a relation with the staged columns and ``ROUTE_COLUMNS``, stored
# with their audit trail in file order (ids follow the rows): a ``created`` event each, and
# a ``status`` event for those that arrive in another status. The unique key skips a row
# another transaction stored since it was looked up.
_INSERT_ROWS = f"""
new AS (
    INSERT INTO reports ({_REPORT_COLUMNS})
    SELECT i.category_id, i.description, i.status, i.created_at, i.updated_at,
           i.resolved_at, i.ward_id, i.snapped, i.zone_id, i.team_id, i.due_at,
           i.source, i.external_id, i.is_demo, i.reporter_name,
           i.reporter_contact, i.address, i.location_source, i.media_url,
           ST_SetSRID(ST_MakePoint(i.lon, i.lat), 4326)
    FROM {{rows}} AS i
    WHERE i.ward_id IS NOT NULL
    ORDER BY i.idx
    ON CONFLICT (source, external_id) DO NOTHING
    RETURNING id, created_at, updated_at, status
), created AS (
    INSERT INTO report_events (report_id, at, kind, actor, to_status)
    SELECT id, created_at, 'created', :actor, 'open' FROM new
), moved AS (
    INSERT INTO report_events (report_id, at, kind, actor, from_status, to_status)
    SELECT id, updated_at, 'status', :actor, 'open', status
    FROM new WHERE status <> 'open'
)"""


def _insert_staged(conn: Connection, table: str, *, actor: str, snap_m: float) -> Row[Any]:
    routed_rows = (
        f"(SELECT i.*, r.ward_id, r.snapped, r.zone_id, r.team_id, r.due_at "
        f'FROM routed AS r JOIN "{table}" AS i USING (idx))'
    )
    return conn.execute(
        text(
            f"""
            WITH routed AS ({staged_route_select(table)}),
            {_INSERT_ROWS.format(rows=routed_rows)},
            outside AS (
                SELECT idx FROM routed WHERE ward_id IS NULL
            )
            SELECT (SELECT count(*) FROM new) AS inserted,
                   (SELECT count(*) FROM routed WHERE ward_id IS NOT NULL) AS routed,
                   (SELECT array_agg(idx ORDER BY idx) FROM outside) AS outside
            """
        ),
        {"snap_m": snap_m, "actor": actor},
    ).one()


@dataclass(frozen=True, slots=True)
class TeamMove:
    """Reports a re-route moves (or would move) from one team to another.

    ``from_team`` equals ``to_team`` for reports whose ward or zone changes but not their
    team; either is None for reports without a team.
    """

    from_team: Named | None
    to_team: Named | None
    reports: int

    @property
    def team_changes(self) -> bool:
        """Whether these reports change team."""
        return self.from_team != self.to_team


@dataclass(frozen=True, slots=True)
class RerouteResult:
    """What an explicit re-route did: how many were examined, changed, or left outside.

    ``teams`` breaks ``changed`` down by the team the reports leave and the one they go
    to, the largest moves first.
    """

    examined: int
    changed: int
    outside: int
    dry_run: bool
    teams: tuple[TeamMove, ...] = ()

    @property
    def digest(self) -> str:
        """A digest of the moves, so a preview's button moves only what the preview showed."""
        moves = [
            (m.from_team and m.from_team.code, m.to_team and m.to_team.code, m.reports)
            for m in self.teams
        ]
        return hashlib.sha256(json.dumps([self.changed, moves]).encode()).hexdigest()


_REROUTE = f"""
WITH routed AS ({
    _ROUTE_SELECT.format(
        source="(SELECT id AS idx, geom, category_id, created_at FROM reports "
        "WHERE status = ANY(:statuses))"
    )
}), moves AS (
    SELECT o.id, o.ward_id AS old_ward, o.zone_id AS old_zone, o.team_id AS old_team,
           x.ward_id, x.snapped, x.zone_id, x.team_id
    FROM routed AS x JOIN reports AS o ON o.id = x.idx
    WHERE x.ward_id IS NOT NULL
      AND (o.ward_id, o.zone_id, o.team_id) IS DISTINCT FROM (x.ward_id, x.zone_id, x.team_id)
), updated AS (
    UPDATE reports AS r
    SET ward_id = m.ward_id, ward_snapped = m.snapped, zone_id = m.zone_id,
        team_id = m.team_id, updated_at = now()
    FROM moves AS m
    WHERE r.id = m.id AND NOT :dry_run
    RETURNING r.id
), logged AS (
    INSERT INTO report_events (report_id, kind, actor, note, data)
    SELECT m.id, 'rerouted', :actor, :note,
           jsonb_build_object(
               'from', jsonb_build_object('ward_id', m.old_ward, 'zone_id', m.old_zone,
                                          'team_id', m.old_team),
               'to', jsonb_build_object('ward_id', m.ward_id, 'zone_id', m.zone_id,
                                        'team_id', m.team_id))
    FROM moves AS m JOIN updated AS u ON u.id = m.id
), team_moves AS (
    SELECT old_team, team_id, count(*) AS reports FROM moves GROUP BY old_team, team_id
)
SELECT (SELECT count(*) FROM routed) AS examined,
       (SELECT count(*) FROM moves) AS changed,
       (SELECT count(*) FROM routed WHERE ward_id IS NULL) AS outside,
       (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                   'from', CASE WHEN f.id IS NOT NULL THEN jsonb_build_object(
                       'code', f.code, 'name', f.name, 'name_th', f.name_th,
                       'name_en', f.name_en) END,
                   'to', CASE WHEN t.id IS NOT NULL THEN jsonb_build_object(
                       'code', t.code, 'name', t.name, 'name_th', t.name_th,
                       'name_en', t.name_en) END,
                   'reports', m.reports)
               ORDER BY m.reports DESC, f.code, t.code), '[]'::jsonb)
        FROM team_moves AS m
        LEFT JOIN teams AS f ON f.id = m.old_team
        LEFT JOIN teams AS t ON t.id = m.team_id) AS teams
"""


def _team(value: dict[str, Any] | None) -> Named | None:
    return None if value is None else Named(**value)


def reroute_reports(
    conn: Connection,
    *,
    settings: RoutingSettings,
    statuses: tuple[str, ...] = OPEN_STATUSES,
    actor: str = "cli",
    note: str = "re-routed against the current boundaries",
    dry_run: bool = False,
) -> RerouteResult:
    """Route stored reports again against the current boundaries and routes.

    Only reports in ``statuses`` (by default the ones still being worked) are examined.
    Every report whose ward, zone or team changes gets a ``rerouted`` event holding the
    old and new assignment. Reports that fall outside every current ward keep their old
    assignment and are counted in ``outside``. With ``dry_run`` nothing is written, and
    the result's ``teams`` is the preview: from which team to which, how many reports.
    """
    unknown = set(statuses) - set(REPORT_STATUSES)
    if unknown:
        raise InvalidInputError(
            "status",
            N_("unknown status {status!r}; use one of {choices}"),
            status=sorted(unknown)[0],
            choices=", ".join(REPORT_STATUSES),
        )
    row = conn.execute(
        text(_REROUTE),
        {
            "statuses": list(statuses),
            "actor": actor,
            "note": note,
            "dry_run": dry_run,
            "snap_m": settings.snap_distance_m,
        },
    ).one()
    return RerouteResult(
        examined=int(row.examined),
        changed=int(row.changed),
        outside=int(row.outside),
        dry_run=dry_run,
        teams=tuple(
            TeamMove(_team(m["from"]), _team(m["to"]), int(m["reports"])) for m in row.teams
        ),
    )


REROUTE_CHANGED = N_(
    "The re-route has changed since its preview; nothing was moved. Check the new preview."
)


def reroute_preview(engine: Engine, *, settings: RoutingSettings) -> RerouteResult:
    """What re-routing the open reports would move (``reroute_reports`` as a dry run)."""
    with engine.connect() as conn:
        return reroute_reports(conn, settings=settings, dry_run=True)


def reroute_as_previewed(
    engine: Engine, *, settings: RoutingSettings, actor: str, digest: str
) -> RerouteResult:
    """Re-route the open reports if the moves are still those of the preview shown.

    ``digest`` is the shown preview's ``RerouteResult.digest``. Re-routes run one at a
    time; when the moves differ from the preview (reports filed, moved or re-routed
    since), ``ConflictError`` and nothing moves.
    """
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('issuemap.reroute'))"))
        if reroute_reports(conn, settings=settings, dry_run=True).digest != digest:
            raise ConflictError(REROUTE_CHANGED)
        return reroute_reports(conn, settings=settings, actor=actor)


def store_photo(
    conn: Connection,
    *,
    report_id: int,
    content_type: str,
    width: int,
    height: int,
    sha256: str,
    public_bytes: bytes,
    original_bytes: bytes,
    event_id: int | None = None,
) -> int:
    """Store a processed photo of a report (or of a status change, as an after-photo)."""
    return int(
        conn.execute(
            text(
                "INSERT INTO report_photos (report_id, event_id, content_type, width, height, "
                "sha256, public_bytes, original_bytes) VALUES (:report_id, :event_id, :ct, "
                ":w, :h, :sha, :public, :original) RETURNING id"
            ),
            {
                "report_id": report_id,
                "event_id": event_id,
                "ct": content_type,
                "w": width,
                "h": height,
                "sha": sha256,
                "public": public_bytes,
                "original": original_bytes,
            },
        ).scalar_one()
    )


def public_photo(conn: Connection, photo_id: int) -> tuple[str, bytes, int]:
    """The EXIF-free copy of a photo, its content type, and its report's id."""
    row = conn.execute(
        text("SELECT content_type, public_bytes, report_id FROM report_photos WHERE id = :id"),
        {"id": photo_id},
    ).one_or_none()
    if row is None:
        raise NotFoundError(N_("There is no photo {id}."), id=photo_id)
    return row.content_type, bytes(row.public_bytes), int(row.report_id)
