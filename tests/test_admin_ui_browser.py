"""The admin pages in a real Chromium: an admin signs in and sets up a team, a user and a route.

Screenshots land in ``test-artifacts/`` with the other browser tests'.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from geo.access.accounts import create_user

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture

PASSWORD = "correct horse battery"


def test_an_admin_creates_a_team_a_user_and_a_route_in_the_admin_pages(
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
        create_user(
            conn, email="it@city.example", name="Admin Ploy", role="admin", password=PASSWORD
        )
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    with running(app) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
        seen = watch(page, base)
        page.goto(f"{base}/admin/", wait_until="domcontentloaded")
        assert page.url.startswith(f"{base}/login?next="), "no session: the sign-in form"
        page.fill("#email", "it@city.example")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/admin/")

        # A team.
        page.goto(f"{base}/admin/team/create")
        page.fill("#code", "PARKS")
        page.fill("#name", "Parks")
        page.fill("#name_th", "สวนสาธารณะ")
        screenshot(page, "admin-team-create")
        page.click("input[type=submit][value=Save]")
        page.wait_for_url(f"{base}/admin/team/list")
        assert "PARKS" in page.inner_text("table")
        screenshot(page, "admin-team-list")

        # A user for it: a wrong team first, which the form names, then the right one.
        page.goto(f"{base}/admin/user/create")
        page.fill("#email", "parks.crew@city.example")
        page.fill("#name", "Parks Crew")
        page.select_option("#role", "field_team")
        page.fill("#password", "a long enough password")
        page.click("input[type=submit][value=Save]")
        page.wait_for_selector("#team.is-invalid")
        assert "must name its team" in page.inner_text("#team ~ .invalid-feedback")
        screenshot(page, "admin-user-refused")
        # Chromium logs the refused form's 400 as a failed load; nothing else may fail.
        assert [e for e in seen.errors if "400" not in e] == [], seen.errors
        seen.errors.clear()
        page.select_option("#team", "PARKS")
        page.fill("#password", "a long enough password")
        page.click("input[type=submit][value=Save]")
        page.wait_for_url(f"{base}/admin/user/list")
        assert "parks.crew@city.example" in page.inner_text("table")
        screenshot(page, "admin-user-list")

        # A route for it, limited to a current zone.
        page.goto(f"{base}/admin/category-route/create")
        page.select_option("#category", "tree")
        page.select_option("#team", "PARKS")
        page.select_option("#zone", "Z1")
        screenshot(page, "admin-route-create")
        page.click("input[type=submit][value=Save]")
        page.wait_for_url(f"{base}/admin/category-route/list")
        rows = page.inner_text("table")
        assert "tree" in rows and "PARKS" in rows and "Z1" in rows
        screenshot(page, "admin-route-list")

        # Deleting the city-wide flood route: SQLAdmin's script sends the DELETE, ours
        # adds the CSRF token to it.
        flood = page.locator("tbody tr", has_text="flood")
        flood.locator("a[data-bs-target='#modal-delete']").click()
        page.wait_for_selector("#modal-delete-button", state="visible")
        # The page goes back to the list once the server has answered.
        with page.expect_navigation():
            page.click("#modal-delete-button")
        assert "flood" not in page.inner_text("table")
        assert "PARKS" in page.inner_text("table")
        screenshot(page, "admin-route-deleted")

        # A key for the new crew's tablet: its secret shows once, in SQLAdmin's dialog.
        page.goto(f"{base}/admin/api-key/create")
        page.fill("#name", "Parks tablet")
        page.select_option("#role", "field_team")
        page.select_option("#team", "PARKS")
        page.select_option("#owner", "parks.crew@city.example")
        page.click("input[type=submit][value=Save]")
        page.wait_for_selector("#modal-secret", state="visible")
        # Bootstrap slides the dialog in; the screenshot waits for it to be in place.
        wait_until(
            page,
            "getComputedStyle(document.querySelector('#modal-secret .modal-dialog')).transform"
            " === 'none'",
        )
        secret = page.input_value("#modal-secret-value")
        assert secret.startswith("im_")
        screenshot(page, "admin-key-secret")
        assert httpx.get(f"{base}/api/reports", headers={"X-API-Key": secret}).status_code == 200
        page.click("#modal-secret button[data-bs-dismiss=modal].btn-primary")
        page.wait_for_url(f"{base}/admin/api-key/list")
        assert "Parks tablet" in page.inner_text("table")
        assert secret not in page.content()
        assert seen.errors == [], seen.errors
        assert seen.external == [], seen.external
        page.close()

    with engine.connect() as conn:
        user = conn.execute(
            text(
                "SELECT u.name, t.code, u.password_hash FROM users AS u "
                "JOIN teams AS t ON t.id = u.team_id WHERE u.email = 'parks.crew@city.example'"
            )
        ).one()
        route = conn.execute(
            text(
                "SELECT c.code AS category, t.code AS team, r.zone_code FROM category_routes AS r "
                "JOIN categories AS c ON c.id = r.category_id JOIN teams AS t ON t.id = r.team_id "
                "WHERE t.code = 'PARKS'"
            )
        ).one()
    assert (user.name, user.code) == ("Parks Crew", "PARKS")
    assert user.password_hash.startswith("$argon2id$")
    assert tuple(route) == ("tree", "PARKS", "Z1")
    with engine.connect() as conn:
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM category_routes AS r JOIN categories AS c "
                    "ON c.id = r.category_id WHERE c.code = 'flood'"
                )
            ).scalar_one()
            == 0
        )
