"""Staff hide a report from the public with a reason: it leaves every public output, stays in
staff views with the reason, and the change is in the audit trail."""

from __future__ import annotations

import csv
import io
import json
import queue
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, text

from geo.access.policy import ANONYMOUS, Principal
from geo.reports.search import ReportFilter, find_reports
from geo.vocabulary import NOTE_MAX
from tests.test_privacy import png, public_answers

MARKER = "HiddenMarker7731"
REASON = "spam: {{7*7}} {% if %} <img src=x onerror=alert(1)> '; DROP TABLE reports; --"
PLANNER = Principal(role="planner", key_id=2, name="planner")


def file_report(client: Any, description: str) -> dict[str, Any]:
    answer = client.post(
        "/api/reports",
        data={"category": "road", "description": description, "lat": "8.405", "lon": "100.005"},
        files={"photo": ("p.png", png(), "image/png")},
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def hide(client: Any, report_id: int, key: str, reason: Any = REASON) -> Any:
    return client.post(
        f"/api/reports/{report_id}/hide", json={"reason": reason}, headers={"X-API-Key": key}
    )


@pytest.fixture
def hidden(city_app: Any) -> tuple[Any, Any, Any, dict[str, Any], dict[str, Any]]:
    """(client, city, keys, hidden report, visible report): one report hidden by a planner."""
    client, city, keys = city_app
    secret = file_report(client, f"{MARKER} abusive text")
    shown = file_report(client, "VisibleReport pothole")
    answer = hide(client, secret["id"], keys.planner)
    assert answer.status_code == 200, answer.text
    return client, city, keys, secret, shown


def test_a_hidden_report_is_in_no_public_output(hidden: Any) -> None:
    client, city, keys, secret, shown = hidden
    token = secret["tracking_url"].rsplit("/", 1)[1]
    report_id, photo_id = str(secret["id"]), str(secret["photo_ids"][0])
    values = {
        "token": token,
        "report_id": report_id,
        "photo_id": photo_id,
        "team_id": str(city.teams["T1"]),
        "service_request_id": report_id,
        "service_code": "road",
        "fmt": "json",
        "format": "json",
    }
    checked = 0
    for variant, answer in public_answers(client, values, keys.app):
        checked += 1
        assert MARKER.encode() not in answer.content, variant
        assert b"DROP TABLE" not in answer.content, variant
    assert checked >= 10
    # The report itself, its photo, its Open311 record and its status page are not found.
    for url in (
        f"/api/reports/{report_id}",
        f"/api/photos/{photo_id}",
        f"/open311/v2/requests/{report_id}.json",
        f"/r/{token}",
    ):
        for headers in ({}, {"X-API-Key": keys.app}):
            assert client.get(url, headers=headers).status_code == 404, url
    # Nor on the public map's list view, in either language or period.
    for url in ("/maps/public?view=list", "/maps/public?view=list&lang=en&fixed_days=365"):
        page = client.get(url)
        assert page.status_code == 200
        assert f"/r/{token}" not in page.text, url
        assert shown["tracking_url"].rsplit("/", 1)[1] in page.text, url
    # The report next to it is still published everywhere.
    assert "VisibleReport" in client.get("/api/reports").text
    assert "VisibleReport" in client.get("/open311/v2/requests.json").text
    assert "VisibleReport" in client.get("/api/reports?format=csv").text
    assert client.get(f"/api/photos/{shown['photo_ids'][0]}").status_code == 200


def test_staff_still_see_it_with_the_reason(hidden: Any) -> None:
    client, _, keys, secret, _ = hidden
    for key in (keys.planner, keys.admin, keys.t1):  # T1 works the report's zone
        staff = {"X-API-Key": key}
        one = client.get(f"/api/reports/{secret['id']}", headers=staff)
        assert one.status_code == 200
        assert one.json()["hidden_reason"] == REASON, "kept as written, never evaluated"
        assert one.json()["hidden_at"] is not None
        assert MARKER in client.get("/api/reports", headers=staff).text
        assert client.get(f"/api/photos/{secret['photo_ids'][0]}", headers=staff).status_code == 200
    zone = client.get("/maps/zone?zone=Z1", headers={"X-API-Key": keys.t1})
    assert zone.status_code == 200 and MARKER in zone.text, "on the crew's own map"
    rows = list(
        csv.DictReader(
            io.StringIO(
                client.get(
                    "/api/reports?format=csv", headers={"X-API-Key": keys.planner}
                ).content.decode("utf-8-sig")
            )
        )
    )
    [row] = [r for r in rows if r["id"] == str(secret["id"])]
    assert row["hidden_reason"] == REASON
    shown_rows = [r for r in rows if r["id"] != str(secret["id"])]
    assert shown_rows and all(r["hidden_reason"] == "" for r in shown_rows)


def test_search_applies_the_rule(hidden: Any, engine: Engine) -> None:
    _, _, _, secret, shown = hidden
    with engine.connect() as conn:
        public = {r["id"] for r in find_reports(conn, ReportFilter(), ANONYMOUS)}
        staff = {r["id"] for r in find_reports(conn, ReportFilter(), PLANNER)}
    assert public == {shown["id"]}
    assert staff == {shown["id"], secret["id"]}


def test_hiding_and_showing_again_are_audited(hidden: Any) -> None:
    client, _, keys, secret, _ = hidden
    shown_again = client.post(
        f"/api/reports/{secret['id']}/unhide",
        json={"reason": "checked: a real problem"},
        headers={"X-API-Key": keys.admin},
    )
    assert shown_again.status_code == 200, shown_again.text
    assert shown_again.json()["hidden"] is False and shown_again.json()["hidden_reason"] is None
    trail = client.get(
        f"/api/reports/{secret['id']}/events", headers={"X-API-Key": keys.planner}
    ).json()
    moderation = [(e["kind"], e["actor"], e["note"]) for e in trail if "hidden" in e["kind"]]
    assert moderation == [
        ("hidden", "planner:planner", REASON),
        ("unhidden", "admin:admin", "checked: a real problem"),
    ]
    # Public again, everywhere.
    assert client.get(f"/api/reports/{secret['id']}").status_code == 200
    assert MARKER in client.get("/open311/v2/requests.json").text
    # Showing it needs no reason.
    assert hide(client, secret["id"], keys.planner).status_code == 200
    again = client.post(f"/api/reports/{secret['id']}/unhide", headers={"X-API-Key": keys.planner})
    assert again.status_code == 200, again.text


def test_only_planners_and_admins_may_hide(city_app: Any) -> None:
    client, _, keys = city_app
    report = file_report(client, "x")
    assert client.post(f"/api/reports/{report['id']}/hide", json={"reason": "r"}).status_code == 401
    assert hide(client, report["id"], keys.app).status_code == 401
    refused = hide(client, report["id"], keys.t1)
    assert refused.status_code == 403
    assert "planners and administrators" in refused.json()["detail"]
    assert client.get(f"/api/reports/{report['id']}").status_code == 200, "still public"
    assert hide(client, report["id"], keys.admin).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "bad\x00reason"}, "reason"),
        ({"reason": "x" * (NOTE_MAX + 1)}, "reason"),
        ({"reason": 42}, "reason"),
        ({"reason": "ok", "extra": 1}, "extra"),
    ],
)
def test_a_reason_is_required_and_checked(city_app: Any, body: Any, field: str) -> None:
    client, _, keys = city_app
    report = file_report(client, "x")
    answer = client.post(
        f"/api/reports/{report['id']}/hide", json=body, headers={"X-API-Key": keys.planner}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert client.get(f"/api/reports/{report['id']}").status_code == 200, "nothing changed"


def test_hiding_twice_unknown_reports_and_showing_a_shown_one_are_refused(city_app: Any) -> None:
    client, _, keys = city_app
    report = file_report(client, "x")
    assert hide(client, report["id"], keys.planner).status_code == 200
    assert hide(client, report["id"], keys.planner).status_code == 409
    assert hide(client, 999_999, keys.planner).status_code == 404
    assert hide(client, 0, keys.planner).status_code == 422
    planner = {"X-API-Key": keys.planner}
    assert client.post(f"/api/reports/{report['id']}/unhide", headers=planner).status_code == 200
    assert client.post(f"/api/reports/{report['id']}/unhide", headers=planner).status_code == 409
    bad = client.post(f"/api/reports/{report['id']}/unhide", content=b"{oops", headers=planner)
    assert bad.status_code == 422


def _listen(
    client: Any, headers: dict[str, str], inbox: queue.Queue[Any], path: str = "/api/live"
) -> None:
    """Put every event of live stream ``path`` in ``inbox`` as (kind, data), until the app stops."""
    try:
        with client.stream("GET", path, headers=headers) as answer:
            kind = None
            for line in answer.iter_lines():
                if line.startswith(": connected"):
                    inbox.put(("connected", None))
                elif line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: "):
                    inbox.put((kind, json.loads(line[len("data: ") :])))
    except Exception:  # the stream is cut when the test's app shuts down
        return


def _until_report(inbox: queue.Queue[Any], report_id: int) -> list[tuple[str, Any]]:
    """Events up to and including the first report event about ``report_id``."""
    seen = []
    while True:
        kind, data = inbox.get(timeout=10)
        seen.append((kind, data))
        if kind == "report" and data["id"] == report_id:
            return seen


def test_live_events_of_a_hidden_report_reach_staff_only(city_app: Any, engine: Engine) -> None:
    client, _, keys = city_app
    inboxes: dict[str, queue.Queue[Any]] = {"public": queue.Queue(), "planner": queue.Queue()}
    headers = {"public": {}, "planner": {"X-API-Key": keys.planner}}
    for who, inbox in inboxes.items():
        threading.Thread(target=_listen, args=(client, headers[who], inbox), daemon=True).start()
        assert inbox.get(timeout=10) == ("connected", None)
    report = file_report(client, f"{MARKER} live")
    for inbox in inboxes.values():
        _until_report(inbox, report["id"])  # everyone saw it filed, before it was hidden
    assert hide(client, report["id"], keys.planner).status_code == 200
    moved = client.post(
        f"/api/reports/{report['id']}/status",
        json={"status": "acknowledged"},
        headers={"X-API-Key": keys.admin},
    )
    assert moved.status_code == 200, moved.text
    # A report filed afterwards marks the end of what each stream was sent.
    later = file_report(client, "later")
    staff_events = _until_report(inboxes["planner"], later["id"])
    about = [d for k, d in staff_events if k == "report" and d["id"] == report["id"]]
    assert [(d["op"], d["hidden"]) for d in about] == [("update", True), ("update", True)]
    assert about[-1]["status"] == "acknowledged"
    public_events = _until_report(inboxes["public"], later["id"])
    assert not [d for k, d in public_events if k == "report" and d["id"] == report["id"]]
    assert ("resync", {"kind": "resync"}) in public_events, "the public map reloads without it"
    with engine.connect() as conn:
        kinds = list(
            conn.execute(
                text("SELECT kind FROM report_events WHERE report_id = :id ORDER BY id"),
                {"id": report["id"]},
            ).scalars()
        )
    assert kinds == ["created", "hidden", "status"]


def test_a_hidden_report_is_never_offered_as_a_likely_duplicate(hidden: Any) -> None:
    client, _, _, secret, shown = hidden
    # Filed where both lie: the answer names the visible one, never the hidden one, whose
    # existence (and its abusive text, on a status page) would leak through the offer.
    nearby = file_report(client, "Another pothole here")
    offered = [d["id"] for d in nearby["likely_duplicates"]]
    assert shown["id"] in offered
    assert secret["id"] not in offered
