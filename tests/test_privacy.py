"""Public outputs never carry a reporter's name or contact, nor a report's exact place.

Every GET route in the OpenAPI document is called as the public (no key, and with a public
app key); a route whose path parameters the test does not know how to fill fails the test,
so a new public endpoint cannot slip past this check. Locations are checked the same way:
the exact coordinates of a report (typed in, or read from a photo's EXIF) appear in no
public answer, each output that carries a location carries it on the public grid
(``geo.access.policy``), heat cells are never finer than that grid, and staff still get exact
points.
"""

import csv
import io
import json
import math
import queue
import random
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pyogrio
import pytest
from PIL import ExifTags, Image, TiffImagePlugin
from sqlalchemy import Engine, text

from geo.access.policy import (
    ANONYMOUS,
    DEFAULT_PUBLIC_ROUNDING_M,
    METRES_PER_DEGREE,
    Principal,
    point_sql,
    snap_point,
    visible_point,
)
from geo.maps.heat import heat_grid
from geo.reports.search import ReportFilter
from geo.settings import PrivacySettings

NAME = "Somchai Secretname"
EMAIL = "secret-reporter@example.org"
PHONE = "+66-81-555-0199"
SECRETS = (NAME, EMAIL, PHONE, "Secretname", "secret-reporter", "555-0199")


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(out, format="PNG")
    return out.getvalue()


def _tile_over(lat: float, lon: float, z: int) -> dict[str, str]:
    """The web-mercator tile at zoom ``z`` holding (``lat``, ``lon``)."""
    n = 2**z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return {"z": str(z), "x": str(int((lon + 180) / 360 * n)), "y": str(int(y))}


TILE_VALUES = _tile_over(8.405, 100.011, 13)
"""A boundary tile over the test city, at a zoom where its wards and zones are drawn."""


def fill(path: str, values: dict[str, str]) -> list[str]:
    """``path`` with its parameters filled; a tile path once per boundary layer."""
    values = TILE_VALUES | values
    names = re.findall(r"{([^}]+)}", path)
    layers = ["wards", "zones"] if "layer" in names and "layer" not in values else [""]
    unknown = [n for n in names if n not in values and n != "layer"]
    assert not unknown, f"{path}: teach test_privacy how to fill {unknown}"
    filled = []
    for layer in layers:
        url = path
        for n in names:
            url = url.replace("{" + n + "}", layer if n == "layer" else values[n])
        filled.append(url)
    return filled


def public_paths(client: Any) -> list[str]:
    """Every GET path of the API, but the never-ending event stream (checked below)."""
    return [
        path
        for path, operations in client.app.openapi()["paths"].items()
        if "get" in operations
        and "text/event-stream"
        not in operations["get"].get("responses", {}).get("200", {}).get("content", {})
    ]


def public_answers(client: Any, values: dict[str, str], app_key: str) -> Iterator[tuple[str, Any]]:
    """Every public answer: each path as no one and as an app, CSV/GPKG and XML too."""
    for path in public_paths(client):
        for url in fill(path, values):
            variants = [url]
            if url == "/api/reports":
                variants += [f"{url}?format=csv", f"{url}?format=gpkg"]
            if url == "/maps/public":
                variants.append(f"{url}?view=list")
            if url.endswith(".json"):
                variants.append(url[: -len(".json")] + ".xml")
            for variant in variants:
                for headers in ({}, {"X-API-Key": app_key}):
                    yield variant, client.get(variant, headers=headers)


def test_no_public_output_contains_reporter_name_or_contact(city_app) -> None:
    client, city, keys = city_app
    created = client.post(
        "/api/reports",
        data={
            "category": "road",
            "description": "ทางเท้าแตก",
            "lat": "8.405",
            "lon": "100.011",
            "reporter_name": NAME,
            "reporter_contact": f"{EMAIL} / {PHONE}",
        },
        files={"photo": ("p.png", png(), "image/png")},
    ).json()
    report_id = str(created["id"])
    photo_id = str(created["photo_ids"][0])
    # A crew's note may quote the reporter; only the public note is for residents.
    moved = client.post(
        f"/api/reports/{report_id}/status",
        json={
            "status": "acknowledged",
            "note": f"called {NAME} on {PHONE}",
            "public_note": "A crew is on its way.",
        },
        headers={"X-API-Key": keys.t1},
    )
    assert moved.status_code == 200, moved.text
    staff = client.get(f"/api/reports/{report_id}", headers={"X-API-Key": keys.planner})
    assert NAME in staff.text, "staff do see the reporter, so the seed really is stored"
    trail = client.get(f"/api/reports/{report_id}/events", headers={"X-API-Key": keys.planner})
    assert PHONE in trail.text, "staff read their own note in the audit trail"
    published = client.get(f"/open311/v2/requests/{report_id}.json")
    assert published.json()[0]["status_notes"] == "A crew is on its way."
    # The status page and the report's public notes carry the public note, and only it.
    token = created["tracking_url"].rsplit("/", 1)[1]
    assert "A crew is on its way." in client.get(f"/r/{token}").text
    notes = client.get(f"/api/reports/{report_id}").json()["public_notes"]
    assert [n["note"] for n in notes] == ["A crew is on its way."]
    values = {
        "token": token,
        "report_id": report_id,
        "photo_id": photo_id,
        "team_id": str(city.teams["T1"]),
        "service_request_id": report_id,
        "service_code": "road",
        "fmt": "json",
        "format": "json",
    }
    # Event streams never end; test_live checks their payloads carry no personal data.
    checked = 0
    for variant, answer in public_answers(client, values, keys.app):
        checked += 1
        for secret in SECRETS:
            assert secret.encode() not in answer.content, (variant, secret)
    assert checked >= 10


# --- locations -------------------------------------------------------------------------

EXACT = (8.4043217, 100.0067891)
"""A typed-in place in ward W-A, zone Z1 (team T1), well away from the public grid."""

R = TiffImagePlugin.IFDRational
EXIF_LAT_DMS = (R(8), R(24), R(171234, 10000))
EXIF_LON_DMS = (R(100), R(0), R(334567, 10000))
EXIF_LAT = 8 + 24 / 60 + 17.1234 / 3600
EXIF_LON = 100 + 33.4567 / 3600
"""The GPS fix of a phone photo, also in ward W-A."""

GRIDS = (DEFAULT_PUBLIC_ROUNDING_M, 37.5, 250.0, 1000.0)


def gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: EXIF_LAT_DMS,
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: EXIF_LON_DMS,
    }
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(out, format="JPEG", exif=exif)
    return out.getvalue()


def metres_apart(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """North-south and east-west distance between two (lat, lon) points, in metres."""
    cos = abs(math.cos(math.radians((a[0] + b[0]) / 2)))
    return abs(a[0] - b[0]) * METRES_PER_DEGREE, abs(a[1] - b[1]) * METRES_PER_DEGREE * cos


def sql_snap(engine: Engine, points: list[tuple[float, float]], metres: float) -> list[Any]:
    point = point_sql(ANONYMOUS, public_rounding_m=metres, geom="p.g")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT {point.lat} AS lat, {point.lon} AS lon FROM ("
                "  SELECT n, ST_SetSRID(ST_MakePoint(x, y), 4326) AS g"
                "  FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]))"
                "  WITH ORDINALITY AS u(x, y, n)) AS p ORDER BY p.n"
            ),
            point.params | {"xs": [lon for _, lon in points], "ys": [lat for lat, _ in points]},
        ).all()
    return [(r.lat, r.lon) for r in rows]


def test_the_sql_grid_and_the_python_grid_agree_to_the_last_bit(engine: Engine) -> None:
    from geo.access.policy import _lon_step

    rng = random.Random(6)
    points = [(rng.uniform(-75, 75), rng.uniform(-180, 180)) for _ in range(3000)]
    points += [(rng.uniform(8.40, 8.41), rng.uniform(100.0, 100.02)) for _ in range(3000)]
    for metres in GRIDS:
        # Points half-way between grid lines, and one float either side: the cases where
        # a different operation order would send a point to the neighbouring cell.
        step = metres / METRES_PER_DEGREE
        for k in (-9001, 1, 9356, 9357, 80001):
            half = (k + 0.5) * step
            for lat in (math.nextafter(half, -90), half, math.nextafter(half, 90)):
                if abs(lat) < 89:
                    lat_s = snap_point(lat, 0.0, metres)[0]
                    lon_half = (111 + 0.5) * _lon_step(lat_s, metres)
                    points += [(lat, lon_half), (lat, math.nextafter(lon_half, 180))]
        expected = [snap_point(lat, lon, metres) for lat, lon in points]
        assert sql_snap(engine, points, metres) == expected, metres
        assert all(e != p for e, p in zip(expected, points, strict=True)), "all moved"


def latitude_from_longitude(lat: float, lon: float, metres: float) -> float:
    """The attack: read the longitude step back from a published place, then its latitude.

    On a grid whose longitude step follows each report's own latitude (as the public map
    once had), this gave the exact latitude back to within a metre.
    """
    guess = metres / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
    step = lon / round(lon / guess)
    return math.degrees(math.acos(min(metres / (METRES_PER_DEGREE * step), 1.0)))


def test_the_published_longitude_does_not_give_the_latitude_away() -> None:
    metres = DEFAULT_PUBLIC_ROUNDING_M
    published = snap_point(*EXACT, metres)
    recovered = latitude_from_longitude(*published, metres)
    assert abs(recovered - published[0]) * METRES_PER_DEGREE < 0.01, "no more than shown"
    assert abs(recovered - EXACT[0]) * METRES_PER_DEGREE > 10
    step = metres / METRES_PER_DEGREE
    row = round(EXACT[0] / step) * step
    # Two places in the same row of the grid: had the longitude step been taken at each
    # exact latitude, the published longitudes would differ and tell the latitudes apart.
    south, north = row - 0.4 * step, row + 0.4 * step
    assert snap_point(south, EXACT[1], metres) == snap_point(north, EXACT[1], metres)
    assert snap_point(south, EXACT[1], 0) == (south, EXACT[1]), "0 m publishes exactly"


def test_staff_see_exact_places_and_everyone_else_the_grid() -> None:
    staff = Principal(role="field_team", team_id=1, key_id=1, name="crew")
    app = Principal(role="public", key_id=2, name="city app")
    assert visible_point(*EXACT, staff, public_rounding_m=100) == EXACT
    for caller in (ANONYMOUS, app):
        assert visible_point(*EXACT, caller, public_rounding_m=100) == snap_point(*EXACT, 100)


@pytest.fixture
def located(city_app: Any) -> tuple[Any, Any, Any, dict[str, int]]:
    """The app with a typed-in report at EXACT and one placed by a photo's GPS."""
    client, city, keys = city_app
    typed = client.post(
        "/api/reports",
        json={"category": "road", "description": "pothole", "lat": EXACT[0], "lon": EXACT[1]},
    )
    assert typed.status_code == 201, typed.text
    photo = client.post(
        "/api/reports",
        data={"category": "road", "description": "placed by its photo"},
        files={"photo": ("p.jpg", gps_jpeg(), "image/jpeg")},
    )
    assert photo.status_code == 201, photo.text
    assert photo.json()["location"]["source"] == "photo_exif"
    return client, city, keys, {"typed": typed.json()["id"], "photo": photo.json()["id"]}


def staff_places(client: Any, key: str, ids: dict[str, int]) -> dict[int, tuple[float, float]]:
    places = {}
    for report_id in ids.values():
        report = client.get(f"/api/reports/{report_id}", headers={"X-API-Key": key}).json()
        places[report_id] = (report["lat"], report["lon"])
    return places


def gpkg_places(content: bytes, tmp: Path) -> dict[int, tuple[float, float]]:
    path = tmp / "reports.gpkg"
    path.write_bytes(content)
    frame = pyogrio.read_dataframe(path, layer="reports")
    return {int(i): (g.y, g.x) for i, g in zip(frame["id"], frame.geometry, strict=True)}


def csv_places(content: bytes) -> dict[int, tuple[float, float]]:
    rows = csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline=""))
    return {int(r["id"]): (float(r["lat"]), float(r["lon"])) for r in rows}


def geojson_places(body: dict[str, Any]) -> dict[int, tuple[float, float]]:
    return {f["id"]: tuple(reversed(f["geometry"]["coordinates"])) for f in body["features"]}


def test_every_public_output_shows_locations_on_the_grid_and_staff_exact(
    located: Any, tmp_path: Path, engine: Engine
) -> None:
    client, _city, keys, ids = located
    exact = staff_places(client, keys.planner, ids)
    assert exact[ids["typed"]] == EXACT
    assert exact[ids["photo"]] == pytest.approx((EXIF_LAT, EXIF_LON), abs=1e-9)
    grid = {i: snap_point(*place, DEFAULT_PUBLIC_ROUNDING_M) for i, place in exact.items()}
    for report_id, place in exact.items():
        north, east = metres_apart(place, grid[report_id])
        assert north > 1 and east > 1, "the fixtures lie off the grid in both directions"
        assert max(north, east) <= DEFAULT_PUBLIC_ROUNDING_M, "and the grid is near them"

    for headers in ({}, {"X-API-Key": keys.app}):
        listed = client.get("/api/reports", headers=headers).json()
        assert geojson_places(listed) == grid
        for report_id in ids.values():
            one = client.get(f"/api/reports/{report_id}", headers=headers).json()
            assert (one["lat"], one["lon"]) == grid[report_id]
            (request,) = client.get(f"/open311/v2/requests/{report_id}.json").json()
            assert (request["lat"], request["long"]) == grid[report_id]
            xml = ET.fromstring(client.get(f"/open311/v2/requests/{report_id}.xml").content)
            lat, lon = xml.findtext("request/lat"), xml.findtext("request/long")
            assert (float(lat or "nan"), float(lon or "nan")) == grid[report_id]
        assert {
            r["service_request_id"]: (r["lat"], r["long"])
            for r in client.get("/open311/v2/requests.json").json()
        } == {str(i): place for i, place in grid.items()}
        for report_id in ids.values():
            page = client.get(f"/r/{status_token(engine, report_id)}", headers=headers).text
            lat, lon = grid[report_id]
            assert f"{lat:.5f}, {lon:.5f}" in page, "the status page shows the public place"
        csv_answer = client.get("/api/reports?format=csv", headers=headers)
        assert csv_places(csv_answer.content) == grid
        gpkg = client.get("/api/reports?format=gpkg", headers=headers)
        assert gpkg_places(gpkg.content, tmp_path) == grid

    staff = {"X-API-Key": keys.planner}
    assert geojson_places(client.get("/api/reports", headers=staff).json()) == exact
    assert csv_places(client.get("/api/reports?format=csv", headers=staff).content) == exact
    staff_gpkg = client.get("/api/reports?format=gpkg", headers=staff).content
    assert gpkg_places(staff_gpkg, tmp_path) == exact
    crew = {"X-API-Key": keys.t1}  # the team the reports went to
    crew_view = client.get(f"/api/reports/{ids['typed']}", headers=crew).json()
    assert (crew_view["lat"], crew_view["lon"]) == EXACT


def status_token(engine: Engine, report_id: int) -> str:
    """The report's status-page token (``/r/{token}``)."""
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT token FROM reports WHERE id = :id"), {"id": report_id}
            ).scalar_one()
        )


def test_no_public_answer_contains_an_exact_place(located: Any, engine: Engine) -> None:
    client, city, keys, ids = located
    exact = staff_places(client, keys.planner, ids)
    # The first seven decimals of each exact coordinate: the grid never shares them.
    digits = {f"{v:.7f}" for place in exact.values() for v in place}
    values = {
        "report_id": str(ids["photo"]),
        "photo_id": "1",
        "team_id": str(city.teams["T1"]),
        "service_request_id": str(ids["typed"]),
        "service_code": "road",
        "fmt": "json",
        "format": "json",
    }
    checked = 0
    for report_id in ids.values():
        values["report_id"] = values["service_request_id"] = str(report_id)
        values["token"] = status_token(engine, report_id)
        for variant, answer in public_answers(client, values, keys.app):
            checked += 1
            for number in digits:
                assert number.encode() not in answer.content, (variant, number)
    assert checked >= 20
    staff = client.get("/api/reports?format=csv", headers={"X-API-Key": keys.planner}).text
    assert all(number in staff for number in digits), "staff exports do carry them"


def test_a_public_bounding_box_cannot_close_in_on_the_exact_place(located: Any) -> None:
    client, _city, keys, ids = located
    grid = snap_point(*EXACT, DEFAULT_PUBLIC_ROUNDING_M)
    # Boxes of about 1 m: one around the exact place, one around the place on the grid.
    eps = 1e-5

    def found(centre: tuple[float, float], headers: dict[str, str]) -> bool:
        lat, lon = centre
        bbox = f"{lon - eps},{lat - eps},{lon + eps},{lat + eps}"
        answer = client.get("/api/reports", params={"bbox": bbox}, headers=headers)
        assert answer.status_code == 200, answer.text
        return ids["typed"] in {f["id"] for f in answer.json()["features"]}

    for headers in ({}, {"X-API-Key": keys.app}):
        assert not found(EXACT, headers)
        assert found(grid, headers)
    staff = {"X-API-Key": keys.planner}
    assert found(EXACT, staff)
    assert not found(grid, staff)


def test_heat_cells_are_never_finer_than_the_public_grid(engine: Engine) -> None:
    from tests.fixtures import load_tiny_city

    with engine.begin() as conn:
        city = load_tiny_city(conn)
        # 41 reports in a row, 22 m apart, across 900 m of ward W-A.
        conn.execute(
            text(
                "INSERT INTO reports (category_id, status, due_at, geom) "
                "SELECT :cat, 'open', now(), ST_SetSRID(ST_MakePoint("
                "  100.0005 + 0.0002 * i, 8.4052), 4326) FROM generate_series(0, 40) AS i"
            ),
            {"cat": city.categories["road"]},
        )
    bbox = (100.0, 8.4045, 100.0095, 8.4060)  # a small view: about 1 km by 170 m
    app = Principal(role="public", key_id=2, name="city app")
    planner = Principal(role="planner", key_id=3, name="planner")
    with engine.connect() as conn:
        views = {
            who: heat_grid(
                conn,
                ReportFilter(),
                bbox=bbox,
                max_cells=2500,
                principal=principal,
                public_rounding_m=DEFAULT_PUBLIC_ROUNDING_M,
            )
            for who, principal in (("anonymous", ANONYMOUS), ("app", app), ("staff", planner))
        }

    def closest(cells: list[Any]) -> float:
        return min(
            max(metres_apart((a.lat, a.lon), (b.lat, b.lon)))
            for i, a in enumerate(cells)
            for b in cells[i + 1 :]
        )

    for who in ("anonymous", "app"):
        cells = views[who]
        assert sum(c.count for c in cells) == 41
        assert len(cells) >= 5
        assert closest(cells) >= DEFAULT_PUBLIC_ROUNDING_M * math.cos(math.radians(8.41)), who
    staff = views["staff"]
    assert sum(c.count for c in staff) == 41
    assert closest(staff) < 30, "staff heat keeps its finer cells"


@pytest.fixture
def wide_grid(monkeypatch: pytest.MonkeyPatch) -> float:
    """The documented variable set to a 250 m grid before the app is built."""
    monkeypatch.setenv("ISSUEMAP_MAP_PUBLIC_ROUNDING_M", "250")
    return 250.0


def test_the_documented_variable_sets_the_public_grid(wide_grid: float, city_app: Any) -> None:
    assert PrivacySettings().public_rounding_m == wide_grid
    client, _city, _keys = city_app
    created = client.post(
        "/api/reports",
        json={"category": "road", "description": "pothole", "lat": EXACT[0], "lon": EXACT[1]},
    ).json()
    public = client.get(f"/api/reports/{created['id']}").json()
    assert (public["lat"], public["lon"]) == snap_point(*EXACT, wide_grid)
    assert snap_point(*EXACT, wide_grid) != snap_point(*EXACT, DEFAULT_PUBLIC_ROUNDING_M)


def first_report_event(client: Any, headers: dict[str, str], inbox: "queue.Queue[Any]") -> None:
    """Read ``/api/live`` until its first report event, and put that event in ``inbox``."""
    with client.stream("GET", "/api/live", headers=headers) as answer:
        kind = None
        for line in answer.iter_lines():
            if line.startswith(": connected"):
                inbox.put("connected")
            elif line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: ") and kind == "report":
                inbox.put(json.loads(line[len("data: ") :]))
                return


def test_live_events_show_the_public_no_team_no_zone_and_the_grid(city_app: Any) -> None:
    client, city, keys = city_app
    audiences = {
        "anonymous": {},
        "app": {"X-API-Key": keys.app},
        "other crew": {"X-API-Key": keys.t2},
        "crew": {"X-API-Key": keys.t1},
        "planner": {"X-API-Key": keys.planner},
    }
    inboxes: dict[str, queue.Queue[Any]] = {who: queue.Queue() for who in audiences}
    for who, headers in audiences.items():
        threading.Thread(
            target=first_report_event, args=(client, headers, inboxes[who]), daemon=True
        ).start()
    for inbox in inboxes.values():
        assert inbox.get(timeout=10) == "connected"
    created = client.post(
        "/api/reports",
        json={"category": "road", "description": "pothole", "lat": EXACT[0], "lon": EXACT[1]},
    ).json()
    events = {who: inbox.get(timeout=10) for who, inbox in inboxes.items()}
    for who in ("crew", "planner"):
        event = events[who]
        assert event["id"] == created["id"]
        assert (event["lat"], event["lon"]) == EXACT, who
        assert (event["zone_id"], event["team_id"]) == (city.zones["Z1"], city.teams["T1"])
        assert isinstance(event["event_id"], int), who
    for who in ("anonymous", "app", "other crew"):
        event = events[who]
        assert event["id"] == created["id"]
        assert (event["lat"], event["lon"]) == snap_point(*EXACT, DEFAULT_PUBLIC_ROUNDING_M)
        assert "zone_id" not in event and "team_id" not in event, who
        assert "event_id" not in event, who


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def test_likely_duplicates_cannot_triangulate_a_report(city_app: Any) -> None:
    client, _, keys = city_app
    # A report whose exact place is well off its grid point.
    target = (8.40530, 100.00530)
    shown = snap_point(*target, DEFAULT_PUBLIC_ROUNDING_M)
    assert _metres(*target, *shown) > 20
    answer = client.post(
        "/api/reports",
        json={"category": "road", "description": "target", "lat": target[0], "lon": target[1]},
    )
    assert answer.status_code == 201, answer.text
    target_id = answer.json()["id"]
    # Three probing reports around it, as an anonymous resident would file them.
    for probe in ((8.40545, 100.00530), (8.40530, 100.00555), (8.40515, 100.00520)):
        body = client.post(
            "/api/reports",
            json={"category": "road", "description": "probe", "lat": probe[0], "lon": probe[1]},
        ).json()
        (listed,) = [d for d in body["likely_duplicates"] if d["id"] == target_id]
        assert "lat" not in listed and "lon" not in listed
        exact = _metres(*probe, *target)
        public = _metres(*probe, *shown)
        assert abs(listed["distance_m"] - public) < 0.5, (listed, public, exact)
        assert abs(listed["distance_m"] - exact) > 1.0, "the distance gives the exact place"
    # Staff filing a report see how far the others really are.
    staff = client.post(
        "/api/reports",
        json={"category": "road", "description": "crew", "lat": 8.40530, "lon": 100.00540},
        headers={"X-API-Key": keys.planner},
    ).json()
    (listed,) = [d for d in staff["likely_duplicates"] if d["id"] == target_id]
    assert abs(listed["distance_m"] - _metres(8.40530, 100.00540, *target)) < 0.5


def test_the_public_grid_setting_also_sets_duplicate_distances(
    wide_grid: float, city_app: Any
) -> None:
    client, _, _ = city_app
    target = (8.40530, 100.00530)
    first = client.post(
        "/api/reports",
        json={"category": "road", "description": "a", "lat": 8.4053, "lon": 100.0053},
    ).json()
    probe = client.post(
        "/api/reports",
        json={"category": "road", "description": "b", "lat": 8.4055, "lon": 100.0053},
    ).json()
    (listed,) = [d for d in probe["likely_duplicates"] if d["id"] == first["id"]]
    expected = _metres(8.4055, 100.0053, *snap_point(*target, wide_grid))
    assert abs(listed["distance_m"] - expected) < 0.5
