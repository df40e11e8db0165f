"""The OpenAPI document describes the error answers the service really sends.

Every error answer below is looked up in the document: its status must be documented for
its operation (exactly, or as ``4XX``), its media type too, and its body must validate
against the schema given there. Native routes answer ``{detail, error, field?, errors?}``;
Open311 routes answer ``[{code, description}]`` or ``<errors>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from tests.test_bad_input import CASES as BAD_INPUT
from tests.test_bad_input import known_ids, nul_requests, tiny_coordinate_requests
from tests.test_outage import database_down

ROAD = {"category": "road", "description": "หลุม", "lat": 8.405, "lon": 100.005}


_documents: dict[tuple[tuple[str, tuple[str, ...]], ...], dict[str, Any]] = {}


def document_of(app: FastAPI) -> dict[str, Any]:
    """``app``'s OpenAPI document, made once for all the apps with the same routes.

    Making it takes about a second, and every test here makes an app of the same code.
    """
    key = tuple(
        (str(getattr(route, "path", "")), tuple(sorted(getattr(route, "methods", None) or ())))
        for route in app.routes
    )
    if key not in _documents:
        _documents[key] = app.openapi()
    return _documents[key]


def operation(app: FastAPI, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The documented operation that serves ``method path``, or None if it is undocumented.

    Paths are tried in the document's order, which is the order routes are matched in.
    """
    for template, operations in document_of(app)["paths"].items():
        pattern = "".join(
            "[^/]+" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^}]+\})", template)
        )
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return template, operations[method.lower()]
    return None


def documented_schema(
    app: FastAPI, method: str, path: str, answer: httpx.Response
) -> tuple[str, dict[str, Any] | None]:
    """The media type of ``answer`` and the schema the document gives it (None: no schema)."""
    found = operation(app, method, path)
    assert found is not None, f"{method} {path} has no documented operation"
    template, op = found
    status = str(answer.status_code)
    responses = op["responses"]
    response = responses.get(status) or responses.get(f"{status[0]}XX") or responses.get("default")
    assert response is not None, (
        f"{method} {template} answered {status}, which its OpenAPI entry does not document "
        f"(documented: {sorted(responses)})"
    )
    media_type = answer.headers.get("content-type", "").split(";")[0].strip()
    content = response.get("content", {})
    assert media_type in content, (
        f"{method} {template} {status} answered {media_type}; documented: {sorted(content)}"
    )
    return media_type, content[media_type].get("schema")


def assert_conforms(app: FastAPI, method: str, path: str, answer: httpx.Response) -> None:
    """Fail unless ``answer`` is an error the OpenAPI document describes, body and all."""
    assert answer.status_code >= 400, (method, path, answer.status_code)
    media_type, schema = documented_schema(app, method, path, answer)
    if media_type == "text/xml":
        root = ET.fromstring(answer.content)
        assert root.tag == "errors", answer.text
        for error in root:
            assert error.tag == "error"
            assert int(error.findtext("code") or 0) == answer.status_code
            assert error.findtext("description")
        return
    assert schema, f"{method} {path} {answer.status_code}: the document gives no body schema"
    document = document_of(app)
    jsonschema.validate(
        answer.json(),
        {**schema, "components": document["components"]},
        cls=jsonschema.Draft202012Validator,
    )


def test_the_document_never_shows_fastapis_default_validation_error(city_app) -> None:
    client, _, _ = city_app
    document = client.app.openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            errors = {s for s in op["responses"] if s[0] in "45"}
            if path.startswith("/open311/"):
                assert {"400", "404", "503", "4XX"} <= errors, (method, path, errors)
            else:
                assert {"422", "503"} <= errors, (method, path, errors)


def test_date_parameters_are_typed_as_dates(city_app) -> None:
    client, _, _ = city_app
    document = client.app.openapi()
    wanted = {
        ("/api/reports", "get"): ("created_from", "created_to"),
        ("/maps/zone", "get"): ("created_from", "created_to"),
        ("/maps/wards", "get"): ("created_from", "created_to"),
        ("/open311/v2/requests.{fmt}", "get"): ("start_date", "end_date"),
    }
    for (path, method), names in wanted.items():
        parameters = {p["name"]: p for p in document["paths"][path][method]["parameters"]}
        for name in names:
            schema = parameters[name]["schema"]
            formats = {s.get("format") for s in schema.get("anyOf", [schema])}
            assert formats == {"date", "date-time"}, (path, name, schema)


def _requests(report: int, photo: int, city: Any, keys: Any) -> Iterator[tuple[str, str, dict]]:
    """(method, url, request kwargs) of error answers of every kind on every route family."""
    bad = {"headers": {"X-API-Key": "im_not_a_key"}}
    t1 = {"headers": {"X-API-Key": keys.t1}}
    app = {"headers": {"X-API-Key": keys.app}}
    planner = {"headers": {"X-API-Key": keys.planner}}
    admin = {"headers": {"X-API-Key": keys.admin}}
    # 401: a key that is not one, or none where one is needed
    yield "get", "/api/reports", bad
    yield "post", "/api/reports", {"json": ROAD, **bad}
    yield "get", f"/api/reports/{report}", bad
    yield "get", f"/api/reports/{report}/events", {}
    yield "post", f"/api/reports/{report}/status", {"json": {"status": "acknowledged"}}
    yield "post", f"/api/reports/{report}/merge", {"json": {"original_id": report}}
    yield "get", f"/api/photos/{photo}", bad
    yield "get", f"/api/teams/{city.teams['T1']}/queue", {}
    yield "get", "/maps/zone?zone=Z1", {}
    yield "get", "/maps/wards", {}
    yield "get", "/api/live?zone=0", {}  # a 422: a good request would stream for ever
    yield "get", "/api/admin/routes", {}
    yield "put", "/api/admin/categories/road", {"json": {"code": "road"}}
    yield "post", "/api/admin/keys", {"json": {"name": "x", "role": "planner"}}
    yield "delete", "/api/admin/keys/1", {}
    yield "delete", "/api/admin/routes/1", {}
    # 403: a key whose role may not
    yield "get", "/api/admin/routes", t1
    yield "get", "/maps/wards", t1
    yield "get", f"/api/reports/{report}/events", app
    yield "post", f"/api/reports/{report}/status", {"json": {"status": "acknowledged"}, **app}
    yield "post", "/api/admin/keys", {"json": {"name": "x", "role": "planner"}, **planner}
    # 404
    yield "get", "/api/reports/999999", {}
    yield "get", "/api/reports/999999/events", planner
    yield "post", "/api/reports/999999/status", {"json": {"status": "acknowledged"}, **t1}
    yield "post", f"/api/reports/{report}/merge", {"json": {"original_id": 999999}, **t1}
    yield "get", "/api/photos/999999", {}
    yield "get", "/api/teams/999999/queue", planner
    yield "get", "/maps/zone?zone=NOPE", planner
    yield "delete", "/api/admin/routes/999999", admin
    yield "delete", "/api/admin/keys/999999", admin
    yield "post", "/api/admin/routes", {"json": {"category": "road", "team": "NOPE"}, **admin}
    # 409
    yield "post", f"/api/reports/{report}/status", {"json": {"status": "closed"}, **t1}
    yield (
        "put",
        "/api/admin/categories/road",
        {
            "json": {"code": "tree", "name_th": "x", "name_en": "x"},
            **admin,
        },
    )
    yield (
        "post",
        "/api/admin/routes",
        {
            "json": {"category": "tree", "team": "TREE", "zone": "Z2"},
            **admin,
        },
    )
    # Open311, in both formats
    for fmt in ("json", "xml"):
        yield "get", f"/open311/v2/requests.{fmt}?status=bogus", {}
        yield "get", f"/open311/v2/requests.{fmt}?start_date=yesterday", {}
        yield "get", f"/open311/v2/requests/999999.{fmt}", {}
        yield "get", f"/open311/v2/services/nope.{fmt}", {}
        yield "get", f"/open311/v2/services.{fmt}?jurisdiction_id=elsewhere", {}
        yield "get", f"/open311/v2/services/%00.{fmt}", {}
        yield "post", f"/open311/v2/requests.{fmt}", {"data": {"service_code": "road"}}
        yield (
            "post",
            f"/open311/v2/requests.{fmt}",
            {"data": {"api_key": keys.app, "service_code": "road", "lat": "5e-324", "long": "100"}},
        )
    yield "get", "/open311/v2/services.yaml", {}


def test_every_error_answer_conforms_to_the_documented_schema(city_app) -> None:
    client, city, keys = city_app
    report = client.post("/api/reports", json=ROAD).json()["id"]
    photo_report = client.post(
        "/api/reports",
        data={k: str(v) for k, v in ROAD.items()},
        files={"photo": ("p.png", _png(), "image/png")},
    ).json()
    seen: set[int] = set()
    for method, url, kwargs in _requests(report, photo_report["photo_ids"][0], city, keys):
        answer = client.request(method, url, **kwargs)
        assert answer.status_code >= 400, (method, url, answer.status_code, answer.text[:200])
        assert answer.status_code < 500, (method, url, answer.text[:200])
        assert_conforms(client.app, method, httpx.URL(url).path, answer)
        seen.add(answer.status_code)
    assert {400, 401, 403, 404, 409, 422} <= seen, seen


def test_a_reused_idempotency_key_conflict_conforms(city_app) -> None:
    client, _, _ = city_app
    key = {"Idempotency-Key": "k-1"}
    assert client.post("/api/reports", json=ROAD, headers=key).status_code == 201
    clash = client.post("/api/reports", json=ROAD | {"description": "x"}, headers=key)
    assert clash.status_code == 409
    assert_conforms(client.app, "post", "/api/reports", clash)


@pytest.mark.parametrize(
    ("name", "method", "path", "kwargs", "role", "field"),
    BAD_INPUT,
    ids=[c[0] for c in BAD_INPUT],
)
def test_every_bad_input_answer_conforms(city_app, name, method, path, kwargs, role, field) -> None:
    client, _, keys = city_app
    report = client.post("/api/reports", json=ROAD).json()["id"]
    path = path.replace("{id}", str(report))
    if isinstance(kwargs.get("json"), dict):
        kwargs = kwargs | {
            "json": {k: (str(report) if v == "{id}" else v) for k, v in kwargs["json"].items()}
        }
    headers = dict(kwargs.get("headers", {}))
    if role is not None:
        headers["X-API-Key"] = getattr(keys, role)
    kwargs = {k: v for k, v in kwargs.items() if k != "headers"}
    answer = client.request(method, path, headers=headers, **kwargs)
    assert_conforms(client.app, method, httpx.URL(path).path, answer)


def test_nul_and_subnormal_answers_conform(city_app) -> None:
    client, city, keys = city_app
    ids = known_ids(client, city)
    requests = nul_requests(document_of(client.app), ids, keys) + tiny_coordinate_requests(keys)
    for method, url, kwargs, _ in requests:
        answer = client.request(method, url, **kwargs)
        assert_conforms(client.app, method, httpx.URL(url).path, answer)


def test_outage_answers_conform(city_app, db_url: str) -> None:
    client, _, _ = city_app
    urls = [
        ("get", "/healthz", {}),
        ("get", "/api/route?lat=8.405&lon=100.005&category=road", {}),
        ("get", "/", {}),
        ("get", "/maps/public", {}),
        ("get", "/api/reports", {}),
        ("get", "/api/reports/1", {}),
        ("post", "/api/reports", {"json": ROAD}),
        ("get", "/api/teams", {}),
        ("get", "/api/categories", {}),
        ("get", "/open311/v2/requests.json", {}),
        ("get", "/open311/v2/requests.xml", {}),
        ("get", "/open311/v2/services.json", {}),
    ]
    with database_down(db_url):
        for method, url, kwargs in urls:
            answer = client.request(method, url, **kwargs)
            assert answer.status_code == 503, (url, answer.text[:200])
            assert answer.headers["Retry-After"]
            assert_conforms(client.app, method, httpx.URL(url).path, answer)


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, format="PNG")
    return out.getvalue()
