"""Map pages in a real headless Chromium: no console errors, the right heat points, marker
popups, fixed work with its time to fix, the panel clear of the map's controls, live updates
after a POST, and a screenshot of each page in test-artifacts/.
"""

import contextlib
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from geo.i18n import translate
from geo.maps.i18n import LABELS
from geo.reports.live import BULK_AFTER
from geo.reports.store import insert_reports
from geo.reports.workflow import next_statuses
from geo.settings import DatabaseSettings, RoutingSettings
from geo.vocabulary import OPEN_STATUSES
from tests.browser import axe_violations, running, screenshot, wait_until, watch
from tests.fixtures import Keys, TinyCity, load_tiny_city, make_keys

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture

# Open reports far enough apart to fall in separate heat cells; one resolved report.
OPEN = [
    ("road", "หลุมใหญ่กลางถนน", 8.4025, 100.003),  # W-A, zone Z1
    ("road", "ฝาท่อหาย", 8.4075, 100.008),  # W-A, zone Z1
    ("road", "ถนนทรุด", 8.4050, 100.016),  # W-B, zone Z2
]
RESOLVED = ("road", "ซ่อมแล้ว", 8.4030, 100.006)  # zone Z1
PUBLIC_NOTE = "ปะผิวถนนเรียบร้อย {{7*7}} <img src=x onerror=alert(1)>"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def site(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, TinyCity, Keys]]:
    monkeypatch.setenv("ISSUEMAP_MAP_TILES_URL", "none")
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        keys = make_keys(conn)
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    with running(app) as base:
        for category, description, lat, lon in [*OPEN, RESOLVED]:
            answer = httpx.post(
                f"{base}/api/reports",
                json={"category": category, "description": description, "lat": lat, "lon": lon},
            )
            assert answer.status_code == 201, answer.text
        resolved = answer.json()["id"]
        assert (
            httpx.post(
                f"{base}/api/reports/{resolved}/status",
                json={"status": "resolved", "public_note": PUBLIC_NOTE},
                headers={"X-API-Key": keys.t1},
            ).status_code
            == 200
        )
        yield base, city, keys


def open_page(
    browser: Any, url: str, origin: str, viewport: dict[str, int] = PHONE
) -> tuple[Any, Any]:
    page = browser.new_page(viewport=viewport)
    seen = watch(page, origin)
    page.goto(url, wait_until="domcontentloaded")
    wait_until(page, "window.issuemap && window.issuemap.map !== undefined")
    return page, seen


def heat_points(page: Any) -> int:
    return int(page.evaluate("window.issuemap.heat._latlngs.length"))


def popup_text(page: Any, lat: float, lon: float) -> str:
    """Zoom to the marker nearest (lat, lon), click it as a user would, return the popup."""
    opened = page.evaluate(
        """([lat, lon]) => new Promise((done) => {
            const map = window.issuemap.map;
            map.closePopup();
            let best = null, bestD = Infinity;
            for (const m of window.issuemap.markers.getLayers()) {
                const p = m.getLatLng();
                const d = (p.lat - lat) ** 2 + (p.lng - lon) ** 2;
                if (d < bestD) { best = m; bestD = d; }
            }
            // At the deepest zoom no cluster hides the marker.
            map.setView(best.getLatLng(), map.getMaxZoom(), {animate: false});
            setTimeout(() => {
                if (!best._map) { done(false); return; }
                best.fire('click');
                done(true);
            }, 500);
        })""",
        [lat, lon],
    )
    assert opened, "the marker did not appear on the map at full zoom"
    page.wait_for_selector(".leaflet-popup-content", timeout=3000)
    return str(page.inner_text(".leaflet-popup-content"))


def post_report(base: str, lat: float, lon: float) -> int:
    answer = httpx.post(
        f"{base}/api/reports",
        json={"category": "road", "description": "ใหม่ระหว่างเปิดแผนที่", "lat": lat, "lon": lon},
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def test_public_map(browser: Any, site: tuple[str, TinyCity, Keys]) -> None:
    base, _, keys = site
    page, seen = open_page(browser, f"{base}/maps/public?lang=th", base)
    assert heat_points(page) == len(OPEN)
    text_in_popup = popup_text(page, OPEN[2][2], OPEN[2][3])
    assert "ถนน" in text_in_popup and "รับแจ้ง" in text_in_popup, text_in_popup
    wait_until(page, "window.issuemap.liveStatus === 'open'", timeout=5000)
    new_id = post_report(base, 8.4065, 100.0135)
    wait_until(page, "window.issuemap.liveEvents >= 1", timeout=2000)
    assert heat_points(page) == len(OPEN) + 1
    # A live marker speaks the page's language, as the page's own markers do.
    live = popup_text(page, 8.4065, 100.0135)
    assert live.startswith(f"#{new_id} ถนน\nรับแจ้ง"), live
    assert "อายุเรื่อง" in live and "กำหนดเสร็จ" in live, live
    assert "road" not in live and "open" not in live, live
    screenshot(page, "public-map")
    for status, words in (("in_progress", "กำลังดำเนินการ"), ("resolved", "แก้ไขแล้ว")):
        httpx.post(
            f"{base}/api/reports/{new_id}/status",
            json={"status": status},
            headers={"X-API-Key": keys.t2},
        ).raise_for_status()
        wait_until(page, f"window.issuemap.lastEvent.status === '{status}'", timeout=2000)
        live = popup_text(page, 8.4065, 100.0135)
        assert f"#{new_id} ถนน\n{words}" in live and status not in live, live
    assert "ใช้เวลาแก้ไข" in live, "fixed work stays on the public map, with its time to fix"
    screenshot(page, "public-map-live-fixed")
    assert seen.errors == [], seen.errors
    assert seen.external == [], seen.external
    page.close()


def test_public_map_shows_fixed_work_and_links_to_status_pages(
    browser: Any, site: tuple[str, TinyCity, Keys], engine: Engine
) -> None:
    base, _, _ = site
    with engine.connect() as conn:
        token = conn.execute(
            text("SELECT token FROM reports WHERE status = 'resolved'")
        ).scalar_one()
    page, seen = open_page(browser, f"{base}/maps/public?lang=en", base, DESKTOP)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.title() == "Reported issues"
    popup = popup_text(page, RESOLVED[2], RESOLVED[3])
    assert "Resolved" in popup and "Fixed in: 0h" in popup, popup
    assert f"Latest update: {PUBLIC_NOTE}" in popup, popup
    link = page.locator(".leaflet-popup-content a.im-status-link")
    assert link.inner_text() == "Report status page"
    assert link.get_attribute("href") == f"/r/{token}?lang=en"
    assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    screenshot(page, "public-map-fixed-popup")
    open_popup = popup_text(page, OPEN[0][2], OPEN[0][3])
    assert "Open" in open_popup and "Due: " in open_popup and "Fixed in" not in open_popup
    # The report button leads to the report page in the page's language.
    assert page.locator("a.im-report-link").get_attribute("href") == "/report?lang=en"
    assert page.locator(".im-heat-legend").is_visible()
    assert dialogs == [] and seen.errors == [] and seen.external == [], (dialogs, seen)
    page.close()


def test_list_view_is_a_table_linking_to_status_pages(
    browser: Any, site: tuple[str, TinyCity, Keys], engine: Engine
) -> None:
    base, _, _ = site
    with engine.connect() as conn:
        token = conn.execute(
            text("SELECT token FROM reports WHERE status = 'resolved'")
        ).scalar_one()
    page = browser.new_page(viewport=PHONE)
    seen = watch(page, base)
    page.goto(f"{base}/maps/public?lang=th", wait_until="domcontentloaded")
    wait_until(page, "window.issuemap && window.issuemap.map !== undefined")
    page.click("a.im-list-link")  # the map's own link to its list view
    page.wait_for_selector("table#im-list")
    assert page.evaluate("document.documentElement.lang") == "th"
    assert page.locator("table#im-list caption").inner_text().startswith("ปัญหาที่ได้รับแจ้ง")
    assert page.locator("table#im-list tbody tr").count() == len(OPEN) + 1
    fixed = page.locator(f"tr:has(a[href='/r/{token}?lang=th'])")
    assert "แก้ไขแล้ว" in fixed.inner_text() and "0ชม." in fixed.inner_text()
    assert PUBLIC_NOTE in fixed.inner_text()
    assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    screenshot(page, "public-list-phone")
    assert seen.errors == [] and seen.external == [], seen
    page.close()


def _overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


@pytest.mark.parametrize("size", ["phone", "desktop"])
@pytest.mark.parametrize("path", ["/maps/public?lang=th", "/maps/public?lang=en"])
def test_panel_never_hides_the_map_controls(
    browser: Any, site: tuple[str, TinyCity, Keys], size: str, path: str
) -> None:
    base, _, _ = site
    page, seen = open_page(browser, base + path, base, PHONE if size == "phone" else DESKTOP)
    panel = page.locator("#im-panel")
    for opened in (False, True):
        page.evaluate(f"document.querySelector('#im-panel details').open = {str(opened).lower()}")
        if opened:  # the layer control unfolded too, as when a finger is on it
            page.evaluate(
                "document.querySelector('.leaflet-control-layers')"
                ".classList.add('leaflet-control-layers-expanded')"
            )
        box = panel.bounding_box()
        assert box is not None and box["width"] > 0
        viewport = page.viewport_size
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
        assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], box
        controls = page.locator(".leaflet-control:not(#im-panel)")
        assert controls.count() >= 3, "zoom, layers, scale and attribution"
        for i in range(controls.count()):
            other = controls.nth(i).bounding_box()
            assert other is not None
            name = controls.nth(i).get_attribute("class")
            assert not _overlaps(box, other), f"the panel lies over {name}: {box} {other}"
        screenshot(page, f"public-map-panel-{size}-{path[-2:]}-{'open' if opened else 'folded'}")
    assert seen.errors == [], seen.errors
    page.close()


def test_zone_map(browser: Any, site: tuple[str, TinyCity, Keys]) -> None:
    base, _, keys = site
    page, seen = open_page(browser, f"{base}/maps/zone?zone=Z1&key={keys.t1}", base)
    in_z1 = [r for r in OPEN if r[3] < 100.012]
    assert heat_points(page) == len(in_z1)
    popup = popup_text(page, in_z1[0][2], in_z1[0][3])
    assert in_z1[0][1] in popup, popup
    wait_until(page, "window.issuemap.liveStatus === 'open'", timeout=5000)
    new_id = post_report(base, 8.4090, 100.0020)  # in zone Z1
    wait_until(page, "window.issuemap.liveEvents >= 1", timeout=2000)
    assert page.evaluate("window.issuemap.lastEvent.id") == new_id
    # The crew's stream is a staff stream (the key cookie): exact place, team and zone.
    event = page.evaluate("window.issuemap.lastEvent")
    assert (event["lat"], event["lon"]) == (8.4090, 100.0020), event
    assert event.get("team_id") is not None and event.get("zone_id") is not None, event
    httpx.post(
        f"{base}/api/reports/{new_id}/status",
        json={"status": "acknowledged"},
        headers={"X-API-Key": keys.t1},
    )
    wait_until(page, "window.issuemap.lastEvent.status === 'acknowledged'", timeout=2000)
    # The colleague's change redraws the one marker in place, with the buttons its new
    # status allows, not a second marker without them.
    same = page.evaluate(
        f"window.issuemap.markers.getLayers().filter(m => m.reportId === {new_id}).length"
    )
    assert same == 1
    popup_text(page, 8.4090, 100.0020)
    buttons = page.evaluate(
        "Array.from(document.querySelectorAll('.leaflet-popup .im-actions button'))"
        ".map(b => b.dataset.status)"
    )
    assert buttons == next_statuses("acknowledged"), buttons
    post_report(base, 8.4050, 100.0170)  # zone Z2: not this team's map
    page.wait_for_timeout(700)
    assert page.evaluate("window.issuemap.lastEvent.id") == new_id
    screenshot(page, "zone-map")
    assert seen.errors == [], seen.errors
    assert seen.external == [], seen.external
    page.close()


def test_zone_map_heads_with_its_backlog_and_asks_before_ending_a_report(
    browser: Any, site: tuple[str, TinyCity, Keys], engine: Engine
) -> None:
    """The crew sees how much is overdue at once; "Reject" is a thumb away and asks first."""
    base, _, keys = site
    late = post_report(base, 8.4080, 100.0060)  # zone Z1
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET due_at = now() - interval '2 hours' WHERE id = :id"),
            {"id": late},
        )
        open_now, overdue_now = conn.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE due_at < now()) FROM reports "
                "WHERE zone_id = (SELECT id FROM zones WHERE code = 'Z1' AND retired_at IS NULL) "
                "AND status = ANY(:open)"
            ),
            {"open": list(OPEN_STATUSES)},
        ).one()
    page, seen = open_page(browser, f"{base}/maps/zone?zone=Z1&lang=en&key={keys.t1}", base, PHONE)
    backlog = page.locator(".im-backlog")
    assert backlog.inner_text() == f"{overdue_now} of {open_now} open reports are overdue."
    assert "im-late" in (backlog.get_attribute("class") or "")
    popup_text(page, 8.4080, 100.0060)
    boxes = page.evaluate(
        "Array.from(document.querySelectorAll('.leaflet-popup .im-actions button'))"
        ".map(b => [b.dataset.status, b.getBoundingClientRect().toJSON()])"
    )
    assert [status for status, _ in boxes] == next_statuses("open")
    for status, box in boxes:
        assert box["height"] >= 44 and box["width"] >= 44, (status, box)
    for (_, a), (_, b) in itertools.pairwise(boxes):
        apart = b["left"] - a["right"] if abs(a["top"] - b["top"]) < 1 else b["top"] - a["bottom"]
        assert apart >= 8, (a, b)
    screenshot(page, "zone-map-phone-actions")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click(".leaflet-popup .im-actions button[data-status=rejected]")
    page.wait_for_timeout(300)
    assert asked == ["Move this report to “Rejected”? The reporter is told."], asked
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM reports WHERE id = :id"), {"id": late})
        assert status.scalar_one() == "open", "a dismissed question changes nothing"
    page.once("dialog", lambda d: d.accept())
    page.click(".leaflet-popup .im-actions button[data-status=rejected]")
    wait_until(page, "document.querySelector('.leaflet-popup .im-actions') === null", timeout=3000)
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM reports WHERE id = :id"), {"id": late})
        assert status.scalar_one() == "rejected"
    assert seen.errors == [] and seen.external == [], seen
    page.close()


def test_a_report_hidden_while_the_public_map_is_open_is_gone_after_its_reload(
    browser: Any, site: tuple[str, TinyCity, Keys], engine: Engine
) -> None:
    """The public stream gets only a resync: the map asks, in its language, to be reloaded."""
    base, _, keys = site
    with engine.connect() as conn:
        hidden = conn.execute(
            text("SELECT id FROM reports WHERE description = :d"), {"d": OPEN[0][1]}
        ).scalar_one()
    query = "?lang=th&category=road&fixed_days=14"
    page, seen = open_page(browser, f"{base}/maps/public{query}", base, DESKTOP)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    assert page.evaluate(f"{hidden} in window.issuemap.reports")
    notice = page.locator("#im-live-notice")
    assert notice.get_attribute("role") == "status" and notice.inner_text() == ""
    wait_until(page, "window.issuemap.liveStatus === 'open'", timeout=5000)
    reason = "{{7*7}} {% raw %} <img src=x onerror=alert(1)>"
    answer = httpx.post(
        f"{base}/api/reports/{hidden}/hide",
        json={"reason": reason},
        headers={"X-API-Key": keys.planner},
    )
    assert answer.status_code == 200, answer.text
    wait_until(page, "document.querySelector('#im-live-notice button') !== null", timeout=5000)
    # The page's own words in Thai; nothing from the event, and the map is left as it was,
    # so a popup a resident is reading stays open.
    said = notice.inner_text()
    assert translate("th", LABELS["live_stale"]) in said, said
    assert "49" not in said and "img" not in said and "resync" not in said, said
    assert page.evaluate(f"{hidden} in window.issuemap.reports"), "no reload by itself"
    assert axe_violations(page) == []
    screenshot(page, "public-map-stale-notice")
    button = page.get_by_role("button", name=translate("th", LABELS["live_reload"]))
    button.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    wait_until(page, "window.issuemap && window.issuemap.reports !== undefined")
    assert page.url == f"{base}/maps/public{query}", "the reload keeps the filters and language"
    assert not page.evaluate(f"{hidden} in window.issuemap.reports")
    assert page.evaluate("Object.keys(window.issuemap.reports).length") == len(OPEN)
    assert page.locator("#im-live-notice").inner_text() == ""
    assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    assert dialogs == [] and seen.errors == [] and seen.external == [], (dialogs, seen)
    page.close()


def test_an_import_while_a_zone_map_is_open_offers_a_reload(
    browser: Any, site: tuple[str, TinyCity, Keys], engine: Engine
) -> None:
    """An import reaches an open map as one bulk event: the crew's map offers to reload."""
    base, city, keys = site
    page, seen = open_page(browser, f"{base}/maps/zone?zone=Z1&lang=en&key={keys.t1}", base)
    before = page.evaluate("Object.keys(window.issuemap.reports).length")
    wait_until(page, "window.issuemap.liveStatus === 'open'", timeout=5000)
    rows = pd.DataFrame(
        {
            "lon": [100.004] * (BULK_AFTER + 1),
            "lat": [8.404] * (BULK_AFTER + 1),
            "category_id": [city.categories["road"]] * (BULK_AFTER + 1),
            "created_at": [datetime.now(UTC)] * (BULK_AFTER + 1),
        }
    )
    with engine.begin() as conn:
        insert_reports(conn, rows, settings=RoutingSettings())
    wait_until(page, "document.querySelector('#im-live-notice button') !== null", timeout=5000)
    assert page.evaluate("window.issuemap.lastEvent.kind") == "bulk"
    assert "Reports on this map have changed" in page.locator("#im-live-notice").inner_text()
    with page.expect_navigation():
        page.get_by_role("button", name="Reload the map").click()
    wait_until(page, "window.issuemap && window.issuemap.reports !== undefined")
    assert "zone=Z1" in page.url and "lang=en" in page.url
    assert page.evaluate("Object.keys(window.issuemap.reports).length") > before
    assert seen.errors == [] and seen.external == [], seen
    page.close()


@pytest.mark.parametrize("measure", ["count", "sla", "median_hours"])
def test_ward_dashboard(browser: Any, site: tuple[str, TinyCity, Keys], measure: str) -> None:
    base, _, keys = site
    page, seen = open_page(browser, f"{base}/maps/wards?measure={measure}&key={keys.planner}", base)
    wards = page.evaluate("window.issuemap.wards ? window.issuemap.wards.getLayers().length : 0")
    assert wards == 2
    assert page.locator(".im-legend").count() >= 1
    screenshot(page, f"ward-dashboard-{measure}")
    assert seen.errors == [], seen.errors
    assert seen.external == [], seen.external
    page.close()


def test_city_overview(browser: Any, site: tuple[str, TinyCity, Keys]) -> None:
    base, _, _ = site
    page = browser.new_page(viewport={"width": 390, "height": 844})
    seen = watch(page, base)
    page.goto(f"{base}/", wait_until="load")
    page.wait_for_selector(".leaflet-container path", state="attached")
    assert page.locator(".leaflet-container path").count() >= 2, "wards and zones are drawn"
    screenshot(page, "city-overview")
    assert seen.errors == [], seen.errors
    assert seen.external == [], seen.external
    page.close()


def test_outside_requests_would_be_caught(browser: Any, site: tuple[str, TinyCity, Keys]) -> None:
    base, _, _ = site
    page = browser.new_page()
    seen = watch(page, base)
    page.set_content('<img src="https://cdn.example.org/x.png">')
    page.wait_for_timeout(200)
    assert seen.external == ["https://cdn.example.org/x.png"]
    page.close()


HOSTILE = "<img src=x onerror=alert(1)>"


def _hostile_layer(layer: str) -> bytes:
    """The tiny city's wards or zones, named with markup that runs if inserted as HTML."""
    from tests.fixtures import WARDS, ZONES

    shapes = WARDS if layer == "wards" else {code: wkt for code, (_, wkt) in ZONES.items()}
    features = []
    for code, wkt in shapes.items():
        ring = [
            [float(x) for x in pair.split()]
            for pair in wkt.removeprefix("POLYGON((").removesuffix("))").split(",")
        ]
        properties = {"ID": code, "NAME": f"{HOSTILE} {code}"}
        if layer == "zones":
            properties["CREW"] = f'<svg onload=alert("{code}")>'
        features.append(
            {
                "type": "Feature",
                "properties": properties,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def test_boundary_names_never_run_as_markup(browser: Any, site: tuple[str, TinyCity, Keys]) -> None:
    base, _, keys = site
    for layer in ("wards", "zones"):
        form = {"layer": layer, "id_field": "ID", "name_field": "NAME"}
        if layer == "zones":
            form["team_field"] = "CREW"
        answer = httpx.post(
            f"{base}/api/admin/boundaries",
            data=form,
            files={"file": (f"{layer}.geojson", _hostile_layer(layer), "application/geo+json")},
            headers={"X-API-Key": keys.admin},
            timeout=60,
        )
        assert answer.status_code == 201, answer.text
    for url in (f"{base}/maps/wards?measure=count&key={keys.planner}", f"{base}/"):
        page = browser.new_page(viewport={"width": 800, "height": 800})
        seen = watch(page, base)
        dialogs: list[str] = []
        page.on(
            "dialog", lambda d, seen_dialogs=dialogs: (seen_dialogs.append(d.message), d.dismiss())
        )
        page.goto(url, wait_until="load")
        wait_until(page, "document.querySelector('.leaflet-container') !== null")
        # Every polygon drawn (canvas or SVG), as a point inside it on the screen.
        points = page.evaluate(
            """() => {
                const map = Object.values(window).find((v) => v instanceof L.Map);
                const box = map.getContainer().getBoundingClientRect(), out = [];
                map.eachLayer((layer) => {
                    if (!layer.feature || !layer.getBounds) return;
                    const p = map.latLngToContainerPoint(layer.getBounds().getCenter());
                    out.push([box.left + p.x, box.top + p.y]);
                });
                return out;
            }"""
        )
        assert len(points) >= 2, f"{url} draws no polygons"
        tooltips = []
        for x, y in points:
            page.mouse.move(x - 5, y - 5)
            page.mouse.move(x, y, steps=5)
            with contextlib.suppress(PlaywrightTimeout):
                page.locator(".leaflet-tooltip").first.wait_for(state="attached", timeout=3000)
            tooltips.extend(page.locator(".leaflet-tooltip").all_inner_texts())
            page.mouse.click(x, y)
            page.wait_for_timeout(150)
        page.wait_for_timeout(300)
        assert dialogs == [], f"{url} ran script from a boundary file: {dialogs}"
        injected = page.evaluate("document.querySelectorAll('img[src=x], svg[onload]').length")
        assert injected == 0, f"{url} turned a boundary name into an element"
        assert any(HOSTILE in text for text in tooltips), (url, tooltips)
        assert not any(e for e in seen.errors if "Content Security Policy" in e), seen.errors
        assert seen.external == [], seen.external
        page.close()
