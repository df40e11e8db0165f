"""The crew work view (/work) and undoing a status change, over HTTP on a real PostGIS.

Who sees what (field teams their own team only, planners every team without buttons),
the order of the work (overdue first, then soonest due), the filters, attack text shown as
text, bad parameters refused naming the field, and the undo rules: only the same person,
only the latest change, only within the window; an undone move that ended a report's work
is never announced, and one left alone is announced once the window has passed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geo.i18n import translate
from geo.maps.work import SESSION_ENDED
from geo.reports.notifications import deliver_due
from geo.settings import NotificationSettings
from geo.vocabulary import UNDO_WINDOW_S
from tests.test_login import add_user, csrf, report_in, sign_in
from tests.test_notifications import Receiver

ATTACK = "{{7*7}} {% if 1 %}x{% endif %} <img src=x onerror=alert(1)> </script><script>alert(2)"

USERS = {
    "t1": ("crew.one@city.example", "field_team", "T1"),
    "t1b": ("crew.mate@city.example", "field_team", "T1"),
    "t2": ("crew.two@city.example", "field_team", "T2"),
    "planner": ("planner@city.example", "planner", None),
    "admin": ("admin@city.example", "admin", None),
}


@pytest.fixture
def site(city_app: Any, engine: Engine) -> tuple[TestClient, Any, Any, dict[str, TestClient]]:
    """The app, the tiny city, its keys and a signed-in browser per person of ``USERS``."""
    client, city, keys = city_app
    browsers = {}
    for who, (email, role, team) in USERS.items():
        add_user(engine, email, role, team, name=f"Person {who}")
        browser = TestClient(client.app)
        assert sign_in(browser, email).status_code == 303
        browsers[who] = browser
    return client, city, keys, browsers


def page_data(html: str) -> dict[str, Any]:
    """The JSON document the page's script draws from."""
    found = re.search(r'<script type="application/json" id="work-data">(.*?)</script>', html, re.S)
    assert found, "the page carries its data"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def ids(html: str) -> list[int]:
    return [item["id"] for item in page_data(html)["items"]]


def post(browser: TestClient, path: str, **body: Any) -> Any:
    """A change as the page's script makes it: the session and its CSRF token."""
    return browser.post(path, json=body or None, headers={"X-CSRFToken": csrf(browser)})


def status(engine: Engine, report: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT status, resolved_at FROM reports WHERE id = :id"), {"id": report}
        ).one()


def make_overdue(engine: Engine, report: int, hours: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET due_at = now() - make_interval(hours => :h) WHERE id = :id"),
            {"h": hours, "id": report},
        )


# --- who sees what -------------------------------------------------------------------------


def test_without_a_session_a_browser_goes_to_the_sign_in_form(site: Any) -> None:
    client, _, _, _ = site
    browser = TestClient(client.app)
    answer = browser.get(
        "/work?status=open", headers={"Accept": "text/html"}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fwork%3Fstatus%3Dopen"
    assert browser.get("/work", headers={"Accept": "application/json"}).status_code == 401


@pytest.mark.parametrize("lang", ["th", "en"])
def test_an_ended_session_gets_the_sign_in_form_saying_so_in_its_language(
    site: Any, lang: str
) -> None:
    client, _, _, _ = site
    browser = TestClient(client.app)
    browser.cookies.set("issuemap_session", "an-ended-session")
    answer = browser.get("/work?team=T1", headers={"Accept": "text/html", "Accept-Language": lang})
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("text/html")
    assert f'lang="{lang}"' in answer.text
    assert translate(lang, SESSION_ENDED) in answer.text
    assert 'name="password"' in answer.text and 'value="/work?team=T1"' in answer.text
    if lang == "th":
        assert "เข้าสู่ระบบ" in answer.text


def test_a_field_team_sees_its_own_work_and_no_other_teams(site: Any, engine: Engine) -> None:
    client, _, keys, browsers = site
    ours, theirs = report_in(client), report_in(client, "100.015")
    for crew in (browsers["t1"], browsers["t1b"]):
        page = crew.get("/work")
        assert page.status_code == 200, page.text
        assert ids(page.text) == [ours]
        data = page_data(page.text)
        assert data["team"]["code"] == "T1" and data["actions"] is True
        assert data["items"][0]["next"] == ["acknowledged", "in_progress", "resolved", "rejected"]
        assert crew.get("/work?team=T1").status_code == 200
        for other in ("T2", "DRAIN", "NOPE"):
            refused = crew.get(f"/work?team={other}")
            assert refused.status_code == 404, other
            assert "ทางเท้าแตก" not in refused.text
    assert ids(browsers["t2"].get("/work").text) == [theirs]
    # A field-team key reads the same page as a signed-in member of the team.
    by_key = client.get("/work", headers={"X-API-Key": keys.t1})
    assert by_key.status_code == 200 and ids(by_key.text) == [ours]
    assert client.get("/work?team=T2", headers={"X-API-Key": keys.t1}).status_code == 404
    # An app key is no staff member.
    assert client.get("/work", headers={"X-API-Key": keys.app}).status_code == 401


def test_planners_and_admins_choose_a_team_and_planners_only_look(site: Any) -> None:
    client, _, keys, browsers = site
    ours, theirs = report_in(client), report_in(client, "100.015")
    for who in ("planner", "admin"):
        picker = browsers[who].get("/work")
        assert picker.status_code == 200
        for code in ("T1", "T2", "DRAIN", "TREE"):
            assert f'href="/work?team={code}&amp;lang=th"' in picker.text
        assert page_data(picker.text)["items"] == []
        assert ids(browsers[who].get("/work?team=T1").text) == [ours]
        assert ids(browsers[who].get("/work?team=T2").text) == [theirs]
        assert browsers[who].get("/work?team=NOPE").status_code == 404
    look = page_data(browsers["planner"].get("/work?team=T1").text)
    assert look["actions"] is False and look["items"][0]["next"] == []
    assert look["transitions"] == {}
    work = page_data(browsers["admin"].get("/work?team=T1").text)
    assert work["actions"] is True and work["items"][0]["next"]
    # Planners cannot move, undo or forward what they look at.
    refused = post(browsers["planner"], f"/api/reports/{ours}/status", status="acknowledged")
    assert refused.status_code == 403
    planner_page = browsers["planner"].get("/work?team=T1&lang=en")
    assert "only the team and administrators change it" in planner_page.text
    assert client.get("/work?team=T2", headers={"X-API-Key": keys.planner}).status_code == 200


def test_overdue_work_comes_first_then_the_soonest_due_with_the_count_on_top(
    site: Any, engine: Engine
) -> None:
    client, _, _, browsers = site
    reports = [report_in(client) for _ in range(5)]
    make_overdue(engine, reports[3], 2)  # overdue by 2 hours
    make_overdue(engine, reports[1], 30)  # overdue by 30 hours
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET due_at = now() + interval '1 hour' WHERE id = :id"),
            {"id": reports[4]},
        )
    page = browsers["t1"].get("/work?lang=en")
    assert ids(page.text) == [reports[1], reports[3], reports[4], reports[0], reports[2]]
    data = page_data(page.text)
    assert [i["overdue"] for i in data["items"]] == [True, True, False, False, False]
    assert data["counts"] == {"open": 5, "overdue": 2}
    assert "Overdue: 2 of 5 open reports" in page.text
    thai = browsers["t1"].get("/work?lang=th").text
    assert translate("th", "Overdue: {overdue} of {open} open reports", overdue=2, open=5) in thai


def test_filters_by_category_status_overdue_and_age(site: Any, engine: Engine) -> None:
    client, _, _, browsers = site
    fresh, acknowledged, late, old = (report_in(client) for _ in range(4))
    assert post(browsers["t1"], f"/api/reports/{acknowledged}/status", status="acknowledged")
    make_overdue(engine, late, 1)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET created_at = now() - interval '10 days' WHERE id = :id"),
            {"id": old},
        )
    crew = browsers["t1"]
    assert ids(crew.get("/work?status=acknowledged").text) == [acknowledged]
    assert ids(crew.get("/work?overdue=1").text) == [late]
    assert ids(crew.get("/work?age=7").text) == [old]
    assert ids(crew.get("/work?category=flood").text) == []
    assert set(ids(crew.get("/work?category=road").text)) == {fresh, acknowledged, late, old}
    # Empty choices, as the form sends "All", mean no filter.
    everything = crew.get("/work?category=&status=&age=")
    assert len(ids(everything.text)) == 4
    data = page_data(crew.get("/work?status=open&overdue=1").text)
    assert data["filters"] == {
        "category": None,
        "status": "open",
        "overdue": True,
        "age_days": None,
        "any": True,
    }
    # The counts on top still cover the whole queue.
    assert data["counts"] == {"open": 4, "overdue": 1}
    assert ids(crew.get("/work?status=open&overdue=1").text) == [late]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=resolved", "status"),
        ("status=%27%20OR%201=1--", "status"),
        ("age=abc", "age"),
        ("age=99999", "age"),
        ("age=-1", "age"),
        ("overdue=maybe", "overdue"),
        ("category=" + "x" * 65, "category"),
        ("category=nope", "category"),
        ("team=" + "T" * 65, "team"),
        ("lang=" + "e" * 9, "lang"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(site: Any, query: str, field: str) -> None:
    _, _, _, browsers = site
    answer = browsers["t1"].get(f"/work?{query}", headers={"Accept-Language": "en"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    thai = browsers["t1"].get(f"/work?{query}", headers={"Accept-Language": "th"})
    assert thai.status_code == 422 and thai.json()["field"] == field


def test_a_nul_in_a_parameter_is_refused_naming_it(site: Any) -> None:
    _, _, _, browsers = site
    answer = browsers["t1"].get("/work?category=ro%00ad")
    assert answer.status_code == 422
    assert "category" in answer.text


def test_attack_text_is_shown_as_text(site: Any, engine: Engine) -> None:
    client, _, _, browsers = site
    created = client.post(
        "/api/reports",
        json={"category": "road", "description": ATTACK, "lat": 8.405, "lon": 100.005},
    )
    assert created.status_code == 201
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE teams SET name = :name WHERE code = 'T1'"), {"name": "ทีม " + ATTACK}
        )
        conn.execute(
            text("UPDATE categories SET name_th = :name WHERE code = 'road'"), {"name": ATTACK}
        )
    for who in ("t1", "admin"):
        page = browsers[who].get("/work?team=T1")
        assert page.status_code == 200
        html = page.text
        assert "<img src=x" not in html and "onerror=alert(1)>" not in html
        assert "</script><script>alert(2)" not in html
        # Never compiled as a template: the braces come back as typed.
        assert "ทีม {{7*7}} {% if 1 %}x{% endif %} &lt;img" in html
        data = page_data(html)
        assert data["items"][0]["description"] == ATTACK
        assert data["categories"]["road"] == ATTACK
        assert data["team"]["name"] == "ทีม " + ATTACK
        assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the heading, escaped
    # NUL bytes cannot be stored: a note holding one is refused, naming it.
    report = ids(browsers["t1"].get("/work").text)[0]
    refused = post(
        browsers["t1"], f"/api/reports/{report}/status", status="acknowledged", note="a\x00b"
    )
    assert refused.status_code == 422 and refused.json()["field"] == "note"
    assert status(engine, report).status == "open"


# --- undo ------------------------------------------------------------------------------------


@pytest.fixture
def hooked(site: Any) -> Iterator[tuple[Any, Receiver]]:
    """``site`` with a webhook receiving every event, so each change queues an outbox row."""
    client, _, keys, _ = site
    box = Receiver()
    try:
        answer = client.post(
            "/api/admin/webhooks",
            json={"url": box.url("/hook"), "events": ["report.status_changed"]},
            headers={"X-API-Key": keys.admin},
        )
        assert answer.status_code == 201, answer.text
        yield site, box
    finally:
        box.server.shutdown()
        box.server.server_close()


def queued(engine: Engine, event_id: int) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, delivered_at, available_at - now() AS wait FROM outbox "
                    "WHERE payload ->> 'event_id' = :id ORDER BY id"
                ),
                {"id": str(event_id)},
            )
        )


def age_everything(engine: Engine, seconds: float) -> None:
    """As if ``seconds`` had passed: every event and queued message that much older."""
    with engine.begin() as conn:
        shift = {"s": seconds}
        conn.execute(text("UPDATE report_events SET at = at - make_interval(secs => :s)"), shift)
        conn.execute(
            text("UPDATE outbox SET available_at = available_at - make_interval(secs => :s)"),
            shift,
        )


def deliver(engine: Engine) -> int:
    return deliver_due(engine, NotificationSettings(), public_rounding_m=100).delivered


def test_an_undone_rejection_is_never_announced(hooked: Any, engine: Engine) -> None:
    (client, _, _, browsers), box = hooked
    report = report_in(client)
    moved = post(browsers["t1"], f"/api/reports/{report}/status", status="rejected")
    assert moved.status_code == 200, moved.text
    event = moved.json()["event_id"]
    [row] = queued(engine, event)
    assert row.wait > timedelta(seconds=UNDO_WINDOW_S - 10), "waits out the undo window"
    assert deliver(engine) == 0, "nothing is due while the move may be undone"
    undone = post(browsers["t1"], f"/api/reports/{report}/status/{event}/undo")
    assert undone.status_code == 200, undone.text
    body = undone.json()
    assert body["status"] == "open" and body["from_status"] == "rejected"
    assert body["next_statuses"] == ["acknowledged", "in_progress", "resolved", "rejected"]
    assert status(engine, report).status == "open"
    assert queued(engine, event) == [], "the rejection's messages are gone"
    assert queued(engine, body["event_id"]) == [], "and the undo announces nothing"
    age_everything(engine, UNDO_WINDOW_S + 5)
    assert deliver(engine) == 0 and box.calls == []
    trail = client.get(
        f"/api/reports/{report}/events", headers={"X-API-Key": site_admin_key(hooked)}
    ).json()
    last = trail[-1]
    assert last["kind"] == "status" and last["from_status"] == "rejected"
    assert last["to_status"] == "open" and "undone" in last["note"]
    assert last["actor"].endswith(":Person t1") and last["data"] == {"undoes": event}


def site_admin_key(hooked: Any) -> str:
    (_, _, keys, _), _ = hooked
    return str(keys.admin)


def test_a_move_left_alone_is_announced_once_the_window_has_passed(
    hooked: Any, engine: Engine
) -> None:
    (client, _, _, browsers), box = hooked
    report = report_in(client)
    moved = post(browsers["t1"], f"/api/reports/{report}/status", status="resolved")
    event = moved.json()["event_id"]
    assert deliver(engine) == 0
    age_everything(engine, UNDO_WINDOW_S + 1)
    too_late = post(browsers["t1"], f"/api/reports/{report}/status/{event}/undo")
    assert too_late.status_code == 409
    assert f"{UNDO_WINDOW_S} seconds" in too_late.json()["detail"]
    assert deliver(engine) == 1
    assert len(box.calls) == 1 and b'"resolved"' in box.calls[0][2]
    assert status(engine, report).status == "resolved"


def test_a_move_that_ends_nothing_is_announced_at_once(hooked: Any, engine: Engine) -> None:
    (client, _, _, browsers), _ = hooked
    report = report_in(client)
    moved = post(browsers["t1"], f"/api/reports/{report}/status", status="acknowledged")
    [row] = queued(engine, moved.json()["event_id"])
    assert row.wait <= timedelta(0)
    assert deliver(engine) == 1
    # Undone after it went out: the undo is announced too, so nobody is left with it.
    undone = post(browsers["t1"], f"/api/reports/{report}/status/{moved.json()['event_id']}/undo")
    assert undone.status_code == 200
    assert len(queued(engine, undone.json()["event_id"])) == 1


def test_only_the_same_person_may_undo(hooked: Any, engine: Engine) -> None:
    (client, _, keys, browsers), _ = hooked
    report = report_in(client)
    event = post(browsers["t1"], f"/api/reports/{report}/status", status="rejected").json()[
        "event_id"
    ]
    path = f"/api/reports/{report}/status/{event}/undo"
    mate = post(browsers["t1b"], path)
    assert mate.status_code == 403
    assert mate.json()["detail"] == "Only the person who made a change may undo it."
    thai = browsers["t1b"].post(path + "?lang=th", headers={"X-CSRFToken": csrf(browsers["t1b"])})
    assert thai.status_code == 403
    assert thai.json()["detail"] == translate(
        "th", "Only the person who made a change may undo it."
    )
    assert post(browsers["admin"], path).status_code == 403
    assert post(browsers["planner"], path).status_code == 403
    assert client.post(path, headers={"X-API-Key": keys.t1}).status_code == 403
    assert post(browsers["t2"], path).status_code == 404, "another team's report is not found"
    # Without a key or session, as for a status change: only workers may.
    anonymous = client.post(path)
    assert anonymous.status_code == 403
    assert "field teams and administrators" in anonymous.json()["detail"]
    # Without the CSRF token the session undoes nothing.
    assert browsers["t1"].post(path).status_code == 403
    assert status(engine, report).status == "rejected"
    assert post(browsers["t1"], path).status_code == 200
    assert status(engine, report).status == "open"


def test_only_the_latest_change_may_be_undone(hooked: Any, engine: Engine) -> None:
    (client, _, _, browsers), _ = hooked
    report, other = report_in(client), report_in(client)
    first = post(browsers["t1"], f"/api/reports/{report}/status", status="acknowledged").json()
    post(browsers["t1b"], f"/api/reports/{report}/status", status="in_progress")
    late = post(browsers["t1"], f"/api/reports/{report}/status/{first['event_id']}/undo")
    assert late.status_code == 409
    assert "only its latest change can be undone" in late.json()["detail"]
    assert status(engine, report).status == "in_progress"
    # An event of another report, or no status change at all, is not found.
    wrong = post(browsers["t1"], f"/api/reports/{other}/status/{first['event_id']}/undo")
    assert wrong.status_code == 404
    assert post(browsers["t1"], f"/api/reports/{report}/status/99999999/undo").status_code == 404
    with engine.connect() as conn:
        created = conn.execute(
            text("SELECT id FROM report_events WHERE report_id = :id AND kind = 'created'"),
            {"id": other},
        ).scalar_one()
    assert post(browsers["t1"], f"/api/reports/{other}/status/{created}/undo").status_code == 404
    # An undone change is no longer the latest: undoing it twice is refused.
    done = post(browsers["t1b"], f"/api/reports/{other}/status", status="rejected").json()
    assert post(browsers["t1b"], f"/api/reports/{other}/status/{done['event_id']}/undo")
    again = post(browsers["t1b"], f"/api/reports/{other}/status/{done['event_id']}/undo")
    assert again.status_code == 409
    for bad in ("0", "-1", "abc", str(2**63)):
        assert post(browsers["t1"], f"/api/reports/{report}/status/{bad}/undo").status_code == 422


def test_undoing_a_reopening_puts_the_resolution_time_back(site: Any, engine: Engine) -> None:
    client, _, _, browsers = site
    report = report_in(client)
    post(browsers["t1"], f"/api/reports/{report}/status", status="resolved")
    resolved_at = status(engine, report).resolved_at
    assert resolved_at is not None
    reopened = post(browsers["t1"], f"/api/reports/{report}/status", status="reopened").json()
    assert status(engine, report).resolved_at is None
    post(browsers["t1"], f"/api/reports/{report}/status/{reopened['event_id']}/undo")
    after = status(engine, report)
    assert after.status == "resolved" and after.resolved_at == resolved_at
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
    assert now - resolved_at < timedelta(minutes=5)
    assert datetime.now(UTC) - resolved_at < timedelta(minutes=5)


def test_a_long_queue_comes_a_page_at_a_time(
    site: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, _, browsers = site
    monkeypatch.setattr("geo.maps.work.WORK_LIMIT", 2)
    reports = [report_in(client) for _ in range(3)]
    make_overdue(engine, reports[2], 1)
    page = browsers["t1"].get("/work?lang=en")
    data = page_data(page.text)
    assert data["truncated"] is True and ids(page.text) == [reports[2], reports[0]]
    assert "Showing reports 1 to 2 of those that match, soonest due first." in page.text
    assert data["counts"] == {"open": 3, "overdue": 1}, "the counts cover the whole queue"
    assert 'rel="prev"' not in page.text
    # The next page holds the rest and links back, keeping the language and the filters.
    found = re.search(r'<a class="button" rel="next" href="([^"]+)"', page.text)
    assert found, page.text
    assert found.group(1) == "/work?lang=en&amp;page=2"
    second = browsers["t1"].get("/work?lang=en&page=2")
    assert ids(second.text) == [reports[1]] and page_data(second.text)["page"] == 2
    assert "Showing reports 3 to 3 of those" in second.text and 'rel="next"' not in second.text
    assert '<a class="button secondary" rel="prev" href="/work?lang=en&amp;page=1">' in second.text
    assert page_data(second.text)["counts"] == {"open": 3, "overdue": 1}
    # Overdue only is chosen in the database: one page, the one overdue report.
    late = page_data(browsers["t1"].get("/work?overdue=1").text)
    assert late["truncated"] is False and [i["id"] for i in late["items"]] == [reports[2]]
    for bad in ("0", "-1", "x", "99999999"):
        refused = browsers["t1"].get(f"/work?page={bad}&lang=en")
        assert refused.status_code == 422 and "page" in refused.text, bad


def test_each_item_travels_in_few_bytes_and_a_long_description_is_read_on_asking(
    site: Any, engine: Engine
) -> None:
    client, _, _, browsers = site
    short, long = report_in(client), report_in(client)
    words = "ท่อระบายน้ำอุดตัน น้ำท่วมขังหน้าบ้านเลขที่ 12 " * 40
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET description = :d WHERE id = :id"), {"d": words, "id": long}
        )
    crew = browsers["t1"].get("/work")
    # Thai travels as UTF-8, not as \\u escapes; markup in it is still escaped.
    assert "ทางเท้าแตก" in crew.text and "\\u0e17" not in crew.text
    items = {item["id"]: item for item in page_data(crew.text)["items"]}
    assert items[short]["description"] == "ทางเท้าแตก" and "description_cut" not in items[short]
    assert items[long]["description"] == words[:500] and items[long]["description_cut"] is True
    # The category's name is the page's, said once; empty fields are left out.
    assert "category_name" not in items[short] and "address" not in items[short]
    assert page_data(crew.text)["categories"]["road"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", items[short]["created_at"])
    # The rest of a description is one request away, as the page's script makes it.
    assert client.get(f"/api/reports/{long}", headers={"X-API-Key": "x"}).status_code == 401
    assert browsers["t1"].get(f"/api/reports/{long}").json()["description"] == words
    # Only someone who moves reports gets the teams to forward to.
    assert [t["code"] for t in page_data(crew.text)["teams"]] == ["DRAIN", "T2", "TREE"]
    assert page_data(browsers["planner"].get("/work?team=T1").text)["teams"] == []


def test_the_page_runs_no_inline_script(site: Any) -> None:
    client, _, _, browsers = site
    report_in(client)
    page = browsers["t1"].get("/work")
    policy = page.headers["content-security-policy"]
    scripts = policy.split("script-src ")[1].split(";")[0]
    assert "unsafe-inline" not in scripts and "'nonce-" in scripts
    assert "script-src-attr 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert not re.search(r"\son[a-z]+=", page.text), "no inline handlers"
    # Every script is a file of the site, or the page's data, which never runs.
    for tag in re.findall(r"<script[^>]*>", page.text):
        assert 'type="application/json"' in tag or ('src="/static/' in tag and "nonce=" in tag)


def test_an_undone_move_takes_its_public_note_and_after_photo_with_it(
    site: Any, engine: Engine
) -> None:
    from tests.test_notifications import png

    client, _, keys, browsers = site
    report = report_in(client)
    crew = browsers["t1"]
    moved = crew.post(
        f"/api/reports/{report}/status",
        data={"status": "resolved", "public_note": "ซ่อมแล้ว", "note": "staff only"},
        files={"photo": ("after.png", png(), "image/png")},
        headers={"X-CSRFToken": csrf(crew)},
    )
    assert moved.status_code == 200, moved.text
    [photo] = moved.json()["photo_ids"]
    public = client.get(f"/api/reports/{report}").json()
    assert public["after_photo_ids"] == [photo] and public["public_notes"][0]["note"] == "ซ่อมแล้ว"
    undone = post(crew, f"/api/reports/{report}/status/{moved.json()['event_id']}/undo")
    assert undone.status_code == 200
    public = client.get(f"/api/reports/{report}").json()
    assert public["status"] == "open"
    assert public["after_photo_ids"] == [] and public["public_notes"] == []
    assert client.get(f"/api/photos/{photo}").status_code == 404
    # Staff still read in the audit trail what was said, and that a photo was taken back.
    trail = client.get(f"/api/reports/{report}/events", headers={"X-API-Key": keys.admin}).json()
    assert trail[-2]["to_status"] == "resolved" and trail[-2]["public_note"] is None
    assert trail[-2]["note"] == "staff only"
    assert trail[-1]["data"] == {
        "undoes": moved.json()["event_id"],
        "public_note": "ซ่อมแล้ว",
        "photos_removed": [photo],
    }


def test_the_public_sees_neither_an_undone_change_nor_its_undo(site: Any, engine: Engine) -> None:
    from tests.test_notifications import token_of

    client, _, keys, browsers = site
    report = report_in(client)
    crew = browsers["t1"]
    path = f"/api/reports/{report}/status"
    post(crew, path, status="acknowledged", public_note="On our way")
    slip = post(crew, path, status="rejected", public_note="Not ours")
    assert post(crew, f"{path}/{slip.json()['event_id']}/undo").status_code == 200

    def timeline() -> list[str]:
        page = client.get(f"/r/{token_of(engine, report)}?lang=en")
        assert page.status_code == 200
        shown = page.text.split('<ol class="timeline">')[1].split("</ol>")[0]
        return re.findall(r'<p class="(?:what|text note)">(.*?)</p>', shown)

    assert timeline() == ["Reported", "Status changed to: Acknowledged", "On our way"]
    public = client.get(f"/api/reports/{report}").json()
    assert [n["note"] for n in public["public_notes"]] == ["On our way"]
    answer = client.get(f"/open311/v2/requests/{report}.json").json()
    assert answer[0]["status_notes"] == "On our way" and answer[0]["status"] == "open"
    # An undone undo takes nothing back: the move it undid stands, once, as it is now.
    moved = post(crew, path, status="resolved").json()["event_id"]
    undo = post(crew, f"{path}/{moved}/undo").json()["event_id"]
    assert post(crew, f"{path}/{undo}/undo").status_code == 200
    assert status(engine, report).status == "resolved"
    assert timeline()[2:] == ["On our way", "Status changed to: Resolved"]
    # Staff still read every move and every undo in the audit trail.
    trail = client.get(f"/api/reports/{report}/events", headers={"X-API-Key": keys.admin}).json()
    assert [e["to_status"] for e in trail if e["kind"] == "status"] == [
        "acknowledged",
        "rejected",
        "acknowledged",
        "resolved",
        "acknowledged",
        "resolved",
    ]
