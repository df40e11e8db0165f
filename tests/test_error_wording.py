"""Domain errors name parameters; only the command line speaks of flags.

HTTP users read geo's messages (the admin boundary upload), so geo never writes
``--force`` or ``--crs``: an ``InvalidInputError`` names the parameter and a message writes
another parameter's name in backticks. ``geo.cli.main.error_text`` shows both as flags.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geo.cli.main import FLAGS, app, error_text
from geo.errors import BoundaryReplaceRefusedError, InvalidInputError
from geo.reports.imports import parse_column_map

GEO = Path(__file__).resolve().parent.parent / "geo"
FLAG = re.compile(r"(?<![\w-])--[a-z]")

# One square near the tiny city, as TopoJSON: a format that never declares its CRS.
TOPOJSON = {
    "type": "Topology",
    "objects": {
        "wards": {
            "type": "GeometryCollection",
            "geometries": [
                {"type": "Polygon", "arcs": [[0]], "properties": {"WARD": "N-1", "NAME": "x"}}
            ],
        }
    },
    "arcs": [[[100.0, 8.40], [100.02, 8.40], [100.02, 8.41], [100.0, 8.41], [100.0, 8.40]]],
}
# Longitude and latitude swapped: the replace that needs force.
SWAPPED = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"WARD": "W-A", "NAME": "swapped"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[8.41, 89.94], [8.43, 89.94], [8.43, 89.96], [8.41, 89.96], [8.41, 89.94]]
                ],
            },
        }
    ],
}


def flat(text: str) -> str:
    return " ".join(text.split())


def error_texts(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal (f-string parts too) in a ``raise`` or a ``...Error(...)`` call."""
    found = []
    for node in ast.walk(tree):
        called = node.func if isinstance(node, ast.Call) else None
        name = getattr(called, "id", None) or getattr(called, "attr", None) or ""
        if isinstance(node, ast.Raise) or name.endswith("Error"):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    found.append((inner.lineno, inner.value))
    return found


def test_no_error_made_in_geo_outside_the_cli_speaks_of_a_flag() -> None:
    offenders = []
    for path in sorted(GEO.rglob("*.py")):
        relative = path.relative_to(GEO)
        if relative.parts[0] == "cli" or "migrations" in relative.parts:
            continue
        for line, text in error_texts(ast.parse(path.read_text(), str(path))):
            if FLAG.search(text):
                offenders.append(f"geo/{relative}:{line}: {text!r}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize(
    ("items", "field"),
    [(["lat"], "column_map"), (["height=H"], "column_map"), (["lat=A", "lat=B"], "column_map")],
)
def test_import_errors_name_the_parameter(items: list[str], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_column_map(items)
    assert caught.value.field == field
    assert not FLAG.search(str(caught.value))
    # The command line says the same with its flag.
    assert error_text(caught.value).startswith("--map: ")


def test_the_cli_shows_parameters_named_in_a_message_as_flags() -> None:
    error = InvalidInputError(
        "column_map", "describes a generic CSV; use it with `file_format` csv"
    )
    assert error_text(error) == "--map: describes a generic CSV; use it with --format csv"
    refused = BoundaryReplaceRefusedError("w.geojson was refused. Confirm with `force`.")
    assert error_text(refused) == "w.geojson was refused. Confirm with --force."
    # Backticks around anything else are left as they were; unknown fields stay names.
    assert error_text(InvalidInputError("chunk_rows", "`x` y")) == "chunk_rows: `x` y"
    assert FLAGS["force"] == "--force" and FLAGS["crs"] == "--crs"


def test_an_upload_without_crs_names_the_form_field(city_app) -> None:
    client, _city, keys = city_app
    refused = client.post(
        "/api/admin/boundaries",
        headers={"X-API-Key": keys.admin},
        data={"layer": "wards", "id_field": "WARD", "name_field": "NAME"},
        files={"file": ("w.topojson", json.dumps(TOPOJSON).encode(), "application/json")},
    )
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert "does not say which coordinate reference system" in detail
    assert "Give it as `crs` (EPSG:4326" in detail
    assert not FLAG.search(refused.text), detail
    sent = client.post(
        "/api/admin/boundaries",
        headers={"X-API-Key": keys.admin},
        data={"layer": "wards", "id_field": "WARD", "name_field": "NAME", "crs": "EPSG:4326"},
        files={"file": ("w.topojson", json.dumps(TOPOJSON).encode(), "application/json")},
    )
    assert sent.status_code == 201, sent.text


def test_a_refused_replace_names_the_force_field(city_app) -> None:
    client, _city, keys = city_app
    report = {"category": "road", "description": "x", "lat": 8.405, "lon": 100.005}
    assert client.post("/api/reports", json=report).status_code == 201
    refused = client.post(
        "/api/admin/boundaries",
        headers={"X-API-Key": keys.admin},
        data={"layer": "wards", "id_field": "WARD", "name_field": "NAME"},
        files={"file": ("w.geojson", json.dumps(SWAPPED).encode(), "application/geo+json")},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "force"
    assert "confirm the replace with `force`" in refused.json()["detail"]
    assert not FLAG.search(refused.text), refused.json()["detail"]


def test_the_cli_names_the_crs_flag(tmp_path: Path) -> None:
    path = tmp_path / "w.topojson"
    path.write_text(json.dumps(TOPOJSON))
    args = ["boundaries", "import", str(path), "--layer", "wards"]
    result = CliRunner().invoke(app, [*args, "--id-field", "WARD", "--name-field", "NAME"])
    assert result.exit_code == 2, result.output
    shown = flat(result.output)
    assert "Give it as --crs (EPSG:4326 if the coordinates are longitude/latitude" in shown
    assert "`" not in shown


def test_the_cli_names_import_flags(db_url: str, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "reports.csv"
    path.write_text("ID,LAT,LON\n1,8.4,100.0\n", encoding="utf-8")
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["reports", "import", str(path), "--lang", "en"]  # Thai is the default
    generic_only = runner.invoke(app, [*args, "--format", "traffy", "--map", "lat=LAT"])
    assert generic_only.exit_code == 2, generic_only.output
    assert "error: --map: describes a generic CSV; use it with --format csv" in flat(
        generic_only.output
    )
    missing = runner.invoke(app, [*args, "--format", "csv", "--map", "lat=LAT", "--map", "lon=LON"])
    assert missing.exit_code == 2, missing.output
    shown = flat(missing.output)
    assert "error: --map: a generic CSV needs external_id=COLUMN" in shown
    assert "(or give --default-category)" in shown and "`" not in shown
    unknown = runner.invoke(app, [*args, "--format", "csv", "--timezone", "Mars/Olympus"])
    assert unknown.exit_code == 2 and "error: --timezone: 'Mars/Olympus'" in flat(unknown.output)


# ----------------------------------------------------------------- the caller's language

THAI = re.compile(r"[\u0E00-\u0E7F]")
TEMPLATE_LIKE = "{{7*7}} {0.__class__} {% if 1 %}x{% endif %} {limit}"


def test_a_domain_error_is_a_catalog_message_filled_once() -> None:
    from geo.i18n import N_

    error = InvalidInputError(
        "address",
        N_(
            "we could not find {address!r}; check the spelling, name a nearby street or "
            "landmark, or send the location as lat and lon"
        ),
        address=TEMPLATE_LIKE,
    )
    # The value is data: its braces are neither filled nor evaluated, in either language.
    assert repr(TEMPLATE_LIKE) in str(error) and repr(TEMPLATE_LIKE) in error.message("th")
    assert "49" not in error.message("th") and "class" in error.message("th")
    assert str(error).startswith("address: we could not find")
    assert error.message("th").startswith("address: ไม่พบ")
    assert error.problem.startswith("we could not find") and error.field == "address"
    # A sentence built beforehand still works, as it is.
    assert InvalidInputError("x", "{already} built").message("th") == "x: {already} built"


def test_the_cli_shows_domain_errors_in_english() -> None:
    from geo.i18n import N_

    error = InvalidInputError("crs", N_("must be at most {limit:,} characters"), limit=4000)
    assert error_text(error) == "--crs: must be at most 4,000 characters"


def post_report(client, body: dict[str, object], **headers: str):
    return client.post("/api/reports", json=body, headers=headers)


def test_an_intake_error_answers_in_thai_when_asked_and_in_english_otherwise(city_app) -> None:
    client, _city, _keys = city_app
    body = {"category": "road", "description": "x", "address": f"nowhere {TEMPLATE_LIKE}"}
    english = post_report(client, body)
    thai = post_report(client, body, **{"Accept-Language": "th-TH,th;q=0.9,en;q=0.5"})
    by_query = client.post("/api/reports?lang=th", json=body)
    for answer in (english, thai, by_query):
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "address"
        assert answer.json()["error"] == "InvalidInputError"
        assert set(answer.json()) == {"detail", "error", "field"}
        # The resident's own words come back as they were typed, never evaluated.
        assert repr(f"nowhere {TEMPLATE_LIKE}") in answer.json()["detail"]
        assert "49" not in answer.json()["detail"]
    assert english.json()["detail"].startswith("address: we could not find 'nowhere")
    assert not THAI.search(english.json()["detail"])
    assert thai.json()["detail"].startswith("address: ไม่พบ 'nowhere")
    assert by_query.json()["detail"] == thai.json()["detail"]
    # A language we do not speak gets English, as a client naming none does.
    french = post_report(client, body, **{"Accept-Language": "fr"})
    assert french.json()["detail"] == english.json()["detail"]


def test_a_point_outside_the_city_is_explained_in_thai(city_app) -> None:
    client, _city, _keys = city_app
    body = {"category": "road", "description": "x", "lat": 13.7, "lon": 100.5}
    english = post_report(client, body)
    thai = post_report(client, body, **{"Accept-Language": "th"})
    assert english.status_code == thai.status_code == 422
    assert "is outside the area this city serves" in english.json()["detail"]
    assert "(13.700000, 100.500000)" in thai.json()["detail"]
    assert "อยู่นอกพื้นที่ที่เมืองนี้ให้บริการ" in thai.json()["detail"]
    assert not THAI.search(english.json()["detail"])


@pytest.mark.parametrize(
    ("request_args", "field", "english", "thai"),
    [
        (
            {"method": "POST", "url": "/api/reports", "json": {"description": "x"}},
            "category",
            "category: this field is required",
            "category: ต้องกรอกช่องนี้",
        ),
        (
            {
                "method": "POST",
                "url": "/api/reports",
                "json": {"category": "road", "description": "ก" * 5000, "lat": 8.4, "lon": 100},
            },
            "description",
            "description: must be at most 4,000 characters",
            "description: ต้องยาวไม่เกิน 4,000 ตัวอักษร",
        ),
        (
            {"method": "GET", "url": "/api/reports?limit=many"},
            "limit",
            "limit: must be a whole number",
            "limit: ต้องเป็นจำนวนเต็ม",
        ),
        (
            {"method": "GET", "url": "/api/route?lat=north&lon=100&category=road"},
            "lat",
            "lat: must be a number",
            "lat: ต้องเป็นตัวเลข",
        ),
    ],
)
def test_request_validation_errors_answer_in_the_callers_language(
    city_app, request_args: dict[str, object], field: str, english: str, thai: str
) -> None:
    client, _city, _keys = city_app
    plain = client.request(**request_args)
    asked = client.request(**request_args, headers={"Accept-Language": "th"})
    for answer in (plain, asked):
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field and answer.json()["error"] == "InvalidInputError"
    assert plain.json()["detail"] == english
    assert asked.json()["detail"] == thai


@pytest.mark.parametrize(
    ("method", "url", "role", "status", "english", "thai"),
    [
        (
            "get",
            "/api/reports/987654",
            None,
            404,
            "There is no report 987654.",
            "ไม่มีเรื่องร้องเรียนหมายเลข 987654",
        ),
        (
            "get",
            "/api/admin/routes",
            None,
            401,
            "This needs an administrator's API key.",
            "ต้องใช้ API key ของผู้ดูแลระบบ",
        ),
        (
            "get",
            "/api/admin/routes",
            "planner",
            403,
            "Only administrators may do this.",
            "เฉพาะผู้ดูแลระบบเท่านั้นที่ทำรายการนี้ได้",
        ),
        (
            "get",
            "/api/reports/1/events",
            "nobody",
            401,
            "The API key is not valid, or has been revoked.",
            "API key ไม่ถูกต้อง หรือถูกเพิกถอนแล้ว",
        ),
    ],
)
def test_not_found_and_key_errors_answer_in_the_callers_language(
    city_app, method: str, url: str, role: str | None, status: int, english: str, thai: str
) -> None:
    client, _city, keys = city_app
    headers = {}
    if role == "nobody":
        headers["X-API-Key"] = "im_" + "x" * 43
    elif role is not None:
        headers["X-API-Key"] = getattr(keys, role)
    plain = client.request(method, url, headers=headers)
    asked = client.request(method, url, headers=headers | {"Accept-Language": "th"})
    assert plain.status_code == asked.status_code == status, plain.text
    assert plain.json()["detail"] == english
    assert asked.json()["detail"] == thai
    assert plain.json()["error"] == asked.json()["error"]


def test_open311_errors_answer_in_the_callers_language_in_the_spec_format(city_app) -> None:
    client, _city, _keys = city_app
    url = "/open311/v2/requests/987654.json"
    plain = client.get(url)
    asked = client.get(url, headers={"Accept-Language": "th"})
    assert plain.status_code == asked.status_code == 404
    assert plain.json() == [{"code": 404, "description": "There is no report 987654."}]
    assert asked.json() == [{"code": 404, "description": "ไม่มีเรื่องร้องเรียนหมายเลข 987654"}]
    wrong_type = client.get(
        "/open311/v2/requests.json?start_date={{7*7}}", headers={"Accept-Language": "th"}
    )
    assert wrong_type.status_code == 400
    description = wrong_type.json()[0]["description"]
    assert description.startswith("start_date: '{{7*7}}' ไม่ใช่วันเวลาแบบ W3C"), description


def test_a_boundary_upload_is_refused_in_the_callers_language(city_app) -> None:
    client, _city, keys = city_app
    topojson = ("w.topojson", json.dumps(TOPOJSON).encode(), "application/json")
    form = {"layer": "wards", "id_field": "WARD", "name_field": "NAME"}
    admin = {"X-API-Key": keys.admin}
    no_crs = client.post(
        "/api/admin/boundaries",
        headers=admin | {"Accept-Language": "th"},
        data=form,
        files={"file": topojson},
    )
    assert no_crs.status_code == 422, no_crs.text
    assert no_crs.json()["detail"].startswith("w.topojson ไม่ได้ระบุว่าใช้ระบบพิกัดอ้างอิงใด")
    assert "`crs`" in no_crs.json()["detail"]
    # Each problem of a refused file is listed in the same language, field names as given.
    wrong_fields = form | {"name_field": "name", "name_th_field": "{{7*7}}", "crs": "EPSG:4326"}
    for lang, expected in (
        ("en", ["the name field 'name' is not in the file (did you mean 'NAME'?)"]),
        ("th", ["ไม่มีช่องชื่อ 'name' ในไฟล์ (หมายถึง 'NAME' หรือไม่)", "ไม่มีช่องชื่อภาษาไทย '{{7*7}}' ในไฟล์"]),
    ):
        refused = client.post(
            "/api/admin/boundaries",
            headers=admin | {"Accept-Language": lang},
            data=wrong_fields,
            files={"file": topojson},
        )
        assert refused.status_code == 422, refused.text
        for line in expected:
            assert f"  - {line}" in refused.json()["detail"]
    # A replace that needs confirmation names `force` and gives its numbers in Thai.
    report = {"category": "road", "description": "x", "lat": 8.405, "lon": 100.005}
    assert client.post("/api/reports", json=report).status_code == 201
    swapped = client.post(
        "/api/admin/boundaries",
        headers=admin | {"Accept-Language": "th"},
        data=form,
        files={"file": ("w.geojson", json.dumps(SWAPPED).encode(), "application/geo+json")},
    )
    assert swapped.status_code == 422 and swapped.json()["field"] == "force"
    detail = swapped.json()["detail"]
    assert detail.startswith("force: w.geojson ถูกปฏิเสธ การแทนที่ชุมชนปัจจุบัน 2 แห่ง"), detail
    assert "ให้ยืนยันการแทนที่ด้วย `force`" in detail
