"""The same role matrix holds for sessions as for keys (issue 13, point 6).

For each staff role, every request below is made twice: with that role's API key, and
signed in as a person of that role (the session cookie, plus the CSRF token a page would
send on a change). Both must answer the same status, and the same body where the body is
data (JSON); state-changing requests work on twin reports so each starts from the same
state.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.test_login import add_user, csrf, report_in, sign_in

ROLES = {
    "admin": ("admin", None, "admin@city.example"),
    "planner": ("planner", None, "planner@city.example"),
    "t1": ("field_team", "T1", "crew.one@city.example"),
    "t2": ("field_team", "T2", "crew.two@city.example"),
}


def _reads(city: Any, reports: dict[str, int]) -> list[str]:
    t1, t2 = city.teams["T1"], city.teams["T2"]
    return [
        "/api/reports",
        f"/api/reports/{reports['z1']}",
        f"/api/reports/{reports['z2']}",
        f"/api/reports/{reports['z1']}/events",
        f"/api/reports/{reports['z2']}/events",
        f"/api/teams/{t1}/queue",
        f"/api/teams/{t2}/queue",
        "/admin/routes",
        "/admin/webhooks",
        "/maps/zone?zone=Z1",
        "/maps/zone?zone=Z2",
        "/maps/wards",
        f"/api/reports?format=csv&team={t1}",
    ]


def _changes(reports: dict[str, int]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"/api/reports/{reports['z1']}/status", {"status": "acknowledged"}),
        (f"/api/reports/{reports['z2']}/status", {"status": "acknowledged"}),
        ("/admin/keys", {"name": "a script", "role": "public"}),
        ("/admin/routes", {"category": "road", "team": "T2", "zone": "Z2"}),
    ]


def _comparable(answer: Any) -> object:
    if answer.headers.get("content-type", "").startswith("application/json"):
        body = answer.json()
        if isinstance(body, dict):
            # New keys and routes get new ids and secrets; everything else must match.
            body = {k: v for k, v in body.items() if k not in {"id", "key"}}
        return body
    if answer.headers.get("content-type", "").startswith("text/csv"):
        return answer.text
    return None  # HTML pages: element ids are random, the status says what was allowed


@pytest.mark.parametrize("role", sorted(ROLES))
def test_a_session_may_see_and_change_exactly_what_a_key_of_its_role_may(
    city_app: Any, engine: Engine, role: str
) -> None:
    client, city, keys = city_app
    kind, team, email = ROLES[role]
    add_user(engine, email, kind, team, name=f"Person {role}")
    key = {"admin": keys.admin, "planner": keys.planner, "t1": keys.t1, "t2": keys.t2}[role]
    browser = TestClient(client.app)
    assert sign_in(browser, email).status_code == 303
    by_key = {"z1": report_in(client), "z2": report_in(client, "100.015")}
    by_session = {"z1": report_in(client), "z2": report_in(client, "100.015")}

    for path in _reads(city, by_key):
        with_key = client.get(path, headers={"X-API-Key": key})
        with_session = browser.get(path)
        assert with_session.status_code == with_key.status_code, (role, path)
        assert _comparable(with_session) == _comparable(with_key), (role, path)

    for (path, body), (twin, _) in zip(_changes(by_key), _changes(by_session), strict=True):
        with_key = client.post(path, json=body, headers={"X-API-Key": key})
        with_session = browser.post(twin, json=body, headers={"X-CSRFToken": csrf(browser)})
        assert with_session.status_code == with_key.status_code, (role, path, with_key.text)

    # Without its CSRF token the session changes nothing, whatever its role.
    bare = browser.post(f"/api/reports/{by_session['z1']}/status", json={"status": "in_progress"})
    assert bare.status_code == 403


def test_no_session_and_an_ended_one_are_the_public(city_app: Any) -> None:
    client, city, _ = city_app
    browser = TestClient(client.app)
    browser.cookies.set("issuemap_session", "not-a-session")
    for path in (f"/api/teams/{city.teams['T1']}/queue", "/maps/public", "/admin/routes"):
        public = TestClient(client.app).get(path)
        assert browser.get(path).status_code == public.status_code, path
