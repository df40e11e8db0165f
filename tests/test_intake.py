"""Native intake over HTTP: routing answer, duplicates, idempotency, addresses and photos."""

import io
from datetime import UTC, datetime, timedelta

from PIL import Image
from sqlalchemy import Engine, text

from api.deps import replace_app_state
from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, snap_point
from geo.reports.intake import visible_duplicates

ROAD = {"category": "road", "description": "หลุมลึกหน้าบ้านเลขที่ 5", "lat": 8.405, "lon": 100.011}


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def jpeg_with_gps(lat: float, lon: float) -> bytes:
    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        seconds = (value - degrees - minutes / 60) * 3600
        return (float(degrees), float(minutes), round(seconds, 4))

    image = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # camera make: must not survive into the public copy
    gps = exif.get_ifd(0x8825)
    gps[1] = "N" if lat >= 0 else "S"
    gps[2] = dms(lat)
    gps[3] = "E" if lon >= 0 else "W"
    gps[4] = dms(lon)
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def test_post_answers_201_with_route_due_time_and_location(city_app) -> None:
    client, city, _ = city_app
    answer = client.post("/api/reports", json=ROAD)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert answer.headers["location"] == f"/api/reports/{body['id']}"
    assert body["ward"]["id"] == city.wards["W-B"] and body["ward"]["code"] == "W-B"
    assert body["zone"]["code"] == "Z1"
    assert body["team"]["code"] == "T1"
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["due_at"]) - created == timedelta(hours=48)
    assert body["location"] == {
        "lat": 8.405,
        "lon": 100.011,
        "source": "coordinates",
        "snapped_to_ward": False,
    }
    assert body["likely_duplicates"] == []


def test_thai_description_round_trips(city_app) -> None:
    client, _, _ = city_app
    text_th = "น้ำท่วมขังหน้าซอย ๑๒ รถสัญจรไม่ได้ 🚗 — สูง ๓๐ ซม."
    created = client.post("/api/reports", json=ROAD | {"description": text_th}).json()
    assert client.get(f"/api/reports/{created['id']}").json()["description"] == text_th


def test_nearby_open_report_of_same_category_is_a_likely_duplicate(city_app, engine) -> None:
    client, _, keys = city_app
    first = client.post("/api/reports", json=ROAD).json()
    near = client.post("/api/reports", json=ROAD | {"lat": 8.4052}).json()  # ~22 m north
    assert [d["id"] for d in near["likely_duplicates"]] == [first["id"]]
    # A resident is told how far the other report is from where the public sees it.
    public = snap_point(ROAD["lat"], ROAD["lon"], DEFAULT_PUBLIC_ROUNDING_M)
    expected = visible_duplicates(
        ({"id": 1, "lat": ROAD["lat"], "lon": ROAD["lon"], "distance_m": 22.0},),
        lat=8.4052,
        lon=ROAD["lon"],
        grid_m=DEFAULT_PUBLIC_ROUNDING_M,
    )[0]["distance_m"]
    assert public != (ROAD["lat"], ROAD["lon"])
    assert near["likely_duplicates"][0]["distance_m"] == expected
    crew = client.post(
        "/api/reports", json=ROAD | {"lat": 8.4052}, headers={"X-API-Key": keys.planner}
    ).json()
    (seen,) = [d for d in crew["likely_duplicates"] if d["id"] == first["id"]]
    assert 15 < seen["distance_m"] < 30, "staff see the real distance"
    far = client.post("/api/reports", json=ROAD | {"lat": 8.4060}).json()  # ~110 m north
    assert far["likely_duplicates"] == []
    other = client.post("/api/reports", json=ROAD | {"category": "flood"}).json()
    assert other["likely_duplicates"] == []
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET created_at = :old WHERE id IN (:a, :b, :c)"),
            {
                "old": datetime.now(UTC) - timedelta(days=15),
                "a": first["id"],
                "b": near["id"],
                "c": crew["id"],
            },
        )
    later = client.post("/api/reports", json=ROAD).json()
    assert later["likely_duplicates"] == [], "older than the 14-day window"


def test_idempotency_key_replays_the_first_answer_and_creates_nothing(city_app, engine) -> None:
    client, _, _ = city_app
    headers = {"Idempotency-Key": "app-7f3a-0001"}
    first = client.post("/api/reports", json=ROAD, headers=headers)
    again = client.post("/api/reports", json=ROAD, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(engine, "reports") == 1
    clash = client.post("/api/reports", json=ROAD | {"description": "other"}, headers=headers)
    assert clash.status_code == 409
    assert "Idempotency-Key" in clash.json()["detail"]
    assert count(engine, "reports") == 1


def test_address_is_geocoded_with_the_offline_gazetteer(city_app) -> None:
    client, city, _ = city_app
    payload = {"category": "road", "description": "ไฟดับ", "address": "ตลาดทดสอบ"}
    body = client.post("/api/reports", json=payload).json()
    assert body["location"]["source"] == "address"
    assert body["ward"]["id"] == city.wards["W-B"]
    unknown = client.post("/api/reports", json=payload | {"address": "Nowhere Lane 99"})
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "address"
    assert "could not find" in unknown.json()["detail"]


def test_photo_gps_locates_the_report_and_public_copy_has_no_exif(city_app) -> None:
    client, _, _ = city_app
    photo = jpeg_with_gps(8.405, 100.015)
    answer = client.post(
        "/api/reports",
        data={"category": "road", "description": "ถนนทรุด"},
        files={"photo": ("IMG_0001.jpg", photo, "image/jpeg")},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["location"]["source"] == "photo_exif"
    assert abs(body["location"]["lat"] - 8.405) < 1e-5
    assert body["team"]["code"] == "T2"
    (photo_id,) = body["photo_ids"]
    public = client.get(f"/api/photos/{photo_id}")
    assert public.status_code == 200
    assert public.headers["content-type"] == "image/jpeg"
    assert b"Exif" not in public.content and b"PhoneMaker" not in public.content
    assert not Image.open(io.BytesIO(public.content)).getexif()
    assert b"PhoneMaker" in photo, "the original did carry the camera tag"


def test_report_outside_the_city_is_refused_with_a_sentence(city_app, engine) -> None:
    client, _, _ = city_app
    answer = client.post("/api/reports", json=ROAD | {"lat": 8.9})
    assert answer.status_code == 422
    assert "outside the area this city serves" in answer.json()["detail"]
    assert count(engine, "reports") == 0


def test_address_service_down_is_a_503_with_a_sentence(city_app) -> None:
    from geo.city.geocoding import GeocodingUnavailableError

    client, _, _ = city_app

    class Down:
        def geocode(self, address: str) -> None:
            raise GeocodingUnavailableError()

    replace_app_state(client.app, geocoder=Down())
    answer = client.post(
        "/api/reports", json={"category": "road", "description": "x", "address": "Test Road"}
    )
    assert answer.status_code == 503
    assert answer.json()["field"] == "address"
