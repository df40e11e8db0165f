"""Statistics of reports: the aggregates the dashboard and the planners' analysis share.

Each measure is written once here, over the service's own report filter
(``geo.reports.search``), so a number on the ward dashboard and in a notebook is one number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import geopandas as gpd
import numpy as np
from sqlalchemy import Connection, text

from geo.access.policy import ANONYMOUS
from geo.city.routing import WARD_OF_POINT
from geo.reports.search import REPORTS_FROM, ReportFilter, where_clauses

RESOLUTION_MEASURES = """count(*) FILTER (WHERE resolved_at IS NOT NULL) AS resolved,
    count(*) FILTER (WHERE resolved_at <= COALESCE(
        created_at + CAST(:target_hours AS float8) * interval '1 hour', due_at)) AS within_sla,
    percentile_cont(0.5) WITHIN GROUP (
        ORDER BY extract(epoch FROM resolved_at - created_at) / 3600.0
    ) FILTER (WHERE resolved_at IS NOT NULL) AS median_hours_to_resolve"""
"""Aggregates over rows with ``created_at, resolved_at, due_at``: resolved, resolved within
SLA (by the due time, or within ``:target_hours`` of the report when bound), and the median
hours to resolve. Ward measures and ``geo.analysis.team_performance`` share them."""

RATING_MEASURES = """count(rating) AS rated,
    CAST(avg(rating) AS float8) AS mean_rating"""
"""Aggregates over rows with ``rating``: how many reports their reporters rated (chat
reporters rate fixed work ``RATING_MIN`` to ``RATING_MAX``) and the mean of those ratings.
Ward measures and ``geo.analysis.team_performance`` share them."""

_POPULATION = """CASE WHEN (w.properties ->> :population_field) ~ '^\\s*[0-9]+(\\.[0-9]+)?\\s*$'
    THEN CAST(w.properties ->> :population_field AS float8) END"""
"""A ward's ``properties[:population_field]`` when it is a number."""


def _population(population_field: str | None) -> str:
    # Without a field no ward's properties are read: a tenth of the dashboard's query.
    return _POPULATION if population_field else "CAST(NULL AS float8)"


_WARD_ROWS = """
SELECT w.code, w.name,
       COALESCE(agg.reports, 0) AS reports,
       COALESCE(agg.resolved, 0) AS resolved,
       COALESCE(agg.within_sla, 0) AS within_sla,
       CAST(agg.within_sla AS float8) / NULLIF(agg.resolved, 0) AS within_sla_share,
       agg.median_hours_to_resolve,
       COALESCE(agg.rated, 0) AS rated,
       agg.mean_rating,
       p.population,
       1000.0 * COALESCE(agg.reports, 0) / NULLIF(p.population, 0) AS per_1000,
       ST_SimplifyPreserveTopology(w.geom, :tol) AS geom
FROM wards AS w
LEFT JOIN agg ON agg.ward = w.{ward_key}
CROSS JOIN LATERAL (SELECT {population} AS population) AS p
WHERE w.retired_at IS NULL
UNION ALL
SELECT NULL, NULL, agg.reports, agg.resolved, agg.within_sla,
       CAST(agg.within_sla AS float8) / NULLIF(agg.resolved, 0),
       agg.median_hours_to_resolve, agg.rated, agg.mean_rating, NULL, NULL, NULL
FROM agg WHERE agg.ward IS NULL
ORDER BY 1 NULLS LAST
"""
"""One row per current ward, then one for the reports outside every current ward, from an
``agg`` CTE with ``ward``, the ward's ``{ward_key}`` (NULL: outside), and the measures: the
counts ``reports``, ``resolved``, ``within_sla`` and ``rated``, ``median_hours_to_resolve``
and ``mean_rating``."""

_WARD_MEASURES = (
    """
WITH s AS ({selected}),
placed AS (
    SELECT here.code AS ward_code, s.*
    FROM s
    {ward_of_point}),
agg AS (
    SELECT ward_code AS ward, count(*) AS reports, {resolution}, {rating}
    FROM placed GROUP BY ward_code)
"""
    + _WARD_ROWS
)

WARD_MEASURE_COLUMNS = (
    "code",
    "name",
    "reports",
    "resolved",
    "within_sla",
    "within_sla_share",
    "median_hours_to_resolve",
    "rated",
    "mean_rating",
    "population",
    "per_1000",
)
"""What ``ward_report_measures`` answers per ward, besides its outline ``geom``."""


def ward_report_measures(
    conn: Connection,
    flt: ReportFilter | None = None,
    *,
    target_hours: float | None = None,
    population_field: str | None = None,
    simplify_m: float | None = 5.0,
) -> gpd.GeoDataFrame:
    """Per current ward, measures of the reports matching ``flt``: the one ward-measure query.

    The ward dashboard (``ward_measures``) and the planners' notebooks
    (``geo.analysis.ward_stats``) both read it, so they show the same numbers.

    A report counts under the **current ward that covers its location** (``WARD_OF_POINT``,
    routing's rule), not under the ward id stored when it was routed: a boundary re-import
    retires every ward row and inserts new ones, perhaps with new codes, and history must
    stay on the map. Reports outside every current ward are in no ward's row; their
    measures are in ``frame.attrs["outside"]`` (a dict of the count columns, ``reports``
    0 when there are none), so a reader can say how many there are. Columns are
    ``WARD_MEASURE_COLUMNS`` and ``geom``:

    ``reports``; ``resolved``; ``within_sla``, resolved by the due time, or with
    ``target_hours`` within that many hours of being reported; ``within_sla_share`` of the
    resolved ones (missing when none is); ``median_hours_to_resolve``; ``rated``, reports
    their reporters rated, and ``mean_rating``, the mean of those ratings (1 to 5; missing
    when none is rated); ``population`` from
    the ward's ``properties[population_field]`` when it is a number, and ``per_1000``
    reports per 1,000 residents. Outlines are simplified by about ``simplify_m`` metres;
    with ``None`` they are left out (``geom`` is empty), for a map that draws them from tiles.
    """
    clauses, params = where_clauses(flt or ReportFilter(), ANONYMOUS)
    selected = "SELECT r.geom, r.created_at, r.resolved_at, r.due_at, r.rating " + REPORTS_FROM
    if clauses:
        selected += " WHERE " + " AND ".join(clauses)
    return _ward_frame(
        conn,
        ward_measures_sql(selected, population=_population(population_field)),
        params | {"target_hours": target_hours},
        population_field=population_field,
        simplify_m=simplify_m,
    )


_COUNTS = ("reports", "resolved", "within_sla", "rated")
_SHARES = ("within_sla_share", "median_hours_to_resolve", "mean_rating", "population", "per_1000")


def _ward_frame(
    conn: Connection,
    sql: str,
    params: dict[str, Any],
    *,
    population_field: str | None,
    simplify_m: float | None,
) -> gpd.GeoDataFrame:
    """Run a ward-measure query (``_WARD_ROWS``) into ``ward_report_measures``' frame."""
    result = conn.execute(
        text(sql),
        params
        | {
            "population_field": population_field or "",
            # ST_SimplifyPreserveTopology is strict: a NULL tolerance skips it, outline and all.
            "tol": None if simplify_m is None else simplify_m / 111_000,
        },
    )
    names = list(result.keys())
    # The driver's plain tuples, into typed arrays column by column: a frame built from
    # 7,000 result rows one by one (as geopandas' read_postgis builds it), from SQLAlchemy's
    # Row objects, or with pandas guessing each column's type, took longer than the query.
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    outside = dict.fromkeys(_COUNTS, 0)
    # The reports outside every current ward come last (NULL code), if there are any.
    if rows and rows[-1][0] is None:
        outside = {column: int(rows[-1][names.index(column)]) for column in _COUNTS}
        rows = rows[:-1]
    values = dict(zip(names, zip(*rows, strict=True) if rows else [()] * len(names), strict=True))
    columns: dict[str, Any] = {
        name: np.array(values[name], dtype=np.int64 if name in _COUNTS else float)
        for name in (*_COUNTS, *_SHARES)
    }
    columns |= {name: np.array(values[name], dtype=object) for name in ("code", "name")}
    frame = gpd.GeoDataFrame(
        {name: columns[name] for name in WARD_MEASURE_COLUMNS},
        geometry=gpd.GeoSeries.from_wkb(np.array(values["geom"], dtype=object), crs=4326),
    ).rename_geometry("geom")
    frame.attrs["outside"] = outside
    return frame


def ward_measures_sql(selected: str, *, population: str = _POPULATION) -> str:
    """The ward-measure query over ``selected``, a SELECT of report rows.

    ``selected`` answers ``geom, created_at, resolved_at, due_at, rating``. The query
    answers one row per current ward, then one row with a NULL ``code`` for the reports
    outside every current ward (if any are). ``population`` is each ward's population as
    SQL (by default read from ``properties[:population_field]``).
    """
    return _WARD_MEASURES.format(
        ward_key="code",
        population=population,
        selected=selected,
        ward_of_point=WARD_OF_POINT.format(point="s.geom"),
        resolution=RESOLUTION_MEASURES,
        rating=RATING_MEASURES,
    )


# ------------------------------------------------------------------ maintained measures
#
# Migration 0016 keeps the measures that ``ward_report_measures`` gives for a window of whole
# UTC days, without a filter, in two tables, from triggers on ``reports``:
# ``ward_day_measures`` per current ward, category, UTC day and bucket of hours to resolve,
# and ``ward_period_measures`` per ward and ISO week or calendar month. A window reads its
# whole months and, in what is left at either end, its whole weeks, from the second, and
# only the days left over from the first: a few rows per ward, however long the window.
# A boundary replace recounts them (``geo.city.boundary_writes.rebuild_ward_measures``).

HOURS_BUCKET_FIRST = 0.25
"""Hours to resolve below this are bucket 0; bucket ``k`` >= 1 starts at this times
``2 ** ((k - 1) / HOURS_BUCKETS_PER_DOUBLING)`` (as migration 0016 computes it)."""
HOURS_BUCKETS_PER_DOUBLING = 4
HOURS_BUCKET_LAST = 63
"""The last bucket is open-ended: from about 1.5 years on."""


def hours_bucket_edges() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edges, in hours, of each bucket of hours to resolve (0 to ``LAST``)."""
    k = np.arange(HOURS_BUCKET_LAST + 1, dtype=float)
    upper = HOURS_BUCKET_FIRST * 2.0 ** (k / HOURS_BUCKETS_PER_DOUBLING)
    lower = np.concatenate([[0.0], upper[:-1]])
    upper[-1] = np.inf
    return lower, upper


@dataclass(frozen=True, slots=True)
class WindowParts:
    """A window of whole days as the maintained tables hold it: months, weeks, days.

    ``months`` and ``weeks`` are the first days of the calendar months and ISO weeks
    (from Monday) read whole; ``days`` the days left over at either end.
    """

    months: tuple[date, ...]
    weeks: tuple[date, ...]
    days: tuple[date, ...]


def window_parts(first: date, last: date) -> WindowParts:
    """Split the days ``first`` to ``last`` (both counted) into whole months, weeks and days."""
    months: list[date] = []
    start = first if first.day == 1 else _next_month(first)
    while _next_month(start) - timedelta(days=1) <= last:
        months.append(start)
        start = _next_month(start)
    if not months:
        return _weeks_and_days(first, last, [])
    rest = _weeks_and_days(first, months[0] - timedelta(days=1), months)
    after = _weeks_and_days(_next_month(months[-1]), last, [])
    return WindowParts(rest.months, rest.weeks + after.weeks, rest.days + after.days)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _weeks_and_days(first: date, last: date, months: list[date]) -> WindowParts:
    weeks: list[date] = []
    days: list[date] = []
    day = first
    while day <= last:
        if day.isoweekday() == 1 and day + timedelta(days=6) <= last:
            weeks.append(day)
            day += timedelta(days=7)
        else:
            days.append(day)
            day += timedelta(days=1)
    return WindowParts(tuple(months), tuple(weeks), tuple(days))


def whole_days(
    created_from: datetime | None, created_to: datetime | None
) -> tuple[date | None, date | None] | None:
    """The first and last UTC day of a window that is whole UTC days, else None.

    The window is ``created_from`` to ``created_to``, both included, as ``ReportFilter``
    has it: it is whole days when it starts at midnight (UTC) and ends at the last instant
    of a day (``time.max``, as ``geo.maps.pages.dashboard_window`` makes it). A missing end
    is open; naive times are not whole days (the database would read them in its zone).
    """
    first = last = None
    if created_from is not None:
        if created_from.tzinfo is None:
            return None
        start = created_from.astimezone(UTC)
        if start.time() != time.min:
            return None
        first = start.date()
    if created_to is not None:
        if created_to.tzinfo is None:
            return None
        end = created_to.astimezone(UTC)
        if end.time() != time.max:
            return None
        last = end.date()
    return first, last


_MAINTAINED_SUMS = """
WITH sums AS (
    SELECT ward_id, sum(reports) AS reports, sum(resolved) AS resolved,
           sum(within_sla) AS within_sla, sum(rated) AS rated, sum(rating_sum) AS rating_sum
    FROM (
        SELECT ward_id, reports, resolved, within_sla, rated, rating_sum
        FROM ward_period_measures
        WHERE (period = 'month' AND first_day = ANY(:months))
           OR (period = 'week' AND first_day = ANY(:weeks))
        UNION ALL
        SELECT ward_id, reports, resolved, within_sla, rated, rating_sum
        FROM ward_day_measures
        WHERE day = ANY(:days)
    ) AS parts
    GROUP BY ward_id
), {medians},
agg AS (
    SELECT s.ward_id AS ward, s.reports, s.resolved, s.within_sla,
           m.median_hours_to_resolve, s.rated,
           CAST(s.rating_sum AS float8) / NULLIF(s.rated, 0) AS mean_rating
    FROM sums AS s
    -- Ward ids are positive: 0 stands for outside every ward, so the join can hash.
    LEFT JOIN medians AS m ON COALESCE(m.ward_id, 0) = COALESCE(s.ward_id, 0)
)
""" + _WARD_ROWS.replace("{ward_key}", "id")
"""The ward measures of a window from the maintained tables: its whole months and weeks
from ``ward_period_measures``, its other days from ``ward_day_measures``."""

# The median hours to resolve is percentile_cont(0.5)'s: the value at the middle rank of a
# ward's resolved reports, or halfway between the two middle ones (ranks from 0, in order of
# bucket), each report taken at the mean hours of its bucket in the window. That is exact
# when a middle report is alone in its bucket (as is usual for a ward over a few weeks) or
# its bucket's reports took equally long; otherwise it is within the bucket, which spans a
# factor of 2 ** (1/4): at most about a fifth of the value off.
_MEDIANS = """cells AS MATERIALIZED (
    SELECT ward_id, hours_bucket, CAST(sum(resolved) AS float8) AS n,
           CAST(sum(resolve_seconds) AS float8) / 3600.0 AS hours
    FROM ward_day_measures
    WHERE day BETWEEN :first AND :last AND hours_bucket IS NOT NULL
    GROUP BY ward_id, hours_bucket
), ranked AS (
    SELECT ward_id, n, hours / n AS hours, sum(n) OVER w - n AS before,
           0.5 * (sum(n) OVER (PARTITION BY ward_id) - 1) AS middle
    FROM cells
    WINDOW w AS (PARTITION BY ward_id ORDER BY hours_bucket)
), medians AS (
    SELECT ward_id, low + (middle - floor(middle)) * (high - low) AS median_hours_to_resolve
    FROM (
        SELECT ward_id, middle,
               min(hours) FILTER (WHERE before <= floor(middle) AND floor(middle) < before + n)
                   AS low,
               min(hours) FILTER (WHERE before <= ceil(middle) AND ceil(middle) < before + n)
                   AS high
        FROM ranked
        GROUP BY ward_id, middle
    ) AS middles
)"""
_NO_MEDIANS = """medians AS (
    SELECT CAST(NULL AS integer) AS ward_id, CAST(NULL AS float8) AS median_hours_to_resolve
    WHERE false
)"""


def maintained_ward_measures(
    conn: Connection,
    first: date | None = None,
    last: date | None = None,
    *,
    median: bool = True,
    population_field: str | None = None,
    simplify_m: float | None = 5.0,
) -> gpd.GeoDataFrame:
    """``ward_report_measures`` of the reports created on the UTC days ``first`` to ``last``.

    Read from the tables migration 0016 keeps, never from ``reports``: the same counts,
    shares and mean rating as the query over reports gives (``within_sla`` by the due
    time). A missing end is open. ``median_hours_to_resolve`` is left out (missing) unless
    ``median``; it is estimated from the buckets of hours to resolve (``_MEDIANS``).
    """
    if first is None or last is None:
        bounds = conn.execute(text("SELECT min(day), max(day) FROM ward_day_measures")).one()
        first = first or bounds[0] or datetime.now(UTC).date()
        last = last or bounds[1] or first
    parts = window_parts(first, last) if first <= last else WindowParts((), (), ())
    return _ward_frame(
        conn,
        _MAINTAINED_SUMS.format(
            medians=_MEDIANS if median else _NO_MEDIANS, population=_population(population_field)
        ),
        {
            "months": list(parts.months),
            "weeks": list(parts.weeks),
            "days": list(parts.days),
            "first": first,
            "last": last,
        },
        population_field=population_field,
        simplify_m=simplify_m,
    )
