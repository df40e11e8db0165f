"""The city's current layers for display: wards, zones and their extent, simplified."""

from __future__ import annotations

import geopandas as gpd
from sqlalchemy import Connection, text


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


def current_zone(conn: Connection, code: str, *, simplify_m: float = 5.0) -> gpd.GeoDataFrame:
    """The current zone ``code``, simplified for display; empty when there is none.

    One row with ``id``, ``code``, ``name``, ``team_id`` and ``team``.
    """
    return gpd.read_postgis(
        text(
            "SELECT z.id, z.code, z.name, z.team_id, t.name AS team, "
            "ST_SimplifyPreserveTopology(z.geom, :tol) AS geom "
            "FROM zones AS z JOIN teams AS t ON t.id = z.team_id "
            "WHERE z.retired_at IS NULL AND z.code = :code"
        ),
        conn,
        geom_col="geom",
        params={"tol": simplify_m / 111_000, "code": code},
    )


def wards_meeting_zone(
    conn: Connection, zone_id: int, *, simplify_m: float = 5.0
) -> gpd.GeoDataFrame:
    """Current wards that overlap zone ``zone_id``, simplified for display."""
    return gpd.read_postgis(
        text(
            "SELECT w.code, w.name, ST_SimplifyPreserveTopology(w.geom, :tol) AS geom "
            "FROM wards AS w JOIN zones AS z ON z.id = :zone "
            "WHERE w.retired_at IS NULL AND ST_Intersects(w.geom, z.geom) "
            "AND NOT ST_Touches(w.geom, z.geom) ORDER BY w.code"
        ),
        conn,
        geom_col="geom",
        params={"tol": simplify_m / 111_000, "zone": zone_id},
    )


def city_bounds(conn: Connection) -> tuple[float, float, float, float] | None:
    """``(min_lon, min_lat, max_lon, max_lat)`` of the current wards, if there are any."""
    row = conn.execute(
        text(
            "SELECT ST_XMin(e) AS x0, ST_YMin(e) AS y0, ST_XMax(e) AS x1, ST_YMax(e) AS y1 "
            "FROM (SELECT ST_Extent(geom) AS e FROM wards WHERE retired_at IS NULL) AS b"
        )
    ).one()
    if row.x0 is None:
        return None
    return (float(row.x0), float(row.y0), float(row.x1), float(row.y1))
