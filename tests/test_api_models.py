"""The service, catalogue, team and admin routes document what they answer, and keep to it.

Each real answer is validated against the schema ``/openapi.json`` gives its operation,
status and media type; every JSON success of these routes must have a named model there
(a ``$ref``, or a list of them), not an open object. The permission dependencies answer
401 and 403 with the same sentences on every admin route.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema

from tests.test_admin import SQUARE, key, upload
from tests.test_openapi import documented_schema

ROAD = {"category": "road", "description": "หลุม", "lat": 8.405, "lon": 100.005}

MODELLED = re.compile(r"^/(healthz$|api/(route|categories|teams|admin)\b)")
"""The routes of the service, teams and admin routers."""


def _schema_names(schema: dict[str, Any]) -> Iterator[str]:
    if "$ref" in schema:
        yield schema["$ref"]
    elif schema.get("type") == "array" and "$ref" in schema.get("items", {}):
        yield schema["items"]["$ref"]


def test_every_json_success_of_these_routes_names_a_model(city_app) -> None:
    client, _city, _keys = city_app
    document = client.get("/openapi.json").json()
    seen = 0
    for path, operations in document["paths"].items():
        if not MODELLED.match(path):
            continue
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if not status.startswith("2") or status == "204":
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                assert schema, f"{method} {path} {status} documents no JSON body"
                names = list(_schema_names(schema))
                assert names, f"{method} {path} {status} has no model: {schema}"
                component = document["components"]["schemas"][names[0].rsplit("/", 1)[1]]
                assert component.get("additionalProperties") is False, (method, path, names)
                assert component["properties"], (method, path, names)
                seen += 1
    # healthz, route, categories, teams, queue, category PUT, routes GET/POST, keys POST,
    # boundaries 200 and 201, webhooks GET/POST
    assert seen == 13, seen


def _validate(client, method: str, url: str, answer: httpx.Response) -> Any:
    document = client.get("/openapi.json").json()
    media_type, schema = documented_schema(client.app, method, httpx.URL(url).path, answer)
    assert media_type == "application/json", (method, url, media_type)
    assert schema, (method, url)
    body = answer.json()
    jsonschema.validate(
        body,
        {**schema, "components": document["components"]},
        cls=jsonschema.Draft202012Validator,
    )
    return body


def test_real_answers_conform_to_their_documented_models(city_app) -> None:
    client, city, keys = city_app
    admin = key(keys.admin)
    report = client.post("/api/reports", json=ROAD)
    assert report.status_code == 201, report.text

    def call(method: str, url: str, status: int, **kwargs: Any) -> Any:
        answer = client.request(method, url, **kwargs)
        assert answer.status_code == status, (method, url, answer.text[:300])
        return _validate(client, method, url, answer)

    health = call("get", "/healthz", 200)
    assert health["status"] == "ok" and health["postgis"]
    where = call("get", "/api/route?lat=8.405&lon=100.005&category=road", 200)
    assert where["ward_id"] == city.wards["W-A"]
    categories = call("get", "/api/categories", 200)
    assert {c["code"] for c in categories} == set(city.categories)
    teams = call("get", "/api/teams", 200)
    assert {t["code"]: t["id"] for t in teams} == city.teams
    queue = call("get", f"/api/teams/{where['team_id']}/queue", 200, headers=key(keys.planner))
    assert [r["id"] for r in queue["reports"]] == [report.json()["id"]]
    assert queue["reports"][0]["reporter_name"] is None

    category = {"code": "light", "name_th": "ไฟ", "name_en": "Street light", "sla_hours": 24}
    stored = call("put", "/api/admin/categories/light", 200, json=category, headers=admin)
    assert stored == category | {"active": True}
    added = call(
        "post",
        "/api/admin/routes",
        201,
        json={"category": "light", "team": "T1", "zone": "Z2"},
        headers=admin,
    )
    routes = call("get", "/api/admin/routes", 200, headers=admin)
    assert added in routes
    crew = {"name": "crew", "role": "field_team", "team": "T2"}
    new_key = call("post", "/api/admin/keys", 201, json=crew, headers=admin)
    assert new_key["team_id"] == city.teams["T2"] and new_key["key"].startswith("im_")

    for dry_run, status in (("true", 200), ("false", 201)):
        answer = upload(client, keys.admin, SQUARE, dry_run=dry_run, force="true")
        assert answer.status_code == status, answer.text
        body = _validate(client, "post", "/api/admin/boundaries", answer)
        assert body["dry_run"] is (dry_run == "true")
        assert (body["import_id"] is None) is (dry_run == "true")


def _admin_operations(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for path, operations in document["paths"].items():
        if path.startswith("/api/admin/"):
            for method in operations:
                yield method, re.sub(r"\{[^}]+\}", "1", path)


def test_every_admin_route_refuses_others_with_the_same_sentences(city_app) -> None:
    client, _city, keys = city_app
    operations = list(_admin_operations(client.get("/openapi.json").json()))
    assert len(operations) == 10, operations
    for method, url in operations:
        anonymous = client.request(method, url)
        assert anonymous.status_code == 401, (method, url, anonymous.text)
        assert anonymous.json()["detail"] == "This needs an administrator's API key."
        for role in ("planner", "t1", "app"):
            refused = client.request(method, url, headers=key(getattr(keys, role)))
            assert refused.status_code == 403, (method, url, role, refused.text)
            assert refused.json()["detail"] == "Only administrators may do this."


def test_a_field_team_reads_only_its_own_queue(city_app) -> None:
    client, city, keys = city_app
    own = client.get(f"/api/teams/{city.teams['T1']}/queue", headers=key(keys.t1))
    assert own.status_code == 200 and own.json()["team_id"] == city.teams["T1"]
    other = client.get(f"/api/teams/{city.teams['T2']}/queue", headers=key(keys.t1))
    assert other.status_code == 404
    assert other.json()["detail"] == f"There is no team {city.teams['T2']}."
    for headers in ({}, key(keys.app)):
        refused = client.get(f"/api/teams/{city.teams['T1']}/queue", headers=headers)
        assert refused.status_code == 401, refused.text
