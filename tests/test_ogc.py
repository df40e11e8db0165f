"""OGC API Features at /ogc, read by GDAL's own client (ogrinfo, ogr2ogr) and over HTTP.

One database and one real uvicorn server for the module: the tiny city, a few reports
that matter (a reporter's name and contact, template and markup text, one hidden), and
synthetic reports in bulk, first 1,000 and then 20,000, through the normal tables.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import mapbox_vector_tile
import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from geo.access.accounts import create_user
from geo.access.policy import ANONYMOUS, visible_point
from geo.access.sessions import SESSION_COOKIE, start_session
from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine
from geo.settings import AccountSettings, DatabaseSettings, PrivacySettings
from tests.browser import running
from tests.fixtures import Keys, TinyCity, load_tiny_city, make_keys

GDAL = shutil.which("ogrinfo") is not None and shutil.which("ogr2ogr") is not None
SECRET_NAME = "Somchai Secretname"
SECRET_CONTACT = "somchai.secret@example.org"
SECRET_PHONE = "+66 81 234 5678"
TEMPLATE_TEXT = "{{7*7}} {% raw %} <img src=x onerror=alert(1)>"
EXACT = (8.40537, 100.00463)  # lat, lon of the report with personal data
ROUNDING_M = 100.0


@dataclass(frozen=True)
class Ogc:
    """The running service and what the module's database holds."""

    url: str
    engine: Engine
    city: TinyCity
    keys: Keys
    personal_id: int
    hidden_id: int


def _insert_report(engine: Engine, city: TinyCity, **values: Any) -> int:
    row = {
        "description": "pothole",
        "reporter_name": None,
        "reporter_contact": None,
        "lat": 8.405,
        "lon": 100.005,
        "hidden": False,
        "external_id": None,
        "zone": "Z1",
        "team": "T1",
        "ward": "W-A",
    } | values
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO reports (category_id, description, reporter_name,"
                    " reporter_contact, ward_id, zone_id, team_id, due_at, geom, hidden_at,"
                    " hidden_reason, external_id, source) VALUES (:cat, :description,"
                    " :reporter_name, :reporter_contact, :ward, :zone, :team,"
                    " now() + interval '2 days', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326),"
                    " CASE WHEN :hidden THEN now() END, CASE WHEN :hidden THEN 'spam' END,"
                    " :external_id, 'test') RETURNING id"
                ),
                row
                | {
                    "cat": city.categories["road"],
                    "ward": city.wards[row["ward"]],
                    "zone": city.zones[row["zone"]],
                    "team": city.teams[row["team"]],
                },
            ).scalar_one()
        )


def _fill_to(engine: Engine, city: TinyCity, total: int) -> None:
    """Add synthetic reports spread over the tiny city until it holds ``total`` reports."""
    with engine.begin() as conn:
        have = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO reports (category_id, description, ward_id, zone_id, team_id,"
                " due_at, created_at, geom, source, hidden_at, hidden_reason)"
                " SELECT :cat, 'bulk ' || n, :ward, :zone, :team, now() + interval '1 day',"
                " timestamptz '2026-01-01' + n * interval '1 minute',"
                " ST_SetSRID(ST_MakePoint(100.0 + (n % 997) * 0.00001,"
                " 8.40 + (n % 991) * 0.00001), 4326), 'bulk',"
                # Every 50th is hidden: the public count must leave them out.
                " CASE WHEN n % 50 = 0 THEN now() END, CASE WHEN n % 50 = 0 THEN 'spam' END"
                " FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n"
            ),
            {
                "cat": city.categories["road"],
                "ward": city.wards["W-A"],
                "zone": city.zones["Z1"],
                "team": city.teams["T1"],
                "first": have + 1,
                "last": total,
            },
        )
        conn.execute(text("ANALYZE reports"))


def _public_count(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM reports WHERE hidden_at IS NULL")).scalar_one()
        )


@pytest.fixture(scope="module")
def ogc(pg_cluster: LocalCluster, template_db: str) -> Iterator[Ogc]:
    """A database of the tiny city with 1,000 reports, and the service over it."""
    name = f"t_ogc_{uuid.uuid4().hex[:10]}"
    janitor = DatabaseJanitor(
        user="postgres", host=pg_cluster.host, port=5432, dbname=name, template_dbname=template_db
    )
    janitor.init()
    url = pg_cluster.url(name)
    engine = make_engine(url, pool_size=2)
    try:
        with engine.begin() as conn:
            city = load_tiny_city(conn)
            keys = make_keys(conn)
        personal_id = _insert_report(
            engine,
            city,
            description=TEMPLATE_TEXT,
            reporter_name=SECRET_NAME,
            reporter_contact=f"{SECRET_CONTACT} {SECRET_PHONE}",
            lat=EXACT[0],
            lon=EXACT[1],
            external_id="personal-1",
        )
        hidden_id = _insert_report(
            engine, city, description="hidden one", hidden=True, external_id="hidden-1"
        )
        _insert_report(
            engine,
            city,
            description="in zone two",
            lat=8.405,
            lon=100.016,
            zone="Z2",
            team="T2",
            ward="W-B",
            external_id="z2-1",
        )
        _fill_to(engine, city, 1000)
        settings = AppSettings(
            database=DatabaseSettings(database_url=url),
            privacy=PrivacySettings(public_rounding_m=ROUNDING_M),
        )
        with running(create_app(settings)) as base:
            yield Ogc(f"{base}/ogc", engine, city, keys, personal_id, hidden_id)
    finally:
        engine.dispose()
        janitor.drop()


def _get(
    ogc: Ogc,
    path: str,
    *,
    key: str | None = None,
    accept: str = "application/geo+json, application/json",
    **params: Any,
) -> httpx.Response:
    headers = {"Accept": accept}
    if key is not None:
        headers["X-API-Key"] = key
    return httpx.get(f"{ogc.url}{path}", params=params, headers=headers, timeout=60)


def _features(ogc: Ogc, *, key: str | None = None, **params: Any) -> dict[str, Any]:
    answer = _get(ogc, "/collections/reports/items", key=key, **params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_landing_conformance_and_collections(ogc: Ogc) -> None:
    """The landing page links the API's parts; the collections are reports, wards, zones."""
    landing = _get(ogc, "/")
    assert landing.status_code == 200
    rels = {link["rel"] for link in landing.json()["links"]}
    assert {"conformance", "data"} <= rels
    # Links carry the mount's prefix, so GDAL and QGIS follow them back to /ogc.
    data = next(link["href"] for link in landing.json()["links"] if link["rel"] == "data")
    assert data == f"{ogc.url}/collections"
    assert _get(ogc, "/api").json()["paths"]
    conformance = _get(ogc, "/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conformance
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conformance
    ids = {c["id"] for c in _get(ogc, "/collections").json()["collections"]}
    assert ids == {"reports", "wards", "zones"}
    wards = _get(ogc, "/collections/wards/items").json()
    assert sorted(f["properties"]["code"] for f in wards["features"]) == ["W-A", "W-B"]
    zones = _get(ogc, "/collections/zones/items").json()
    assert {f["properties"]["team_code"] for f in zones["features"]} == {"T1", "T2"}
    assert _get(ogc, "/collections/nothing/items").status_code == 404


def test_public_never_sees_personal_data_or_hidden_reports(ogc: Ogc) -> None:
    """No /ogc answer to the public holds a reporter's name or contact, or a hidden report."""
    answers = [
        _get(ogc, "/collections/reports/items", limit=10000),
        _get(ogc, f"/collections/reports/items/{ogc.personal_id}"),
        _get(ogc, "/collections/reports/items", external_id="personal-1"),
        _get(ogc, "/collections/reports/items", external_id="personal-1", accept="text/html"),
        _get(ogc, "/collections/reports/items", f="csv", external_id="personal-1"),
        _get(ogc, "/collections/reports/queryables"),
        _get(ogc, "/collections/reports"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        for secret in (SECRET_NAME, SECRET_CONTACT, SECRET_PHONE, "reporter_", "hidden_"):
            assert secret not in answer.text
    everything = answers[0].json()
    ids = {f["id"] for f in everything["features"]}
    assert ogc.personal_id in ids
    assert ogc.hidden_id not in ids
    assert _get(ogc, f"/collections/reports/items/{ogc.hidden_id}").status_code == 404
    assert _features(ogc, external_id="hidden-1")["numberMatched"] == 0
    # Template and markup text is data: a browser gets it as JSON, never as a page.
    browser = answers[3]
    assert browser.headers["content-type"].startswith("application/geo+json")
    assert browser.json()["features"][0]["properties"]["description"] == TEMPLATE_TEXT


def test_public_location_rule_and_staff_exact(ogc: Ogc) -> None:
    """The public reads the snapped point of the native API; staff read the exact one."""
    public = _features(ogc, external_id="personal-1")["features"][0]
    lat, lon = visible_point(*EXACT, ANONYMOUS, public_rounding_m=ROUNDING_M)
    # GeoJSON coordinates have 9 decimals (0.1 mm); the properties are the exact values.
    assert public["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-9)
    assert (public["properties"]["lat"], public["properties"]["lon"]) == (lat, lon)
    assert public["geometry"]["coordinates"] != pytest.approx([EXACT[1], EXACT[0]], abs=1e-6)
    native = httpx.get(
        f"{ogc.url.removesuffix('/ogc')}/api/reports/{ogc.personal_id}", timeout=30
    ).json()
    assert (native["lat"], native["lon"]) == (lat, lon)

    staff = _features(ogc, key=ogc.keys.planner, external_id="personal-1")["features"][0]
    assert staff["geometry"]["coordinates"] == pytest.approx([EXACT[1], EXACT[0]], abs=1e-9)
    assert staff["properties"]["reporter_name"] == SECRET_NAME
    hidden = _features(ogc, key=ogc.keys.admin, external_id="hidden-1")
    assert hidden["numberMatched"] == 1
    assert hidden["features"][0]["properties"]["hidden_reason"] == "spam"


def test_staff_session_sees_the_staff_view(ogc: Ogc) -> None:
    """A planner signed in (session cookie, no key) reads exact places and private fields."""
    with ogc.engine.begin() as conn:
        user = create_user(
            conn,
            email="planner@city.example",
            name="Planner",
            role="planner",
            password="correct horse battery staple 7",
        )
        session = start_session(conn, user, now=datetime.now(UTC), settings=AccountSettings())
    answer = httpx.get(
        f"{ogc.url}/collections/reports/items",
        params={"external_id": "personal-1"},
        cookies={SESSION_COOKIE: session.token},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    staff = answer.json()["features"][0]
    assert staff["properties"]["reporter_name"] == SECRET_NAME
    assert staff["geometry"]["coordinates"] == pytest.approx([EXACT[1], EXACT[0]], abs=1e-9)


def test_field_team_sees_its_own_reports(ogc: Ogc) -> None:
    """A field team's key reads its team's and zones' reports only, whole."""
    t2 = _features(ogc, key=ogc.keys.t2, limit=10000)
    assert {f["properties"]["external_id"] for f in t2["features"]} == {"z2-1"}
    assert t2["numberMatched"] == 1
    t1 = _features(ogc, key=ogc.keys.t1, external_id="z2-1")
    assert t1["numberMatched"] == 0
    # The connection a team's request used does not carry the team to the next caller.
    assert _features(ogc, key=ogc.keys.planner, external_id="z2-1")["numberMatched"] == 1


def test_bbox_datetime_limit_paging_and_property_filters(ogc: Ogc) -> None:
    """Items filter by bbox (on the public point), datetime and properties, and page."""
    zone_two = _features(ogc, bbox="100.012,8.40,100.02,8.41")
    assert {f["properties"]["external_id"] for f in zone_two["features"]} == {"z2-1"}
    in_january = _features(ogc, datetime="2026-01-01T00:00:00Z/2026-01-01T00:59:59Z")
    with ogc.engine.begin() as conn:
        expected = conn.execute(
            text(
                "SELECT count(*) FROM reports WHERE hidden_at IS NULL AND created_at"
                " BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T00:59:59Z'"
            )
        ).scalar_one()
    assert in_january["numberMatched"] == expected > 0
    page = _features(ogc, limit=7, status="open")
    assert page["numberReturned"] == 7
    assert page["numberMatched"] == _public_count(ogc.engine)
    following = next(link for link in page["links"] if link["rel"] == "next")
    second = httpx.get(following["href"], timeout=30).json()
    assert not {f["id"] for f in page["features"]} & {f["id"] for f in second["features"]}
    assert _features(ogc, status="resolved")["numberMatched"] == 0


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"limit": "100000000"}, "/collections/reports/items"),
        ({"limit": "-1"}, "/collections/reports/items"),
        ({"bbox": "0,0,1e400,1"}, "/collections/reports/items"),
        ({"bbox": "1,2,3"}, "/collections/reports/items"),
        ({"bbox": "a,b,c,d"}, "/collections/reports/items"),
        ({"bbox": "-999,-999,999,999"}, "/collections/reports/items"),
        ({"datetime": "{{7*7}}"}, "/collections/reports/items"),
        ({"datetime": "2026-13-45T99:00:00Z"}, "/collections/reports/items"),
        ({"id": "{{7*7}}"}, "/collections/reports/items"),
        ({"supporters": "x'; DROP TABLE reports; --"}, "/collections/reports/items"),
        ({"created_at": "\x00"}, "/collections/reports/items"),
        ({"filter": "{{7*7}}"}, "/collections/reports/items"),
        ({"offset": "99999999999999999999"}, "/collections/reports/items"),
        ({}, "/collections/{{7*7}}/items"),
        ({}, "/collections/reports/items/%00"),
        ({}, "/collections/reports/items/{{7*7}}"),
        ({}, "/collections/reports/tiles/WebMercatorQuad/99/1/1"),
        ({"f": "html"}, "/collections/reports/items"),
        ({"f": "html"}, "/"),
    ],
)
def test_bad_input_is_a_client_error(ogc: Ogc, params: dict[str, str], path: str) -> None:
    """Template text, NUL bytes and out-of-range numbers are 4xx answers, never a 500."""
    answer = _get(ogc, path, **params)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert "49" not in answer.text
    with ogc.engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM reports")).scalar_one() > 0


@pytest.mark.parametrize(
    ("path", "params", "status", "field", "thai"),
    [
        ("/collections/reports/items", {"staus": "open"}, 422, "staus", "ไม่ใช่พารามิเตอร์"),
        ("/collections/wards/items", {"nosuch": "1"}, 422, "nosuch", "ไม่ใช่พารามิเตอร์"),
        ("/collections/reports/items", {"sortby": "-nosuch"}, 422, "sortby", "'nosuch'"),
        ("/collections/reports/items/999999999", {}, 404, None, "ไม่มีรายการ '999999999'"),
        ("/collections/reports/items/abc", {}, 404, None, "ไม่มีรายการ"),
    ],
)
def test_tipgs_refusals_name_the_field_in_the_callers_language(
    ogc: Ogc, path: str, params: dict[str, str], status: int, field: str | None, thai: str
) -> None:
    """A parameter, sort or feature that does not exist is refused as the native API does.

    tipg by itself ignores a parameter that names no property, and answers unfiltered.
    """
    answer = _get(ogc, path, lang="th", **params)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert thai in body["detail"], body
    assert body.get("field") == field, body
    english = _get(ogc, path, **params).json()["detail"]
    assert english != body["detail"] and english.isascii(), english


def test_vector_tiles(ogc: Ogc) -> None:
    """Tiles of reports, wards and zones are Mapbox vector tiles with features in them."""
    # The z16 tile over the tiny city (100.005 E, 8.405 N).
    z, x, y = 16, 50973, 31232
    for collection in ("reports", "wards", "zones"):
        answer = _get(ogc, f"/collections/{collection}/tiles/WebMercatorQuad/{z}/{x}/{y}")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/vnd.mapbox-vector-tile")
        layers = mapbox_vector_tile.decode(answer.content)
        assert sum(len(layer["features"]) for layer in layers.values()) > 0
        for secret in (SECRET_NAME.encode(), SECRET_CONTACT.encode()):
            assert secret not in answer.content


def _ogr_feature_count(url: str) -> int:
    done = subprocess.run(
        ["ogrinfo", "-so", "-ro", f"OAPIF:{url}", "reports"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = re.search(r"Feature Count: (\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    return int(found.group(1))


@pytest.mark.skipif(not GDAL, reason="GDAL's ogrinfo and ogr2ogr (gdal-bin) are not installed")
def test_gdal_reads_every_public_report(ogc: Ogc, tmp_path: Path) -> None:
    """ogrinfo counts the public reports, and ogr2ogr copies them all, at 1,000 and 20,000."""
    for total in (1000, 20_000):
        _fill_to(ogc.engine, ogc.city, total)
        expected = _public_count(ogc.engine)
        assert _ogr_feature_count(ogc.url) == expected
        out = tmp_path / f"reports_{total}.gpkg"
        source = f"OAPIF:{ogc.url}"
        subprocess.run(
            # GDAL before 3.8 pages by 10 unless told (later ones take the server's
            # maximum); pages of 5,000 follow the next links as a client would.
            ["ogr2ogr", "-oo", "PAGE_SIZE=5000", "-f", "GPKG", str(out), source, "reports"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        with sqlite3.connect(out) as gpkg:
            (copied,) = gpkg.execute("SELECT count(*) FROM reports").fetchone()
            columns = {row[1] for row in gpkg.execute("PRAGMA table_info(reports)")}
        assert copied == expected
        assert not {"reporter_name", "reporter_contact", "hidden_at"} & columns
        assert json.dumps(sorted(columns))
