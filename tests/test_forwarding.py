"""Forwarding ("ส่งต่อ"): a crew or a dispatcher sends a report to another team with a reason.

Against the real PostGIS, a real SMTP server (aiosmtpd), a real webhook receiver and the
fake LINE API: the new team owns the report (its queue has it, the old one's does not),
the audit trail names the person and keeps the reason, and the reporter hears of the new
team in their language, never of the staff reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geo.access.policy import ANONYMOUS, Principal
from geo.i18n import translate
from geo.reports.forwarding import forward_report
from geo.reports.live import LiveAudience, LiveHub, for_stream
from geo.reports.moderation import hide_report
from geo.vocabulary import NOTE_MAX
from tests.fake_line import FakeLine
from tests.test_chat_pushes import USER, chat_report, pushes, texts
from tests.test_chat_pushes import deliver as deliver_line
from tests.test_chat_pushes import line as line  # a fixture
from tests.test_live import collect
from tests.test_login import add_user, csrf, sign_in
from tests.test_notifications import (
    PUBLIC_URL,
    Mailbox,
    body_of,
    deliver,
    file_report,
    key,
    move,
    outbox,
    register,
    token_of,
)
from tests.test_notifications import mailbox as mailbox  # a fixture
from tests.test_notifications import receiver as receiver  # a fixture

pytest_plugins = ("tests.fake_line",)

REASON = "Not a road: the drain under it collapsed; the owner (081-555-1234) says so"
ATTACK = "{{7*7}} {% raw %} <img src=x onerror=alert(1)> ${7*7} '; DROP TABLE reports; --"
CREW = "crew.one@city.example"


@pytest.fixture
def named_teams(city_app: Any, engine: Engine) -> Iterator[None]:
    """T2 has a Thai and an English name, as a team set up in the admin pages has."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE teams SET name_th = 'ทีมถนนเขตสอง', name_en = 'Roads crew two' "
                "WHERE code = 'T2'"
            )
        )
    yield


def forward(client: Any, report: int, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"/api/reports/{report}/forward", json=body, headers=headers)


def report_row(engine: Engine, report: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT r.status, r.due_at, r.zone_id, t.code AS team "
                    "FROM reports AS r LEFT JOIN teams AS t ON t.id = r.team_id WHERE r.id = :id"
                ),
                {"id": report},
            )
            .mappings()
            .one()
        )


def counts(engine: Engine) -> tuple[int, int]:
    """Audit events and outbox rows: what a refused forward must leave as it was."""
    with engine.connect() as conn:
        return (
            int(conn.execute(text("SELECT count(*) FROM report_events")).scalar_one()),
            int(conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()),
        )


def queue_ids(client: Any, team_id: int, secret: str) -> list[int]:
    answer = client.get(f"/api/teams/{team_id}/queue", headers=key(secret))
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["reports"]]


def in_zone(client: Any, zone_id: int, secret: str) -> list[int]:
    """The reports a zone's map and lists show (``?zone=``)."""
    answer = client.get(f"/api/reports?zone={zone_id}", headers=key(secret))
    assert answer.status_code == 200, answer.text
    return [f["properties"]["id"] for f in answer.json()["features"]]


def test_a_crew_sends_its_report_to_another_team_which_then_owns_it(
    city_app: Any, engine: Engine, named_teams: None
) -> None:
    client, city, keys = city_app
    add_user(engine, CREW, "field_team", "T1", name="Somchai Jaidee")
    report = file_report(client, keys)  # in zone Z1: team T1's
    before = report_row(engine, report)
    assert before["team"] == "T1" and report in queue_ids(client, city.teams["T1"], keys.t1)

    browser = TestClient(client.app)
    assert sign_in(browser, CREW).status_code == 303
    refused = forward(browser, report, {}, team="T2", reason=REASON)
    assert refused.status_code == 403, "a session's change needs its CSRF token"
    assert report_row(engine, report) == before
    answer = forward(browser, report, {"X-CSRFToken": csrf(browser)}, team="T2", reason=REASON)
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert (done["report_id"], done["from_team"], done["to_team"]) == (report, "T1", "T2")
    assert done["at"] and done["event_id"]

    after = report_row(engine, report)
    # Status and promise stay; T2's zone does not cover the place, so no zone (routing's 2b).
    assert (after["team"], after["status"], after["due_at"]) == ("T2", "open", before["due_at"])
    assert after["zone_id"] is None
    assert report in queue_ids(client, city.teams["T2"], keys.t2)
    assert report not in queue_ids(client, city.teams["T1"], keys.t1)
    assert client.get(f"/api/reports/{report}", headers=key(keys.t1)).status_code == 404
    assert client.get(f"/api/reports/{report}", headers=key(keys.t2)).status_code == 200

    trail = client.get(f"/api/reports/{report}/events", headers=key(keys.planner)).json()
    forwarded = [e for e in trail if e["kind"] == "forwarded"]
    assert len(forwarded) == 1
    [event] = forwarded
    assert event["actor"].startswith("user:") and "Somchai Jaidee" in event["actor"]
    assert event["note"] == REASON and event["public_note"] is None
    assert (event["from_status"], event["to_status"]) == ("open", "open")
    assert event["data"]["from_team"] == "T1" and event["data"]["to_team"] == "T2"

    # Sent on again by the new team, with a form as a page without scripts would send it.
    again = client.post(
        f"/api/reports/{report}/forward",
        data={"team": "T1", "reason": "ours after all"},
        headers=key(keys.t2),
    )
    assert again.status_code == 200, again.text
    assert report_row(engine, report)["team"] == "T1"
    assert report_row(engine, report)["zone_id"] == city.zones["Z1"], "T1's zone covers it"


def test_the_zone_is_the_new_teams_zone_covering_the_place(city_app: Any, engine: Engine) -> None:
    client, city, keys = city_app
    # A tree in Z2 goes to TREE (a route limited to Z2): T2 sees it through its zone only.
    tree = file_report(client, keys, category="tree", lon=100.015)
    assert report_row(engine, tree)["team"] == "TREE"
    assert tree in in_zone(client, city.zones["Z2"], keys.t2)
    refused = forward(client, tree, key(keys.t2), team="T1", reason=REASON)
    assert refused.status_code == 403, "seen through its zone, but not its team's to send on"
    moved = forward(client, tree, key(keys.admin), team="T2", reason="a crew with a saw")
    assert moved.status_code == 200, moved.text
    assert report_row(engine, tree)["zone_id"] == city.zones["Z2"]
    assert tree in in_zone(client, city.zones["Z2"], keys.t2)
    assert tree in queue_ids(client, city.teams["T2"], keys.t2)

    # A flood goes to DRAIN, a team with no zone; a dispatcher sends it to T1.
    flood = file_report(client, keys, category="flood")
    assert report_row(engine, flood)["zone_id"] is None
    assert (
        forward(client, flood, key(keys.admin), team="T1", reason="blocked gutter").json()[
            "from_team"
        ]
        == "DRAIN"
    )
    assert report_row(engine, flood)["zone_id"] == city.zones["Z1"]

    # A report waiting unassigned for triage is dispatched from nobody.
    waiting = file_report(client, keys)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET team_id = NULL, zone_id = NULL WHERE id = :id"),
            {"id": waiting},
        )
    sent = forward(client, waiting, key(keys.admin), team="T2", reason="triage")
    assert sent.status_code == 200 and sent.json()["from_team"] is None
    assert report_row(engine, waiting)["team"] == "T2"


@pytest.mark.parametrize("lang", ["th", "en"])
def test_the_reporter_is_mailed_the_new_teams_name_in_their_language_never_the_reason(
    city_app: Any, engine: Engine, mailbox: Mailbox, named_teams: None, lang: str
) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET language = :l WHERE id = :id"), {"l": lang, "id": report}
        )
    answer = forward(client, report, key(keys.t1), team="T2", reason=REASON, public_note=ATTACK)
    assert answer.status_code == 200, answer.text
    assert deliver(client, engine) == (1, 0, 0)
    [mail] = mailbox.messages
    team = "ทีมถนนเขตสอง" if lang == "th" else "Roads crew two"
    assert mail["Subject"] == translate(
        lang, "Your report #{id}: passed to {team}", id=report, team=team
    )
    body = body_of(mail)
    category = "ถนน" if lang == "th" else "Roads"
    assert (
        translate(
            lang,
            "Your report #{id} ({category}) was passed to {team}, who will deal with it "
            "from now on.",
            id=report,
            category=category,
            team=team,
        )
        in body
    )
    assert (lang == "th") == ("ส่งต่อ" in body)
    # The public note arrives as written; the staff reason and its phone number never do.
    tracking = f"{PUBLIC_URL}/r/{token_of(engine, report)}"
    assert tracking in body
    # The random tracking token may itself hold "49"; the rest of the mail may not.
    assert ATTACK in body and "49" not in body.replace(tracking, "")
    assert REASON not in body and "081-555-1234" not in body and "drain" not in body


def test_a_reporter_who_filed_in_line_is_told_in_the_chat(
    city_app: Any, engine: Engine, line: FakeLine, named_teams: None
) -> None:
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    answer = forward(client, report, key(keys.t1), team="T2", reason=REASON)
    assert answer.status_code == 200, answer.text
    assert [(r["kind"], r["target"]) for r in outbox(engine, report)] == [("line", USER)]
    assert deliver_line(engine, line) == (1, 0, 0)
    [messages] = pushes(line)
    said = texts(messages)
    assert f"#{report} (ถนน)" in said and "ส่งต่อให้ ทีมถนนเขตสอง" in said
    assert REASON not in json.dumps(messages, ensure_ascii=False)
    assert "quickReply" not in messages[-1], "nothing to rate: the work has not been done"


def test_webhooks_hear_report_forwarded_with_the_team_and_not_the_reason(
    city_app: Any, engine: Engine, receiver: Any
) -> None:
    client, _, keys = city_app
    hook = register(client, keys, url=receiver.url("/hook"), events=["report.forwarded"])
    assert hook["events"] == ["report.forwarded"]
    report = file_report(client, keys)
    move(client, keys, report, "acknowledged")
    assert forward(client, report, key(keys.t1), team="T2", reason=REASON).status_code == 200
    assert deliver(client, engine) == (1, 0, 0), "the status change was not subscribed to"
    [document] = receiver.events("/hook")
    assert document["event"] == "report.forwarded"
    assert document["report"]["forwarded_to"] == {"team": "T2", "name": "T2"}
    assert document["report"]["status"] == "acknowledged"
    assert REASON not in json.dumps(document) and "081-555" not in json.dumps(document)


def test_the_status_page_tells_the_new_team_and_the_public_note_as_text(
    city_app: Any, engine: Engine, named_teams: None
) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    answer = forward(client, report, key(keys.t1), team="T2", reason=ATTACK, public_note=ATTACK)
    assert answer.status_code == 200, answer.text
    token = token_of(engine, report)
    for lang, team in (("th", "ทีมถนนเขตสอง"), ("en", "Roads crew two")):
        page = client.get(f"/r/{token}?lang={lang}")
        assert page.status_code == 200
        assert translate(lang, "Passed to {team}", team=team) in page.text
        # Shown as text: escaped, never evaluated as a template or markup.
        assert "<img src=x onerror" not in page.text and "&lt;img src=x onerror" in page.text
        assert "{{7*7}}" in page.text and ">49<" not in page.text
    trail = client.get(f"/api/reports/{report}/events", headers=key(keys.admin)).json()
    [event] = [e for e in trail if e["kind"] == "forwarded"]
    assert event["note"] == ATTACK and event["public_note"] == ATTACK, "stored as written"
    # The staff reason is nowhere public: the public note is all that shows.
    public = client.get(f"/api/reports/{report}").json()
    assert [n["note"] for n in public["public_notes"]] == [ATTACK]


@pytest.mark.parametrize(
    ("body", "field", "english", "thai"),
    [
        ({"team": "NOPE", "reason": REASON}, "team", "there is no team 'NOPE'", "ไม่มีทีม 'NOPE'"),
        ({"team": "T1", "reason": REASON}, "team", "is with team T1 already", "อยู่กับทีม T1 อยู่แล้ว"),
        ({"team": "   ", "reason": REASON}, "team", "choose the team", "เลือกทีม"),
        ({"team": "T2", "reason": ""}, "reason", "say why", "ระบุเหตุผล"),
        ({"team": "T2", "reason": "  \n "}, "reason", "say why", "ระบุเหตุผล"),
        ({"team": "T2"}, "reason", "", ""),
        ({"team": "T2", "reason": "x" * (NOTE_MAX + 1)}, "reason", "4,000", "4,000"),
        ({"team": "T2", "reason": "a\x00b"}, "reason", "NUL", "NUL"),
        ({"team": "T\x002", "reason": REASON}, "team", "NUL", "NUL"),
        (
            {"team": "T2", "reason": REASON, "public_note": "y" * (NOTE_MAX + 1)},
            "public_note",
            "4,000",
            "4,000",
        ),
        ({"team": "T2", "reason": REASON, "zone": "Z2"}, "zone", "", ""),
        ({"team": "T" * 65, "reason": REASON}, "team", "64", "64"),
    ],
)
def test_bad_forwards_name_the_field_in_english_and_thai_and_write_nothing(
    city_app: Any, engine: Engine, body: dict[str, Any], field: str, english: str, thai: str
) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    before, written = report_row(engine, report), counts(engine)
    for lang, words in (("en", english), ("th", thai)):
        answer = forward(client, report, key(keys.t1) | {"Accept-Language": lang}, **body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field
        assert words in answer.json()["detail"], (lang, answer.json())
    assert report_row(engine, report) == before and counts(engine) == written


def test_a_huge_body_or_a_file_is_refused_before_it_is_read(city_app: Any, engine: Engine) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    before, written = report_row(engine, report), counts(engine)
    huge = forward(client, report, key(keys.t1), team="T2", reason="x" * 100_000)
    assert huge.status_code == 422 and huge.json()["field"] == "reason"
    assert "4,000" in huge.json()["detail"]
    with_file = client.post(
        f"/api/reports/{report}/forward",
        data={"team": "T2", "reason": REASON},
        files={"photo": ("x.png", b"not a photo", "image/png")},
        headers=key(keys.t1),
    )
    assert with_file.status_code == 422 and with_file.json()["field"] == "body"
    assert report_row(engine, report) == before and counts(engine) == written


def test_who_may_forward(city_app: Any, engine: Engine) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    before, written = report_row(engine, report), counts(engine)
    for headers, status in (
        ({}, 401),  # the public
        (key(keys.app), 401),  # an app's key is the public's
        (key(keys.planner), 403),  # planners look, they do not dispatch
        (key(keys.t2), 404),  # another crew cannot see it, so cannot send it anywhere
    ):
        answer = forward(client, report, headers, team="T2", reason=REASON)
        assert answer.status_code == status, (headers, answer.text)
    thai = forward(
        client, report, key(keys.planner) | {"Accept-Language": "th"}, team="T2", reason=REASON
    )
    assert thai.status_code == 403 and "ส่งต่อ" in thai.json()["detail"]
    assert forward(client, 10**12, key(keys.admin), team="T2", reason=REASON).status_code == 404
    assert report_row(engine, report) == before and counts(engine) == written


def test_only_open_work_is_forwarded(city_app: Any, engine: Engine) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    move(client, keys, report, "resolved")
    before, written = report_row(engine, report), counts(engine)
    answer = forward(client, report, key(keys.admin), team="T2", reason=REASON)
    assert answer.status_code == 409 and "only open work" in answer.json()["detail"]
    assert report_row(engine, report) == before and counts(engine) == written


def test_a_forward_moves_the_report_between_live_streams(
    city_app: Any, engine: Engine, db_url: str
) -> None:
    client, city, keys = city_app
    report = file_report(client, keys)
    hub = LiveHub(db_url)
    hub.start()
    try:
        inbox = collect(hub)
        with engine.begin() as conn:
            forward_report(
                conn,
                report,
                to_team="T2",
                reason=REASON,
                principal=Principal(role="admin", user_id=1, name="Dispatcher"),
                notify=None,
            )
        event = inbox.get(timeout=2)
        while "from_team_id" not in event:  # the report's creation may come through first
            event = inbox.get(timeout=2)
    finally:
        hub.stop()
    assert (event["op"], event["id"], event["team_id"]) == ("update", report, city.teams["T2"])
    assert (event["from_team_id"], event["from_zone_id"]) == (city.teams["T1"], city.zones["Z1"])
    assert REASON not in json.dumps(event)
    admin = LiveAudience(Principal(role="admin", key_id=1), 100.0)
    crew_one = LiveAudience(
        Principal(role="field_team", team_id=city.teams["T1"], key_id=2),
        100.0,
        frozenset({city.zones["Z1"]}),
    )
    crew_two = LiveAudience(
        Principal(role="field_team", team_id=city.teams["T2"], key_id=3),
        100.0,
        frozenset({city.zones["Z2"]}),
    )
    public = LiveAudience(ANONYMOUS, 100.0)
    leave = {"kind": "report", "op": "leave", "id": report}
    # Lists and maps watching where it was drop it; those watching where it went show it.
    assert for_stream(event, crew_one, zone_id=None, team_id=city.teams["T1"]) == leave
    assert for_stream(event, admin, zone_id=city.zones["Z1"], team_id=None) == leave
    assert for_stream(event, public, zone_id=city.zones["Z1"], team_id=None) == leave
    shown = for_stream(event, crew_two, zone_id=None, team_id=city.teams["T2"])
    assert shown is not None and shown["team_id"] == city.teams["T2"] and shown["op"] == "update"
    assert for_stream(event, admin, zone_id=city.zones["Z2"], team_id=None) is None
    # The public never learns which teams and zones it moved between.
    unfiltered = for_stream(event, public, zone_id=None, team_id=None)
    assert unfiltered is not None
    assert not {"team_id", "zone_id", "from_team_id", "from_zone_id"} & set(unfiltered)
    # Nor that a hidden report left a zone.
    with engine.begin() as conn:
        hide_report(conn, report, principal=Principal(role="admin", key_id=1), reason="x")
    hidden = event | {"hidden": True}
    assert for_stream(hidden, public, zone_id=city.zones["Z1"], team_id=None) is None
    assert for_stream(hidden, admin, zone_id=city.zones["Z1"], team_id=None) == leave
