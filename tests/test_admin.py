"""Administration over HTTP: boundaries, categories, routes and keys are for admins only."""

import json

from sqlalchemy import text

SQUARE = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"WARD": "N-1", "NAME": "ชุมชนใหม่"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[100.0, 8.40], [100.02, 8.40], [100.02, 8.41], [100.0, 8.41], [100.0, 8.40]]
                ],
            },
        }
    ],
}


def key(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


def upload(client, secret: str, payload: object, **fields: str):
    return client.post(
        "/api/admin/boundaries",
        headers=key(secret),
        data={"layer": "wards", "id_field": "WARD", "name_field": "NAME", **fields},
        files={"file": ("wards.geojson", json.dumps(payload).encode(), "application/geo+json")},
    )


def test_admin_replaces_wards_by_upload_and_others_may_not(city_app, engine) -> None:
    client, city, keys = city_app
    report = client.post(
        "/api/reports", json={"category": "road", "description": "x", "lat": 8.405, "lon": 100.005}
    ).json()
    assert upload(client, keys.planner, SQUARE).status_code == 403
    assert upload(client, keys.t1, SQUARE).status_code == 403
    refused = upload(client, keys.admin, SQUARE, id_field="NOPE")
    assert refused.status_code == 422 and "NOPE" in refused.text
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM wards WHERE retired_at IS NULL")).scalar() == 2
        )
    done = upload(client, keys.admin, SQUARE)
    assert done.status_code == 201, done.text
    with engine.connect() as conn:
        current = conn.execute(text("SELECT code FROM wards WHERE retired_at IS NULL")).scalars()
        assert list(current) == ["N-1"]
        kept = conn.execute(
            text("SELECT ward_id FROM reports WHERE id = :id"), {"id": report["id"]}
        ).scalar_one()
    assert kept == city.wards["W-A"], "an import never re-routes stored reports"


def test_admin_manages_categories_routes_and_keys(city_app) -> None:
    client, city, keys = city_app
    put = client.put(
        "/api/admin/categories/potholes",
        json={"code": "potholes", "name_th": "หลุมบ่อ", "name_en": "Potholes", "sla_hours": 24},
        headers=key(keys.admin),
    )
    assert put.status_code == 200, put.text
    assert {"code": "potholes", "name_th": "หลุมบ่อ", "name_en": "Potholes", "sla_hours": 24} in (
        client.get("/api/categories").json()
    )
    route = client.post(
        "/api/admin/routes",
        json={"category": "potholes", "team": "T2"},
        headers=key(keys.admin),
    )
    assert route.status_code == 201, route.text
    filed = client.post(
        "/api/reports",
        json={"category": "potholes", "description": "x", "lat": 8.405, "lon": 100.005},
    ).json()
    assert filed["team"]["code"] == "T2", "the new route applies to new reports"
    new_key = client.post(
        "/api/admin/keys",
        json={"name": "crew two night shift", "role": "field_team", "team": "T2"},
        headers=key(keys.admin),
    ).json()
    queue = f"/api/teams/{city.teams['T2']}/queue"
    assert client.get(queue, headers=key(new_key["key"])).status_code == 200
    assert (
        client.delete(f"/api/admin/keys/{new_key['id']}", headers=key(keys.admin)).status_code
        == 204
    )
    assert client.get(queue, headers=key(new_key["key"])).status_code == 401
    for path in ("/api/admin/routes",):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=key(keys.planner)).status_code == 403
