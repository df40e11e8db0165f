"""Idempotency-Keys belong to their caller and expire (an API key, else the client address)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

ROAD = {"category": "road", "description": "หลุมบ่อ", "lat": 8.405, "lon": 100.005}


def resident(client: TestClient, address: str) -> TestClient:
    """Another client of the same running app, calling from ``address``."""
    return TestClient(client.app, client=(address, 50000))


def reports(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM reports")).scalar_one())


def test_two_residents_using_the_same_key_each_get_their_own_report(city_app, engine) -> None:
    client, _, _ = city_app
    key = {"Idempotency-Key": "1"}
    a = resident(client, "203.0.113.7").post("/api/reports", json=ROAD, headers=key)
    b = resident(client, "2001:db8::42").post(
        "/api/reports", json=ROAD | {"description": "ไฟดับ"}, headers=key
    )
    assert a.status_code == b.status_code == 201, (a.text, b.text)
    assert a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers
    assert reports(engine) == 2


def test_an_app_key_and_an_anonymous_resident_do_not_share_keys(city_app, engine) -> None:
    client, _, keys = city_app
    anonymous = client.post("/api/reports", json=ROAD, headers={"Idempotency-Key": "1"})
    app = client.post(
        "/api/reports",
        json=ROAD | {"description": "อื่น"},
        headers={"Idempotency-Key": "1", "X-API-Key": keys.app},
    )
    assert anonymous.status_code == app.status_code == 201, app.text
    assert anonymous.json()["id"] != app.json()["id"]
    assert reports(engine) == 2


def test_the_same_caller_replaying_gets_the_same_answer(city_app, engine) -> None:
    client, _, _ = city_app
    caller = resident(client, "198.51.100.5")
    first = caller.post("/api/reports", json=ROAD, headers={"Idempotency-Key": "1"})
    again = caller.post("/api/reports", json=ROAD, headers={"Idempotency-Key": "1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = caller.post(
        "/api/reports", json=ROAD | {"description": "x"}, headers={"Idempotency-Key": "1"}
    )
    assert other.status_code == 409
    assert reports(engine) == 1


def test_an_expired_key_names_a_new_request_and_old_keys_are_purged(city_app, engine) -> None:
    client, _, _ = city_app
    caller = resident(client, "198.51.100.9")
    first = caller.post("/api/reports", json=ROAD, headers={"Idempotency-Key": "1"})
    assert first.status_code == 201
    for n in range(3):
        assert (
            caller.post(
                "/api/reports",
                json=ROAD | {"description": f"n{n}"},
                headers={"Idempotency-Key": f"k{n}"},
            ).status_code
            == 201
        )
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE idempotency_keys SET created_at = :old"),
            {"old": datetime.now(UTC) - timedelta(hours=24, minutes=1)},
        )
    later = caller.post(
        "/api/reports", json=ROAD | {"description": "ไฟดับ"}, headers={"Idempotency-Key": "1"}
    )
    assert later.status_code == 201, later.text
    assert later.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in later.headers
    assert reports(engine) == 5
    with engine.connect() as conn:
        left = conn.execute(text("SELECT key FROM idempotency_keys")).scalars().all()
    assert left == ["1"], "the expired keys k0..k2 were deleted on the way"


def test_a_key_younger_than_the_expiry_still_replays(city_app, engine) -> None:
    client, _, _ = city_app
    first = client.post("/api/reports", json=ROAD, headers={"Idempotency-Key": "1"})
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE idempotency_keys SET created_at = :old"),
            {"old": datetime.now(UTC) - timedelta(hours=23)},
        )
    again = client.post("/api/reports", json=ROAD, headers={"Idempotency-Key": "1"})
    assert again.json() == first.json()
    assert reports(engine) == 1
