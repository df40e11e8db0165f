"""Where the map pages' scripts and stylesheets come from: our own copies, never a CDN.

folium asks for its assets on CDNs; ``localise_assets`` points every one at the copies
``scripts/vendor_assets.sh`` puts under ``/static/vendor``, so the only third-party URL a
page refers to is the tile server's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import folium

VENDOR_PATHS: dict[str, str | None] = {
    "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js": "leaflet/dist/leaflet.js",
    "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css": "leaflet/dist/leaflet.css",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/js/bootstrap.bundle.min.js": (
        "bootstrap/dist/js/bootstrap.bundle.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/css/bootstrap.min.css": (
        "bootstrap/dist/css/bootstrap.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/Leaflet.awesome-markers/2.0.2/"
    "leaflet.awesome-markers.js": "leaflet.awesome-markers/dist/leaflet.awesome-markers.js",
    "https://cdnjs.cloudflare.com/ajax/libs/Leaflet.awesome-markers/2.0.2/"
    "leaflet.awesome-markers.css": "leaflet.awesome-markers/dist/leaflet.awesome-markers.css",
    "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@6.2.0/css/all.min.css": (
        "fontawesome-free/css/all.min.css"
    ),
    # Bootstrap 3 glyphicons and rotated awesome-markers: no builder here uses either.
    "https://netdna.bootstrapcdn.com/bootstrap/3.0.0/css/bootstrap-glyphicons.css": None,
    "https://cdn.jsdelivr.net/gh/python-visualization/folium/folium/templates/"
    "leaflet.awesome.rotate.min.css": None,
    "https://cdn.jsdelivr.net/gh/python-visualization/folium@main/folium/templates/"
    "leaflet_heat.min.js": "leaflet.heat/dist/leaflet-heat.js",
    "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/"
    "leaflet.markercluster.js": "leaflet.markercluster/dist/leaflet.markercluster.js",
    "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/"
    "MarkerCluster.css": "leaflet.markercluster/dist/MarkerCluster.css",
    "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/"
    "MarkerCluster.Default.css": "leaflet.markercluster/dist/MarkerCluster.Default.css",
    # Not one of folium's: the vector-tile layers of geo.maps.builders name it so.
    "https://unpkg.com/leaflet.vectorgrid@1.3.0/dist/Leaflet.VectorGrid.bundled.min.js": (
        "leaflet.vectorgrid/dist/Leaflet.VectorGrid.bundled.min.js"
    ),
}
"""Where each CDN asset folium asks for lives under the vendored folder (None: left out)."""


def walk(element: Any) -> Iterable[Any]:
    """``element`` and every element below it, depth first."""
    yield element
    for child in list(getattr(element, "_children", {}).values()):
        yield from walk(child)


def localise_assets(fmap: folium.Map, base: str = "/static/vendor") -> folium.Map:
    """Point every script and stylesheet of ``fmap``'s page at ``base`` instead of CDNs.

    Call it once everything is added, before rendering. An asset we have not vendored is
    an error rather than a silent CDN request.
    """
    for element in walk(fmap.get_root()):
        for attribute in ("default_js", "default_css"):
            assets = getattr(element, attribute, None)
            if not assets:
                continue
            local: list[tuple[str, str]] = []
            for name, url in assets:
                if not url.startswith(("http://", "https://")):
                    local.append((name, url))
                    continue
                if url not in VENDOR_PATHS:
                    raise ValueError(f"{url} is not vendored; add it to scripts/vendor_assets.sh")
                path = VENDOR_PATHS[url]
                if path is not None:
                    local.append((name, f"{base.rstrip('/')}/{path}"))
            # An instance attribute shadows the class-wide list, so other maps are untouched.
            setattr(element, attribute, local)
    return fmap
