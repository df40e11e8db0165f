"""The city's current layers for display: wards, zones and their extent, simplified.

Each layer's ``name`` (and a zone's ``team``) is the name as given, or with ``lang`` the
name a reader in that language sees (``geo.city.catalogue.display_name``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import shapely
from sqlalchemy import Connection, text

from geo.city.catalogue import display_name

_NAMES = "{t}.name, {t}.name_th, {t}.name_en"
_TEAM_NAMES = "t.name AS team, t.name_th AS team_th, t.name_en AS team_en"
_MEETS_ZONE = (
    "JOIN zones AS z ON z.id = :zone WHERE w.retired_at IS NULL "
    "AND ST_Intersects(w.geom, z.geom) AND NOT ST_Touches(w.geom, z.geom)"
)
"""Wards that share area with zone ``:zone`` (``w``), not those that only touch its edge."""


def _layer(
    conn: Connection, sql: str, params: Mapping[str, Any], lang: str | None
) -> gpd.GeoDataFrame:
    """The rows of ``sql`` as a frame with geometry ``geom``, named for readers of ``lang``.

    ``name`` (and ``team``) become the names readers of ``lang`` see, and the per-language
    columns are dropped. Read with one statement and built column by column: a map page
    reads a layer of one zone and its few wards, for which ``geopandas.read_postgis``
    spent more time in pandas than the database spent finding them.
    """
    result = conn.execute(text(sql), dict(params))
    names = list(result.keys())
    rows = result.all()
    data: dict[str, Any] = {
        name: [row[i] for row in rows] for i, name in enumerate(names) if name != "geom"
    }
    for column, th, en in (("name", "name_th", "name_en"), ("team", "team_th", "team_en")):
        if column not in data:
            continue
        if lang is not None:
            data[column] = [
                display_name(lang, name=n, name_th=a, name_en=b)
                for n, a, b in zip(data[column], data[th], data[en], strict=True)
            ]
        del data[th], data[en]
    at = names.index("geom")
    geom = shapely.from_wkb([row[at] for row in rows])
    return gpd.GeoDataFrame(data | {"geom": geom}, geometry="geom", crs="EPSG:4326")


def current_wards(
    conn: Connection, *, simplify_m: float = 5.0, lang: str | None = None
) -> gpd.GeoDataFrame:
    """Current wards, simplified by about ``simplify_m`` metres for display."""
    return _layer(
        conn,
        (
            f"SELECT code, {_NAMES.format(t='wards')}, "
            "ST_SimplifyPreserveTopology(geom, :tol) AS geom "
            "FROM wards WHERE retired_at IS NULL ORDER BY code"
        ),
        {"tol": simplify_m / 111_000},
        lang,
    )


def current_zones(
    conn: Connection, *, simplify_m: float = 5.0, lang: str | None = None
) -> gpd.GeoDataFrame:
    """Current field-team zones with their team's name, simplified for display."""
    return _layer(
        conn,
        (
            f"SELECT z.code, {_NAMES.format(t='z')}, {_TEAM_NAMES}, "
            "ST_SimplifyPreserveTopology(z.geom, :tol) AS geom "
            "FROM zones AS z JOIN teams AS t ON t.id = z.team_id "
            "WHERE z.retired_at IS NULL ORDER BY z.code"
        ),
        {"tol": simplify_m / 111_000},
        lang,
    )


def current_zone(
    conn: Connection, code: str, *, simplify_m: float = 5.0, lang: str | None = None
) -> gpd.GeoDataFrame:
    """The current zone ``code``, simplified for display; empty when there is none.

    One row with ``id``, ``code``, ``name``, ``team_id`` and ``team``.
    """
    return _layer(
        conn,
        (
            f"SELECT z.id, z.code, {_NAMES.format(t='z')}, z.team_id, {_TEAM_NAMES}, "
            "ST_SimplifyPreserveTopology(z.geom, :tol) AS geom "
            "FROM zones AS z JOIN teams AS t ON t.id = z.team_id "
            "WHERE z.retired_at IS NULL AND z.code = :code"
        ),
        {"tol": simplify_m / 111_000, "code": code},
        lang,
    )


def wards_meeting_zone(
    conn: Connection, zone_id: int, *, simplify_m: float = 5.0, lang: str | None = None
) -> gpd.GeoDataFrame:
    """Current wards that overlap zone ``zone_id``, simplified for display."""
    return _layer(
        conn,
        (
            f"SELECT w.code, {_NAMES.format(t='w')}, "
            "ST_SimplifyPreserveTopology(w.geom, :tol) AS geom "
            f"FROM wards AS w {_MEETS_ZONE} ORDER BY w.code"
        ),
        {"tol": simplify_m / 111_000, "zone": zone_id},
        lang,
    )


def current_count(conn: Connection, layer: str, *, meeting_zone: int | None = None) -> int:
    """How many current features ``layer`` (``wards`` or ``zones``) has.

    With ``meeting_zone``, only those that overlap zone ``meeting_zone`` (as
    ``wards_meeting_zone`` picks them).
    """
    table = {"wards": "wards", "zones": "zones"}[layer]
    where = "WHERE w.retired_at IS NULL" if meeting_zone is None else _MEETS_ZONE
    sql = f"SELECT count(*) FROM {table} AS w {where}"
    return int(conn.execute(text(sql), {"zone": meeting_zone}).scalar_one())


_EDGE = """(SELECT {pick}(ST_{side}(geom)) FROM (
    SELECT geom FROM wards WHERE retired_at IS NULL
    ORDER BY geom <#> ST_SetSRID(ST_MakeLine(ST_MakePoint({line}), ST_MakePoint({to})), 4326)
    LIMIT 8) AS nearest)"""
"""The current wards' outermost ``side``: of the few whose boxes come nearest a line far out.

The GiST index hands them over nearest first (``<#>``, the distance between boxes), so
this reads a handful of wards however many there are; the few, not one, make up for the
index's boxes being rounded.
"""

_BOUNDS = "SELECT " + ", ".join(
    _EDGE.format(pick=pick, side=side, line=line, to=to) + f" AS {name}"
    for name, pick, side, line, to in (
        ("x0", "min", "XMin", "-1000, -1000", "-1000, 1000"),
        ("y0", "min", "YMin", "-1000, -1000", "1000, -1000"),
        ("x1", "max", "XMax", "1000, -1000", "1000, 1000"),
        ("y1", "max", "YMax", "-1000, 1000", "1000, 1000"),
    )
)


def city_bounds(conn: Connection) -> tuple[float, float, float, float] | None:
    """``(min_lon, min_lat, max_lon, max_lat)`` of the current wards, if there are any."""
    row = conn.execute(text(_BOUNDS)).one()
    if row.x0 is None:
        return None
    return (float(row.x0), float(row.y0), float(row.x1), float(row.y1))
