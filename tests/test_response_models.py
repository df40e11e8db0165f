"""Successful answers of the report, Open311 and export routes are the ones the document shows.

Each answer below is validated against the schema ``/openapi.json`` gives its status and
media type, and against the pydantic model in ``api.models`` that documents it.
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import jsonschema
from PIL import Image
from pydantic import TypeAdapter

from api import models
from tests.test_openapi import documented_schema

ROAD = {"category": "road", "description": "หลุม", "lat": 8.405, "lon": 100.011}  # T1's zone


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 128, 0)).save(out, format="PNG")
    return out.getvalue()


def conforms(client: Any, method: str, path: str, answer: httpx.Response, model: Any) -> Any:
    """Fail unless ``answer`` is a success whose body the document and ``model`` describe."""
    assert answer.status_code < 300, (method, path, answer.status_code, answer.text)
    media_type, schema = documented_schema(client.app, method, path, answer)
    assert schema, f"{method} {path} {answer.status_code} {media_type}: no schema documented"
    body = answer.json()
    document = client.app.openapi()
    jsonschema.validate(
        body,
        {**schema, "components": document["components"]},
        cls=jsonschema.Draft202012Validator,
    )
    TypeAdapter(model).validate_python(body)
    return body


def test_native_report_answers_match_their_documented_models(city_app) -> None:
    client, _, keys = city_app
    t1 = {"X-API-Key": keys.t1}
    planner = {"X-API-Key": keys.planner}

    filed = client.post("/api/reports", json=ROAD)
    first = conforms(client, "post", "/api/reports", filed, models.IntakeAnswer)
    again = client.post("/api/reports", json=ROAD)  # nearby: a likely duplicate is listed
    second = conforms(client, "post", "/api/reports", again, models.IntakeAnswer)
    assert [d["id"] for d in second["likely_duplicates"]] == [first["id"]]
    with_photo = client.post(
        "/api/reports",
        data={k: str(v) for k, v in ROAD.items()},
        files={"photo": ("a.png", png(), "image/png")},
        headers={"Idempotency-Key": "models-1"},
    )
    conforms(client, "post", "/api/reports", with_photo, models.IntakeAnswer)
    replay = client.post(
        "/api/reports",
        data={k: str(v) for k, v in ROAD.items()},
        files={"photo": ("a.png", png(), "image/png")},
        headers={"Idempotency-Key": "models-1"},
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    conforms(client, "post", "/api/reports", replay, models.IntakeAnswer)

    report = first["id"]
    url = f"/api/reports/{report}"
    conforms(client, "get", url, client.get(url), models.ReportOut)
    staff = conforms(client, "get", url, client.get(url, headers=t1), models.ReportOut)
    assert "reporter_contact" in staff

    status_url = f"{url}/status"
    moved = client.post(status_url, json={"status": "acknowledged"}, headers=t1)
    conforms(client, "post", status_url, moved, models.StatusChanged)
    resolved = client.post(
        status_url,
        data={"status": "resolved", "note": "patched", "public_note": "fixed"},
        files={"photo": ("after.png", png(), "image/png")},
        headers=t1,
    )
    body = conforms(client, "post", status_url, resolved, models.StatusChanged)
    assert len(body["photo_ids"]) == 1

    events_url = f"{url}/events"
    events = client.get(events_url, headers=planner)
    conforms(client, "get", events_url, events, list[models.ReportEvent])

    merge_url = f"/api/reports/{second['id']}/merge"
    merged = client.post(merge_url, json={"original_id": with_photo.json()["id"]}, headers=t1)
    conforms(client, "post", merge_url, merged, models.Merged)


def test_the_status_route_documents_its_form_with_an_after_photo(city_app) -> None:
    client, _, _ = city_app
    body = client.app.openapi()["paths"]["/api/reports/{report_id}/status"]["post"]
    content = body["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    form = content["multipart/form-data"]["schema"]
    assert {"status", "note", "public_note", "photo"} <= set(form["properties"])
    photo = form["properties"]["photo"]
    assert {"type": "string", "format": "binary"} in photo.get("anyOf", [photo])
    assert set(content["application/json"]["schema"]["properties"]) == {
        "status",
        "note",
        "public_note",
    }


def test_geojson_page_matches_its_documented_model(city_app) -> None:
    client, _, keys = city_app
    for _ in range(3):
        client.post("/api/reports", json=ROAD)
    for headers in ({}, {"X-API-Key": keys.planner}):
        page = client.get("/api/reports?limit=2", headers=headers)
        assert page.headers["content-type"].startswith("application/geo+json")
        body = conforms(client, "get", "/api/reports", page, models.ReportCollection)
        assert body["numberReturned"] == 2
        assert any(link["rel"] == "next" for link in body["links"])


def test_open311_json_answers_match_their_documented_models(city_app) -> None:
    client, _, keys = city_app
    base = "/open311/v2"
    cases: list[tuple[str, str, dict[str, Any], Any]] = [
        ("get", f"{base}/discovery.json", {}, models.Open311Discovery),
        ("get", f"{base}/services.json", {}, list[models.Open311Service]),
        ("get", f"{base}/services/road.json", {}, models.Open311ServiceDefinition),
    ]
    for method, path, kwargs, model in cases:
        conforms(client, method, path, client.request(method, path, **kwargs), model)
    posted = client.post(
        f"{base}/requests.json",
        data={
            "api_key": keys.app,
            "service_code": "road",
            "lat": "8.405",
            "long": "100.011",
            "description": "หลุม",
        },
    )
    (record,) = conforms(
        client, "post", f"{base}/requests.json", posted, list[models.Open311Posted]
    )
    request_id = record["service_request_id"]
    one = f"{base}/requests/{request_id}.json"
    conforms(client, "get", one, client.get(one), list[models.Open311Request])
    listed = client.get(f"{base}/requests.json")
    found = conforms(client, "get", f"{base}/requests.json", listed, list[models.Open311Request])
    assert request_id in {r["service_request_id"] for r in found}
