"""Malformed requests: each gets a 4xx naming the field, and the database is unchanged."""

import io
from urllib.parse import quote

import pytest
from PIL import Image
from sqlalchemy import Engine, text

GOOD = {"category": "road", "description": "หลุม", "lat": 8.405, "lon": 100.011}
SQL = "road'; DROP TABLE reports; --"
TABLES = (
    "reports",
    "report_events",
    "report_photos",
    "idempotency_keys",
    "api_keys",
    "categories",
    "category_routes",
)


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (4, 4)).save(out, format="GIF")
    return out.getvalue()


def state(engine: Engine) -> tuple[object, ...]:
    with engine.connect() as conn:
        counts = tuple(
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() for table in TABLES
        )
        changed = conn.execute(
            text("SELECT max(updated_at), sum(supporters), string_agg(status, ',') FROM reports")
        ).one()
    return (*counts, *changed)


# (name, method, path, request kwargs, key role, field the message must name)
CASES = [
    ("lat 91", "post", "/api/reports", {"json": GOOD | {"lat": 91}}, None, "lat"),
    ("lat -90.5", "post", "/api/reports", {"json": GOOD | {"lat": -90.5}}, None, "lat"),
    ("lon abc", "post", "/api/reports", {"json": GOOD | {"lon": "abc"}}, None, "lon"),
    ("lon 181", "post", "/api/reports", {"json": GOOD | {"lon": 181}}, None, "lon"),
    (
        "lat NaN",
        "post",
        "/api/reports",
        {
            "content": b'{"category":"road","description":"x","lat":NaN,"lon":100.01}',
            "headers": {"content-type": "application/json"},
        },
        None,
        "lat",
    ),
    (
        "lon Infinity",
        "post",
        "/api/reports",
        {
            "content": b'{"category":"road","description":"x","lat":8.4,"lon":Infinity}',
            "headers": {"content-type": "application/json"},
        },
        None,
        "lon",
    ),
    (
        "lat 1e400",
        "post",
        "/api/reports",
        {
            "content": b'{"category":"road","description":"x","lat":1e400,"lon":100.01}',
            "headers": {"content-type": "application/json"},
        },
        None,
        "lat",
    ),
    ("lat text", "post", "/api/reports", {"json": GOOD | {"lat": "8.4x"}}, None, "lat"),
    (
        "lat without lon",
        "post",
        "/api/reports",
        {"json": {"category": "road", "description": "x", "lat": 8.405}},
        None,
        "lon",
    ),
    (
        "lon without lat",
        "post",
        "/api/reports",
        {"json": {"category": "road", "description": "x", "lon": 100.01}},
        None,
        "lat",
    ),
    (
        "no location",
        "post",
        "/api/reports",
        {"json": {"category": "road", "description": "x"}},
        None,
        "location",
    ),
    (
        "missing category",
        "post",
        "/api/reports",
        {"json": {"description": "x", "lat": 8.405, "lon": 100.011}},
        None,
        "category",
    ),
    ("empty category", "post", "/api/reports", {"json": GOOD | {"category": ""}}, None, "category"),
    (
        "unknown category",
        "post",
        "/api/reports",
        {"json": GOOD | {"category": "potholes"}},
        None,
        "category",
    ),
    (
        "category too long",
        "post",
        "/api/reports",
        {"json": GOOD | {"category": "c" * 65}},
        None,
        "category",
    ),
    (
        "SQL in category",
        "post",
        "/api/reports",
        {"json": GOOD | {"category": SQL}},
        None,
        "category",
    ),
    (
        "SQL in address",
        "post",
        "/api/reports",
        {"json": {"category": "road", "description": "x", "address": "' OR 1=1; --"}},
        None,
        "address",
    ),
    (
        "description 10 MB",
        "post",
        "/api/reports",
        {"json": GOOD | {"description": "ก" * 10_000_000}},
        None,
        "description",
    ),
    (
        "description 4001",
        "post",
        "/api/reports",
        {"json": GOOD | {"description": "x" * 4001}},
        None,
        "description",
    ),
    (
        "description NUL",
        "post",
        "/api/reports",
        {"json": GOOD | {"description": "a\u0000b"}},
        None,
        "description",
    ),
    (
        "empty description, no photo",
        "post",
        "/api/reports",
        {"json": GOOD | {"description": "   "}},
        None,
        "description",
    ),
    (
        "unknown field",
        "post",
        "/api/reports",
        {"json": GOOD | {"priority": "urgent"}},
        None,
        "priority",
    ),
    (
        "contact too long",
        "post",
        "/api/reports",
        {"json": GOOD | {"reporter_contact": "9" * 201}},
        None,
        "reporter_contact",
    ),
    (
        "media_url javascript",
        "post",
        "/api/reports",
        {"json": GOOD | {"media_url": "javascript:alert(1)"}},
        None,
        "media_url",
    ),
    (
        "body not JSON",
        "post",
        "/api/reports",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        None,
        "body",
    ),
    ("body JSON array", "post", "/api/reports", {"json": [GOOD]}, None, "body"),
    (
        "wrong content type",
        "post",
        "/api/reports",
        {"content": b"category=road", "headers": {"content-type": "text/plain"}},
        None,
        "Content-Type",
    ),
    (
        "broken multipart",
        "post",
        "/api/reports",
        {
            "content": b'--XYZ\r\nContent-Disposition: form-data; name="category"\r\n\r\nroad',
            "headers": {"content-type": "multipart/form-data; boundary=XYZ"},
        },
        None,
        "body",
    ),
    (
        "multipart without boundary",
        "post",
        "/api/reports",
        {"content": b"junk", "headers": {"content-type": "multipart/form-data"}},
        None,
        "body",
    ),
    (
        "multipart lat abc",
        "post",
        "/api/reports",
        {"data": {"category": "road", "description": "x", "lat": "abc", "lon": "100.01"}},
        None,
        "lat",
    ),
    (
        "multipart lat twice",
        "post",
        "/api/reports",
        {
            "data": {
                "category": "road",
                "description": "x",
                "lat": ["8.405", "8.406"],
                "lon": "100.011",
            }
        },
        None,
        "lat",
    ),
    (
        "photo not an image",
        "post",
        "/api/reports",
        {
            "data": {"category": "road", "description": "x", "lat": "8.405", "lon": "100.011"},
            "files": {"photo": ("pic.jpg", b"this is not a picture", "image/jpeg")},
        },
        None,
        "photo",
    ),
    (
        "photo is a GIF",
        "post",
        "/api/reports",
        {
            "data": {"category": "road", "description": "x", "lat": "8.405", "lon": "100.011"},
            "files": {"photo": ("pic.gif", gif(), "image/gif")},
        },
        None,
        "photo",
    ),
    (
        "file under another name",
        "post",
        "/api/reports",
        {
            "data": {"category": "road", "description": "x", "lat": "8.405", "lon": "100.011"},
            "files": {"image": ("pic.jpg", b"x", "image/jpeg")},
        },
        None,
        "image",
    ),
    (
        "Idempotency-Key with space",
        "post",
        "/api/reports",
        {"json": GOOD, "headers": {"Idempotency-Key": "two words"}},
        None,
        "Idempotency-Key",
    ),
    (
        "Idempotency-Key too long",
        "post",
        "/api/reports",
        {"json": GOOD, "headers": {"Idempotency-Key": "k" * 256}},
        None,
        "Idempotency-Key",
    ),
    (
        "Idempotency-Key empty",
        "post",
        "/api/reports",
        {"json": GOOD, "headers": {"Idempotency-Key": ""}},
        None,
        "Idempotency-Key",
    ),
    (
        "status unknown",
        "post",
        "/api/reports/{id}/status",
        {"json": {"status": "fixed"}},
        "t1",
        "status",
    ),
    (
        "status SQL",
        "post",
        "/api/reports/{id}/status",
        {"json": {"status": SQL[:16]}},
        "t1",
        "status",
    ),
    (
        "status note too long",
        "post",
        "/api/reports/{id}/status",
        {"json": {"status": "acknowledged", "note": "n" * 4001}},
        "t1",
        "note",
    ),
    (
        "public note too long",
        "post",
        "/api/reports/{id}/status",
        {"json": {"status": "acknowledged", "public_note": "n" * 4001}},
        "t1",
        "public_note",
    ),
    (
        "status body not JSON",
        "post",
        "/api/reports/{id}/status",
        {"content": b"acknowledged", "headers": {"content-type": "application/json"}},
        "t1",
        "body",
    ),
    ("status missing", "post", "/api/reports/{id}/status", {"json": {"note": "x"}}, "t1", "status"),
    (
        "merge into 0",
        "post",
        "/api/reports/{id}/merge",
        {"json": {"original_id": 0}},
        "t1",
        "original_id",
    ),
    (
        "merge into text",
        "post",
        "/api/reports/{id}/merge",
        {"json": {"original_id": "x"}},
        "t1",
        "original_id",
    ),
    (
        "merge into itself",
        "post",
        "/api/reports/{id}/merge",
        {"json": {"original_id": "{id}"}},
        "t1",
        "original_id",
    ),
    ("report id text", "get", "/api/reports/abc", {}, None, "report_id"),
    ("report id SQL", "get", "/api/reports/1;DROP TABLE reports", {}, None, "report_id"),
    ("report id zero", "get", "/api/reports/0", {}, None, "report_id"),
    ("team id text", "get", "/api/teams/x/queue", {}, "planner", "team_id"),
    ("route lookup lat 91", "get", "/api/route?lat=91&lon=100.01&category=road", {}, None, "lat"),
    (
        "admin key unknown role",
        "post",
        "/api/admin/keys",
        {"json": {"name": "x", "role": "god"}},
        "admin",
        "role",
    ),
    (
        "admin category SLA 0",
        "put",
        "/api/admin/categories/potholes",
        {"json": {"code": "potholes", "name_th": "หลุม", "name_en": "Potholes", "sla_hours": 0}},
        "admin",
        "sla_hours",
    ),
    (
        "admin route SQL zone",
        "post",
        "/api/admin/routes",
        {"json": {"category": "road", "team": "T1", "zone": "Z1' OR '1'='1"}},
        "admin",
        "zone",
    ),
    (
        "admin route unknown team",
        "post",
        "/api/admin/routes",
        {"json": {"category": "road", "team": "T9"}},
        "admin",
        "team",
    ),
]


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(
    ("name", "method", "path", "kwargs", "role", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_malformed_request_is_refused_naming_the_field_and_changes_nothing(
    city_app, engine, name, method, path, kwargs, role, field
) -> None:
    client, _, keys = city_app
    report = client.post("/api/reports", json=GOOD).json()["id"]
    path = path.replace("{id}", str(report))
    if "json" in kwargs and isinstance(kwargs["json"], dict):
        kwargs = kwargs | {
            "json": {k: (str(report) if v == "{id}" else v) for k, v in kwargs["json"].items()}
        }
    headers = dict(kwargs.pop("headers", {}) if "headers" in kwargs else {})
    if role is not None:
        headers["X-API-Key"] = getattr(keys, role)
    before = state(engine)
    answer = client.request(method, path, headers=headers, **kwargs)
    assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text[:300])
    body = answer.json()
    assert field in body["detail"] or body.get("field") == field, (name, body)
    assert state(engine) == before, name


# --- NUL characters and subnormal coordinates, on every parameter the document lists --------

NUL = "a\u0000b"
TINY = "5e-324"


def _spec_field(answer, name: str) -> bool:
    """Whether an answer names ``name``: ``field`` natively, the description in Open311."""
    media_type = answer.headers.get("content-type", "")
    if "xml" in media_type:
        return name in answer.text
    body = answer.json()
    if isinstance(body, list):
        return name.lower() in body[0]["description"].lower()
    return name.lower() in (str(body.get("field", "")) + body["detail"]).lower()


def nul_requests(document: dict, ids: dict[str, object], keys) -> list[tuple[str, str, dict, str]]:
    """(method, url, request kwargs, field) sending a NUL in each parameter, header and field.

    Parameters and headers come from the OpenAPI document, for every operation; body fields
    for the routes that read text from a body.
    """
    required = {
        "/api/route": {"lat": "8.405", "lon": "100.005", "category": "road"},
        "/maps/zone": {"zone": "Z1"},
    }
    out: list[tuple[str, str, dict, str]] = []
    for template, operations in document["paths"].items():
        for method, op in operations.items():
            params = op.get("parameters", [])
            if template == "/api/live":
                # Only its query: a request that got through would stream for ever.
                params = [p for p in params if p["in"] == "query"]
            formats = ("json", "xml") if "{fmt}" in template else ("",)
            key = keys.admin if template.startswith("/api/admin") else keys.planner
            for fmt, param in ((f, p) for f in formats for p in params):
                values = {n: str(v) for n, v in ids.items()} | {"fmt": fmt}
                query = dict(required.get(template, {}))
                headers = {"X-API-Key": key}
                where, name = param["in"], param["name"]
                if where == "path":
                    values[name] = quote(NUL, safe="")
                elif where == "query":
                    query[name] = NUL
                else:
                    headers = {name: NUL}
                path = template.format(**values)
                out.append((method, path, {"params": query, "headers": headers}, name))
    for fmt in ("", "json", "xml"):
        # headers the document leaves out (the key is a security scheme there, not a
        # parameter), read all the same
        path = f"/open311/v2/services.{fmt}" if fmt else "/api/reports"
        for header in ("X-API-Key", "Authorization", "Accept-Language"):
            out.append(("get", path, {"headers": {header: NUL}}, header))
    report = ids["report_id"]
    # An app key: more reports a minute than an anonymous address may file.
    app = {"X-API-Key": keys.app}
    for name in ("category", "description", "address", "reporter_name", "reporter_contact"):
        out.append(("post", "/api/reports", {"json": GOOD | {name: NUL}, "headers": app}, name))
        form = {k: str(v) for k, v in GOOD.items()} | {name: NUL}
        out.append(("post", "/api/reports", {"data": form, "headers": app}, name))
    bad_url = GOOD | {"media_url": "http://x/" + NUL}
    out.append(("post", "/api/reports", {"json": bad_url, "headers": app}, "media_url"))
    staff = {"X-API-Key": keys.t1}
    for name in ("status", "note", "public_note"):
        change = {"status": "acknowledged", name: NUL}
        out.append(
            ("post", f"/api/reports/{report}/status", {"json": change, "headers": staff}, name)
        )
        out.append(
            ("post", f"/api/reports/{report}/status", {"data": change, "headers": staff}, name)
        )
    for name in ("note", "public_note"):
        merge = {"original_id": 1, name: NUL}
        out.append(
            ("post", f"/api/reports/{report}/merge", {"json": merge, "headers": staff}, name)
        )
    admin = {"X-API-Key": keys.admin}
    category = {"code": "road", "name_th": "ถนน", "name_en": "Roads"}
    for name in ("name_th", "name_en"):
        body = {"json": category | {name: NUL}, "headers": admin}
        out.append(("put", "/api/admin/categories/road", body, name))
    out.append(
        (
            "post",
            "/api/admin/keys",
            {"json": {"name": NUL, "role": "planner"}, "headers": admin},
            "name",
        )
    )
    open311 = {
        "api_key": keys.app,
        "service_code": "road",
        "lat": "8.405",
        "long": "100.005",
        "description": "หลุม",
    }
    for fmt in ("json", "xml"):
        for name in [
            *sorted(open311),
            "address_string",
            "email",
            "phone",
            "first_name",
            "last_name",
            "media_url",
            "jurisdiction_id",
            "device_id",
        ]:
            data = open311 | {name: NUL}
            out.append(("post", f"/open311/v2/requests.{fmt}", {"data": data}, name))
    return out


def tiny_coordinate_requests(keys) -> list[tuple[str, str, dict, str]]:
    """(method, url, request kwargs, field) sending a subnormal number as each coordinate."""
    out: list[tuple[str, str, dict, str]] = []
    for sign in ("", "-"):
        tiny = float(sign + TINY)
        for name in ("lat", "lon"):
            out.append(("post", "/api/reports", {"json": GOOD | {name: tiny}}, name))
            form = {k: str(v) for k, v in GOOD.items()} | {name: sign + TINY}
            out.append(("post", "/api/reports", {"data": form}, name))
            query = {"lat": "8.405", "lon": "100.005", "category": "road", name: sign + TINY}
            out.append(("get", "/api/route", {"params": query}, name))
        for fmt in ("json", "xml"):
            for name in ("lat", "long"):
                data = {
                    "api_key": keys.app,
                    "service_code": "road",
                    "lat": "8.405",
                    "long": "100.005",
                    "description": "หลุม",
                    name: sign + TINY,
                }
                out.append(("post", f"/open311/v2/requests.{fmt}", {"data": data}, name))
    return out


def known_ids(client, city) -> dict[str, object]:
    """Ids for every path parameter, so that only the NUL under test is wrong."""
    report = client.post("/api/reports", json=GOOD).json()["id"]
    return {
        "report_id": report,
        "photo_id": 1,
        "team_id": city.teams["T1"],
        "route_id": 1,
        "event_id": 1,
        "key_id": 1,
        "webhook_id": 1,
        "code": "road",
        "service_code": "road",
        "service_request_id": report,
        "token": "A" * 24,  # a status page's token: well formed, known or not
        "layer": "wards",  # a vector tile's
        "z": 12,
        "x": 0,
        "y": 0,
    }


def test_a_nul_anywhere_is_a_4xx_naming_the_field_in_the_routes_format(city_app, engine) -> None:
    from fastapi.testclient import TestClient

    client, city, keys = city_app
    ids = known_ids(client, city)
    unsafe = TestClient(client.app, raise_server_exceptions=False)
    requests = nul_requests(client.app.openapi(), ids, keys)
    assert len(requests) > 100
    before = state(engine)
    wrong = []
    for method, url, kwargs, field in requests:
        answer = unsafe.request(method, url, **kwargs)
        if not 400 <= answer.status_code < 500 or not _spec_field(answer, field):
            wrong.append((method, url, field, answer.status_code, answer.text[:120]))
        elif url.startswith("/open311/"):
            assert answer.status_code == 400, (url, field, answer.text[:200])
            kind = "xml" if url.endswith(".xml") or ".xml?" in url else "json"
            assert kind in answer.headers["content-type"], (url, answer.headers)
    assert wrong == [], "\n".join(map(str, wrong))
    assert state(engine) == before


def test_a_subnormal_coordinate_is_a_4xx_naming_it(city_app, engine) -> None:
    from fastapi.testclient import TestClient

    client, _, keys = city_app
    client.post("/api/reports", json=GOOD)
    unsafe = TestClient(client.app, raise_server_exceptions=False)
    before = state(engine)
    wrong = []
    for method, url, kwargs, field in tiny_coordinate_requests(keys):
        answer = unsafe.request(method, url, **kwargs)
        if not 400 <= answer.status_code < 500 or not _spec_field(answer, field):
            wrong.append(
                (method, url, kwargs.get("params"), field, answer.status_code, answer.text[:120])
            )
    assert wrong == [], "\n".join(map(str, wrong))
    assert state(engine) == before


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("post", "/api/reports", {"Content-Type": "application/json"}),
        ("post", "/api/admin/keys", {"Content-Type": "application/json"}),
        ("post", "/api/reports", {"Content-Type": "multipart/form-data; boundary=x"}),
        ("post", "/open311/v2/requests.json", {"Content-Type": "multipart/form-data; boundary=x"}),
        ("post", "/open311/v2/requests.xml", {"Content-Type": "multipart/form-data; boundary=x"}),
    ],
)
def test_a_body_that_is_not_utf8_is_bad_input_in_the_routes_format(
    city_app, engine, method: str, path: str, headers: dict[str, str]
) -> None:
    client, _, keys = city_app
    before = state(engine)
    answer = client.request(
        method, path, content=b"\xff\xfe{\x01", headers=headers | {"X-API-Key": keys.admin}
    )
    if path.endswith(".xml"):
        assert answer.status_code == 400, answer.text
        assert "<description>body" in answer.text
    elif path.startswith("/open311/"):
        assert answer.status_code == 400, answer.text
        assert answer.json()[0]["description"].startswith("body")
    else:
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "body"
        assert answer.json()["error"] == "InvalidInputError"
    assert state(engine) == before
