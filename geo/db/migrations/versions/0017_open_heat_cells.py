"""Keep open reports counted per heat-map cell, so a heat map never counts reports itself.

A heat map counts the open reports in each cell of a power-of-two grid sized to the view
(``geo.maps.heat``). Counted from ``reports`` on every request, the city overview read
every open report in the country. ``open_heat_cells`` holds those counts for the grids a
view can need, from steps of 2^-10 degrees (about 110 m) to 8 degrees, per zone and
category, once as staff see reports (their true point, hidden ones included) and once as
the public does (the point snapped to the public location grid of the default
``ISSUEMAP_MAP_PUBLIC_ROUNDING_M``, 100 m, hidden reports left out): a row holds both
counts, so a report staff and the public see in the same cell costs one row. A cell is
keyed by its grid indices: the cell a point falls in is ``round(x / step)``, which is what
``ST_SnapToGrid`` computes (``rint``), so the counts land on exactly the cells the query
over ``reports`` gives.

Statement-level triggers on ``reports`` keep the counts, from the rows each statement
changed (transition tables): a report counts while its status is open, and a change of
status, visibility, zone, category or place moves it. Each statement adds its rows'
changes with one grouped upsert in key order, so an import batch costs one statement and
concurrent writers take row locks in the same order; cells that reach zero are deleted.

The cells a view's edge cuts through are counted from the reports, as are the finer grids.
For the public those are found through the partial index of open, visible reports (0015);
staff also see the hidden ones, which a small partial index of open hidden reports finds,
so no heat map reads the closed history around it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in geo.vocabulary.OPEN_STATUSES when this revision was written.
_OPEN = "status::text = ANY ('{open,acknowledged,in_progress,reopened}'::text[])"


def _open(alias: str) -> str:
    return f"{alias}.{_OPEN}"


# As in geo.maps.heat (the maintained steps) and geo.access.policy (the public location
# grid, its default width and constants) when this revision was written.
_LEVELS = range(-10, 4)
_ROUNDING_M = 100.0
_METRES_PER_DEGREE = 111_320.0
_RADIANS_PER_DEGREE = 0.017453292519943295
_MIN_COS = 0.01


def _f(value: float) -> str:
    """``value`` as a float8 constant: its shortest decimal reads back as the same double."""
    return f"float8 '{value!r}'"


# geo.access.policy.point_sql's public point: the same float8 operations in the same order.
_STEP_LAT = _f(_ROUNDING_M / _METRES_PER_DEGREE)
_PUBLIC_LAT = f"floor(ST_Y(geom) / {_STEP_LAT} + 0.5) * {_STEP_LAT}"
_PUBLIC_LON_STEP = (
    f"{_f(_ROUNDING_M)} / ({_f(_METRES_PER_DEGREE)} * greatest("
    f"cos(lat * {_f(_RADIANS_PER_DEGREE)}), {_f(_MIN_COS)}))"
)
_STEPS = ", ".join(f"({k}, {_f(2.0**k)})" for k in _LEVELS)


def _cells(changes: str) -> str:
    """Per cell key, the change in open reports that ``changes`` makes, in key order.

    ``changes`` yields ``zone_id, category_id, geom, shown, n``: a report that starts
    (``n`` = 1) or stops (-1) counting, and whether the public sees it. Where staff and the
    public see a report in the same cell, one row carries both changes.
    """
    return f"""
    WITH changes AS ({changes}),
    public_points AS (
        SELECT zone_id, category_id, geom, n, {_PUBLIC_LAT} AS lat FROM changes WHERE shown
    ),
    seen AS (
        SELECT zone_id, category_id, ST_X(geom) AS x, ST_Y(geom) AS y, n AS staff, 0 AS public
        FROM changes
        UNION ALL
        SELECT zone_id, category_id, floor(ST_X(geom) / s + 0.5) * s, lat, 0, n
        FROM public_points, LATERAL (SELECT {_PUBLIC_LON_STEP} AS s) AS lon
    )
    SELECT l.level, round(seen.x / l.step)::integer AS cell_x,
           round(seen.y / l.step)::integer AS cell_y, seen.zone_id, seen.category_id,
           sum(seen.staff)::integer AS staff_reports, sum(seen.public)::integer AS public_reports
    FROM seen CROSS JOIN (VALUES {_STEPS}) AS l (level, step)
    GROUP BY 1, 2, 3, 4, 5
    HAVING sum(seen.staff) <> 0 OR sum(seen.public) <> 0
    ORDER BY 1, 2, 3, 4, 5
    """


def _counted(table: str, n: int) -> str:
    return (
        f"SELECT coalesce(zone_id, 0) AS zone_id, category_id, geom, hidden_at IS NULL AS shown, "
        f"{n} AS n FROM {table} AS r WHERE {_open('r')}"
    )


# An update moves a report only when it changes whether or where it counts; the rest (notes,
# supporters, due times, moves between open statuses) are left out before the cells are made.
_MOVED = f"""
SELECT v.zone_id, v.category_id, v.geom, v.shown, v.n
FROM old_rows AS o JOIN new_rows AS r ON r.id = o.id,
LATERAL (VALUES
    (coalesce(o.zone_id, 0), o.category_id, o.geom, o.hidden_at IS NULL, -1, {_open("o")}),
    (coalesce(r.zone_id, 0), r.category_id, r.geom, r.hidden_at IS NULL, 1, {_open("r")})
) AS v (zone_id, category_id, geom, shown, n, counts)
WHERE v.counts
  AND (({_open("o")}) <> ({_open("r")})
       OR o.zone_id IS DISTINCT FROM r.zone_id OR o.category_id <> r.category_id
       OR (o.hidden_at IS NULL) <> (r.hidden_at IS NULL) OR o.geom IS DISTINCT FROM r.geom)
"""

_CHANGES = {
    "insert": _counted("new_rows", 1),
    "update": _MOVED,
    "delete": _counted("old_rows", -1),
}


def _function(op_name: str) -> str:
    return f"""
CREATE FUNCTION open_heat_cells_{op_name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    emptied tid[];
BEGIN
    WITH cells AS ({_cells(_CHANGES[op_name])}),
    counted AS (
        INSERT INTO open_heat_cells AS h ({_COLUMNS})
        SELECT * FROM cells
        ON CONFLICT (level, cell_x, cell_y, zone_id, category_id) DO UPDATE
        SET staff_reports = h.staff_reports + excluded.staff_reports,
            public_reports = h.public_reports + excluded.public_reports
        RETURNING h.ctid AS place, h.staff_reports, h.public_reports
    )
    SELECT array_agg(place) INTO emptied
    FROM counted WHERE staff_reports = 0 AND public_reports = 0;
    -- The rows are locked by this transaction since the upsert, so their ctids hold.
    IF emptied IS NOT NULL THEN
        DELETE FROM open_heat_cells WHERE ctid = ANY(emptied);
    END IF;
    RETURN NULL;
END
$$
"""


_COLUMNS = "level, cell_x, cell_y, zone_id, category_id, staff_reports, public_reports"

_TRIGGERS = {
    "insert": "AFTER INSERT ON reports REFERENCING NEW TABLE AS new_rows",
    "update": "AFTER UPDATE ON reports REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "AFTER DELETE ON reports REFERENCING OLD TABLE AS old_rows",
}


def upgrade() -> None:
    op.create_table(
        "open_heat_cells",
        sa.Column("level", sa.SmallInteger(), primary_key=True),
        sa.Column("cell_x", sa.Integer(), primary_key=True),
        sa.Column("cell_y", sa.Integer(), primary_key=True),
        sa.Column("zone_id", sa.Integer(), primary_key=True),
        sa.Column("category_id", sa.Integer(), primary_key=True),
        # No CHECK (>= 0): PostgreSQL tests it on the row an upsert proposes, and a report
        # that stops counting proposes -1 for a cell that exists.
        sa.Column("staff_reports", sa.Integer(), nullable=False),
        sa.Column("public_reports", sa.Integer(), nullable=False),
    )
    # Counts change in place: room on each page keeps those updates HOT (no index entry).
    op.execute("ALTER TABLE open_heat_cells SET (fillfactor = 70)")
    op.create_index(
        "ix_reports_open_hidden_geom",
        "reports",
        ["geom"],
        postgresql_using="gist",
        postgresql_where=sa.text(f"{_OPEN} AND hidden_at IS NOT NULL"),
    )
    # The triggers first: from CREATE TRIGGER on, no other write to reports commits before
    # this one, so the count below misses none.
    for name, when in _TRIGGERS.items():
        op.execute(_function(name))
        op.execute(
            f"CREATE TRIGGER reports_open_heat_cells_{name} {when} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION open_heat_cells_{name}()"
        )
    # A TRUNCATE fires no delete triggers; the counts go with the reports.
    op.execute(
        "CREATE FUNCTION open_heat_cells_truncate() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN TRUNCATE open_heat_cells; RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER reports_open_heat_cells_truncate AFTER TRUNCATE ON reports "
        "FOR EACH STATEMENT EXECUTE FUNCTION open_heat_cells_truncate()"
    )
    op.execute(f"INSERT INTO open_heat_cells ({_COLUMNS}) " + _cells(_counted("reports", 1)))
    op.execute("ANALYZE open_heat_cells")


def downgrade() -> None:
    for name in (*_TRIGGERS, "truncate"):
        op.execute(f"DROP TRIGGER reports_open_heat_cells_{name} ON reports")
        op.execute(f"DROP FUNCTION open_heat_cells_{name}()")
    op.drop_table("open_heat_cells")
    op.drop_index("ix_reports_open_hidden_geom", table_name="reports")
