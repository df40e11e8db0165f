"""Exports that open whole, read by the tools people open them with (issue 15, point 4).

One module-wide city of a few hundred reports served by a real uvicorn server, so GDAL's
own ``ogrinfo`` (Debian's 3.6, what QGIS on bookworm reads with) can open the exports by
URL: a CSV Excel reads as UTF-8, a GeoPackage with its areas, a GeoJSON that is whole or
says it is a page, HEAD on every GET route, and query parameters nobody reads refused.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyogrio
import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import text

from api.app import AppSettings, create_app
from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine
from geo.reports.store import insert_reports
from geo.settings import DatabaseSettings, GeocoderSettings, RoutingSettings
from tests.browser import running
from tests.fixtures import TINY_GAZETTEER, Keys, TinyCity, load_tiny_city, make_keys

COUNT = 260
"""More than two pages of the default 100, few enough to stay quick."""
THAI = "ฝาท่อระบายน้ำแตก หน้าวัด"
BOM = b"\xef\xbb\xbf"
OGRINFO = shutil.which("ogrinfo")
needs_gdal = pytest.mark.skipif(OGRINFO is None, reason="needs gdal-bin's ogrinfo")


@dataclass(frozen=True)
class Served:
    """The live server's origin, a client on it, the city and its keys."""

    origin: str
    client: httpx.Client
    city: TinyCity
    keys: Keys
    by_ward: dict[str, int]


@pytest.fixture(scope="module")
def served(pg_cluster: LocalCluster, template_db: str) -> Iterator[Served]:
    """The tiny city with ``COUNT`` reports, served by uvicorn for the whole module."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user="postgres", host=pg_cluster.host, port=5432, dbname=name, template_dbname=template_db
    )
    janitor.init()
    url = pg_cluster.url(name)
    folder = Path(tempfile.mkdtemp(prefix="issuemap-formats-"))
    engine = make_engine(url, pool_size=2)
    try:
        places = random.Random(15)
        start = datetime(2026, 5, 1, tzinfo=UTC)
        rows = pd.DataFrame(
            [
                {
                    "lon": places.uniform(100.001, 100.019),
                    "lat": places.uniform(8.401, 8.409),
                    "status": ("open", "resolved", "in_progress")[i % 3],
                    "created_at": start + timedelta(hours=i),
                    "external_id": f"r{i}",
                    "description": f"{THAI} {i}",
                    "reporter_name": "Somchai Formats",
                    "reporter_contact": "formats@example.org",
                }
                for i in range(COUNT)
            ]
        )
        with engine.begin() as conn:
            city = load_tiny_city(conn)
            keys = make_keys(conn)
            rows["category_id"] = city.categories["road"]
            assert insert_reports(conn, rows, settings=RoutingSettings()).inserted == COUNT
            by_ward = {
                code: int(n)
                for code, n in conn.execute(
                    text(
                        "SELECT w.code, count(*) FROM reports AS r "
                        "JOIN wards AS w ON w.id = r.ward_id GROUP BY w.code"
                    )
                )
            }
        gazetteer = folder / "gazetteer.csv"
        gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
        settings = AppSettings(
            database=DatabaseSettings(database_url=url),
            geocoder=GeocoderSettings(gazetteer_path=gazetteer),
        )
        with running(create_app(settings)) as origin, httpx.Client(base_url=origin) as client:
            yield Served(origin, client, city, keys, by_ward)
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)
        janitor.drop()


def ogrinfo(*args: str) -> subprocess.CompletedProcess[str]:
    """Debian's ``ogrinfo`` on ``args``, reading only what it is pointed at."""
    assert OGRINFO is not None
    env = dict(os.environ, GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", CPL_DEBUG="OFF")
    return subprocess.run(
        [OGRINFO, "-ro", *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def feature_count(output: str) -> int:
    """The ``Feature Count:`` ``ogrinfo -so`` prints for its one layer."""
    counts = [int(line.split(":")[1]) for line in output.splitlines() if "Feature Count" in line]
    assert len(counts) == 1, output
    return counts[0]


# --- CSV ------------------------------------------------------------------------------


def test_csv_starts_with_a_bom_so_excel_reads_thai(served: Served) -> None:
    answer = served.client.get("/api/reports", params={"format": "csv"})
    assert answer.status_code == 200
    assert answer.content.startswith(BOM + b"id,")
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"), newline="")))
    assert len(rows) == COUNT, "a file is every match, not a page"
    assert rows[7]["description"] == f"{THAI} 7"


def test_bom_false_leaves_the_bom_out(served: Served) -> None:
    answer = served.client.get("/api/reports", params={"format": "csv", "bom": "false"})
    assert answer.status_code == 200
    assert answer.content.startswith(b"id,")
    assert THAI in answer.content.decode("utf-8")


# --- GeoPackage -----------------------------------------------------------------------


def _gpkg(served: Served, folder: Path, **headers: str) -> Path:
    answer = served.client.get("/api/reports", params={"format": "gpkg"}, headers=headers)
    assert answer.status_code == 200, answer.text
    path = folder / f"export-{len(headers)}.gpkg"
    path.write_bytes(answer.content)
    return path


def test_geopackage_holds_reports_wards_and_zones(served: Served, tmp_path: Path) -> None:
    public = _gpkg(served, tmp_path)
    assert pyogrio.list_layers(public)[:, 0].tolist() == ["reports", "wards", "zones"]
    reports = pyogrio.read_dataframe(public, layer="reports")
    assert len(reports) == COUNT
    assert "reporter_name" not in reports.columns, "the public export stays public"
    wards = pyogrio.read_dataframe(public, layer="wards")
    assert sorted(wards["code"]) == ["W-A", "W-B"]
    assert wards.crs.to_epsg() == 4326 and wards.geom_type.eq("MultiPolygon").all()
    zones = pyogrio.read_dataframe(public, layer="zones")
    assert sorted(zones["code"]) == ["Z1", "Z2"]
    assert set(zones["team_code"]) == {"T1", "T2"}
    # A report's ward_id joins to the wards layer.
    assert set(reports["ward_id"].dropna()) <= set(wards["id"])
    staff = _gpkg(served, tmp_path, **{"X-API-Key": served.keys.planner})
    staff_reports = pyogrio.read_dataframe(staff, layer="reports")
    assert (staff_reports["reporter_name"] == "Somchai Formats").all()


@needs_gdal
def test_gdal_3_6_opens_the_geopackage_without_a_warning(served: Served, tmp_path: Path) -> None:
    path = _gpkg(served, tmp_path)
    opened = ogrinfo("-so", str(path), "reports")
    assert opened.returncode == 0, opened.stderr
    assert opened.stderr == "", "GDAL 3.6 warned: " + opened.stderr
    assert feature_count(opened.stdout) == COUNT


@needs_gdal
def test_gdal_opens_the_geopackage_by_its_url(served: Served) -> None:
    opened = ogrinfo("-so", "-al", f"/vsicurl/{served.origin}/api/reports?format=gpkg")
    assert opened.returncode == 0, opened.stderr
    # GDAL notes that a URL with a query does not end in .gpkg; nothing else is wrong.
    problems = [line for line in opened.stderr.splitlines() if "file extension" not in line]
    assert problems == [], opened.stderr
    lines = opened.stdout.splitlines()
    layers = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Layer name:")]
    assert layers == ["reports", "wards", "zones"]
    counts = [int(line.split(":")[1]) for line in lines if line.startswith("Feature Count:")]
    assert counts == [COUNT, 2, 2]


# --- GeoJSON --------------------------------------------------------------------------


@needs_gdal
def test_gdal_reading_a_geojson_page_is_told_it_is_a_page(served: Served) -> None:
    opened = ogrinfo("-so", "-al", f"{served.origin}/api/reports?lang=en")
    assert opened.returncode == 0, opened.stderr
    assert feature_count(opened.stdout) == 100
    description = next(
        line for line in opened.stdout.splitlines() if line.strip().startswith("DESCRIPTION=")
    )
    assert "One page of 100 reports; more match" in description
    assert "after=" in description and "format=geojson" in description


@needs_gdal
def test_gdal_reading_the_geojson_export_gets_every_feature(served: Served) -> None:
    opened = ogrinfo("-so", "-al", f"{served.origin}/api/reports?format=geojson&ward=W-A")
    assert opened.returncode == 0, opened.stderr
    assert feature_count(opened.stdout) == served.by_ward["W-A"]
    whole = served.client.get("/api/reports", params={"format": "geojson"}).json()
    assert len(whole["features"]) == COUNT
    assert whole["numberReturned"] == COUNT
    assert "next" not in {link["rel"] for link in whole["links"]}


def test_a_page_says_where_the_next_one_is_in_thai_too(served: Served) -> None:
    page = served.client.get("/api/reports", params={"limit": 50, "lang": "th"}).json()
    following = next(link["href"] for link in page["links"] if link["rel"] == "next")
    assert following in page["description"]
    assert "หน้าถัดไป" in page["description"]
    last = served.client.get("/api/reports", params={"limit": COUNT}).json()
    assert "description" not in last and last["numberReturned"] == COUNT


# --- HEAD -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/reports",
        "/api/reports?format=gpkg",
        "/api/reports?format=csv",
        "/open311/v2/services.json",
        "/maps/public",
        "/static/live.js",
    ],
)
def test_head_answers_as_get_without_the_body(served: Served, path: str) -> None:
    got = served.client.get(path)
    head = served.client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if "content-length" in got.headers:
        assert head.headers["content-length"] == got.headers["content-length"]


def test_head_on_an_endless_stream_answers_at_once(served: Served) -> None:
    head = served.client.head("/api/live", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/event-stream")


def test_head_on_a_route_without_get_is_still_405(served: Served) -> None:
    assert served.client.head("/api/reports/1/merge").status_code == 405


# --- parameters -----------------------------------------------------------------------


def test_an_unknown_filter_is_refused_naming_it(served: Served) -> None:
    # Before, `overdue=true` was ignored and the answer held resolved reports as well.
    answer = served.client.get("/api/reports", params={"overdue": "true"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["field"] == "overdue"
    assert body["detail"].startswith("overdue: is not a parameter")
    assert "status" in body["detail"], "it says which parameters there are"
    thai = served.client.get("/api/reports", params={"overdue": "true", "lang": "th"}).json()
    assert thai["field"] == "overdue" and "overdue" in thai["detail"]
    assert thai["detail"] != body["detail"], "in the caller's language"
    for fmt in ("csv", "gpkg", "geojson"):
        refused = served.client.get("/api/reports", params={"format": fmt, "overdue": "true"})
        assert refused.status_code == 422 and refused.json()["field"] == "overdue"


def test_unknown_parameters_are_refused_on_pages_and_open311_too(served: Served) -> None:
    page = served.client.get("/maps/public", params={"zoom_to": "W-A"})
    assert page.status_code == 422 and page.json()["field"] == "zoom_to"
    spec = served.client.get("/open311/v2/requests.json", params={"overdue": "true"})
    assert spec.status_code == 400
    assert spec.json()[0]["description"].startswith("overdue: ")
    # What a route does read passes, declared in a dependency or not.
    assert served.client.get("/open311/v2/requests.json", params={"status": "open"}).is_success
    assert served.client.get("/maps/public", params={"lang": "en"}).is_success


def test_wards_and_zones_are_taken_by_code_or_id(served: Served) -> None:
    def ids(**params: Any) -> set[int]:
        answer = served.client.get("/api/reports", params={"limit": 1000, **params})
        assert answer.status_code == 200, answer.text
        return {feature["id"] for feature in answer.json()["features"]}

    by_code = ids(ward="W-A")
    assert len(by_code) == served.by_ward["W-A"]
    assert by_code == ids(ward=served.city.wards["W-A"])
    assert ids(zone="Z1,Z2") == ids(zone=[served.city.zones["Z1"], served.city.zones["Z2"]])
    assert ids(zone="Z1") | ids(zone="Z2") == ids()
    for name, value in (("ward", "W-Z"), ("zone", "Z9"), ("ward", "0")):
        answer = served.client.get("/api/reports", params={name: value})
        assert answer.status_code == 422 and answer.json()["field"] == name, answer.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"{{7*7}}": "1"}, "{{7*7}}"),
        ({"<img src=x onerror=alert(1)>": "1"}, "<img src=x onerror=alert(1)>"),
        ({"x" * 5000: "1"}, "x" * 40 + "..."),
        ({"ward": "{{7*7}}"}, "ward"),
        ({"zone": "9" * 60}, "zone"),
        ({"ward": "x" * 5000}, "ward"),
        ({"bom": "{{7*7}}", "format": "csv"}, "bom"),
    ],
)
def test_hostile_parameters_are_a_4xx_naming_the_field(
    served: Served, params: dict[str, str], field: str
) -> None:
    answer = served.client.get("/api/reports", params=params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["field"] == field
    assert "49" not in body["detail"]
