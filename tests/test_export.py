"""GET /api/reports: filters, keyset paging, CSV and GeoPackage exports, privacy, streaming.

Five hand-placed reports in the tiny city (see tests/fixtures.py for its map):

    name  lon      lat    ward zone team   category status       created (UTC)
    a1    100.005  8.405  W-A  Z1   T1     road     open         2026-05-01 10:00
    a2    100.008  8.402  W-A  -    DRAIN  flood    resolved     2026-05-02 10:00
    b1    100.011  8.408  W-B  Z1   T1     road     in_progress  2026-05-03 23:30
    b2    100.015  8.405  W-B  Z2   TREE   tree     open         2026-05-10 00:00
    b3    100.018  8.409  W-B  Z2   T2     road     closed       2026-06-01 00:00

Flooding goes city-wide to DRAIN, a team without zones, so a2 has no zone.
"""

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pyogrio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

import api.routers.export as export_router
from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, Principal, snap_point
from geo.reports import export
from geo.reports.search import ReportFilter, find_reports, report_query
from geo.reports.store import insert_reports
from geo.settings import RoutingSettings
from tests.fixtures import Keys, TinyCity

NAME = "Somchai Exportsecret"
CONTACT = "export-secret@example.org"
SECRETS = (NAME, CONTACT, "Exportsecret", "export-secret")
THAI = "ฝาท่อระบายน้ำแตก หน้าวัด"

REPORTS = {
    "a1": (100.005, 8.405, "road", "open", "2026-05-01T10:00:00+00:00"),
    "a2": (100.008, 8.402, "flood", "resolved", "2026-05-02T10:00:00+00:00"),
    "b1": (100.011, 8.408, "road", "in_progress", "2026-05-03T23:30:00+00:00"),
    "b2": (100.015, 8.405, "tree", "open", "2026-05-10T00:00:00+00:00"),
    "b3": (100.018, 8.409, "road", "closed", "2026-06-01T00:00:00+00:00"),
}


@pytest.fixture
def seeded(city_app: Any, engine: Engine) -> tuple[TestClient, TinyCity, Keys, dict[str, int]]:
    """The app with the five reports above; returns their ids by name."""
    client, city, keys = city_app
    rows = pd.DataFrame(
        [
            {
                "lon": lon,
                "lat": lat,
                "category_id": city.categories[category],
                "status": status,
                "created_at": datetime.fromisoformat(created),
                "external_id": name,
                "description": f"{THAI} ({name})",
                "reporter_name": NAME,
                "reporter_contact": CONTACT,
            }
            for name, (lon, lat, category, status, created) in REPORTS.items()
        ]
    )
    with engine.begin() as conn:
        assert insert_reports(conn, rows, settings=RoutingSettings()).inserted == len(REPORTS)
        ids = dict(conn.execute(text("SELECT external_id, id FROM reports")).all())
    return client, city, keys, ids


def public_lon_lat(name: str) -> tuple[float, float]:
    """Where the public sees report ``name``: on the public location grid."""
    lon, lat = REPORTS[name][:2]
    lat_s, lon_s = snap_point(lat, lon, DEFAULT_PUBLIC_ROUNDING_M)
    return lon_s, lat_s


def names(answer: Any, ids: dict[str, int]) -> set[str]:
    assert answer.status_code == 200, answer.text
    by_id = {v: k for k, v in ids.items()}
    return {by_id[f["id"]] for f in answer.json()["features"]}


def test_geojson_is_a_feature_collection_of_points_with_iso_times(seeded: Any) -> None:
    client, city, _keys, ids = seeded
    answer = client.get("/api/reports")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/geo+json")
    body = answer.json()
    assert body["type"] == "FeatureCollection"
    assert body["numberMatched"] == body["numberReturned"] == 5
    first = body["features"][0]
    assert first["id"] == ids["a1"]
    assert first["geometry"] == {"type": "Point", "coordinates": list(public_lon_lat("a1"))}
    props = first["properties"]
    assert props["created_at"] == "2026-05-01T10:00:00+00:00"
    assert props["ward_code"] == "W-A"
    assert props["team_id"] == city.teams["T1"]
    assert props["category_name_th"] == "ถนน"
    assert props["description"] == f"{THAI} (a1)"
    assert "lon" not in props and "lat" not in props
    assert not {"reporter_name", "reporter_contact"} & set(props)


def test_each_filter_selects_exactly_the_expected_reports(seeded: Any) -> None:
    client, city, _keys, ids = seeded
    w, z, t = city.wards, city.zones, city.teams
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({}, {"a1", "a2", "b1", "b2", "b3"}),
        ({"bbox": "100.00,8.40,100.01,8.41"}, {"a1", "a2"}),
        ({"bbox": "100.009,8.404,100.016,8.41"}, {"b1", "b2"}),
        ({"ward": w["W-A"]}, {"a1", "a2"}),
        ({"ward": [w["W-A"], w["W-B"]]}, {"a1", "a2", "b1", "b2", "b3"}),
        ({"zone": z["Z1"]}, {"a1", "b1"}),
        ({"zone": z["Z2"]}, {"b2", "b3"}),
        ({"team": t["T1"]}, {"a1", "b1"}),
        ({"team": [t["T1"], t["TREE"]]}, {"a1", "b1", "b2"}),
        ({"team": t["DRAIN"]}, {"a2"}),
        ({"category": "road"}, {"a1", "b1", "b3"}),
        ({"category": "tree,flood"}, {"a2", "b2"}),
        ({"category": ["tree", "flood"]}, {"a2", "b2"}),
        ({"status": "open"}, {"a1", "b2"}),
        ({"status": "open,closed"}, {"a1", "b2", "b3"}),
        ({"status": ["resolved", "in_progress"]}, {"a2", "b1"}),
        # A date covers its whole day (UTC): b1 at 23:30 on the 3rd is in.
        ({"created_from": "2026-05-02", "created_to": "2026-05-03"}, {"a2", "b1"}),
        ({"created_from": "2026-05-03T23:00:00Z"}, {"b1", "b2", "b3"}),
        # 23:00 in Thailand is 16:00 UTC, before b1.
        ({"created_to": "2026-05-03T23:00:00+07:00"}, {"a1", "a2"}),
        ({"ward": w["W-B"], "status": "open"}, {"b2"}),
        ({"category": "road", "zone": z["Z2"]}, {"b3"}),
        ({"category": "nothing-like-this"}, set()),
    ]
    for params, expected in cases:
        answer = client.get("/api/reports", params=params)
        assert names(answer, ids) == expected, params
        assert answer.json()["numberMatched"] == len(expected), params


def test_an_unencoded_plus_in_an_offset_still_means_plus(seeded: Any) -> None:
    client, _city, _keys, ids = seeded
    # Typed into a browser, "+07:00" arrives as " 07:00".
    answer = client.get("/api/reports?created_to=2026-05-03T23:00:00+07:00")
    assert names(answer, ids) == {"a1", "a2"}


def test_paging_walks_every_report_once_and_next_keeps_the_filters(seeded: Any) -> None:
    client, _city, _keys, ids = seeded
    url: str | None = "/api/reports?limit=2"
    seen: list[int] = []
    pages = 0
    while url is not None:
        body = client.get(url).json()
        pages += 1
        assert body["numberMatched"] == 5
        assert body["numberReturned"] == len(body["features"]) <= 2
        seen += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    assert pages == 3
    assert seen == sorted(ids.values())

    url = "/api/reports?category=road&status=open,in_progress,closed&limit=1"
    walked: list[int] = []
    while url is not None:
        body = client.get(url).json()
        assert body["numberMatched"] == 3
        walked += [f["id"] for f in body["features"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if nxt:
            query = parse_qs(urlsplit(nxt[0]).query)
            assert query["category"] == ["road"]
            assert query["status"] == ["open,in_progress,closed"]
            assert query["limit"] == ["1"]
        url = nxt[0] if nxt else None
    assert walked == [ids["a1"], ids["b1"], ids["b3"]]


def test_past_the_count_limit_a_page_leaves_the_count_out_and_still_pages(
    seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _city, _keys, ids = seeded
    monkeypatch.setattr(export, "MATCH_COUNT_LIMIT", 3)
    body = client.get("/api/reports?limit=2").json()
    assert "numberMatched" not in body
    assert body["numberReturned"] == 2
    url: str | None = "/api/reports?limit=2"
    seen: list[int] = []
    while url is not None:
        body = client.get(url).json()
        seen += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    assert seen == sorted(ids.values())
    # Up to the limit the count is exact.
    assert client.get("/api/reports?category=road").json()["numberMatched"] == 3
    assert client.get("/api/reports?status=open").json()["numberMatched"] == 2


def test_a_page_holds_the_same_rows_as_the_head_of_the_whole_list(
    seeded: Any, engine: Engine
) -> None:
    _client, city, _keys, ids = seeded
    readers = (
        Principal(role="public"),
        Principal(role="planner"),
        Principal(role="field_team", team_id=city.teams["T2"]),
    )
    filters = (
        ReportFilter(),
        ReportFilter(categories=("road",), statuses=("open", "closed", "in_progress")),
        ReportFilter(zone_ids=(city.zones["Z2"],)),
        ReportFilter(bbox=(100.0, 8.40, 100.012, 8.41)),
    )
    with engine.connect() as conn:
        for principal in readers:
            for flt in filters:
                for order in ("id", "due", "newest"):
                    query, params = report_query(flt, principal, order=order)
                    whole = [dict(r) for r in conn.execute(query, params).mappings()]
                    for limit in (1, 2, 5):
                        page = find_reports(conn, flt, principal, limit=limit, order=order)
                        assert page == whole[:limit], (principal, flt, order, limit)
                    if order == "id":
                        after = find_reports(conn, flt, principal, after_id=ids["a2"], limit=5)
                        assert after == [row for row in whole if row["id"] > ids["a2"]]


def test_last_page_has_no_next_link_and_links_offer_the_files(seeded: Any) -> None:
    client, city, _keys, _ids = seeded
    ward = city.wards["W-A"]
    body = client.get("/api/reports", params={"limit": 5, "ward": ward}).json()
    rels = [link["rel"] for link in body["links"]]
    assert "next" not in rels
    alternates = {
        link["type"]: link["href"] for link in body["links"] if link["rel"] == "alternate"
    }
    assert "format=csv" in alternates["text/csv"]
    assert f"ward={ward}" in alternates["application/geopackage+sqlite3"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bbox": "100.00,8.40,100.01"}, "bbox"),
        ({"bbox": "100.02,8.40,100.00,8.41"}, "bbox"),
        ({"bbox": "100.00,8.41,100.02,8.40"}, "bbox"),
        ({"bbox": "100.00,8.40,100.02,91"}, "bbox"),
        ({"bbox": "100.00,nan,100.02,8.41"}, "bbox"),
        ({"bbox": "west,8.40,100.02,8.41"}, "bbox"),
        ({"status": "lost"}, "status"),
        ({"status": "open,lost"}, "status"),
        ({"created_from": "2026-05-05", "created_to": "2026-05-01"}, "created_to"),
        ({"created_from": "2026-05-01T08:00:00"}, "created_from"),
        ({"created_to": "last tuesday"}, "created_to"),
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"after": -1}, "after"),
        ({"ward": "abc"}, "ward"),
        ({"zone": 0}, "zone"),
        ({"team": "1.5"}, "team"),
        ({"category": "x" * 65}, "category"),
        ({"format": "xml"}, "format"),
        ({"format": "csv", "bbox": "1,2,3"}, "bbox"),
        ({"format": "gpkg", "status": "lost"}, "status"),
    ],
)
def test_bad_parameters_are_a_422_naming_the_parameter(
    seeded: Any, params: dict[str, Any], field: str
) -> None:
    client, _city, _keys, _ids = seeded
    answer = client.get("/api/reports", params=params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["field"].split(".")[0] == field
    assert body["detail"].startswith(field)


def read_csv(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline="")))


def test_csv_has_a_header_and_every_match_with_thai_text_intact(seeded: Any) -> None:
    client, city, _keys, ids = seeded
    params = {"format": "csv", "ward": city.wards["W-A"], "limit": 1}
    answer = client.get("/api/reports", params=params)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == 'attachment; filename="issuemap-reports.csv"'
    rows = read_csv(answer.content)
    assert [int(r["id"]) for r in rows] == [ids["a1"], ids["a2"]], "no paging in files"
    assert rows[0]["description"] == f"{THAI} (a1)"
    assert rows[0]["category_name_th"] == "ถนน"
    assert rows[0]["created_at"] == "2026-05-01T10:00:00+00:00"
    assert (float(rows[0]["lon"]), float(rows[0]["lat"])) == public_lon_lat("a1")
    assert rows[0]["overdue"] in {"true", "false"}
    assert "reporter_name" not in rows[0]


def test_an_empty_csv_still_has_its_header(seeded: Any) -> None:
    client, _city, _keys, _ids = seeded
    answer = client.get("/api/reports", params={"format": "csv", "category": "none"})
    assert answer.status_code == 200
    assert answer.text.startswith("\ufeffid,category,")
    assert answer.text.count("\n") == 1


def test_accept_header_picks_the_format_and_the_parameter_wins(seeded: Any) -> None:
    client, _city, _keys, _ids = seeded
    as_csv = client.get("/api/reports", headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    as_gpkg = client.get("/api/reports", headers={"Accept": "application/geopackage+sqlite3"})
    assert as_gpkg.headers["content-type"] == "application/geopackage+sqlite3"
    wins = client.get("/api/reports?format=geojson", headers={"Accept": "text/csv"})
    assert wins.headers["content-type"].startswith("application/geo+json")


def test_geopackage_reads_back_with_its_count_crs_and_thai_text(
    seeded: Any, tmp_path: Path
) -> None:
    client, _city, _keys, ids = seeded
    answer = client.get("/api/reports", params={"format": "gpkg", "category": "road"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/geopackage+sqlite3"
    assert 'filename="issuemap-reports.gpkg"' in answer.headers["content-disposition"]
    path = tmp_path / "reports.gpkg"
    path.write_bytes(answer.content)
    assert pyogrio.list_layers(path)[:, 0].tolist() == ["reports", "wards", "zones"]
    frame = pyogrio.read_dataframe(path, layer="reports")
    assert len(frame) == 3
    assert frame.crs.to_epsg() == 4326
    assert frame["id"].tolist() == [ids["a1"], ids["b1"], ids["b3"]]
    assert frame.geometry.iloc[0].coords[0] == public_lon_lat("a1")
    assert frame["description"].iloc[0] == f"{THAI} (a1)"
    assert frame["created_at"].iloc[0] == pd.Timestamp("2026-05-01T10:00:00Z")
    assert "reporter_name" not in frame.columns


def test_an_empty_geopackage_still_has_the_layer(seeded: Any, tmp_path: Path) -> None:
    client, _city, _keys, _ids = seeded
    answer = client.get("/api/reports", params={"format": "gpkg", "status": "duplicate"})
    path = tmp_path / "empty.gpkg"
    path.write_bytes(answer.content)
    info = pyogrio.read_info(path, layer="reports")
    assert info["features"] == 0
    assert info["crs"] == "EPSG:4326"
    assert info["geometry_type"] == "Point"


def test_public_exports_never_carry_the_reporter_but_staff_exports_do(seeded: Any) -> None:
    client, _city, keys, _ids = seeded
    for query in ("", "?format=csv", "?format=gpkg"):
        for headers in ({}, {"X-API-Key": keys.app}):
            answer = client.get("/api/reports" + query, headers=headers)
            assert answer.status_code == 200
            for secret in SECRETS:
                assert secret.encode() not in answer.content, (query, headers, secret)
    staff = client.get("/api/reports?format=csv", headers={"X-API-Key": keys.planner})
    rows = read_csv(staff.content)
    assert len(rows) == 5
    assert {(r["reporter_name"], r["reporter_contact"]) for r in rows} == {(NAME, CONTACT)}
    gpkg = client.get("/api/reports?format=gpkg", headers={"X-API-Key": keys.admin})
    assert NAME.encode() in gpkg.content


def test_field_teams_export_only_what_they_may_see(seeded: Any) -> None:
    client, _city, keys, ids = seeded
    # A crew sees its team's reports and everything in its zones: crew T2 also sees b2,
    # routed to the tree team inside zone Z2.
    t1 = client.get("/api/reports", headers={"X-API-Key": keys.t1})
    assert names(t1, ids) == {"a1", "b1"}
    assert t1.json()["numberMatched"] == 2
    rows = read_csv(client.get("/api/reports?format=csv", headers={"X-API-Key": keys.t2}).content)
    assert {int(r["id"]) for r in rows} == {ids["b2"], ids["b3"]}
    assert rows[0]["reporter_contact"] == CONTACT
    planner = client.get("/api/reports", headers={"X-API-Key": keys.planner})
    assert planner.json()["numberMatched"] == 5


# --- Every report, streamed -------------------------------------------------------------

MANY = 20_000


def insert_many(engine: Engine, city: TinyCity, count: int) -> None:
    rng = np.random.default_rng(7)
    codes = list(city.categories.values())
    rows = pd.DataFrame(
        {
            "lon": rng.uniform(100.0005, 100.0195, count),
            "lat": rng.uniform(8.4005, 8.4095, count),
            "category_id": [codes[i % len(codes)] for i in range(count)],
            "created_at": pd.date_range("2026-01-01", periods=count, freq="min", tz=UTC),
            "description": [f"{THAI} #{i}" for i in range(count)],
        }
    )
    with engine.begin() as conn:
        assert insert_reports(conn, rows, settings=RoutingSettings()).inserted == count


def test_csv_of_twenty_thousand_reports_streams(
    city_app: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, city, _keys = city_app
    insert_many(engine, city, MANY)
    pulled = 0
    real_stream = export_router.stream_reports

    def counting(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for row in real_stream(*args, **kwargs):
            pulled += 1
            yield row

    monkeypatch.setattr(export_router, "stream_reports", counting)
    pulled_at_first_chunk = None
    chunks = 0
    lines = 0
    tail = b""
    with client.stream("GET", "/api/reports?format=csv") as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_bytes():
            if pulled_at_first_chunk is None:
                pulled_at_first_chunk = pulled
            chunks += 1
            lines += chunk.count(b"\n")
            tail = (tail + chunk)[-4000:]
    assert lines == MANY + 1, "a header and one line per report"
    last = tail.decode("utf-8", errors="ignore").rstrip("\r\n").rsplit("\n", 1)[-1]
    assert f"{THAI} #{MANY - 1}," in last
    # The test client hands chunks over as the app sends them; the first arrived long
    # before the app had read every report, so the export was never held whole.
    assert chunks > 10
    assert pulled_at_first_chunk is not None and pulled_at_first_chunk < MANY // 10
    assert pulled == MANY


# --- The writers on their own -----------------------------------------------------------

COLUMNS = ["id", "description", "created_at", "photo_ids", "overdue", "team_id", "lon", "lat"]


def generated(count: int, consumed: list[int]) -> Iterator[dict[str, Any]]:
    """Rows made on demand; ``consumed[0]`` says how many have been asked for."""
    for i in range(count):
        consumed[0] = i + 1
        yield {
            "id": i + 1,
            "description": f"{THAI} {i}",
            "created_at": datetime(2026, 5, 1, 10, tzinfo=UTC),
            "photo_ids": [i, i + 1] if i % 2 else [],
            "overdue": i % 3 == 0,
            "team_id": None if i % 5 == 0 else 7,
            "lon": 100.0 + i * 1e-6,
            "lat": 8.4,
        }


def test_csv_writer_yields_before_it_has_read_its_input() -> None:
    consumed = [0]
    chunks = export.csv_chunks(generated(10_000, consumed), columns=COLUMNS, chunk_chars=4096)
    first = next(chunks)
    assert first.startswith(b"\xef\xbb\xbfid,description,created_at,"), "the BOM first"
    assert 0 < consumed[0] < 100, "the first chunk went out after a few dozen rows"
    rest = b"".join(chunks)
    assert consumed[0] == 10_000
    rows = read_csv(first + rest)
    assert len(rows) == 10_000
    assert rows[1] == {
        "id": "2",
        "description": f"{THAI} 1",
        "created_at": "2026-05-01T10:00:00+00:00",
        "photo_ids": "1;2",
        "overdue": "false",
        "team_id": "7",
        "lon": "100.000001",
        "lat": "8.4",
    }
    assert rows[0]["team_id"] == "" and rows[0]["overdue"] == "true"


def test_csv_writer_defuses_text_a_spreadsheet_would_run() -> None:
    row = dict(next(generated(1, [0])), description='=HYPERLINK("http://x")')
    text_out = b"".join(export.csv_chunks([row], columns=COLUMNS)).decode()
    assert read_csv(text_out.encode())[0]["description"] == '\'=HYPERLINK("http://x")'


def test_only_text_that_could_run_is_defused() -> None:
    # A signed number cannot be a formula; anything more after the sign can.
    assert export.spreadsheet_safe("-87.62") == "-87.62"
    assert export.spreadsheet_safe("-2+3") == "'-2+3"
    assert export.spreadsheet_safe("+1+cmd|' /C calc'!A0") == "'+1+cmd|' /C calc'!A0"
    assert export.csv_cell(["=1+1", "x"]) == "'=1+1;x"


def test_geopackage_writer_appends_batch_by_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumed = [0]
    seen: list[tuple[int, int, bool]] = []
    real_write = pyogrio.write_dataframe

    def spy(frame: Any, path: Any, **kwargs: Any) -> None:
        seen.append((consumed[0], len(frame), kwargs["append"]))
        real_write(frame, path, **kwargs)

    monkeypatch.setattr(export.pyogrio, "write_dataframe", spy)
    path = tmp_path / "out.gpkg"
    written = export.write_geopackage(
        generated(250, consumed), path, columns=COLUMNS, batch_size=100
    )
    assert written == 250
    # Each batch is written as soon as it is read, before the next one is read.
    assert seen == [(100, 100, False), (200, 100, True), (250, 50, True)]
    frame = pyogrio.read_dataframe(path)
    assert len(frame) == 250 and frame.crs.to_epsg() == 4326
    assert frame["team_id"].isna().sum() == 50
    assert frame["photo_ids"].iloc[1] == "1;2"
    assert list(frame.columns) == [c for c in COLUMNS if c not in ("lon", "lat")] + ["geometry"]
