"""Heat-map aggregation: reports counted on a grid sized to the view, in PostGIS.

A page carries one weighted point per grid cell, never one per report, so its size is
bounded by ``max_cells`` however many reports the database holds. The cell size is a power
of two of a degree, so panning or a slightly different box gives the same grid. For the
public, cells count the points the public may see (``geo.access.policy``), and are never finer
than that location grid however small the box.

Open reports are counted ahead in ``open_heat_cells`` (migration 0017, kept by triggers on
``reports``) for the coarser grids, per zone and category, as staff see them and as the
public sees them on the default location grid. A view then reads the counts of the cells
wholly inside it and counts from the reports only the cells its edge cuts through, so its
cost follows the cells it shows, not the reports behind them. Finer grids cover a view a
few kilometres wide, whose open reports the partial indexes of open reports find. Other
filters (a time window, wards, teams, closed statuses) and another public location grid
are counted from the reports. Either way the answer is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, text

from geo.access.policy import (
    ANONYMOUS,
    DEFAULT_PUBLIC_ROUNDING_M,
    METRES_PER_DEGREE,
    Principal,
    grown_bbox,
    is_field_team,
    location_rounding_m,
    min_cell_deg,
    point_sql,
    sees_hidden,
)

# One query shape for every reader of reports: the heat grid filters exactly as lists do.
from geo.reports.search import REPORTS_FROM, ReportFilter, where_clauses
from geo.vocabulary import OPEN_STATUSES, OPEN_STATUSES_SQL

BBox = tuple[float, float, float, float]
"""``(min_lon, min_lat, max_lon, max_lat)`` in WGS84 degrees."""

MIN_CELL_DEG = 2.0**-14
"""Finest grid, about 7 m: finer cells show nothing a heat blur does not already."""

TILE_PX = 256

MAINTAINED_LEVELS = range(-10, 4)
"""Grid steps, as powers of two of a degree (about 110 m to 8 degrees), whose open-report
counts ``open_heat_cells`` keeps (migration 0017). A finer grid only serves a view a few
kilometres wide, whose reports the partial index of open reports finds directly."""

_OPEN = frozenset(OPEN_STATUSES)

MAINTAINED_ROUNDING_M = 100.0
"""The public location grid, in metres, the public counts in ``open_heat_cells`` are kept on
(the default ``ISSUEMAP_MAP_PUBLIC_ROUNDING_M``); with another, they are counted from reports."""


@dataclass(frozen=True, slots=True)
class HeatCell:
    """Reports counted in one grid cell, placed at the cell's grid point."""

    lat: float
    lon: float
    count: int


def cell_size_deg(
    bbox: BBox, *, max_cells: int, zoom: float | None = None, min_step: float = 0.0
) -> float:
    """Grid step in degrees so that ``bbox`` spans at most ``max_cells`` cells.

    Snapping to the nearest grid point puts the points of a span ``w`` wide on at most
    ``w / s + 2`` grid lines, so the step solves ``(w/s + 2)(h/s + 2) <= max_cells`` and is
    then rounded up to a power of two. With ``zoom``, cells are never smaller than four
    screen pixels at that zoom, since the heat blur is wider than that; and never smaller
    than ``min_step`` degrees.
    """
    if max_cells < 9:
        raise ValueError("max_cells must be at least 9")
    min_lon, min_lat, max_lon, max_lat = bbox
    w, h = max(max_lon - min_lon, 0.0), max(max_lat - min_lat, 0.0)
    if w * h > 0:
        # Positive root of wh·t² + 2(w+h)·t + (4 - max_cells) = 0, with t = 1/s.
        b = 2 * (w + h)
        t = (-b + math.sqrt(b * b - 4 * w * h * (4 - max_cells))) / (2 * w * h)
    elif w + h > 0:
        t = (max_cells / 3 - 2) / (w + h)
    else:
        t = 1 / MIN_CELL_DEG
    step = max(1 / t, MIN_CELL_DEG, min_step)
    if zoom is not None:
        step = max(step, 4 * 360.0 / (TILE_PX * 2.0**zoom))
    return float(2.0 ** math.ceil(math.log2(step)))


def heat_grid(
    conn: Connection,
    flt: ReportFilter,
    *,
    bbox: BBox,
    max_cells: int,
    principal: Principal = ANONYMOUS,
    zoom: float | None = None,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
    maintained: bool = True,
) -> list[HeatCell]:
    """Reports matching ``flt`` inside ``bbox``, counted per grid cell (most first).

    The filter's own ``bbox`` is replaced by ``bbox``: the grid is sized to the view.
    Unless ``principal`` is staff, reports are counted where the public sees them (those
    within a grid step outside the view too), and a cell is at least ``public_rounding_m``
    wide.

    Open reports on a grid of ``MAINTAINED_LEVELS`` are read from ``open_heat_cells`` when
    the filter is one those counts are kept for (``_kept_for``); only the cells the view's
    edge cuts through are counted from the reports. ``maintained=False`` counts every
    cell from the reports, with the same answer (the tests compare the two).
    """
    step = cell_size_deg(
        bbox,
        max_cells=max_cells,
        zoom=zoom,
        min_step=min_cell_deg(principal, bbox, public_rounding_m=public_rounding_m),
    )
    grown = grown_bbox(principal, bbox, public_rounding_m=public_rounding_m)
    only_open = bool(flt.statuses) and set(flt.statuses) <= _OPEN
    view = ReportFilter(
        bbox=grown,
        ids=flt.ids,
        ward_ids=flt.ward_ids,
        zone_ids=flt.zone_ids,
        team_ids=flt.team_ids,
        categories=flt.categories,
        # The open statuses are written out below instead.
        statuses=() if set(flt.statuses) == _OPEN else flt.statuses,
        created_from=flt.created_from,
        created_to=flt.created_to,
    )
    clauses, params = where_clauses(view, principal, public_rounding_m=public_rounding_m)
    if only_open:
        # As constants, so that a plan made for any values (psycopg prepares a statement it
        # runs often) still reads the partial indexes of open reports.
        clauses.append(f"r.status IN {OPEN_STATUSES_SQL}")
    point = point_sql(principal, public_rounding_m=public_rounding_m)
    params |= point.params | {"step": step, "max_cells": max_cells}
    snapped = f"ST_SnapToGrid(ST_MakePoint({point.lon}, {point.lat}), :step)"
    level = round(math.log2(step))
    inner = _inner_cells(grown, step)
    # Staff count hidden reports too: read apart, the open ones come through the partial
    # indexes of open reports, never through every report ever filed in the view.
    split = only_open and sees_hidden(principal)
    if (
        not maintained
        or level not in MAINTAINED_LEVELS
        or inner is None
        or not _kept_for(conn, flt, principal, public_rounding_m)
    ):
        sql = (
            "SELECT ST_Y(cell) AS lat, ST_X(cell) AS lon, count(*) AS n "
            f"FROM ({_snapped_sql(snapped, clauses, split=split)}) AS p GROUP BY cell "
        )
    else:
        edge, edge_params = _edge_sql(inner, step, principal, grown, public_rounding_m)
        keys = ""
        if flt.zone_ids:
            keys += " AND h.zone_id = ANY(:zone_ids)"
        if flt.categories:
            # One look-up ahead (an InitPlan): the cells keep coming in key order, grouped
            # without a sort.
            keys += " AND h.category_id = ANY(ARRAY(SELECT id FROM categories"
            keys += " WHERE code = ANY(:categories)))"
        params |= edge_params | {"level": level}
        counts = "staff_reports" if sees_hidden(principal) else "public_reports"
        sql = (
            # The inner cells come whole from the kept counts, the others from the reports.
            f"SELECT cell_y * :step AS lat, cell_x * :step AS lon, sum(h.{counts}) AS n"
            " FROM open_heat_cells AS h WHERE h.level = :level"
            " AND h.cell_x BETWEEN :cell_x0 AND :cell_x1"
            f" AND h.cell_y BETWEEN :cell_y0 AND :cell_y1{keys}"
            f" GROUP BY h.cell_x, h.cell_y HAVING sum(h.{counts}) > 0"
            " UNION ALL"
            " SELECT ST_Y(cell), ST_X(cell), count(*)"
            f" FROM ({_snapped_sql(snapped, [*clauses, edge], split=split)}) AS e"
            " WHERE NOT (ST_X(cell) BETWEEN :inner_x0 AND :inner_x1"
            "            AND ST_Y(cell) BETWEEN :inner_y0 AND :inner_y1)"
            " GROUP BY cell "
        )
    rows = conn.execute(
        # The step already bounds the count; the limit only guards against rounding.
        text(sql + "ORDER BY n DESC, lat, lon LIMIT :max_cells"),
        params,
    )
    # Unpacked as tuples: a national view's rows cost more read by name than its query.
    return [HeatCell(float(lat), float(lon), int(n)) for lat, lon, n in rows.all()]


def _snapped_sql(snapped: str, clauses: list[str], *, split: bool) -> str:
    """The grid point (``cell``) of every report meeting ``clauses``.

    With ``split``, reports staff hid are read apart from the others.
    """
    rows = f"SELECT {snapped} AS cell {REPORTS_FROM} WHERE {' AND '.join(clauses)}"
    if not split:
        return rows
    return f"{rows} AND r.hidden_at IS NULL UNION ALL {rows} AND r.hidden_at IS NOT NULL"


@dataclass(frozen=True, slots=True)
class _Inner:
    """The cells (grid indices, inclusive) whose every point lies inside a box."""

    x0: int
    x1: int
    y0: int
    y1: int


def _inner_cells(bbox: BBox, step: float) -> _Inner | None:
    """The cells of the grid ``step`` that lie wholly inside ``bbox``, if any.

    A point is in cell ``k`` when ``rint(x / step) = k``, so anywhere in
    ``[(k - 1/2) step, (k + 1/2) step]``. Worked in exact fractions: a cell found inside
    by a float rounding would count points outside the box.
    """
    s, half = Fraction(step), Fraction(1, 2)
    x0 = math.ceil(Fraction(bbox[0]) / s + half)
    x1 = math.floor(Fraction(bbox[2]) / s - half)
    y0 = math.ceil(Fraction(bbox[1]) / s + half)
    y1 = math.floor(Fraction(bbox[3]) / s - half)
    return _Inner(x0, x1, y0, y1) if x0 <= x1 and y0 <= y1 else None


def _edge_sql(
    inner: _Inner, step: float, principal: Principal, bbox: BBox, public_rounding_m: float
) -> tuple[str, dict[str, Any]]:
    """A condition on ``r.geom`` holding for every report whose cell is outside ``inner``.

    Four strips along the edges of ``bbox``, for the spatial index: the strips reach in
    from the inner cells' border by as far as the public location grid may move a point
    (nothing for staff), and out as far as the box is searched.
    """
    metres = location_rounding_m(principal, public_rounding_m)
    # At least bbox_sql's widening of the box, and twice what snapping moves a point.
    mx = min_cell_deg(principal, bbox, public_rounding_m=public_rounding_m)
    my = metres / METRES_PER_DEGREE
    ex0, ey0, ex1, ey1 = bbox[0] - mx, bbox[1] - my, bbox[2] + mx, bbox[3] + my
    strips = (
        (ex0, ey0, (inner.x0 - 0.5) * step + mx, ey1),
        ((inner.x1 + 0.5) * step - mx, ey0, ex1, ey1),
        (ex0, ey0, ex1, (inner.y0 - 0.5) * step + my),
        (ex0, (inner.y1 + 0.5) * step - my, ex1, ey1),
    )
    params: dict[str, Any] = {
        "cell_x0": inner.x0,
        "cell_x1": inner.x1,
        "cell_y0": inner.y0,
        "cell_y1": inner.y1,
        "inner_x0": inner.x0 * step,
        "inner_x1": inner.x1 * step,
        "inner_y0": inner.y0 * step,
        "inner_y1": inner.y1 * step,
    }
    parts = []
    for i, strip in enumerate(strips):
        names = [f"strip{i}_{j}" for j in range(4)]
        params |= dict(zip(names, strip, strict=True))
        parts.append(f"r.geom && ST_MakeEnvelope({', '.join(':' + n for n in names)}, 4326)")
    return "(" + " OR ".join(parts) + ")", params


def _kept_for(
    conn: Connection, flt: ReportFilter, principal: Principal, public_rounding_m: float
) -> bool:
    """Whether ``open_heat_cells`` counts the reports ``flt`` selects as ``principal`` sees them.

    The counts are kept for open reports by zone and category, where staff see them or
    where the public sees them on the ``MAINTAINED_ROUNDING_M`` grid. A field team sees
    its own zones' reports and its own elsewhere; the counts answer for its own zones only.
    """
    if (
        set(flt.statuses) != set(OPEN_STATUSES)
        or flt.ids
        or flt.ward_ids
        or flt.team_ids
        or flt.created_from is not None
        or flt.created_to is not None
        or any(z <= 0 for z in flt.zone_ids)
    ):
        return False
    if not sees_hidden(principal):
        return location_rounding_m(principal, public_rounding_m) == MAINTAINED_ROUNDING_M
    if not is_field_team(principal):
        return True
    zones = set(flt.zone_ids)
    return bool(zones) and conn.execute(
        text("SELECT count(*) FROM zones WHERE id = ANY(:ids) AND team_id = :team"),
        {"ids": list(zones), "team": principal.team_id},
    ).scalar_one() == len(zones)
