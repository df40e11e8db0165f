"""Pages load their scripts and styles from our own origin, lean, hashed and compressed.

Every HTML page the service renders (the maps, the residents' pages, the crew's work view,
the admin pages, the API docs) is requested, and each ``<script src>`` and ``<link href>``
must name our own ``/static`` files under content-hashed names, which are served compressed
and cached for good. The URLs folium's own element classes ask for map to our vendored copies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from folium import Map
from folium.plugins import HeatMap, MarkerCluster
from sqlalchemy import Engine, text

from geo.maps import assets
from geo.maps.assets import LEAFLET_ONLY, StaticAssets, vendor_path
from geo.maps.builders import VECTORGRID_JS

ASSET = re.compile(r"<(?:script|link)\b[^>]*?\b(?:src|href)=\"([^\"]*)\"", re.I)
HASHED = re.compile(r"^/static/.+\.[0-9a-f]{12}\.(?:js|css|png)$")


@pytest.fixture
def pages(city_app: Any, engine: Engine) -> Iterator[tuple[Any, dict[str, str]]]:
    """(client, {page: HTML}) for one of every kind of page the service renders."""
    client, city, keys = city_app
    report = {"category": "road", "description": "x", "lat": 8.405, "lon": 100.005}
    assert client.post("/api/reports", json=report).status_code == 201
    with engine.connect() as conn:
        token = conn.execute(text("SELECT token FROM reports ORDER BY id LIMIT 1")).scalar_one()
    admin, planner = {"X-API-Key": keys.admin}, {"X-API-Key": keys.planner}
    wanted: list[tuple[str, dict[str, str]]] = [
        ("/", admin),
        ("/maps/public", {}),
        ("/maps/public?lang=en", {}),
        (f"/maps/zone?zone={next(iter(city.zones))}", admin),
        ("/maps/wards?measure=count", planner),
        ("/report", {}),
        (f"/r/{token}", {}),
        ("/login", {}),
        ("/work", {"X-API-Key": keys.t1}),
        ("/admin/", admin),
        ("/admin/team/list", admin),
        ("/docs", {}),
        ("/redoc", {}),
        ("/ogc/api.html", {}),
    ]
    html = {}
    for path, headers in wanted:
        answer = client.get(path, headers=headers | {"Accept": "text/html"})
        assert answer.status_code == 200, (path, answer.text[:300])
        html[path] = answer.text
    yield client, html


def test_every_page_loads_its_assets_from_our_origin_under_hashed_names(pages: Any) -> None:
    client, html = pages
    for path, page in html.items():
        assets = ASSET.findall(page)
        off_origin = [a for a in assets if urlsplit(a).netloc]
        assert off_origin == [], (path, off_origin)
        for asset in assets:
            if not urlsplit(asset).netloc:
                assert HASHED.match(asset), (path, asset)
                assert client.get(asset).status_code == 200, (path, asset)
    # Pages load only what they use: the maps no jQuery, Bootstrap or Font Awesome.
    for path in ("/", "/maps/public", "/maps/wards?measure=count"):
        assets = " ".join(ASSET.findall(html[path])).lower()
        assert "leaflet" in assets
        for unused in ("jquery", "bootstrap", "fontawesome", "awesome-markers", "glyphicons"):
            assert unused not in assets, (path, unused)


def test_static_files_are_compressed_and_cached_for_good_and_match_folium(pages: Any) -> None:
    client, html = pages
    [script] = [a for a in ASSET.findall(html["/maps/public"]) if "/leaflet/dist/" in a][:1]
    for encoding in ("br", "gzip"):
        answer = client.get(script, headers={"Accept-Encoding": encoding})
        assert answer.status_code == 200
        assert answer.headers["content-encoding"] == encoding
        cache = answer.headers["cache-control"]
        assert "immutable" in cache and "public" in cache
        age = re.search(r"max-age=(\d+)", cache)
        assert age and int(age.group(1)) >= 365 * 24 * 3600, cache
        assert answer.headers["vary"] == "Accept-Encoding"
        assert "Leaflet" in answer.text
    # The plain name still answers (stylesheets find their images relatively), briefly cached.
    plain = client.get("/static/vendor/leaflet/dist/images/marker-icon.png")
    assert plain.status_code == 200
    assert "immutable" not in plain.headers["cache-control"]

    # folium's own asset URLs map to vendored files of the same version.
    served: StaticAssets = assets._current
    declared = [
        *(pair for pair in Map.default_js + Map.default_css if pair[0] in LEAFLET_ONLY),
        *HeatMap.default_js,
        *MarkerCluster.default_js,
        *MarkerCluster.default_css,
        ("leaflet_vectorgrid", VECTORGRID_JS),
    ]
    for _, url in declared:
        file = vendor_path(url)
        assert served.versions[file.package] == file.version, url
        assert client.get(served.vendored(url)).status_code == 200, url


def test_a_folium_asking_for_another_version_is_refused_by_name() -> None:
    built = StaticAssets(
        hashed={"vendor/leaflet/dist/leaflet.js": "x"}, versions={"leaflet": "1.9.3"}
    )
    with pytest.raises(ValueError, match=r"leaflet 1\.9\.4.*package\.json"):
        built.vendored("https://cdn.jsdelivr.net/npm/leaflet@1.9.4/dist/leaflet.js")
    with pytest.raises(ValueError, match="no rule"):
        built.vendored("https://example.org/leaflet.js")
