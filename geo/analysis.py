"""Analysis helpers for planners' notebooks: report tables, ward and team statistics, hot spots.

Everything reads through the same filter and joins as the service
(``geo.reports.search``), so "open", "overdue" or "category road" mean here what they mean
in the API. Aggregation happens in PostGIS wherever it can, so a city with a million reports
still returns one row per ward, team, week or grid cell.

Hot spots are Getis–Ord Gi* (``esda.G_Local`` with ``star=True`` and binary weights) over a
square grid in the city's UTM zone. Its p-values are two-sided: from the normal
approximation by default (fast, and what most GIS packages report), or from conditional
permutations when ``permutations`` is positive. A grid spans at most ``MAX_GRID_CELLS``
cells, so a whole country gets coarser cells than a city (2 km over Thailand).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine, text

from geo.access.policy import ANONYMOUS
from geo.city.boundary_files import check_attributes, metric_crs, repair_geometries
from geo.city.layers import current_wards
from geo.city.routing import staged_zones_route_select
from geo.errors import InvalidInputError
from geo.i18n import N_
from geo.reports.search import ReportFilter, report_query, select_sql
from geo.reports.stats import RATING_MEASURES, RESOLUTION_MEASURES, ward_report_measures
from geo.settings import RoutingSettings
from geo.vocabulary import OPEN_STATUSES

FloatArray = npt.NDArray[np.float64]

SIGNIFICANCE_CLASSES: Final = (
    "hot 99%",
    "hot 95%",
    "hot 90%",
    "not significant",
    "cold 90%",
    "cold 95%",
    "cold 99%",
)
"""Gi* classes, hottest first; the percentage is the confidence level (two-sided)."""

_LEVELS: Final = ((0.01, "99%"), (0.05, "95%"), (0.10, "90%"))
NEIGHBOURS: Final = ("queen", "rook", "knn")
# The cells around a cell (itself included: Gi*) for each grid neighbourhood.
_AROUND: Final = {
    "queen": tuple((dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)),
    "rook": ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)),
}

CELL_SIZES_M: Final = (250.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0, 50_000.0)
"""Hot-spot cell sizes tried in turn when none is asked for: the first whose grid fits."""

MAX_GRID_CELLS: Final = 500_000
"""Most cells a hot-spot grid may span over the wards' extent.

The work (cells laid and tested against the wards, weights, squares returned) grows with
it; half a million keeps a whole country under ten seconds on a small server.
"""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which reports to analyse; empty tuples and ``None`` mean "any".

    Wards and teams are named by code, as planners know them; a ward code matches reports
    routed to any version of that ward, so a re-imported boundary keeps its history.
    """

    created_from: datetime | None = None
    created_to: datetime | None = None
    categories: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    wards: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()


def _filter(conn: Connection, selection: Selection) -> ReportFilter:
    """The service's ``ReportFilter`` for ``selection`` (codes looked up as ids)."""

    def ids(table: str, codes: tuple[str, ...]) -> tuple[int, ...]:
        if not codes:
            return ()
        found = tuple(
            conn.execute(
                text(f"SELECT id FROM {table} WHERE code = ANY(:codes)"), {"codes": list(codes)}
            ).scalars()
        )
        # An unknown code selects nothing rather than everything.
        return found or (-1,)

    return ReportFilter(
        created_from=selection.created_from,
        created_to=selection.created_to,
        categories=selection.categories,
        statuses=selection.statuses,
        ward_ids=ids("wards", selection.wards),
        team_ids=ids("teams", selection.teams),
    )


def _selected(conn: Connection, selection: Selection, columns: str) -> tuple[str, dict[str, Any]]:
    """``SELECT columns`` over the selected reports, with the service's joins and filter."""
    return select_sql(columns, _filter(conn, selection), ANONYMOUS)


def _connect(source: Engine | Connection) -> Connection:
    return source.connect() if isinstance(source, Engine) else source


class _Reader:
    """Use a connection as given, or open (and close) one on an engine."""

    def __init__(self, source: Engine | Connection) -> None:
        self.source = source
        self.conn: Connection | None = None

    def __enter__(self) -> Connection:
        self.conn = _connect(self.source)
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if isinstance(self.source, Engine) and self.conn is not None:
            self.conn.close()


def reports_frame(
    source: Engine | Connection, selection: Selection | None = None
) -> gpd.GeoDataFrame:
    """The selected reports as a GeoDataFrame (EPSG:4326), with the API's public columns.

    Reporter names and contacts are never included: a notebook is shared further than a
    staff screen.
    """
    with _Reader(source) as conn:
        query, params = report_query(_filter(conn, selection or Selection()), ANONYMOUS)
        sql = f"SELECT q.*, ST_SetSRID(ST_MakePoint(q.lon, q.lat), 4326) AS geom FROM ({query}) q"
        return gpd.read_postgis(text(sql), conn, geom_col="geom", params=params)


def ward_stats(
    source: Engine | Connection,
    selection: Selection | None = None,
    *,
    population_field: str | None = None,
    target_hours: float | None = None,
    simplify_m: float = 5.0,
) -> gpd.GeoDataFrame:
    """Per current ward: reports, rate per 1,000 residents, SLA compliance, time to resolve.

    The ward dashboard's query (``geo.reports.stats.ward_report_measures``) over the
    selected reports, so the notebooks and the dashboard show the same numbers; a report
    counts under the current ward that covers its location, so a re-imported boundary
    keeps its history, and reports outside every current ward are tallied in
    ``frame.attrs["outside"]``. Columns: ``code, name, reports, resolved, within_sla,
    within_sla_share, median_hours_to_resolve, rated, mean_rating, population, per_1000, geom``
    (``rated``: reports their reporters rated; ``mean_rating``: the mean of those ratings,
    1 to 5). ``within_sla_share`` is the
    share of resolved reports resolved by their due time; ``population`` is read from the
    ward's ``properties[population_field]`` (missing when unset or not a number).
    With ``target_hours`` (say 48), "within SLA" means resolved within that many hours of
    being reported instead of by the category's due time. Ward outlines are simplified by
    about ``simplify_m`` metres for display.
    """
    with _Reader(source) as conn:
        return ward_report_measures(
            conn,
            _filter(conn, selection or Selection()),
            target_hours=target_hours,
            population_field=population_field,
            simplify_m=simplify_m,
        )


def team_performance(
    source: Engine | Connection,
    selection: Selection | None = None,
    *,
    now: datetime | None = None,
    target_hours: float | None = None,
) -> pd.DataFrame:
    """Per team: open and overdue work, SLA compliance, time to resolve, ageing, ratings.

    Columns: ``team_code, team_name, reports, open, overdue, resolved, within_sla,
    within_sla_share, median_hours_to_resolve, median_hours_overdue, max_hours_overdue,
    overdue_1d, overdue_1_3d, overdue_3_7d, overdue_7d_plus`` (overdue work by how long past
    its due time it is), ``rated`` and ``mean_rating`` (reports their reporters rated, and
    the mean rating, as in ``ward_stats``). ``now`` defaults to the database's clock;
    ``target_hours`` is as in ``ward_stats``. Reports no team was found for appear as team
    ``(unassigned)``.
    """
    with _Reader(source) as conn:
        inner, params = _selected(
            conn,
            selection or Selection(),
            "t.code AS team_code, t.name AS team_name, r.status, r.created_at, "
            "r.resolved_at, r.due_at, r.rating",
        )
        sql = f"""
            WITH s AS (
                SELECT x.*, x.status = ANY(:open) AS is_open,
                       x.status = ANY(:open) AND x.due_at < :now AS is_overdue,
                       extract(epoch FROM :now - x.due_at) / 3600.0 AS hours_past_due
                FROM ({inner}) AS x),
            agg AS (
                SELECT team_code, min(team_name) AS team_name, count(*) AS reports,
                       count(*) FILTER (WHERE is_open) AS open,
                       count(*) FILTER (WHERE is_overdue) AS overdue,
                       {RESOLUTION_MEASURES},
                       {RATING_MEASURES},
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY hours_past_due)
                           FILTER (WHERE is_overdue) AS median_hours_overdue,
                       max(hours_past_due) FILTER (WHERE is_overdue) AS max_hours_overdue,
                       count(*) FILTER (WHERE is_overdue AND hours_past_due <= 24) AS overdue_1d,
                       count(*) FILTER (WHERE is_overdue AND hours_past_due > 24
                                        AND hours_past_due <= 72) AS overdue_1_3d,
                       count(*) FILTER (WHERE is_overdue AND hours_past_due > 72
                                        AND hours_past_due <= 168) AS overdue_3_7d,
                       count(*) FILTER (WHERE is_overdue AND hours_past_due > 168)
                           AS overdue_7d_plus
                FROM s GROUP BY team_code)
            SELECT COALESCE(t.code, agg.team_code, '(unassigned)') AS team_code,
                   COALESCE(t.name, agg.team_name, '(unassigned)') AS team_name,
                   agg.*
            FROM teams AS t FULL JOIN agg ON agg.team_code = t.code
            ORDER BY (t.code IS NULL), 1
        """
        params |= {"open": list(OPEN_STATUSES), "now": now, "target_hours": target_hours}
        if now is None:
            params["now"] = conn.execute(text("SELECT now()")).scalar_one()
        frame = pd.read_sql_query(text(sql), conn, params=params)
    frame = frame.loc[:, ~frame.columns.duplicated()]
    counts = [
        "reports",
        "open",
        "overdue",
        "resolved",
        "within_sla",
        "overdue_1d",
        "overdue_1_3d",
        "overdue_3_7d",
        "overdue_7d_plus",
        "rated",
    ]
    frame[counts] = frame[counts].fillna(0).astype("int64")
    frame["mean_rating"] = frame["mean_rating"].astype("float64")
    frame["within_sla_share"] = frame["within_sla"] / frame["resolved"].where(frame["resolved"] > 0)
    return frame[
        [
            "team_code",
            "team_name",
            "reports",
            "open",
            "overdue",
            "resolved",
            "within_sla",
            "within_sla_share",
            "median_hours_to_resolve",
            "median_hours_overdue",
            "max_hours_overdue",
            "overdue_1d",
            "overdue_1_3d",
            "overdue_3_7d",
            "overdue_7d_plus",
            "rated",
            "mean_rating",
        ]
    ].reset_index(drop=True)


def weekly_trends(
    source: Engine | Connection,
    selection: Selection | None = None,
    *,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """Reports created per ISO week (in ``timezone``) and category: ``week, category, reports``.

    ``week`` is the ISO week's label, such as ``2026-W07``, and weeks sort as text.
    """
    with _Reader(source) as conn:
        inner, params = _selected(
            conn,
            selection or Selection(),
            "to_char(r.created_at AT TIME ZONE :tz, 'IYYY-\"W\"IW') AS week, c.code AS category",
        )
        sql = (
            f"SELECT week, category, count(*) AS reports FROM ({inner}) AS s "
            "GROUP BY week, category ORDER BY week, category"
        )
        params["tz"] = timezone
        frame = pd.read_sql_query(text(sql), conn, params=params)
    frame["reports"] = frame["reports"].astype("int64")
    return frame


# --- hot spots -------------------------------------------------------------------------


def significance(z: FloatArray, p: FloatArray) -> npt.NDArray[np.object_]:
    """The class in ``SIGNIFICANCE_CLASSES`` of each (z, two-sided p) pair."""
    labels = np.full(len(z), "not significant", dtype=object)
    # Loosest level first, so a stricter level overwrites it.
    for alpha, level in reversed(_LEVELS):
        hit = np.nan_to_num(p, nan=1.0) < alpha
        labels[hit & (z > 0)] = f"hot {level}"
        labels[hit & (z < 0)] = f"cold {level}"
    return labels


def _grid_weights(
    ix: npt.NDArray[np.int64], iy: npt.NDArray[np.int64], *, neighbours: str, k: int
) -> Any:
    """Binary libpysal weights between grid cells given by integer column and row.

    Queen and rook weights include each cell itself (Gi*'s self-weight). They are read off
    the grid by looking up each cell's neighbours' positions, rather than searched for by
    distance, which took longer than the statistic from a hundred thousand cells on.
    """
    from libpysal.graph import Graph
    from libpysal.weights import KNN

    if neighbours == "knn":
        coords = np.column_stack([ix, iy]).astype(float)
        with warnings.catch_warnings():
            # Islands (a cell whose neighbours are all outside the area) are fine for Gi*.
            warnings.simplefilter("ignore")
            return KNN.from_array(coords, k=min(k, len(coords) - 1))
    # One integer per cell, unique for the cells and every cell next to them.
    x0, y0 = ix.min() - 1, iy.min() - 1
    height = iy.max() - y0 + 2
    cells = pd.Index((ix - x0) * height + (iy - y0))
    focal: list[npt.NDArray[np.intp]] = []
    neighbour: list[npt.NDArray[np.intp]] = []
    for dx, dy in _AROUND[neighbours]:
        found = cells.get_indexer((ix + dx - x0) * height + (iy + dy - y0))
        hit = found >= 0
        focal.append(np.flatnonzero(hit))
        neighbour.append(found[hit])
    pairs = pd.DataFrame({"focal": np.concatenate(focal), "neighbor": np.concatenate(neighbour)})
    # Graph's own builders sort and check; this table is built in its canonical order.
    pairs = pairs.sort_values(["focal", "neighbor"], ignore_index=True)
    adjacency = pd.Series(
        np.ones(len(pairs)),
        index=pd.MultiIndex.from_frame(pairs),
        name="weight",
    )
    return Graph(adjacency, transformation="B", is_sorted=True)


def grid_hotspots(
    cells: pd.DataFrame,
    *,
    neighbours: str = "queen",
    k: int = 8,
    permutations: int = 0,
    seed: int | None = 2026,
) -> pd.DataFrame:
    """Getis–Ord Gi* of ``count`` over grid cells ``ix, iy`` (integer column and row).

    Returns ``cells`` with ``z``, ``p`` (two-sided) and ``significance`` added.

    Parameters
    ----------
    cells
        One row per cell of the study area, empty cells included (with count 0): Gi* compares
        each neighbourhood with the whole area, so leaving out empty cells hides cold areas
        and exaggerates nothing else.
    neighbours
        ``"queen"`` (the 8 surrounding cells), ``"rook"`` (the 4 sharing an edge) or ``"knn"``
        (the ``k`` nearest cells).
    k
        Neighbours per cell for ``"knn"``.
    permutations
        0 for the analytical z-score and normal p-value (fast at any size); otherwise the
        number of conditional permutations behind a pseudo p-value (``esda`` default 999).
    seed
        Seed of the permutations, so a notebook shows the same map every run.
    """
    from esda.getisord import G_Local

    if neighbours not in NEIGHBOURS:
        raise InvalidInputError("neighbours", f"use one of {', '.join(NEIGHBOURS)}")
    if permutations < 0:
        raise InvalidInputError("permutations", "must not be negative")
    out = cells.copy()
    n = len(out)
    y = out["count"].to_numpy(dtype=float)
    if n < 3 or float(y.std()) == 0.0:
        # Nothing to compare: every cell is like every other.
        out["z"], out["p"] = 0.0, 1.0
        out["significance"] = "not significant"
        return out
    from scipy.stats import norm

    weights = _grid_weights(
        out["ix"].to_numpy(dtype=np.int64),
        out["iy"].to_numpy(dtype=np.int64),
        neighbours=neighbours,
        k=k,
    )
    with warnings.catch_warnings():
        # Zero-variance rows divide by zero (handled below); esda also announces that its
        # permutation p-value will become two-sided, and we double the current one-sided one.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        gi = G_Local(
            y,
            weights,
            transform="B",
            star=True,
            permutations=permutations,
            keep_simulations=False,
            seed=seed,
            n_jobs=1,
        )
    z = np.nan_to_num(np.asarray(gi.Zs, dtype=float), nan=0.0)
    if permutations:
        p = np.minimum(1.0, 2.0 * np.asarray(gi.p_sim, dtype=float))
    else:
        p = 2.0 * norm.sf(np.abs(z))
    out["z"] = z
    out["p"] = p
    out["significance"] = significance(z, p)
    return out


def _study_cells(
    wards: npt.NDArray[np.object_], counted: pd.DataFrame, *, cell_m: float
) -> pd.DataFrame:
    """Every grid cell touching a ward (metric CRS), plus any cell holding reports."""
    # Only cells inside some ward's bounding box can touch it: over a country that leaves
    # out the sea and the neighbours, about half the grid, before any box is made.
    wards = wards[~shapely.is_empty(wards)]
    bounds = np.floor(shapely.bounds(wards) / cell_m).astype(np.int64)
    x0, y0 = bounds[:, 0].min(), bounds[:, 1].min()
    near = np.zeros((bounds[:, 3].max() - y0 + 1, bounds[:, 2].max() - x0 + 1), dtype=bool)
    for left, bottom, right, top in bounds - [x0, y0, x0, y0]:
        near[bottom : top + 1, left : right + 1] = True
    rows, columns = np.nonzero(near)
    gx, gy = columns + x0, rows + y0
    boxes = shapely.box(gx * cell_m, gy * cell_m, (gx + 1) * cell_m, (gy + 1) * cell_m)
    # Each box against the few wards near it, not against their union: a country's union
    # takes seconds to build and is slow to test.
    touched = np.unique(shapely.STRtree(wards).query(boxes, predicate="intersects")[0])
    grid = pd.DataFrame({"ix": gx[touched], "iy": gy[touched]})
    cells = grid.merge(counted, on=["ix", "iy"], how="outer")
    cells["count"] = cells["count"].fillna(0).astype("int64")
    return cells.sort_values(["iy", "ix"]).reset_index(drop=True)


def grid_counts(
    conn: Connection, selection: Selection, *, srid: int, cell_m: float
) -> pd.DataFrame:
    """Selected reports counted in PostGIS on a ``cell_m`` grid in ``srid``: ``ix, iy, count``."""
    inner, params = _selected(conn, selection, "ST_Transform(r.geom, CAST(:srid AS integer)) AS p")
    # OFFSET 0 keeps the subquery whole: flattened, each report was transformed twice (once
    # for ix, once for iy), and the planner sorted every report to group them.
    sql = (
        "SELECT floor(ST_X(p) / :cell)::bigint AS ix, floor(ST_Y(p) / :cell)::bigint AS iy, "
        f"count(*) AS count FROM ({inner} OFFSET 0) AS s GROUP BY 1, 2"
    )
    params |= {"srid": srid, "cell": cell_m}
    frame = pd.read_sql_query(text(sql), conn, params=params)
    return frame.astype({"ix": "int64", "iy": "int64", "count": "int64"})


def _grid_cells(bounds: FloatArray, cell_m: float) -> int:
    """How many ``cell_m`` cells a grid over ``bounds`` (metric) spans."""
    minx, miny, maxx, maxy = bounds
    columns = np.floor(maxx / cell_m) - np.floor(minx / cell_m) + 1
    rows = np.floor(maxy / cell_m) - np.floor(miny / cell_m) + 1
    return int(columns * rows)


def _cell_size(cell_m: float | None, bounds: FloatArray) -> float:
    """``cell_m``, or the first of ``CELL_SIZES_M`` that fits, checked against the grid limit."""
    if cell_m is None:
        fits = [size for size in CELL_SIZES_M if _grid_cells(bounds, size) <= MAX_GRID_CELLS]
        if not fits:
            raise InvalidInputError("wards", N_("the wards spread too far for a hot-spot grid"))
        return fits[0]
    if not 10.0 <= cell_m <= 50_000.0:
        raise InvalidInputError("cell_m", "must be between 10 and 50,000 metres")
    cells = _grid_cells(bounds, cell_m)
    if cells > MAX_GRID_CELLS:
        least = next(
            (size for size in CELL_SIZES_M if _grid_cells(bounds, size) <= MAX_GRID_CELLS),
            CELL_SIZES_M[-1],
        )
        raise InvalidInputError(
            "cell_m",
            N_(
                "{size:,.0f} m cells over these wards make a grid of {cells:,} cells, more "
                "than {limit:,}; use {least:,.0f} m or more, or leave it out"
            ),
            size=cell_m,
            cells=cells,
            limit=MAX_GRID_CELLS,
            least=least,
        )
    return cell_m


def hotspots(
    source: Engine | Connection,
    selection: Selection | None = None,
    *,
    cell_m: float | None = None,
    neighbours: str = "queen",
    k: int = 8,
    permutations: int = 0,
    seed: int | None = 2026,
) -> gpd.GeoDataFrame:
    """Getis–Ord Gi* hot and cold spots of the selected reports on a square grid.

    The grid has ``cell_m`` metre cells in the UTM zone of the current wards and covers every
    ward; reports are counted per cell in PostGIS. Without ``cell_m`` the cells are 250 m,
    or the first of ``CELL_SIZES_M`` whose grid spans at most ``MAX_GRID_CELLS`` cells (a
    finer ``cell_m`` than that is refused). Returns one row per cell (EPSG:4326 squares)
    with ``ix, iy, count, z, p, significance``, and the cell size in ``frame.attrs["cell_m"]``;
    see ``grid_hotspots`` for the statistic and its options.
    """
    with _Reader(source) as conn:
        extent = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                "FROM (SELECT ST_Extent(geom) AS e FROM wards WHERE retired_at IS NULL) AS x"
            )
        ).one()
        if extent[0] is None:
            raise InvalidInputError("wards", "there are no current wards to lay a grid over")
        # The cell size comes first, since the wards are read simplified to a tenth of it.
        outline = gpd.GeoSeries([shapely.box(*extent)], crs=4326)
        crs = metric_crs(gpd.GeoDataFrame(geometry=outline))
        srid = crs.to_epsg()
        if srid is None:
            raise InvalidInputError("wards", "no EPSG code for the wards' metric CRS")
        cell_m = _cell_size(cell_m, outline.to_crs(crs).total_bounds)
        wards = current_wards(conn, simplify_m=cell_m / 10).to_crs(crs)
        counted = grid_counts(conn, selection or Selection(), srid=srid, cell_m=cell_m)
    cells = grid_hotspots(
        _study_cells(wards.geometry.to_numpy(), counted, cell_m=cell_m),
        neighbours=neighbours,
        k=k,
        permutations=permutations,
        seed=seed,
    )
    ix = cells["ix"].to_numpy()
    iy = cells["iy"].to_numpy()
    squares = shapely.box(ix * cell_m, iy * cell_m, (ix + 1) * cell_m, (iy + 1) * cell_m)
    frame = gpd.GeoDataFrame(cells, geometry=squares, crs=crs).to_crs(4326)
    frame.attrs["cell_m"] = cell_m
    return frame


# --- what if ---------------------------------------------------------------------------


_OPEN_REPORTS = (
    "(SELECT id AS idx, geom, category_id, created_at FROM reports "
    "WHERE status = ANY(CAST(:open AS text[])))"
)


def _staged_zones(
    conn: Connection, candidate_zones: gpd.GeoDataFrame, *, team_field: str, id_field: str
) -> tuple[str, dict[int, str], dict[int, str]]:
    """The candidate zones as ``staged_zones_route_select`` binds them, and the code maps.

    Returns the JSON array, zone codes by staged id, and team codes by id (stored teams,
    and negative ids for teams the candidates name that do not exist yet). The zones go
    through the boundary import's attribute checks and geometry repair, so the outlines
    routed are those an import of the same file would store.
    """
    for option, field in (("team_field", team_field), ("id_field", id_field)):
        if field not in candidate_zones:
            raise InvalidInputError(option, f"the zone file has no field {field!r}")
    if candidate_zones.crs is None:
        raise InvalidInputError("candidate_zones", "the zones have no CRS; set one first")
    features = check_attributes(
        candidate_zones.to_crs(4326),
        layer="zones",
        id_field=id_field,
        name_field=id_field,
        team_field=team_field,
    )
    features, _ = repair_geometries(features)
    teams = {str(code): int(i) for i, code in conn.execute(text("SELECT id, code FROM teams"))}
    new = sorted({str(t) for t in features["team_code"]} - set(teams))
    teams |= {code: -n for n, code in enumerate(new, start=1)}
    wkbs = shapely.to_wkb(np.asarray(features.geometry.array), hex=True, output_dimension=2)
    zone_codes = {n: str(code) for n, code in enumerate(features["code"], start=1)}
    staged = [
        {"id": n, "code": zone_codes[n], "team_id": teams[str(team)], "wkb": str(wkb)}
        for n, (team, wkb) in enumerate(zip(features["team_code"], wkbs, strict=True), start=1)
    ]
    return json.dumps(staged), zone_codes, {i: code for code, i in teams.items()}


def what_if_routes(
    source: Engine | Connection,
    candidate_zones: gpd.GeoDataFrame,
    *,
    team_field: str = "team",
    id_field: str = "code",
    now: datetime | None = None,
    settings: RoutingSettings | None = None,
) -> pd.DataFrame:
    """Each open report's stored zone and team, and the ones it would get from ``candidate_zones``.

    The candidates are routed by the service's own set-based routing statement (the one
    imports and ``issuemap reports reroute`` run, ``geo.city.routing``) with the candidate
    zones bound as a parameter in place of the zones table: category routes, the zone that
    covers a point on a shared edge (the code that sorts first) and the rest are the
    service's rules, not a copy of them. Zones are named by ``id_field`` and their teams
    by code in ``team_field``, as for ``issuemap boundaries import``. Nothing is written,
    so it runs in a read-only transaction too.

    Columns: ``id, zone, team, new_zone, new_team`` (codes; missing when none) and
    ``overdue`` (due before ``now``, by default the database's clock).
    """
    routing = settings if settings is not None else RoutingSettings()
    with _Reader(source) as conn:
        staged, zone_codes, team_codes = _staged_zones(
            conn, candidate_zones, team_field=team_field, id_field=id_field
        )
        if now is None:
            now = conn.execute(text("SELECT now()")).scalar_one()
        frame = pd.read_sql_query(
            text(
                "SELECT r.id, oz.code AS zone, ot.code AS team, (r.due_at < :now) AS overdue, "
                "x.zone_id AS new_zone_id, x.team_id AS new_team_id "
                f"FROM ({staged_zones_route_select(_OPEN_REPORTS)}) AS x "
                "JOIN reports AS r ON r.id = x.idx "
                "LEFT JOIN zones AS oz ON oz.id = r.zone_id "
                "LEFT JOIN teams AS ot ON ot.id = r.team_id ORDER BY r.id"
            ),
            conn,
            params={
                "now": now,
                "open": list(OPEN_STATUSES),
                "staged_zones": staged,
                "snap_m": routing.snap_distance_m,
            },
        )
    frame["new_zone"] = frame.pop("new_zone_id").map(zone_codes)
    frame["new_team"] = frame.pop("new_team_id").map(team_codes)
    frame["overdue"] = frame["overdue"].astype(bool)
    return frame[["id", "zone", "team", "new_zone", "new_team", "overdue"]]


def zone_what_if(
    source: Engine | Connection,
    candidate_zones: gpd.GeoDataFrame,
    *,
    team_field: str = "team",
    id_field: str = "code",
    now: datetime | None = None,
    settings: RoutingSettings | None = None,
) -> pd.DataFrame:
    """Each team's open and overdue work today and if ``candidate_zones`` were the zones.

    Nothing is written: open reports are routed again by the service's routing statement
    with the candidate zones in place of today's (``what_if_routes``), so a report goes
    where intake would send it under those zones, category routes (say, flooding to the
    drainage team) included.

    ``expected_overdue_after`` scales each team's open load by the share of its reports
    that are overdue today (the city-wide share for a team with no work today): a rough
    measure of the overdue work the new load would carry at today's pace.
    """
    routed = what_if_routes(
        source,
        candidate_zones,
        team_field=team_field,
        id_field=id_field,
        now=now,
        settings=settings,
    )
    routed["team"] = routed["team"].fillna("(unassigned)")
    routed["new_team"] = routed["new_team"].fillna("(unassigned)").astype(str)

    before = routed.groupby("team").agg(
        open_before=("id", "size"), overdue_before=("overdue", "sum")
    )
    after = routed.groupby("new_team").agg(
        open_after=("id", "size"), overdue_after=("overdue", "sum")
    )
    table = before.join(after, how="outer").fillna(0).astype("int64")
    table.index.name = "team_code"
    city_share = float(routed["overdue"].mean()) if len(routed) else 0.0
    share = (table["overdue_before"] / table["open_before"].where(table["open_before"] > 0)).fillna(
        city_share
    )
    table["expected_overdue_after"] = (table["open_after"] * share).round(1)
    table["change_in_open"] = table["open_after"] - table["open_before"]
    return table.reset_index()
