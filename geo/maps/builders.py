"""Folium map builders: pure functions from plain data to a ``folium.Map``.

Each kind of map has one builder: the city overview, a field team's zone, the public
embeddable map and the planners' ward dashboard. Builders never touch the database;
``geo.maps.pages`` gathers the data (``geo.maps.pagedata``, ``geo.maps.heat``) and passes it in.

Pages must work offline and leak nothing to third parties: ``geo.maps.assets`` points every
script and stylesheet at our own ``/static/vendor`` copies (see ``scripts/vendor_assets.sh``)
and leaves out those no page here uses, so the only third-party URL left is the tile
server's, if one is configured. Report markers are written once as compact JSON and drawn
by one small script, rather than as one folium element each, so a page stays small with
hundreds of markers. Scripts can find the pieces on ``window.issuemap`` (``map``, ``heat``,
``markers``, ``reports``, ``outline``, ``wards``).

The page's own scripts, styles and element templates are package files in ``templates/``,
read with ``importlib.resources`` and a Jinja ``PackageLoader``, so an installed issuemap
needs nothing from its source checkout.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from importlib import resources
from typing import Any, TypeAlias
from urllib.parse import quote, urlencode

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xyzservices  # type: ignore[import-untyped]
from branca.element import Element, Figure, MacroElement
from folium.elements import JSCSSMixin
from folium.map import Layer
from folium.plugins import HeatMap, MarkerCluster
from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from geo.maps.assets import StaticAssets, localise_assets, static_url, walk
from geo.maps.choropleth import (
    CLASS_METHODS,
    K_DEFAULT,
    K_MAX,
    K_MIN,
    MIN_RESOLVED,
    NEEDS_RESOLVED,
    TOO_FEW_COLOUR,
    TOO_FEW_DASH,
    Classification,
    classify,
)
from geo.maps.i18n import labels as page_labels
from geo.maps.i18n import status_labels
from geo.maps.pagedata import OpenWork
from geo.reports.workflow import next_statuses
from geo.vocabulary import CONFIRMED_MOVES, FIXED_STATUSES, OPEN_STATUSES, REPORT_STATUSES

_TEMPLATES = Environment(loader=PackageLoader("geo.maps", "templates"), autoescape=False)
"""The element templates. They hold no user text: data reaches a page in its JSON document."""

_PAGES = Environment(loader=PackageLoader("geo.maps", "templates"), autoescape=True)
"""Whole pages rendered by Jinja itself (the list view): autoescaped, values as variables."""
# Templates name static files by path; the URL is the served, content-hashed one.
_TEMPLATES.globals["static_url"] = static_url
_PAGES.globals["static_url"] = static_url


def _package_text(name: str) -> str:
    """The text of ``templates/name``, a script or stylesheet shipped with the package."""
    return (resources.files("geo.maps") / "templates" / name).read_text(encoding="utf-8")


STATUS_COLOURS = {
    "open": "#D55E00",  # vermillion
    "acknowledged": "#E69F00",  # orange
    "in_progress": "#0072B2",  # blue
    "resolved": "#009E73",  # bluish green
    "closed": "#56B4E9",  # sky blue
    "reopened": "#CC79A7",  # reddish purple
    "rejected": "#000000",  # black
    "duplicate": "#F0E442",  # yellow
}
"""Marker colours: the eight of Okabe and Ito's palette, one per status.

The palette was chosen to stay distinguishable with each common colour-vision deficiency
(protan, deutan, tritan); the old orange-green-red set put open and resolved reports in
colours many readers cannot tell apart. Colour is never the only cue: each status also
has a symbol (``STATUS_SYMBOLS``) on its marker and its name in the legend and popup, and
an overdue report's marker is larger, with a thick ring (a shape, not only a colour).
"""

STATUS_SYMBOLS = {
    "open": "!",
    "acknowledged": "\u25c6",  # ◆
    "in_progress": "\u25b6",  # ▶
    "resolved": "\u2713",  # ✓
    "closed": "\u25a0",  # ■
    "reopened": "\u21ba",  # ↺
    "rejected": "\u2715",  # ✕
    "duplicate": "=",
}
"""A symbol per status, on markers, legends and lists: status never rests on colour alone."""


def _luminance(colour: str) -> float:
    """The relative luminance of ``#rrggbb`` (WCAG 2)."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _ink(colour: str) -> str:
    """Black or white, whichever contrasts more with ``colour``: a marker's symbol colour."""
    light = _luminance(colour)
    return "#000000" if (light + 0.05) / 0.05 >= 1.05 / (light + 0.05) else "#ffffff"


STATUS_INK = {status: _ink(colour) for status, colour in STATUS_COLOURS.items()}
"""The colour of each status's symbol on its marker."""

MEASURES = ("count", "sla", "median_hours")
"""What the ward dashboard can colour wards by."""


def _js(value: Any) -> str:
    """JSON that is safe inside a <script> element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


@dataclass(frozen=True, slots=True)
class MapReport:
    """One report as a map marker shows it; public maps leave ``description`` empty."""

    id: int
    lat: float
    lon: float
    category: str
    status: str
    created_at: datetime
    due_at: datetime | None = None
    overdue: bool = False
    description: str = ""
    next_statuses: tuple[str, ...] = ()
    resolved_at: datetime | None = None
    public_note: str = ""
    """The public note of the report's latest event that has one."""
    token: str = ""
    """The status page's token (``/r/{token}``); empty leaves the link out."""


@dataclass(frozen=True, slots=True)
class MarkerPage:
    """The markers one page shows, out of ``total`` matching, starting at ``offset``."""

    reports: Sequence[MapReport]
    total: int
    offset: int = 0
    more: bool = False
    """Counting stopped at ``total``: more than that match."""

    @property
    def hidden(self) -> int:
        """How many matching reports this page does not show (at least, with ``more``)."""
        return max(self.total - len(self.reports), 0)

    @property
    def has_next(self) -> bool:
        """Whether reports come after this page."""
        return self.more or self.offset + len(self.reports) < self.total

    def counted(self, labels: Mapping[str, str]) -> tuple[str, str]:
        """What the page says of its count ("Showing 500 of 1,234 reports."), and of the rest."""
        more = "_more" if self.more else ""
        shown = labels["shown" + more].format(
            shown=f"{len(self.reports):,}", total=f"{self.total:,}"
        )
        hidden = labels["hidden" + more].format(hidden=f"{self.hidden:,}") if self.hidden else ""
        return shown, hidden


@dataclass(frozen=True, slots=True)
class Filters:
    """The filter form's current values and choices (codes to labels)."""

    categories: Mapping[str, str]
    category: str = ""
    statuses: Sequence[str] = ()
    status: str = ""
    created_from: str = ""
    created_to: str = ""
    hidden_fields: Mapping[str, str] = field(default_factory=dict)
    fixed_days: int | None = None
    """Days of fixed work shown (0: none); ``None`` leaves the choice off the form."""


FIXED_DAYS_CHOICES = (0, 7, 30, 90, 365)
"""The periods of fixed work the public map's form offers, in days (0: none)."""


_MARKERS = _TEMPLATES.get_template("report_markers.j2")


class RenderedText(Element):
    """Text a template already produced, put in the page as it is and never compiled again."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def render(self, **kwargs: Any) -> str:
        """The text itself."""
        return self.text


def _render_macro(self: MacroElement, **kwargs: Any) -> None:
    """``MacroElement.render`` without compiling its output as a new template.

    branca puts each macro's rendered header, html and script into an ``Element``, which
    compiles that text as a Jinja template and renders it again: about a fifth of a map
    page's time, and text that reads as a template would run a second time. The parts and
    their order are branca's own.
    """
    figure = self.get_root()
    assert isinstance(figure, Figure), "You cannot render this Element if it is not in a Figure."
    macros = self._template.module.__dict__
    for part, parent in (
        ("header", figure.header),
        ("html", figure.html),
        ("script", figure.script),
    ):
        made = macros.get(part)
        if made is not None:
            parent.add_child(RenderedText(str(made(self, kwargs))), name=self.get_name())
    for element in self._children.values():
        element.render(**kwargs)


MacroElement.render = _render_macro  # type: ignore[method-assign]


class DataElement(MacroElement):
    """A page element whose data travels in the page's JSON document, never in its template.

    A macro's output is script and HTML that nothing escapes, so any text placed in it is
    code. Subclasses keep what they show in ``payload``; their
    template only names the element, and its script reads the payload with
    ``issuemapData(name)`` from the ``im-data`` document that ``render_page`` adds after
    rendering.
    """

    payload: Any = None


class ReportMarkers(DataElement):
    """Report markers drawn from one compact JSON array into a marker cluster group."""

    _template = _MARKERS

    def __init__(
        self,
        reports: Sequence[MapReport],
        *,
        cluster: MarkerCluster,
        lang: str,
        categories: Mapping[str, str],
        api_key: str | None = None,
        actions: bool = False,
        fixed: Sequence[str] = (),
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "ReportMarkers"
        self.cluster = cluster
        self.rows = [
            [
                r.id,
                round(r.lat, 6),
                round(r.lon, 6),
                r.category,
                r.status,
                int(r.created_at.timestamp()),
                int(r.due_at.timestamp()) if r.due_at else None,
                1 if r.overdue else 0,
                r.description,
                list(r.next_statuses),
                int(r.resolved_at.timestamp()) if r.resolved_at else None,
                r.public_note,
                r.token,
            ]
            for r in reports
        ]
        self.config = {
            "lang": lang,
            "l": page_labels(lang),
            "statuses": status_labels(lang),
            "colours": STATUS_COLOURS,
            "ink": STATUS_INK,
            "symbols": STATUS_SYMBOLS,
            "categories": dict(categories),
            "open": list(OPEN_STATUSES),
            # Statuses a live update keeps on the map as fixed work (the public map's).
            "fixed": list(fixed),
            "actions": actions,
            # What each status may move to, so a marker a live update redraws (a
            # colleague's change) keeps the buttons its new status allows.
            "transitions": (
                {status: next_statuses(status) for status in REPORT_STATUSES} if actions else {}
            ),
            "confirm": list(CONFIRMED_MOVES) if actions else [],
            "key": api_key,
        }
        self.payload = {"rows": self.rows, "config": self.config}


def _json_value(value: object) -> object:
    """A frame's cell as JSON holds it: a missing value (NaN, NA) as null."""
    return None if value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


def feature_collection(frame: gpd.GeoDataFrame) -> dict[str, Any]:
    """``frame`` as a GeoJSON FeatureCollection, as ``frame.to_json(drop_id=True)`` gives it.

    Its geometries are written by GEOS (``shapely.to_geojson``) and its columns read whole:
    geopandas builds each feature through pandas, which for a zone page's outline and few
    wards took several times longer than the rest of the page's boundaries.
    """
    columns = [name for name in frame.columns if name != frame.geometry.name]
    values = [[_json_value(v) for v in frame[name].tolist()] for name in columns]
    shapes = shapely.to_geojson(frame.geometry.values)
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    name: column[i] for name, column in zip(columns, values, strict=True)
                },
                "geometry": None if shape is None else json.loads(shape),
            }
            for i, shape in enumerate(shapes)
        ],
    }


_GEOJSON = _TEMPLATES.get_template("data_geojson.j2")


class DataGeoJson(Layer, DataElement):
    """Polygons with a text-only tooltip; their properties travel as page data.

    Replaces ``folium.GeoJson``, whose data is compiled as a template and whose tooltip
    inserts property values as HTML: boundary files name wards and zones, and those names
    must reach the page as text.
    """

    _template = _GEOJSON

    def __init__(
        self,
        frame: gpd.GeoDataFrame,
        *,
        name: str,
        style: Mapping[str, Any],
        tooltip: Sequence[tuple[str, str]] = (),
        fill: str | None = None,
        dash: str | None = None,
        svg: bool = False,
    ) -> None:
        super().__init__(name=name, overlay=True)
        self._name = "DataGeoJson"
        self.payload = {
            "geojson": feature_collection(frame),
            "style": dict(style),
            "tooltip": [list(pair) for pair in tooltip],
            "fill": fill,
            "dash": dash,
            "svg": svg,
        }


_TILES = _TEMPLATES.get_template("data_tiles.j2")

VECTORGRID_JS = "https://unpkg.com/leaflet.vectorgrid@1.3.0/dist/Leaflet.VectorGrid.bundled.min.js"
"""Leaflet.VectorGrid, which draws vector tiles; served from our own copy (``geo.maps.assets``)."""


@dataclass(frozen=True, slots=True)
class TiledLayer:
    """A boundary layer a page draws from vector tiles (``geo.maps.tiles``), not inline.

    ``url`` is the tile URL template, ``min_zoom`` the zoom from which its tiles hold
    anything, ``bounds`` (min lon, min lat, max lon, max lat) what the map first shows.
    """

    url: str
    min_zoom: int
    bounds: tuple[float, float, float, float] | None = None


class DataVectorTiles(JSCSSMixin, Layer, DataElement):
    """Polygons drawn from vector tiles with a text-only tooltip, like ``DataGeoJson``.

    A page carries the tile URL, never the polygons, so it stays small however many there
    are. With ``measures`` (a URL answering as ``geo.maps.pages.wards_page_measures``),
    each feature's properties are completed from it, by code, before the layer is drawn.
    """

    _template = _TILES

    def __init__(
        self,
        tiles: TiledLayer,
        *,
        layer: str,
        name: str,
        style: Mapping[str, Any],
        tooltip: Sequence[tuple[str, str]] = (),
        fill: str | None = None,
        dash: str | None = None,
        svg: bool = False,
        measures: str | None = None,
    ) -> None:
        # A layer coloured by measures is added to the map by its script once they are in.
        super().__init__(name=name, overlay=True, show=measures is None)
        self._name = "DataVectorTiles"
        self.default_js = [("leaflet_vectorgrid", VECTORGRID_JS)]
        self.payload = {
            "url": tiles.url,
            "layer": layer,
            "minZoom": tiles.min_zoom,
            "style": dict(style),
            "tooltip": [list(pair) for pair in tooltip],
            "fill": fill,
            "dash": dash,
            "svg": svg,
            "measures": measures,
        }


Boundaries: TypeAlias = gpd.GeoDataFrame | TiledLayer
"""A boundary layer as a page gets it: inline polygons, or the tiles to draw it from."""


def _boundaries(
    source: Boundaries,
    *,
    layer: str,
    columns: Sequence[str],
    name: str,
    style: Mapping[str, Any],
    tooltip: Sequence[tuple[str, str]] = (),
) -> DataGeoJson | DataVectorTiles:
    """The page element that draws ``source``: its polygons inline, or its tiles."""
    if isinstance(source, TiledLayer):
        return DataVectorTiles(source, layer=layer, name=name, style=style, tooltip=tooltip)
    return DataGeoJson(
        source[[*columns, source.geometry.name]], name=name, style=style, tooltip=tooltip
    )


def _bounds_of(source: Boundaries) -> Sequence[float] | None:
    if isinstance(source, TiledLayer):
        return source.bounds
    return source.total_bounds if len(source) else None


def _is_empty(source: Boundaries) -> bool:
    return not isinstance(source, TiledLayer) and not len(source)


_CHROME = _TEMPLATES.get_template("page_chrome.j2")


class PageChrome(DataElement):
    """The page's panel (title, filters, legend, counts) and phone-friendly CSS.

    Also sets the ``window.issuemap`` handles a script or browser test uses. Add it last.
    """

    _template = _CHROME

    def __init__(
        self,
        *,
        title: str,
        body: str,
        layers: Mapping[str, Any],
        lang: str = "en",
        lead: str = "",
        live: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "PageChrome"
        # The page's <title> and <html lang>, set by render_page.
        self.title = title
        self.lang = lang
        # Escaped HTML, put in place by render_page after the template has been rendered.
        # ``lead`` stays in sight when the details are folded away (phones start folded).
        self.panel = (
            f'<div class="im-lead">{lead}</div>' if lead else ""
        ) + f"<details open><summary>{_esc(title)}</summary>{body}</details>"
        self.layers = {key: layer.get_name() for key, layer in layers.items()}
        self.live = live
        self.payload = dict(extra or {})
        if live:
            # What live.js says when the page's reports may be stale (a resync or bulk event):
            # the page's words in its language, never text from an event.
            words = page_labels(lang)
            self.payload["liveNotice"] = {
                "text": words["live_stale"],
                "reload": words["live_reload"],
            }


@functools.cache
def _tile_source(tiles: str) -> Any:
    """``tiles`` (a provider's name or a URL template) as ``folium.TileLayer`` takes it.

    Given a string, folium looks it up among every xyzservices provider, on each page,
    which took longer than building the rest of a map. Looked up here once, a name gives
    its provider and a URL template one of its own (or itself, if it has placeholders a
    provider cannot keep).
    """
    name = "OpenStreetMap Mapnik" if tiles.lower() == "openstreetmap" else tiles
    try:
        return xyzservices.providers.query_name(name)
    except ValueError:
        pass
    own = xyzservices.TileProvider(name="tiles", url=tiles, attribution="")
    try:
        same = own.build_url(fill_subdomain=False, scale_factor="{r}") == tiles
    except (KeyError, IndexError, ValueError):
        same = False
    return own if same else tiles


def _base_map(tiles: str | None, attribution: str | None) -> folium.Map:
    # Marker clusters need a maximum zoom, which otherwise only a tile layer would give.
    fmap = folium.Map(tiles=None, control_scale=True, prefer_canvas=True, maxZoom=19)
    if tiles:
        folium.TileLayer(
            tiles=_tile_source(tiles), attr=attribution or "", name="Base map", control=False
        ).add_to(fmap)
    return fmap


def _fit(fmap: folium.Map, bounds: Sequence[float] | None) -> None:
    if bounds is not None and all(math.isfinite(v) for v in bounds):
        minx, miny, maxx, maxy = bounds
        fmap.fit_bounds([[miny, minx], [maxy, maxx]])


HEAT_GRADIENT = {0.0: "#440154", 0.25: "#3b528b", 0.5: "#21918c", 0.75: "#5ec962", 1.0: "#fde725"}
"""The heat layer's colours: viridis, from few reports (dark purple) to many (yellow).

viridis is perceptually uniform and reads in order for the common colour-vision deficiencies
and in greyscale (it rises steadily in lightness), unlike leaflet.heat's default
blue-green-red rainbow, whose red and green ends look alike to many readers.
"""


class GridHeatMap(HeatMap):
    """folium's heat layer over grid cells the service computed itself.

    folium checks every point of a heat layer in Python (a location, no NaN), which for a
    page's 2,500 cells took longer than the rest of the map. The cells come from our own
    grid in PostGIS: finite numbers within WGS84, so they are taken as they are.
    """

    def __init__(self, data: list[list[float]], **options: Any) -> None:
        super().__init__([], **options)  # type: ignore[no-untyped-call]
        self.data = data


def _heat(cells: Sequence[tuple[float, float, float]], *, name: str) -> HeatMap:
    counts = sorted(c[2] for c in cells)
    # leaflet.heat saturates at ``max``: use a high percentile so one hot cell does not
    # wash the rest out, and so the scale follows the data rather than a constant.
    top = counts[int(0.95 * (len(counts) - 1))] if counts else 1.0
    data = [[round(lat, 5), round(lon, 5), float(n)] for lat, lon, n in cells]
    return GridHeatMap(
        data,
        name=name,
        radius=18,
        blur=14,
        max=max(float(top), 1.0),
        gradient={str(stop): colour for stop, colour in HEAT_GRADIENT.items()},
    )


def _heat_legend(lang: str) -> str:
    """The heat layer's legend: its colour ramp, from fewer reports to more, in words."""
    labels = page_labels(lang)
    ramp = ", ".join(f"{colour} {stop:.0%}" for stop, colour in HEAT_GRADIENT.items())
    return (
        f'<div class="im-legend im-heat-legend"><b>{_esc(labels["heat"])}</b>'
        f'<span class="im-ramp" style="background:linear-gradient(to right, {ramp})"></span>'
        f'<span class="im-ramp-ends"><span>{_esc(labels["fewer"])}</span>'
        f"<span>{_esc(labels['more'])}</span></span></div>"
    )


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _select(
    name: str, label: str, options: Mapping[str, str], chosen: str, all_label: str | None
) -> str:
    """A labelled ``<select>``; with ``all_label``, a first choice that filters nothing."""
    first = [] if all_label is None else [f'<option value="">{_esc(all_label)}</option>']
    choices = first + [
        f'<option value="{_esc(code)}"{" selected" if code == chosen else ""}>{_esc(text)}</option>'
        for code, text in options.items()
    ]
    return (
        f'<label for="im-{name}">{_esc(label)}</label>'
        f'<select id="im-{name}" name="{name}">{"".join(choices)}</select>'
    )


def _filter_form(filters: Filters, lang: str, *, time_window: bool) -> str:
    labels = page_labels(lang)
    parts = ['<form method="get" class="im-filters">']
    parts.append(
        _select("category", labels["category"], filters.categories, filters.category, labels["all"])
    )
    if filters.statuses:
        parts.append(
            _select(
                "status",
                labels["status"],
                {s: status_labels(lang)[s] for s in filters.statuses},
                filters.status,
                labels["all"],
            )
        )
    if time_window:
        for name, label, value in (
            ("created_from", labels["from"], filters.created_from),
            ("created_to", labels["to"], filters.created_to),
        ):
            parts.append(
                f'<label for="im-{name}">{_esc(label)}</label>'
                f'<input type="date" id="im-{name}" name="{name}" value="{_esc(value)}">'
            )
    if filters.fixed_days is not None:
        choices = sorted({*FIXED_DAYS_CHOICES, filters.fixed_days})
        options = {
            str(days): labels["last_days"].format(days=days) if days else labels["fixed_none"]
            for days in choices
        }
        parts.append(
            _select("fixed_days", labels["fixed_work"], options, str(filters.fixed_days), None)
        )
    for name, value in filters.hidden_fields.items():
        parts.append(f'<input type="hidden" name="{_esc(name)}" value="{_esc(value)}">')
    parts.append(f'<button type="submit">{_esc(labels["apply"])}</button></form>')
    return "".join(parts)


def _marker_dot(status: str, *, extra: str = "") -> str:
    """A status's marker as the legend draws it: its colour and its symbol."""
    return (
        f'<span class="im-marker-dot{extra}" aria-hidden="true" '
        f'style="background:{STATUS_COLOURS[status]};color:{STATUS_INK[status]}">'
        f"{_esc(STATUS_SYMBOLS[status])}</span>"
    )


def _status_legend(statuses: Iterable[str], lang: str, *, overdue: bool) -> str:
    """Each status shown as its marker (colour and symbol) and named in words."""
    items = [
        f'<div class="im-legend-item" data-status="{_esc(s)}">{_marker_dot(s)}'
        f"{_esc(status_labels(lang)[s])}</div>"
        for s in statuses
    ]
    if overdue:
        items.append(
            f'<div class="im-legend-item im-overdue">{_marker_dot("open", extra=" im-ringed")}'
            f"{_esc(page_labels(lang)['overdue'])}</div>"
        )
    return f'<div class="im-legend">{"".join(items)}</div>'


def _counts(page: MarkerPage, lang: str, *, page_size: int) -> str:
    labels = page_labels(lang)
    said, rest = page.counted(labels)
    more = ' data-more="true"' if page.more else ""
    parts = [
        f'<p class="im-counts" data-shown="{len(page.reports)}" data-total="{page.total}"{more}>'
        + _esc(said)
    ]
    if rest:
        parts.append(" " + _esc(rest))
    parts.append("</p>")
    parts.append(
        f'<button type="button" id="im-search-area">{_esc(labels["search_area"])}</button>'
    )
    if page.has_next:
        next_page = page.offset // max(page_size, 1) + 2
        parts.append(
            f' <button type="button" id="im-next-page" data-page="{next_page}">'
            f"{_esc(labels['next_page'])}</button>"
        )
    return "".join(parts)


def city_overview_map(
    *,
    wards: Boundaries,
    zones: Boundaries,
    heat: list[tuple[float, float, float]],
    lang: str = "en",
    tiles: str | None = "OpenStreetMap",
    attribution: str | None = None,
    report_url: str = "/report",
) -> folium.Map:
    """Wards, field-team zones and a heat layer of open reports, labelled in ``lang``.

    ``wards`` and ``zones`` have ``code``, ``name`` and ``geometry`` (zones also ``team``),
    the names already in ``lang`` (``geo.city.layers`` reads them so), or are the tiles to
    draw them from (``TiledLayer``); ``heat`` holds
    (lat, lon, weight) cells. The panel names the page, links to ``report_url`` for a
    resident to report a problem, and explains the heat colours.
    """
    labels = page_labels(lang)
    if tiles == "OpenStreetMap":
        fmap = folium.Map(tiles=tiles, control_scale=True)
    else:
        fmap = _base_map(tiles, attribution)
    layers: dict[str, Any] = {}
    if not _is_empty(wards):
        _fit(fmap, _bounds_of(wards))
        layers["wards"] = _boundaries(
            wards,
            layer="wards",
            columns=["code", "name"],
            name=labels["wards"],
            style={"color": "#444", "weight": 1, "fillOpacity": 0.03},
            tooltip=[("code", labels["ward"]), ("name", labels["name"])],
        ).add_to(fmap)
    if not _is_empty(zones):
        layers["zones"] = _boundaries(
            zones,
            layer="zones",
            columns=["code", "name", "team"],
            name=labels["zones"],
            style={"color": "#1f6feb", "weight": 3, "dashArray": "6 4", "fillOpacity": 0},
            tooltip=[("name", labels["zone"]), ("team", labels["team"])],
        ).add_to(fmap)
    if heat:
        layers["heat"] = _heat(heat, name=labels["heat"]).add_to(fmap)
    folium.LayerControl().add_to(fmap)
    PageChrome(
        title=labels["overview_title"],
        body=_heat_legend(lang) if heat else "",
        layers=layers,
        lang=lang,
        lead=_report_link(report_url, lang),
        extra={"lang": lang, "kind": "overview"},
    ).add_to(fmap)
    return fmap


def zone_map(
    *,
    zone: gpd.GeoDataFrame,
    wards: Boundaries,
    heat: Sequence[tuple[float, float, float]],
    markers: MarkerPage,
    filters: Filters,
    lang: str = "en",
    api_key: str | None = None,
    actions: bool = False,
    page_size: int = 500,
    tiles: str | None = None,
    attribution: str | None = None,
    live: bool = False,
    work: OpenWork | None = None,
) -> folium.Map:
    """A field team's zone: outline, wards, heat of open reports, workable markers.

    ``zone`` is one row (``code``, ``name``, ``team``, geometry; names in ``lang``, as the
    panel shows them, like the ``wards``' names in their tooltips; ``wards`` may be the
    tiles to draw them from); ``markers`` are the
    filtered open reports in view, capped, each with its allowed next statuses. With
    ``actions``, a marker's popup has one button per next status, which POSTs to
    ``/api/reports/{id}/status`` with ``api_key``. ``work`` is the zone's whole open
    queue, whose overdue count heads the panel.
    """
    labels = page_labels(lang)
    fmap = _base_map(tiles, attribution)
    code = str(zone["code"].iloc[0]) if len(zone) else ""
    zone_id = int(zone["id"].iloc[0]) if len(zone) and "id" in zone else None
    _fit(fmap, zone.total_bounds if len(zone) else None)
    ward_layer = _boundaries(
        wards,
        layer="wards",
        columns=["code", "name"],
        name=labels["wards"],
        style={"color": "#555", "weight": 1, "fillOpacity": 0.02},
        tooltip=[("name", labels["wards"])],
    ).add_to(fmap)
    outline = DataGeoJson(
        zone[["code", "name", zone.geometry.name]],
        name=labels["zone"],
        style={"color": "#1f6feb", "weight": 4, "fillOpacity": 0},
    ).add_to(fmap)
    heat_layer = _heat(heat, name=labels["heat"]).add_to(fmap)
    cluster = MarkerCluster(  # type: ignore[no-untyped-call]
        name=labels["reports"], options={"disableClusteringAtZoom": 17, "maxClusterRadius": 40}
    )
    cluster.add_to(fmap)
    ReportMarkers(
        markers.reports,
        cluster=cluster,
        lang=lang,
        categories=filters.categories,
        api_key=api_key,
        actions=actions,
    ).add_to(fmap)
    folium.LayerControl(collapsed=True).add_to(fmap)
    body = (
        _zone_names(zone, lang)
        + _counts(markers, lang, page_size=page_size)
        + _filter_form(filters, lang, time_window=True)
        + _status_legend(filters.statuses or REPORT_STATUSES, lang, overdue=True)
        + _heat_legend(lang)
    )
    PageChrome(
        title=labels["zone_title"].format(zone=code),
        body=body,
        lead=_backlog(work, lang),
        layers={"heat": heat_layer, "markers": cluster, "outline": outline, "wards": ward_layer},
        lang=lang,
        live=live,
        # live.js listens to this zone's events only.
        extra={"zone": code, "zoneId": zone_id, "lang": lang, "kind": "zone"},
    ).add_to(fmap)
    return fmap


def _backlog(work: OpenWork | None, lang: str) -> str:
    """The queue's overdue count, in sight on a phone too, marked when any work is overdue."""
    if work is None:
        return ""
    late = " im-late" if work.overdue else ""
    text = page_labels(lang)["overdue_count"].format(
        overdue=f"{work.overdue:,}", open=f"{work.open:,}"
    )
    return (
        f'<p class="im-backlog{late}" data-overdue="{work.overdue}" data-open="{work.open}">'
        f"{_esc(text)}</p>"
    )


def _zone_names(zone: gpd.GeoDataFrame, lang: str) -> str:
    """The zone's name and its team's, as the zone page's panel names them (escaped)."""
    if not len(zone):
        return ""
    labels = page_labels(lang)
    parts = [
        f"<div><b>{_esc(labels[key])}:</b> {_esc(zone[column].iloc[0])}</div>"
        for key, column in (("zone", "name"), ("team", "team"))
        if column in zone and isinstance(zone[column].iloc[0], str) and zone[column].iloc[0]
    ]
    return f'<div class="im-zone-names">{"".join(parts)}</div>' if parts else ""


def public_map(
    *,
    heat: Sequence[tuple[float, float, float]],
    markers: MarkerPage,
    filters: Filters,
    bounds: Sequence[float] | None,
    lang: str = "en",
    page_size: int = 500,
    tiles: str | None = None,
    attribution: str | None = None,
    live: bool = False,
    report_url: str = "/report",
    query: Mapping[str, str] | None = None,
    path: str = "/maps/public",
) -> folium.Map:
    """The embeddable public map: heat and clustered markers, legends, filters.

    ``markers`` must already be public: no personal data, locations rounded. They hold
    open reports and, if ``filters.fixed_days``, the work fixed in those days. The panel
    links to ``report_url`` (in ``lang``) for a resident to report a problem, and to the
    list view of the same reports: ``path`` with ``query`` (the page's own parameters).
    """
    labels = page_labels(lang)
    fmap = _base_map(tiles, attribution)
    _fit(fmap, bounds)
    heat_layer = _heat(heat, name=labels["heat"]).add_to(fmap)
    cluster = MarkerCluster(name=labels["reports"])  # type: ignore[no-untyped-call]
    cluster.add_to(fmap)
    ReportMarkers(
        markers.reports,
        cluster=cluster,
        lang=lang,
        categories=filters.categories,
        fixed=FIXED_STATUSES if filters.fixed_days else (),
    ).add_to(fmap)
    folium.LayerControl(collapsed=True).add_to(fmap)
    shown_statuses = sorted({r.status for r in markers.reports}, key=REPORT_STATUSES.index) or list(
        filters.statuses
    )
    body = (
        _counts(markers, lang, page_size=page_size)
        + _filter_form(filters, lang, time_window=False)
        + _status_legend(shown_statuses, lang, overdue=any(r.overdue for r in markers.reports))
        + _heat_legend(lang)
    )
    PageChrome(
        title=labels["public_title"],
        body=body,
        layers={"heat": heat_layer, "markers": cluster},
        lang=lang,
        lead=_report_link(report_url, lang)
        + _link(_page_href(path, query or {"lang": lang}, view="list"), labels["list_view"]),
        live=live,
        extra={"lang": lang, "kind": "public"},
    ).add_to(fmap)
    return fmap


def _link(href: str, text: str) -> str:
    return f'<a class="im-list-link" href="{_esc(href)}">{_esc(text)}</a>'


def _report_link(report_url: str, lang: str) -> str:
    """The "report a problem" button: a link to the report page in the page's language."""
    href = _page_href(report_url, {"lang": lang})
    return (
        f'<a class="im-button im-report-link" href="{_esc(href)}">'
        f"{_esc(page_labels(lang)['report_problem'])}</a>"
    )


def _page_href(path: str, query: Mapping[str, str], **changes: str | int | None) -> str:
    """``path`` with ``query`` updated by ``changes`` (``None`` drops a parameter)."""
    params = {k: v for k, v in query.items() if v not in ("", None)}
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return f"{path}?{urlencode(params)}" if params else path


def _span(seconds: float, lang: str) -> str:
    """A duration in whole days and hours, as the popups write it (``2d 5h``)."""
    labels = page_labels(lang)
    hours = max(int(seconds // 3600), 0)
    if hours >= 24:
        return f"{hours // 24}{labels['days']} {hours % 24}{labels['hours']}"
    return f"{hours}{labels['hours']}"


def report_list_page(
    *,
    markers: MarkerPage,
    filters: Filters,
    lang: str,
    query: Mapping[str, str],
    when: Callable[[datetime], str],
    page_size: int = 500,
    path: str = "/maps/public",
    report_url: str = "/report",
) -> str:
    """The public map's reports as an HTML table: the same page of the same reports.

    ``query`` holds the page's own parameters (filters, language, page), kept by the links
    to the map and to the next and previous pages; ``when`` writes a moment for a reader.
    """
    labels = page_labels(lang)
    statuses = status_labels(lang)
    rows = []
    for r in markers.reports:
        fixed = r.resolved_at is not None
        rows.append(
            {
                "id": r.id,
                "status": r.status,
                "category": filters.categories.get(r.category, r.category),
                "status_words": statuses.get(r.status, r.status),
                "symbol": STATUS_SYMBOLS.get(r.status, ""),
                "overdue": r.overdue,
                "created": when(r.created_at),
                "created_iso": r.created_at.isoformat(),
                "due": when(r.due_at) if r.due_at and not fixed else "",
                "due_iso": r.due_at.isoformat() if r.due_at else "",
                "fixed_in": (
                    _span((r.resolved_at - r.created_at).total_seconds(), lang)
                    if r.resolved_at is not None
                    else ""
                ),
                "public_note": r.public_note,
                "href": _page_href(f"/r/{quote(r.token, safe='')}", {"lang": lang})
                if r.token
                else "",
            }
        )
    counts, _ = markers.counted(labels)
    page_no = markers.offset // max(page_size, 1) + 1
    form_filters = replace(
        filters,
        hidden_fields={**filters.hidden_fields, "view": "list"},
    )
    return _PAGES.get_template("report_list.html.j2").render(
        lang=lang,
        title=labels["public_title"],
        caption=f"{labels['public_title']}: {counts}",
        labels=labels,
        rows=rows,
        form=Markup(_filter_form(form_filters, lang, time_window=False)),
        report_href=_page_href(report_url, {"lang": lang}),
        map_href=_page_href(path, query, view=None),
        previous_href=_page_href(path, query, page=page_no - 1) if page_no > 1 else "",
        next_href=_page_href(path, query, page=page_no + 1) if markers.has_next else "",
    )


def _format(measure: str, value: float | None) -> str:
    if value is None:
        return "–"
    if measure == "sla":
        return f"{value:.0%}"
    if measure == "count":
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def ward_classes(
    wards: pd.DataFrame, measure: str, *, lang: str, method: str, k: int, each: bool = True
) -> tuple[Classification, dict[str, dict[str, str | None]]]:
    """The dashboard's classes of ``wards`` by ``measure``, and what each ward shows, by code.

    ``wards`` has ``code``, ``measure``, ``reports`` and ``resolved``. Each ward shows its
    ``fill`` colour, ``dash`` (too few reports), ``shown`` value and its counts, as text;
    without ``each``, only the classes are made (what each ward shows is empty).
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}")
    labels = page_labels(lang)
    # Whole columns to Python lists at once: a dashboard holds thousands of wards, and
    # stepping through a pandas column costs more than the work done on each value.
    values = [None if math.isnan(v) else v for v in wards[measure].to_numpy(float).tolist()]
    reports, resolved = (
        wards[name].to_numpy(np.int64).tolist() if name in wards else [0] * len(wards)
        for name in ("reports", "resolved")
    )
    classes = classify(measure, values, reports, resolved, method=method, k=k)
    if not each:
        return classes, {}
    shown = {
        str(code): {
            "fill": colour or TOO_FEW_COLOUR,
            "dash": None if colour else TOO_FEW_DASH,
            "shown": (
                _format(measure, value) if colour else labels["too_few"].format(n=MIN_RESOLVED)
            ),
            "reports": f"{n_reports:,}",
            "resolved": f"{n_resolved:,}",
        }
        for code, value, colour, n_reports, n_resolved in zip(
            wards["code"].tolist(), values, classes.colours, reports, resolved, strict=True
        )
    }
    return classes, shown


def ward_dashboard_map(
    *,
    wards: gpd.GeoDataFrame,
    measure: str,
    lang: str = "en",
    filters: Filters | None = None,
    tiles: str | None = None,
    attribution: str | None = None,
    method: str = "quantiles",
    k: int = K_DEFAULT,
    window: tuple[date, date] | None = None,
    outside: int = 0,
    ward_tiles: TiledLayer | None = None,
    measures_url: str | None = None,
) -> folium.Map:
    """Wards coloured by ``measure`` (a column of ``wards``: count, sla or median_hours).

    ``wards`` also has the counts ``reports`` and ``resolved`` behind each value. Classes
    and colours come from ``geo.maps.choropleth.classify`` (``method``, ``k``); the legend
    lists each class's range with its number of wards, reports and resolved reports, and
    wards with too few resolved reports for a share or median are grey, dashed and listed
    apart. ``window`` is the first and last day of the reports counted (shown in the form's
    date inputs), and ``outside`` how many of them lie outside every current ward.

    With ``ward_tiles``, the outlines come from those tiles and each ward's colour and
    values from ``measures_url`` (``ward_classes`` keyed by code), not inline.
    """
    labels = page_labels(lang)
    fmap = _base_map(tiles, attribution)
    if ward_tiles is not None:
        _fit(fmap, ward_tiles.bounds)
    elif len(wards):
        _fit(fmap, wards.total_bounds)
    # Tiled, each ward's colour and values come from ``measures_url``, not from the page.
    classes, shown = ward_classes(
        wards, measure, lang=lang, method=method, k=k, each=ward_tiles is None
    )
    tooltip = [
        ("name", labels["wards"]),
        ("shown", labels[measure]),
        ("reports", labels["reports"]),
    ]
    if measure in NEEDS_RESOLVED:
        tooltip.append(("resolved", labels["resolved"]))
    style = {"color": "#333", "weight": 1, "fillOpacity": 0.75}
    layer: DataGeoJson | DataVectorTiles
    if ward_tiles is not None:
        layer = DataVectorTiles(
            ward_tiles,
            layer="wards",
            name=labels["wards"],
            style=style,
            fill="fill",
            dash="dash",
            svg=True,
            tooltip=tooltip,
            measures=measures_url,
        )
    else:
        frame = wards[["code", "name", wards.geometry.name]].copy()
        for column in ("fill", "dash", "shown", "reports", "resolved"):
            frame[column] = [row[column] for row in shown.values()]
        layer = DataGeoJson(
            frame,
            name=labels["wards"],
            style=style,
            fill="fill",
            dash="dash",
            # SVG: each ward is a <path> whose fill a reader's tools (and the tests) can inspect.
            svg=True,
            tooltip=tooltip,
        )
    layer.add_to(fmap)
    with_resolved = measure in NEEDS_RESOLVED
    head = [labels["range"], labels["wards"], labels["reports"]]
    if with_resolved:
        head.append(labels["resolved"])
    rows = []
    for item in classes.classes:
        low, high = _format(measure, item.low), _format(measure, item.high)
        cells = [
            high if low == high else f"{low} – {high}",
            f"{item.wards:,}",
            f"{item.reports:,}",
        ]
        if with_resolved:
            cells.append(f"{item.resolved:,}")
        rows.append(_legend_row(item.colour, cells, "im-class"))
    if classes.too_few_wards:
        cells = [
            labels["too_few"].format(n=MIN_RESOLVED),
            f"{classes.too_few_wards:,}",
            f"{classes.too_few_reports:,}",
        ]
        if with_resolved:
            cells.append(f"{classes.too_few_resolved:,}")
        rows.append(_legend_row(TOO_FEW_COLOUR, cells, "im-too-few"))
    notes = [labels["counted_here"], labels["outside"].format(n=f"{outside:,}")]
    if window is not None:
        notes.insert(0, labels["window"].format(start=window[0], end=window[1]))
    legend = (
        f'<div class="im-legend" data-measure="{measure}" data-method="{method}">'
        f"<b>{_esc(labels[measure])}</b>"
        '<table class="im-classes"><thead><tr><th></th>'
        + "".join(f'<th scope="col">{_esc(h)}</th>' for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + "".join(f'<p class="im-note">{_esc(n)}</p>' for n in notes)
        + "</div>"
    )
    measure_form = (
        '<form method="get" class="im-filters">'
        + _select_measure(measure, lang)
        + _select_classes(method, k, lang)
        + (_date_inputs(window, lang) if window is not None else "")
        + "".join(
            f'<input type="hidden" name="{_esc(k)}" value="{_esc(v)}">'
            for k, v in (filters.hidden_fields.items() if filters else ())
        )
        + f'<button type="submit">{_esc(labels["apply"])}</button></form>'
    )
    PageChrome(
        title=labels["wards_title"].format(measure=labels[measure]),
        body=measure_form + legend,
        layers={"wards": layer},
        lang=lang,
        extra={"lang": lang, "kind": "wards", "measure": measure},
    ).add_to(fmap)
    return fmap


def _legend_row(colour: str, cells: Sequence[str], kind: str) -> str:
    """A legend row: the swatch (dashed for too few reports), then its text cells."""
    dashed = " im-dashed" if kind == "im-too-few" else ""
    return (
        f'<tr class="{kind}" data-fill="{colour}">'
        f'<td><i class="im-sq{dashed}" style="background:{colour}"></i></td>'
        + "".join(f"<td>{_esc(c)}</td>" for c in cells)
        + "</tr>"
    )


def _select_classes(method: str, k: int, lang: str) -> str:
    labels = page_labels(lang)
    options = "".join(
        f'<option value="{m}"{" selected" if m == method else ""}>{_esc(labels[m])}</option>'
        for m in CLASS_METHODS
    )
    return (
        f'<label for="im-method">{_esc(labels["classes"])}</label>'
        f'<select id="im-method" name="method">{options}</select>'
        f'<label for="im-k">{_esc(labels["class_count"])}</label>'
        f'<input id="im-k" name="k" type="number" min="{K_MIN}" max="{K_MAX}" value="{k}">'
    )


def _date_inputs(window: tuple[date, date], lang: str) -> str:
    labels = page_labels(lang)
    return (
        f'<label for="im-from">{_esc(labels["from"])}</label>'
        f'<input id="im-from" name="created_from" type="date" value="{window[0].isoformat()}">'
        f'<label for="im-to">{_esc(labels["to"])}</label>'
        f'<input id="im-to" name="created_to" type="date" value="{window[1].isoformat()}">'
    )


def _select_measure(measure: str, lang: str) -> str:
    labels = page_labels(lang)
    options = "".join(
        f'<option value="{m}"{" selected" if m == measure else ""}>{_esc(labels[m])}</option>'
        for m in MEASURES
    )
    return (
        f'<label for="im-measure">{_esc(labels["measure"])}</label>'
        f'<select id="im-measure" name="measure">{options}</select>'
    )


_NO_ZOOM = re.compile(
    r'<meta name="viewport" content="width=device-width,\s*'
    r'initial-scale=1\.0, maximum-scale=1\.0, user-scalable=no" />'
)
_DATA_SLOT = "<!--issuemap:data-->"
_PANEL_SLOT = "<!--issuemap:panel-->"
# Read once at import: a web worker that has dropped root may no longer reach these files.
_LOADER = "<script>\n" + _package_text("data_loader.js") + "</script>"
_HEAT_CSS = "<style>" + _package_text("heat.css").strip() + "</style>"


def render_page(
    fmap: folium.Map, *, nonce: str | None = None, assets: StaticAssets | None = None
) -> str:
    """The whole HTML page of ``fmap``, every script and stylesheet from our own origin.

    Asset URLs are ``assets``', by default those the service serves
    (``geo.maps.assets.use_static_assets``).

    The template is rendered first, holding no user-, admin- or file-supplied text; the
    data of every ``DataElement`` is then put in as one JSON document and the panel as
    escaped HTML, so nothing anyone typed is ever compiled as a template. With ``nonce``,
    every script element carries it, for a Content-Security-Policy without
    ``'unsafe-inline'`` (see ``content_security_policy``).
    """
    localise_assets(fmap, assets)
    root = fmap.get_root()
    assert isinstance(root, Figure)
    root.header.add_child(RenderedText('<meta name="robots" content="noindex" />'), name="robots")
    root.header.add_child(RenderedText(_DATA_SLOT + _LOADER), name="issuemap_data")
    # The heat canvas lies over the polygons; without this it swallows their hover and clicks.
    root.header.add_child(
        RenderedText(_HEAT_CSS),
        name="issuemap_heat_css",
    )
    data: dict[str, Any] = {}
    panel = ""
    chrome: PageChrome | None = None
    for element in walk(root):
        if isinstance(element, DataElement):
            data[element.get_name()] = element.payload
        if isinstance(element, PageChrome):
            panel = element.panel
            chrome = element
    page = str(root.render())
    # folium forbids zooming the page; readers with low vision need it (WCAG 1.4.4).
    page = _NO_ZOOM.sub(
        '<meta name="viewport" content="width=device-width, initial-scale=1" />', page, 1
    )
    if chrome is not None:
        # Screen readers pick their voice by <html lang>; tabs and bookmarks show <title>.
        page = page.replace("<html>", f'<html lang="{_esc(chrome.lang)}">', 1).replace(
            "<head>", f"<head>\n<title>{_esc(chrome.title)}</title>", 1
        )
    # The slots come from our own constant templates: text from outside is escaped (HTML)
    # or in the JSON document (where "<" is written \u003c), so it cannot forge a slot.
    document = f'<script type="application/json" id="im-data">{_js(data)}</script>'
    page = page.replace(_DATA_SLOT, document, 1).replace(_PANEL_SLOT, panel, 1)
    if nonce is not None:
        page = page.replace("<script", f'<script nonce="{_esc(nonce)}"')
    return page


def content_security_policy(
    *, nonce: str, tiles: str | None, frame_ancestors: Sequence[str]
) -> str:
    """The Content-Security-Policy of a map page rendered with ``nonce``.

    Scripts run only from our origin or with the page's nonce (no inline event handlers,
    no other origins); images may come from the tile server; nothing else leaves the site.
    """
    images = ["'self'", "data:"]
    origin = _tile_origin(tiles)
    if origin:
        images.append(origin)
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "script-src-attr 'none'",
            # Leaflet and folium position elements with inline styles.
            "style-src 'self' 'unsafe-inline'",
            f"img-src {' '.join(images)}",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {' '.join(frame_ancestors)}",
        ]
    )


def list_security_policy(*, frame_ancestors: Sequence[str]) -> str:
    """The Content-Security-Policy of the list view: no script at all, nothing off the site."""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'none'",
            "style-src 'unsafe-inline'",
            "img-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {' '.join(frame_ancestors)}",
        ]
    )


def _tile_origin(tiles: str | None) -> str | None:
    """The CSP source for a tile URL template: its origin, ``{s}`` as a wildcard label."""
    if not tiles or "://" not in tiles:
        return None
    scheme, rest = tiles.split("://", 1)
    host = rest.split("/", 1)[0]
    if host.startswith("{s}."):
        host = "*." + host[4:]
    if scheme not in ("http", "https") or not re.fullmatch(r"(\*\.)?[A-Za-z0-9.-]+(:\d+)?", host):
        return f"{scheme}:" if scheme in ("http", "https") else None
    return f"{scheme}://{host}"
