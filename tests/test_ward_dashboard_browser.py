"""The ward dashboard in a real headless Chromium: the legend's swatches are the colours the
wards are drawn in, class by class, and a ward with too few reports is marked, not coloured.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from geo.maps.choropleth import TOO_FEW_COLOUR
from geo.settings import DatabaseSettings
from tests.browser import axe_violations, running, screenshot, wait_until, watch
from tests.fixtures import Keys, TinyCity, load_tiny_city, make_keys

pytest_plugins = ("tests.browser",)  # the session's Chromium: the ``browser`` fixture

DESKTOP = {"width": 1280, "height": 800}

# Per ward: reports, of which resolved. W-A has enough resolved reports for a share;
# W-B has only 2 resolved, fewer than the minimum, so its share is marked "too few".
REPORTS = {"W-A": ((100.005, 8.405), 9, 7), "W-B": ((100.015, 8.405), 3, 2)}


@pytest.fixture
def site(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, TinyCity, Keys]]:
    monkeypatch.setenv("ISSUEMAP_MAP_TILES_URL", "none")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        keys = make_keys(conn)
        for (lon, lat), total, resolved in REPORTS.values():
            for i in range(total):
                created = now - timedelta(days=5, hours=i)
                done = created + timedelta(hours=12 * (i + 1)) if i < resolved else None
                conn.execute(
                    text(
                        "INSERT INTO reports (category_id, status, created_at, resolved_at, "
                        "due_at, geom) VALUES (:cat, :status, :created, :done, :due, "
                        "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
                    ),
                    {
                        "cat": city.categories["road"],
                        "status": "resolved" if done else "open",
                        "created": created,
                        "done": done,
                        "due": created + timedelta(hours=48),
                        "lon": lon,
                        "lat": lat,
                    },
                )
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    with running(app) as base:
        yield base, city, keys


def rgb(page: Any, colour: str) -> str:
    """``colour`` as the browser computes it (``rgb(r, g, b)``), for comparing like with like."""
    return str(
        page.evaluate(
            """(c) => { const e = document.createElement('i'); e.style.color = c;
                document.body.appendChild(e); const v = getComputedStyle(e).color;
                e.remove(); return v; }""",
            colour,
        )
    )


def drawn(page: Any) -> dict[str, dict[str, Any]]:
    """Each ward's SVG path as drawn: its fill and dash, by ward code."""
    result: dict[str, dict[str, Any]] = page.evaluate(
        """() => {
            const out = {};
            window.issuemap.wards.eachLayer((layer) => {
                const path = layer._path;
                out[layer.feature.properties.code] = {
                    fill: getComputedStyle(path).fill,
                    dash: path.getAttribute('stroke-dasharray'),
                    shown: layer.feature.properties.shown,
                };
            });
            return out;
        }"""
    )
    return result


def swatches(page: Any, kind: str) -> list[str]:
    """The legend's swatch colours, as computed, for rows of ``kind``."""
    found: list[str] = page.evaluate(
        """(kind) => Array.from(document.querySelectorAll(`.im-legend tr.${kind} i`))
            .map((i) => getComputedStyle(i).backgroundColor)""",
        kind,
    )
    return found


@pytest.mark.parametrize(("measure", "method"), [("sla", "quantiles"), ("count", "fisher_jenks")])
def test_legend_swatches_are_the_colours_of_the_wards_drawn(
    browser: Any, site: tuple[str, TinyCity, Keys], measure: str, method: str
) -> None:
    base, _, keys = site
    page = browser.new_page(viewport=DESKTOP)
    seen = watch(page, base)
    page.goto(
        f"{base}/maps/wards?measure={measure}&method={method}&k=4&lang=en&key={keys.planner}",
        wait_until="domcontentloaded",
    )
    wait_until(page, "window.issuemap && window.issuemap.wards !== undefined")
    wait_until(page, "document.querySelectorAll('.leaflet-overlay-pane svg path').length === 2")
    wards = drawn(page)
    classes = swatches(page, "im-class")
    too_few = swatches(page, "im-too-few")
    # Each ward drawn in a class colour has that colour's swatch in the legend, and every
    # class swatch with wards in it is a colour some ward is drawn in.
    legend_counts: list[int] = page.evaluate(
        """() => Array.from(document.querySelectorAll('.im-legend tr.im-class'))
            .map((tr) => Number(tr.cells[2].textContent.replace(/,/g, '')))"""
    )
    coloured = {code: w["fill"] for code, w in wards.items() if not w["dash"]}
    assert set(coloured.values()) <= set(classes)
    assert {c for c, n in zip(classes, legend_counts, strict=True) if n} == set(coloured.values())
    for colour, n in zip(classes, legend_counts, strict=True):
        assert n == sum(1 for fill in coloured.values() if fill == colour)
    if measure == "sla":
        # W-B has 2 resolved reports: grey, dashed, "too few", with its own legend row.
        assert set(coloured) == {"W-A"}
        assert wards["W-B"]["fill"] == rgb(page, TOO_FEW_COLOUR) and wards["W-B"]["dash"]
        assert wards["W-B"]["shown"].startswith("Too few reports")
        assert too_few == [rgb(page, TOO_FEW_COLOUR)]
        assert "Too few reports (fewer than 5 resolved)" in page.inner_text(".im-legend")
    else:
        assert set(coloured) == {"W-A", "W-B"} and coloured["W-A"] != coloured["W-B"]
        assert too_few == []
    legend = page.inner_text(".im-legend")
    assert "current ward that contains their location" in legend
    assert "Reports outside every current ward: 0" in legend
    assert page.input_value("#im-method") == method
    assert page.input_value("#im-from") and page.input_value("#im-to")
    screenshot(page, f"ward-dashboard-legend-{measure}")
    assert axe_violations(page) == []
    assert seen.errors == [] and seen.external == [], seen
    page.close()


def test_choosing_classes_and_dates_on_the_page_reloads_it_with_them(
    browser: Any, site: tuple[str, TinyCity, Keys]
) -> None:
    base, _, keys = site
    page = browser.new_page(viewport=DESKTOP)
    seen = watch(page, base)
    page.goto(f"{base}/maps/wards?lang=th&key={keys.planner}", wait_until="domcontentloaded")
    wait_until(page, "window.issuemap && window.issuemap.wards !== undefined")
    assert "นอกแขวงปัจจุบัน" in page.inner_text(".im-legend")
    page.select_option("#im-measure", "sla")
    page.select_option("#im-method", "fisher_jenks")
    page.fill("#im-from", "2020-01-01")
    with page.expect_navigation():
        page.click(".im-filters button[type=submit]")
    wait_until(page, "window.issuemap && window.issuemap.wards !== undefined")
    assert "method=fisher_jenks" in page.url and "created_from=2020-01-01" in page.url
    assert page.input_value("#im-from") == "2020-01-01"
    assert page.input_value("#im-method") == "fisher_jenks"
    screenshot(page, "ward-dashboard-th-fisher-jenks")
    assert seen.errors == [] and seen.external == [], seen
    page.close()
