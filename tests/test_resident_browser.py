"""A resident reports a problem from a phone in a real headless Chromium (390×844).

The fields are filled with the keyboard alone (the photo is chosen as a phone's file picker
would hand it over), "use my location" fills the place, and the resident lands on the
report's status page. The map pin fills the same fields, and with JavaScript switched off
the form still files a report from a typed address. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from geo.i18n import translate
from geo.settings import DatabaseSettings, GeocoderSettings
from tests.browser import running, screenshot, wait_until, watch
from tests.fixtures import TINY_GAZETTEER, load_tiny_city

PHONE = {"width": 390, "height": 844}
HERE = {"latitude": 8.4043217, "longitude": 100.0067891}
"""Where the phone says it is: ward W-A, zone Z1 (team T1)."""


pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture


@pytest.fixture
def chromium(browser: Any) -> Any:
    """The session's Chromium: a second Playwright in one process refuses to start."""
    return browser


@pytest.fixture
def site(
    db_url: str, engine: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("ISSUEMAP_MAP_TILES_URL", "none")
    gazetteer = tmp_path / "gazetteer.csv"
    gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
    with engine.begin() as conn:
        load_tiny_city(conn)
    app = create_app(
        AppSettings(
            database=DatabaseSettings(database_url=db_url),
            geocoder=GeocoderSettings(gazetteer_path=gazetteer),
        )
    )
    with running(app) as base:
        yield base


def photo(tmp_path: Any) -> Any:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 110, 130)).save(out, format="JPEG")
    path = tmp_path / "pothole.jpg"
    path.write_bytes(out.getvalue())
    return path


def focused(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => {
                const e = document.activeElement, style = getComputedStyle(e);
                return {id: e.id, tag: e.tagName.toLowerCase(), name: e.name || "",
                        outline: style.outlineStyle, outlineWidth: style.outlineWidth,
                        shadow: style.boxShadow};
            }"""
        )
    )


def tab_to(page: Any, target: str, order: list[str], *, limit: int = 40) -> None:
    """Press Tab until the element with id ``target`` has the focus, noting each stop."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        order.append(now["id"] or now["tag"])
        if now["id"] == target:
            # The focus is always visible: a solid outline the stylesheet draws.
            assert now["outline"] == "solid" and now["outlineWidth"] != "0px", now
            return
    raise AssertionError(f"Tab never reached #{target}; stops: {order}")


def stored(engine: Engine, token: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT r.description, r.reporter_name, r.reporter_contact, r.language, "
                "ST_Y(r.geom) AS lat, ST_X(r.geom) AS lon, c.code AS category, "
                "(SELECT count(*) FROM report_photos p WHERE p.report_id = r.id) AS photos "
                "FROM reports r JOIN categories c ON c.id = r.category_id WHERE r.token = :t"
            ),
            {"t": token},
        ).one()


def test_a_resident_reports_with_the_keyboard_and_a_photo_and_lands_on_the_status_page(
    chromium: Any, site: str, engine: Engine, tmp_path: Any
) -> None:
    context = chromium.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        locale="th-TH",
        geolocation=HERE,
        permissions=["geolocation"],
    )
    page = context.new_page()
    seen = watch(page, site)
    page.goto(f"{site}/report", wait_until="load")
    wait_until(page, "window.L && !document.getElementById('map').hidden")
    assert page.evaluate("document.documentElement.lang") == "th"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways"
    screenshot(page, "resident-report-form-top-phone")

    order: list[str] = []
    tab_to(page, "category", order)
    while page.evaluate("document.getElementById('category').value") != "road":
        page.keyboard.press("ArrowDown")
    tab_to(page, "description", order)
    page.keyboard.type("หลุมลึกกลางถนน รถจักรยานยนต์ล้มแล้วสองคัน")
    tab_to(page, "photo", order)
    # A phone's camera or gallery hands the file over; no keyboard can pick one in a dialog.
    page.set_input_files("#photo", str(photo(tmp_path)))
    tab_to(page, "locate", order)
    page.keyboard.press("Enter")
    wait_until(page, "document.getElementById('lat').value !== ''")
    assert page.input_value("#lat") == f"{HERE['latitude']:.6f}"
    assert page.input_value("#lon") == f"{HERE['longitude']:.6f}"
    assert page.text_content("#locate-status") == translate(
        "th", "Your location is filled in below."
    )
    wait_until(page, "document.querySelector('.leaflet-marker-icon') !== null")
    tab_to(page, "reporter_name", order)
    page.keyboard.type("สมหญิง")
    tab_to(page, "reporter_contact", order)
    page.keyboard.type("somying@example.org")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    screenshot(page, "resident-report-form-phone")
    # The focus follows the form from top to bottom.
    stops = [
        s
        for s in order
        if s
        in (
            "category",
            "description",
            "photo",
            "locate",
            "lat",
            "lon",
            "address",
            "reporter_name",
            "reporter_contact",
        )
    ]
    assert stops == [
        "category",
        "description",
        "photo",
        "locate",
        "lat",
        "lon",
        "address",
        "reporter_name",
        "reporter_contact",
    ], order

    with page.expect_navigation():
        page.keyboard.press("Enter")
    match = re.fullmatch(rf"{re.escape(site)}/r/([A-Za-z0-9_-]{{24}})\?new=1&lang=th", page.url)
    assert match, page.url
    body = page.text_content("main") or ""
    assert translate("th", "Thank you: your report has been sent.") in body
    assert "ถนน" in body and translate("th", "Open") in body
    assert "สมหญิง" not in body and "somying" not in body
    # The photo is served back (without its EXIF) from our own origin.
    wait_until(page, "document.querySelector('.photos img').naturalWidth > 0")
    screenshot(page, "resident-status-page-phone")
    report = stored(engine, match.group(1))
    assert (report.category, report.photos, report.language) == ("road", 1, "th")
    assert report.description.startswith("หลุมลึก")
    assert (report.reporter_name, report.reporter_contact) == ("สมหญิง", "somying@example.org")
    assert (round(report.lat, 6), round(report.lon, 6)) == (
        round(HERE["latitude"], 6),
        round(HERE["longitude"], 6),
    )
    assert seen.errors == [] and seen.external == []
    context.close()


def test_a_pin_on_the_map_fills_the_place(chromium: Any, site: str, engine: Engine) -> None:
    page = chromium.new_page(viewport=PHONE, locale="en-GB")
    seen = watch(page, site)
    page.goto(f"{site}/report", wait_until="load")
    wait_until(page, "window.L && !document.getElementById('map').hidden")
    assert page.evaluate("document.documentElement.lang") == "en"
    box = page.locator("#map").bounding_box()
    page.locator("#map").click(position={"x": box["width"] / 3, "y": box["height"] / 2})
    wait_until(page, "document.getElementById('lat').value !== ''")
    lat, lon = float(page.input_value("#lat")), float(page.input_value("#lon"))
    assert 8.40 < lat < 8.41 and 100.0 < lon < 100.02, "inside the city the map opened on"
    page.select_option("#category", "road")
    page.fill("#description", "Broken street light")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert re.search(r"/r/[A-Za-z0-9_-]{24}\?new=1&lang=en$", page.url), page.url
    token = page.url.split("/r/")[1].split("?")[0]
    report = stored(engine, token)
    assert (round(report.lat, 6), round(report.lon, 6)) == (round(lat, 6), round(lon, 6))
    assert seen.errors == [] and seen.external == []
    page.close()


def test_without_javascript_a_typed_address_files_the_report(
    chromium: Any, site: str, engine: Engine
) -> None:
    context = chromium.new_context(viewport=PHONE, java_script_enabled=False, locale="th-TH")
    page = context.new_page()
    page.goto(f"{site}/report", wait_until="load")
    assert page.locator("#map").is_hidden() and page.locator("#locate").is_hidden()
    page.select_option("#category", "road")
    # A problem first: the form comes back with the input kept and the message beside it.
    page.fill("#description", "ไฟถนนดับ")
    page.fill("#address", "ไม่มีที่นี่แน่นอน")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.get_attribute("#address", "aria-invalid") == "true"
    assert page.input_value("#description") == "ไฟถนนดับ"
    said = page.text_content("#address-error") or ""
    assert re.search(r"[\u0e00-\u0e7f]", said) and "could not" not in said, said
    screenshot(page, "resident-report-form-problem-no-js")
    page.fill("#address", "ตลาดทดสอบ")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert re.search(r"/r/[A-Za-z0-9_-]{24}\?new=1&lang=th$", page.url), page.url
    report = stored(engine, page.url.split("/r/")[1].split("?")[0])
    assert (report.description, report.lat, report.lon) == ("ไฟถนนดับ", 8.405, 100.015)
    context.close()


def test_a_resident_told_of_a_report_nearby_adds_their_support_instead(
    chromium: Any, site: str, engine: Engine
) -> None:
    import httpx

    earlier = httpx.post(
        f"{site}/api/reports",
        json={"category": "road", "description": "หลุมใหญ่", "lat": 8.40435, "lon": 100.00680},
    ).json()
    page = chromium.new_page(viewport=PHONE, locale="th-TH")
    seen = watch(page, site)
    page.goto(f"{site}/report", wait_until="load")
    page.select_option("#category", "road")
    page.fill("#description", "หลุมตรงหน้าร้านกาแฟ")
    page.fill("#lat", "8.404322")
    page.fill("#lon", "100.006789")
    with page.expect_navigation():
        page.click("button[type=submit]")
    section = page.text_content(".nearby") or ""
    assert translate("th", "Already reported nearby — add your support?") in section
    assert translate("th", "Report {number}", number=earlier["id"]) in section
    screenshot(page, "resident-status-page-nearby-phone")
    button = page.get_by_role(
        "button", name=translate("th", "Add my support to report {number}", number=earlier["id"])
    )
    button.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    body = page.text_content("main") or ""
    assert translate("th", "Duplicate") in body
    assert str(earlier["id"]) in body and page.locator(".nearby").count() == 0
    original = httpx.get(f"{site}/api/reports/{earlier['id']}").json()
    assert original["supporters"] == 1
    screenshot(page, "resident-status-page-supported-phone")
    assert seen.errors == [] and seen.external == []
    page.close()
