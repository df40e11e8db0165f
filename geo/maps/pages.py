"""The map pages' data, gathered and built: the city overview, the public map, a zone, the wards.

Each function reads what its page shows, applies who may see it, and returns the
``folium.Map``; the caller renders it (``geo.maps.builders.render_page``) and sends it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

import folium
import geopandas as gpd
from sqlalchemy import Connection

from geo.access.policy import ANONYMOUS, Principal, may_see_zone, may_work_reports
from geo.city.catalogue import category_names
from geo.city.layers import (
    city_bounds,
    current_wards,
    current_zone,
    current_zones,
    wards_meeting_zone,
)
from geo.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from geo.i18n import N_
from geo.maps.builders import (
    Filters,
    MapReport,
    MarkerPage,
    TiledLayer,
    city_overview_map,
    public_map,
    report_list_page,
    ward_classes,
    ward_dashboard_map,
    zone_map,
)
from geo.maps.choropleth import CLASS_METHODS, K_DEFAULT, K_MAX, K_MIN
from geo.maps.heat import heat_grid
from geo.maps.pagedata import map_reports, open_work_counts, ward_measures
from geo.maps.resident import when
from geo.maps.tiles import TILE_MIN_ZOOM, boundary_version, tile_url, tiled
from geo.reports.search import ReportFilter
from geo.reports.workflow import next_statuses
from geo.settings import MapSettings
from geo.vocabulary import FIXED_STATUSES, OPEN_STATUSES

BBox = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class PageFilters:
    """What a page's visitor chose: the view, categories, statuses, window, language, page."""

    bbox: BBox | None = None
    categories: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    lang: str = "th"
    page: int = 1
    fixed_days: int = 30
    """The public map's fixed work: reports resolved or closed in this many days (0: none)."""


def _marker(row: Mapping[str, Any], **extra: Any) -> MapReport:
    """A map marker from a ``map_reports`` row: the fields every map shows, plus ``extra``."""
    return MapReport(
        id=row["id"],
        lat=row["lat"],
        lon=row["lon"],
        category=row["category"],
        status=row["status"],
        created_at=row["created_at"],
        due_at=row["due_at"],
        overdue=bool(row["overdue"]),
        **extra,
    )


def _one(name: str, values: tuple[str, ...]) -> str:
    if len(values) > 1:
        raise InvalidInputError(name, N_("the map filters by one value at a time"))
    return values[0] if values else ""


def city_page_map(
    conn: Connection, *, maps: MapSettings, public_rounding_m: float, lang: str = "th"
) -> folium.Map:
    """The city overview: wards, field-team zones and a public heat layer of open reports.

    Labels and the names of wards, zones and teams are in ``lang``.
    """
    view = city_bounds(conn)
    heat = (
        heat_grid(
            conn,
            ReportFilter(statuses=OPEN_STATUSES),
            bbox=view,
            max_cells=maps.heat_cells,
            public_rounding_m=public_rounding_m,
        )
        if view is not None
        else []
    )
    return city_overview_map(
        wards=_boundaries(conn, "wards", lang=lang, maps=maps, bounds=view)
        or current_wards(conn, lang=lang),
        zones=_boundaries(conn, "zones", lang=lang, maps=maps, bounds=view)
        or current_zones(conn, lang=lang),
        heat=[(c.lat, c.lon, c.count) for c in heat],
        lang=lang,
        tiles=maps.tiles,
        attribution=maps.tiles_attribution,
    )


def _boundaries(
    conn: Connection,
    layer: str,
    *,
    lang: str,
    maps: MapSettings,
    bounds: BBox | None,
    meeting_zone: int | None = None,
) -> TiledLayer | None:
    """The tiles to draw ``layer`` from, when it is too big to carry inline (else ``None``).

    With ``meeting_zone``, only the features meeting that zone count towards the limit.
    """
    if not tiled(conn, layer, inline_max=maps.inline_features_max, meeting_zone=meeting_zone):
        return None
    return TiledLayer(
        url=tile_url(layer, lang=lang, version=boundary_version(conn, layer)),
        min_zoom=TILE_MIN_ZOOM[layer],
        bounds=bounds,
    )


def public_page_map(
    conn: Connection,
    filters: PageFilters,
    *,
    maps: MapSettings,
    public_rounding_m: float,
    live: bool,
) -> folium.Map:
    """The public map: open reports as heat and markers, and recently fixed work as markers.

    Everything as the public sees it (``geo.access.policy``): no personal data, no hidden
    reports, locations on the public grid.
    """
    category = _one("category", filters.categories)
    bbox = filters.bbox
    view = bbox or city_bounds(conn)
    flt = ReportFilter(bbox=bbox, categories=filters.categories, statuses=OPEN_STATUSES)
    markers = public_reports(conn, filters, maps=maps, public_rounding_m=public_rounding_m)
    heat = (
        heat_grid(
            conn, flt, bbox=view, max_cells=maps.heat_cells, public_rounding_m=public_rounding_m
        )
        if view is not None
        else []
    )
    return public_map(
        heat=[(c.lat, c.lon, c.count) for c in heat],
        markers=markers,
        filters=Filters(
            categories=category_names(conn, filters.lang),
            category=category,
            hidden_fields=_bbox_field(filters) | {"lang": filters.lang},
            fixed_days=filters.fixed_days,
        ),
        query=public_query(filters),
        bounds=view,
        lang=filters.lang,
        page_size=maps.marker_cap,
        tiles=maps.tiles,
        attribution=maps.tiles_attribution,
        live=live,
    )


def public_query(filters: PageFilters) -> dict[str, str]:
    """The public map's parameters for ``filters``, as its links carry them."""
    query = {"lang": filters.lang, "fixed_days": str(filters.fixed_days)}
    if filters.categories:
        query["category"] = filters.categories[0]
    if filters.bbox is not None:
        query["bbox"] = ",".join(f"{v:.5f}" for v in filters.bbox)
    if filters.page > 1:
        query["page"] = str(filters.page)
    return query


def public_page_list(
    conn: Connection,
    filters: PageFilters,
    *,
    maps: MapSettings,
    public_rounding_m: float,
    zone: tzinfo,
) -> str:
    """The public map's list view: the same page of the same reports, as an HTML table.

    Times are told in ``zone``, the city's (``CitySettings.zone``).
    """
    category = _one("category", filters.categories)
    return report_list_page(
        markers=public_reports(conn, filters, maps=maps, public_rounding_m=public_rounding_m),
        filters=Filters(
            categories=category_names(conn, filters.lang),
            category=category,
            hidden_fields=_bbox_field(filters) | {"lang": filters.lang},
            fixed_days=filters.fixed_days,
        ),
        lang=filters.lang,
        query=public_query(filters) | {"view": "list"},
        # Moments as the status page writes them: in the city's time zone.
        when=functools.partial(when, lang=filters.lang, zone=zone),
        page_size=maps.marker_cap,
    )


def _bbox_field(filters: PageFilters) -> dict[str, str]:
    return {"bbox": public_query(filters)["bbox"]} if filters.bbox is not None else {}


MAX_FIXED_DAYS = 365
"""The longest period of fixed work the public map shows, in days."""


def public_reports(
    conn: Connection, filters: PageFilters, *, maps: MapSettings, public_rounding_m: float
) -> MarkerPage:
    """One page of the public map's reports: open ones, then those fixed in the chosen days.

    The map's markers and its list view are this same page.
    """
    if not 0 <= filters.fixed_days <= MAX_FIXED_DAYS:
        raise InvalidInputError(
            "fixed_days", N_("must be between 0 and {limit} days"), limit=MAX_FIXED_DAYS
        )
    flt = ReportFilter(bbox=filters.bbox, categories=filters.categories, statuses=OPEN_STATUSES)
    offset = (filters.page - 1) * maps.marker_cap
    found = map_reports(
        conn,
        flt,
        ANONYMOUS,
        limit=maps.marker_cap,
        offset=offset,
        fixed_since=(
            datetime.now(UTC) - timedelta(days=filters.fixed_days) if filters.fixed_days else None
        ),
        public_rounding_m=public_rounding_m,
    )
    reports = [
        _marker(
            row,
            resolved_at=row["resolved_at"] if row["status"] in FIXED_STATUSES else None,
            public_note=row["public_note"] or "",
            token=row["token"],
        )
        for row in found.rows
    ]
    return MarkerPage(reports=reports, total=found.total, offset=offset, more=found.more)


def zone_page_map(
    conn: Connection,
    principal: Principal,
    zone_code: str,
    filters: PageFilters,
    *,
    maps: MapSettings,
    api_key: str | None,
    live: bool,
) -> folium.Map:
    """A field team's zone: outline, wards, heat of open reports, workable markers.

    A field team sees only the zone its team works; any other zone is "not found", so a
    key cannot learn which zones exist. Field teams and admins get buttons that move each
    report to its next status, which send ``api_key``; planners only look.
    """
    zone = current_zone(conn, zone_code, lang=filters.lang)
    if len(zone) == 0 or not may_see_zone(principal, int(zone["team_id"].iloc[0])):
        raise NotFoundError(N_("There is no zone {zone!r} for this key."), zone=zone_code)
    zone_id = int(zone["id"].iloc[0])
    category = _one("category", filters.categories)
    status = _one("status", filters.statuses)
    flt = ReportFilter(
        bbox=filters.bbox,
        zone_ids=(zone_id,),
        categories=filters.categories,
        statuses=filters.statuses or OPEN_STATUSES,
        created_from=filters.created_from,
        created_to=filters.created_to,
    )
    offset = (filters.page - 1) * maps.marker_cap
    whole_queue = ReportFilter(zone_ids=(zone_id,), statuses=OPEN_STATUSES)
    work = open_work_counts(conn, whole_queue, principal)
    found = map_reports(
        conn,
        flt,
        principal,
        limit=maps.marker_cap,
        offset=offset,
        # Unfiltered, the markers are the whole queue the backlog line has just counted.
        total=work.open if flt == whole_queue else None,
    )
    actions = may_work_reports(principal)
    reports = [
        _marker(
            row,
            description=row["description"] or "",
            next_statuses=tuple(next_statuses(row["status"])) if actions else (),
        )
        for row in found.rows
    ]
    view = filters.bbox or tuple(float(v) for v in zone.total_bounds)
    heat = heat_grid(
        conn,
        ReportFilter(
            zone_ids=(zone_id,),
            categories=filters.categories,
            statuses=OPEN_STATUSES,
            created_from=filters.created_from,
            created_to=filters.created_to,
        ),
        bbox=(view[0], view[1], view[2], view[3]),
        max_cells=maps.heat_cells,
        principal=principal,
    )
    created_from, created_to = filters.created_from, filters.created_to
    return zone_map(
        zone=zone,
        wards=_boundaries(
            conn, "wards", lang=filters.lang, maps=maps, bounds=None, meeting_zone=zone_id
        )
        or wards_meeting_zone(conn, zone_id, lang=filters.lang),
        heat=[(c.lat, c.lon, c.count) for c in heat],
        markers=MarkerPage(reports=reports, total=found.total, offset=offset, more=found.more),
        filters=Filters(
            categories=category_names(conn, filters.lang),
            category=category,
            statuses=OPEN_STATUSES,
            status=status,
            created_from=created_from.date().isoformat() if created_from else "",
            created_to=created_to.date().isoformat() if created_to else "",
            hidden_fields={"zone": zone_code, "lang": filters.lang},
        ),
        lang=filters.lang,
        api_key=api_key if actions else None,
        actions=actions,
        page_size=maps.marker_cap,
        tiles=maps.tiles,
        attribution=maps.tiles_attribution,
        live=live,
        work=work,
    )


DASHBOARD_DAYS = 90
"""The ward dashboard's default window: reports created in the last this many days."""


def dashboard_window(
    created_from: datetime | None, created_to: datetime | None, *, today: date | None = None
) -> tuple[datetime, datetime]:
    """The ward dashboard's window: the chosen ends, else the last ``DASHBOARD_DAYS`` days.

    A missing end defaults to the end of today (UTC), a missing start to ``DASHBOARD_DAYS``
    days before the end's day. Days are UTC days, as the date inputs' values are read.
    """
    today = today or datetime.now(UTC).date()
    end = created_to or datetime.combine(today, time.max, tzinfo=UTC)
    start = created_from or datetime.combine(
        end.astimezone(UTC).date() - timedelta(days=DASHBOARD_DAYS - 1), time.min, tzinfo=UTC
    )
    if start > end:
        raise InvalidInputError("created_from", N_("must not be later than created_to"))
    return start, end


def _dashboard_wards(
    conn: Connection,
    principal: Principal,
    filters: PageFilters,
    *,
    measure: str,
    method: str,
    k: int,
    outlines: bool = False,
) -> tuple[gpd.GeoDataFrame, datetime, datetime]:
    """The ward dashboard's wards with their measures (and ``outlines``), and its window.

    Only for a ``principal`` who sees everything. What the page does not draw is left
    out: the median unless ``measure`` is it, and the names unless the outlines are
    inline (tiles carry them).
    """
    if not principal.sees_everything:
        raise PermissionDeniedError(N_("The ward dashboard is for planners and administrators."))
    if method not in CLASS_METHODS:
        raise InvalidInputError(
            "method", N_("must be one of {choices}"), choices=", ".join(CLASS_METHODS)
        )
    if not K_MIN <= k <= K_MAX:
        raise InvalidInputError("k", N_("must be from {low} to {high}"), low=K_MIN, high=K_MAX)
    start, end = dashboard_window(filters.created_from, filters.created_to)
    wards = ward_measures(
        conn,
        created_from=start,
        created_to=end,
        lang=filters.lang if outlines else None,
        simplify_m=5.0 if outlines else None,
        median=measure == "median_hours",
    )
    return wards, start, end


def wards_page_map(
    conn: Connection,
    principal: Principal,
    filters: PageFilters,
    *,
    measure: str,
    maps: MapSettings,
    method: str = "quantiles",
    k: int = K_DEFAULT,
) -> folium.Map:
    """The ward dashboard, for planners and administrators: wards coloured by ``measure``.

    Counts reports created in the window of ``filters`` (by default the last
    ``DASHBOARD_DAYS`` days) in the current ward that covers each, classed by ``method``
    into at most ``k`` classes (``geo.maps.choropleth``). A city with more wards than
    ``MapSettings.inline_features_max`` gets them as tiles, coloured from
    ``wards_page_measures`` (at ``MEASURES_PATH``), so the page does not grow with them.
    """
    ward_tiles = _boundaries(conn, "wards", lang=filters.lang, maps=maps, bounds=city_bounds(conn))
    wards, start, end = _dashboard_wards(
        conn, principal, filters, measure=measure, method=method, k=k, outlines=ward_tiles is None
    )
    window = (start.astimezone(UTC).date(), end.astimezone(UTC).date())
    query = {
        "measure": measure,
        "method": method,
        "k": str(k),
        "created_from": window[0].isoformat(),
        "created_to": window[1].isoformat(),
        "lang": filters.lang,
    }
    return ward_dashboard_map(
        wards=wards,
        measure=measure,
        lang=filters.lang,
        filters=Filters(categories={}, hidden_fields={"lang": filters.lang}),
        tiles=maps.tiles,
        attribution=maps.tiles_attribution,
        method=method,
        k=k,
        window=window,
        outside=int(wards.attrs.get("outside", {}).get("reports", 0)),
        ward_tiles=ward_tiles,
        measures_url=f"{MEASURES_PATH}?{urlencode(query)}" if ward_tiles else None,
    )


MEASURES_PATH = "/maps/wards/measures"
"""Where the ward dashboard's page fetches its wards' colours and values when tiled."""


MEASURE_COLUMNS = ("fill", "dash", "shown", "reports", "resolved")
"""What ``wards_page_measures`` gives each ward, in its rows' order after the ward code."""

_LOOKED_UP = ("fill", "dash", "shown")
"""Columns with few distinct values, sent as an index into a list of them: the colours,
and the values shown (a share in whole percent, or the same "too few reports" for most
wards of a city with few reports, which sent alone made the answer a megabyte)."""


def wards_page_measures(
    conn: Connection,
    principal: Principal,
    filters: PageFilters,
    *,
    measure: str,
    method: str = "quantiles",
    k: int = K_DEFAULT,
) -> dict[str, Any]:
    """What each ward of the dashboard shows, compactly: one row per ward, keyed by code.

    The same classes and colours as ``wards_page_map`` with the same choices
    (``geo.maps.builders.ward_classes``). ``rows`` are ``[code, *MEASURE_COLUMNS]``; a
    column named in ``lookup`` holds an index into that list (a few colours and values, not
    one per ward). Names are not here: the tiles carry them.
    """
    wards, _, _ = _dashboard_wards(conn, principal, filters, measure=measure, method=method, k=k)
    _, shown = ward_classes(wards, measure, lang=filters.lang, method=method, k=k)
    lookup: dict[str, list[str | None]] = {
        column: sorted({row[column] for row in shown.values()}, key=str) for column in _LOOKED_UP
    }
    index = {column: {v: i for i, v in enumerate(values)} for column, values in lookup.items()}
    # Column by column, then zipped: thousands of wards, so no per-cell branching.
    columns: list[list[int | str | None]] = [list(shown)]
    for column in MEASURE_COLUMNS:
        values = [row[column] for row in shown.values()]
        columns.append([index[column][v] for v in values] if column in index else [*values])
    rows = [list(row) for row in zip(*columns, strict=True)]
    return {"columns": list(MEASURE_COLUMNS), "lookup": lookup, "rows": rows}
