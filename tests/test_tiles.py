"""Vector tiles of the current boundaries (/tiles/{layer}/{z}/{x}/{y}.pbf): what a tile holds,
what is refused, and how a boundary replace reaches caches."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.deps import replace_app_state
from geo.maps.tiles import MAX_ZOOM, MEDIA_TYPE, TILE_MIN_ZOOM
from geo.settings import MapSettings
from tests.fixtures import Keys, TinyCity

CityApp = tuple[TestClient, TinyCity, Keys]


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The x and y of the Web Mercator tile at zoom ``z`` holding ``(lon, lat)``."""
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def decoded(body: bytes) -> dict[str, Any]:
    """A tile's layers, by name, as mapbox-vector-tile reads them."""
    found: dict[str, Any] = mapbox_vector_tile.decode(body)
    return found


def field_of(answer: Any) -> str:
    """The field a 422 answer names (FastAPI's detail or our own error body)."""
    body = answer.json()
    return str(body.get("field") or body["detail"][0]["loc"][-1])


# The tiny city lies around (100.01, 8.405): at zoom 12 one tile holds all of it.
X12, Y12 = tile_of(100.01, 8.405, 12)


def test_a_tile_holds_the_current_wards_with_code_and_name(city_app: CityApp) -> None:
    client, _, _ = city_app
    answer = client.get(f"/tiles/wards/12/{X12}/{Y12}.pbf?lang=en")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == MEDIA_TYPE
    layer = decoded(answer.content)["wards"]
    assert sorted(f["properties"]["code"] for f in layer["features"]) == ["W-A", "W-B"]
    assert {f["properties"]["name"] for f in layer["features"]} == {"W-A", "W-B"}
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in layer["features"])


def test_tiles_travel_gzipped_to_clients_that_take_it(city_app: CityApp) -> None:
    client, _, _ = city_app
    url = f"/tiles/wards/12/{X12}/{Y12}.pbf"
    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    # The client unzips it: the same tile, under an ETag of its own.
    assert zipped.content == plain.content
    assert zipped.headers["etag"] != plain.headers["etag"]
    assert zipped.headers["vary"] == "Accept-Encoding"


def test_zone_tiles_name_the_team(city_app: CityApp) -> None:
    client, _, _ = city_app
    layer = decoded(client.get(f"/tiles/zones/12/{X12}/{Y12}.pbf").content)["zones"]
    assert {(f["properties"]["code"], f["properties"]["team"]) for f in layer["features"]} == {
        ("Z1", "T1"),
        ("Z2", "T2"),
    }


def test_names_from_boundary_files_travel_as_data(city_app: CityApp, engine: Engine) -> None:
    client, _, _ = city_app
    hostile = "{{7*7}} {% raw %}<img src=x onerror=alert(1)>'\""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE wards SET name_th = :n WHERE code = 'W-A'"), {"n": hostile + " ไทย"}
        )
    th = decoded(client.get(f"/tiles/wards/12/{X12}/{Y12}.pbf?lang=th").content)["wards"]
    en = decoded(client.get(f"/tiles/wards/12/{X12}/{Y12}.pbf?lang=en").content)["wards"]
    names_th = {f["properties"]["code"]: f["properties"]["name"] for f in th["features"]}
    names_en = {f["properties"]["code"]: f["properties"]["name"] for f in en["features"]}
    # The Thai reader sees the Thai name, byte for byte; the English one falls back to it as given.
    assert names_th["W-A"] == hostile + " ไทย"
    assert names_en["W-A"] == "W-A"


def test_tiles_away_from_the_city_or_above_the_layers_zoom_are_empty(city_app: CityApp) -> None:
    client, _, _ = city_app
    away = client.get("/tiles/wards/12/0/0.pbf")
    assert away.status_code == 200 and away.content == b""
    z = TILE_MIN_ZOOM["wards"] - 1
    x, y = tile_of(100.01, 8.405, z)
    shallow = client.get(f"/tiles/wards/{z}/{x}/{y}.pbf")
    assert shallow.status_code == 200 and shallow.content == b""


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/tiles/wards/99/0/0.pbf", "z"),
        (f"/tiles/wards/{10**30}/0/0.pbf", "z"),
        ("/tiles/wards/-1/0/0.pbf", "z"),
        ("/tiles/wards/2/4/0.pbf", "x"),
        ("/tiles/wards/2/0/4.pbf", "y"),
        (f"/tiles/wards/{MAX_ZOOM}/{2**MAX_ZOOM}/0.pbf", "x"),
        ("/tiles/wards/12/abc/0.pbf", "x"),
        ("/tiles/wards/12/0/1e3.pbf", "y"),
        ("/tiles/streets/12/0/0.pbf", "layer"),
        ("/tiles/{{7*7}}/12/0/0.pbf", "layer"),
        ("/tiles/wards%3B%20DROP%20TABLE%20wards/12/0/0.pbf", "layer"),
    ],
)
def test_a_tile_that_does_not_exist_is_refused_naming_the_parameter(
    city_app: CityApp, path: str, field: str
) -> None:
    client, _, _ = city_app
    answer = client.get(path)
    assert answer.status_code == 422, answer.text
    assert field_of(answer) == field


def test_a_cached_tile_is_confirmed_unbuilt_until_the_wards_are_replaced(
    city_app: CityApp, engine: Engine
) -> None:
    client, _, _ = city_app
    url = f"/tiles/wards/12/{X12}/{Y12}.pbf?lang=en"
    first = client.get(url)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, no-cache"
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    # A page asks with the version it was made with: that tile may be kept for a day.
    version = etag.strip('"').split("-")[1]
    pinned = client.get(f"{url}&v={version}")
    assert pinned.headers["cache-control"] == "public, max-age=86400"
    with engine.begin() as conn:
        imp = conn.execute(
            text(
                "INSERT INTO boundary_imports (layer, source, sha256, feature_count, "
                "repaired_count) VALUES ('wards', 'new', 'y', 1, 0) RETURNING id"
            )
        ).scalar_one()
        conn.execute(text("UPDATE wards SET retired_at = now()"))
        conn.execute(
            text(
                "INSERT INTO wards (code, name, import_id, geom) VALUES ('W-NEW', 'New', :imp, "
                "ST_Multi(ST_GeomFromText('POLYGON((100 8.4, 100.02 8.4, 100.02 8.41, "
                "100 8.41, 100 8.4))', 4326)))"
            ),
            {"imp": imp},
        )
    after = client.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
    codes = [f["properties"]["code"] for f in decoded(after.content)["wards"]["features"]]
    assert codes == ["W-NEW"]
    assert client.get(f"{url}&v={version}").headers["cache-control"] == "public, no-cache"


def test_renaming_a_team_changes_the_zone_tiles_etag(city_app: CityApp, engine: Engine) -> None:
    client, _, _ = city_app
    url = f"/tiles/zones/12/{X12}/{Y12}.pbf"
    etag = client.get(url).headers["etag"]
    with engine.begin() as conn:
        conn.execute(text("UPDATE teams SET name_th = 'ทีมหนึ่ง' WHERE code = 'T1'"))
    after = client.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200
    teams = {f["properties"]["team"] for f in decoded(after.content)["zones"]["features"]}
    assert teams == {"ทีมหนึ่ง", "T2"}


def test_pages_of_a_city_with_many_wards_carry_tile_urls_not_polygons(
    city_app: CityApp,
) -> None:
    client, _, keys = city_app
    replace_app_state(client.app, maps=MapSettings(tiles_url="none", inline_features_max=1))
    overview = client.get("/?lang=en").text
    assert "coordinates" not in overview
    # In the page's JSON document, where "&" is written \u0026.
    urls = re.findall(r"/tiles/(\w+)/\{z\}/\{x\}/\{y\}\.pbf\?lang=en\\u0026v=([\w-]+)", overview)
    assert {layer for layer, _ in urls} == {"wards", "zones"}
    assert "/static/vendor/leaflet.vectorgrid/" in overview
    dashboard = client.get("/maps/wards?lang=en", headers={"X-API-Key": keys.planner}).text
    assert "coordinates" not in dashboard and "/maps/wards/measures?" in dashboard


def test_the_dashboards_measures_colour_each_ward_by_code(city_app: CityApp) -> None:
    client, _, keys = city_app
    answer = client.get(
        "/maps/wards/measures?measure=count&k=3&lang=en", headers={"X-API-Key": keys.planner}
    )
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    body = answer.json()
    columns = body["columns"]
    rows = {row[0]: dict(zip(columns, row[1:], strict=True)) for row in body["rows"]}
    assert set(rows) == {"W-A", "W-B"}
    fills = [body["lookup"]["fill"][row["fill"]] for row in rows.values()]
    assert all(re.fullmatch(r"#[0-9a-f]{6}", fill) for fill in fills)
    assert rows["W-A"]["reports"] == "0"


@pytest.mark.parametrize(
    ("query", "role", "status", "field"),
    [
        ("k=99", "planner", 422, "k"),
        ("measure={{7*7}}", "planner", 422, "measure"),
        ("created_from=2026-13-01", "planner", 422, "created_from"),
        ("", "t1", 403, None),
        ("", None, 401, None),
    ],
)
def test_the_dashboards_measures_are_for_planners_and_checked(
    city_app: CityApp, query: str, role: str | None, status: int, field: str | None
) -> None:
    client, _, keys = city_app
    headers = {"X-API-Key": getattr(keys, role), "Accept": "application/json"} if role else {}
    answer = client.get(f"/maps/wards/measures?{query}", headers=headers)
    assert answer.status_code == status, answer.text
    if field is not None:
        assert field_of(answer) == field


def page_layers(page: str) -> list[dict[str, Any]]:
    """The payloads of a page's boundary layers: inline (``geojson``) or tiled (``url``)."""
    document = re.search(r'<script[^>]* id="im-data">(.*?)</script>', page)
    assert document is not None
    data = json.loads(document.group(1))
    return [v for v in data.values() if isinstance(v, dict) and ("geojson" in v or "url" in v)]


@pytest.mark.parametrize(("inline_max", "tiled"), [(300, False), (1, True)])
def test_the_zone_map_tiles_its_wards_when_more_meet_it_than_a_page_carries(
    city_app: CityApp, inline_max: int, tiled: bool
) -> None:
    client, _, keys = city_app
    replace_app_state(
        client.app, maps=MapSettings(tiles_url="none", inline_features_max=inline_max)
    )
    page = client.get("/maps/zone?zone=Z1&lang=en", headers={"X-API-Key": keys.planner}).text
    layers = page_layers(page)
    urls = [layer["url"] for layer in layers if "url" in layer]
    # Both wards meet zone Z1; the zone's own outline stays inline either way.
    assert sum("geojson" in layer for layer in layers) == (1 if tiled else 2)
    assert [url.split("?")[0] for url in urls] == (
        ["/tiles/wards/{z}/{x}/{y}.pbf"] if tiled else []
    )
