"""Each shared rule is written once, and every entry point that applies it agrees.

The description limit (``geo.vocabulary.DESCRIPTION_MAX``) is the same number for the native
API, Open311, the CSV import and the database; a coordinate or a bbox is refused the same
way (field and sentence) wherever it is sent (``geo.city.coordinates``).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from geo.city.catalogue import active_categories, put_category
from geo.city.coordinates import check_bbox, parse_bbox
from geo.errors import InvalidInputError
from geo.reports.imports import import_reports, parse_column_map
from geo.reports.search import ReportFilter
from geo.vocabulary import DESCRIPTION_MAX

POINT = {"lat": "8.405", "lon": "100.011"}
COLUMNS = ["external_id=ID", "lat=LAT", "lon=LON", "category=TYPE", "description=TEXT"]


def _native(client: Any, description: str) -> Any:
    return client.post(
        "/api/reports",
        json={"category": "road", "description": description, "lat": 8.405, "lon": 100.011},
    )


def _open311(client: Any, key: str, **fields: str) -> Any:
    form = {"api_key": key, "service_code": "road", "lat": "8.405", "long": "100.011"}
    form |= {"description": "หลุมบนถนน"} | fields
    return client.post("/open311/v2/requests.json", data=form)


def _import(engine: Engine, tmp_path: Path, rows: list[dict[str, str]]) -> dict[str, str]:
    """Import ``rows`` as a generic CSV; the reason each refused row (by ID) was refused."""
    source = tmp_path / "rows.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ID", "LAT", "LON", "TYPE", "TEXT"])
        writer.writeheader()
        writer.writerows(rows)
    rejects = tmp_path / "rejects.csv"
    import_reports(
        engine,
        source,
        file_format="csv",
        column_map=parse_column_map(COLUMNS),
        source="hotline",
        rejects_path=rejects,
    )
    if not rejects.exists():
        return {}
    with rejects.open(encoding="utf-8-sig", newline="") as handle:
        return {row["ID"]: row["reason"] for row in csv.DictReader(handle)}


def _stored_descriptions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT char_length(description) FROM reports ORDER BY 1"))
        return [int(n) for n in rows.scalars()]


def test_the_description_limit_is_one_number_for_every_entry_point(
    city_app: Any, engine: Engine, tmp_path: Path
) -> None:
    client, _, keys = city_app
    longest, too_long = "ก" * DESCRIPTION_MAX, "ก" * (DESCRIPTION_MAX + 1)

    assert _native(client, longest).status_code == 201
    refused = _native(client, too_long)
    assert refused.status_code == 422 and refused.json()["field"] == "description"

    assert _open311(client, keys.app, description=longest).status_code == 200  # per GeoReport
    refused = _open311(client, keys.app, description=too_long)
    assert refused.status_code == 400
    assert "description" in refused.json()[0]["description"]
    assert f"{DESCRIPTION_MAX:,}" in refused.json()[0]["description"]

    reasons = _import(
        engine,
        tmp_path,
        [
            {"ID": "fits", "TYPE": "road", "TEXT": longest, "LAT": "8.405", "LON": "100.011"},
            {"ID": "long", "TYPE": "road", "TEXT": too_long, "LAT": "8.405", "LON": "100.011"},
        ],
    )
    assert list(reasons) == ["long"]
    assert f"at most {DESCRIPTION_MAX:,}" in reasons["long"]

    # The database holds the same line for any writer that bypasses the code.
    assert _stored_descriptions(engine) == [DESCRIPTION_MAX] * 3
    with pytest.raises(IntegrityError, match="description_length"), engine.begin() as conn:
        conn.execute(text("UPDATE reports SET description = :d"), {"d": too_long})


@pytest.mark.parametrize(
    ("value", "sentence"),
    [
        ("95", "must be between -90 and 90"),
        ("5e-324", "too close to 0 to be a position"),
        ("1e999", "must be a finite number of degrees"),
    ],
)
def test_a_bad_latitude_is_refused_alike_everywhere(
    city_app: Any, engine: Engine, tmp_path: Path, value: str, sentence: str
) -> None:
    client, _, keys = city_app
    native = client.post(
        "/api/reports",
        content=f'{{"category": "road", "description": "x", "lat": {value}, "lon": 100.011}}',
        headers={"Content-Type": "application/json"},
    )
    assert native.status_code == 422 and native.json()["field"] == "lat", native.text

    lookup = client.get("/api/route", params={"lat": value, "lon": "100.011", "category": "road"})
    assert lookup.status_code == 422 and lookup.json()["field"] == "lat", lookup.text

    open311 = _open311(client, keys.app, lat=value)
    assert open311.status_code == 400
    assert open311.json()[0]["description"].startswith("lat: ")
    assert sentence in open311.json()[0]["description"]

    reasons = _import(
        engine,
        tmp_path,
        [{"ID": "bad", "TYPE": "road", "TEXT": "x", "LAT": value, "LON": "100.011"}],
    )
    assert reasons["bad"].startswith("bad coordinates: LAT")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reports")).scalar_one() == 0


BAD_BOXES = [
    "100,8,101",
    "100,8,x,9",
    "100,8,101,nan",
    "100,-91,101,9",
    "181,8,182,9",
    "101,8,100,9",
    "100,9,101,8",
]


@pytest.mark.parametrize("bbox", BAD_BOXES)
def test_a_bad_bbox_is_refused_alike_by_the_api_the_maps_and_the_filter(
    city_app: Any, bbox: str
) -> None:
    client, _, keys = city_app
    admin = {"X-API-Key": keys.admin}
    with pytest.raises(InvalidInputError) as expected:
        parse_bbox(bbox)
    answers = [
        client.get("/api/reports", params={"bbox": bbox}),
        client.get("/api/reports", params={"bbox": bbox, "format": "csv"}),
        client.get("/maps/public", params={"bbox": bbox}),
        client.get("/maps/zone", params={"zone": "Z1", "bbox": bbox}, headers=admin),
    ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "bbox"
        assert expected.value.problem in answer.json()["detail"]


@pytest.mark.parametrize(
    "box", [(100.0, 8.0, 101.0, 95.0), (101.0, 8.0, 100.0, 9.0), (100.0, 9.0, 101.0, 8.0)]
)
def test_the_report_filter_refuses_a_bbox_with_the_parameter_s_sentence(
    box: tuple[float, float, float, float],
) -> None:
    with pytest.raises(InvalidInputError) as from_filter:
        ReportFilter(bbox=box)
    with pytest.raises(InvalidInputError) as from_check:
        check_bbox(box)
    assert (from_filter.value.field, from_filter.value.problem) == (
        from_check.value.field,
        from_check.value.problem,
    )
    text_box = ",".join(str(v) for v in box)
    with pytest.raises(InvalidInputError) as from_parameter:
        parse_bbox(text_box)
    assert from_parameter.value.problem == from_filter.value.problem


def _find(data: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a page's data document."""
    if isinstance(data, dict):
        return [v for k, v in data.items() if k == key] + [
            found for v in data.values() for found in _find(v, key)
        ]
    if isinstance(data, list):
        return [found for v in data for found in _find(v, key)]
    return []


def test_the_categories_shown_everywhere_are_the_catalogue_s(city_app: Any, engine: Engine) -> None:
    client, _, keys = city_app
    with engine.begin() as conn:
        put_category(
            conn, code="retired", name_th="เลิกใช้", name_en="Retired", sla_hours=5, active=False
        )
        catalogue = active_categories(conn)
    assert "retired" not in [c.code for c in catalogue]

    api = client.get("/api/categories").json()
    assert api == [
        {"code": c.code, "name_th": c.name_th, "name_en": c.name_en, "sla_hours": c.sla_hours}
        for c in catalogue
    ]
    services = client.get("/open311/v2/services.json").json()
    assert [(s["service_code"], s["service_name"]) for s in services] == [
        (c.code, c.name_en) for c in catalogue
    ]
    for lang in ("th", "en"):
        page = client.get("/maps/public", params={"lang": lang}).text
        found = re.search(r'<script[^>]* id="im-data"[^>]*>(.*?)</script>', page, re.S)
        assert found
        shown = _find(json.loads(found.group(1)), "categories")
        assert shown and all(s == {c.code: c.name(lang) for c in catalogue} for s in shown)

    # A retired code is unknown alike to intake, the routing lookup and Open311.
    native = client.post(
        "/api/reports",
        json={"category": "retired", "description": "x", "lat": 8.405, "lon": 100.011},
    )
    lookup = client.get("/api/route", params={"lat": 8.405, "lon": 100.011, "category": "retired"})
    for answer in (native, lookup):
        assert answer.status_code == 422 and answer.json()["field"] == "category", answer.text
    assert native.json()["detail"] == lookup.json()["detail"]
    assert client.get("/open311/v2/services/retired.json").status_code == 404
    assert _open311(client, keys.app, service_code="retired").status_code == 404
