"""What the map pages show, read from the database: markers, ward measures, heat."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import geopandas as gpd
from sqlalchemy import Connection, text

from geo.access.keys import Principal
from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, point_sql

# Map markers filter exactly as report lists do: one WHERE clause for every reader.
from geo.reports.search import REPORTS_FROM, ReportFilter, where_clauses
from geo.vocabulary import OPEN_STATUSES


def open_report_heat(
    conn: Connection, *, cell_m: float = 100.0
) -> list[tuple[float, float, float]]:
    """Open reports counted on a square grid of about ``cell_m`` metres: (lat, lon, count).

    Aggregating in PostGIS keeps the page size bounded by the number of cells, not reports.
    """
    rows = conn.execute(
        text(
            "SELECT ST_Y(cell) AS lat, ST_X(cell) AS lon, n FROM ("
            "  SELECT ST_SnapToGrid(geom, :size) AS cell, count(*) AS n FROM reports"
            "  WHERE status = ANY(:statuses) GROUP BY 1) AS g"
        ),
        {"size": cell_m / 111_000, "statuses": list(OPEN_STATUSES)},
    ).all()
    return [(float(r.lat), float(r.lon), float(r.n)) for r in rows]


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
    """Current wards with their report measures over reports created in the window.

    ``count`` of reports, ``sla`` (share of resolved reports resolved by their due time)
    and ``median_hours`` from creation to resolution.
    """
    return gpd.read_postgis(
        text(
            "SELECT w.code, w.name, ST_SimplifyPreserveTopology(w.geom, :tol) AS geom, "
            "  coalesce(s.n, 0) AS count, s.sla, s.median_hours "
            "FROM wards AS w LEFT JOIN ("
            "  SELECT r.ward_id, count(*) AS n,"
            "    avg((r.resolved_at <= r.due_at)::int) FILTER (WHERE r.resolved_at IS NOT NULL)"
            "      AS sla,"
            "    percentile_cont(0.5) WITHIN GROUP (ORDER BY"
            "      extract(epoch FROM r.resolved_at - r.created_at) / 3600)"
            "      FILTER (WHERE r.resolved_at IS NOT NULL) AS median_hours"
            "  FROM reports AS r"
            "  WHERE (CAST(:start AS timestamptz) IS NULL OR r.created_at >= :start)"
            "    AND (CAST(:end AS timestamptz) IS NULL OR r.created_at <= :end)"
            "  GROUP BY r.ward_id) AS s ON s.ward_id = w.id "
            "WHERE w.retired_at IS NULL ORDER BY w.code"
        ),
        conn,
        geom_col="geom",
        params={"tol": simplify_m / 111_000, "start": created_from, "end": created_to},
    )
