"""What the map pages show, read from the database: markers and ward measures.

Heat cells are ``geo.maps.heat``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import geopandas as gpd
from sqlalchemy import Connection, text

from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, Principal, point_sql

# Map markers filter exactly as report lists do: one WHERE clause for every reader.
from geo.reports.search import REPORTS_FROM, ReportFilter, where_clauses
from geo.reports.stats import ward_report_measures
from geo.vocabulary import OPEN_STATUSES


def map_reports(
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    *,
    limit: int,
    offset: int = 0,
    description_chars: int = 160,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> tuple[list[dict[str, Any]], int]:
    """One page of markers for ``flt`` as ``principal`` may see it, and how many match.

    Most urgent first (overdue, then by due time). Only the columns a marker shows are
    read; the description only for staff, cut to ``description_chars``; locations as
    ``geo.access.policy`` lets ``principal`` see them.
    """
    clauses, params = where_clauses(flt, principal, public_rounding_m=public_rounding_m)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    description = "left(r.description, :chars)" if principal.is_staff else "''"
    point = point_sql(principal, public_rounding_m=public_rounding_m)
    params = params | point.params
    rows = conn.execute(
        text(
            f"SELECT r.id, {point.lat} AS lat, {point.lon} AS lon, c.code AS category, "
            f"r.status, r.created_at, r.due_at, {description} AS description, "
            f"(r.status = ANY(:open_statuses) AND r.due_at < now()) AS overdue "
            f"{REPORTS_FROM}{where} ORDER BY r.due_at, r.id LIMIT :limit OFFSET :offset"
        ),
        params
        | {
            "chars": description_chars,
            "open_statuses": list(OPEN_STATUSES),
            "limit": limit,
            "offset": offset,
        },
    ).all()
    total = conn.execute(text(f"SELECT count(*) {REPORTS_FROM}{where}"), params).scalar_one()
    return [dict(r._mapping) for r in rows], int(total)


def ward_measures(
    conn: Connection,
    *,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    simplify_m: float = 5.0,
) -> gpd.GeoDataFrame:
    """The ward dashboard's wards: ``ward_report_measures`` over reports created in the window.

    Adds the dashboard's measures under the names its ``measure`` parameter takes:
    ``count`` (reports), ``sla`` (``within_sla_share``) and ``median_hours``
    (``median_hours_to_resolve``).
    """
    frame = ward_report_measures(
        conn,
        ReportFilter(created_from=created_from, created_to=created_to),
        simplify_m=simplify_m,
    )
    return frame.assign(
        count=frame["reports"],
        sla=frame["within_sla_share"],
        median_hours=frame["median_hours_to_resolve"],
    )
