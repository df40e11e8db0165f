"""Routing: which ward a report lies in, and which zone and team must work it.

Precedence, applied identically to a single report and to a bulk batch:

1. **Ward.** The current ward whose polygon covers the point (``ST_Covers``, so a point on a
   boundary line counts as inside). A point on an edge shared by several wards goes to the
   ward whose code sorts first (byte order), so the answer never depends on table order.
   A point outside every ward but within ``snap_distance_m`` metres of one (geodesic
   distance) goes to the nearest such ward and is flagged as *snapped*. Beyond that the point
   is outside the service area.
2. **Zone and team.** The first of these that matches, in this order:

   a. a category route limited to a zone, whose current zone covers the point: the route's
      team, in that zone (if several, the zone code that sorts first);
   b. a city-wide category route for the report's category: the route's team, in that
      team's zone covering the point if it has one;
   c. otherwise (no route for the category, or only zone-limited routes whose zones do not
      cover the point): the zone covering the point (first zone code on ties), and the team
      that owns that zone.

   If nothing matches the report keeps its ward and waits, unassigned, for triage.
3. **Due time.** Creation time plus the category's SLA hours (48 unless the category says
   otherwise).

The rules are written twice, once per shape of work, and tests/test_routing.py routes
interior, edge, corner, snapped and outside points for every category both ways and
requires identical answers:

* ``ROUTE_ONE`` (single intake: ``route_point`` and ``geo.reports.store.create_report``) takes
  one point from an ``input`` CTE and answers each rule with an ``ORDER BY ... LIMIT 1``;
  the snapping lookup only runs when no ward covers the point. Few plan nodes, all index
  lookups: PostgreSQL sets up every node of a plan for each execution, so for one point
  the node count is most of the cost.
* ``_ROUTE_SELECT`` (bulk: ``route_points``, imports, re-routing) joins a whole batch at
  once with DISTINCT ON, which PostgreSQL can run in parallel.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from psycopg import sql
from sqlalchemy import Connection, text

from geo.city.catalogue import require_category_id
from geo.city.coordinates import LAT_MAX, LON_MAX, check_coordinates
from geo.errors import InvalidInputError, OutsideServiceAreaError
from geo.i18n import N_
from geo.settings import RoutingSettings

# ``{source}`` is a relation with columns (idx bigint, geom geometry(Point, 4326),
# category_id int, created_at timestamptz). The covering joins are written as plain joins
# with DISTINCT ON, not LATERAL ... LIMIT 1, because PostgreSQL can run plain joins in
# parallel workers and a LIMIT inside LATERAL forbids that; in bulk this halves the time.
WARD_TIE_BREAK = 'w.code COLLATE "C", w.id'
"""The order that picks one ward where several cover a point (a shared edge): the ward whose
code sorts first, byte by byte. Every ward lookup of routing and of the ward measures uses it."""

WARD_OF_POINT = (
    """LEFT JOIN LATERAL (
    SELECT w.code
    FROM wards AS w
    WHERE w.retired_at IS NULL AND ST_Covers(w.geom, {point})
    ORDER BY """
    + WARD_TIE_BREAK
    + """
    LIMIT 1
) AS here ON true"""
)
"""The current ward covering ``{point}`` as ``here.code`` (NULL: outside every current ward).

Routing's rule without its snapping: ``ST_Covers``, so a point on a boundary line is inside,
and ``WARD_TIE_BREAK`` on a shared edge. One index probe (GiST on ``wards.geom``) per row."""


# Metres to degrees for the snapping pre-filter is deliberately generous (110 km per
# degree, cos(lat) floored) so the exact geodesic test decides, never the box.
_ROUTE_SELECT_OVER = """
WITH {staged}covering AS MATERIALIZED (
    SELECT DISTINCT ON (p.idx) p.idx, w.id AS ward_id
    FROM {source} AS p
    JOIN wards AS w ON w.retired_at IS NULL AND ST_Covers(w.geom, p.geom)
    ORDER BY p.idx, {tie_break}
), assigned AS MATERIALIZED (
    SELECT DISTINCT ON (cand.idx) cand.idx, cand.zone_id, cand.team_id
    FROM (
        SELECT p.idx, 1 AS rank, z.code AS k1, cr.id AS k2, '' AS k3,
               z.id AS zone_id, cr.team_id
        FROM {source} AS p
        JOIN category_routes AS cr ON cr.category_id = p.category_id
        JOIN {zones} AS z ON z.code = cr.zone_code AND z.retired_at IS NULL
                       AND ST_Covers(z.geom, p.geom)
        UNION ALL
        SELECT p.idx, 2, '', cr.id, COALESCE(z.code, ''), z.id, cr.team_id
        FROM {source} AS p
        JOIN category_routes AS cr ON cr.category_id = p.category_id AND cr.zone_code IS NULL
        LEFT JOIN {zones} AS z ON z.team_id = cr.team_id AND z.retired_at IS NULL
                            AND ST_Covers(z.geom, p.geom)
        UNION ALL
        SELECT p.idx, 3, z.code, z.id, '', z.id, z.team_id
        FROM {source} AS p
        JOIN {zones} AS z ON z.retired_at IS NULL AND ST_Covers(z.geom, p.geom)
    ) AS cand
    ORDER BY cand.idx, cand.rank, cand.k1 COLLATE "C", cand.k2, cand.k3 COLLATE "C"
)
SELECT p.idx,
       COALESCE(cw.ward_id, sw.ward_id) AS ward_id,
       (cw.ward_id IS NULL AND sw.ward_id IS NOT NULL) AS snapped,
       sw.distance_m,
       a.zone_id,
       a.team_id,
       p.created_at + make_interval(hours => c.sla_hours) AS due_at
FROM {source} AS p
JOIN categories AS c ON c.id = p.category_id
LEFT JOIN covering AS cw ON cw.idx = p.idx
LEFT JOIN assigned AS a ON a.idx = p.idx
LEFT JOIN LATERAL (
    SELECT w.id AS ward_id,
           ST_Distance(w.geom::geography, p.geom::geography) AS distance_m
    FROM wards AS w
    WHERE cw.ward_id IS NULL
      AND w.retired_at IS NULL
      AND w.geom && ST_Expand(
            p.geom,
            :snap_m / (110000.0 * GREATEST(cos(radians(ST_Y(p.geom))), 0.01)),
            :snap_m / 110000.0)
      AND ST_DWithin(w.geom::geography, p.geom::geography, :snap_m)
    ORDER BY distance_m, {tie_break}
    LIMIT 1
) AS sw ON true
"""
_ROUTE_SELECT = _ROUTE_SELECT_OVER.format(
    staged="", zones="zones", source="{source}", tie_break=WARD_TIE_BREAK
)

# Candidate zones bound as one JSON array (see ``staged_zones_route_select``), decoded once:
# a parameter, not a table, so a what-if runs in a read-only transaction or on a replica.
_STAGED_ZONES = """staged_zones AS MATERIALIZED (
    SELECT z.id, z.code, z.team_id, ST_Multi(ST_GeomFromWKB(decode(z.wkb, 'hex'), 4326)) AS geom,
           CAST(NULL AS timestamptz) AS retired_at
    FROM json_to_recordset(CAST(:staged_zones AS json))
         AS z(id integer, code text, team_id integer, wkb text)
), """


ROUTE_ONE = """
covering AS MATERIALIZED (
    SELECT w.id, w.code, w.name
    FROM input AS i
    JOIN wards AS w ON w.retired_at IS NULL AND ST_Covers(w.geom, i.geom)
    ORDER BY {tie_break}
    LIMIT 1
), ward AS MATERIALIZED (
    SELECT id AS ward_id, false AS snapped, code AS ward_code, name AS ward_name
    FROM covering
    UNION ALL
    (SELECT w.id, true, w.code, w.name
     FROM input AS i
     JOIN wards AS w ON w.retired_at IS NULL
      AND w.geom && ST_Expand(
            i.geom,
            :snap_m / (110000.0 * GREATEST(cos(radians(ST_Y(i.geom))), 0.01)),
            :snap_m / 110000.0)
      AND ST_DWithin(w.geom::geography, i.geom::geography, :snap_m)
     WHERE NOT EXISTS (SELECT FROM covering)
     ORDER BY ST_Distance(w.geom::geography, i.geom::geography), {tie_break}
     LIMIT 1)
), assignment AS MATERIALIZED (
    SELECT zone_id, team_id
    FROM (
        (SELECT 1 AS rank, z.id AS zone_id, cr.team_id
         FROM input AS i
         JOIN category_routes AS cr ON cr.category_id = i.category_id
         JOIN zones AS z ON z.code = cr.zone_code AND z.retired_at IS NULL
                        AND ST_Covers(z.geom, i.geom)
         ORDER BY z.code COLLATE "C", cr.id
         LIMIT 1)
        UNION ALL
        (SELECT 2, z.id, cr.team_id
         FROM input AS i
         JOIN category_routes AS cr ON cr.category_id = i.category_id
                                   AND cr.zone_code IS NULL
         LEFT JOIN zones AS z ON z.team_id = cr.team_id AND z.retired_at IS NULL
                             AND ST_Covers(z.geom, i.geom)
         ORDER BY cr.id, COALESCE(z.code, '') COLLATE "C"
         LIMIT 1)
        UNION ALL
        (SELECT 3, z.id, z.team_id
         FROM input AS i
         JOIN zones AS z ON z.retired_at IS NULL AND ST_Covers(z.geom, i.geom)
         ORDER BY z.code COLLATE "C", z.id
         LIMIT 1)
    ) AS candidates
    ORDER BY rank
    LIMIT 1
)""".replace("{tie_break}", WARD_TIE_BREAK)
"""The routing rules for one point, as CTEs to follow ``WITH input AS (...),``.

``input`` is one row with ``geom`` and ``category_id``; bind ``snap_m``. ``ward`` then
holds ``ward_id, snapped, ward_code, ward_name`` (no row: outside the service area) and
``assignment`` holds ``zone_id, team_id`` (no row: unassigned).
"""


def single_input(category: str, *columns: str) -> str:
    """The one-row ``input`` CTE for ``ROUTE_ONE``, by category ``code`` or ``id``.

    It binds ``lon, lat, created_at`` and ``category`` (a code, only active categories) or
    ``category_id``; ``columns`` are extra select-list entries. MATERIALIZED keeps the
    bound values out of the planner's sight, so the plan never depends on them and
    PostgreSQL keeps one generic plan for the prepared statement; with the values visible
    it re-planned per call whenever a custom plan looked cheaper, which costs more than
    running the statement.
    """
    where = {
        "code": "c.code = :category AND c.active",
        "id": "c.id = CAST(:category_id AS integer)",
    }[category]
    extra = "".join(f",\n           {column}" for column in columns)
    return f"""input AS MATERIALIZED (
    SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geom, c.id AS category_id,
           CAST(:created_at AS timestamptz) AS created_at,
           CAST(:created_at AS timestamptz) + make_interval(hours => c.sla_hours) AS due_at{extra}
    FROM categories AS c
    WHERE {where}
)"""


_ROUTE_POINT = f"""
WITH {single_input("id")}, {ROUTE_ONE}
SELECT w.ward_id, w.snapped, a.zone_id, a.team_id, i.due_at
FROM input AS i
LEFT JOIN ward AS w ON true
LEFT JOIN assignment AS a ON true
"""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a report belongs and when it is due."""

    ward_id: int
    snapped: bool
    zone_id: int | None
    team_id: int | None
    due_at: datetime


def nearest_ward_distance_m(conn: Connection, *, lon: float, lat: float) -> float | None:
    """Geodesic distance from the point to the nearest current ward, or None if none exist."""
    return conn.execute(
        text(
            "SELECT min(ST_Distance(geom::geography, "
            "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)) "
            "FROM wards WHERE retired_at IS NULL"
        ),
        {"lon": lon, "lat": lat},
    ).scalar_one_or_none()


def find_category_id(conn: Connection, code: str) -> int:
    """Id of the active category ``code``; an unknown code is a clear input error."""
    return require_category_id(conn, code)


def route_point(
    conn: Connection,
    *,
    lon: float,
    lat: float,
    category_id: int,
    created_at: datetime,
    settings: RoutingSettings,
) -> Route:
    """Route one point; raise ``OutsideServiceAreaError`` when no ward takes it."""
    check_coordinates(lon, lat)
    row = conn.execute(
        text(_ROUTE_POINT),
        {
            "lon": lon,
            "lat": lat,
            "category_id": category_id,
            "created_at": created_at,
            "snap_m": settings.snap_distance_m,
        },
    ).one_or_none()
    if row is None:
        raise InvalidInputError("category", N_("no category has id {id}"), id=category_id)
    if row.ward_id is None:
        raise OutsideServiceAreaError(lat, lon, nearest_ward_distance_m(conn, lon=lon, lat=lat))
    return Route(
        ward_id=row.ward_id,
        snapped=row.snapped,
        zone_id=row.zone_id,
        team_id=row.team_id,
        due_at=row.due_at,
    )


STAGED_COLUMNS: dict[str, str] = {
    "idx": "bigint",
    "lon": "float8",
    "lat": "float8",
    "category_id": "int",
    "created_at": "timestamptz",
}
"""Columns every staged batch has; callers may stage more (see ``staged_points``)."""


@contextmanager
def staged_points(
    conn: Connection, points: pd.DataFrame, *, extra: dict[str, str] | None = None
) -> Iterator[str]:
    """COPY ``points`` into a batch table inside the caller's transaction; yield its name.

    ``points`` holds the ``STAGED_COLUMNS`` plus any ``extra`` columns (name to SQL type,
    from our own code, never from input). The table is unlogged rather than temporary
    because PostgreSQL's parallel workers cannot read temporary tables. It is created and
    dropped in the caller's transaction, so a failed batch leaves nothing behind.
    """
    columns = STAGED_COLUMNS | (extra or {})
    names = list(columns)
    table = f"routing_batch_{uuid.uuid4().hex}"
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        # JIT compilation costs more than it saves on these short index-driven plans.
        cur.execute("SET LOCAL jit = off")
        # Enough memory to sort a million-row batch without spilling to disk.
        cur.execute("SET LOCAL work_mem = '128MB'")
        cur.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(
                sql.Identifier(table),
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                    for n, t in columns.items()
                ),
            )
        )
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
        )
        with cur.copy(statement) as copy:
            for record in points[names].itertuples(index=False, name=None):
                copy.write_row(tuple(None if pd.isna(v) else v for v in record))
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    yield table
    with raw.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def staged_route_select(table: str) -> str:
    """Return the set-based routing statement over a staged batch; bind ``snap_m``."""
    return _ROUTE_SELECT.format(
        source="(SELECT idx, ST_SetSRID(ST_MakePoint(lon, lat), 4326) AS geom, category_id, "
        f'created_at FROM "{table}")'
    )


def staged_zones_route_select(source: str) -> str:
    """The set-based routing statement with candidate zones in place of the zones table.

    The statement is the one imports and re-routing run (``staged_route_select``), over
    ``source``, a relation with ``idx, geom, category_id, created_at``; only the zones it
    reads are the candidates, bound as ``:staged_zones``: a JSON array of
    ``{"id", "code", "team_id", "wkb"}`` (``wkb`` hex WKB in EPSG:4326; ``team_id`` may name
    a team not stored yet, say a negative number), every one current. Category routes
    limited to a zone match candidates by code. Bind ``snap_m`` too. Nothing is written.
    """
    return _ROUTE_SELECT_OVER.format(
        staged=_STAGED_ZONES, zones="staged_zones", source=source, tie_break=WARD_TIE_BREAK
    )


def route_points(
    conn: Connection, points: pd.DataFrame, *, settings: RoutingSettings
) -> pd.DataFrame:
    """Route many points in one PostGIS statement.

    ``points`` needs columns ``lon``, ``lat``, ``category_id`` and ``created_at``; its index
    is kept. The result has ``ward_id`` (missing when outside the service area),
    ``snapped``, ``distance_m``, ``zone_id``, ``team_id`` and ``due_at``, one row per input
    point, in input order. Points whose category does not exist get no ward either.
    """
    bad = ~(points["lat"].between(-LAT_MAX, LAT_MAX) & points["lon"].between(-LON_MAX, LON_MAX))
    if bad.any():
        first = points.index[bad.to_numpy()][0]
        raise InvalidInputError(
            "lat/lon", N_("row {row} is not a valid WGS84 coordinate"), row=first
        )
    staged = points.assign(idx=range(len(points)))
    with staged_points(conn, staged) as table:
        rows = conn.execute(
            text(staged_route_select(table) + " ORDER BY p.idx"),
            {"snap_m": settings.snap_distance_m},
        ).all()
    result = pd.DataFrame(
        rows, columns=["idx", "ward_id", "snapped", "distance_m", "zone_id", "team_id", "due_at"]
    ).set_index("idx")
    result = result.reindex(range(len(points)))
    result.index = points.index
    for column in ("ward_id", "zone_id", "team_id"):
        result[column] = result[column].astype("Int64")
    result["snapped"] = result["snapped"].fillna(False).astype(bool)
    return result
