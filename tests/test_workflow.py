"""Working reports: transitions, audit trail, roles, team queues and merging duplicates."""

import io

from PIL import Image
from sqlalchemy import text

ROAD = {"category": "road", "description": "หลุม", "lat": 8.405, "lon": 100.011}  # T1's zone


def key(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 128, 0)).save(out, format="PNG")
    return out.getvalue()


def test_field_team_moves_its_report_along_the_workflow(city_app) -> None:
    client, _, keys = city_app
    report = client.post("/api/reports", json=ROAD).json()["id"]
    for status in ("acknowledged", "in_progress"):
        moved = client.post(
            f"/api/reports/{report}/status", json={"status": status}, headers=key(keys.t1)
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["status"] == status
    done = client.post(
        f"/api/reports/{report}/status",
        data={"status": "resolved", "note": "ซ่อมแล้ว / patched", "public_note": "ซ่อมเสร็จ"},
        files={"photo": ("after.png", png(), "image/png")},
        headers=key(keys.t1),
    )
    assert done.status_code == 200, done.text
    assert done.json()["next_statuses"] == ["closed", "reopened"]
    (after_photo,) = done.json()["photo_ids"]
    closed = client.post(
        f"/api/reports/{report}/status", json={"status": "closed"}, headers=key(keys.t1)
    )
    assert closed.status_code == 200

    events = client.get(f"/api/reports/{report}/events", headers=key(keys.planner)).json()
    assert [e["kind"] for e in events] == ["created", "status", "status", "status", "status"]
    assert [e["to_status"] for e in events] == [
        "open",
        "acknowledged",
        "in_progress",
        "resolved",
        "closed",
    ]
    resolved = events[3]
    assert resolved["actor"] == "field_team:crew one"
    assert resolved["note"] == "ซ่อมแล้ว / patched"
    assert resolved["public_note"] == "ซ่อมเสร็จ"
    assert resolved["photo_ids"] == [after_photo]
    assert client.get(f"/api/reports/{report}").json()["resolved_at"] is not None


def test_transitions_outside_the_workflow_are_refused(city_app) -> None:
    client, _, keys = city_app
    report = client.post("/api/reports", json=ROAD).json()["id"]
    answer = client.post(
        f"/api/reports/{report}/status", json={"status": "closed"}, headers=key(keys.t1)
    )
    assert answer.status_code == 409
    assert "it can move to: acknowledged, in_progress, resolved, rejected" in answer.text
    unknown = client.post(
        f"/api/reports/{report}/status", json={"status": "fixed"}, headers=key(keys.t1)
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "status"


def test_roles_decide_who_sees_and_changes_a_report(city_app) -> None:
    client, _, keys = city_app
    report = client.post("/api/reports", json=ROAD | {"reporter_contact": "081-555-0101"}).json()[
        "id"
    ]
    # The public reads the report but never the contact, and cannot change it.
    public = client.get(f"/api/reports/{report}")
    assert public.status_code == 200 and "081-555-0101" not in public.text
    assert (
        client.post(f"/api/reports/{report}/status", json={"status": "rejected"}).status_code == 403
    )
    # Another field team: the report does not exist for it.
    for method, path, payload in (
        ("get", f"/api/reports/{report}", None),
        ("post", f"/api/reports/{report}/status", {"status": "acknowledged"}),
        ("get", f"/api/reports/{report}/events", None),
    ):
        answer = client.request(method, path, json=payload, headers=key(keys.t2))
        assert answer.status_code == 404, (path, answer.text)
    # Its own team sees the contact; a planner reads but may not change.
    assert (
        client.get(f"/api/reports/{report}", headers=key(keys.t1)).json()["reporter_contact"]
        == "081-555-0101"
    )
    planner = client.post(
        f"/api/reports/{report}/status", json={"status": "acknowledged"}, headers=key(keys.planner)
    )
    assert planner.status_code == 403
    bad = client.get(f"/api/reports/{report}", headers=key("im_not-a-real-key"))
    assert bad.status_code == 401


def test_team_queue_lists_open_work_soonest_due_first(city_app, engine) -> None:
    client, city, keys = city_app
    ids = [client.post("/api/reports", json=ROAD).json()["id"] for _ in range(3)]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET due_at = now() - interval '1 hour' WHERE id = :id"),
            {"id": ids[2]},
        )
    client.post(f"/api/reports/{ids[0]}/status", json={"status": "resolved"}, headers=key(keys.t1))
    queue = client.get(f"/api/teams/{city.teams['T1']}/queue", headers=key(keys.t1)).json()
    assert [r["id"] for r in queue["reports"]] == [ids[2], ids[1]]
    assert queue["overdue"] == 1 and queue["reports"][0]["overdue"] is True
    assert (
        client.get(f"/api/teams/{city.teams['T1']}/queue", headers=key(keys.t2)).status_code == 404
    )
    assert client.get(f"/api/teams/{city.teams['T1']}/queue").status_code == 401
    planner = client.get(f"/api/teams/{city.teams['T1']}/queue", headers=key(keys.planner))
    assert planner.status_code == 200


def test_merging_a_duplicate_links_it_and_counts_a_supporter(city_app) -> None:
    client, _, keys = city_app
    original = client.post("/api/reports", json=ROAD).json()["id"]
    copy = client.post("/api/reports", json=ROAD | {"lat": 8.4051}).json()
    assert [d["id"] for d in copy["likely_duplicates"]] == [original]
    merged = client.post(
        f"/api/reports/{copy['id']}/merge", json={"original_id": original}, headers=key(keys.t1)
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["original_supporters"] == 1
    detail = client.get(f"/api/reports/{copy['id']}").json()
    assert (detail["status"], detail["duplicate_of"]) == ("duplicate", original)
    again = client.post(
        f"/api/reports/{copy['id']}/merge", json={"original_id": original}, headers=key(keys.t1)
    )
    assert again.status_code == 409
    reopened = client.post(
        f"/api/reports/{copy['id']}/status", json={"status": "reopened"}, headers=key(keys.t1)
    )
    assert reopened.status_code == 200
    assert client.get(f"/api/reports/{original}").json()["supporters"] == 0
