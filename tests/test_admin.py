"""Administration over HTTP: boundaries, categories, routes and keys are for admins only."""

import json
import math
import re
import tempfile

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


def upload(client, secret: str, payload: object, name: str = "wards.geojson", **fields: str):
    return client.post(
        "/api/admin/boundaries",
        headers=key(secret),
        data={"layer": "wards", "id_field": "WARD", "name_field": "NAME", **fields},
        files={"file": (name, json.dumps(payload).encode(), "application/geo+json")},
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


# The file that took the city offline: longitude and latitude swapped, one square at
# 89.95° N, 8.42° E.
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


def current_wards(engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT id, code FROM wards WHERE retired_at IS NULL ORDER BY id")
            )
        ]


def file_report(client):
    return client.post(
        "/api/reports", json={"category": "road", "description": "x", "lat": 8.405, "lon": 100.005}
    )


def test_a_swapped_upload_is_refused_with_numbers_until_forced(city_app, engine) -> None:
    client, _city, keys = city_app
    assert file_report(client).status_code == 201
    before = current_wards(engine)

    refused = upload(client, keys.admin, SWAPPED)

    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["field"] == "force"
    assert "leave 1 of the 1 open reports outside the new wards" in body["detail"]
    # The tiny city is 0.02° x 0.01° near 8.4° N: about 2.4 km², all of it lost.
    assert re.search(
        r"uncover 2\.\d\d km² of the 2\.\d\d km² they cover now \(100\.0%", body["detail"]
    )
    assert current_wards(engine) == before
    assert file_report(client).status_code == 201, "intake still routes"

    dry = upload(client, keys.admin, SWAPPED, dry_run="true")
    assert dry.status_code == 200, dry.text
    assert dry.json()["import_id"] is None and dry.json()["dry_run"] is True
    assert dry.json()["effect"]["outside"] == 2 and dry.json()["effect"]["lost_share"] == 1.0
    assert dry.json()["needs_force"] is not None
    assert current_wards(engine) == before

    forced = upload(client, keys.admin, SWAPPED, force="true")
    assert forced.status_code == 201, forced.text
    assert forced.json()["forced"] is True and forced.json()["effect"]["outside"] == 2
    assert [code for _, code in current_wards(engine)] == ["W-A"]
    assert file_report(client).status_code == 422, "the admin chose this, knowing the numbers"


def test_upload_limits_come_from_settings(city_app, engine) -> None:
    from api.deps import replace_app_state
    from geo.settings import BoundarySettings

    client, _city, keys = city_app
    before = current_wards(engine)
    replace_app_state(client.app, boundaries=BoundarySettings(max_vertices=100))

    ring = [[100.0 + 0.01 * math.cos(a / 50), 8.405 + 0.005 * math.sin(a / 50)] for a in range(314)]
    dense = json.loads(json.dumps(SQUARE))
    dense["features"][0]["geometry"]["coordinates"] = [[*ring, ring[0]]]
    refused = upload(client, keys.admin, dense)
    assert refused.status_code == 422 and "'N-1': 315 vertices" in refused.json()["detail"]

    replace_app_state(client.app, boundaries=BoundarySettings(upload_max_bytes=4096))
    big = json.loads(json.dumps(SQUARE))
    big["features"][0]["properties"]["NOTE"] = "x" * 5000
    too_big = upload(client, keys.admin, big)
    assert too_big.status_code == 422 and too_big.json()["field"] == "file"
    assert "at most 4,096 bytes" in too_big.json()["detail"]
    assert current_wards(engine) == before


def test_upload_errors_do_not_show_the_server_folder(city_app, engine) -> None:
    client, _city, keys = city_app
    before = current_wards(engine)
    for name, data in (("w.geojson", b"{not json"), ("w.zip", b"PK\x03\x04garbage")):
        garbled = client.post(
            "/api/admin/boundaries",
            headers=key(keys.admin),
            data={"layer": "wards", "id_field": "WARD", "name_field": "NAME"},
            files={"file": (name, data, "application/octet-stream")},
        )
        assert garbled.status_code == 422, garbled.text
        assert name in garbled.json()["detail"]
        assert "issuemap-upload-" not in garbled.text and tempfile.gettempdir() not in garbled.text
    # A name too long for the server's disk is stored under a plain one, not a 500.
    long_name = upload(client, keys.admin, SQUARE, dry_run="true", name="x" * 300 + ".geojson")
    assert long_name.status_code == 200, long_name.text
    assert current_wards(engine) == before
