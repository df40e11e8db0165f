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


def _placed(rows: str, n: int) -> str:
    """Each visible report of ``rows`` as ``n`` times its measures, under its day's key."""
    return f"""
    SELECT CAST(r.created_at AT TIME ZONE 'UTC' AS date) AS day,
           CASE WHEN stored.id IS NULL THEN here.id
                WHEN NOT r.ward_snapped THEN stored.id END AS ward_id,
           r.category_id,
           CAST(CASE WHEN r.resolved_at IS NULL THEN NULL
                     WHEN s.seconds < {_FIRST_SECONDS} THEN 0
                     ELSE least({_BUCKET_LAST}, 1 + floor(
                         {_BUCKETS_PER_DOUBLING} * ln(s.seconds / {_FIRST_SECONDS}) / ln(2)))
                END AS smallint) AS hours_bucket,
           {n} AS reports,
           CASE WHEN r.resolved_at IS NOT NULL THEN {n} ELSE 0 END AS resolved,
           CASE WHEN r.resolved_at <= r.due_at THEN {n} ELSE 0 END AS within_sla,
           CASE WHEN r.rating IS NOT NULL THEN {n} ELSE 0 END AS rated,
           {n} * COALESCE(r.rating, 0) AS rating_sum,
           {n} * COALESCE(CAST(round(s.seconds) AS bigint), 0) AS resolve_seconds
    FROM {rows} AS r
    CROSS JOIN LATERAL (
        SELECT CAST(extract(epoch FROM r.resolved_at - r.created_at) AS float8) AS seconds
    ) AS s
    -- Routing stored the covering ward, or snapped a point no ward covered, against the
    -- wards current then; while that ward is current, so are they all.
    LEFT JOIN wards AS stored ON stored.id = r.ward_id AND stored.retired_at IS NULL
    LEFT JOIN LATERAL (
        SELECT w.id FROM wards AS w
        WHERE stored.id IS NULL AND w.retired_at IS NULL AND ST_Covers(w.geom, r.geom)
        ORDER BY {_TIE_BREAK}
        LIMIT 1
    ) AS here ON true
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


def _changed_rows(side: str) -> str:
    """The rows of ``side`` (old or new) of the updated reports whose measures may change."""
    # Not "old" and "new": in a trigger function those name PL/pgSQL's row variables.
    differs = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in _RELEVANT)
    return (
        f"(SELECT {side[0]}.* FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id "
        f"WHERE {differs} OR (o.hidden_at IS NULL) <> (n.hidden_at IS NULL))"
    )


_CHANGES = {
    "insert": _placed("new_rows", 1),
    "update": _placed(_changed_rows("old"), -1)
    + "\n    UNION ALL"
    + _placed(_changed_rows("new"), 1),
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
    "TRUNCATE ward_day_measures, ward_period_measures;\n"
    + _apply(_placed("reports", 1), removes=False),
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
