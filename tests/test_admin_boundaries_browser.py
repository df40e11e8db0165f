"""Boundary upload in a real Chromium: upload, read the check report, confirm, see what needs
attention, re-route from its preview. Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from geo.access.accounts import create_user
from tests.test_admin_boundaries import (
    HOSTILE_ID,
    ROUTING,
    current_zones,
    hostile_zones,
)

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture

PASSWORD = "correct horse battery"


def content_violations(page: Any) -> list[dict[str, Any]]:
    """Serious axe-core findings inside the page's own content, not SQLAdmin's frame."""
    from tests.browser import axe_violations

    found = []
    for violation in axe_violations(page):
        ours = [
            node
            for node in violation["nodes"]
            if page.evaluate(
                "(s) => Boolean(document.querySelector(s)?.closest('.page-body'))",
                node["target"][0],
            )
        ]
        if ours:
            found.append({**violation, "nodes": ours})
    return found


def test_an_admin_uploads_zones_confirms_and_reroutes_in_the_browser(
    browser: Any, db_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.app import AppSettings, create_app
    from geo.reports.store import create_report
    from geo.settings import DatabaseSettings
    from tests.browser import running, screenshot, watch
    from tests.fixtures import load_tiny_city

    monkeypatch.setenv("ISSUEMAP_MAP_TILES_URL", "none")
    with engine.begin() as conn:
        load_tiny_city(conn)
        create_user(
            conn, email="it@city.example", name="Admin Ploy", role="admin", password=PASSWORD
        )
        for lon in (100.005, 100.015):
            create_report(
                conn, lon=lon, lat=8.405, category="road", description="", settings=ROUTING
            )
    upload = tmp_path / "zones.geojson"
    upload.write_bytes(hostile_zones())
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    with running(app) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
        seen = watch(page, base)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{base}/admin/boundaries", wait_until="domcontentloaded")
        assert page.url.startswith(f"{base}/login?next="), "no session: the sign-in form"
        page.fill("#email", "it@city.example")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/admin/boundaries")

        page.select_option("#layer", "zones")
        page.set_input_files("#file", str(upload))
        page.fill("#id_field", "ZONE")
        page.fill("#name_field", "NAME")
        page.fill("#team_field", "TEAM")
        screenshot(page, "admin-boundaries-upload")
        assert content_violations(page) == []
        page.click("#check")
        page.wait_for_selector("#confirm-form")

        # The report: nothing changed yet, the repair, the overlaps, the gap and the CRS,
        # with the file's own ids shown as text.
        assert page.is_visible("#nothing-yet")
        assert page.inner_text("#source-crs") == "EPSG:4326"
        assert page.inner_text("#repairs li") == "ZC"
        assert page.locator("#overlaps tr.overlap").count() == 2
        assert page.locator("#gaps tr.gap").count() == 1
        assert HOSTILE_ID in page.inner_text("#overlaps")
        assert "{{7*7}}" in page.inner_text("#overlaps")
        assert page.evaluate("() => document.querySelectorAll('#overlaps img').length") == 0
        assert current_zones(engine) == ["Z1", "Z2"]
        screenshot(page, "admin-boundaries-check")
        assert content_violations(page) == []
        page.locator("#confirm").scroll_into_view_if_needed()
        screenshot(page, "admin-boundaries-confirm")

        page.click("#confirm")
        page.wait_for_url(f"{base}/admin/attention?replaced=*")
        assert current_zones(engine) == sorted([HOSTILE_ID, "ZC", "{{7*7}}"])

        # What needs attention: T2 lost its zone, the tree route points at retired Z2,
        # both open reports keep their retired zones until re-routed.
        assert page.is_visible("#replaced")
        codes = page.eval_on_selector_all("tr.bare-team", "rows => rows.map(r => r.dataset.code)")
        assert codes == ["T2"]
        assert page.eval_on_selector_all(
            "tr.stranded-route", "rows => rows.map(r => r.dataset.zone)"
        ) == ["Z2"]
        assert page.locator("tr.stranded-report").count() == 2
        moves = page.eval_on_selector_all(
            "tr.move",
            "rows => rows.map(r => [r.dataset.from, r.dataset.to,"
            " r.querySelector('.count').textContent])",
        )
        assert sorted(moves) == [["T1", "T1", "1"], ["T2", "T1", "1"]]
        assert page.inner_text("#reroute-button") == "Re-route 2 reports"
        screenshot(page, "admin-attention")
        assert content_violations(page) == []
        page.locator("#reroute-button").scroll_into_view_if_needed()
        screenshot(page, "admin-attention-reroute")

        page.click("#reroute-button")
        page.wait_for_url(f"{base}/admin/attention?rerouted=2")
        assert page.inner_text("#rerouted") == "Re-routed 2 reports."
        assert page.locator("tr.stranded-report").count() == 0
        assert page.is_visible("#reroute-none")
        screenshot(page, "admin-attention-rerouted")
        with engine.connect() as conn:
            actors = conn.execute(
                text("SELECT DISTINCT actor FROM report_events WHERE kind = 'rerouted'")
            ).scalars()
            assert [a.split(":", 2)[2] for a in actors] == ["Admin Ploy"]
        assert dialogs == [] and seen.errors == [] and seen.external == []
        page.close()
