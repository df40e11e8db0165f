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
  once with DISTINCT ON, finding each point's candidate wards and zones through a grid of
  cells (``ROUTING_CELL_DEG``) rather than one index probe per point.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from psycopg import sql
from sqlalchemy import Connection, text

from geo.city.catalogue import require_category_id
from geo.city.coordinates import LAT_MAX, LON_MAX, check_coordinates
from geo.errors import InvalidInputError, OutsideServiceAreaError
from geo.i18n import N_
from geo.settings import RoutingSettings

# ``{source}`` is a relation with columns (idx bigint, geom geometry(Point, 4326),
# category_id int, created_at timestamptz).
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


ROUTING_CELL_DEG = 0.02
"""Side, in degrees, of the grid cells the bulk statement looks wards and zones up by."""

# Bulk routing finds the wards and zones that may cover a point through a grid, not by
# probing the GiST index once per point: the distinct cells of the batch (far fewer than
# its points) are matched to the wards and zones whose boxes meet them, and each point is
# then tested with ST_Covers against its cell's candidates only, by hash joins. The index
# probe per point was most of the cost of a nationwide batch; the test itself is cheap.
# The answer is the same: a polygon covering a point has a box holding it, and the cell is
# widened by 1e-6 degrees so that rounding in the cell arithmetic can never leave it out.
# All the zones covering a point are found once and every zone rule reads that one set.
# A city-wide route's zones are found from that set, not by joining each point back to it:
# the planner cannot estimate the set's size, and for batches under ~50k points it chose to
# rescan it once per routed point (12,500 national points: 5 s of CPU against 0.8 s).
# Metres to degrees for the snapping pre-filter is deliberately generous (110 km per
# degree, cos(lat) floored) so the exact geodesic test decides, never the box.
_ROUTE_SELECT_OVER = """
WITH {staged}routing_points AS MATERIALIZED (
    SELECT p.idx, p.geom, p.category_id, p.created_at,
           floor(ST_X(p.geom) / {cell})::int AS cx, floor(ST_Y(p.geom) / {cell})::int AS cy
    FROM {source} AS p
), routing_cells AS MATERIALIZED (
    SELECT cx, cy,
           ST_Expand(ST_MakeEnvelope(cx * {cell}, cy * {cell}, (cx + 1) * {cell},
                                     (cy + 1) * {cell}, 4326), 1e-6) AS box
    FROM (SELECT DISTINCT cx, cy FROM routing_points) AS c
), ward_candidates AS MATERIALIZED (
    SELECT c.cx, c.cy, w.id
    FROM routing_cells AS c
    JOIN wards AS w ON w.retired_at IS NULL AND w.geom && c.box
), zone_candidates AS MATERIALIZED (
    SELECT c.cx, c.cy, z.id
    FROM routing_cells AS c
    JOIN {zones} AS z ON z.retired_at IS NULL AND z.geom && c.box
), covering AS MATERIALIZED (
    SELECT DISTINCT ON (p.idx) p.idx, w.id AS ward_id
    FROM routing_points AS p
    JOIN ward_candidates AS k ON k.cx = p.cx AND k.cy = p.cy
    JOIN wards AS w ON w.id = k.id AND ST_Covers(w.geom, p.geom)
    ORDER BY p.idx, {tie_break}
), zones_covering AS MATERIALIZED (
    SELECT p.idx, p.category_id, z.id AS zone_id, z.code, z.team_id
    FROM routing_points AS p
    JOIN zone_candidates AS k ON k.cx = p.cx AND k.cy = p.cy
    JOIN {zones} AS z ON z.id = k.id AND ST_Covers(z.geom, p.geom)
), assigned AS MATERIALIZED (
    SELECT DISTINCT ON (cand.idx) cand.idx, cand.zone_id, cand.team_id
    FROM (
        SELECT z.idx, 1 AS rank, z.code AS k1, cr.id AS k2, '' AS k3, z.zone_id, cr.team_id
        FROM zones_covering AS z
        JOIN category_routes AS cr ON cr.category_id = z.category_id AND cr.zone_code = z.code
        UNION ALL
        SELECT z.idx, 2, '', cr.id, z.code, z.zone_id, cr.team_id
        FROM zones_covering AS z
        JOIN category_routes AS cr ON cr.category_id = z.category_id AND cr.zone_code IS NULL
                                  AND cr.team_id = z.team_id
        UNION ALL
        -- The route's team without a zone: it sorts after the team's zones (NULL last).
        SELECT p.idx, 2, '', cr.id, NULL, NULL, cr.team_id
        FROM routing_points AS p
        JOIN category_routes AS cr ON cr.category_id = p.category_id AND cr.zone_code IS NULL
        UNION ALL
        SELECT z.idx, 3, z.code, z.zone_id, '', z.zone_id, z.team_id
        FROM zones_covering AS z
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
FROM routing_points AS p
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
    staged="", zones="zones", source="{source}", tie_break=WARD_TIE_BREAK, cell=ROUTING_CELL_DEG
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


_COPY_ROWS = 20_000
"""Rows turned into COPY text at a time, so a batch is never held twice in full as text."""

_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _copy_field(values: pd.Series, kind: str) -> list[str]:
    """One column as COPY text values (the NULL marker where missing), converted column-wise."""
    missing = values.isna().to_numpy()
    out: list[str]
    if kind == "timestamptz":
        stamps = pd.to_datetime(values, utc=True).dt.tz_localize(None)
        out = np.datetime_as_string(
            stamps.to_numpy(dtype="datetime64[us]"), unit="us", timezone="UTC"
        ).tolist()
    elif kind == "boolean":
        out = ["t" if v else "f" for v in values.fillna(False).to_numpy(dtype=bool).tolist()]
    elif kind == "text":
        out = [
            _COPY_SPECIAL.sub(lambda m: _COPY_ESCAPES[m.group()], v)
            if _COPY_SPECIAL.search(v)
            else v
            for v in values.where(~missing, "").astype(str).tolist()
        ]
    elif kind == "float8":
        # repr is the shortest text that reads back as the same double.
        out = [repr(v) for v in values.to_numpy(dtype=float, na_value=np.nan).tolist()]
    else:  # integers
        out = [str(v) for v in values.fillna(0).to_numpy(dtype=np.int64).tolist()]
    if missing.any():
        for i in np.flatnonzero(missing).tolist():
            out[i] = "\\N"
    return out


def copy_text(points: pd.DataFrame, columns: dict[str, str]) -> str:
    """``points``' ``columns`` (name to SQL type) as the text of ``COPY ... FROM STDIN``.

    Built column by column rather than row by row: a million-row batch is converted in
    a second or two, where passing each row to the driver took ten times as long.
    """
    if not len(points):
        return ""
    fields = [_copy_field(points[name], kind) for name, kind in columns.items()]
    return "".join(["\t".join(row) + "\n" for row in zip(*fields, strict=True)])


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
            for start in range(0, len(points), _COPY_ROWS):
                copy.write(copy_text(points.iloc[start : start + _COPY_ROWS], columns))
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
        staged=_STAGED_ZONES,
        zones="staged_zones",
        source=source,
        tie_break=WARD_TIE_BREAK,
        cell=ROUTING_CELL_DEG,
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
    # Plain tuples: pandas asks each SQLAlchemy row for namedtuple fields, which fails
    # slowly through the row's attribute lookup (most of the Python time of a big batch).
    result = pd.DataFrame(
        [tuple(row) for row in rows],
        columns=["idx", "ward_id", "snapped", "distance_m", "zone_id", "team_id", "due_at"],
    ).set_index("idx")
    result = result.reindex(range(len(points)))
    result.index = points.index
    for column in ("ward_id", "zone_id", "team_id"):
        result[column] = result[column].astype("Int64")
    result["snapped"] = result["snapped"].fillna(False).astype(bool)
    return result
