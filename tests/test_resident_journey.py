"""A resident's whole journey in a real headless Chromium, from the report to the fixed work.

On a phone (390×844, Thai) a resident files a report through ``/report`` with a photo, the
phone's location and an e-mail address, and lands on its status page. A field team resolves it
through the staff API with a public note and an after-photo. The reloaded status page shows
both; ``issuemap deliver --once`` hands the Thai e-mail to a real SMTP server (aiosmtpd), and
its link opens the same page; the public map and its list view show the report as fixed work
with its time to fix, and the popup leads to the status page. The resident's name and address
appear on none of the public pages. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from geo.i18n import translate
from geo.maps.resident import when
from geo.settings import DatabaseSettings
from tests.browser import running, screenshot, wait_until, watch
from tests.fixtures import Keys, load_tiny_city, make_keys
from tests.test_notifications import Mailbox, body_of, make_due

pytestmark = pytest.mark.long_running

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture

ISSUEMAP = Path(sys.executable).parent / "issuemap"
"""The installed command, beside the interpreter running the tests."""
PHONE = {"width": 390, "height": 844}
HERE = {"latitude": 8.4043217, "longitude": 100.0067891}
"""Where the phone says it is: ward W-A, zone Z1, so team T1 gets the report."""
TEAM_TH, TEAM_EN = "ทีมซ่อมถนนเขตหนึ่ง", "Road crew one"
NAME, CONTACT = "สมหญิง ใจดี", "somying.private@example.org"
DESCRIPTION = "หลุมลึกกลางถนนหน้าตลาด รถจักรยานยนต์ล้มแล้วสองคัน"
# Template- and HTML-looking text: it must arrive everywhere exactly as the team typed it.
STAFF_NOTE = "staff only: used 2 bags of asphalt"
NOTE = "ซ่อมแล้ว {{7*7}} {% raw %} <b>x</b> <img src=x onerror=alert(1)>"


@dataclass(frozen=True)
class Site:
    """The running service, its staff keys and the mail server it sends through."""

    base: str
    keys: Keys
    mailbox: Mailbox


@pytest.fixture
def site(db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("ISSUEMAP_MAP_TILES_URL", "none")
    with engine.begin() as conn:
        load_tiny_city(conn)
        keys = make_keys(conn)
        conn.execute(
            text("UPDATE teams SET name_th = :th, name_en = :en WHERE code = 'T1'"),
            {"th": TEAM_TH, "en": TEAM_EN},
        )
    mailbox = Mailbox()
    mailbox.start()
    # Read when a status change queues its mail and when the worker delivers it.
    monkeypatch.setenv("ISSUEMAP_SMTP_URL", mailbox.url)
    monkeypatch.setenv("ISSUEMAP_MAIL_FROM", "เทศบาลทดสอบ <noreply@city.example>")
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    try:
        with running(app) as base:
            # The links in the mail lead back to this very server.
            monkeypatch.setenv("ISSUEMAP_PUBLIC_URL", base)
            yield Site(base=base, keys=keys, mailbox=mailbox)
    finally:
        mailbox.stop()


def jpeg(path: Any, colour: tuple[int, int, int]) -> Any:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), colour).save(out, format="JPEG")
    path.write_bytes(out.getvalue())
    return path


def stored(engine: Engine, token: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT id, status, due_at, resolved_at, reporter_name, reporter_contact, "
                "language FROM reports WHERE token = :t"
            ),
            {"t": token},
        ).one()


def th(message: str, **values: object) -> str:
    """``message`` as the Thai catalog has it: the resident reported in Thai."""
    return translate("th", message, **values)


def private_details_absent(html: str) -> None:
    """No part of the reporter's name or address, nor the team's own note, is on a public page."""
    for secret in (NAME, "สมหญิง", CONTACT, "somying", STAFF_NOTE):
        assert secret not in html, f"{secret!r} reached a public page"


def no_markup_ran(page: Any) -> None:
    """The note's HTML stayed text: no element was made of it."""
    made = page.evaluate(
        """() => document.querySelectorAll('img[src=x]').length
            + [...document.querySelectorAll('b')].filter((b) => b.textContent === 'x').length"""
    )
    assert made == 0


def test_a_resident_reports_staff_fix_it_and_everyone_sees_the_fixed_work(
    browser: Any, site: Site, engine: Engine, tmp_path: Any
) -> None:
    base = site.base
    context = browser.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        locale="th-TH",
        geolocation=HERE,
        permissions=["geolocation"],
    )
    page = context.new_page()
    seen = watch(page, base)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # 1. The resident files the report from the phone and lands on its status page.
    page.goto(f"{base}/report", wait_until="load")
    wait_until(page, "window.L && !document.getElementById('locate').hidden")
    assert page.evaluate("document.documentElement.lang") == "th"
    page.select_option("#category", "road")
    page.fill("#description", DESCRIPTION)
    page.set_input_files("#photo", str(jpeg(tmp_path / "pothole.jpg", (90, 110, 130))))
    page.click("#locate")
    wait_until(page, "document.getElementById('lat').value !== ''")
    assert page.input_value("#lat") == f"{HERE['latitude']:.6f}"
    assert page.input_value("#lon") == f"{HERE['longitude']:.6f}"
    page.fill("#reporter_name", NAME)
    page.fill("#reporter_contact", CONTACT)
    screenshot(page, "journey-1-report-form-phone")
    with page.expect_navigation():
        page.click("button[type=submit]")
    match = re.fullmatch(rf"{re.escape(base)}/r/([A-Za-z0-9_-]{{24}})\?new=1&lang=th", page.url)
    assert match, page.url
    token = match.group(1)
    report = stored(engine, token)
    assert (report.status, report.language) == ("open", "th")
    assert (report.reporter_name, report.reporter_contact) == (NAME, CONTACT)
    number = report.id

    main = page.text_content("main") or ""
    assert th("Thank you: your report has been sent.") in main
    assert page.text_content("h1") == "ถนน"
    assert page.text_content(".status strong") == th("Open") != "Open"
    facts = page.inner_text("dl.facts")
    assert TEAM_TH in facts and TEAM_EN not in facts
    due = when(report.due_at, "th")
    assert f"{th('Due')}\n{due}" in facts, facts
    assert DESCRIPTION in main
    wait_until(page, "document.querySelector('.photos img').naturalWidth > 0")
    private_details_absent(page.content())
    screenshot(page, "journey-2-status-page-open-phone")

    # 2. The field team resolves it, with a public note and an after-photo.
    after = jpeg(tmp_path / "after.jpg", (40, 160, 60))
    resolved = httpx.post(
        f"{base}/api/reports/{number}/status",
        data={"status": "resolved", "public_note": NOTE, "note": STAFF_NOTE},
        files={"photo": ("after.jpg", after.read_bytes(), "image/jpeg")},
        headers={"X-API-Key": site.keys.t1},
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    [after_photo] = resolved.json()["photo_ids"]

    # 3. The reloaded status page shows the new status in words, the note and the photo.
    page.goto(f"{base}/r/{token}", wait_until="load")
    assert page.text_content(".status strong") == th("Resolved") != "Resolved"
    fixed_at = when(stored(engine, token).resolved_at, "th")
    assert f"{th('Resolved')}\n{fixed_at}" in page.inner_text("dl.facts")
    last = page.locator("ol.timeline > li").last
    assert th("Status changed to: {status}", status=th("Resolved")) in (last.text_content() or "")
    assert last.locator(".note").text_content() == NOTE
    image = last.locator(f".photos img[src='/api/photos/{after_photo}']")
    assert image.get_attribute("alt") == th("Photo from the team after the work")
    image.scroll_into_view_if_needed()  # loading=lazy: it loads once it comes into view
    wait_until(
        page,
        f"document.querySelector(\".timeline img[src='/api/photos/{after_photo}']\")"
        ".naturalWidth > 0",
    )
    no_markup_ran(page)
    private_details_absent(page.content())
    screenshot(page, "journey-3-status-page-resolved-phone")

    # 4. The worker mails the resident in Thai; the mail's link opens the same page. The
    # worker is the command an operator runs, a process of its own reading the environment.
    make_due(engine)  # as if the minute in which resolving may be undone had passed
    delivered = subprocess.run(
        [str(ISSUEMAP), "deliver", "--once"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert delivered.returncode == 0, delivered.stdout + delivered.stderr
    assert "delivered 1, will retry 0, gave up on 0" in delivered.stdout
    [mail] = site.mailbox.messages
    assert site.mailbox.recipients == [[CONTACT]]
    # The words are Thai, and the text part says so (the attachment made the mail multipart).
    assert mail.get_body(preferencelist=("plain",))["Content-Language"] == "th"
    assert mail["Subject"] == th("Your report #{id}: {status}", id=number, status=th("Resolved"))
    body = body_of(mail)
    assert (
        th(
            "Your report #{id} ({category}) is now: {status}.",
            id=number,
            category="ถนน",
            status=th("Resolved"),
        )
        in body
    )
    assert f"{th('Message from the city:')}\n{NOTE}\n" in body, body
    assert STAFF_NOTE not in body and NAME not in body
    link = f"{base}/r/{token}"
    assert f"\n{link}\n" in body
    assert f"{base}/api/photos/{after_photo}" in body
    # The after-photo is attached as the public copy the link serves.
    [attached] = list(mail.iter_attachments())
    served = httpx.get(f"{base}/api/photos/{after_photo}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert attached.get_content_type() == "image/jpeg"
    assert attached.get_content() == served.content
    page.goto(link, wait_until="load")
    assert page.evaluate("document.documentElement.lang") == "th"
    assert page.text_content(".status strong") == th("Resolved")
    assert page.locator(".timeline .note").last.text_content() == NOTE

    # 5. The public map shows it as fixed work, and its popup leads to the status page.
    page.goto(f"{base}/maps/public", wait_until="load")
    wait_until(
        page, f"window.issuemap && window.issuemap.reports && window.issuemap.reports[{number}]"
    )
    assert page.evaluate("document.documentElement.lang") == "th"
    assert page.evaluate(f"window.issuemap.reports[{number}].row[4]") == "resolved"
    # At the marker's own zoom no cluster hides it; the popup opens as a tap would open it.
    page.evaluate(
        """(id) => {
            const marker = window.issuemap.reports[id];
            window.issuemap.markers.zoomToShowLayer(marker, () => marker.fire('click'));
        }""",
        number,
    )
    wait_until(page, "document.querySelector('.leaflet-popup-content .im-popup') !== null")
    # Leaflet fades a popup in; the screenshot waits until it is fully shown.
    wait_until(page, "getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'")
    popup = page.inner_text(".leaflet-popup-content")
    assert popup.startswith(f"#{number} ถนน\n{th('Resolved')}"), popup
    assert f"{th('Fixed in')}: 0{th('h')}" in popup, popup
    assert f"{th('Latest update')}: {NOTE}" in popup, popup
    assert th("Due") not in popup, "fixed work shows its time to fix, not a due time"
    title = page.evaluate(f"window.issuemap.reports[{number}].getElement().title")
    assert title == f"#{number} ถนน: {th('Resolved')}"
    no_markup_ran(page)
    private_details_absent(page.content())
    screenshot(page, "journey-4-public-map-fixed-popup-phone")
    status_link = page.locator(".leaflet-popup-content a.im-status-link")
    assert status_link.inner_text() == th("Report status page")
    with page.expect_navigation():
        status_link.click()
    assert page.url == f"{base}/r/{token}?lang=th"
    assert page.text_content(".status strong") == th("Resolved")

    # The list view: the same report as a table row, fixed, with its time to fix.
    page.goto(f"{base}/maps/public?view=list&lang=th", wait_until="load")
    row = page.locator(f"table#im-list tr[data-id='{number}']")
    assert row.get_attribute("data-status") == "resolved"
    cells = [c.strip() for c in row.locator("th, td").all_text_contents()]
    assert cells[0] == str(number) and cells[1] == "ถนน"
    assert cells[2].endswith(th("Resolved")), cells
    assert cells[4] == "", "fixed work has no due time left"
    assert cells[5] == f"0{th('h')}", cells
    assert cells[6] == NOTE
    assert row.locator("a").get_attribute("href") == f"/r/{token}?lang=th"
    no_markup_ran(page)
    private_details_absent(page.content())
    screenshot(page, "journey-5-public-list-phone")

    # Nothing public about the report names the resident either: not the API, not Open311.
    for path in (f"/api/reports/{number}", f"/open311/v2/requests/{number}.json"):
        answer = httpx.get(f"{base}{path}")
        assert answer.status_code == 200, answer.text
        private_details_absent(answer.text)
    assert dialogs == [] and seen.errors == [] and seen.external == [], (dialogs, seen)
    context.close()
