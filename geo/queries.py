"""Read-side spatial queries shared by the API, the CLI and notebooks."""

from __future__ import annotations

import geopandas as gpd
from sqlalchemy import Connection, text

from geo.models import OPEN_STATUSES


def current_wards(conn: Connection, *, simplify_m: float = 5.0) -> gpd.GeoDataFrame:
    """Current wards, simplified by about ``simplify_m`` metres for display."""
    return gpd.read_postgis(
        text(
            "SELECT code, name, ST_SimplifyPreserveTopology(geom, :tol) AS geom "
            "FROM wards WHERE retired_at IS NULL ORDER BY code"
        ),
        conn,
        geom_col="geom",
        params={"tol": simplify_m / 111_000},
    )


def current_zones(conn: Connection, *, simplify_m: float = 5.0) -> gpd.GeoDataFrame:
    """Current field-team zones with their team's name, simplified for display."""
    return gpd.read_postgis(
        text(
            "SELECT z.code, z.name, t.name AS team, "
            "ST_SimplifyPreserveTopology(z.geom, :tol) AS geom "
            "FROM zones AS z JOIN teams AS t ON t.id = z.team_id "
            "WHERE z.retired_at IS NULL ORDER BY z.code"
        ),
        conn,
        geom_col="geom",
        params={"tol": simplify_m / 111_000},
    )


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
