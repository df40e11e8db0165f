"""Statistics of reports: the aggregates the dashboard and the planners' analysis share.

Each measure is written once here, over the service's own report filter
(``geo.reports.search``), so a number on the ward dashboard and in a notebook is one number.
"""

from __future__ import annotations

import geopandas as gpd
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

_WARD_MEASURES = """
WITH s AS ({selected}),
placed AS (
    SELECT here.code AS ward_code, s.*
    FROM s
    {ward_of_point}),
agg AS (
    SELECT ward_code, count(*) AS reports, {resolution}, {rating}
    FROM placed GROUP BY ward_code)
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
LEFT JOIN agg ON agg.ward_code = w.code
CROSS JOIN LATERAL (
    SELECT CASE WHEN (w.properties ->> :population_field) ~ '^\\s*[0-9]+(\\.[0-9]+)?\\s*$'
                THEN CAST(w.properties ->> :population_field AS float8) END AS population
) AS p
WHERE w.retired_at IS NULL
UNION ALL
SELECT NULL, NULL, agg.reports, agg.resolved, agg.within_sla,
       CAST(agg.within_sla AS float8) / NULLIF(agg.resolved, 0),
       agg.median_hours_to_resolve, agg.rated, agg.mean_rating, NULL, NULL, NULL
FROM agg WHERE agg.ward_code IS NULL
ORDER BY 1 NULLS LAST
"""

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
    frame = gpd.read_postgis(
        text(ward_measures_sql(selected)),
        conn,
        geom_col="geom",
        params=params
        | {
            "target_hours": target_hours,
            "population_field": population_field or "",
            # ST_SimplifyPreserveTopology is strict: a NULL tolerance skips it, outline and all.
            "tol": None if simplify_m is None else simplify_m / 111_000,
        },
    )
    counts = ["reports", "resolved", "within_sla", "rated"]
    shares = [
        "within_sla_share",
        "median_hours_to_resolve",
        "mean_rating",
        "population",
        "per_1000",
    ]
    outside_rows = frame["code"].isna()
    outside = {column: 0 for column in counts}
    if outside_rows.any():
        row = frame[outside_rows].iloc[0]
        outside = {column: int(row[column]) for column in counts}
    frame = frame[~outside_rows].reset_index(drop=True)
    frame[counts] = frame[counts].astype("int64")
    frame[shares] = frame[shares].astype("float64")
    result = frame[[*WARD_MEASURE_COLUMNS, "geom"]]
    result.attrs["outside"] = outside
    return result


def ward_measures_sql(selected: str) -> str:
    """The ward-measure query over ``selected``, a SELECT of report rows.

    ``selected`` answers ``geom, created_at, resolved_at, due_at, rating``. The query
    answers one row per current ward, then one row with a NULL ``code`` for the reports
    outside every current ward (if any are).
    """
    return _WARD_MEASURES.format(
        selected=selected,
        ward_of_point=WARD_OF_POINT.format(point="s.geom"),
        resolution=RESOLUTION_MEASURES,
        rating=RATING_MEASURES,
    )
