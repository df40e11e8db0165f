"""Staff sign-in at /login: the form, the session cookie, CSRF, logout and the lock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, text

from geo.access.accounts import create_user
from geo.access.sessions import SESSION_COOKIE, session_principal, start_session
from geo.settings import AccountSettings

PASSWORD = "correct horse battery"


def add_user(
    engine: Engine, email: str, role: str, team: str | None = None, name: str = "Somchai Jaidee"
) -> int:
    """An account in the tiny city, with ``PASSWORD``."""
    with engine.begin() as conn:
        user = create_user(
            conn, email=email, name=name, role=role, password=PASSWORD, team_code=team
        )
    return user.id


def csrf(client: Any) -> str:
    """The CSRF token of ``client``'s browser, fetching the form if it has none yet."""
    if "csrftoken" not in client.cookies:
        client.get("/login")
    return str(client.cookies["csrftoken"])


def sign_in(
    client: Any, email: str, password: str = PASSWORD, path: str = "/login", **form: str
) -> Any:
    """Fill and send the sign-in form as a browser would (not following the redirect)."""
    client.get("/login")
    return client.post(
        path,
        data={"email": email, "password": password, "csrftoken": csrf(client), **form},
        follow_redirects=False,
    )


def report_in(client: Any, lon: str = "100.005") -> int:
    """A report filed by the public (lon 100.005 lies in T1's zone Z1, 100.015 in Z2)."""
    created = client.post(
        "/api/reports",
        data={"category": "road", "description": "ทางเท้าแตก", "lat": "8.405", "lon": lon},
    )
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


@pytest.fixture
def crew(city_app: Any, engine: Engine) -> Any:
    client, city, keys = city_app
    add_user(engine, "crew.one@city.example", "field_team", "T1")
    return client, city, keys


def test_the_form_is_thai_by_default_and_english_when_asked(crew: Any) -> None:
    client, _, _ = crew
    thai = client.get("/login?next=/maps/wards")
    assert thai.status_code == 200
    assert 'lang="th"' in thai.text and "เข้าสู่ระบบ" in thai.text
    for name in ('name="email"', 'name="password"', 'name="next"', 'name="csrftoken"'):
        assert name in thai.text
    assert 'autocomplete="username"' in thai.text
    assert 'autocomplete="current-password"' in thai.text
    assert 'value="/maps/wards"' in thai.text
    assert 'role="alert"' in thai.text
    policy = thai.headers["content-security-policy"]
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "<script" not in thai.text and "onclick" not in thai.text
    assert thai.headers["cache-control"] == "no-store"
    english = client.get("/login?lang=en")
    assert 'lang="en"' in english.text and "Sign in" in english.text
    by_header = client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert 'lang="en"' in by_header.text


def _cookie_flags(answer: Any) -> str:
    sets = [v for k, v in answer.headers.multi_items() if k == "set-cookie"]
    (session,) = [v for v in sets if v.startswith(SESSION_COOKIE + "=")]
    return session.lower()


def test_signing_in_answers_303_to_next_with_a_guarded_cookie(crew: Any) -> None:
    client, _, _ = crew
    answer = sign_in(client, "Crew.One@city.example", next="/maps/zone?zone=Z1&lang=en")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/maps/zone?zone=Z1&lang=en"
    flags = _cookie_flags(answer)
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "secure" not in flags, "plain HTTP (no TLS proxy): a Secure cookie would be lost"
    page = client.get("/maps/zone?zone=Z1")
    assert page.status_code == 200, "the zone page accepts the session"


def test_the_cookie_is_secure_over_https(crew: Any) -> None:
    client, _, _ = crew
    client.get("https://testserver/login")
    answer = client.post(
        "https://testserver/login",
        data={
            "email": "crew.one@city.example",
            "password": PASSWORD,
            "csrftoken": csrf(client),
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "secure" in _cookie_flags(answer)


def test_the_csrf_cookie_is_secure_over_https_only(crew: Any) -> None:
    client, _, _ = crew
    plain = client.get("/login").headers["set-cookie"].lower()
    assert plain.startswith("csrftoken=") and "secure" not in plain
    client.cookies.clear()
    tls = client.get("https://testserver/login").headers["set-cookie"].lower()
    assert tls.startswith("csrftoken=") and "secure" in tls


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/%0a//evil.example\n",
        "",
        "work",
        "x" * 5000,
    ],
)
def test_next_never_leaves_the_site(crew: Any, target: str) -> None:
    client, _, _ = crew
    answer = sign_in(client, "crew.one@city.example", next=target)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/work"


def test_a_wrong_login_gets_the_form_again_in_the_persons_language(crew: Any) -> None:
    client, _, _ = crew
    client.get("/login")
    wrong = client.post(
        "/login?lang=en",
        data={
            "email": "crew.one@city.example",
            "password": "not the password",
            "csrftoken": csrf(client),
        },
    )
    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("text/html")
    assert "The e-mail address or the password is not right." in wrong.text
    assert 'value="crew.one@city.example"' in wrong.text, "the address stays filled in"
    assert "not the password" not in wrong.text, "the password is never sent back"
    thai = client.post(
        "/login",
        data={
            "email": "crew.one@city.example",
            "password": "not the password",
            "csrftoken": csrf(client),
        },
    )
    assert "อีเมลหรือรหัสผ่านไม่ถูกต้อง" in thai.text
    assert SESSION_COOKIE not in client.cookies


def _message(page: str) -> str:
    found = re.search(r'<div id="problem"[^>]*>(.*?)</div>', page, re.S)
    assert found
    return found.group(1).strip()


def test_an_unknown_address_gets_the_same_answer_as_a_wrong_password(crew: Any) -> None:
    client, _, _ = crew
    unknown = sign_in(client, "nobody@city.example", "not the password")
    wrong = sign_in(client, "crew.one@city.example", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert _message(unknown.text) == _message(wrong.text)


def test_ten_wrong_passwords_lock_the_account(crew: Any) -> None:
    client, _, _ = crew
    for attempt in range(9):
        assert sign_in(client, "crew.one@city.example", f"wrong {attempt:>12}").status_code == 401
    tenth = sign_in(
        client,
        "crew.one@city.example",
        "wrong number ten",
    )
    assert tenth.status_code == 401
    assert "ล็อก" in tenth.text
    right = sign_in(client, "crew.one@city.example", PASSWORD, path="/login?lang=en")
    assert right.status_code == 401 and "locked" in right.text
    assert SESSION_COOKIE not in client.cookies


def test_a_lock_stops_new_sign_ins_but_signs_nobody_out(crew: Any) -> None:
    """Whoever guesses at an address must not be able to sign its owner out of their work."""
    from fastapi.testclient import TestClient

    client, _, _ = crew
    assert sign_in(client, "crew.one@city.example").status_code == 303
    page = client.get("/maps/zone?zone=Z1", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 200
    guesser = TestClient(client.app)
    for attempt in range(10):
        sign_in(guesser, "crew.one@city.example", f"guess number {attempt:>6}")
    assert sign_in(guesser, "crew.one@city.example").status_code == 401  # locked
    still = client.get(
        "/maps/zone?zone=Z1", headers={"Accept": "text/html"}, follow_redirects=False
    )
    assert still.status_code == 200


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("{{7*7}}", "{% for x in y %}"),
        ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),
        ("a@b.example\x00", "password\x00password"),
        ("x" * 100_000, "y" * 100_000),
        ("' OR 1=1 --", "' OR '1'='1"),
    ],
)
def test_attack_input_in_the_form_is_a_plain_failed_sign_in(
    crew: Any, email: str, password: str
) -> None:
    client, _, _ = crew
    answer = sign_in(client, email, password)
    assert answer.status_code == 401
    assert "<img src=x" not in answer.text
    assert "49" not in _message(answer.text)
    assert "{{7*7}}" in answer.text if email == "{{7*7}}" else True


def test_a_form_without_its_csrf_token_is_refused_and_signs_no_one_in(crew: Any) -> None:
    client, _, _ = crew
    bare = client.post(
        "/login",
        data={"email": "crew.one@city.example", "password": PASSWORD},
        follow_redirects=False,
    )
    assert bare.status_code == 403
    assert SESSION_COOKIE not in client.cookies
    client.get("/login")
    forged = client.post(
        "/login",
        data={"email": "crew.one@city.example", "password": PASSWORD, "csrftoken": "forged"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert SESSION_COOKIE not in client.cookies


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("email=a&password=b&csrftoken=%C3%88%C3%84%00", "application/x-www-form-urlencoded"),
        ("email=\xff\xfe&csrftoken=x", "application/x-www-form-urlencoded"),
        ("--x\r\n", "multipart/form-data"),
    ],
)
def test_an_unreadable_form_or_token_is_refused_not_a_server_error(
    crew: Any, body: str, kind: str
) -> None:
    client, _, _ = crew
    client.get("/login")
    answer = client.post("/login", content=body.encode("latin-1"), headers={"Content-Type": kind})
    assert answer.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def _status(engine: Engine, report_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT status FROM reports WHERE id = :id"), {"id": report_id}
            ).scalar_one()
        )


def test_a_session_post_needs_the_csrf_token(crew: Any, engine: Engine) -> None:
    client, _, keys = crew
    rid = report_in(client)
    assert sign_in(client, "crew.one@city.example").status_code == 303
    refused = client.post(f"/api/reports/{rid}/status", json={"status": "acknowledged"})
    assert refused.status_code == 403
    assert _status(engine, rid) == "open", "a refused request changes nothing"
    moved = client.post(
        f"/api/reports/{rid}/status",
        json={"status": "acknowledged"},
        headers={"X-CSRFToken": csrf(client)},
    )
    assert moved.status_code == 200, moved.text
    assert _status(engine, rid) == "acknowledged"
    # A key header needs no token, cookies or not: apps and scripts work as before.
    by_key = client.post(
        f"/api/reports/{rid}/status",
        json={"status": "in_progress"},
        headers={"X-API-Key": keys.t1},
    )
    assert by_key.status_code == 200, by_key.text


def test_a_signed_in_person_can_still_use_the_residents_form(crew: Any) -> None:
    client, _, _ = crew
    sign_in(client, "crew.one@city.example")
    from tests.test_resident_pages import send

    sent = send(
        client,
        {"category": "road", "description": "ไฟดับ", "lat": "8.405", "lon": "100.005"},
        photos=1,
    )
    assert sent.status_code == 303, sent.text[:300]


def test_the_audit_trail_names_the_person(crew: Any, engine: Engine) -> None:
    client, _, keys = crew
    rid = report_in(client)
    sign_in(client, "crew.one@city.example")
    client.post(
        f"/api/reports/{rid}/status",
        json={"status": "acknowledged"},
        headers={"X-CSRFToken": csrf(client)},
    )
    trail = client.get(f"/api/reports/{rid}/events", headers={"X-API-Key": keys.planner})
    actors = (
        [event["actor"] for event in trail.json()["events"]]
        if isinstance(trail.json(), dict)
        else [event["actor"] for event in trail.json()]
    )
    assert any("Somchai Jaidee" in actor and actor.startswith("user:") for actor in actors)


def test_logout_ends_the_session(crew: Any) -> None:
    client, _, _ = crew
    sign_in(client, "crew.one@city.example")
    token = client.cookies[SESSION_COOKIE]
    assert client.get("/api/teams").status_code == 200
    out = client.post("/logout", data={"csrftoken": csrf(client)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert SESSION_COOKIE not in client.cookies
    # The old token is dead on the server too, not just forgotten by this browser.
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/maps/zone?zone=Z1").status_code == 401


def test_a_staff_page_sends_a_browser_without_a_session_to_the_form(crew: Any) -> None:
    client, _, _ = crew
    page = client.get(
        "/maps/zone?zone=Z1&lang=en", headers={"Accept": "text/html"}, follow_redirects=False
    )
    assert page.status_code == 303
    where = urlsplit(page.headers["location"])
    assert where.path == "/login"
    assert parse_qs(where.query)["next"] == ["/maps/zone?zone=Z1&lang=en"]
    # Programs asking for JSON still get the JSON 401.
    assert client.get("/maps/zone?zone=Z1").status_code == 401
    assert client.get("/api/teams/1/queue", headers={"Accept": "text/html"}).status_code == 401


def test_a_key_in_the_url_still_works_but_is_marked_deprecated(crew: Any) -> None:
    client, _, keys = crew
    answer = client.get(f"/maps/zone?zone=Z1&key={keys.t1}", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["deprecation"] == "true"


# --- sessions in the core: the clock is a parameter ------------------------------------

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SETTINGS = AccountSettings(session_idle_minutes=60, session_max_hours=12)


def _session(engine: Engine) -> str:
    from geo.access.accounts import verify_login

    with engine.begin() as conn:
        user = verify_login(conn, "crew.one@city.example", PASSWORD, now=NOW, settings=SETTINGS)
        return start_session(conn, user, now=NOW, settings=SETTINGS).token


def _who(engine: Engine, token: str, at: datetime) -> Any:
    with engine.begin() as conn:
        return session_principal(conn, token, now=at, settings=SETTINGS)


def test_a_session_ends_after_an_idle_hour(crew: Any, engine: Engine) -> None:
    token = _session(engine)
    assert _who(engine, token, NOW + timedelta(minutes=59)) is not None
    # Used at 59 minutes, it lives another hour from then ...
    assert _who(engine, token, NOW + timedelta(minutes=118)) is not None
    # ... and not an hour after its last use.
    assert _who(engine, token, NOW + timedelta(minutes=179)) is None


def test_a_busy_session_still_ends_at_its_maximum_age(crew: Any, engine: Engine) -> None:
    token = _session(engine)
    at = NOW
    while at < NOW + timedelta(hours=11, minutes=30):
        at += timedelta(minutes=30)
        assert _who(engine, token, at) is not None
    assert _who(engine, token, NOW + timedelta(hours=12, minutes=1)) is None


def test_a_page_load_writes_the_last_use_at_most_once_a_minute(crew: Any, engine: Engine) -> None:
    token = _session(engine)
    for seconds in (10, 30, 59):
        _who(engine, token, NOW + timedelta(seconds=seconds))
    with engine.connect() as conn:
        seen = conn.execute(text("SELECT last_seen_at FROM staff_sessions")).scalar_one()
    assert seen == NOW
    _who(engine, token, NOW + timedelta(seconds=61))
    with engine.connect() as conn:
        seen = conn.execute(text("SELECT last_seen_at FROM staff_sessions")).scalar_one()
    assert seen == NOW + timedelta(seconds=61)


def test_signing_in_again_clears_the_persons_ended_sessions(crew: Any, engine: Engine) -> None:
    _session(engine)
    from geo.access.accounts import verify_login

    later = NOW + timedelta(hours=2)
    with engine.begin() as conn:
        user = verify_login(conn, "crew.one@city.example", PASSWORD, now=later, settings=SETTINGS)
        start_session(conn, user, now=later, settings=SETTINGS)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM staff_sessions")).scalar_one() == 1


def test_a_disabled_account_has_no_session(crew: Any, engine: Engine) -> None:
    token = _session(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET disabled_at = now()"))
    assert _who(engine, token, NOW + timedelta(minutes=1)) is None
    assert _who(engine, "{{7*7}}\x00" * 50, NOW) is None


# --- keys: expiry and last use ---------------------------------------------------------


def test_an_expired_key_is_refused_like_a_revoked_one(crew: Any, engine: Engine) -> None:
    client, city, keys = crew
    queue = f"/api/teams/{city.teams['T1']}/queue"
    assert client.get(queue, headers={"X-API-Key": keys.planner}).status_code == 200
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE api_keys SET expires_at = now() - interval '1 second' "
                "WHERE name = 'planner'"
            )
        )
    assert client.get(queue, headers={"X-API-Key": keys.planner}).status_code == 401


def test_a_keys_last_use_is_written_at_most_once_a_minute(crew: Any, engine: Engine) -> None:
    client, city, keys = crew
    queue = f"/api/teams/{city.teams['T1']}/queue"
    for _ in range(3):
        assert client.get(queue, headers={"X-API-Key": keys.planner}).status_code == 200
    with engine.connect() as conn:
        first = conn.execute(
            text("SELECT last_used_at FROM api_keys WHERE name = 'planner'")
        ).scalar_one()
    assert first is not None
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE api_keys SET last_used_at = last_used_at - interval '30 seconds'")
        )
    client.get(queue, headers={"X-API-Key": keys.planner})
    with engine.connect() as conn:
        after = conn.execute(
            text("SELECT last_used_at FROM api_keys WHERE name = 'planner'")
        ).scalar_one()
    assert after == first - timedelta(seconds=30), "used again within the minute: no write"


# --- a real browser on a phone ----------------------------------------------------------

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture


def test_a_crew_member_signs_in_on_a_phone_and_works_a_report_on_the_zone_map(
    browser: Any, db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from api.app import AppSettings, create_app
    from geo.settings import DatabaseSettings
    from tests.browser import running, screenshot, wait_until, watch
    from tests.fixtures import load_tiny_city

    monkeypatch.setenv("ISSUEMAP_MAP_TILES_URL", "none")
    with engine.begin() as conn:
        load_tiny_city(conn)
    add_user(engine, "crew.one@city.example", "field_team", "T1")
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    with running(app) as base:
        created = httpx.post(
            f"{base}/api/reports",
            json={"category": "road", "description": "หลุมบนถนน", "lat": 8.405, "lon": 100.005},
        )
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        page = browser.new_page(viewport={"width": 390, "height": 844}, locale="th-TH")
        seen = watch(page, base)
        page.goto(f"{base}/maps/zone?zone=Z1", wait_until="domcontentloaded")
        assert page.url.startswith(f"{base}/login?next="), "no session: the sign-in form"
        assert page.locator("html").get_attribute("lang") == "th"
        page.fill("#email", "crew.one@city.example")
        page.fill("#password", "not the password")
        page.click("button[type=submit]")
        page.wait_for_selector("#problem .error")
        assert "อีเมลหรือรหัสผ่านไม่ถูกต้อง" in page.inner_text("#problem")
        screenshot(page, "login-wrong-password-phone")
        # Chromium logs the form's 401 as a failed load; from here on nothing may fail.
        assert [e for e in seen.errors if "401" not in e] == [], seen.errors
        seen.errors.clear()
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/maps/zone?zone=Z1")
        wait_until(page, "window.issuemap && window.issuemap.map !== undefined")
        # The marker's status button posts with the session and its CSRF token.
        page.evaluate(
            """(rid) => {
                const m = window.issuemap.markers.getLayers().find(l => l.reportId === rid);
                window.issuemap.map.setView(m.getLatLng(), window.issuemap.map.getMaxZoom(),
                                            {animate: false});
                setTimeout(() => m.fire('click'), 300);
            }""",
            rid,
        )
        page.wait_for_selector(".leaflet-popup .im-actions button[data-status=acknowledged]")
        page.click(".leaflet-popup .im-actions button[data-status=acknowledged]")
        wait_until(
            page,
            "!document.querySelector('.leaflet-popup .im-error')"
            " && !document.querySelector("
            "'.leaflet-popup .im-actions button[data-status=acknowledged]')",
            timeout=5000,
        )
        screenshot(page, "zone-map-signed-in-phone")
        assert seen.errors == [], seen.errors
        page.close()
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT r.status, e.actor FROM reports AS r JOIN report_events AS e "
                "ON e.report_id = r.id AND e.to_status = 'acknowledged' WHERE r.id = :id"
            ),
            {"id": rid},
        ).one()
    assert row.status == "acknowledged"
    assert row.actor.startswith("user:") and row.actor.endswith(":Somchai Jaidee")
