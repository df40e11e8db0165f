"""Wards drawn from vector tiles in a real headless Chromium, as a city with more wards than
``MapSettings.inline_features_max`` gets them: the overview draws them without carrying
them, and the ward dashboard colours each as its legend says. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.browser import screenshot, wait_until, watch
from tests.fixtures import Keys, TinyCity

# ``site`` is the dashboard browser tests' city, fixture and all.
from tests.test_ward_dashboard_browser import DESKTOP, rgb, site, swatches

__all__ = ["site"]

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture

HOSTILE = "{{7*7}} <img src=x onerror=\"document.title='pwned'\">"

TILED_FEATURES = """(layer) => {
    const out = {};
    for (const tile of Object.values(layer._vectorTiles || {})) {
        for (const [code, found] of Object.entries(tile._features || {})) {
            const path = found.feature._path;
            out[code] = path ? {fill: getComputedStyle(path).fill,
                                dash: path.getAttribute('stroke-dasharray')} : {};
        }
    }
    return out;
}"""


@pytest.fixture
def tiled_site(
    request: pytest.FixtureRequest, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, TinyCity, Keys]]:
    """The dashboard browser tests' city, with wards and zones too many to inline (> 1)."""
    monkeypatch.setenv("ISSUEMAP_MAP_INLINE_FEATURES_MAX", "1")
    site: tuple[str, TinyCity, Keys] = request.getfixturevalue("site")
    with engine.begin() as conn:
        conn.execute(text("UPDATE wards SET name = :n WHERE code = 'W-A'"), {"n": HOSTILE})
    yield site


def features(page: Any, layer: str) -> dict[str, dict[str, Any]]:
    """The features of ``window.issuemap[layer]``'s loaded tiles, by code, as drawn."""
    found: dict[str, dict[str, Any]] = page.evaluate(
        f"() => ({TILED_FEATURES})(window.issuemap.{layer})"
    )
    return found


def test_the_overview_draws_wards_and_zones_from_tiles_not_from_the_page(
    browser: Any, tiled_site: tuple[str, TinyCity, Keys]
) -> None:
    base, _, _ = tiled_site
    page = browser.new_page(viewport=DESKTOP)
    seen = watch(page, base)
    tiles: list[str] = []
    page.on("request", lambda r: tiles.append(r.url) if "/tiles/" in r.url else None)
    html = page.goto(f"{base}/?lang=en", wait_until="domcontentloaded").text()
    assert "W-A" not in html and "coordinates" not in html
    wait_until(page, "window.issuemap && window.issuemap.wards && window.issuemap.zones")
    wait_until(page, "Object.keys(window.issuemap.wards._vectorTiles).length > 0")
    wait_until(
        page,
        f"Object.keys(({TILED_FEATURES})(window.issuemap.wards)).length === 2 && "
        f"Object.keys(({TILED_FEATURES})(window.issuemap.zones)).length === 2",
    )
    assert any("/tiles/wards/" in url and "lang=en" in url for url in tiles)
    assert any("/tiles/zones/" in url for url in tiles)
    screenshot(page, "overview-tiled")
    assert seen.errors == [] and seen.external == [], seen
    page.close()


def test_the_dashboard_colours_tiled_wards_as_its_legend_says(
    browser: Any, tiled_site: tuple[str, TinyCity, Keys]
) -> None:
    base, _, keys = tiled_site
    page = browser.new_page(viewport=DESKTOP)
    seen = watch(page, base)
    page.goto(
        f"{base}/maps/wards?measure=sla&method=quantiles&k=4&lang=en&key={keys.planner}",
        wait_until="domcontentloaded",
    )
    wait_until(page, "window.issuemap && window.issuemap.wards !== undefined")
    wait_until(page, f"Object.keys(({TILED_FEATURES})(window.issuemap.wards)).length === 2")
    wards = features(page, "wards")
    classes = swatches(page, "im-class")
    # W-A has enough resolved reports for a share: a class colour of the legend. W-B has
    # too few: grey and dashed, as the legend's "too few" row.
    assert wards["W-A"]["fill"] in classes and not wards["W-A"]["dash"]
    assert wards["W-B"]["fill"] == rgb(page, "#bdbdbd") and wards["W-B"]["dash"]
    assert swatches(page, "im-too-few") == [wards["W-B"]["fill"]]
    # The tooltip shows a name from a boundary file as text: no element, no template.
    box = page.evaluate(
        """() => { const f = Object.values(window.issuemap.wards._vectorTiles)
            .map((t) => t._features['W-A']).find(Boolean);
            const r = f.feature._path.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }"""
    )
    page.mouse.move(box[0], box[1])
    wait_until(page, "document.querySelector('.leaflet-tooltip') !== null")
    tooltip = page.inner_text(".leaflet-tooltip")
    assert HOSTILE in tooltip and "49" not in tooltip
    assert page.query_selector(".leaflet-tooltip img") is None
    assert page.title() != "pwned"
    screenshot(page, "ward-dashboard-tiled")
    assert seen.errors == [] and seen.external == [], seen
    page.close()
