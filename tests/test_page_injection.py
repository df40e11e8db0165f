"""Hostile text on every map page: template syntax is never evaluated, markup never runs.

Residents write report descriptions; staff write public notes; admins name categories;
boundary files name wards, zones and teams. Each of those reaches a page. The attack
strings below put Jinja syntax, a sandbox escape and HTML into every such field at once,
then request every page. A page that evaluates any of it shows ``49`` or ``uid=``, or
fails with a 500 on ``{%``.
"""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import text

PAYLOADS = {
    "expression": "{{7*7}}",
    "statement": "{% if 1 %}evaluated{% endif %}",
    "open_statement": "{% broken",
    "comment": "{# hidden",
    "sandbox_escape": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "markup": "<img src=x onerror=alert(1)>",
}


def _shown(field: str, payload: str) -> str:
    return f"SSTI-{field} {payload}"


def _poison(conn: object, payload: str) -> None:
    """Put the payload into every text field that some page shows."""
    statements = [
        ("UPDATE wards SET name = :v", "ward"),
        ("UPDATE zones SET name = :v", "zone"),
        ("UPDATE teams SET name = :v", "team"),
        ("UPDATE categories SET name_en = :v", "category_en"),
        ("UPDATE categories SET name_th = :v", "category_th"),
    ]
    for sql, field in statements:
        conn.execute(text(sql), {"v": _shown(field, payload)})  # type: ignore[attr-defined]


def _data_texts(page: str) -> str:
    """Everything the page shows as text: HTML entities and JSON escapes undone."""
    unescaped = html.unescape(page)
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), unescaped).replace(
        '\\"', '"'
    )


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_no_page_evaluates_or_breaks_on_hostile_text(city_app, engine, name: str) -> None:
    client, _city, keys = city_app
    payload = PAYLOADS[name]
    description = _shown("description", payload)
    answer = client.post(
        "/api/reports",
        json={"category": "road", "description": description, "lat": 8.405, "lon": 100.005},
    )
    assert answer.status_code == 201, answer.text
    staff = {"X-API-Key": keys.admin}
    # A second report, fixed with a public note: the public map shows it with the note.
    fixed = client.post(
        "/api/reports",
        json={"category": "road", "description": "fixed", "lat": 8.406, "lon": 100.006},
    )
    assert fixed.status_code == 201, fixed.text
    moved = client.post(
        f"/api/reports/{fixed.json()['id']}/status",
        json={"status": "resolved", "public_note": _shown("public_note", payload)},
        headers=staff,
    )
    assert moved.status_code == 200, moved.text
    with engine.begin() as conn:
        _poison(conn, payload)
    pages = {
        "/": ({}, ["ward", "zone", "team"]),
        "/maps/public?lang=en": ({}, ["category_en", "public_note"]),
        "/maps/public?lang=th": ({}, ["category_th", "public_note"]),
        "/maps/public?view=list&lang=en": ({}, ["category_en", "public_note"]),
        "/maps/public?view=list&lang=th": ({}, ["category_th", "public_note"]),
        "/maps/zone?zone=Z1&lang=en": (staff, ["description", "ward", "category_en"]),
        "/maps/wards?lang=en": (staff, ["ward"]),
    }
    for path, (headers, fields) in pages.items():
        page = client.get(path, headers=headers)
        assert page.status_code == 200, f"{path}: {page.status_code} {page.text[:300]}"
        shown = _data_texts(page.text)
        assert "SSTI-" in shown, path
        assert "uid=" not in shown, f"{path} ran a shell command"
        assert "evaluated" not in shown.replace("{% if 1 %}evaluated", ""), path
        for field in fields:
            assert _shown(field, payload) in shown, f"{path} does not show {field} verbatim"
        # The literal text may only appear inside the page's JSON data or escaped HTML,
        # never as live markup.
        assert "<img src=x" not in page.text, f"{path} carries live markup"


def test_zone_code_with_template_syntax_is_shown_verbatim(city_app, engine) -> None:
    client, _city, keys = city_app
    code = "Z{{7*7}}{%"
    with engine.begin() as conn:
        conn.execute(text("UPDATE zones SET code = :c WHERE code = 'Z1'"), {"c": code})
    page = client.get("/maps/zone", params={"zone": code}, headers={"X-API-Key": keys.admin})
    assert page.status_code == 200, page.text[:300]
    found = re.search(r'<script[^>]* id="im-data"[^>]*>(.*?)</script>', page.text, re.S)
    assert found, "the page carries its data as one JSON document"
    data = json.loads(found.group(1))
    (chrome,) = [v for v in data.values() if isinstance(v, dict) and v.get("kind") == "zone"]
    assert chrome["zone"] == code
    assert "Z49" not in _data_texts(page.text)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_what_a_folium_element_renders_is_not_compiled_again(name: str) -> None:
    """A map element's own output (here a tooltip's text) reaches the page as it rendered.

    branca by itself compiles every macro's output as a second template; a page builder
    that let any outside text into an element would then run it.
    """
    import folium

    from geo.maps.builders import render_page

    payload = PAYLOADS[name]
    fmap = folium.Map(location=(8.4, 100.0), tiles=None)
    folium.Marker((8.4, 100.0), tooltip=payload).add_to(fmap)
    page = render_page(fmap)
    # Evaluated, the payload would have been replaced by its result (or, unfinished, failed).
    assert payload in page, page[-2000:]
    assert "uid=" not in page
