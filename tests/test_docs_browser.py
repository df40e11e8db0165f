"""The API docs in a real Chromium with every other origin cut off, as on a closed network.

``/docs`` must draw Swagger UI's operations and offer its Authorize button for an API key;
``/redoc`` must draw the API's title; neither may ask another origin for anything, and the
pages' Content-Security-Policy must refuse nothing they do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import running, screenshot, wait_until, watch

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture

VIOLATIONS = """() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(
        `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
}"""
"""Kept from the first script on, so a refusal is seen even when Chromium logs nothing."""


REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def site(db_url: str) -> Iterator[str]:
    """The service, over an empty database: the docs read nothing from it."""
    from api.app import AppSettings, create_app
    from geo.settings import DatabaseSettings

    with running(create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))) as base:
        yield base


def open_offline(browser: Any, base: str, path: str) -> tuple[Any, Any, Any]:
    """A page at ``base + path`` that may reach only ``base``: (page, answer, what it did)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
    page.add_init_script(f"({VIOLATIONS})()")
    seen = watch(page, base)
    answer = page.goto(f"{base}{path}", wait_until="domcontentloaded")
    assert answer is not None and answer.status == 200
    return page, answer, seen


def assert_clean(page: Any, answer: Any, seen: Any, *, refused: tuple[str, ...] = ()) -> None:
    """Under a nonce CSP, no request left the origin, none was refused, no script failed.

    ``refused``: the directive and address of each refusal the page is meant to meet.
    """
    assert "'nonce-" in answer.headers.get("content-security-policy", "")
    violations = page.evaluate("() => window.__cspViolations")
    assert [v for v in violations if not v.startswith(refused)] == [], violations
    assert seen.external == [], seen.external
    errors = [e for e in seen.errors if not any(r.split()[1] in e for r in refused)]
    assert errors == [], seen.errors


def test_swagger_ui_renders_offline_and_offers_authorize_for_api_keys(
    browser: Any, site: str
) -> None:
    page, answer, seen = open_offline(browser, site, "/docs")
    wait_until(page, "document.querySelectorAll('.opblock').length > 10", timeout=10_000)
    assert page.locator(".opblock-summary-path", has_text="/api/reports").count() > 0
    page.locator("button.authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.wait_for(state="visible", timeout=10_000)
    assert "X-API-Key" in dialog.inner_text()
    assert "apiKey" in dialog.inner_text()
    screenshot(page, "docs-swagger-authorize")
    assert_clean(page, answer, seen)


def test_redoc_renders_the_api_title_offline(browser: Any, site: str) -> None:
    page, answer, seen = open_offline(browser, site, "/redoc")
    wait_until(page, "document.querySelector('h1')", timeout=10_000)
    assert page.locator("h1").first.inner_text().startswith("issuemap")
    screenshot(page, "docs-redoc")
    # ReDoc's sidebar always asks Redocly's CDN for its logo; the image hides when refused.
    assert_clean(page, answer, seen, refused=(f"img-src {REDOCLY_LOGO}",))
