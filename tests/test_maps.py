"""Map builders on normalised HTML, map pages over HTTP, and the heat grid's bounds."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import geopandas as gpd
import pytest
from fastapi.testclient import TestClient
from folium.plugins import HeatMap, MarkerCluster
from shapely.geometry import box
from sqlalchemy import Engine, text

from api.deps import replace_app_state
from geo.i18n import pick_language
from geo.maps.builders import (
    Filters,
    MapReport,
    MarkerPage,
    ReportMarkers,
    public_map,
    render_page,
    ward_dashboard_map,
    zone_map,
)
from geo.maps.heat import cell_size_deg, heat_grid
from geo.reports.search import ReportFilter
from geo.settings import MapSettings
from tests.fixtures import Keys, TinyCity

URL = re.compile(r"""https?://[^\s"'<>()\\]+""")
NOW = datetime(2026, 5, 1, 8, tzinfo=UTC)
CONTACT = "+66 81 555 0101"


def normalised(page: str) -> str:
    """The page with runs of whitespace collapsed, so substrings survive reformatting."""
    return re.sub(r"\s+", " ", page)


def page_data(page: str) -> dict[str, Any]:
    """The page's JSON data document, by element name."""
    found = re.search(r'<script[^>]* id="im-data"[^>]*>(.*?)</script>', page, re.S)
    assert found, "no data document on the page"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def element_of(fmap: Any, kind: type) -> Any:
    """The first element of ``kind`` below ``fmap``."""
    stack = [fmap]
    while stack:
        element = stack.pop()
        if isinstance(element, kind):
            return element
        stack.extend(element._children.values())
    raise AssertionError(f"no {kind.__name__} on the map")


def tiny_zone() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    zone = gpd.GeoDataFrame(
        {"code": ["Z1"], "name": ["Zone one"], "team": ["T1"]},
        geometry=[box(100.0, 8.40, 100.012, 8.41)],
        crs=4326,
    )
    wards = gpd.GeoDataFrame(
        {"code": ["W-A", "W-B"], "name": ["Ward A", "Ward B"]},
        geometry=[box(100.0, 8.40, 100.01, 8.41), box(100.01, 8.40, 100.02, 8.41)],
        crs=4326,
    )
    return zone, wards


def report(rid: int, *, overdue: bool = False, status: str = "open") -> MapReport:
    return MapReport(
        id=rid,
        lat=8.405,
        lon=100.005,
        category="road",
        status=status,
        created_at=NOW - timedelta(hours=30),
        due_at=NOW + timedelta(hours=-2 if overdue else 18),
        overdue=overdue,
        description="Pothole </script><b>",
        next_statuses=("acknowledged", "in_progress", "resolved", "rejected"),
    )


def external_urls(page: str, *, allowed: tuple[str, ...] = ()) -> list[str]:
    return [url for url in URL.findall(page) if not url.startswith(allowed)]


# --- builders ----------------------------------------------------------------------------


def test_zone_map_names_its_layers_and_marks_overdue_reports() -> None:
    zone, wards = tiny_zone()
    fmap = zone_map(
        zone=zone,
        wards=wards,
        heat=[(8.405, 100.005, 3.0), (8.406, 100.006, 1.0)],
        markers=MarkerPage(reports=[report(7, overdue=True), report(8)], total=2),
        filters=Filters(categories={"road": "Roads"}, statuses=("open", "in_progress")),
        api_key="im_secret",
        actions=True,
    )
    heat = element_of(fmap, HeatMap)
    cluster = element_of(fmap, MarkerCluster)
    markers = element_of(fmap, ReportMarkers)
    page = normalised(render_page(fmap))

    assert f"var {heat.get_name()} = L.heatLayer(" in page
    assert f'"heat": {heat.get_name()}' in page
    assert f'"markers": {cluster.get_name()}' in page
    assert f"group = {cluster.get_name()}" in page
    assert f"var map = {fmap.get_name()}, group" in page
    # Rows: id, lat, lon, category, status, created, due, overdue, description, next.
    rows = page_data(page)[markers.get_name()]["rows"]
    assert rows[0][:5] == [7, 8.405, 100.005, "road", "open"]
    assert rows[0][7:9] == [1, "Pothole </script><b>"]
    assert rows[0][9][0] == "acknowledged"
    assert rows[1][7] == 0  # report 8 is not overdue
    assert '"Pothole \\u003c/script\\u003e\\u003cb\\u003e"' in page
    assert '"key":"im_secret"' in page
    assert '"actions":true' in page
    assert '"fixed":[]' in page  # a crew's map drops a report once it is fixed
    assert "/api/reports/" in page and "X-API-Key" in page
    assert "</script><b>" not in page  # user text never closes the script
    assert 'name="viewport"' in page
    assert '<meta name="referrer" content="no-referrer" />' in page
    assert "Showing 2 of 2 reports." in page
    assert "Zone Z1: open reports" in page


def test_zone_map_says_how_many_markers_it_leaves_out() -> None:
    zone, wards = tiny_zone()
    fmap = zone_map(
        zone=zone,
        wards=wards,
        heat=[],
        markers=MarkerPage(reports=[report(1)], total=1_234),
        filters=Filters(categories={}),
        page_size=1,
    )
    page = normalised(render_page(fmap))
    assert "Showing 1 of 1,234 reports. 1,233 more not shown" in page
    assert 'id="im-next-page" data-page="2"' in page
    assert '"actions":false' in page


def test_a_count_that_stopped_early_says_more_than() -> None:
    zone, wards = tiny_zone()
    said = {
        "en": "Showing 1 of more than 5,500 reports. More than 5,499 not shown",
        "th": "แสดง 1 จากมากกว่า 5,500 เรื่อง ยังไม่แสดงอีกมากกว่า 5,499 เรื่อง",
    }
    for lang, words in said.items():
        fmap = zone_map(
            zone=zone,
            wards=wards,
            heat=[],
            markers=MarkerPage(reports=[report(1)], total=5_500, more=True),
            filters=Filters(categories={}),
            lang=lang,
            page_size=1,
        )
        page = normalised(render_page(fmap))
        assert words in page
        assert 'data-total="5500" data-more="true"' in page
        assert 'id="im-next-page" data-page="2"' in page


def test_the_base_map_takes_a_url_template_or_a_provider_name() -> None:
    carto = "https://{s}.basemaps.cartocdn.com/light_all/{z}/{x}/{y}{r}.png"
    for tiles, url, attribution in (
        ("https://tiles.example/{z}/{x}/{y}.png", "https://tiles.example/{z}/{x}/{y}.png", "Ours"),
        ("https://tiles.example/{z}/{x}/{y}.png?key={key}", None, "Ours"),
        ("CartoDB.Positron", carto, "CARTO"),
    ):
        for _ in range(2):  # the second time from what the first looked up
            fmap = public_map(
                heat=[],
                markers=MarkerPage(reports=[], total=0),
                filters=Filters(categories={}),
                bounds=None,
                tiles=tiles,
                attribution="Ours" if attribution == "Ours" else None,
            )
            page = normalised(render_page(fmap))
            assert f"L.tileLayer( {json.dumps(url or tiles)}," in page, page
            assert attribution in page


def test_pages_load_assets_only_from_our_origin() -> None:
    zone, wards = tiny_zone()
    fmap = zone_map(
        zone=zone,
        wards=wards,
        heat=[(8.405, 100.005, 1.0)],
        markers=MarkerPage(reports=[report(1)], total=1),
        filters=Filters(categories={}),
        live=True,
    )
    page = render_page(fmap)
    assert external_urls(page) == []
    for path in (
        "/static/vendor/leaflet/dist/leaflet.js",
        "/static/vendor/folium/templates/leaflet_heat.min.js",
        "/static/vendor/leaflet.markercluster/dist/leaflet.markercluster.js",
        "/static/vendor/leaflet.markercluster/dist/MarkerCluster.css",
    ):
        # Content-hashed (name.<hash>.js) once the service has built its static files.
        stem, ext = path.rsplit(".", 1)
        assert re.search(f'"{re.escape(stem)}(\\.[0-9a-f]{{12}})?\\.{ext}"', page), path
    assert re.search(r'<script src="/static/live(\.[0-9a-f]{12})?\.js" defer></script>', page)
    # Only what the page uses: no jQuery, Bootstrap, Font Awesome or awesome-markers.
    for unused in ("jquery", "bootstrap", "fontawesome", "awesome-markers", "glyphicons"):
        assert unused not in page.lower(), unused


def test_tiles_are_the_only_third_party_url() -> None:
    tiles = "https://tile.example.org/{z}/{x}/{y}.png"
    fmap = public_map(
        heat=[],
        markers=MarkerPage(reports=[], total=0),
        filters=Filters(categories={"road": "Roads"}),
        bounds=(100.0, 8.4, 100.02, 8.41),
        tiles=tiles,
        attribution="Example tiles",
    )
    page = render_page(fmap)
    assert external_urls(page, allowed=("https://tile.example.org/",)) == []
    assert "tile.example.org" in page


def test_public_map_speaks_thai() -> None:
    fmap = public_map(
        heat=[(8.405, 100.005, 2.0)],
        markers=MarkerPage(reports=[report(1)], total=1),
        filters=Filters(categories={"road": "ถนน"}, category="road"),
        bounds=(100.0, 8.4, 100.02, 8.41),
        lang="th",
    )
    heat = element_of(fmap, HeatMap)
    page = normalised(render_page(fmap))
    assert "ปัญหาที่ได้รับแจ้ง" in page
    assert '<option value="road" selected>ถนน</option>' in page
    assert f'"heat": {heat.get_name()}' in page
    assert "Reported issues" not in page


def test_public_map_shows_fixed_work_with_its_time_to_fix_note_and_status_page() -> None:
    fixed = MapReport(
        id=9,
        lat=8.406,
        lon=100.006,
        category="road",
        status="resolved",
        created_at=NOW - timedelta(days=3),
        due_at=NOW - timedelta(days=1),
        resolved_at=NOW - timedelta(hours=20),
        public_note="Patched {{7*7}} </script><img src=x onerror=alert(1)>",
        token="AbCdEfGhIjKlMnOpQrStUvWx",
    )
    late = MapReport(
        id=10,
        lat=8.405,
        lon=100.005,
        category="road",
        status="open",
        created_at=NOW - timedelta(days=5),
        due_at=NOW - timedelta(days=2),
        overdue=True,
        token="abcdefghijklmnopqrstuvwx",
    )
    fmap = public_map(
        heat=[(8.405, 100.005, 2.0)],
        markers=MarkerPage(reports=[late, fixed], total=2),
        filters=Filters(categories={"road": "ถนน"}, fixed_days=30),
        bounds=(100.0, 8.4, 100.02, 8.41),
        lang="th",
    )
    markers = element_of(fmap, ReportMarkers)
    heat = element_of(fmap, HeatMap)
    page = normalised(render_page(fmap))
    rows = page_data(page)[markers.get_name()]["rows"]
    # Rows: ..., resolved (epoch s), latest public note, status page token.
    assert rows[1][10] == int((NOW - timedelta(hours=20)).timestamp())
    assert rows[1][11] == fixed.public_note and rows[1][12] == fixed.token
    assert rows[0][7] == 1 and rows[0][6] == int(late.due_at.timestamp())  # type: ignore[union-attr]
    assert rows[0][10] is None
    config = page_data(page)[markers.get_name()]["config"]
    # Live updates keep fixed work on this map, labelled like the rest (live.js).
    assert config["fixed"] == ["resolved", "closed"]
    assert "upsertReport: upsertReport" in page
    assert config["l"]["fixed_in"] == "ใช้เวลาแก้ไข"
    assert config["l"]["status_page"] == "ติดตามสถานะเรื่องนี้"
    assert config["statuses"]["resolved"] == "แก้ไขแล้ว"
    assert "<img src=x" not in page and "</script><img" not in page
    # The page: language, title, the report button, fixed-work choice, both legends.
    assert page.startswith('<!DOCTYPE html> <html lang="th"> <head> <title>ปัญหาที่ได้รับแจ้ง</title>')
    assert '<a class="im-button im-report-link" href="/report?lang=th">แจ้งปัญหา</a>' in page
    assert '<select id="im-fixed_days" name="fixed_days">' in page
    assert '<option value="30" selected>30 วันที่ผ่านมา</option>' in page
    assert '<option value="0">ไม่แสดง</option>' in page
    assert "แก้ไขแล้ว</div>" in page and "เกินกำหนด</div>" in page  # status legend, in words
    assert 'class="im-legend im-heat-legend"><b>ความหนาแน่นของเรื่องที่เปิดอยู่</b>' in page
    assert "#440154 0%" in page and "#fde725 100%" in page
    assert f"var {heat.get_name()} = L.heatLayer(" in page and '"1.0": "#fde725"' in page


def test_status_is_never_shown_by_colour_alone() -> None:
    from geo.maps.builders import STATUS_COLOURS, STATUS_INK, STATUS_SYMBOLS, _luminance
    from geo.vocabulary import REPORT_STATUSES

    assert set(STATUS_COLOURS) == set(STATUS_SYMBOLS) == set(REPORT_STATUSES)
    assert len(set(STATUS_SYMBOLS.values())) == len(REPORT_STATUSES), "one symbol each"
    assert len(set(STATUS_COLOURS.values())) == len(REPORT_STATUSES)
    for status, colour in STATUS_COLOURS.items():
        light, dark = sorted((_luminance(colour), _luminance(STATUS_INK[status])))
        assert (dark + 0.05) / (light + 0.05) >= 4.5, f"{status}'s symbol is hard to read"
    fmap = public_map(
        heat=[],
        markers=MarkerPage(
            reports=[report(1, overdue=True), report(2, status="resolved")], total=2
        ),
        filters=Filters(categories={"road": "Roads"}),
        bounds=None,
        lang="en",
    )
    page = normalised(render_page(fmap))
    config = page_data(page)[element_of(fmap, ReportMarkers).get_name()]["config"]
    assert config["symbols"] == STATUS_SYMBOLS and config["ink"] == STATUS_INK
    # The legend draws each marker (colour and symbol) and names it.
    for status, words in (("open", "Open"), ("resolved", "Resolved")):
        assert (
            f'<div class="im-legend-item" data-status="{status}"><span class="im-marker-dot" '
            f'aria-hidden="true" style="background:{STATUS_COLOURS[status]};'
            f'color:{STATUS_INK[status]}">{STATUS_SYMBOLS[status]}</span>{words}</div>'
        ) in page
    assert '<span class="im-marker-dot im-ringed"' in page and "Overdue</div>" in page
    # Markers carry the same symbol, and a title naming report, category and status.
    assert "L.divIcon({html: dot" in page and "title: title(r), keyboard: true" in page


def test_ward_dashboard_colours_wards_by_the_chosen_measure() -> None:
    _, wards = tiny_zone()
    wards["count"] = [3, 0]
    wards["sla"] = [0.5, float("nan")]
    wards["median_hours"] = [12.0, float("nan")]
    wards["reports"] = [12, 0]
    wards["resolved"] = [10, 0]
    fmap = ward_dashboard_map(wards=wards, measure="sla")
    page = normalised(render_page(fmap))
    assert "Wards: Resolved within SLA" in page
    (layer,) = [v for v in page_data(page).values() if isinstance(v, dict) and "geojson" in v]
    shown = {f["properties"]["code"]: f["properties"] for f in layer["geojson"]["features"]}
    assert shown["W-A"]["shown"] == "50%"
    # No resolved reports: too few, drawn grey with a dashed outline.
    assert shown["W-B"]["shown"] == "Too few reports (fewer than 5 resolved)"
    assert shown["W-B"]["fill"] == "#bdbdbd" and shown["W-B"]["dash"]
    assert layer["tooltip"] == [
        ["name", "Wards"],
        ["shown", "Resolved within SLA"],
        ["reports", "Reports"],
        ["resolved", "Resolved"],
    ]
    assert 'data-measure="sla"' in page
    with pytest.raises(ValueError, match="measure"):
        ward_dashboard_map(wards=wards, measure="mood")


def test_language_comes_from_the_parameter_then_the_browser() -> None:
    assert pick_language("th", "en") == "th"
    assert pick_language(None, "de-DE,th;q=0.8,en;q=0.5") == "th"
    assert pick_language("xx", "en-GB,th;q=0.9") == "en"
    assert pick_language(None, None) == "th"
    assert pick_language(None, None, default="en") == "en"


@pytest.mark.parametrize(
    "bbox",
    [
        (-180.0, -90.0, 180.0, 90.0),
        (99.8, 8.2, 100.2, 8.6),
        (100.0, 8.40, 100.0001, 8.41),
        (100.0, 8.4, 110.0, 8.4),
        (100.0, 8.4, 100.0, 8.4),
    ],
)
def test_grid_step_bounds_the_cell_count(bbox: tuple[float, float, float, float]) -> None:
    for max_cells in (9, 100, 2_500):
        step = cell_size_deg(bbox, max_cells=max_cells)
        w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
        assert (w / step + 2) * (h / step + 2) <= max_cells + 1e-9


def test_heat_grid_returns_bounded_cells_for_a_big_box(engine: Engine) -> None:
    from tests.fixtures import load_tiny_city

    with engine.begin() as conn:
        city = load_tiny_city(conn)
        conn.execute(
            text(
                "INSERT INTO reports (category_id, status, due_at, geom) "
                "SELECT :cat, 'open', now(), ST_SetSRID(ST_MakePoint("
                "  100 + 0.02 * random(), 8.40 + 0.01 * random()), 4326) "
                "FROM generate_series(1, 5000)"
            ),
            {"cat": city.categories["road"]},
        )
        cells = heat_grid(
            conn, ReportFilter(statuses=("open",)), bbox=(99.0, 7.0, 101.0, 9.0), max_cells=100
        )
        fine = heat_grid(
            conn,
            ReportFilter(statuses=("open",)),
            bbox=(100.0, 8.40, 100.02, 8.41),
            max_cells=400,
        )
    assert 0 < len(cells) <= 100
    assert sum(c.count for c in cells) == 5000
    assert len(cells) < len(fine) <= 400
    assert sum(c.count for c in fine) == 5000


# --- pages over HTTP ---------------------------------------------------------------------


@pytest.fixture
def maps_app(city_app: tuple[Any, Any, Any]) -> tuple[TestClient, TinyCity, Keys, int]:
    """The tiny city app without a tile server, holding one road report in zone Z1."""
    client, city, keys = city_app
    replace_app_state(
        client.app,
        maps=MapSettings(tiles_url="none", frame_ancestors=["'self'", "https://city.example"]),
    )
    answer = client.post(
        "/api/reports",
        json={
            "category": "road",
            "lat": 8.40512,
            "lon": 100.00534,
            "description": "Pothole by the school gate",
            "reporter_name": "Somchai",
            "reporter_contact": CONTACT,
        },
    )
    assert answer.status_code == 201, answer.text
    return client, city, keys, answer.json()["id"]


def test_zone_map_needs_the_teams_key(maps_app: tuple[TestClient, TinyCity, Keys, int]) -> None:
    client, _, keys, rid = maps_app
    mine = client.get("/maps/zone?zone=Z1", headers={"X-API-Key": keys.t1})
    assert mine.status_code == 200
    assert f"[{rid},8.40512,100.00534," in mine.text
    assert '"Pothole by the school gate",["acknowledged","in_progress","resolved","rejected"]' in (
        mine.text
    )
    assert mine.headers["cache-control"] == "no-store"
    assert mine.headers["referrer-policy"] == "no-referrer"
    assert external_urls(mine.text) == []
    by_param = client.get("/maps/zone", params={"zone": "Z1", "key": keys.t1})
    assert by_param.status_code == 200
    # The key moved from the address into a cookie: no URL the page makes carries it.
    (moved,) = by_param.history
    assert moved.status_code == 303 and moved.headers["location"] == "/maps/zone?zone=Z1"
    cookie = moved.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/;" in cookie
    assert 'name="zone" value="Z1"' in by_param.text
    assert 'name="key"' not in by_param.text
    assert f"key={keys.t1}" not in by_param.text
    again = client.get("/maps/zone", params={"zone": "Z1", "status": "open"})
    assert again.status_code == 200, "the filter form works with the cookie alone"
    client.cookies.clear()

    other = client.get("/maps/zone?zone=Z1", headers={"X-API-Key": keys.t2})
    assert other.status_code == 404
    assert client.get("/maps/zone?zone=Z9", headers={"X-API-Key": keys.t1}).status_code == 404
    assert client.get("/maps/zone?zone=Z1").status_code == 401
    assert client.get("/maps/zone?zone=Z1", headers={"X-API-Key": keys.app}).status_code == 401
    assert client.get("/maps/zone", params={"zone": "Z1", "key": keys.planner}).status_code == 200


def test_zone_map_filters_by_status_and_category(
    maps_app: tuple[TestClient, TinyCity, Keys, int],
) -> None:
    client, _, keys, rid = maps_app
    moved = client.post(
        f"/api/reports/{rid}/status", json={"status": "in_progress"}, headers={"X-API-Key": keys.t1}
    )
    assert moved.status_code == 200
    headers = {"X-API-Key": keys.t1}
    shown = client.get(
        "/maps/zone", params={"zone": "Z1", "status": "in_progress"}, headers=headers
    )
    assert f"[{rid}," in shown.text
    hidden = client.get("/maps/zone", params={"zone": "Z1", "status": "open"}, headers=headers)
    assert f"[{rid}," not in hidden.text
    assert 'data-shown="0" data-total="0"' in hidden.text
    other = client.get("/maps/zone", params={"zone": "Z1", "category": "tree"}, headers=headers)
    assert f"[{rid}," not in other.text
    bad = client.get("/maps/zone", params={"zone": "Z1", "status": "sleeping"}, headers=headers)
    assert bad.status_code == 422


def test_public_map_is_embeddable_and_private_data_free(
    maps_app: tuple[TestClient, TinyCity, Keys, int],
) -> None:
    client, _, _, rid = maps_app
    answer = client.get("/maps/public")
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://city.example" in policy
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)  # type: ignore[union-attr]
    assert "'unsafe-inline'" not in policy.split("script-src ")[1].split(";")[0]
    scripts = re.findall(r"<script\b[^>]*>", answer.text)
    assert scripts and all(f'nonce="{nonce}"' in tag for tag in scripts)
    assert nonce not in client.get("/maps/public").headers["content-security-policy"]
    assert f"[{rid}," in answer.text
    assert CONTACT not in answer.text
    assert "Somchai" not in answer.text
    assert "Pothole by the school gate" not in answer.text
    assert "100.00534" not in answer.text  # rounded to the public grid
    assert external_urls(answer.text) == []
    assert "ปัญหาที่ได้รับแจ้ง" in answer.text  # Thai unless the visitor asks otherwise


def test_public_map_labels_follow_lang_or_accept_language(
    maps_app: tuple[TestClient, TinyCity, Keys, int],
) -> None:
    client, _, _, _ = maps_app
    thai = client.get("/maps/public", params={"lang": "th"})
    assert "ปัญหาที่ได้รับแจ้ง" in thai.text and "ถนน" in thai.text
    browser = client.get("/maps/public", headers={"Accept-Language": "th-TH,th;q=0.9"})
    assert "ปัญหาที่ได้รับแจ้ง" in browser.text
    english = client.get("/maps/public", params={"lang": "en"})
    assert "Reported issues" in english.text and "Roads" in english.text


def _markers(page: str) -> dict[int, list[Any]]:
    (markers,) = [v for v in page_data(page).values() if isinstance(v, dict) and "rows" in v]
    return {row[0]: row for row in markers["rows"]}


def test_public_map_shows_work_fixed_in_the_chosen_days(
    maps_app: tuple[TestClient, TinyCity, Keys, int], engine: Engine
) -> None:
    client, _, keys, rid = maps_app
    staff = {"X-API-Key": keys.t1}
    ids = [rid]
    for lat in (8.4061, 8.4071):
        answer = client.post(
            "/api/reports",
            json={"category": "road", "description": "Crack", "lat": lat, "lon": 100.004},
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    fixed, old = ids[1], ids[2]
    for report_id, note in (
        (fixed, "Filled {{7*7}} {% if 1 %} <img src=x onerror=alert(1)>"),
        (old, "Done long ago"),
    ):
        moved = client.post(
            f"/api/reports/{report_id}/status",
            json={"status": "resolved", "public_note": note},
            headers=staff,
        )
        assert moved.status_code == 200, moved.text
    assert (
        client.post(
            f"/api/reports/{fixed}/status", json={"status": "closed"}, headers=staff
        ).status_code
        == 200
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE reports SET created_at = now() - interval '50 days', "
                "resolved_at = now() - interval '40 days' WHERE id = :id"
            ),
            {"id": old},
        )
        token = conn.execute(text("SELECT token FROM reports WHERE id = :id"), {"id": fixed})
        fixed_token = token.scalar_one()

    shown = _markers(client.get("/maps/public", params={"lang": "en"}).text)
    assert set(shown) == {rid, fixed}, "30 days by default: the old fix is left out"
    assert shown[fixed][4] == "closed" and shown[fixed][10] is not None
    assert shown[fixed][11] == "Filled {{7*7}} {% if 1 %} <img src=x onerror=alert(1)>"
    assert shown[fixed][12] == fixed_token and shown[rid][12]
    assert shown[rid][6] is not None and shown[rid][10] is None  # open: due, not fixed
    longer = _markers(client.get("/maps/public", params={"fixed_days": 60}).text)
    assert set(longer) == {rid, fixed, old}
    assert longer[old][10] - longer[old][5] == pytest.approx(10 * 86400, abs=5)
    assert list(longer) == [rid, fixed, old], "open work first, then the latest fixes"
    assert set(_markers(client.get("/maps/public", params={"fixed_days": 0}).text)) == {rid}
    for bad in ("366", "-1", "thirty", "1e9"):
        answer = client.get("/maps/public", params={"fixed_days": bad})
        assert answer.status_code == 422, bad
        assert "fixed_days" in answer.text, answer.text


def _list_rows(page: str) -> list[dict[str, str]]:
    """The list view's table rows: each cell's text by its column's header."""
    table = re.search(r'<table id="im-list">(.*?)</table>', page, re.S)
    assert table, "the list view is a table"
    headers = re.findall(r'<th scope="col">(.*?)</th>', table.group(1))
    body = table.group(1).split("<tbody>")[1]
    rows = []
    for row in re.findall(r"<tr data-id[^>]*>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        rows.append(dict(zip(headers, cells, strict=True)))
    return rows


def test_list_view_is_a_table_of_the_same_reports(
    maps_app: tuple[TestClient, TinyCity, Keys, int], engine: Engine
) -> None:
    client, _, keys, rid = maps_app
    fixed = client.post(
        "/api/reports",
        json={"category": "road", "description": "Crack", "lat": 8.4071, "lon": 100.004},
    ).json()["id"]
    note = "Filled <b>{{7*7}}</b> {% if 1 %}"
    client.post(
        f"/api/reports/{fixed}/status",
        json={"status": "resolved", "public_note": note},
        headers={"X-API-Key": keys.t1},
    )
    with engine.connect() as conn:
        tokens = dict(conn.execute(text("SELECT id, token FROM reports")).all())
    answer = client.get("/maps/public", params={"view": "list", "lang": "en"})
    assert answer.status_code == 200
    page = answer.text
    assert "<script" not in page
    policy = answer.headers["content-security-policy"]
    assert "script-src 'none'" in policy and "frame-ancestors 'self' https://city.example" in policy
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert "<title>Reported issues</title>" in page
    assert "<caption>Reported issues: Showing 2 of 2 reports.</caption>" in page
    rows = {int(r["No."]): r for r in _list_rows(page)}
    assert set(rows) == {rid, fixed}
    assert "Open" in rows[rid]["Status"] and rows[rid]["Fixed in"] == ""
    assert '<time datetime="' in rows[rid]["Due"]
    assert "Resolved" in rows[fixed]["Status"] and rows[fixed]["Fixed in"] == "0h"
    assert rows[fixed]["Latest update"] == "Filled &lt;b&gt;{{7*7}}&lt;/b&gt; {% if 1 %}"
    assert (
        f'<a href="/r/{tokens[fixed]}?lang=en">Report status page'
        in rows[fixed]["Report status page"]
    )
    assert f'/r/{tokens[rid]}?lang=en"' in rows[rid]["Report status page"]
    assert CONTACT not in page and "Somchai" not in page and "school gate" not in page
    # The same filters as the map, kept by the form and every link.
    assert '<input type="hidden" name="view" value="list">' in page
    assert '<a href="/maps/public?lang=en&amp;fixed_days=30">Map</a>' in page
    assert '<a class="im-button" href="/report?lang=en">Report a problem</a>' in page
    none = client.get("/maps/public", params={"view": "list", "lang": "en", "category": "tree"})
    assert _list_rows(none.text) == [] and "No reports match these choices." in none.text
    assert [
        int(r["No."])
        for r in _list_rows(
            client.get("/maps/public", params={"view": "list", "fixed_days": 0, "lang": "en"}).text
        )
    ] == [rid]
    thai = client.get("/maps/public", params={"view": "list", "lang": "th"}).text
    assert '<html lang="th">' in thai and "แก้ไขแล้ว" in thai and "รับแจ้ง" in thai
    assert client.get("/maps/public", params={"view": "grid"}).status_code == 422
    # The map links to its list view with the same choices.
    shown = client.get("/maps/public", params={"lang": "en", "category": "road"}).text
    assert 'href="/maps/public?lang=en&amp;fixed_days=30&amp;category=road&amp;view=list"' in shown


def test_list_view_pages_as_the_map_does(
    maps_app: tuple[TestClient, TinyCity, Keys, int],
) -> None:
    client, _, _, rid = maps_app
    other = client.post(
        "/api/reports",
        json={"category": "tree", "description": "Fallen", "lat": 8.4071, "lon": 100.015},
    ).json()["id"]
    replace_app_state(client.app, maps=MapSettings(tiles_url="none", marker_cap=1))
    first = client.get("/maps/public", params={"view": "list", "lang": "en"}).text
    second = client.get("/maps/public", params={"view": "list", "lang": "en", "page": 2}).text
    assert [r["No."] for r in _list_rows(first)] + [r["No."] for r in _list_rows(second)] == [
        str(rid),
        str(other),
    ]
    expected = {"lang": ["en"], "fixed_days": ["30"], "view": ["list"]}
    assert _link_query(first, "next") == expected | {"page": ["2"]}
    assert _link_query(first, "prev") is None
    assert _link_query(second, "prev") == expected | {"page": ["1"]}
    assert _link_query(second, "next") is None


def _add_reports(
    engine: Engine, category: int, rows: list[tuple[str, str, str | None]]
) -> list[int]:
    """Reports by the school as (status, due in, resolved ago) intervals; their ids in order."""
    with engine.begin() as conn:
        return [
            conn.execute(
                text(
                    "INSERT INTO reports (category_id, status, created_at, due_at, resolved_at, "
                    "geom) VALUES (:cat, :status, now() - interval '2 days', now() + "
                    "CAST(:due AS interval), now() - CAST(:ago AS interval), "
                    "ST_SetSRID(ST_MakePoint(100.004, 8.406), 4326)) RETURNING id"
                ),
                {"cat": category, "status": status, "due": due, "ago": ago},
            ).scalar_one()
            for status, due, ago in rows
        ]


def test_public_pages_walk_open_work_by_due_time_then_fixed_work_newest_first(
    maps_app: tuple[TestClient, TinyCity, Keys, int], engine: Engine
) -> None:
    client, city, _, rid = maps_app
    later, sooner, late, fixed_old, fixed_new, fixed_long_ago = _add_reports(
        engine,
        city.categories["road"],
        [
            ("in_progress", "400 hours", None),
            ("acknowledged", "3 hours", None),
            ("reopened", "-5 hours", None),
            ("closed", "0 hours", "3 days"),
            ("resolved", "0 hours", "1 hour"),
            ("resolved", "0 hours", "60 days"),
        ],
    )
    replace_app_state(client.app, maps=MapSettings(tiles_url="none", marker_cap=2))
    shown = []
    for page in (1, 2, 3, 4):
        answer = client.get("/maps/public", params={"view": "list", "lang": "en", "page": page})
        shown += [int(r["No."]) for r in _list_rows(answer.text)]
        if page == 1:
            assert "Showing 2 of 6 reports." in answer.text, "counted exactly, within reach"
    # maps_app's report is due within its category's SLA, days before "later".
    assert shown == [late, sooner, rid, later, fixed_new, fixed_old]
    assert fixed_long_ago not in shown


def test_a_long_history_is_counted_only_a_few_pages_ahead(
    maps_app: tuple[TestClient, TinyCity, Keys, int], engine: Engine
) -> None:
    client, city, _, _ = maps_app
    _add_reports(engine, city.categories["road"], [("open", f"{h} hours", None) for h in range(14)])
    replace_app_state(client.app, maps=MapSettings(tiles_url="none", marker_cap=1))
    # One page and ten more are counted (11 reports); past that the page says "more than".
    page = client.get("/maps/public", params={"lang": "en"}).text
    assert "Showing 1 of more than 11 reports. More than 10 not shown" in page
    assert 'id="im-next-page" data-page="2"' in page
    listed = client.get("/maps/public", params={"view": "list", "lang": "en"}).text
    assert "<caption>Reported issues: Showing 1 of more than 11 reports.</caption>" in listed
    assert _link_query(listed, "next") is not None
    # Counting reaches further from further pages, and the last page knows it is last.
    last = client.get("/maps/public", params={"view": "list", "lang": "en", "page": 15}).text
    assert "Showing 1 of 15 reports." in last and _link_query(last, "next") is None


def _link_query(page: str, rel: str) -> dict[str, list[str]] | None:
    found = re.search(rf'<a href="([^"]*)" rel="{rel}">', page)
    if found is None:
        return None
    url = urlsplit(html.unescape(found.group(1)))
    assert url.path == "/maps/public"
    return parse_qs(url.query)


def test_hidden_reports_never_reach_the_public_map_or_its_list(
    maps_app: tuple[TestClient, TinyCity, Keys, int],
) -> None:
    client, _, keys, rid = maps_app
    ids = [rid]
    for lat in (8.4061, 8.4071):
        answer = client.post(
            "/api/reports",
            json={"category": "road", "description": "Crack", "lat": lat, "lon": 100.004},
        )
        ids.append(answer.json()["id"])
    client.post(
        f"/api/reports/{ids[2]}/status",
        json={"status": "resolved", "public_note": "done"},
        headers={"X-API-Key": keys.t1},
    )
    for hidden in (ids[1], ids[2]):
        answer = client.post(
            f"/api/reports/{hidden}/hide",
            json={"reason": "abusive"},
            headers={"X-API-Key": keys.admin},
        )
        assert answer.status_code == 200, answer.text
    for lang in ("en", "th"):
        page = client.get("/maps/public", params={"lang": lang}).text
        assert set(_markers(page)) == {rid}, "a hidden report, open or fixed, is not shown"
        heat = re.search(r"L\.heatLayer\(\s*(\[\[.*?\]\])", page, re.S)
        assert heat and sum(cell[2] for cell in json.loads(heat.group(1))) == 1, "nor in heat"
        rows = _list_rows(client.get("/maps/public", params={"view": "list", "lang": lang}).text)
        assert [row[next(iter(row))] for row in rows] == [str(rid)]
    staff = client.get("/maps/zone", params={"zone": "Z1"}, headers={"X-API-Key": keys.t1})
    assert f"[{ids[1]}," in staff.text, "staff still see it"


def test_public_map_fixed_work_is_read_through_the_fixed_resolved_index(engine: Engine) -> None:
    from geo.access.policy import ANONYMOUS
    from geo.maps.pagedata import map_reports_sql
    from geo.vocabulary import OPEN_STATUSES
    from tests.fixtures import load_tiny_city

    with engine.begin() as conn:
        city = load_tiny_city(conn)
        # Years of fixed work and a little open work: the last month's fixes are few.
        conn.execute(
            text(
                "INSERT INTO reports (category_id, status, created_at, resolved_at, due_at, geom) "
                "SELECT :cat, CASE WHEN i % 50 = 0 THEN 'open' ELSE 'closed' END, "
                "  now() - (i || ' hours')::interval - interval '1 day', "
                "  CASE WHEN i % 50 = 0 THEN NULL ELSE now() - (i || ' hours')::interval END, "
                "  now(), ST_SetSRID(ST_MakePoint(100 + 0.02 * random(), "
                "  8.40 + 0.01 * random()), 4326) "
                "FROM generate_series(1, 30000) AS i"
            ),
            {"cat": city.categories["road"]},
        )
        conn.execute(text("ANALYZE reports"))
        page, count, params = map_reports_sql(
            ReportFilter(statuses=OPEN_STATUSES),
            ANONYMOUS,
            fixed_since=datetime.now(UTC) - timedelta(days=30),
        )
        for sql in (page, count):
            plan = "\n".join(
                conn.execute(text(f"EXPLAIN {sql}"), params | {"limit": 500, "offset": 0}).scalars()
            )
            assert "ix_reports_fixed_resolved" in plan, plan
            assert "Seq Scan on reports" not in plan, plan


def _rows_read(node: dict[str, Any], table: str) -> int:
    """Rows a plan node and its children read from ``table`` (kept and filtered away)."""
    own = 0
    if node.get("Relation Name") == table:
        kept = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        own = kept * node.get("Actual Loops", 1)
    return own + sum(_rows_read(child, table) for child in node.get("Plans", []))


def test_public_map_open_work_reads_a_page_per_status_however_long_the_backlog(
    engine: Engine,
) -> None:
    """The markers come from the first page of each open status in due order, not all of it."""
    from geo.access.policy import ANONYMOUS
    from geo.maps.pagedata import map_reports_sql
    from geo.vocabulary import OPEN_STATUSES
    from tests.fixtures import load_tiny_city

    with engine.begin() as conn:
        city = load_tiny_city(conn)
        # A long open backlog in every open status, due at scattered times.
        conn.execute(
            text(
                "INSERT INTO reports (category_id, status, created_at, due_at, geom) "
                "SELECT :cat, (CAST(:statuses AS text[]))[1 + i % 4], now() - interval '1 day', "
                "  now() + ((i * 7919) % 30000 || ' minutes')::interval, "
                "  ST_SetSRID(ST_MakePoint(100 + 0.02 * random(), 8.40 + 0.01 * random()), 4326) "
                "FROM generate_series(1, 40000) AS i"
            ),
            {"cat": city.categories["road"], "statuses": list(OPEN_STATUSES)},
        )
        conn.execute(text("ANALYZE reports"))
        page, _, params = map_reports_sql(
            ReportFilter(statuses=OPEN_STATUSES),
            ANONYMOUS,
            fixed_since=datetime.now(UTC) - timedelta(days=30),
        )
        plan = conn.execute(
            text(f"EXPLAIN (ANALYZE, FORMAT JSON) {page}"), params | {"limit": 500, "offset": 0}
        ).scalar_one()
        shown = conn.execute(text(page), params | {"limit": 500, "offset": 0}).all()
    assert len(shown) == 500
    # A page of 500 from each of the four statuses, and the 500 shown read again whole.
    assert _rows_read(plan[0]["Plan"], "reports") <= 5 * 500 + 100, json.dumps(plan, indent=1)


def test_city_bounds_are_the_extent_of_the_current_wards(engine: Engine) -> None:
    from geo.city.layers import city_bounds
    from tests.fixtures import load_tiny_city

    extent = (
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
        "(SELECT ST_Extent(geom) AS e FROM wards WHERE retired_at IS NULL) AS b"
    )
    with engine.begin() as conn:
        assert city_bounds(conn) is None
        load_tiny_city(conn)
        # Many small wards inside, as a country's would be: the edges are still the outer ones.
        conn.execute(
            text(
                "INSERT INTO wards (code, name, import_id, geom) SELECT 'S' || i, 'Small', "
                "(SELECT max(import_id) FROM wards), ST_Multi(ST_MakeEnvelope(100.001 + i * 1e-5, "
                "8.401, 100.002 + i * 1e-5, 8.402, 4326)) FROM generate_series(1, 300) AS i"
            )
        )
        assert city_bounds(conn) == tuple(conn.execute(text(extent)).one())
        conn.execute(text("UPDATE wards SET retired_at = now() WHERE code = 'W-B'"))
        smaller = city_bounds(conn)
        assert smaller == tuple(conn.execute(text(extent)).one())
        conn.execute(text("UPDATE wards SET retired_at = now()"))
        assert city_bounds(conn) is None


def test_ward_dashboard_is_for_planners(
    maps_app: tuple[TestClient, TinyCity, Keys, int],
) -> None:
    client, _, keys, _ = maps_app
    for measure in ("count", "sla", "median_hours"):
        answer = client.get(
            "/maps/wards", params={"measure": measure}, headers={"X-API-Key": keys.planner}
        )
        assert answer.status_code == 200
        assert f'data-measure="{measure}"' in answer.text
        assert external_urls(answer.text) == []
    assert client.get("/maps/wards", headers={"X-API-Key": keys.t1}).status_code == 403
    assert client.get("/maps/wards").status_code == 401
    bad = client.get("/maps/wards", params={"measure": "mood"}, headers={"X-API-Key": keys.admin})
    assert bad.status_code == 422


def test_overview_stays_at_the_root_without_cdns(
    maps_app: tuple[TestClient, TinyCity, Keys, int],
) -> None:
    client, _, _, _ = maps_app
    answer = client.get("/")
    assert answer.status_code == 200
    assert '"W-A"' in answer.text
    assert external_urls(answer.text) == []


# --- names, titles and errors in the page's language --------------------------------------

WARD_TH = "แขวงเหนือ {{7*7}}"
WARD_EN = "North ward <img src=x onerror=alert(1)>"
ZONE_TH = "เขตหนึ่ง {% if 1 %}"
ZONE_EN = "Zone one {# note"
TEAM_TH = "ทีมซ่อมถนน"
TEAM_EN = "Road crew <b>"


def _name_the_city(engine: Engine) -> None:
    """Thai and English names for ward W-A, zone Z1 and team T1; the rest keep their codes."""
    with engine.begin() as conn:
        for table, code, th, en in (
            ("wards", "W-A", WARD_TH, WARD_EN),
            ("zones", "Z1", ZONE_TH, ZONE_EN),
            ("teams", "T1", TEAM_TH, TEAM_EN),
        ):
            conn.execute(
                text(f"UPDATE {table} SET name_th = :th, name_en = :en WHERE code = :code"),
                {"th": th, "en": en, "code": code},
            )


def _features(page: str) -> dict[str, dict[str, Any]]:
    """The properties of every polygon on a map page, by layer name and code."""
    layers = [v for v in page_data(page).values() if isinstance(v, dict) and "geojson" in v]
    return {
        f"{i}:{f['properties']['code']}": f["properties"]
        for i, layer in enumerate(layers)
        for f in layer["geojson"]["features"]
    }


def _names_by_code(page: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for key, props in _features(page).items():
        found.setdefault(key.split(":", 1)[1], set()).add(props["name"])
    return found


def test_ward_zone_and_team_names_are_shown_in_the_pages_language(
    maps_app: tuple[TestClient, TinyCity, Keys, int], engine: Engine
) -> None:
    client, _, keys, _ = maps_app
    _name_the_city(engine)
    for lang, ward, zone, team, other in (
        ("th", WARD_TH, ZONE_TH, TEAM_TH, WARD_EN),
        ("en", WARD_EN, ZONE_EN, TEAM_EN, WARD_TH),
    ):
        asked = [{"params": {"lang": lang}}, {"headers": {"Accept-Language": lang}}]
        if lang == "th":
            asked.append({})  # the pages are Thai unless the visitor asks otherwise
        for how in asked:
            overview = client.get("/", **how)
            assert overview.status_code == 200
            names = _names_by_code(overview.text)
            assert names["W-A"] == {ward} and names["W-B"] == {"W-B"}, how
            assert names["Z1"] == {zone} and names["Z2"] == {"Z2"}, how
            teams = {p["code"]: p["team"] for p in _features(overview.text).values() if "team" in p}
            assert teams == {"Z1": team, "Z2": "T2"}
            assert other not in _data_texts(overview.text)
            assert "<img src=x" not in overview.text and TEAM_EN not in overview.text

        zone_page = client.get(
            "/maps/zone", params={"zone": "Z1", "lang": lang}, headers={"X-API-Key": keys.t1}
        )
        assert zone_page.status_code == 200
        assert _names_by_code(zone_page.text)["W-A"] == {ward}
        # The panel names the zone and its team, escaped.
        panel = zone_page.text.split('id="im-panel">', 1)[1]
        assert html.escape(zone, quote=True) in panel and html.escape(team, quote=True) in panel
        assert "<img src=x" not in zone_page.text and TEAM_EN not in zone_page.text

        wards = client.get(
            "/maps/wards", params={"lang": lang}, headers={"X-API-Key": keys.planner}
        )
        assert wards.status_code == 200
        names = _names_by_code(wards.text)
        assert names["W-A"] == {ward} and names["W-B"] == {"W-B"}
        assert "<img src=x" not in wards.text


def _data_texts(page: str) -> str:
    """Everything the page shows: HTML entities and JSON escapes undone."""
    unescaped = html.unescape(page)
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), unescaped)


def test_every_map_page_has_a_title_and_language(
    maps_app: tuple[TestClient, TinyCity, Keys, int],
) -> None:
    from geo.maps.i18n import labels

    client, _, keys, _ = maps_app

    def titles(lang: str) -> dict[str, tuple[dict[str, str], str]]:
        said = labels(lang)
        return {
            "/": ({}, said["overview_title"]),
            "/maps/public": ({}, said["public_title"]),
            "/maps/zone": ({"zone": "Z1"}, said["zone_title"].format(zone="Z1")),
            "/maps/wards": ({}, said["wards_title"].format(measure=said["count"])),
        }

    staff = {"X-API-Key": keys.planner}
    for lang in ("th", "en"):
        for path, (query, title) in titles(lang).items():
            for params, headers in (
                (query | {"lang": lang}, staff),
                (query, staff | {"Accept-Language": lang}),
            ):
                answer = client.get(path, params=params, headers=headers)
                assert answer.status_code == 200, (path, answer.text[:200])
                page = answer.text
                assert f'<html lang="{lang}">' in page, path
                assert re.findall(r"<title>(.*?)</title>", page) == [html.escape(title)], path
    assert labels("th")["overview_title"] != labels("en")["overview_title"]
    assert '<html lang="th">' in client.get("/").text, "the overview is Thai by default"


def test_map_page_errors_answer_in_the_callers_language(
    maps_app: tuple[TestClient, TinyCity, Keys, int], engine: Engine
) -> None:
    from geo.errors import InvalidInputError
    from geo.maps.pages import PageFilters, public_reports

    client, _, keys, _ = maps_app
    thai = {"Accept-Language": "th-TH,th;q=0.9"}
    too_many = client.get("/maps/public", params={"fixed_days": "999"}, headers=thai)
    assert too_many.status_code == 422
    assert too_many.json()["field"] == "fixed_days"
    assert too_many.json()["detail"] == "fixed_days: ต้องไม่เกิน 365"
    english = client.get("/maps/public", params={"fixed_days": "999"})
    assert english.json()["detail"] == "fixed_days: must be at most 365"
    # The same rule in geo, for callers that are not the HTTP API.
    with engine.connect() as conn, pytest.raises(InvalidInputError) as refused:
        public_reports(
            conn, PageFilters(fixed_days=999), maps=MapSettings(), public_rounding_m=100.0
        )
    assert refused.value.field == "fixed_days"
    assert refused.value.message("th") == "fixed_days: ต้องอยู่ระหว่าง 0 ถึง 365 วัน"
    assert str(refused.value) == "fixed_days: must be between 0 and 365 days"

    two = client.get(
        "/maps/public", params=[("category", "road"), ("category", "tree")], headers=thai
    )
    assert two.status_code == 422
    assert two.json()["detail"] == "category: แผนที่กรองได้ครั้งละหนึ่งค่าเท่านั้น"

    zone = "Z{{7*7}}<b>"
    missing = client.get("/maps/zone", params={"zone": zone}, headers={"X-API-Key": keys.t1} | thai)
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"ไม่มีเขต {zone!r} สำหรับคีย์นี้"
    other = client.get(
        "/maps/zone", params={"zone": "Z2", "lang": "en"}, headers={"X-API-Key": keys.t1}
    )
    assert other.json()["detail"] == "There is no zone 'Z2' for this key."

    crew = client.get("/maps/wards", headers={"X-API-Key": keys.t1} | thai)
    assert crew.status_code == 403
    assert crew.json()["detail"] == "แดชบอร์ดแขวงใช้ได้เฉพาะผู้วางแผนและผู้ดูแลระบบ"
    crew = client.get("/maps/wards", headers={"X-API-Key": keys.t1})
    assert crew.json()["detail"] == "The ward dashboard is for planners and administrators."


def test_map_settings_refuse_a_source_that_would_break_the_header() -> None:
    assert MapSettings(tiles_url="none").tiles is None
    assert MapSettings().tiles == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    with pytest.raises(ValueError, match="CSP source"):
        MapSettings(frame_ancestors=["'self'; script-src *"])


def test_boundary_features_on_a_page_are_what_geopandas_writes() -> None:
    """A page's inline polygons and their names, missing ones included, as GeoJSON."""
    import shapely

    from geo.maps.builders import feature_collection

    frame = gpd.GeoDataFrame(
        {
            "code": ["W1", None, "W3"],
            "name": ["<b>ตำบล</b>", "Ward 2", float("nan")],
            "open": [3, 0, 12],
            "share": [0.25, float("nan"), 1.0],
            "geom": [
                shapely.MultiPolygon([shapely.box(100.1, 8.4, 100.123456789, 8.45)]),
                None,
                shapely.Polygon(
                    [(100, 8), (100.2, 8), (100.2, 8.2), (100, 8)],
                    holes=[[(100.1, 8.05), (100.15, 8.05), (100.15, 8.1), (100.1, 8.05)]],
                ),
            ],
        },
        geometry="geom",
        crs="EPSG:4326",
    )
    ours = feature_collection(frame)
    theirs = json.loads(frame.to_json(drop_id=True))
    assert json.loads(json.dumps(ours, allow_nan=False)) == ours, "strict JSON: no NaN"
    assert [f["properties"] for f in ours["features"]] == [
        f["properties"] for f in theirs["features"]
    ]
    for mine, expected in zip(ours["features"], theirs["features"], strict=True):
        assert (mine["geometry"] is None) == (expected["geometry"] is None)
        if expected["geometry"] is not None:
            assert shapely.geometry.shape(mine["geometry"]).equals_exact(
                shapely.geometry.shape(expected["geometry"]), 1e-12
            )


def test_zone_map_reads_its_open_work_not_the_zones_history(engine: Engine) -> None:
    """A zone's markers and backlog count read its open reports, however many it closed."""
    from geo.access.policy import Principal
    from geo.maps.pagedata import map_reports_sql, open_work_counts
    from geo.vocabulary import OPEN_STATUSES
    from tests.fixtures import load_tiny_city

    planner = Principal(role="planner")
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        # Years of closed work in the zone, and a small open queue in every open status.
        conn.execute(
            text(
                "INSERT INTO reports (category_id, zone_id, status, created_at, due_at, geom) "
                "SELECT :cat, :zone, CASE WHEN i % 40 = 0 "
                "  THEN (CAST(:statuses AS text[]))[1 + (i / 40) % 4] ELSE 'closed' END, "
                "  now() - (i || ' minutes')::interval, "
                "  now() + ((i * 7919) % 30000 || ' minutes')::interval, "
                "  ST_SetSRID(ST_MakePoint(100.005, 8.405), 4326) "
                "FROM generate_series(1, 40000) AS i"
            ),
            {
                "cat": city.categories["road"],
                "zone": city.zones["Z1"],
                "statuses": list(OPEN_STATUSES),
            },
        )
        conn.execute(text("ANALYZE reports"))
        queue = ReportFilter(zone_ids=(city.zones["Z1"],), statuses=OPEN_STATUSES)
        page, _, params = map_reports_sql(queue, planner)
        plan = conn.execute(
            text(f"EXPLAIN (ANALYZE, FORMAT JSON) {page}"), params | {"limit": 100, "offset": 0}
        ).scalar_one()
        assert len(conn.execute(text(page), params | {"limit": 100, "offset": 0}).all()) == 100
        # A page of 100 from each of the four statuses, and the 100 shown read again whole.
        assert _rows_read(plan[0]["Plan"], "reports") <= 5 * 100 + 50, json.dumps(plan, indent=1)
        assert open_work_counts(conn, queue, planner).open == 1000
        counted = conn.execute(
            text(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM reports AS r "
                "WHERE r.zone_id = :z AND r.status IN ('open', 'acknowledged', 'in_progress', "
                "'reopened')"
            ),
            {"z": city.zones["Z1"]},
        ).scalar_one()
    assert _rows_read(counted[0]["Plan"], "reports") <= 1000 + 50, json.dumps(counted, indent=1)
