"""Accessibility of the resident-facing pages, checked with axe-core in a real Chromium.

axe-core (npm, vendored by ``scripts/vendor_assets.sh`` for these tests only) runs inside
each page as served, nonce CSP and all, on a phone and a desktop screen, in Thai and in
English. A page passes with no serious or critical violation. Pages are checked in the
state a visitor meets them and after the visitor has opened what there is to open (the
map's panel, a marker's popup).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from geo.settings import DatabaseSettings
from tests.browser import axe_violations, running, screenshot, wait_until, watch
from tests.fixtures import load_tiny_city, make_keys

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture

SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
REPORTS = [
    ("road", "หลุมใหญ่กลางถนน", 8.4025, 100.003),
    ("road", "ฝาท่อหาย", 8.4075, 100.008),
    ("tree", "กิ่งไม้หัก", 8.4050, 100.016),
]


def _report(base: str, category: str, description: str, lat: float, lon: float) -> dict[str, Any]:
    answer = httpx.post(
        f"{base}/api/reports",
        json={"category": category, "description": description, "lat": lat, "lon": lon},
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def served(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """A served app with open, overdue and fixed reports; (base URL, a fixed report's token)."""
    monkeypatch.setenv("ISSUEMAP_MAP_TILES_URL", "none")
    with engine.begin() as conn:
        load_tiny_city(conn)
        keys = make_keys(conn)
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    with running(app) as base:
        made = [_report(base, *r) for r in REPORTS]
        fixed = made[0]["id"]
        # Its status page has a timeline: a public note on each change.
        for status in ("resolved", "closed"):
            answer = httpx.post(
                f"{base}/api/reports/{fixed}/status",
                json={"status": status, "public_note": "ปะผิวถนนเรียบร้อยแล้ว"},
                headers={"X-API-Key": keys.t1},
            )
            assert answer.status_code == 200, answer.text
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE reports SET due_at = now() - interval '1 day' WHERE id = :id"),
                {"id": made[1]["id"]},
            )
            token = conn.execute(
                text("SELECT token FROM reports WHERE id = :id"), {"id": fixed}
            ).scalar_one()
        # The API's answer names the status page (tracking_url) by the same token.
        assert made[0]["tracking_url"].endswith(f"/r/{token}")
        yield base, token


def _check(page: Any, name: str) -> None:
    violations = axe_violations(page)
    screenshot(page, f"a11y-{name}")
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("lang", ["th", "en"])
def test_public_map_has_no_serious_violations(
    browser: Any, served: tuple[str, str], lang: str, size: str
) -> None:
    base, _ = served
    page = browser.new_page(viewport=SIZES[size])
    seen = watch(page, base)
    page.goto(f"{base}/maps/public?lang={lang}", wait_until="domcontentloaded")
    wait_until(page, "window.issuemap && window.issuemap.map !== undefined")
    _check(page, f"public-map-{lang}-{size}")
    # Opened: the panel unfolded and a marker's popup showing.
    page.evaluate("document.querySelector('#im-panel details').open = true")
    page.evaluate(
        """() => {
            const m = Object.values(window.issuemap.reports)[0], map = window.issuemap.map;
            map.setView(m.getLatLng(), map.getMaxZoom(), {animate: false});
        }"""
    )
    wait_until(page, "Object.values(window.issuemap.reports).some((m) => m._map)")
    page.evaluate("Object.values(window.issuemap.reports).find((m) => m._map).fire('click')")
    page.wait_for_selector(".leaflet-popup-content")
    # Checked once faded in: mid-fade its text is paler than it will be.
    wait_until(page, "getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'")
    _check(page, f"public-map-{lang}-{size}-opened")
    assert seen.errors == [], seen.errors
    page.close()


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("lang", ["th", "en"])
def test_list_view_has_no_serious_violations(
    browser: Any, served: tuple[str, str], lang: str, size: str
) -> None:
    base, _ = served
    page = browser.new_page(viewport=SIZES[size])
    seen = watch(page, base)
    page.goto(f"{base}/maps/public?view=list&lang={lang}", wait_until="load")
    page.wait_for_selector("table#im-list")
    _check(page, f"public-list-{lang}-{size}")
    assert seen.errors == [], seen.errors
    page.close()


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("lang", ["th", "en"])
def test_report_form_has_no_serious_violations(
    browser: Any, served: tuple[str, str], lang: str, size: str
) -> None:
    base, _ = served
    page = browser.new_page(viewport=SIZES[size])
    seen = watch(page, base)
    page.goto(f"{base}/report?lang={lang}", wait_until="load")
    page.wait_for_selector("form")
    assert page.evaluate("document.documentElement.lang") == lang
    _check(page, f"report-form-{lang}-{size}")
    # Sent empty (past the browser's own checks): the server's answer, the form again with a
    # message beside each field that needs one.
    page.evaluate("document.getElementById('report-form').noValidate = true")
    with page.expect_navigation(wait_until="load"):
        page.locator("#report-form button[type=submit]").click()
    assert page.locator("#report-form").count() == 1
    _check(page, f"report-form-{lang}-{size}-errors")
    assert seen.external == [], seen.external
    page.close()


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("lang", ["th", "en"])
def test_status_page_has_no_serious_violations(
    browser: Any, served: tuple[str, str], lang: str, size: str
) -> None:
    base, token = served
    page = browser.new_page(viewport=SIZES[size])
    seen = watch(page, base)
    page.goto(f"{base}/r/{token}?lang={lang}", wait_until="load")
    assert page.evaluate("document.documentElement.lang") == lang
    assert "ปะผิวถนนเรียบร้อยแล้ว" in page.inner_text("body"), "the public note is shown"
    _check(page, f"status-page-{lang}-{size}")
    assert seen.errors == [] and seen.external == [], seen
    page.close()


def test_pages_never_load_axe(served: tuple[str, str]) -> None:
    """axe-core is vendored for these tests only: no page refers to it."""
    base, token = served
    for path in ("/maps/public", "/maps/public?view=list", "/report", f"/r/{token}", "/"):
        page = httpx.get(base + path)
        assert page.status_code == 200, path
        # Any way of loading it names its file or calls it; a bare "axe" may be in a random
        # token or nonce of the page.
        assert not re.search(r"axe[-.](core|min|run)", page.text, re.IGNORECASE), path
