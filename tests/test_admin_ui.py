"""The admin pages at /admin: who may open them, each form's writes and refusals, CSRF.

Driven over HTTP through the app with a real PostGIS, signed in at /login as a browser
would be (session cookie and CSRF token), except where a test says otherwise.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from sqlalchemy import Engine, text

from geo.access.accounts import create_user
from geo.city.catalogue import add_category_route
from geo.errors import NotFoundError

PASSWORD = "correct horse battery"
ATTACKS = [
    "{{7*7}}",
    "{% raw %}x",
    '<img src=x onerror="alert(1)">',
    "'; DROP TABLE teams; --",
]


def add_user(engine: Engine, email: str, role: str, team: str | None = None) -> int:
    with engine.begin() as conn:
        return create_user(
            conn, email=email, name="Admin Ploy", role=role, password=PASSWORD, team_code=team
        ).id


def sign_in(client: Any, email: str, password: str = PASSWORD) -> None:
    client.cookies.clear()
    client.get("/login")
    answer = client.post(
        "/login",
        data={"email": email, "password": password, "csrftoken": client.cookies["csrftoken"]},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def token(client: Any) -> str:
    return str(client.cookies["csrftoken"])


def post_form(client: Any, identity: str, fields: dict[str, Any], **kwargs: Any) -> Any:
    """Send a create form of /admin as the page does (with the CSRF token)."""
    return send_form(client, f"/admin/{identity}/create", fields, **kwargs)


def send_form(client: Any, path: str, fields: dict[str, Any], **kwargs: Any) -> Any:
    """POST ``fields`` as the admin pages' forms are sent: multipart, the token first."""
    body = {"csrftoken": token(client), "save": "Save", **fields}
    parts = [
        (name, (None, one))
        for name, value in body.items()
        for one in (value if isinstance(value, list) else [value])
    ]
    return client.post(path, files=parts, follow_redirects=False, **kwargs)


def field_error(page: str, field: str) -> str:
    """The error text shown under form field ``field``."""
    found = re.search(
        rf'id="{field}"[^>]*>.*?<div class="invalid-feedback">(.*?)</div>', page, re.S
    )
    assert found, f"no error under {field}"
    return html.unescape(found.group(1))


@pytest.fixture
def admin(city_app: Any, engine: Engine) -> Any:
    client, city, keys = city_app
    add_user(engine, "admin@city.example", "admin")
    sign_in(client, "admin@city.example")
    return client, city, keys


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


# --- who may open /admin ---------------------------------------------------------------


def test_anonymous_browsers_are_sent_to_sign_in_and_come_back(city_app: Any) -> None:
    client, _, _ = city_app
    answer = client.get("/admin/team/list?page=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fadmin%2Fteam%2Flist%3Fpage%3D1"
    assert client.get("/admin/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("role", "team"), [("field_team", "T1"), ("planner", None)], ids=["field_team", "planner"]
)
def test_staff_who_are_not_admins_get_a_403_page_in_their_language(
    city_app: Any, engine: Engine, role: str, team: str | None
) -> None:
    client, _, _ = city_app
    add_user(engine, "someone@city.example", role, team)
    sign_in(client, "someone@city.example")
    thai = client.get("/admin/team/list")
    assert thai.status_code == 403
    assert '<html lang="th">' in thai.text
    assert "เฉพาะผู้ดูแลระบบ" in thai.text
    english = client.get("/admin/", headers={"Accept-Language": "en"})
    assert english.status_code == 403
    assert "Only administrators may open the admin pages." in english.text
    # Nor can they write: the form's POST is refused before anything is done.
    refused = post_form(client, "team", {"code": "X1", "name": "x"})
    assert refused.status_code == 403
    assert count(engine, "SELECT count(*) FROM teams WHERE code = 'X1'") == 0


@pytest.mark.parametrize("who", ["t1", "planner", "app"])
def test_keys_of_other_roles_are_refused(city_app: Any, who: str) -> None:
    client, _, keys = city_app
    assert client.get("/admin/", headers={"X-API-Key": getattr(keys, who)}).status_code == 403


def test_an_admin_key_and_an_admin_session_are_let_in(admin: Any, city_app: Any) -> None:
    client, _, keys = admin
    page = client.get("/admin/team/list")
    assert page.status_code == 200
    assert "T1" in page.text and "DRAIN" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert page.headers["cache-control"] == "no-store"
    keyed = client.get("/admin/team/list", headers={"X-API-Key": keys.admin}, cookies={})
    assert keyed.status_code == 200


def test_sqladmins_own_sign_in_and_out_hold_no_password(admin: Any) -> None:
    client, _, _ = admin
    login = client.get("/admin/login", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"].startswith("/login?next=")
    assert client.post("/admin/login", data={"csrftoken": token(client)}).status_code in {
        303,
        200,
    }
    out = client.get("/admin/logout")
    assert out.status_code == 200
    assert 'action="/logout"' in out.text and 'name="csrftoken"' in out.text


# --- writes ----------------------------------------------------------------------------


def test_an_admin_creates_a_team_and_renames_it(admin: Any, engine: Engine) -> None:
    client, _, _ = admin
    form = client.get("/admin/team/create")
    assert form.status_code == 200
    assert f'name="csrftoken" type="hidden" value="{token(client)}"' in form.text
    made = post_form(client, "team", {"code": "PARKS", "name": "Parks", "name_th": "สวน"})
    assert made.status_code == 302, made.text
    with engine.connect() as conn:
        row = conn.execute(text("SELECT id, name, name_th FROM teams WHERE code = 'PARKS'")).one()
    assert (row.name, row.name_th) == ("Parks", "สวน")
    edited = send_form(
        client,
        f"/admin/team/edit/{row.id}",
        {"code": "PARKS", "name": "Parks and trees", "name_th": "สวน", "name_en": ""},
    )
    assert edited.status_code == 302, edited.text
    assert count(engine, "SELECT count(*) FROM teams WHERE name = 'Parks and trees'") == 1
    listed = client.get("/admin/team/list")
    assert "Parks and trees" in listed.text
    assert '<html lang="th">' in listed.text


def test_a_team_code_in_use_or_malformed_is_refused_on_its_field(
    admin: Any, engine: Engine
) -> None:
    client, _, _ = admin
    taken = post_form(
        client, "team", {"code": "T1", "name": "again"}, headers={"Accept-Language": "en"}
    )
    assert taken.status_code == 400
    assert field_error(taken.text, "code") == "is taken already"
    bad = post_form(client, "team", {"code": "no spaces", "name": "x"})
    assert bad.status_code == 400
    assert field_error(bad.text, "code")
    assert count(engine, "SELECT count(*) FROM teams") == 4


def test_an_admin_creates_a_user_whose_password_is_an_argon2_hash(
    admin: Any, engine: Engine
) -> None:
    client, _, _ = admin
    form = client.get("/admin/user/create")
    assert 'value="T1"' in form.text, "the teams are offered"
    made = post_form(
        client,
        "user",
        {
            "email": "Crew.Two@City.example",
            "name": "Crew Two",
            "role": "field_team",
            "team": "T2",
            "password": "a long enough password",
        },
    )
    assert made.status_code == 302, made.text
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT u.id, u.password_hash, t.code FROM users AS u "
                "JOIN teams AS t ON t.id = u.team_id WHERE email = 'crew.two@city.example'"
            )
        ).one()
    assert row.password_hash.startswith("$argon2id$") and row.code == "T2"
    # The hash is never shown, nor offered for editing.
    for page in (client.get("/admin/user/list"), client.get(f"/admin/user/details/{row.id}")):
        assert page.status_code == 200
        assert "argon2" not in page.text and "password" not in page.text.lower()
    assert "crew.two@city.example" in client.get("/admin/user/list").text
    assert client.get(f"/admin/user/edit/{row.id}").status_code == 403
    # The new person signs in with it.
    sign_in(client, "crew.two@city.example", "a long enough password")


@pytest.mark.parametrize(
    ("fields", "field", "english"),
    [
        ({"role": "field_team", "team": ""}, "team", "a field_team account must name its team"),
        ({"role": "planner", "team": "T1"}, "team", "only field_team accounts belong to a team"),
        ({"password": "short"}, "password", "must be at least 12 characters"),
        ({"email": "not an address"}, "email", "must be an e-mail address"),
        ({"role": "mayor"}, "role", "must be one of field_team, planner, admin"),
        ({"name": "x" * 5000}, "name", "must be at most 200 characters"),
    ],
    ids=["team-missing", "team-stray", "short-password", "email", "role", "huge-name"],
)
def test_a_users_role_team_and_password_are_checked_on_their_fields(
    admin: Any, engine: Engine, fields: dict[str, str], field: str, english: str
) -> None:
    client, _, _ = admin
    base = {
        "email": "new@city.example",
        "name": "New Person",
        "role": "planner",
        "team": "",
        "password": "a long enough password",
    }
    answer = post_form(client, "user", {**base, **fields}, headers={"Accept-Language": "en"})
    assert answer.status_code == 400, answer.text
    assert field_error(answer.text, field) == english
    thai = post_form(client, "user", {**base, **fields})
    assert field_error(thai.text, field) != english, "Thai by default"
    assert count(engine, "SELECT count(*) FROM users WHERE email = 'new@city.example'") == 0


def test_disabling_a_user_is_a_post_with_the_token(admin: Any, engine: Engine) -> None:
    client, _, _ = admin
    victim = add_user(engine, "leaver@city.example", "planner")
    details = client.get(f"/admin/user/details/{victim}")
    assert 'id="end-row"' in details.text
    forged = client.post(f"/admin/user/end/{victim}", follow_redirects=False)
    assert forged.status_code == 403
    assert count(engine, "SELECT count(*) FROM users WHERE disabled_at IS NOT NULL") == 0
    done = client.post(
        f"/admin/user/end/{victim}", data={"csrftoken": token(client)}, follow_redirects=False
    )
    assert done.status_code == 303
    assert count(engine, "SELECT count(*) FROM users WHERE disabled_at IS NOT NULL") == 1


def test_an_admin_creates_a_key_sees_its_secret_once_and_revokes_it(
    admin: Any, engine: Engine
) -> None:
    client, _, _ = admin
    add_user(engine, "owner@city.example", "planner")
    made = post_form(
        client,
        "api-key",
        {
            "name": "crew tablet",
            "role": "field_team",
            "team": "T1",
            "owner": "owner@city.example",
            "expires_days": "30",
        },
    )
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    secret = re.search(r'value="(im_[^"]+)"', made.text)
    assert secret, "the secret is on the answer"
    assert client.get("/api/reports", headers={"X-API-Key": secret.group(1)}).status_code == 200
    with engine.connect() as conn:
        key = conn.execute(
            text(
                "SELECT k.id, k.expires_at - now() AS left, u.email FROM api_keys AS k "
                "JOIN users AS u ON u.id = k.owner_id WHERE k.name = 'crew tablet'"
            )
        ).one()
    assert key.email == "owner@city.example" and 29 <= key.left.days <= 30
    listed = client.get("/admin/api-key/list")
    assert "crew tablet" in listed.text and "owner@city.example" in listed.text
    assert secret.group(1) not in listed.text
    assert secret.group(1) not in client.get(f"/admin/api-key/details/{key.id}").text
    revoked = client.post(
        f"/admin/api-key/end/{key.id}", data={"csrftoken": token(client)}, follow_redirects=False
    )
    assert revoked.status_code == 303
    assert client.get("/api/reports", headers={"X-API-Key": secret.group(1)}).status_code == 401


def test_a_key_for_an_unknown_team_or_owner_is_refused(admin: Any, engine: Engine) -> None:
    client, _, _ = admin
    before = count(engine, "SELECT count(*) FROM api_keys")
    answer = post_form(
        client,
        "api-key",
        {"name": "k", "role": "planner", "team": "", "owner": "nobody@x.example"},
        headers={"Accept-Language": "en"},
    )
    assert answer.status_code == 400
    assert field_error(answer.text, "owner") == "names no staff account"
    days = post_form(client, "api-key", {"name": "k", "role": "planner", "expires_days": "soon"})
    assert field_error(days.text, "expires_days")
    assert count(engine, "SELECT count(*) FROM api_keys") == before


def test_an_admin_registers_a_webhook_with_its_url_checked(admin: Any, engine: Engine) -> None:
    client, _, _ = admin
    bad = post_form(
        client,
        "webhook",
        {"url": "ftp://example.org/x", "events": ["report.created"]},
        headers={"Accept-Language": "en"},
    )
    assert bad.status_code == 400
    assert field_error(bad.text, "url") == "must be an http:// or https:// address"
    made = post_form(
        client,
        "webhook",
        {"url": "https://hooks.example.org/in", "events": ["report.created"], "description": "x"},
    )
    assert made.status_code == 200, made.text
    secret = re.search(r'id="modal-secret-value"|value="([A-Za-z0-9_-]{40,})"', made.text)
    assert secret
    with engine.connect() as conn:
        hook = conn.execute(text("SELECT id, secret, events FROM webhooks")).one()
    assert hook.events == ["report.created"]
    assert hook.secret in made.text
    assert hook.secret not in client.get("/admin/webhook/list").text
    assert hook.secret not in client.get(f"/admin/webhook/details/{hook.id}").text
    client.post(f"/admin/webhook/end/{hook.id}", data={"csrftoken": token(client)})
    assert count(engine, "SELECT count(*) FROM webhooks WHERE revoked_at IS NOT NULL") == 1


def test_an_admin_creates_and_edits_a_category(admin: Any, engine: Engine) -> None:
    client, _, _ = admin
    made = post_form(
        client,
        "category",
        {
            "code": "noise",
            "name_th": "เสียงดัง",
            "name_en": "Noise",
            "sla_hours": "72",
            "active": "y",
        },
    )
    assert made.status_code == 302, made.text
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM categories WHERE code = 'noise'")).one()
    assert (row.name_th, row.name_en, row.sla_hours, row.active) == ("เสียงดัง", "Noise", 72, True)
    assert "noise" in [c["code"] for c in client.get("/api/categories").json()]
    edited = send_form(
        client,
        f"/admin/category/edit/{row.id}",
        {"code": "noise", "name_th": "เสียงดัง", "name_en": "Noise", "sla_hours": "24"},
    )
    assert edited.status_code == 302, edited.text
    assert count(engine, "SELECT count(*) FROM categories WHERE sla_hours = 24 AND NOT active") == 1
    assert "noise" not in [c["code"] for c in client.get("/api/categories").json()]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"code": "road"}, "code"),
        ({"sla_hours": "0"}, "sla_hours"),
        ({"sla_hours": "two days"}, "sla_hours"),
        ({"name_en": ""}, "name_en"),
        ({"name_th": "x" * 100_000}, "name_th"),
    ],
    ids=["code-taken", "sla-zero", "sla-words", "no-english-name", "huge-name"],
)
def test_a_bad_category_is_refused_on_its_field(
    admin: Any, engine: Engine, fields: dict[str, str], field: str
) -> None:
    client, _, _ = admin
    base = {"code": "noise", "name_th": "เสียงดัง", "name_en": "Noise", "sla_hours": "48"}
    answer = post_form(client, "category", {**base, **fields})
    assert answer.status_code == 400, answer.text
    assert field_error(answer.text, field)
    assert count(engine, "SELECT count(*) FROM categories WHERE code = 'noise'") == 0


def test_an_admin_adds_and_deletes_a_category_route(admin: Any, engine: Engine) -> None:
    client, _, _ = admin
    form = client.get("/admin/category-route/create")
    assert 'value="Z1"' in form.text and 'value="road"' in form.text
    made = post_form(client, "category-route", {"category": "road", "team": "T2", "zone": "Z1"})
    assert made.status_code == 302, made.text
    with engine.connect() as conn:
        route = conn.execute(text("SELECT id FROM category_routes WHERE zone_code = 'Z1'")).one()
    listed = client.get("/admin/category-route/list")
    assert "road" in listed.text and "Z1" in listed.text
    forged = client.delete(f"/admin/category-route/delete?pks={route.id}")
    assert forged.status_code == 403
    assert count(engine, "SELECT count(*) FROM category_routes WHERE id = :id", id=route.id) == 1
    gone = client.delete(
        f"/admin/category-route/delete?pks={route.id}", headers={"X-CSRFToken": token(client)}
    )
    assert gone.status_code == 200
    assert count(engine, "SELECT count(*) FROM category_routes WHERE id = :id", id=route.id) == 0


def test_a_route_to_a_retired_or_unknown_zone_is_refused_on_the_zone_field(
    admin: Any, engine: Engine
) -> None:
    client, _, _ = admin
    with engine.begin() as conn:
        conn.execute(text("UPDATE zones SET retired_at = now() WHERE code = 'Z2'"))
    before = count(engine, "SELECT count(*) FROM category_routes")
    for zone in ("Z2", "NOWHERE"):
        answer = post_form(
            client,
            "category-route",
            {"category": "road", "team": "T1", "zone": zone},
            headers={"Accept-Language": "en"},
        )
        assert answer.status_code == 400, answer.text
        assert field_error(answer.text, "zone") == f"There is no current zone '{zone}'."
    assert 'value="Z2"' not in client.get("/admin/category-route/create").text
    unknown = post_form(client, "category-route", {"category": "nope", "team": "T1", "zone": ""})
    assert field_error(unknown.text, "category")
    assert count(engine, "SELECT count(*) FROM category_routes") == before


def test_add_category_route_refuses_a_retired_zone(engine: Engine) -> None:
    from tests.fixtures import load_tiny_city

    with engine.begin() as conn:
        load_tiny_city(conn)
        conn.execute(text("UPDATE zones SET retired_at = now() WHERE code = 'Z1'"))
        with pytest.raises(NotFoundError, match="no current zone 'Z1'"):
            add_category_route(conn, category="road", team="T1", zone="Z1")
        assert add_category_route(conn, category="road", team="T1", zone="Z2") > 0


# --- CSRF and attacks ------------------------------------------------------------------


def test_a_forged_form_without_the_token_is_refused_and_writes_nothing(
    admin: Any, engine: Engine
) -> None:
    client, _, _ = admin
    for body in ({}, {"csrftoken": "forged"}):
        fields = {"code": "EVIL", "name": "x", **body}
        urlencoded = client.post("/admin/team/create", data=fields, follow_redirects=False)
        assert urlencoded.status_code == 403
        multipart = client.post(
            "/admin/team/create",
            files={k: (None, v) for k, v in fields.items()},
            follow_redirects=False,
        )
        assert multipart.status_code == 403
    assert count(engine, "SELECT count(*) FROM teams WHERE code = 'EVIL'") == 0


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_text_is_stored_verbatim_and_shown_escaped(
    admin: Any, engine: Engine, attack: str
) -> None:
    client, _, _ = admin
    made = post_form(client, "team", {"code": "ATTACK", "name": attack, "name_th": attack})
    assert made.status_code == 302, made.text
    with engine.connect() as conn:
        team = conn.execute(text("SELECT id, name FROM teams WHERE code = 'ATTACK'")).one()
    assert team.name == attack
    for page in (client.get("/admin/team/list"), client.get(f"/admin/team/details/{team.id}")):
        assert attack in html.unescape(page.text), "shown as it was written"
        assert "<img src=x" not in page.text, "never as markup"
        assert "{{7*7}}" not in attack or "{{7*7}}" in page.text, "never as a template"
    refused = post_form(client, "team", {"code": attack, "name": "x"})
    assert refused.status_code == 400
    assert field_error(refused.text, "code")


def test_nul_characters_are_refused_by_field_or_in_the_address(admin: Any, engine: Engine) -> None:
    client, _, _ = admin
    answer = post_form(client, "team", {"code": "NUL", "name": "a\x00b"})
    assert answer.status_code == 400
    assert field_error(answer.text, "name")
    assert client.get("/admin/team/list?search=%00").status_code == 422
    assert count(engine, "SELECT count(*) FROM teams WHERE code = 'NUL'") == 0


@pytest.mark.parametrize(
    "query",
    [
        "search=' OR 1=1 --",
        "search=" + "x" * 20_000,
        "sortBy=password_hash",
        "sortBy=no_such_column&sort=desc",
        "page=abc",
        "page=-1&pageSize=-5",
        "pageSize=100000000000000000000",
    ],
    ids=["sql", "huge", "sort-hidden", "sort-unknown", "page-words", "negative", "huge-page"],
)
def test_odd_list_addresses_never_fail_or_leak(admin: Any, query: str) -> None:
    client, _, _ = admin
    answer = client.get(f"/admin/user/list?{query}")
    assert answer.status_code < 500, answer.text
    assert "argon2" not in answer.text


def test_no_export_or_import_and_no_way_around_the_forms(admin: Any, engine: Engine) -> None:
    client, _, _ = admin
    for kind in ("csv", "json"):
        assert client.get(f"/admin/user/export/{kind}").status_code in {403, 404}
        assert client.get(f"/admin/api-key/export/{kind}").status_code in {403, 404}
    imported = client.post(
        "/admin/team/import", data={"csrftoken": token(client)}, follow_redirects=False
    )
    assert imported.status_code == 403
    assert client.get("/admin/api-key/edit/1").status_code == 403
    assert (
        client.delete(
            "/admin/user/delete?pks=1", headers={"X-CSRFToken": token(client)}
        ).status_code
        == 403
    )
    assert count(engine, "SELECT count(*) FROM users") == 1


def test_the_log_names_the_admin_who_made_each_thing(
    admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, _, _ = admin
    with caplog.at_level("INFO", logger="issuemap.admin"):
        assert post_form(client, "team", {"code": "LOGGED", "name": "x"}).status_code == 302
    assert any(
        r.getMessage().startswith("user:") and ":Admin Ploy created team" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


def test_ending_what_is_not_there_is_a_404(admin: Any) -> None:
    client, _, _ = admin
    for path in ("/admin/api-key/end/999999", "/admin/webhook/end/999999", "/admin/user/end/99999"):
        assert client.post(path, data={"csrftoken": token(client)}).status_code == 404
    days = post_form(client, "api-key", {"name": "k", "role": "planner", "expires_days": "9" * 30})
    assert days.status_code == 400
    assert field_error(days.text, "expires_days")


def test_sqladmins_own_files_are_cached_its_pages_never(admin: Any) -> None:
    client, _, _ = admin
    css = client.get("/admin/statics/css/main.css")
    assert css.status_code == 200
    assert css.headers.get("cache-control") != "no-store"
    assert client.get("/admin/").headers["cache-control"] == "no-store"
