"""Vector tiles of the city's current boundaries, so a page never carries every polygon.

A map page whose ward or zone layer is large (more features than
``MapSettings.inline_features_max``) draws it from Mapbox Vector Tiles that PostGIS writes
(``ST_AsMVT``): each tile holds only the current boundaries that meet it, simplified to
about half a tile pixel at its zoom and clipped to the tile. Below a layer's
``TILE_MIN_ZOOM`` a tile is empty, so no request ever makes PostGIS draw a whole country
of tambon at once.

A tile's content changes only when its layer is replaced (a new boundary import) or, for
zones, when a team is renamed: ``boundary_version`` says which, cheaply, so a tile can be
answered with 304 without being built, and a page can ask for tiles of the version it was
made with (which may then be cached for long).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from geo.city.catalogue import name_order
from geo.city.layers import current_count
from geo.errors import InvalidInputError
from geo.i18n import N_

TILE_LAYERS = ("wards", "zones")
"""The boundary layers served as tiles."""

MAX_ZOOM = 22
"""The deepest zoom a tile is served at."""

TILE_MIN_ZOOM = {"wards": 6, "zones": 5}
"""The shallowest zoom at which a layer's tiles hold anything.

A zoom-6 tile spans about 600 km: with outlines simplified to half a pixel, the 1,500 or so
tambon in the one around Bangkok make about 230 KB, built in about 40 ms (zoom 5: 360 KB;
``bench/pages_national.py``). Zones are fewer and larger, so they show from zoom 5, which
fits a country the size of Thailand on a phone.
"""

EXTENT = 4096
"""Tile coordinate units across a tile (the Mapbox Vector Tile default)."""

BUFFER = 64
"""Units drawn beyond the tile's edge, so outlines do not show seams between tiles."""

MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
"""The media type of a tile."""

_NAME = "COALESCE({}, '')"


def _name_sql(alias: str, lang: str) -> str:
    """The name a reader in ``lang`` sees (``display_name``'s order), as SQL over ``alias``."""
    return _NAME.format(", ".join(f"NULLIF({alias}.{column}, '')" for column in name_order(lang)))


def _check_layer(layer: str) -> None:
    if layer not in TILE_LAYERS:
        raise InvalidInputError(
            "layer", N_("must be one of {choices}"), choices=", ".join(TILE_LAYERS)
        )


def check_tile(layer: str, z: int, x: int, y: int) -> None:
    """Refuse a tile that does not exist, naming the parameter that is wrong."""
    _check_layer(layer)
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidInputError("z", N_("must be from {low} to {high}"), low=0, high=MAX_ZOOM)
    for name, value in (("x", x), ("y", y)):
        if not 0 <= value < 2**z:
            raise InvalidInputError(
                name, N_("must be from 0 to {high} at zoom {z}"), high=2**z - 1, z=z
            )


def boundary_version(conn: Connection, layer: str) -> str:
    """What a tile of ``layer`` depends on: its latest import and, for zones, the teams' names.

    One index lookup (and, for zones, one pass over the teams); any change to what a tile
    shows changes it.
    """
    _check_layer(layer)
    row = conn.execute(
        text(
            "SELECT (SELECT COALESCE(max(id), 0) FROM boundary_imports "
            "WHERE layer = :layer) AS imp,"
            " CASE WHEN :layer = 'zones' THEN (SELECT left(md5(string_agg("
            "concat_ws('|', id, name, name_th, name_en), ',' ORDER BY id)), 12) FROM teams) END"
            " AS teams"
        ),
        {"layer": layer},
    ).one()
    return f"{row.imp}" + (f"-{row.teams}" if row.teams else "")


_TILE = """
WITH bounds AS (
    SELECT ST_TileEnvelope(:z, :x, :y) AS env,
           ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326) AS area)
SELECT ST_AsMVT(t, :layer, :extent, 'geom') FROM (
    SELECT {columns},
           ST_AsMVTGeom(ST_Transform(ST_Simplify(b.geom, :tol, true), 3857), bounds.env,
                        :extent, :buffer, true) AS geom
    FROM {source} CROSS JOIN bounds
    WHERE b.retired_at IS NULL AND b.geom && bounds.area
    OFFSET 0  -- a fence: pushed into this query, the test below would build each shape twice
) AS t WHERE t.geom IS NOT NULL
"""

_SOURCES = {
    "wards": ("wards AS b", "b.code, {name} AS name"),
    "zones": (
        "zones AS b JOIN teams AS tm ON tm.id = b.team_id",
        "b.code, {name} AS name, {team} AS team",
    ),
}


def boundary_tile(conn: Connection, layer: str, z: int, x: int, y: int, *, lang: str) -> bytes:
    """Tile ``z/x/y`` of the current ``layer`` as a Mapbox Vector Tile (empty: no bytes).

    Each feature has ``code`` and ``name`` (zones also ``team``), names as a reader in
    ``lang`` sees them. Outlines are simplified to about half a tile unit at ``z`` and
    clipped to the tile plus ``BUFFER``. Below ``TILE_MIN_ZOOM`` the tile is empty.
    """
    check_tile(layer, z, x, y)
    if z < TILE_MIN_ZOOM[layer]:
        return b""
    source, columns = _SOURCES[layer]
    sql = _TILE.format(
        source=source,
        columns=columns.format(name=_name_sql("b", lang), team=_name_sql("tm", lang)),
    )
    # Half a tile unit in degrees of longitude (Web Mercator's x is longitude, scaled).
    tolerance = 360.0 / 2**z / EXTENT / 2
    tile = conn.execute(
        text(sql),
        {
            "z": z,
            "x": x,
            "y": y,
            "layer": layer,
            "extent": EXTENT,
            "buffer": BUFFER,
            "margin": BUFFER / EXTENT,
            "tol": tolerance,
        },
    ).scalar_one()
    return bytes(tile or b"")


def tiled(
    conn: Connection, layer: str, *, inline_max: int, meeting_zone: int | None = None
) -> bool:
    """Whether a page draws ``layer`` from tiles: it has more than ``inline_max`` features.

    With ``meeting_zone``, only the features that meet that zone count.
    """
    return current_count(conn, layer, meeting_zone=meeting_zone) > inline_max


def tile_url(layer: str, *, lang: str, version: str) -> str:
    """The URL template (``{z}/{x}/{y}``) of ``layer``'s tiles of ``version`` in ``lang``."""
    return f"/tiles/{layer}/{{z}}/{{x}}/{{y}}.pbf?lang={lang}&v={version}"
