"""The resident pages without a browser (JavaScript off): the report form and the status page.

A resident posts the form as a plain multipart form, lands on the status page, and reads it
in Thai or English; the form comes back with their input and a message in their language
next to each problem; a double tap files one report; a report filed near an open one offers
to support it instead. The status page shows what staff told the public and nothing else.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import Engine, text

from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, snap_point
from geo.i18n import translate
from geo.maps.resident import ALREADY_SENT
from geo.reports.tracking import is_token

EXACT = (8.4043217, 100.0067891)
"""A place in ward W-A, zone Z1 (team T1), well off the public grid."""

ATTACKS = ("{{7*7}}", "{% raw %}", "<img src=x onerror=alert(1)>")
ATTACK = " ".join(ATTACKS)
ESCAPED = "{{7*7}} {% raw %} &lt;img src=x onerror=alert(1)&gt;"
"""``ATTACK`` as a page must show it: HTML escaped, template syntax left alone."""


def png(colour: tuple[int, int, int] = (9, 120, 9)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(out, format="PNG")
    return out.getvalue()


class Page(HTMLParser):
    """The parts of a page the tests read: elements by id, attributes, visible text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.by_id[str(attributes["id"])] = attributes

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())

    def hidden(self, name: str) -> str:
        for tag, attributes in self.tags:
            if tag == "input" and attributes.get("name") == name:
                return str(attributes.get("value") or "")
        raise AssertionError(f"no input named {name}")


def form_key(client: Any, lang: str = "th") -> str:
    return Page(client.get(f"/report?lang={lang}").text).hidden("form_key")


def send(
    client: Any,
    fields: dict[str, str],
    *,
    photos: int = 0,
    key: str | None = None,
    lang: str = "th",
) -> Any:
    """Post the form as a browser with JavaScript off would: every field, empty ones too."""
    data = {
        "form_key": key or form_key(client, lang),
        "lang": lang,
        "category": "",
        "description": "",
        "lat": "",
        "lon": "",
        "address": "",
        "reporter_name": "",
        "reporter_contact": "",
    } | fields
    files = [("photo", (f"p{i}.png", png(), "image/png")) for i in range(photos)]
    # The photo fields the resident left empty arrive as files without a name or bytes.
    files += [("photo", ("", b"", "application/octet-stream"))] * 2
    return client.post("/report", data=data, files=files, follow_redirects=False)


def token_of(answer: Any) -> str:
    assert answer.status_code == 303, answer.text[:500]
    match = re.fullmatch(r"/r/([A-Za-z0-9_-]{24})\?new=1&lang=(th|en)", answer.headers["location"])
    assert match, answer.headers["location"]
    return match.group(1)


ROAD = {"category": "road", "description": "ทางเท้าแตก", "lat": "8.4043217", "lon": "100.0067891"}


# --- the form -----------------------------------------------------------------------------


def test_the_form_speaks_thai_by_default_and_english_when_asked(city_app: Any) -> None:
    client, _, _ = city_app
    thai = client.get("/report")
    assert thai.status_code == 200
    assert '<html lang="th">' in thai.text
    assert translate("th", "Report a problem") in thai.text
    assert translate("th", "Report a problem") != "Report a problem"
    # Both names of each category, the page's language first.
    assert "ถนน (Roads)" in thai.text and "น้ำท่วม (Flooding)" in thai.text
    for english in (
        client.get("/report?lang=en"),
        client.get("/report", headers={"Accept-Language": "en-GB,en;q=0.9,th;q=0.5"}),
    ):
        assert '<html lang="en">' in english.text
        assert "Report a problem" in english.text
        assert "Roads (ถนน)" in english.text
    assert '<html lang="th">' in client.get("/report", headers={"Accept-Language": "fr"}).text


def test_the_form_has_every_field_by_the_apis_names_and_needs_no_script(city_app: Any) -> None:
    client, _, _ = city_app
    answer = client.get("/report?lang=en")
    page = Page(answer.text)
    form = next(a for t, a in page.tags if t == "form")
    assert (form["method"], form["action"], form["enctype"]) == (
        "post",
        "/report?lang=en",
        "multipart/form-data",
    )
    names = {a.get("name") for t, a in page.tags if t in ("input", "select", "textarea")}
    assert {
        "category",
        "description",
        "photo",
        "lat",
        "lon",
        "address",
        "reporter_name",
        "reporter_contact",
        "form_key",
    } <= names
    photos = [a for t, a in page.tags if t == "input" and a.get("name") == "photo"]
    assert len(photos) == 5, "IntakeSettings.photos_per_report file fields"
    for photo in photos:
        assert photo["type"] == "file" and photo["accept"] == "image/*" and "capture" in photo
    # Every field has a label, so a screen reader and the keyboard reach each by name.
    labelled = {a.get("for") for t, a in page.tags if t == "label"}
    for tag, attributes in page.tags:
        if tag in ("select", "textarea") or (
            tag == "input" and attributes.get("type") not in ("hidden",)
        ):
            assert attributes.get("id") in labelled, attributes
    # Only categories offered to reporters.
    assert "Roads" in answer.text
    # No inline script or handler; scripts come from our own origin under a nonce CSP.
    policy = answer.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce and "script-src-attr 'none'" in policy
    assert not re.search(r"\son[a-z]+=", answer.text)
    scripts = [a for t, a in page.tags if t == "script"]
    # Content-hashed names: a browser keeps them for good (tests/test_assets.py).
    assert [re.sub(r"\.[0-9a-f]{12}\.js$", ".js", s["src"]) for s in scripts] == [
        "/static/vendor/leaflet/dist/leaflet.js",
        "/static/report.js",
    ]
    assert all(s["nonce"] == nonce.group(1) for s in scripts)
    assert client.get("/static/report.js").status_code == 200
    assert client.get("/static/resident.css").status_code == 200
    # The map and "use my location" need the script: without it they stay hidden.
    assert "hidden" in page.by_id["map"] and "hidden" in page.by_id["locate"]
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_two_forms_carry_different_keys(city_app: Any) -> None:
    client, _, _ = city_app
    first, second = form_key(client), form_key(client)
    assert first != second and len(first) >= 32


def test_an_inactive_category_is_not_offered(city_app: Any, engine: Engine) -> None:
    client, _, _ = city_app
    with engine.begin() as conn:
        conn.execute(text("UPDATE categories SET active = false WHERE code = 'tree'"))
    page = client.get("/report?lang=en").text
    assert "Trees" not in page and "Roads" in page


# --- filing -------------------------------------------------------------------------------


def test_a_resident_files_a_report_with_a_photo_and_lands_on_its_status_page(
    city_app: Any, engine: Engine
) -> None:
    client, _, _ = city_app
    answer = send(
        client,
        ROAD | {"reporter_name": "Somchai", "reporter_contact": "somchai@example.org"},
        photos=2,
    )
    token = token_of(answer)
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT r.id, r.source, r.language, r.reporter_contact, t.code AS team, "
                "ST_Y(r.geom) AS lat, ST_X(r.geom) AS lon, "
                "(SELECT count(*) FROM report_photos p WHERE p.report_id = r.id) AS photos "
                "FROM reports r JOIN teams t ON t.id = r.team_id WHERE r.token = :t"
            ),
            {"t": token},
        ).one()
    assert (stored.source, stored.language, stored.team, stored.photos) == ("web", "th", "T1", 2)
    assert stored.reporter_contact == "somchai@example.org"
    assert (stored.lat, stored.lon) == EXACT
    page = client.get(answer.headers["location"])
    assert page.status_code == 200
    assert '<html lang="th">' in page.text
    words = Page(page.text).words
    assert translate("th", "Thank you: your report has been sent.") in words
    assert "ถนน" in words and "T1" in words
    assert translate("th", "Open") in words
    assert "Somchai" not in page.text and "somchai@" not in page.text


def test_the_language_the_resident_used_is_stored(city_app: Any, engine: Engine) -> None:
    client, _, _ = city_app
    answer = send(client, ROAD, lang="en")
    assert answer.headers["location"].endswith("lang=en")
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT language FROM reports WHERE token = :t"), {"t": token_of(answer)}
            ).scalar_one()
            == "en"
        )


def test_an_address_alone_places_the_report(city_app: Any, engine: Engine) -> None:
    client, _, _ = city_app
    answer = send(client, {"category": "road", "description": "x", "address": "Test Market"})
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT location_source, ST_Y(geom) AS lat FROM reports WHERE token = :t"),
            {"t": token_of(answer)},
        ).one()
    assert (row.location_source, row.lat) == ("address", 8.405)


def test_a_double_tap_files_one_report_and_lands_on_the_same_page(
    city_app: Any, engine: Engine
) -> None:
    client, _, _ = city_app
    key = form_key(client)
    first = send(client, ROAD, photos=1, key=key)
    again = send(client, ROAD, photos=1, key=key)
    assert first.headers["location"] == again.headers["location"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reports")).scalar_one() == 1
    # The same key with other details is not a replay: the form says so and offers a new key.
    other = send(client, ROAD | {"description": "something else"}, key=key)
    assert other.status_code == 422
    page = Page(other.text)
    assert translate("th", ALREADY_SENT) in page.words
    assert page.hidden("form_key") != key
    assert "something else" in other.text


# --- problems shown next to their field ------------------------------------------------------


def problem(page: Page, field: str) -> str:
    """The message shown next to ``field``, checking the field points to it."""
    control = page.by_id[field]
    assert control.get("aria-invalid") == "true", control
    described = str(control.get("aria-describedby") or "").split()
    assert f"{field}-error" in described, control
    assert f"{field}-error" in page.by_id
    # The text of the element with that id.
    return page.words


@pytest.mark.parametrize("lang", ["th", "en"])
def test_a_missing_category_comes_back_with_the_input_and_a_message_in_the_page_language(
    city_app: Any, lang: str
) -> None:
    client, _, _ = city_app
    answer = send(
        client,
        ROAD | {"category": "", "reporter_name": "Malee", "address": "near the market"},
        photos=1,
        lang=lang,
    )
    assert answer.status_code == 422
    page = Page(answer.text)
    problem(page, "category")
    assert f'<html lang="{lang}">' in answer.text
    hint = translate(lang, "Choose what kind of problem this is.")
    if lang == "th":
        assert hint != "Choose what kind of problem this is."
        assert not re.search(r"is required|category code", answer.text)
    # What the resident typed is all still there (photos must be chosen again).
    assert page.by_id["description"] is not None and "ทางเท้าแตก" in answer.text
    assert page.by_id["lat"]["value"] == "8.4043217"
    assert page.by_id["reporter_name"]["value"] == "Malee"
    assert page.by_id["address"]["value"] == "near the market"
    assert page.hidden("lang") == lang


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"lat": "north-ish", "lon": "100.0"}, "lat"),
        ({"lat": "8.4", "lon": "1e999"}, "lon"),
        ({"lat": "95", "lon": "100.0"}, "lat"),
        ({"lat": "8.405", "lon": ""}, "lon"),
        ({"lat": "", "lon": "", "address": "Nowhere Street 99"}, "address"),
        ({"lat": "", "lon": ""}, "location"),
        ({"lat": "13.75", "lon": "100.5"}, "location"),
        ({"description": "", "lat": "8.405", "lon": "100.005"}, "description"),
        ({"description": "x" * 4001}, "description"),
        ({"reporter_contact": "y" * 201}, "reporter_contact"),
        ({"category": "no-such-thing"}, "category"),
    ],
)
def test_each_problem_is_shown_next_to_its_field_in_thai(
    city_app: Any, engine: Engine, fields: dict[str, str], where: str
) -> None:
    client, _, _ = city_app
    answer = send(client, ROAD | fields)
    assert answer.status_code == 422, answer.text[:300]
    page = Page(answer.text)
    if where == "location":
        assert page.by_id["location"]["aria-describedby"] == "location-error"
        assert "location-error" in page.by_id
    else:
        problem(page, where)
    # The summary at the top links to the field.
    assert any(
        t == "a" and a.get("href") == f"#{'location-legend' if where == 'location' else where}"
        for t, a in page.tags
    )
    # Thai words next to the field, never the intake's English sentence.
    error_text = re.search(rf'id="{where}-error">([^<]*)<', answer.text)
    assert error_text and re.search(r"[\u0e00-\u0e7f]", error_text.group(1)), error_text
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reports")).scalar_one() == 0


def test_an_unusable_photo_is_a_problem_next_to_the_photo_field(city_app: Any) -> None:
    client, _, _ = city_app
    answer = client.post(
        "/report",
        data=ROAD | {"form_key": form_key(client), "lang": "en"},
        files=[("photo", ("p.png", b"not a picture at all", "image/png"))],
        follow_redirects=False,
    )
    assert answer.status_code == 422
    problem(Page(answer.text), "photo")


def test_template_and_html_text_is_shown_as_typed_never_run(city_app: Any) -> None:
    client, _, _ = city_app
    back = send(client, ROAD | {"category": "", "description": ATTACK, "reporter_name": ATTACK})
    assert back.status_code == 422
    answer = send(client, ROAD | {"description": ATTACK})
    page = client.get(answer.headers["location"]).text
    for html in (back.text, page):
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        # Shown exactly as typed, in one piece: nothing of it was read as a template.
        assert ESCAPED in html


def test_nul_characters_and_huge_values_are_refused_not_crashing(
    city_app: Any, engine: Engine
) -> None:
    client, _, _ = city_app
    for fields in (
        {"description": "a\x00b"},
        {"category": "ro\x00ad"},
        {"lat": "8.4\x00"},
        {"address": "x\x00", "lat": "", "lon": ""},
        {"reporter_name": "\x00"},
        {"description": "ก" * 70_000},
    ):
        answer = send(client, ROAD | fields)
        assert answer.status_code == 422, (fields, answer.text[:200])
        assert "\x00" not in answer.text
    bad_key = send(client, ROAD, key="two words\x00")
    assert bad_key.status_code == 422
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reports")).scalar_one() == 0


# --- the status page ------------------------------------------------------------------------


def test_a_status_page_address_is_an_unguessable_token(city_app: Any, engine: Engine) -> None:
    client, _, _ = city_app
    token = token_of(send(client, ROAD))
    assert is_token(token) and len(token) == 24
    with engine.connect() as conn:
        report_id = conn.execute(
            text("SELECT id FROM reports WHERE token = :t"), {"t": token}
        ).scalar_one()
    assert token != str(report_id)
    # Not a counter either: the next report's token shares nothing with this one's.
    other = token_of(send(client, ROAD))
    assert other != token and not other.startswith(token[:6])


@pytest.mark.parametrize(
    "path",
    [
        "/r/AAAAAAAAAAAAAAAAAAAAAAAA",
        "/r/short",
        "/r/" + "A" * 10_000,
        "/r/1",
        "/r/%27%20OR%201=1--aaaaaaaaaaaaa",
        "/r/{{7*7}}",
    ],
)
def test_an_unknown_or_malformed_token_is_a_404_page_in_the_callers_language(
    city_app: Any, path: str
) -> None:
    client, _, _ = city_app
    english = client.get(path, headers={"Accept-Language": "en"})
    assert english.status_code == 404
    assert "Report not found" in english.text and '<html lang="en">' in english.text
    thai = client.get(path)
    assert thai.status_code == 404 and '<html lang="th">' in thai.text
    assert translate("th", "Report not found") in thai.text
    assert "{{7*7}}" not in thai.text and ">49<" not in thai.text


def test_a_nul_in_the_token_is_refused(city_app: Any) -> None:
    client, _, _ = city_app
    answer = client.get("/r/AAAAAAAAAAAAAAAAAAAAAA%00A")
    assert answer.status_code == 422


def test_a_hidden_report_is_not_found(city_app: Any, engine: Engine) -> None:
    client, _, _ = city_app
    token = token_of(send(client, ROAD))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET hidden_at = now(), hidden_reason = 'abuse' WHERE token = :t"),
            {"t": token},
        )
    assert client.get(f"/r/{token}").status_code == 404


def staff_move(
    client: Any, key: str, report_id: int, status: str, *, photo: bool = False, **notes: str
) -> Any:
    if photo:
        answer = client.post(
            f"/api/reports/{report_id}/status",
            data={"status": status, **notes},
            files={"photo": ("after.png", png((200, 200, 200)), "image/png")},
            headers={"X-API-Key": key},
        )
    else:
        answer = client.post(
            f"/api/reports/{report_id}/status",
            json={"status": status, **notes},
            headers={"X-API-Key": key},
        )
    assert answer.status_code == 200, answer.text
    return answer.json()


def report_id_of(engine: Engine, token: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text("SELECT id FROM reports WHERE token = :t"), {"t": token}).scalar_one()
        )


def test_the_timeline_shows_public_notes_and_after_photos_and_nothing_staff_only(
    city_app: Any, engine: Engine
) -> None:
    client, _, keys = city_app
    token = token_of(
        send(client, ROAD | {"reporter_name": "Somchai", "reporter_contact": "+66-81-555-0199"})
    )
    report_id = report_id_of(engine, token)
    staff_move(
        client,
        keys.t1,
        report_id,
        "in_progress",
        note="called Somchai on +66-81-555-0199",
        public_note="ทีมกำลังเดินทาง " + ATTACK,
    )
    done = staff_move(
        client, keys.t1, report_id, "resolved", photo=True, public_note="Fixed the pavement."
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE teams SET name_th = 'ทีมถนนหนึ่ง', name_en = 'Road team one' WHERE code = 'T1'"
            )
        )
    answer = client.get(f"/r/{token}?lang=en")
    assert answer.status_code == 200
    page = Page(answer.text)
    words = page.words
    assert "Status changed to: In progress" in words
    assert "Status changed to: Resolved" in words
    assert "Fixed the pavement." in words
    assert ESCAPED in answer.text
    assert "Road team one" in words
    assert "ทีมถนนหนึ่ง" in client.get(f"/r/{token}?lang=th").text
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert f"/api/photos/{done['photo_ids'][0]}" in images
    assert client.get(f"/api/photos/{done['photo_ids'][0]}").status_code == 200
    for secret in ("Somchai", "555-0199", "called"):
        assert secret not in answer.text
    # The place is on the public grid, never the exact point.
    grid = snap_point(*EXACT, DEFAULT_PUBLIC_ROUNDING_M)
    assert f"{grid[0]:.5f}, {grid[1]:.5f}" in words
    assert f"{EXACT[0]:.5f}" not in answer.text and f"{EXACT[1]:.5f}" not in answer.text
    # Status is told in words, never by colour alone.
    assert "Resolved" in words


def test_an_overdue_report_says_so_in_words(city_app: Any, engine: Engine) -> None:
    client, _, _ = city_app
    token = token_of(send(client, ROAD))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET due_at = now() - interval '3 days' WHERE token = :t"),
            {"t": token},
        )
    english = Page(client.get(f"/r/{token}?lang=en").text).words
    assert "Overdue" in english and "later than the city promised" in english
    thai = client.get(f"/r/{token}").text
    assert translate("th", "Overdue") in thai


# --- already reported nearby ------------------------------------------------------------------


def test_a_report_near_an_open_one_offers_to_support_it_instead(
    city_app: Any, engine: Engine
) -> None:
    client, _, _ = city_app
    first = token_of(send(client, ROAD))
    second_answer = send(client, ROAD | {"lat": "8.4044", "lon": "100.0068"}, lang="en")
    second = token_of(second_answer)
    first_id = report_id_of(engine, first)
    page = client.get(second_answer.headers["location"])
    words = Page(page.text).words
    assert "Already reported nearby — add your support?" in words
    assert f"Report {first_id}" in words and "Open" in words
    forms = [a for t, a in Page(page.text).tags if t == "form"]
    assert forms[0]["action"] == f"/r/{second}/support?lang=en"
    # The first report has nothing nearby to offer: the second came later.
    assert "Already reported nearby" not in client.get(f"/r/{first}?lang=en").text

    supported = client.post(
        f"/r/{second}/support?lang=en", data={"report_id": str(first_id)}, follow_redirects=False
    )
    assert supported.status_code == 303
    assert supported.headers["location"] == f"/r/{second}?lang=en"
    again = client.post(
        f"/r/{second}/support?lang=en", data={"report_id": str(first_id)}, follow_redirects=False
    )
    assert again.status_code == 303, "a second press changes nothing"
    with engine.connect() as conn:
        rows = {
            r.token: r
            for r in conn.execute(
                text("SELECT token, status, supporters, duplicate_of FROM reports")
            )
        }
    assert rows[first].supporters == 1
    assert (rows[second].status, rows[second].duplicate_of) == ("duplicate", first_id)
    after = Page(client.get(f"/r/{second}?lang=en").text).words
    assert f"This report was joined to report {first_id}" in after
    assert "Joined to another report about the same problem" in after
    assert "Already reported nearby" not in after
    first_page = Page(client.get(f"/r/{first}?lang=en").text).words
    assert "Others who reported the same problem 1" in first_page
    # The public API counts the same supporter.
    assert client.get(f"/api/reports/{first_id}").json()["supporters"] == 1


def test_only_an_offered_report_can_be_supported(city_app: Any, engine: Engine) -> None:
    client, _, keys = city_app
    far = token_of(send(client, ROAD | {"lat": "8.4090", "lon": "100.0190"}))
    near = token_of(send(client, ROAD))
    mine = token_of(send(client, ROAD | {"lat": "8.4044", "lon": "100.0068"}))
    far_id, near_id = report_id_of(engine, far), report_id_of(engine, near)
    for value in (str(far_id), "abc", "", "9" * 40, "1\x00", str(report_id_of(engine, mine))):
        answer = client.post(
            f"/r/{mine}/support?lang=en", data={"report_id": value}, follow_redirects=False
        )
        assert answer.status_code == 422, (value, answer.text[:200])
        assert "That report is not one of the open reports nearby." in answer.text or (
            answer.headers["content-type"].startswith("application/json")
        )
    assert (
        client.post(
            "/r/AAAAAAAAAAAAAAAAAAAAAAAA/support", data={"report_id": str(near_id)}
        ).status_code
        == 404
    )
    # Once staff work the resident's report, it can no longer be joined to another.
    staff_move(client, keys.t1, report_id_of(engine, mine), "acknowledged")
    late = client.post(
        f"/r/{mine}/support?lang=th", data={"report_id": str(near_id)}, follow_redirects=False
    )
    assert late.status_code == 409
    assert (
        translate("th", "This report is already being handled, so it cannot be joined now.")
        in late.text
    )
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(supporters) FROM reports")).scalar_one() == 0


# --- the API tells where the status page is ------------------------------------------------


def test_the_api_answer_gives_the_status_page_and_the_report_its_public_notes(
    city_app: Any,
) -> None:
    client, _, keys = city_app
    filed = client.post(
        "/api/reports",
        json={"category": "road", "description": "pothole", "lat": EXACT[0], "lon": EXACT[1]},
    )
    assert filed.status_code == 201
    url = filed.json()["tracking_url"]
    assert re.fullmatch(r"http://testserver/r/[A-Za-z0-9_-]{24}", url), url
    assert client.get(url).status_code == 200
    report_id = filed.json()["id"]
    before = client.get(f"/api/reports/{report_id}").json()
    assert (before["public_notes"], before["after_photo_ids"]) == ([], [])
    staff_move(client, keys.t1, report_id, "in_progress", note="staff only", public_note="On it.")
    done = staff_move(client, keys.t1, report_id, "resolved", photo=True, public_note="Fixed.")
    for headers in ({}, {"X-API-Key": keys.app}, {"X-API-Key": keys.planner}):
        report = client.get(f"/api/reports/{report_id}", headers=headers).json()
        assert [(n["status"], n["note"]) for n in report["public_notes"]] == [
            ("in_progress", "On it."),
            ("resolved", "Fixed."),
        ]
        assert report["after_photo_ids"] == done["photo_ids"]
        assert "staff only" not in str(report)


def test_open311_answers_carry_the_status_token(city_app: Any) -> None:
    client, _, keys = city_app
    posted = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": keys.app,
            "service_code": "road",
            "lat": "8.405",
            "long": "100.005",
            "description": "pothole",
        },
    )
    assert posted.status_code == 200, posted.text
    (answer,) = posted.json()
    assert is_token(answer["token"])
    assert client.get(f"/r/{answer['token']}").status_code == 200


def test_too_many_forms_from_one_address_come_back_as_the_form_saying_how_long_to_wait(
    city_app: Any, engine: Engine
) -> None:
    client, _, _ = city_app
    for _ in range(10):
        assert send(client, ROAD | {"category": ""}).status_code == 422
    refused = send(client, ROAD)
    assert refused.status_code == 429
    assert refused.headers["retry-after"].isdigit()
    assert refused.headers["content-type"].startswith("text/html")
    page = Page(refused.text)
    assert '<html lang="th">' in refused.text and "problems" in page.by_id
    assert "กรุณารอ" in page.words
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reports")).scalar_one() == 0


# --- the city's time zone ---------------------------------------------------------------------


def times_of(engine: Engine, token: str) -> None:
    """Give the report a known moment of filing and due time (UTC)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE reports SET created_at = '2026-01-15 12:00:00+00', "
                "due_at = '2026-01-20 23:30:00+00' WHERE token = :t"
            ),
            {"t": token},
        )


def test_times_are_told_in_the_city_time_zone_the_app_was_given(
    city_app: Any, engine: Engine
) -> None:
    from api.deps import replace_app_state
    from geo.settings import CitySettings

    client, _, _ = city_app
    token = token_of(send(client, ROAD))
    times_of(engine, token)
    # By default the city is Bangkok (UTC+7).
    bangkok = Page(client.get(f"/r/{token}?lang=en").text).words
    assert "15 Jan 2026, 19:00" in bangkok and "21 Jan 2026, 06:30" in bangkok

    replace_app_state(client.app, city=CitySettings(city_timezone="America/New_York"))
    status = Page(client.get(f"/r/{token}?lang=en").text).words
    assert "15 Jan 2026, 07:00" in status, "reported: 12:00 UTC is 07:00 in New York"
    assert "20 Jan 2026, 18:30" in status, "due: 23:30 UTC is 18:30 the day before"
    assert "15 Jan 2026, 19:00" not in status and "21 Jan 2026, 06:30" not in status
    listed = Page(client.get("/maps/public?view=list&lang=en").text).words
    assert "15 Jan 2026, 07:00" in listed and "20 Jan 2026, 18:30" in listed
    assert "15 Jan 2026, 19:00" not in listed and "21 Jan 2026, 06:30" not in listed


@pytest.mark.parametrize(
    "zone",
    [
        "Mars/Olympus_Mons",
        "../../../etc/passwd",
        "/etc/localtime",
        "Asia/Bangkok\x00",
        "",
        "Asia/" + "x" * 5000,
        *ATTACKS,
        "'; DROP TABLE reports; --",
    ],
)
def test_an_unknown_time_zone_is_refused_naming_the_setting(zone: str) -> None:
    from pydantic import ValidationError

    from geo.settings import CitySettings, settings_problems

    with pytest.raises(ValidationError) as refused:
        CitySettings(city_timezone=zone)
    told = settings_problems(refused.value)
    assert told.startswith("ISSUEMAP_CITY_TIMEZONE: ")
    assert zone.strip() not in told or not zone.strip()


def test_the_service_refuses_to_start_in_an_unknown_time_zone(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.app import create_app
    from geo.settings import CitySettings

    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    monkeypatch.setenv("ISSUEMAP_CITY_TIMEZONE", "Asia/Atlantis")
    with pytest.raises(RuntimeError, match=r"ISSUEMAP_CITY_TIMEZONE: .*IANA time zone"):
        create_app()
    monkeypatch.setenv("ISSUEMAP_CITY_TIMEZONE", " Europe/Berlin ")
    assert CitySettings().city_timezone == "Europe/Berlin"
