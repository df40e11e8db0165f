"""Finding reports: one filter, one visibility rule, one column list for every reader.

The native API, the Open311 endpoint, the exports and the team queues all read reports
through ``report_query``, so a filter or a privacy rule means the same thing everywhere.
Public readers never get the reporter's name or contact: those columns are simply not
selected unless the caller may see them. Locations follow ``geo.access.policy``: the public reads
them snapped to the public grid, and its bounding boxes are tested on the snapped points.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, TextClause, text

from geo.access.policy import (
    DEFAULT_PUBLIC_ROUNDING_M,
    Principal,
    bbox_sql,
    point_sql,
    sees_hidden,
    sees_private_fields,
    visibility_sql,
)
from geo.city.coordinates import check_bbox
from geo.errors import InvalidInputError, NotFoundError
from geo.i18n import N_
from geo.vocabulary import OPEN_STATUSES, OPEN_STATUSES_SQL, REPORT_STATUSES

_COLUMNS = """
    r.id, c.code AS category, c.name_th AS category_name_th, c.name_en AS category_name_en,
    r.description, r.status, r.created_at, r.updated_at, r.resolved_at, r.due_at,
    (r.status IN {open} AND r.due_at < now())
        AS overdue,
    r.ward_id, w.code AS ward_code, w.name AS ward_name, r.ward_snapped,
    r.zone_id, z.code AS zone_code, r.team_id, t.code AS team_code, t.name AS team_name,
    {lat} AS lat, {lon} AS lon, r.address, r.location_source, r.media_url,
    r.source, r.external_id, r.supporters, r.duplicate_of, r.is_demo,
    ARRAY(SELECT p.id FROM report_photos AS p
          WHERE p.report_id = r.id AND p.event_id IS NULL ORDER BY p.id) AS photo_ids
""".replace("{open}", OPEN_STATUSES_SQL)
_PRIVATE_COLUMNS = ", r.reporter_name, r.reporter_contact"
"""Columns only staff who may see the report get."""
_HIDDEN_COLUMNS = ", r.hidden_at, r.hidden_reason"
"""When and why staff hid the report from the public (``None`` if shown): staff only."""


def report_columns_sql(
    principal: Principal, *, public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M
) -> tuple[str, dict[str, Any]]:
    """The select list of a report as ``principal`` may see it, and its bound values."""
    point = point_sql(principal, public_rounding_m=public_rounding_m)
    columns = _COLUMNS.format(lat=point.lat, lon=point.lon)
    if sees_private_fields(principal):
        columns += _PRIVATE_COLUMNS
    if sees_hidden(principal):
        columns += _HIDDEN_COLUMNS
    return columns, point.params


_LOOKUPS = """
JOIN categories AS c ON c.id = r.category_id
LEFT JOIN wards AS w ON w.id = r.ward_id
LEFT JOIN zones AS z ON z.id = r.zone_id
LEFT JOIN teams AS t ON t.id = r.team_id
"""
REPORTS_FROM = "\nFROM reports AS r" + _LOOKUPS
"""Reports (``r``) with their category, ward, zone and team, as every reader joins them."""

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """What to select. Empty tuples and ``None`` mean "any"."""

    bbox: tuple[float, float, float, float] | None = None  # min lon, min lat, max lon, max lat
    ids: tuple[int, ...] = ()
    ward_ids: tuple[int, ...] = ()
    zone_ids: tuple[int, ...] = ()
    team_ids: tuple[int, ...] = ()
    categories: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None

    def __post_init__(self) -> None:
        """Refuse contradictory or out-of-range filters, naming the parameter."""
        if self.bbox is not None:
            check_bbox(self.bbox)
        unknown = set(self.statuses) - set(REPORT_STATUSES)
        if unknown:
            raise InvalidInputError(
                "status",
                N_("unknown status {status!r}; use one of {choices}"),
                status=sorted(unknown)[0],
                choices=", ".join(REPORT_STATUSES),
            )
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise InvalidInputError("created_to", N_("must not be earlier than created_from"))


def where_clauses(
    flt: ReportFilter,
    principal: Principal,
    *,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions and bound parameters for ``flt`` as ``principal`` may see it.

    Every reader of reports (lists, exports, heat grids, analysis) builds on these, over
    ``REPORTS_FROM``, so a filter or a visibility rule means the same thing everywhere.
    The bounding box is tested on the location as ``principal`` sees it (``geo.access.policy``).
    """
    clauses, params = visibility_sql(principal)
    if flt.bbox is not None:
        box, box_params = bbox_sql(principal, flt.bbox, public_rounding_m=public_rounding_m)
        clauses += box
        params |= box_params
    for name, column, values in (
        ("ids", "r.id", flt.ids),
        ("ward_ids", "r.ward_id", flt.ward_ids),
        ("zone_ids", "r.zone_id", flt.zone_ids),
        ("team_ids", "r.team_id", flt.team_ids),
        ("categories", "c.code", flt.categories),
        ("statuses", "r.status", flt.statuses),
    ):
        if values:
            clauses.append(f"{column} = ANY(:{name})")
            params[name] = list(values)
    if flt.created_from is not None:
        clauses.append("r.created_at >= :created_from")
        params["created_from"] = flt.created_from
    if flt.created_to is not None:
        clauses.append("r.created_at <= :created_to")
        params["created_to"] = flt.created_to
    return clauses, params


def select_sql(
    select: str,
    flt: ReportFilter,
    principal: Principal,
    *,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> tuple[str, dict[str, Any]]:
    """``SELECT select`` over ``REPORTS_FROM`` limited to what ``flt`` selects for ``principal``.

    Unordered; ``select`` may use the aliases of ``REPORTS_FROM``.
    """
    clauses, params = where_clauses(flt, principal, public_rounding_m=public_rounding_m)
    sql = f"SELECT {select} {REPORTS_FROM}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql, params


_ORDERS = {"id": "r.id", "due": "r.due_at, r.id", "newest": "r.created_at DESC, r.id DESC"}


def report_query(
    flt: ReportFilter,
    principal: Principal,
    *,
    limit: int | None = None,
    after_id: int | None = None,
    order: str = "id",
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> tuple[TextClause, dict[str, Any]]:
    """The SELECT for ``flt`` as ``principal`` may see it, paged by id after ``after_id``.

    ``public_rounding_m`` is the public location grid (``PrivacySettings``).
    With a ``limit``, the page's reports are chosen first, on ``reports`` itself, and only
    they are joined and shaped: joined first, every match was looked up in wards, zones
    and teams and had its photos listed before the sort kept ``limit`` of them.
    """
    clauses, params = where_clauses(flt, principal, public_rounding_m=public_rounding_m)
    if after_id is not None:
        clauses.append("r.id > :after_id")
        params["after_id"] = after_id
    columns, column_params = report_columns_sql(principal, public_rounding_m=public_rounding_m)
    params |= column_params
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    if limit is None:
        sql = f"SELECT {columns} {REPORTS_FROM}{where} ORDER BY {_ORDERS[order]}"
    else:
        # Every report has a category, so the join inside (for a category filter) keeps
        # the same rows.
        page = (
            "SELECT r.* FROM reports AS r JOIN categories AS c ON c.id = r.category_id"
            f"{where} ORDER BY {_ORDERS[order]} LIMIT :limit"
        )
        sql = f"SELECT {columns} FROM ({page}) AS r {_LOOKUPS} ORDER BY {_ORDERS[order]}"
        params["limit"] = limit
    return text(sql), params


def find_reports(
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    *,
    limit: int = 100,
    after_id: int | None = None,
    order: str = "id",
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> list[dict[str, Any]]:
    """One page of reports as plain dicts."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError("limit", N_("must be between 1 and {limit}"), limit=MAX_PAGE)
    query, params = report_query(
        flt,
        principal,
        limit=limit,
        after_id=after_id,
        order=order,
        public_rounding_m=public_rounding_m,
    )
    return [dict(row) for row in conn.execute(query, params).mappings()]


def stream_reports(
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    *,
    batch: int = 5000,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> Iterator[dict[str, Any]]:
    """Every matching report, fetched in batches through a server-side cursor."""
    query, params = report_query(flt, principal, public_rounding_m=public_rounding_m)
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(query, params)
    for row in result.mappings():
        yield dict(row)


def get_report(
    conn: Connection,
    report_id: int,
    principal: Principal,
    *,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> dict[str, Any]:
    """One report; a report the caller may not see is reported as missing (404)."""
    rows = find_reports(
        conn,
        ReportFilter(ids=(report_id,)),
        principal,
        limit=1,
        public_rounding_m=public_rounding_m,
    )
    if not rows:
        raise NotFoundError(N_("There is no report {id}."), id=report_id)
    return rows[0]


def team_queue(
    conn: Connection, team_id: int, principal: Principal, *, limit: int = 100
) -> list[dict[str, Any]]:
    """A team's open work, soonest due first."""
    flt = ReportFilter(team_ids=(team_id,), statuses=OPEN_STATUSES)
    return find_reports(conn, flt, principal, limit=limit, order="due")
