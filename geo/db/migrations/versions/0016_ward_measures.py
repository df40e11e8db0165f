"""Keep the ward dashboard's measures per ward, category and day, so it never counts reports.

The ward dashboard counted every report of its window on every request, each report placed
in the current ward covering it by a point-in-polygon probe: seconds at national scale.
``ward_day_measures`` holds those measures per current ward (NULL: outside every current
ward), category, UTC day of ``created_at`` and bucket of hours to resolve (NULL: not
resolved), over the reports the public sees (``hidden_at IS NULL``): reports, resolved,
resolved by the due time, rated, the sum of ratings and the sum of seconds to resolve.
``ward_period_measures`` holds the same counts per ward and ISO week or calendar month, so a
window of months reads a few rows per ward instead of one per day.

A report counts under the current ward covering its point, routing's rule (``ST_Covers``,
the ward code first on a shared edge), as ``geo.reports.stats`` counts it: routing stored
exactly that ward while the ward is current, or no ward covered the point if routing
snapped it, so only reports whose stored ward is retired are probed.

Statement-level triggers on ``reports`` keep both tables from the rows each statement
changed (transition tables): one grouped upsert per table in key order, so an import batch
costs one statement and concurrent writers lock rows in the same order; rows that reach
zero are deleted. ``ward_measures_rebuild()`` recounts everything (a boundary replace calls
it, since it changes which ward covers each report; this migration fills the tables with it).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in geo.reports.stats (the buckets of hours to resolve) and geo.city.routing
# (WARD_TIE_BREAK) when this revision was written.
_BUCKET_FIRST_HOURS = 0.25
_BUCKETS_PER_DOUBLING = 4
_BUCKET_LAST = 63
_TIE_BREAK = 'w.code COLLATE "C", w.id'
_FIRST_SECONDS = f"float8 '{_BUCKET_FIRST_HOURS * 3600!r}'"

_MEASURES = ("reports", "resolved", "within_sla", "rated", "rating_sum")
_DAY_MEASURES = (*_MEASURES, "resolve_seconds")
_DAY_KEY = ("day", "ward_id", "category_id", "hours_bucket")
_PERIOD_KEY = ("period", "first_day", "ward_id")


_CELL = 0.02
"""Side, in degrees, of the grid a rebuild finds wards through (geo.city.routing's)."""


def _stored_ward(x: str) -> str:
    """The ward of report row ``x`` while its stored ward is current; else unknown.

    Routing stored the covering ward, or snapped a point no ward covered, against the
    wards current then; while that ward is current, so are they all.
    """
    return f"""CASE WHEN EXISTS (SELECT FROM wards AS s
                             WHERE s.id = {x}.ward_id AND s.retired_at IS NULL)
                THEN CASE WHEN NOT {x}.ward_snapped THEN {x}.ward_id END
                ELSE {{probe}} END"""


def _ward_of(x: str) -> str:
    """The current ward covering report row ``x`` (NULL: none), probing only when needed."""
    return _stored_ward(x).format(
        probe=f"""(SELECT w.id FROM wards AS w
                      WHERE w.retired_at IS NULL AND ST_Covers(w.geom, {x}.geom)
                      ORDER BY {_TIE_BREAK} LIMIT 1)"""
    )


def _measures(x: str, ward: str, n: int) -> str:
    """Report row ``x`` (placed in ``ward``) as ``n`` times its measures, under its key."""
    seconds = f"CAST(extract(epoch FROM {x}.resolved_at - {x}.created_at) AS float8)"
    return f"""
    SELECT CAST({x}.created_at AT TIME ZONE 'UTC' AS date) AS day,
           {ward} AS ward_id,
           {x}.category_id,
           CAST(CASE WHEN {x}.resolved_at IS NULL THEN NULL
                     WHEN {seconds} < {_FIRST_SECONDS} THEN 0
                     ELSE least({_BUCKET_LAST}, 1 + floor(
                         {_BUCKETS_PER_DOUBLING} * ln({seconds} / {_FIRST_SECONDS}) / ln(2)))
                END AS smallint) AS hours_bucket,
           {n} AS reports,
           CASE WHEN {x}.resolved_at IS NOT NULL THEN {n} ELSE 0 END AS resolved,
           CASE WHEN {x}.resolved_at <= {x}.due_at THEN {n} ELSE 0 END AS within_sla,
           CASE WHEN {x}.rating IS NOT NULL THEN {n} ELSE 0 END AS rated,
           {n} * COALESCE({x}.rating, 0) AS rating_sum,
           {n} * COALESCE(CAST(round({seconds}) AS bigint), 0) AS resolve_seconds"""


def _placed(rows: str, n: int) -> str:
    """Each visible report of ``rows`` as ``n`` times its measures."""
    return f"{_measures('r', _ward_of('r'), n)}\n    FROM {rows} AS r WHERE r.hidden_at IS NULL"


# A rebuild places every report again, after a boundary replace retired the wards stored
# on them all: through a grid of cells, as routing's bulk statement does, rather than an
# index probe per report (a minute at national scale): each cell's candidate wards are
# those whose boxes meet it (widened a hair against rounding), then each report is tested
# against its cell's candidates only.
_REBUILT = f"""
    WITH points AS MATERIALIZED (
        SELECT r.id, r.geom,
               CAST(floor(ST_X(r.geom) / {_CELL}) AS integer) AS cx,
               CAST(floor(ST_Y(r.geom) / {_CELL}) AS integer) AS cy
        FROM reports AS r
        WHERE r.hidden_at IS NULL
          AND NOT EXISTS (SELECT FROM wards AS s WHERE s.id = r.ward_id AND s.retired_at IS NULL)
    ), cells AS MATERIALIZED (
        SELECT cx, cy, ST_Expand(ST_MakeEnvelope(cx * {_CELL}, cy * {_CELL},
                                                 (cx + 1) * {_CELL}, (cy + 1) * {_CELL}, 4326),
                                 1e-6) AS box
        FROM (SELECT DISTINCT cx, cy FROM points) AS c
    ), candidates AS MATERIALIZED (
        SELECT c.cx, c.cy, w.id
        FROM cells AS c JOIN wards AS w ON w.retired_at IS NULL AND w.geom && c.box
    ), covering AS MATERIALIZED (
        SELECT DISTINCT ON (p.id) p.id, w.id AS ward_id
        FROM points AS p
        JOIN candidates AS k ON k.cx = p.cx AND k.cy = p.cy
        JOIN wards AS w ON w.id = k.id AND ST_Covers(w.geom, p.geom)
        ORDER BY p.id, {_TIE_BREAK}
    )
    {_measures("r", _stored_ward("r").format(probe="c.ward_id"), 1)}
    FROM reports AS r
    LEFT JOIN covering AS c ON c.id = r.id
    WHERE r.hidden_at IS NULL"""


def _sums(columns: tuple[str, ...]) -> str:
    return ", ".join(f"sum({c}) AS {c}" for c in columns)


def _nonzero(columns: tuple[str, ...]) -> str:
    return f"({', '.join(f'sum({c})' for c in columns)}) <> ({', '.join('0' for _ in columns)})"


_PERIODS = """
    CROSS JOIN LATERAL (VALUES
        ('week', d.day - (CAST(extract(isodow FROM d.day) AS integer) - 1)),
        ('month', d.day - (CAST(extract(day FROM d.day) AS integer) - 1))
    ) AS p (period, first_day)"""
"""The ISO week (from Monday) and the calendar month of each row's ``day``, pure date
arithmetic, so no session time zone enters."""


def _upsert(table: str, key: tuple[str, ...], columns: tuple[str, ...], rows: str) -> str:
    return f"""
        INSERT INTO {table} AS m ({", ".join((*key, *columns))})
        {rows}
        ON CONFLICT ({", ".join(key)}) DO UPDATE SET
            {", ".join(f"{c} = m.{c} + excluded.{c}" for c in columns)}"""


def _apply(changes: str, *, removes: bool) -> str:
    """Add ``changes`` (rows as ``_placed`` gives them) to both tables, in key order.

    Where ``changes`` ``removes`` reports, the rows left at zero are collected (their
    ctids) into ``emptied_days`` and ``emptied_periods``.
    """
    key = ", ".join(_DAY_KEY)
    having = (
        (f" HAVING {_nonzero(_DAY_MEASURES)}", f" HAVING {_nonzero(_MEASURES)}")
        if removes
        else ("", "")
    )
    day_rows = (
        f"SELECT {key}, {_sums(_DAY_MEASURES)} FROM changes "
        f"GROUP BY {key}{having[0]} ORDER BY {key}"
    )
    # The day rows first, then the week and month rows (the scalar subquery runs the day
    # upsert to completion before any period row is written): every writer locks rows of
    # the two tables in that one order.
    period_rows = (
        f"SELECT p.period, p.first_day, d.ward_id, {_sums(_MEASURES)} FROM days_changed AS d"
        f"{_PERIODS} WHERE (SELECT count(*) FROM days) > 0 "
        f"GROUP BY 1, 2, 3{having[1]} ORDER BY 1, 2, 3"
    )
    returning = "\n        RETURNING m.ctid AS place, m.reports"
    days = _upsert("ward_day_measures", _DAY_KEY, _DAY_MEASURES, "SELECT * FROM days_changed")
    periods = _upsert("ward_period_measures", _PERIOD_KEY, _MEASURES, period_rows)
    head = f"""
    WITH changes AS ({changes}),
    days_changed AS MATERIALIZED ({day_rows}),
    days AS ({days}{returning})"""
    if not removes:
        return f"{head}\n    {periods}"
    return f"""{head},
    periods AS ({periods}{returning})
    SELECT (SELECT array_agg(place) FROM days WHERE reports = 0),
           (SELECT array_agg(place) FROM periods WHERE reports = 0)
    INTO emptied_days, emptied_periods"""


# What a statement changed, as rows to add (+1) and take away (-1). An update changes the
# measures only when it changes where or whether a report counts or what it counts as; the
# rest (status moves that keep resolved_at, notes, supporters, teams) are left out first.
_RELEVANT = (
    "geom",
    "ward_id",
    "ward_snapped",
    "category_id",
    "created_at",
    "resolved_at",
    "due_at",
    "rating",
)


# An update's reports are placed once, from the new row: a report that did not move lies in
# the same ward before and after (a status change after a boundary replace, or a re-route,
# probes at most once, never for the old row). Not "old" and "new" as names: in a trigger
# function those are PL/pgSQL's row variables.
_UPDATED = f"""
    WITH pairs AS MATERIALIZED (
        SELECT n.id, {_ward_of("n")} AS new_ward, o.geom = n.geom AS unmoved
        FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id
        WHERE {" OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in _RELEVANT)}
           OR (o.hidden_at IS NULL) <> (n.hidden_at IS NULL)
    )
    {_measures("o", f"CASE WHEN p.unmoved THEN p.new_ward ELSE {_ward_of('o')} END", -1)}
    FROM pairs AS p JOIN old_rows AS o ON o.id = p.id
    WHERE o.hidden_at IS NULL
    UNION ALL
    {_measures("n", "p.new_ward", 1)}
    FROM pairs AS p JOIN new_rows AS n ON n.id = p.id
    WHERE n.hidden_at IS NULL"""

_CHANGES = {
    "insert": _placed("new_rows", 1),
    "update": _UPDATED,
    "delete": _placed("old_rows", -1),
}
_TRIGGERS = {
    "insert": "AFTER INSERT ON reports REFERENCING NEW TABLE AS new_rows",
    "update": "AFTER UPDATE ON reports REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "AFTER DELETE ON reports REFERENCING OLD TABLE AS old_rows",
}


def _function(name: str, statement: str, *, removes: bool, returns: str = "trigger") -> str:
    emptied = (
        """
    -- The upserts locked these rows for this transaction, so their ctids still hold.
    IF emptied_days IS NOT NULL THEN
        DELETE FROM ward_day_measures WHERE ctid = ANY(emptied_days);
    END IF;
    IF emptied_periods IS NOT NULL THEN
        DELETE FROM ward_period_measures WHERE ctid = ANY(emptied_periods);
    END IF;"""
        if removes
        else ""
    )
    return f"""
CREATE FUNCTION {name}() RETURNS {returns} LANGUAGE plpgsql AS $$
DECLARE
    emptied_days tid[];
    emptied_periods tid[];
BEGIN
    {statement};{emptied}
    RETURN{" NULL" if returns == "trigger" else ""};
END
$$"""


# No lock is taken first: a rebuild (a boundary replace) truncates the tables, so a writer's
# upsert waits for it to commit, and only then takes its snapshot (READ COMMITTED), in which
# the stored ward is retired and its reports are placed in the new wards.
_TRIGGER_FUNCTIONS = {
    name: _function(
        f"ward_measures_{name}", _apply(changes, removes=name != "insert"), removes=name != "insert"
    )
    for name, changes in _CHANGES.items()
}
_REBUILD = _function(
    "ward_measures_rebuild",
    "TRUNCATE ward_day_measures, ward_period_measures;\n" + _apply(_REBUILT, removes=False),
    removes=False,
    returns="void",
)


def upgrade() -> None:
    op.create_table(
        "ward_day_measures",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("ward_id", sa.Integer(), nullable=True),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("hours_bucket", sa.SmallInteger(), nullable=True),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in _MEASURES),
        sa.Column("resolve_seconds", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "uq_ward_day_measures_key",
        "ward_day_measures",
        list(_DAY_KEY),
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "ward_period_measures",
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("ward_id", sa.Integer(), nullable=True),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in _MEASURES),
        sa.CheckConstraint("period IN ('week', 'month')", name="ward_period_known"),
    )
    op.create_index(
        "uq_ward_period_measures_key",
        "ward_period_measures",
        list(_PERIOD_KEY),
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.execute(_REBUILD)
    op.execute("SELECT ward_measures_rebuild()")
    for name, when in _TRIGGERS.items():
        op.execute(_TRIGGER_FUNCTIONS[name])
        op.execute(
            f"CREATE TRIGGER reports_ward_measures_{name} {when} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION ward_measures_{name}()"
        )
    # A TRUNCATE fires no delete triggers; the measures go with the reports.
    op.execute(
        "CREATE FUNCTION ward_measures_truncate() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN TRUNCATE ward_day_measures, ward_period_measures; RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER reports_ward_measures_truncate AFTER TRUNCATE ON reports "
        "FOR EACH STATEMENT EXECUTE FUNCTION ward_measures_truncate()"
    )
    op.execute("ANALYZE ward_day_measures, ward_period_measures")


def downgrade() -> None:
    for name in (*_TRIGGERS, "truncate"):
        op.execute(f"DROP TRIGGER reports_ward_measures_{name} ON reports")
        op.execute(f"DROP FUNCTION ward_measures_{name}()")
    op.execute("DROP FUNCTION ward_measures_rebuild()")
    op.drop_table("ward_period_measures")
    op.drop_table("ward_day_measures")
