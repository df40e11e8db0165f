"""Heat-map aggregation: reports counted on a grid sized to the view, in PostGIS.

A page carries one weighted point per grid cell, never one per report, so its size is
bounded by ``max_cells`` however many reports the database holds. The cell size is a power
of two of a degree, so panning or a slightly different box gives the same grid. For the
public, cells count the points the public may see (``geo.access.policy``), and are never finer
than that location grid however small the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Connection, text

from geo.access.policy import (
    ANONYMOUS,
    DEFAULT_PUBLIC_ROUNDING_M,
    Principal,
    grown_bbox,
    min_cell_deg,
    point_sql,
)

# One query shape for every reader of reports: the heat grid filters exactly as lists do.
from geo.reports.search import REPORTS_FROM, ReportFilter, where_clauses

BBox = tuple[float, float, float, float]
"""``(min_lon, min_lat, max_lon, max_lat)`` in WGS84 degrees."""

MIN_CELL_DEG = 2.0**-14
"""Finest grid, about 7 m: finer cells show nothing a heat blur does not already."""

TILE_PX = 256


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
) -> list[HeatCell]:
    """Reports matching ``flt`` inside ``bbox``, counted per grid cell (most first).

    The filter's own ``bbox`` is replaced by ``bbox``: the grid is sized to the view.
    Unless ``principal`` is staff, reports are counted where the public sees them (those
    within a grid step outside the view too), and a cell is at least ``public_rounding_m``
    wide.
    """
    step = cell_size_deg(
        bbox,
        max_cells=max_cells,
        zoom=zoom,
        min_step=min_cell_deg(principal, bbox, public_rounding_m=public_rounding_m),
    )
    view = ReportFilter(
        bbox=grown_bbox(principal, bbox, public_rounding_m=public_rounding_m),
        ids=flt.ids,
        ward_ids=flt.ward_ids,
        zone_ids=flt.zone_ids,
        team_ids=flt.team_ids,
        categories=flt.categories,
        statuses=flt.statuses,
        created_from=flt.created_from,
        created_to=flt.created_to,
    )
    clauses, params = where_clauses(view, principal, public_rounding_m=public_rounding_m)
    point = point_sql(principal, public_rounding_m=public_rounding_m)
    rows = conn.execute(
        text(
            "SELECT ST_Y(cell) AS lat, ST_X(cell) AS lon, n FROM ("
            f"  SELECT ST_SnapToGrid(ST_MakePoint({point.lon}, {point.lat}), :step) AS cell,"
            f"  count(*) AS n {REPORTS_FROM}"
            f"  WHERE {' AND '.join(clauses)} GROUP BY 1) AS g "
            # The step already bounds the count; the limit only guards against rounding.
            "ORDER BY n DESC LIMIT :max_cells"
        ),
        params | point.params | {"step": step, "max_cells": max_cells},
    ).all()
    return [HeatCell(lat=float(r.lat), lon=float(r.lon), count=int(r.n)) for r in rows]
