"""The crew work view in a real headless Chromium on a phone-sized screen.

A crew member signs in at /login, sees the overdue count, resolves a report with an
after-photo from the "camera" (a file input), rejects one and undoes the rejection; a
colleague's change in another session changes the first page's item and marker in place,
and a re-route that takes the team's zone away takes its work off the page.
Screenshots go to test-artifacts/, and axe-core checks the page in its list and map views.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from geo.access.policy import Principal
from geo.i18n import translate
from geo.reports.store import reroute_reports
from geo.reports.workflow import change_status, next_statuses
from geo.settings import DatabaseSettings, RoutingSettings
from geo.vocabulary import STATUS_NAMES
from tests.browser import axe_violations, running, screenshot, wait_until, watch
from tests.fixtures import load_tiny_city
from tests.test_login import PASSWORD, add_user

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture

PHONE = {"width": 390, "height": 844}
ATTACK = "ฝาท่อหาย {{7*7}} <img src=x onerror=alert(1)>"


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 110, 130)).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def site(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, list[int]]]:
    """A served app with three open reports of team T1, the second one overdue."""
    monkeypatch.setenv("ISSUEMAP_MAP_TILES_URL", "none")
    with engine.begin() as conn:
        load_tiny_city(conn)
    add_user(engine, "crew.one@city.example", "field_team", "T1", name="Somchai")
    add_user(engine, "crew.mate@city.example", "field_team", "T1", name="Somsri")
    add_user(engine, "planner@city.example", "planner", name="Malee")
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    with running(app) as base:
        made = []
        for description, lat, lon in (
            ("หลุมใหญ่กลางถนน", 8.4025, 100.003),
            (ATTACK, 8.4075, 100.008),
            ("ถนนทรุด", 8.4050, 100.006),
        ):
            answer = httpx.post(
                f"{base}/api/reports",
                data={"category": "road", "description": description, "lat": lat, "lon": lon},
                files={"photo": ("before.jpg", jpeg(), "image/jpeg")},
            )
            assert answer.status_code == 201, answer.text
            made.append(int(answer.json()["id"]))
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE reports SET due_at = now() - interval '3 hours' WHERE id = :id"),
                {"id": made[1]},
            )
        yield base, made


def signed_in(
    browser: Any, base: str, email: str, *, viewport: dict[str, int] = PHONE, locale: str = "th-TH"
) -> tuple[Any, Any]:
    """A page of a new browser session, signed in through the form it is sent to at /work."""
    context = browser.new_context(viewport=viewport, locale=locale)
    page = context.new_page()
    seen = watch(page, base)
    page.goto(f"{base}/work", wait_until="domcontentloaded")
    assert page.url == f"{base}/login?next=%2Fwork", "no session: the sign-in form"
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/work")
    return page, seen


def status_of(engine: Engine, report: int) -> str:
    return str(db_value(engine, "SELECT status FROM reports WHERE id = :id", report))


def db_value(engine: Engine, sql: str, report: int) -> Any:
    """The one value ``sql`` reads about ``report`` (its ``:id``)."""
    with engine.connect() as conn:
        return conn.execute(text(sql), {"id": report}).scalar_one()


def item_count(page: Any, report: int) -> int:
    return int(page.evaluate(f"document.querySelectorAll('#report-{report}').length"))


def buttons(page: Any, report: int) -> list[str]:
    return list(
        page.evaluate(
            f"Array.from(document.querySelectorAll('#report-{report} .moves button.move'))"
            ".map(b => b.dataset.status)"
        )
    )


def test_a_crew_member_works_the_queue_on_a_phone(
    browser: Any, site: tuple[str, list[int]], engine: Engine
) -> None:
    base, (first, late, third) = site
    long_text = "ถนนทรุดเป็นแนวยาว รถจักรยานยนต์ล้มไปแล้วสองคัน " * 20 + "ท้ายเรื่อง"
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET description = :d WHERE id = :id"),
            {"d": long_text, "id": third},
        )
    page, seen = signed_in(browser, base, "crew.one@city.example")
    wait_until(page, "window.issuemap && window.issuemap.work && window.issuemap.map")

    # The overdue count on top, the overdue report first.
    count = translate("th", "Overdue: {overdue} of {open} open reports", overdue=1, open=3)
    assert page.inner_text("#overdue-count") == count
    order = page.evaluate(
        "Array.from(document.querySelectorAll('#work-list > li')).map(li => +li.dataset.id)"
    )
    assert order == [late, first, third]
    # Attack text is shown as the text it is.
    assert ATTACK in page.inner_text(f"#report-{late} .text")
    assert page.evaluate("document.querySelectorAll('#work-list img[src=x]').length") == 0
    # A long description comes cut short; the rest is read when asked for.
    assert "ท้ายเรื่อง" not in page.inner_text(f"#report-{third} .text")
    assert page.inner_text(f"#report-{third} .text").endswith("…")
    page.click(f"#report-{third} button.read-all")
    wait_until(
        page, f"document.querySelector('#report-{third} .text').textContent.endsWith('ท้ายเรื่อง')"
    )
    assert page.inner_text(f"#report-{third} .text") == long_text
    assert page.evaluate("document.activeElement.classList.contains('text')")
    assert item_count(page, third) == 1
    # The resident's photos, and the way there.
    assert page.evaluate(f"document.querySelectorAll('#report-{first} .photos img').length") == 1
    geo = page.get_attribute(f"#report-{first} a.geo-link", "href")
    assert geo == "geo:8.402500,100.003000"
    maps = page.get_attribute(f"#report-{first} a.maps-link", "href")
    assert maps == ("https://www.google.com/maps/dir/?api=1&destination=8.402500%2C100.003000")
    # Buttons are at least 44 px each way and at least 8 px apart.
    boxes = page.evaluate(
        f"""Array.from(document.querySelectorAll('#report-{first} .moves button'))
              .map(b => b.getBoundingClientRect().toJSON())"""
    )
    assert len(boxes) >= 4
    for box in boxes:
        assert box["width"] >= 44 and box["height"] >= 44, box
    for one, two in itertools.pairwise(boxes):
        if abs(one["top"] - two["top"]) < 1:  # side by side
            assert two["left"] - one["right"] >= 8, (one, two)
        else:
            assert two["top"] - one["bottom"] >= 8, (one, two)  # the next row
    screenshot(page, "work-list-phone")
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)

    # Resolve the first report with a note for the reporter and an after-photo.
    page.click(f"#report-{first} details.more summary")
    page.fill(f"#public_note-{first}", "ปะผิวถนนแล้ว {{7*7}}")
    page.set_input_files(
        f"#photo-{first}", files=[{"name": "after.jpg", "mimeType": "image/jpeg", "buffer": jpeg()}]
    )
    page.click(f"#report-{first} .moves button[data-status=resolved]")
    page.wait_for_selector("#confirm-dialog[open]")
    resolved_words = translate("th", STATUS_NAMES["resolved"])
    assert resolved_words in page.inner_text("#confirm-text")
    screenshot(page, "work-confirm-resolve-phone")
    page.click("#confirm-yes")
    wait_until(page, f"document.querySelector('#report-{first}').dataset.status === 'resolved'")
    assert buttons(page, first) == [], "an ended report offers no more moves"
    assert status_of(engine, first) == "resolved"
    photo_note = db_value(
        engine,
        "SELECT e.public_note FROM report_photos AS p JOIN report_events AS e "
        "ON e.id = p.event_id WHERE p.report_id = :id AND e.to_status = 'resolved'",
        first,
    )
    assert photo_note == "ปะผิวถนนแล้ว {{7*7}}"

    # Reject the third, then take it back from the toast.
    page.click(f"#report-{third} .moves button[data-status=rejected]")
    page.wait_for_selector("#confirm-dialog[open]")
    page.click("#confirm-yes")
    page.wait_for_selector("#toast.shown button.undo")
    wait_until(page, f"document.querySelector('#report-{third}').dataset.status === 'rejected'")
    assert status_of(engine, third) == "rejected"
    screenshot(page, "work-undo-toast-phone")
    page.click("#toast button.undo")
    wait_until(page, f"document.querySelector('#report-{third}').dataset.status === 'open'")
    assert status_of(engine, third) == "open"
    assert buttons(page, third) == next_statuses("open")
    assert item_count(page, third) == 1

    # The map shows the same reports; choosing a marker marks its item in the list.
    page.click("#tab-map")
    wait_until(page, "!document.getElementById('map-panel').hidden")
    assert page.evaluate("window.issuemap.markers.getLayers().length") == 3
    page.evaluate(f"window.issuemap.work[{late}].marker.fire('click')")
    wait_until(page, f"document.querySelector('#report-{late}').classList.contains('selected')")
    # Leaflet fades a popup in: check it once it is fully shown.
    wait_until(page, "getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'")
    screenshot(page, "work-map-phone")
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)
    # And an item's "show on the map" marks its marker.
    page.click("#tab-list")
    page.click(f"#report-{third} button.on-map")
    wait_until(
        page,
        f"window.issuemap.work[{third}].marker.getElement()"
        ".querySelector('.pin').classList.contains('selected')",
    )
    assert seen.errors == [] and seen.external == [], (seen.errors, seen.external)
    page.context.close()


def test_a_colleagues_change_updates_the_item_and_marker_in_place(
    browser: Any, site: tuple[str, list[int]], engine: Engine
) -> None:
    base, (first, late, third) = site
    page, seen = signed_in(browser, base, "crew.one@city.example")
    wait_until(page, "window.issuemap && window.issuemap.liveStatus === 'open'")
    mate, mate_seen = signed_in(browser, base, "crew.mate@city.example")
    wait_until(mate, "window.issuemap && window.issuemap.work && window.issuemap.map")

    mate.click(f"#report-{first} details.more summary")
    mate.fill(f"#note-{first}", "ต้องใช้รถเกรด")
    mate.click(f"#report-{first} .moves button[data-status=in_progress]")
    wait_until(mate, f"document.querySelector('#report-{first}').dataset.status === 'in_progress'")
    # The note went with that move; once its answer is in, the next one starts empty.
    mate.wait_for_selector("#toast.shown button.undo")
    assert mate.input_value(f"#note-{first}") == ""
    note = "SELECT note FROM report_events WHERE report_id = :id AND to_status = 'in_progress'"
    assert db_value(engine, note, first) == "ต้องใช้รถเกรด"
    # The first session's item changes where it is: one item, its buttons, Thai words.
    wait_until(page, f"document.querySelector('#report-{first}').dataset.status === 'in_progress'")
    assert item_count(page, first) == 1
    assert buttons(page, first) == next_statuses("in_progress")
    words = translate("th", STATUS_NAMES["in_progress"])
    assert words in page.inner_text(f"#report-{first} .badges")
    assert page.evaluate("window.issuemap.markers.getLayers().length") == 3
    title = page.evaluate(f"window.issuemap.work[{first}].marker.getElement().title")
    assert words in title and "in_progress" not in title
    order = page.evaluate(
        "Array.from(document.querySelectorAll('#work-list > li')).map(li => +li.dataset.id)"
    )
    assert order == [late, first, third], "in its place in the queue"
    screenshot(page, "work-live-update-phone")

    # Ended by the colleague: out of this queue, list and map alike.
    mate.click(f"#report-{third} .moves button[data-status=rejected]")
    mate.wait_for_selector("#confirm-dialog[open]")
    mate.click("#confirm-yes")
    wait_until(page, f"!document.querySelector('#report-{third}')")
    wait_until(page, "window.issuemap.markers.getLayers().length === 2")
    # A new report for the team arrives, once.
    answer = httpx.post(
        f"{base}/api/reports",
        json={"category": "road", "description": "ไฟดับ", "lat": 8.403, "lon": 100.004},
    )
    fresh = int(answer.json()["id"])
    wait_until(page, f"!!document.querySelector('#report-{fresh}')")
    wait_until(page, "window.issuemap.markers.getLayers().length === 3")
    assert item_count(page, fresh) == 1 and buttons(page, fresh) == next_statuses("open")
    assert page.inner_text("#overdue-count") == translate(
        "th", "Overdue: {overdue} of {open} open reports", overdue=1, open=3
    )

    # Forwarded to another team ("ส่งต่อ") with a reason: gone from both sessions' queue.
    page.click(f"#report-{late} .moves button.forward")
    page.wait_for_selector("#forward-dialog[open]")
    page.select_option("#forward-team", "T2")
    page.fill("#forward-reason", "ท่อระบายน้ำ ไม่ใช่ถนน <b>{{7*7}}</b>")
    screenshot(page, "work-forward-phone")
    page.click("#forward-dialog button[value=forward]")
    wait_until(page, f"!document.querySelector('#report-{late}')")
    wait_until(mate, f"!document.querySelector('#report-{late}')")
    assert page.evaluate("window.issuemap.markers.getLayers().length") == 2
    team = "SELECT t.code FROM reports AS r JOIN teams AS t ON t.id = r.team_id WHERE r.id = :id"
    assert db_value(engine, team, late) == "T2"
    assert page.inner_text("#overdue-count") == translate(
        "th", "Overdue: {overdue} of {open} open reports", overdue=0, open=2
    )

    # A session that ended while the page was open: the toast says so and links to sign in.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM staff_sessions"))
    mate.click(f"#report-{fresh} .moves button[data-status=acknowledged]")
    mate.wait_for_selector("#toast.shown a.button")
    assert translate("th", "Your session has ended. Sign in again to go on.") in mate.inner_text(
        "#toast"
    )
    assert mate.get_attribute("#toast a.button", "href") == "/login?lang=th&next=%2Fwork"
    assert status_of(engine, fresh) == "open"
    # Zone Z1 handed to team T2 and the reports re-routed: its work leaves this queue too.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE zones SET team_id = (SELECT id FROM teams WHERE code = 'T2') "
                "WHERE code = 'Z1'"
            )
        )
        assert reroute_reports(conn, settings=RoutingSettings()).changed >= 2
    wait_until(page, f"!document.querySelector('#report-{first}, #report-{fresh}')")
    wait_until(page, "window.issuemap.markers.getLayers().length === 0")
    # Chromium logs the refused change (403) and the session check (401) as failed loads;
    # nothing else may fail.
    assert seen.errors == [], seen.errors
    assert [e for e in mate_seen.errors if "401" not in e and "403" not in e] == []
    page.context.close()
    mate.context.close()


def hold_answers(page: Any, pattern: str) -> list[tuple[Any, Any]]:
    """Requests matching ``pattern`` reach the server at once; answers wait for ``release``."""
    held: list[tuple[Any, Any]] = []
    page.route(pattern, lambda route: held.append((route, route.fetch())))
    return held


def wait_held(page: Any, held: list[tuple[Any, Any]]) -> None:
    """Wait until the server has answered the one request held back."""
    for _ in range(600):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1


def release(page: Any, held: list[tuple[Any, Any]]) -> None:
    """Hand the page the one answer held back, once Playwright has fetched it."""
    wait_held(page, held)
    route, answer = held[0]
    route.fulfill(response=answer)


def hold_events(page: Any, report: int, status: str | None = None) -> None:
    """Live events for ``report`` (with ``status``, if given) wait in the page, as on a slow
    stream, for ``apply_held_events``; live.js hands each event to ``issuemap.applyReport``."""
    page.evaluate(
        """([report, status]) => {
            const apply = window.issuemap.applyReport;
            window.heldEvents = [];
            window.applyNow = apply;
            window.issuemap.applyReport = event => {
                const held = event.id === report && (status === null || event.status === status);
                if (held) window.heldEvents.push(event);
                else apply(event);
            };
        }""",
        [report, status],
    )


def apply_held_events(page: Any, report: int) -> str | None:
    """Hand the page the events held back; the item's status just after, None if it is gone."""
    shown = page.evaluate(
        """report => {
            window.heldEvents.forEach(event => window.applyNow(event));
            const li = document.querySelector('#report-' + report);
            return li && li.dataset.status;
        }""",
        report,
    )
    return None if shown is None else str(shown)


def test_a_moves_own_live_event_before_its_answer_still_empties_the_note(
    browser: Any, site: tuple[str, list[int]], engine: Engine
) -> None:
    """The server's live event for a move can reach the page before the move's own answer.

    That event draws the item afresh, note and all; the answer must then empty the item on
    the page, or the note stays in the box and goes again with the crew member's next move.
    """
    base, (first, _late, _third) = site
    page, seen = signed_in(browser, base, "crew.one@city.example")
    wait_until(page, "window.issuemap && window.issuemap.liveStatus === 'open'")
    # The move reaches the server at once; its answer is held back until the live event is in.
    held = hold_answers(page, f"**/api/reports/{first}/status?*")
    page.click(f"#report-{first} details.more summary")
    page.fill(f"#note-{first}", "ต้องใช้รถเกรด")
    page.click(f"#report-{first} .moves button[data-status=in_progress]")
    wait_until(page, f"document.querySelector('#report-{first}').dataset.status === 'in_progress'")
    assert status_of(engine, first) == "in_progress"
    release(page, held)
    page.wait_for_selector("#toast.shown button.undo")
    assert page.input_value(f"#note-{first}") == ""
    assert page.evaluate(f"document.querySelector('#report-{first} details.more').open") is False
    note = "SELECT note FROM report_events WHERE report_id = :id AND to_status = 'in_progress'"
    assert db_value(engine, note, first) == "ต้องใช้รถเกรด"
    assert seen.errors == [], seen.errors
    page.context.close()


def test_an_ending_moves_live_event_before_its_answer_keeps_the_item_until_it_comes(
    browser: Any, site: tuple[str, list[int]], engine: Engine
) -> None:
    """A rejection's live event can reach the page before the rejection's own answer.

    The item must not vanish meanwhile (the event is the crew member's own move, not someone
    else ending the work): it shows the new status, offers no more moves, and stays, undoable.
    """
    base, (_first, _late, third) = site
    page, seen = signed_in(browser, base, "crew.one@city.example")
    wait_until(page, "window.issuemap && window.issuemap.liveStatus === 'open'")
    held = hold_answers(page, f"**/api/reports/{third}/status?*")
    page.click(f"#report-{third} .moves button[data-status=rejected]")
    page.wait_for_selector("#confirm-dialog[open]")
    page.click("#confirm-yes")
    wait_until(
        page,
        f"window.issuemap.lastEvent && window.issuemap.lastEvent.id === {third}"
        " && window.issuemap.lastEvent.status === 'rejected'",
    )
    assert status_of(engine, third) == "rejected"
    shown = page.evaluate(
        f"""(() => {{
            const li = document.querySelector('#report-{third}');
            return li && [li.dataset.status, li.querySelectorAll('.moves button').length];
        }})()"""
    )
    assert shown == ["rejected", 0]
    release(page, held)
    page.wait_for_selector("#toast.shown button.undo")
    assert item_count(page, third) == 1
    page.click("#toast button.undo")
    wait_until(page, f"document.querySelector('#report-{third}').dataset.status === 'open'")
    assert status_of(engine, third) == "open"
    assert seen.errors == [], seen.errors
    page.context.close()


def test_a_move_that_fails_after_a_colleague_ended_the_report_leaves_the_queue(
    browser: Any, site: tuple[str, list[int]], engine: Engine
) -> None:
    """A colleague rejects a report just as the crew member moves it on.

    The rejection's event comes while the move awaits its answer, so the item stays and shows
    it (it could have been the move's own); the move is refused, and the report, ended by
    someone else, leaves the queue rather than staying on as rejected.
    """
    base, (_first, _late, third) = site
    page, seen = signed_in(browser, base, "crew.one@city.example")
    wait_until(page, "window.issuemap && window.issuemap.liveStatus === 'open'")
    hold_events(page, third)
    colleague = Principal(role="admin", key_id=1, name="colleague")
    with engine.begin() as conn:
        change_status(conn, third, "rejected", principal=colleague)
    wait_until(page, "window.heldEvents.length === 1")
    held = hold_answers(page, f"**/api/reports/{third}/status?*")
    page.click(f"#report-{third} .moves button[data-status=in_progress]")
    shown = apply_held_events(page, third)
    assert shown == "rejected"
    release(page, held)
    wait_until(page, f"document.querySelector('#report-{third}') === null")
    assert translate("th", "Could not change the status") in page.inner_text("#toast")
    assert status_of(engine, third) == "rejected"
    assert page.evaluate("document.querySelectorAll('#work-list > li').length") == 2
    # The refused move is the one error: Chromium logs its 409, and nothing broke.
    assert [e for e in seen.errors if "status of 409" not in e] == [], seen.errors
    page.context.close()


def test_a_colleagues_later_change_heard_before_a_moves_answer_is_what_the_page_keeps(
    browser: Any, site: tuple[str, list[int]], engine: Engine
) -> None:
    """A crew member starts work on a report; a colleague resolves it at once after.

    The colleague's change reaches the page before the move's own answer. The answer is
    older news: the report, ended by the colleague, leaves the queue, and the move is told as
    done but offers no undo (it is no longer the report's latest change).
    """
    base, (_first, _late, third) = site
    page, seen = signed_in(browser, base, "crew.one@city.example")
    wait_until(page, "window.issuemap && window.issuemap.liveStatus === 'open'")
    held = hold_answers(page, f"**/api/reports/{third}/status?*")
    page.click(f"#report-{third} .moves button[data-status=in_progress]")
    wait_held(page, held)  # the move is in, its answer held
    assert status_of(engine, third) == "in_progress"
    colleague = Principal(role="admin", key_id=1, name="colleague")
    with engine.begin() as conn:
        change_status(conn, third, "resolved", principal=colleague)
    wait_until(
        page,
        f"window.issuemap.lastEvent && window.issuemap.lastEvent.id === {third}"
        " && window.issuemap.lastEvent.status === 'resolved'",
    )
    release(page, held)
    in_progress = translate("th", STATUS_NAMES["in_progress"])
    moved = translate("th", "Report #{id}: {status}.", id=third, status=in_progress)
    wait_until(page, "document.querySelector('#toast.shown') !== null")
    assert page.inner_text("#toast .toast-text") == moved
    assert page.evaluate("document.querySelectorAll('#toast button.undo').length") == 0
    assert item_count(page, third) == 0
    assert status_of(engine, third) == "resolved"
    assert seen.errors == [], seen.errors
    page.context.close()


def test_a_rejections_live_event_heard_after_its_undo_leaves_the_item_open(
    browser: Any, site: tuple[str, list[int]], engine: Engine
) -> None:
    """On a busy server a move's live event can reach the page after the move's undo answered.

    The page then shows the report open again; the late event (rejected) is older than what
    the page shows, and must neither take the item out of the queue nor show it rejected.
    """
    base, (_first, _late, third) = site
    page, seen = signed_in(browser, base, "crew.one@city.example")
    wait_until(page, "window.issuemap && window.issuemap.liveStatus === 'open'")
    # The stream's events for the rejection are held back in the page, as a slow stream would.
    hold_events(page, third, "rejected")
    page.click(f"#report-{third} .moves button[data-status=rejected]")
    page.wait_for_selector("#confirm-dialog[open]")
    page.click("#confirm-yes")
    page.wait_for_selector("#toast.shown button.undo")
    wait_until(page, f"document.querySelector('#report-{third}').dataset.status === 'rejected'")
    wait_until(page, "window.heldEvents.length === 1")
    page.click("#toast button.undo")
    wait_until(page, f"document.querySelector('#report-{third}').dataset.status === 'open'")
    assert status_of(engine, third) == "open"
    # The undo's own event (open) has come through; now the rejection's arrives, late.
    wait_until(
        page,
        f"window.issuemap.lastEvent.id === {third} && window.issuemap.lastEvent.status === 'open'",
    )
    shown = apply_held_events(page, third)
    assert shown == "open"
    page.wait_for_timeout(500)  # time for a re-read of the report, had the item been dropped
    assert item_count(page, third) == 1
    assert page.evaluate(f"document.querySelector('#report-{third}').dataset.status") == "open"
    assert seen.errors == [], seen.errors
    page.context.close()


def test_a_planner_picks_a_team_and_only_looks(browser: Any, site: tuple[str, list[int]]) -> None:
    base, made = site
    page, seen = signed_in(
        browser,
        base,
        "planner@city.example",
        viewport={"width": 1280, "height": 800},
        locale="en-GB",
    )
    assert page.locator("html").get_attribute("lang") == "en"
    screenshot(page, "work-choose-team-desktop")
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)
    page.click("a.button[href^='/work?team=T1']")
    page.wait_for_url(f"{base}/work?team=T1&lang=en")
    wait_until(page, "window.issuemap && window.issuemap.work && window.issuemap.map")
    assert page.evaluate("document.querySelectorAll('#work-list > li').length") == len(made)
    assert page.evaluate("document.querySelectorAll('.moves, details.more').length") == 0
    assert "only the team and administrators change it" in page.inner_text("main")
    screenshot(page, "work-planner-desktop")
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)
    assert seen.errors == [] and seen.external == [], (seen.errors, seen.external)
    page.context.close()
