"""Report imports of real exports: the format registry, maps from files, and the command.

The hand-written files are for the tiny city (tests/fixtures.py): wards W-A (lon
100.00-100.01) and W-B (100.01-100.02) between lat 8.40 and 8.41; categories road (ถนน),
flood (น้ำท่วม) and tree (ต้นไม้). The second Traffy layout is made from the real export
in ../shared/data, so its values are real.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from geo.city.boundary_writes import import_boundaries
from geo.cli.main import app
from geo.errors import InvalidInputError
from geo.reports.import_formats import FORMATS, TRAFFY_CATEGORIES
from geo.reports.imports import (
    import_reports,
    parse_list,
    parse_share,
    read_category_map,
    read_status_map,
)
from tests.fixtures import TinyCity, load_tiny_city

T = "2023-05-12 01:00:00+00"
LATER = "2023-05-13 09:00:00+00"
HEADER = "ticket_id,type,comment,coords,photo,address,timestamp,state,last_activity"


def traffy_row(
    ticket: str,
    *,
    types: str = "{ถนน}",
    comment: str = "หลุม",
    coords: str = "100.005,8.405",
    state: str = "รอรับเรื่อง",
    last: str = T,
) -> str:
    """One Traffy row, every field quoted the way csv would."""
    cells = [ticket, types, comment, coords, "", "", T, state, last]
    return ",".join('"' + c.replace('"', '""') + '"' for c in cells) + "\n"


@pytest.fixture
def city(engine: Engine) -> TinyCity:
    with engine.begin() as conn:
        return load_tiny_city(conn)


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8", newline="")
    return path


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, ["reports", "import", *args, "--lang", "en"])


def flat(output: str) -> str:
    return " ".join(output.split())


def count(engine: Engine, sql: str = "SELECT count(*) FROM reports") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


# --- the registry ---------------------------------------------------------------------------


def test_formats_are_data_and_traffy_names_every_real_type_in_two_languages() -> None:
    traffy = FORMATS["traffy"]
    assert traffy.category_layout == "list"
    codes = [c.code for c in traffy.categories]
    assert len(codes) == len(set(codes)) == len(TRAFFY_CATEGORIES)
    assert all(c.name_th and c.name_en and c.values for c in traffy.categories)
    assert traffy.type_map["ไฟฟ้า"] == traffy.type_map["แสงสว่าง"] == "lighting"


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("['100.5', '13.7']", ["100.5", "13.7"]),
        ("[100.5, 13.7]", ["100.5", "13.7"]),
        ('["ถนน", "ทางเท้า"]', ["ถนน", "ทางเท้า"]),
        ("['a, b', \"c\"]", ["a, b", "c"]),
        ("[]", []),
    ],
)
def test_list_cells_are_read(value: str, items: list[str]) -> None:
    assert parse_list(value) == items


@pytest.mark.parametrize(("value", "share"), [("50%", 0.5), ("0.1", 0.1), ("0", 0), ("100%", 1)])
def test_shares_read_as_percent_or_fraction(value: str, share: float) -> None:
    assert parse_share(value) == pytest.approx(share)


@pytest.mark.parametrize("value", ["150%", "2", "half", "nan", "-1%"])
def test_bad_shares_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError, match="max_reject_share"):
        parse_share(value)


# --- the second Traffy layout, forwarded states ---------------------------------------------


def test_list_coordinates_list_types_and_noted_states_load(
    engine: Engine, city: TinyCity, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "fondue.csv",
        HEADER
        + "\n"
        + traffy_row("A-1", coords="['100.005', '8.405']", state="ส่งต่อ(ใหม่)")
        + traffy_row("A-2", coords="[100.015, 8.405]", types="['กีดขวาง', 'น้ำท่วม']")
        + traffy_row("A-3", coords="100.006,8.406", state="เชิญร่วม(ใหม่)")
        + traffy_row("A-4", coords="['x', '8.4']")
        + traffy_row("A-5", state="ส่งต่อ"),
    )
    summary = import_reports(
        engine, path, file_format="traffy", rejects_path=tmp_path / "rejects.csv"
    )
    assert (summary.inserted, summary.rejected) == (4, 1)
    assert summary.first_rejects == ((5, "bad coordinates: longitude 'x' is not a number"),)
    assert rows(
        engine,
        "SELECT r.external_id, c.code, r.status, ST_X(r.geom), ST_Y(r.geom) FROM reports AS r "
        "JOIN categories AS c ON c.id = r.category_id ORDER BY r.external_id",
    ) == [
        ("A-1", "road", "acknowledged", 100.005, 8.405),
        ("A-2", "flood", "open", 100.015, 8.405),
        ("A-3", "road", "acknowledged", 100.006, 8.406),
        ("A-5", "road", "acknowledged", 100.005, 8.405),
    ]


FONDUE_COLUMNS = [
    "ticket_id",
    "type",
    "organization",
    "comment",
    "photo",
    "photo_after",
    "coords",
    "address",
    "subdistrict",
    "district",
    "province",
    "timestamp",
    "state",
    "star",
    "count_reopen",
    "last_activity",
]


def _as_list(literal: str, index: int) -> str:
    """A Postgres array literal as the newer export writes a list, alternating quoting."""
    items = literal.strip("{}").split(",") if literal.strip("{}") else []
    if index % 2:
        return "[" + ", ".join(f"'{item}'" for item in items) + "]"
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


@pytest.mark.realdata
def test_real_export_in_the_second_layout_loads_like_the_first(
    shared_data: Path, engine: Engine, tmp_path: Path
) -> None:
    import_boundaries(
        engine,
        shared_data / "bkk-boundaries" / "bangkok_district.zip",
        layer="wards",
        id_field="dcode",
        name_field="dname",
    )
    original = shared_data / "bkk-traffy" / "traffy_teamchadchart.csv"
    frame = pd.read_csv(original, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    layout2 = frame[FONDUE_COLUMNS].copy()
    lon_lat = frame["coords"].str.split(",", expand=True)
    odd = pd.Series(range(len(frame))) % 2 == 1
    layout2["coords"] = ("['" + lon_lat[0] + "', '" + lon_lat[1] + "']").where(
        odd, "[" + lon_lat[0] + ", " + lon_lat[1] + "]"
    )
    layout2["type"] = [_as_list(v, i) for i, v in enumerate(frame["type"])]
    forwarded = frame["state"].eq("กำลังดำเนินการ") & (pd.Series(range(len(frame))) % 3 == 0)
    layout2.loc[forwarded, "state"] = "ส่งต่อ(ใหม่)"
    path = tmp_path / "fondue.csv"
    layout2.to_csv(path, index=False)

    first = import_reports(
        engine,
        original,
        file_format="traffy",
        create_categories=True,
        dry_run=True,
    )
    second = import_reports(
        engine,
        path,
        file_format="traffy",
        create_categories=True,
        rejects_path=tmp_path / "rejects.csv",
    )
    assert second.rows == first.rows == 1000
    assert second.inserted == first.inserted > 850
    assert second.reasons == first.reasons
    assert sum(second.reasons.values()) == second.rejected  # rows, not reasons
    assert second.created_categories
    assert len(second.missing_categories) == len(TRAFFY_CATEGORIES)

    wanted = {
        ticket: (float(lon), float(lat))
        for ticket, lon, lat in zip(frame["ticket_id"], lon_lat[0], lon_lat[1], strict=True)
        if ticket
    }
    stored = rows(engine, "SELECT external_id, ST_X(geom), ST_Y(geom), status FROM reports")
    assert len(stored) == second.inserted
    assert all(wanted[ticket] == (x, y) for ticket, x, y, _ in stored)
    statuses = {ticket: status for ticket, _, _, status in stored}
    forwarded_ids = set(frame.loc[forwarded, "ticket_id"]) & statuses.keys()
    assert forwarded_ids and {statuses[t] for t in forwarded_ids} == {"acknowledged"}
    names = rows(engine, "SELECT name_th, name_en FROM categories WHERE code = 'flooding'")
    assert names == [("น้ำท่วม", "Flooding")]


# --- columns the format expects -------------------------------------------------------------


def test_a_renamed_column_is_named_with_its_close_match_and_nothing_is_stored(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "renamed.csv",
        HEADER.replace("comment", "comments") + "\n" + traffy_row("R-1"),
    )
    result = run(cli, str(path), "--format", "traffy")
    assert result.exit_code == 2
    assert "the file has no column 'comment'; did you mean 'comments'?" in flat(result.output)
    assert "Traceback" not in result.output
    assert count(engine) == 0
    assert not (tmp_path / "renamed.rejects.csv").exists()

    generic = write(tmp_path / "generic.csv", "id,lat,lon,description\nG-1,8.405,100.005,x\n")
    result = run(
        cli,
        str(generic),
        "--format",
        "csv",
        "--map",
        "external_id=id",
        "--map",
        "lat=lat",
        "--map",
        "lon=lon",
        "--map",
        "description=comment",
        "--default-category",
        "road",
    )
    assert result.exit_code == 2
    assert "--map: the file has no column 'comment'; did you mean 'description'?" in flat(
        result.output
    )
    assert count(engine) == 0


def test_an_optional_column_the_file_lacks_is_named_in_the_summary(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    header = HEADER.replace(",photo,", ",").replace(",address,", ",")
    line = traffy_row("O-1").replace('"","",', "", 1)
    result = run(cli, str(write(tmp_path / "lean.csv", header + "\n" + line)), "--format", "traffy")
    assert result.exit_code == 0, result.output
    assert "the file has no column 'address', 'photo'" in flat(result.output)
    assert count(engine) == 1


# --- the summary and the exit code ----------------------------------------------------------


def test_exit_codes_follow_what_was_stored(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "bad.csv",
        HEADER + "\n" + traffy_row("B-1", state="?") + traffy_row("B-2", coords=""),
    )
    result = run(cli, str(bad), "--format", "traffy")
    assert result.exit_code == 1
    output = flat(result.output)
    assert "no row was stored: 2 of 2 rows were rejected" in output
    assert "line 2: unknown status" in output and "line 3: no coordinates" in output

    mixed = write(
        tmp_path / "mixed.csv",
        HEADER + "\n" + traffy_row("M-1") + traffy_row("M-2", state="?") + traffy_row("M-3"),
    )
    result = run(cli, str(mixed), "--format", "traffy", "--max-reject-share", "20%")
    assert result.exit_code == 1
    assert "33% of the rows were rejected, more than the 20%" in flat(result.output)
    assert count(engine) == 2  # the good rows are stored; the exit code says to look

    again = run(cli, str(mixed), "--format", "traffy", "--source", "other")
    assert again.exit_code == 0, again.output  # a third is under the default half
    assert "rejected rows, by first reason: 1 unknown status" in flat(again.output)

    result = run(cli, str(mixed), "--format", "traffy", "--max-reject-share", "lots")
    assert result.exit_code == 2
    assert "--max-reject-share: must be a share such as 50% / 0.5" in flat(result.output)


def test_a_dry_run_shows_the_first_rejects_and_writes_nothing(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "dry.csv",
        HEADER + "\n" + traffy_row("D-1") + traffy_row("D-2", coords="1,2"),
    )
    result = run(cli, str(path), "--format", "traffy", "--dry-run")
    assert result.exit_code == 0, result.output
    output = flat(result.output)
    assert "dry run: nothing was stored" in output
    assert "1 new, 0 already present, 1 rejected" in output
    assert "line 3: outside the service area" in output
    assert count(engine) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dry.csv"]


def test_the_summary_speaks_thai_by_default(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    path = write(tmp_path / "th.csv", HEADER + "\n" + traffy_row("TH-1"))
    result = cli.invoke(app, ["reports", "import", str(path), "--format", "traffy"])
    assert result.exit_code == 0, result.output
    assert "1 new" not in flat(result.output)
    assert "ใหม่ 1 มีอยู่แล้ว 0 ถูกปฏิเสธ 0" in flat(result.output)

    path = write(tmp_path / "th2.csv", HEADER + "\n" + traffy_row("TH-2", coords=""))
    result = cli.invoke(app, ["reports", "import", str(path), "--format", "traffy"])
    assert result.exit_code == 1
    output = flat(result.output)
    assert "บรรทัด 2: ไม่มีพิกัด: coords is empty" in output
    assert "ไม่มีแถวใดถูกบันทึก: ถูกปฏิเสธ 1 จาก 1 แถว" in output

    renamed = write(tmp_path / "th3.csv", HEADER.replace("comment", "comments") + "\n")
    result = cli.invoke(app, ["reports", "import", str(renamed), "--format", "traffy"])
    assert result.exit_code == 2
    assert "ไฟล์ไม่มีคอลัมน์ 'comment'; หมายถึง 'comments' หรือไม่?" in flat(result.output)
    result = cli.invoke(app, ["reports", "import", str(renamed), "--format", "nope"])
    assert "ต้องเป็นค่าใดค่าหนึ่งใน traffy, socrata, csv ไม่ใช่ 'nope'" in flat(result.output)

    result = cli.invoke(app, ["reports", "import", str(path), "--format", "traffy", "--lang", "xx"])
    assert result.exit_code == 2
    assert "--lang" in flat(result.output) and "th, en" in flat(result.output)


# --- a city without the source's categories -------------------------------------------------


@pytest.fixture
def bare_city(engine: Engine, city: TinyCity) -> TinyCity:
    """The tiny city's wards and teams, and no categories at all."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM category_routes"))
        conn.execute(text("DELETE FROM categories"))
    return city


def test_a_fresh_city_names_the_missing_categories_then_creates_them(
    engine: Engine, bare_city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "fresh.csv",
        HEADER
        + "\n"
        + traffy_row("F-1")
        + traffy_row("F-2", types="{ทางเท้า,ถนน}")
        + traffy_row("F-3", types="{ไฟฟ้า}"),
    )
    result = run(cli, str(path), "--format", "traffy")
    assert result.exit_code == 1
    output = flat(result.output)
    assert "3 unknown category" in output
    assert "road (ถนน, Roads)" in output and "lighting (แสงสว่าง, Street lighting)" in output
    assert "issuemap reports import fresh.csv --format traffy --create-categories" in output
    assert count(engine, "SELECT count(*) FROM categories") == 0

    result = run(cli, str(path), "--format", "traffy", "--create-categories")
    assert result.exit_code == 0, result.output
    assert "3 new, 0 already present, 0 rejected" in flat(result.output)
    assert rows(
        engine,
        "SELECT r.external_id, c.code, c.name_th, c.name_en FROM reports AS r "
        "JOIN categories AS c ON c.id = r.category_id ORDER BY 1",
    ) == [
        ("F-1", "road", "ถนน", "Roads"),
        ("F-2", "sidewalk", "ทางเท้า", "Sidewalks"),
        ("F-3", "lighting", "แสงสว่าง", "Street lighting"),
    ]
    assert count(engine, "SELECT count(*) FROM categories") == len(TRAFFY_CATEGORIES)


# --- maps from files ------------------------------------------------------------------------

GENERIC = (
    "id,where,kind,state,text\n"
    "G-1,POINT(100.005 8.405),pothole; ถนน,Fixed,{{7*7}}\n"
    "G-2,POINT(100.015 8.405),unknown thing|tree,Being looked at,มีต้นไม้ล้ม\n"
    "G-3,nowhere,flood,Fixed,x\n"
)
GENERIC_MAP = [
    "--map",
    "external_id=id",
    "--map",
    "coords=where",
    "--map",
    "category=kind",
    "--map",
    "status=state",
    "--map",
    "description=text",
]
POINT = r"POINT\((?P<lon>\S+) (?P<lat>\S+)\)"


def test_generic_csv_with_status_and_category_maps_split_values_and_a_coords_pattern(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    path = write(tmp_path / "generic.csv", GENERIC.replace("|", "; "))
    statuses = write(
        tmp_path / "statuses.json", '{"Fixed": "resolved", "being looked at": "in_progress"}'
    )
    categories = write(tmp_path / "categories.csv", "value,code\npothole,road\n")
    result = run(
        cli,
        str(path),
        "--format",
        "csv",
        *GENERIC_MAP,
        "--coords-pattern",
        POINT,
        "--status-map",
        str(statuses),
        "--category-map",
        str(categories),
        "--category-separator",
        ";",
    )
    assert result.exit_code == 0, result.output
    assert "2 new, 0 already present, 1 rejected" in flat(result.output)
    assert "line 4: bad coordinates: where 'nowhere' is not the coordinates pattern" in flat(
        result.output
    )
    assert rows(
        engine,
        "SELECT r.external_id, c.code, r.status, r.description, ST_X(r.geom) FROM reports AS r "
        "JOIN categories AS c ON c.id = r.category_id ORDER BY 1",
    ) == [
        ("G-1", "road", "resolved", "{{7*7}}", 100.005),
        ("G-2", "tree", "in_progress", "มีต้นไม้ล้ม", 100.015),
    ]


@pytest.mark.parametrize(
    ("flag", "name", "content", "message"),
    [
        ("--status-map", "s.json", '{"Fixed": ', "--status-map: s.json is not valid JSON"),
        (
            "--status-map",
            "s.json",
            '["resolved"]',
            'must hold one JSON object of "value": "status"',
        ),
        (
            "--status-map",
            "s.csv",
            "Fixed,done\n",
            "--status-map: s.csv names statuses we do not have: 'done'",
        ),
        ("--status-map", "s.csv", "a,b,c\n", "row 1 of s.csv is not 'value,status'"),
        ("--status-map", "s.csv", "Fixed,resolved\nfixed,open\n", "maps 'fixed' to both"),
        ("--status-map", "s.csv", "", "s.csv holds no rows"),
        ("--status-map", "s.csv", "a\x00,open\n", "s.csv holds binary data"),
        (
            "--category-map",
            "c.json",
            '{"pothole": "nope"}',
            "--category-map: names codes that are not active categories: nope",
        ),
        (
            "--category-map",
            "c.json",
            '{"pothole": 3}',
            'must hold one JSON object of "value": "code"',
        ),
    ],
)
def test_bad_map_files_are_refused_naming_the_file(
    engine: Engine,
    city: TinyCity,
    cli: CliRunner,
    tmp_path: Path,
    flag: str,
    name: str,
    content: str,
    message: str,
) -> None:
    path = write(tmp_path / "generic.csv", GENERIC)
    mapping = write(tmp_path / name, content)
    result = run(
        cli,
        str(path),
        "--format",
        "csv",
        *GENERIC_MAP,
        "--coords-pattern",
        POINT,
        flag,
        str(mapping.name),
        "--default-category",
        "road",
    )
    assert result.exit_code == 2, result.output
    assert message in flat(result.output)
    assert "Traceback" not in result.output
    assert count(engine) == 0


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("POINT(", "--coords-pattern: is not a regular expression"),
        (r"(?P<x>\S+) (?P<y>\S+)", "needs the named groups (?P<lon>...) and (?P<lat>...)"),
    ],
)
def test_a_bad_coords_pattern_is_refused(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path, pattern: str, message: str
) -> None:
    path = write(tmp_path / "generic.csv", GENERIC)
    result = run(cli, str(path), "--format", "csv", *GENERIC_MAP, "--coords-pattern", pattern)
    assert result.exit_code == 2
    assert message in flat(result.output)


def test_map_files_read_json_and_csv_alike(tmp_path: Path) -> None:
    as_json = write(tmp_path / "m.json", '{"Fixed  ": "resolved", "OPEN": "open"}')
    as_csv = write(tmp_path / "m.csv", "value,status\nfixed,resolved\nopen,open\n")
    assert (
        read_status_map(as_json)
        == read_status_map(as_csv)
        == {
            "fixed": "resolved",
            "open": "open",
        }
    )
    assert read_category_map(write(tmp_path / "c.csv", "ถนนพัง,road\n")) == {"ถนนพัง": "road"}


# --- re-importing an updated export ---------------------------------------------------------


def test_update_takes_newer_states_with_one_audit_event_each(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    first = write(
        tmp_path / "first.csv",
        HEADER
        + "\n"
        + traffy_row("U-1")
        + traffy_row("U-2")
        + traffy_row("U-3")
        + traffy_row("U-5", state="กำลังดำเนินการ"),
    )
    assert run(cli, str(first), "--format", "traffy").exit_code == 0
    events = "SELECT count(*) FROM report_events"
    before = count(engine, events)

    newer = write(
        tmp_path / "newer.csv",
        HEADER
        + "\n"
        + traffy_row("U-1", state="เสร็จสิ้น", last=LATER)  # resolved, newer
        + traffy_row("U-2", state="เสร็จสิ้น", last=T)  # not newer: left alone
        + traffy_row("U-3", state="กำลังดำเนินการ", last=LATER)
        + traffy_row("U-4")
        + traffy_row("U-5", state="กำลังดำเนินการ", last=LATER),  # only its time moved
    )
    plain = run(cli, str(newer), "--format", "traffy", "--dry-run")
    assert "1 new, 4 already present" in flat(plain.output)
    assert "updated" not in flat(plain.output)

    result = run(cli, str(newer), "--format", "traffy", "--update", "--actor", "sync")
    assert result.exit_code == 0, result.output
    assert "3 already present were updated from the file" in flat(result.output)
    assert rows(
        engine,
        "SELECT external_id, status, updated_at = '2023-05-13 09:00+00', resolved_at IS NOT NULL "
        "FROM reports ORDER BY 1",
    ) == [
        ("U-1", "resolved", True, True),
        ("U-2", "open", False, False),
        ("U-3", "in_progress", True, False),
        ("U-4", "open", False, False),
        ("U-5", "in_progress", True, False),
    ]
    assert rows(
        engine,
        "SELECT r.external_id, e.kind, e.from_status, e.to_status FROM report_events AS e "
        "JOIN reports AS r ON r.id = e.report_id WHERE e.actor = 'sync' AND e.kind <> 'created' "
        "ORDER BY 1",
    ) == [
        ("U-1", "status", "open", "resolved"),
        ("U-3", "status", "open", "in_progress"),
        ("U-5", "updated", "in_progress", "in_progress"),
    ]
    assert count(engine, events) == before + 3 + 1  # three updates; U-4's created event

    again = run(cli, str(newer), "--format", "traffy", "--update")
    assert again.exit_code == 0
    assert "updated from the file" not in flat(again.output)
    assert count(engine, events) == before + 4


# --- hostile files --------------------------------------------------------------------------


def test_hostile_cells_are_refused_row_by_row_or_stored_as_text(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "hostile.csv",
        HEADER
        + "\n"
        + traffy_row("H-1", comment="{{7*7}} {% if 1 %}x{% endif %}", types="{{{7*7}}}")
        + traffy_row("H-2", comment="nul\x00here")
        + traffy_row("H-3", comment="ยาว" * 3000)
        + traffy_row("H-4\x00", state="{{7*7}}")
        + traffy_row("H-5", comment="{{7*7}}"),
    )
    result = run(cli, str(path), "--format", "traffy")
    assert result.exit_code == 1  # 80% rejected
    output = flat(result.output)
    assert "Traceback" not in result.output
    # The reasons echo the hostile cells as written, never evaluated. Only they are searched
    # for 49: the rest of the output names a temporary path and a time, which may hold it.
    reasons_said = output[
        output.index("rejected rows, by first reason") : output.index("with line numbers")
    ]
    assert "type '{{{7*7}}}'" in reasons_said and "state '{{7*7}}'" in reasons_said
    assert "49" not in reasons_said
    assert "1 new, 0 already present, 4 rejected" in output
    reasons = {
        int(row["line"]): row["reason"]
        for row in csv.DictReader(
            (tmp_path / "hostile.rejects.csv").open(encoding="utf-8-sig", newline="")
        )
    }
    assert reasons[2].startswith("bad category: type '{{{7*7}}}' is not a one-dimensional")
    assert reasons[3] == "bad text: comment holds a NUL character"
    assert reasons[4].startswith("description too long: 9,000 characters")
    assert "unknown status: state '{{7*7}}' is not a known status" in reasons[5]
    assert rows(engine, "SELECT description FROM reports") == [("{{7*7}}",)]


def test_a_ten_megabyte_cell_refuses_the_file_clearly(
    engine: Engine, city: TinyCity, cli: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "huge.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER + "\n" + traffy_row("OK-1"))
        handle.write(traffy_row("BIG", comment="ก" * 10_000_000))
    result = run(cli, str(path), "--format", "traffy")
    assert result.exit_code == 2
    assert "has a field longer than 131,072 characters near line 3" in flat(result.output)
    assert "Traceback" not in result.output
    assert count(engine) == 0
