"""Boundary import: formats, CRS handling, repair, refusals, overlaps and gaps, atomic re-import.

The synthetic wards are squares drawn in UTM zone 47N (metres, near Bangkok) and written in
longitude/latitude, so every area below can be checked with a pencil.
"""

from __future__ import annotations

import json
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely
import shapely.affinity
from shapely.geometry import LineString, Polygon, box
from sqlalchemy import Connection, Engine, text

from geo.city.boundary_files import (
    check_attributes,
    check_boundaries,
    find_gaps,
    find_overlaps,
    read_boundaries,
)
from geo.city.boundary_stages import BoundaryOptions
from geo.city.boundary_writes import import_boundaries
from geo.city.catalogue import list_teams
from geo.city.layers import current_zones as current_zones_for_display
from geo.db.schema import OPEN_STATUSES
from geo.errors import BoundaryImportError, BoundaryReplaceRefusedError
from geo.reports.store import create_report
from geo.settings import BoundarySettings, RoutingSettings

UTM47 = "EPSG:32647"
X0, Y0 = 660_000.0, 1_520_000.0  # about 100.48 E, 13.75 N


def utm_box(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    """A rectangle given in metres from (X0, Y0)."""
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def wards_frame(geoms: dict[str, object], **columns: list[object]) -> gpd.GeoDataFrame:
    """Wards with code, name and any extra columns, drawn in UTM 47N, returned in 4326."""
    frame = gpd.GeoDataFrame(
        {"code": list(geoms), "name": [f"Ward {c}" for c in geoms], **columns},
        geometry=list(geoms.values()),
        crs=UTM47,
    )
    return frame.to_crs(4326)


TWO_WARDS = {"A": utm_box(0, 0, 1000, 1000), "B": utm_box(1000, 0, 2000, 1000)}


def write_geojson(path: Path, frame: gpd.GeoDataFrame) -> Path:
    frame.to_file(path, driver="GeoJSON", engine="pyogrio")
    return path


def write_raw_geojson(path: Path, features: list[tuple[str, dict[str, object] | None]]) -> Path:
    """GeoJSON text written by hand, for geometries geopandas would not write."""
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {"code": c, "name": c}, "geometry": g}
                    for c, g in features
                ],
            }
        )
    )
    return path


def topojson_text(frame: gpd.GeoDataFrame) -> str:
    """A TopoJSON topology (no transform, one arc per ring) of simple polygons."""
    arcs: list[list[list[float]]] = []
    geometries = []
    for row in frame.itertuples():
        rings = [row.geometry.exterior, *row.geometry.interiors]
        indexes = []
        for ring in rings:
            indexes.append([len(arcs)])
            arcs.append([[x, y] for x, y in ring.coords])
        geometries.append(
            {"type": "Polygon", "arcs": indexes, "properties": {"code": row.code, "name": row.name}}
        )
    return json.dumps(
        {
            "type": "Topology",
            "objects": {"wards": {"type": "GeometryCollection", "geometries": geometries}},
            "arcs": arcs,
        }
    )


def zip_shapefile(folder: Path, frame: gpd.GeoDataFrame, stem: str = "wards") -> Path:
    frame.to_file(folder / f"{stem}.shp", engine="pyogrio")
    archive = folder / f"{stem}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for member in sorted(folder.glob(f"{stem}.*")):
            if member.suffix != ".zip":
                zf.write(member, member.name)
    return archive


def counts(conn: Connection) -> dict[str, int]:
    return {
        table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        for table in ("wards", "zones", "teams", "boundary_imports")
    }


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize("kind", ["geojson", "topojson", "shapefile", "zipped", "gpkg"])
def test_every_supported_format_reads_into_lonlat(tmp_path: Path, kind: str) -> None:
    frame = wards_frame(TWO_WARDS)
    crs = None
    if kind == "geojson":
        path = write_geojson(tmp_path / "wards.geojson", frame)
    elif kind == "topojson":
        path = tmp_path / "wards.topojson"
        path.write_text(topojson_text(frame))
        crs = "EPSG:4326"
    elif kind == "shapefile":
        path = tmp_path / "wards.shp"
        frame.to_crs(UTM47).to_file(path, engine="pyogrio")  # reprojected on import
    elif kind == "zipped":
        path = zip_shapefile(tmp_path, frame)
    else:
        path = tmp_path / "wards.gpkg"
        frame.to_file(path, layer="wards", engine="pyogrio")

    read = read_boundaries(path, crs=crs)
    assert read.crs.to_epsg() == 4326
    assert sorted(read["code"]) == ["A", "B"]
    areas = read.to_crs(UTM47).set_index("code").area
    assert areas["A"] == pytest.approx(1_000_000, rel=1e-6)

    checked = check_boundaries(path, layer="wards", id_field="code", name_field="name", crs=crs)
    assert list(checked.features["code"]) == ["A", "B"]
    assert checked.repaired_ids == () and checked.overlaps == () and checked.gaps == ()


def test_import_stores_multipolygons_in_4326_with_json_safe_properties(
    tmp_path: Path, engine: Engine
) -> None:
    frame = wards_frame(
        TWO_WARDS,
        population=[1200, 3400],
        density=[1.5, float("nan")],
        surveyed=[date(2024, 5, 1), None],
    )
    path = tmp_path / "wards.gpkg"
    frame.to_file(path, layer="wards", engine="pyogrio")

    summary = import_boundaries(engine, path, layer="wards", id_field="code", name_field="name")

    assert summary.feature_count == 2 and summary.repaired_count == 0
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT code, name, properties, GeometryType(geom) AS kind, ST_SRID(geom) AS srid,"
                " ST_Area(geom::geography) AS area, import_id FROM wards ORDER BY code"
            )
        ).all()
        stored = conn.execute(
            text("SELECT layer, source, sha256, feature_count FROM boundary_imports")
        ).one()
    assert [(r.code, r.name, r.kind, r.srid) for r in rows] == [
        ("A", "Ward A", "MULTIPOLYGON", 4326),
        ("B", "Ward B", "MULTIPOLYGON", 4326),
    ]
    assert rows[0].area == pytest.approx(1_000_000, rel=2e-3)  # UTM scale factor 0.9996
    assert rows[0].properties == {"population": 1200, "density": 1.5, "surveyed": "2024-05-01"}
    assert rows[1].properties == {"population": 3400, "density": None, "surveyed": None}
    assert stored.layer == "wards" and stored.source == "wards.gpkg"
    assert stored.sha256 == summary.sha256 and len(stored.sha256) == 64
    assert stored.feature_count == 2 and rows[0].import_id == summary.import_id


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nothing-here.geojson", "no such file"),
        (lambda p: p, "is a folder"),
        (lambda p: (p / "notes.txt", (p / "notes.txt").write_text("hello"))[0], "could not be"),
        (lambda p: (p / "t.csv", (p / "t.csv").write_text("a,b\n1,2\n"))[0], "is a CSV file"),
        (
            lambda p: write_raw_geojson(p / "empty.geojson", []),
            "has no features (the layer is empty)",
        ),
    ],
    ids=["missing", "folder", "not-vector", "csv", "empty"],
)
def test_unreadable_or_unsupported_files_are_refused(
    tmp_path: Path, make: object, message: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(BoundaryImportError) as info:
        check_boundaries(path, layer="wards", id_field="code", name_field="name")
    assert message in str(info.value)


def test_a_file_with_several_layers_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "city.gpkg"
    wards_frame(TWO_WARDS).to_file(path, layer="wards", engine="pyogrio")
    wards_frame(TWO_WARDS).to_file(path, layer="zones", engine="pyogrio")
    with pytest.raises(BoundaryImportError, match="holds 2 layers \\('wards', 'zones'\\)"):
        read_boundaries(path)


# ----------------------------------------------------------------------------- text encodings

THAI_NAMES = ["พระบรมมหาราชวัง", "วังบูรพาภิรมย์"]


def thai_shapefile(folder: Path, encoding: str, *, zipped: bool, cpg: str | None = None) -> Path:
    """Two Thai-named wards as a Shapefile whose text is in ``encoding``, with no ``.cpg``.

    ``cpg`` writes one saying that instead (a wrong one, for the override).
    """
    return named_shapefile(folder, THAI_NAMES, encoding, zipped=zipped, cpg=cpg)


def named_shapefile(
    folder: Path, names: list[str], encoding: str, *, zipped: bool, cpg: str | None = None
) -> Path:
    """Two wards whose ``TH`` field holds ``names`` in ``encoding``; a ``.cpg`` only if given."""
    folder.mkdir()
    frame = wards_frame(TWO_WARDS, TH=names)
    frame.to_file(folder / "tambon.shp", engine="pyogrio", encoding=encoding)
    (folder / "tambon.cpg").unlink()
    dbf = (folder / "tambon.dbf").read_bytes()
    assert names[0].encode(encoding) in dbf  # the text really is in that encoding
    if cpg is not None:
        (folder / "tambon.cpg").write_text(cpg)
    if not zipped:
        return folder / "tambon.shp"
    path = folder / "tambon.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for part in sorted(folder.glob("tambon.*")):
            if part != path:
                archive.write(part, part.name)
    return path


@pytest.mark.parametrize("zipped", [False, True], ids=["shp", "zip"])
@pytest.mark.parametrize("encoding", ["utf-8", "cp874"])
def test_a_shapefile_without_cpg_reads_thai_as_utf8_when_valid_else_tis620(
    tmp_path: Path, encoding: str, zipped: bool
) -> None:
    path = thai_shapefile(tmp_path / "w", encoding, zipped=zipped)

    frame = read_boundaries(path)

    assert frame["TH"].tolist() == THAI_NAMES
    assert frame["name"].tolist() == ["Ward A", "Ward B"]


def test_an_explicit_encoding_overrides_a_wrong_cpg_and_the_command_line_passes_it(
    tmp_path: Path, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    path = thai_shapefile(tmp_path / "w", "cp874", zipped=True, cpg="UTF-8")
    with pytest.raises(BoundaryImportError, match=r"not valid UTF-8; .* as `encoding`"):
        read_boundaries(path)
    assert read_boundaries(path, encoding="TIS-620")["TH"].tolist() == THAI_NAMES
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    args = ["boundaries", "import", str(path), "--layer", "wards", "--id-field", "code"]

    result = CliRunner().invoke(app, [*args, "--name-field", "TH", "--encoding", "cp874"])

    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM wards ORDER BY code")).scalars().all()
    assert names == THAI_NAMES


@pytest.mark.parametrize(
    "value", ["klingon", "base64", "rot13", "utf-8\x00", "{{7*7}}", "x" * 10_000, ""]
)
def test_an_unknown_encoding_is_refused_naming_the_option(tmp_path: Path, value: str) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    path = thai_shapefile(tmp_path / "w", "utf-8", zipped=False)
    with pytest.raises(BoundaryImportError, match=r"^`encoding`: .* not a text encoding"):
        read_boundaries(path, encoding=value)
    args = ["boundaries", "import", str(path), "--layer", "wards", "--id-field", "code"]

    result = CliRunner().invoke(app, [*args, "--name-field", "TH", "--encoding", value])

    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "error: --encoding: " in message and "is not a text encoding" in message
    assert len(message) < 400  # a long value is cut short, not echoed whole


def test_the_upload_takes_an_encoding_and_refuses_an_unknown_one(
    tmp_path: Path, city_app: Any, engine: Engine
) -> None:
    client, _, keys = city_app
    path = thai_shapefile(tmp_path / "w", "cp874", zipped=True, cpg="UTF-8")

    def upload(**fields: str) -> Any:
        return client.post(
            "/api/admin/boundaries",
            headers={"X-API-Key": keys.admin},
            data={"layer": "wards", "id_field": "code", "name_field": "TH", **fields},
            files={"file": ("tambon.zip", path.read_bytes(), "application/zip")},
        )

    unknown = upload(encoding="<img src=x onerror=alert(1)>")
    assert unknown.status_code == 422
    assert "`encoding`" in unknown.text and "not a text encoding" in unknown.text
    done = upload(encoding="cp874", force="true")  # the tiny city lies elsewhere
    assert done.status_code == 201, done.text
    with engine.connect() as conn:
        names = conn.execute(
            text("SELECT name FROM wards WHERE retired_at IS NULL ORDER BY code")
        ).scalars()
        assert list(names) == THAI_NAMES
    form = {"layer": "wards", "id_field": "code", "name_field": "TH", "encoding": " cp874 "}
    assert BoundaryOptions.from_form(form).encoding == "cp874"


def test_an_encoding_for_a_format_that_is_always_utf8_is_refused(tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "w.geojson", wards_frame(TWO_WARDS))
    with pytest.raises(BoundaryImportError, match="`encoding` applies to Shapefiles only"):
        read_boundaries(path, encoding="cp874")


LATIN_NAMES = ["Café Ñandú", "Zürich"]
MOJIBAKE = [name.encode("utf-8").decode("latin-1") for name in THAI_NAMES]  # GDAL's misreading


def test_a_shapefile_neither_utf8_nor_thai_is_refused_naming_the_field_until_given_its_encoding(
    tmp_path: Path,
) -> None:
    path = named_shapefile(tmp_path / "w", LATIN_NAMES, "ISO-8859-1", zipped=True)

    with pytest.raises(BoundaryImportError) as refused:
        read_boundaries(path)

    said = " ".join(str(refused.value).split())
    assert "neither UTF-8 nor Thai (TIS-620)" in said
    assert "field 'TH' of feature 1 reads as neither" in said and "as `encoding`" in said
    assert read_boundaries(path, encoding="latin-1")["TH"].tolist() == LATIN_NAMES


@pytest.mark.parametrize(
    ("case", "advice"),
    [
        ("geojson saved from misread text", "fix it and save the file again"),
        ("utf-8 shapefile with a latin-1 .cpg", "as `encoding` (utf-8 or cp874)"),
        ("tis-620 shapefile with a cp1252 .cpg", "as `encoding` (utf-8 or cp874)"),
        ("utf-8 shapefile read with --encoding latin-1", "as `encoding` (utf-8 or cp874)"),
    ],
)
def test_text_garbled_by_a_wrong_encoding_is_refused_naming_the_field(
    tmp_path: Path, case: str, advice: str
) -> None:
    encoding = None
    if case.startswith("geojson"):
        path = write_geojson(tmp_path / "w.geojson", wards_frame(TWO_WARDS, TH=MOJIBAKE))
    elif case.startswith("utf-8 shapefile with"):
        path = thai_shapefile(tmp_path / "w", "utf-8", zipped=True, cpg="ISO-8859-1")
    elif case.startswith("tis-620"):
        path = thai_shapefile(tmp_path / "w", "cp874", zipped=False, cpg="1252")
    else:
        path, encoding = thai_shapefile(tmp_path / "w", "utf-8", zipped=False), "latin-1"

    with pytest.raises(BoundaryImportError) as refused:
        read_boundaries(path, encoding=encoding)

    said = str(refused.value)
    assert "looks garbled by a wrong encoding (mojibake)" in said and advice in said
    assert "field 'TH', feature 1: " in said
    assert f"(meant: {THAI_NAMES[0]!r})" in said
    assert "ฟิลด์ 'TH' ฟีเจอร์ลำดับที่ 1" in refused.value.message("th")


def test_the_command_line_detects_tis620_and_refuses_mojibake_storing_nothing(
    tmp_path: Path, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    args = ["boundaries", "import", "--layer", "wards", "--id-field", "code", "--name-field", "TH"]
    garbled = thai_shapefile(tmp_path / "bad", "utf-8", zipped=True, cpg="ISO-8859-1")

    refused = CliRunner().invoke(app, [*args, str(garbled)])

    assert refused.exit_code == 2
    said = " ".join(refused.output.split())
    assert "looks garbled by a wrong encoding (mojibake)" in said and "field 'TH'" in said
    assert "Give the encoding the text was written in as --encoding" in said
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM wards")).scalar_one() == 0

    done = CliRunner().invoke(app, [*args, str(garbled), "--encoding", "utf-8"])
    assert done.exit_code == 0, done.output
    tis620 = thai_shapefile(tmp_path / "good", "cp874", zipped=True)
    done = CliRunner().invoke(app, [*args, str(tis620), "--name-en-field", "name"])
    assert done.exit_code == 0, done.output
    with engine.connect() as conn:
        names = conn.execute(
            text("SELECT name, name_en FROM wards WHERE retired_at IS NULL ORDER BY code")
        ).all()
    assert [tuple(n) for n in names] == [(THAI_NAMES[0], "Ward A"), (THAI_NAMES[1], "Ward B")]


def test_the_upload_refuses_mojibake_in_the_callers_language(
    tmp_path: Path, city_app: Any, engine: Engine
) -> None:
    client, _, keys = city_app
    path = write_geojson(tmp_path / "w.geojson", wards_frame(TWO_WARDS, TH=MOJIBAKE))

    refused = client.post(
        "/api/admin/boundaries?lang=th",
        headers={"X-API-Key": keys.admin},
        data={"layer": "wards", "id_field": "code", "name_field": "TH"},
        files={"file": ("w.geojson", path.read_bytes(), "application/geo+json")},
    )

    assert refused.status_code == 422, refused.text
    assert "mojibake" in refused.text and "ฟิลด์ 'TH'" in refused.json()["detail"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM wards WHERE code = 'A'")).scalar_one() == 0


# ----------------------------------------------------------------------------- fields and ids


def test_a_missing_field_is_named_with_the_fields_the_file_has(tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "w.geojson", wards_frame(TWO_WARDS))
    with pytest.raises(BoundaryImportError) as info:
        check_boundaries(path, layer="wards", id_field="CODE", name_field="title")
    message = str(info.value)
    assert "the id field 'CODE' is not in the file (did you mean 'code'?)" in message
    assert "the name field 'title' is not in the file" in message
    assert "Its fields are: 'code', 'name'" in message


def test_duplicate_and_blank_ids_are_refused_and_listed(tmp_path: Path) -> None:
    geoms = {c: utm_box(i * 100, 0, i * 100 + 100, 100) for i, c in enumerate("ABCDE")}
    frame = wards_frame(geoms)
    frame["code"] = ["A", "B", "A", " ", None]
    path = write_geojson(tmp_path / "w.geojson", frame)
    with pytest.raises(BoundaryImportError) as info:
        check_boundaries(path, layer="wards", id_field="code", name_field="name")
    message = str(info.value)
    assert "1 id(s) in 'code' are used by more than one feature: 'A'" in message
    assert "2 feature(s) have no id in 'code' (feature number '4', '5'" in message


def test_team_field_is_refused_for_wards(tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "w.geojson", wards_frame(TWO_WARDS))
    with pytest.raises(BoundaryImportError, match="team field only applies to the zones"):
        check_boundaries(path, layer="wards", id_field="code", name_field="name", team_field="name")


# ----------------------------------------------------------------------------- geometry


def test_a_bowtie_is_repaired_into_polygons_and_counted(tmp_path: Path, engine: Engine) -> None:
    bowtie = Polygon(
        [(X0 + 1000, Y0), (X0 + 2000, Y0 + 1000), (X0 + 2000, Y0), (X0 + 1000, Y0 + 1000)]
    )
    assert not bowtie.is_valid
    path = write_geojson(tmp_path / "w.geojson", wards_frame({"A": TWO_WARDS["A"], "B": bowtie}))

    summary = import_boundaries(engine, path, layer="wards", id_field="code", name_field="name")

    assert summary.repaired_count == 1 and summary.repaired_ids == ("B",)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT ST_IsValid(geom) AS valid, ST_NumGeometries(geom) AS parts,"
                " ST_Area(ST_Transform(geom, 32647)) AS area FROM wards WHERE code = 'B'"
            )
        ).one()
        stored = conn.execute(text("SELECT repaired_count, summary FROM boundary_imports")).one()
    # The two triangles of the bowtie, 250,000 m² each.
    assert row.valid and row.parts == 2
    assert row.area == pytest.approx(500_000, rel=1e-6)
    assert stored.repaired_count == 1 and stored.summary["repaired_ids"] == ["B"]


def test_lines_and_empty_geometries_are_refused_with_their_ids(tmp_path: Path) -> None:
    square = shapely.geometry.mapping(wards_frame({"A": TWO_WARDS["A"]}).geometry[0])
    line = shapely.geometry.mapping(LineString([(100.5, 13.7), (100.6, 13.8)]))
    path = write_raw_geojson(
        tmp_path / "w.geojson",
        [
            ("A", dict(square)),
            ("ROAD", dict(line)),
            ("NOTHING", None),
            ("HOLLOW", {"type": "Polygon", "coordinates": []}),
        ],
    )
    with pytest.raises(BoundaryImportError) as info:
        check_boundaries(path, layer="wards", id_field="code", name_field="name")
    message = str(info.value)
    assert "3 feature(s) cannot be stored as polygons" in message
    assert "'ROAD': is a LineString, not a polygon" in message
    assert "'NOTHING': has no geometry" in message
    assert "'HOLLOW': has no geometry" in message
    assert "'A'" not in message


def test_a_polygon_that_collapses_when_repaired_is_refused(tmp_path: Path) -> None:
    square = shapely.geometry.mapping(wards_frame({"A": TWO_WARDS["A"]}).geometry[0])
    # Written in degrees: reprojected, the three points would no longer be exactly in line.
    flat = {"type": "Polygon", "coordinates": [[[100.5, 13.7], [100.6, 13.7], [100.7, 13.7]]]}
    flat["coordinates"][0].append([100.5, 13.7])
    path = write_raw_geojson(tmp_path / "w.geojson", [("A", dict(square)), ("F", flat)])
    with pytest.raises(BoundaryImportError, match="'F': collapses to nothing when repaired"):
        check_boundaries(path, layer="wards", id_field="code", name_field="name")


# ----------------------------------------------------------------------------- CRS


def test_a_file_without_crs_is_refused_unless_one_is_given(tmp_path: Path) -> None:
    path = tmp_path / "w.topojson"
    path.write_text(topojson_text(wards_frame(TWO_WARDS)))
    with pytest.raises(BoundaryImportError, match="does not say which coordinate reference"):
        read_boundaries(path)
    assert len(read_boundaries(path, crs="EPSG:4326")) == 2
    with pytest.raises(BoundaryImportError, match="'EPSG:99999' is not a coordinate"):
        read_boundaries(path, crs="EPSG:99999")


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_a_crs_whose_range_the_coordinates_violate_is_refused(tmp_path: Path) -> None:
    metres = gpd.GeoDataFrame(
        {"code": ["A", "B"], "name": ["a", "b"]}, geometry=list(TWO_WARDS.values()), crs=None
    )
    metres_path = tmp_path / "metres.shp"
    metres.to_file(metres_path, engine="pyogrio")  # no .prj: no CRS
    assert not (tmp_path / "metres.prj").exists()
    with pytest.raises(BoundaryImportError, match=r"not longitude/latitude degrees.*EPSG:4326"):
        read_boundaries(metres_path, crs="EPSG:4326")
    lonlat = read_boundaries(metres_path, crs=UTM47)  # the right CRS: accepted, near Bangkok
    assert lonlat.total_bounds == pytest.approx([100.48, 13.74, 100.50, 13.76], abs=0.01)

    degrees_path = tmp_path / "degrees.shp"
    wards_frame(TWO_WARDS).set_crs(None, allow_override=True).to_file(
        degrees_path, engine="pyogrio"
    )
    with pytest.raises(BoundaryImportError, match="outside the area where EPSG:32647"):
        read_boundaries(degrees_path, crs=UTM47)


def test_a_crs_that_contradicts_the_files_own_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.gpkg"
    wards_frame(TWO_WARDS).to_file(path, engine="pyogrio")
    with pytest.raises(BoundaryImportError, match="declares EPSG:4326 but EPSG:32647 was given"):
        read_boundaries(path, crs=UTM47)
    assert len(read_boundaries(path, crs="EPSG:4326")) == 2


# ----------------------------------------------------------------------------- overlaps, gaps

# A 3 km × 3 km frame of four wards around a 1 km × 1 km hole:
#
#   +-----------------+
#   |        N        |      N, S: 3000 × 1000; W, E: 1000 × 1000 between them.
#   +-----+-----+-----+      E reaches 10 m down into S: overlap 1000 × 10 = 10,000 m².
#   |  W  | gap |  E  |      W reaches 0.5 mm down into S: overlap 0.5 m², under tolerance.
#   +-----+-----+-----+      The hole: 1000 × 1000 = 1,000,000 m², bordered by all four.
#   |        S        |
#   +-----------------+
FRAME_WARDS = {
    "S": utm_box(0, 0, 3000, 1000),
    "N": utm_box(0, 2000, 3000, 3000),
    "W": utm_box(0, 999.9995, 1000, 2000),
    "E": utm_box(2000, 990, 3000, 2000),
}


def test_overlaps_and_gaps_are_reported_with_ids_and_square_metres(tmp_path: Path) -> None:
    path = tmp_path / "w.gpkg"
    wards_frame(FRAME_WARDS).to_file(path, engine="pyogrio")

    checked = check_boundaries(path, layer="wards", id_field="code", name_field="name")

    assert checked.metric_crs == UTM47
    assert [o.ids for o in checked.overlaps] == [("E", "S")]
    assert checked.overlaps[0].area_m2 == pytest.approx(10_000, rel=1e-3)
    assert len(checked.gaps) == 1
    gap = checked.gaps[0]
    assert gap.ids == ("E", "N", "S", "W")
    assert gap.area_m2 == pytest.approx(1_000_000, rel=1e-3)
    assert (gap.lon, gap.lat) == pytest.approx((100.49, 13.76), abs=0.01)
    # A lower tolerance brings back the half-square-metre sliver.
    finer = find_overlaps(checked.features, tolerance_m2=0.1)
    assert [o.ids for o in finer] == [("E", "S"), ("S", "W")]
    assert finer[1].area_m2 == pytest.approx(0.5, rel=0.05)
    assert find_gaps(checked.features, tolerance_m2=2_000_000) == []


def test_overlaps_and_gaps_are_kept_on_the_import_row(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "w.gpkg"
    wards_frame(FRAME_WARDS).to_file(path, engine="pyogrio")
    summary = import_boundaries(engine, path, layer="wards", id_field="code", name_field="name")
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT summary FROM boundary_imports")).scalar_one()
    assert stored == summary.to_json()
    assert stored["overlap_count"] == 1 and stored["gap_count"] == 1
    assert stored["overlaps"][0]["ids"] == ["E", "S"]
    assert stored["gaps"][0]["area_m2"] == pytest.approx(1_000_000, rel=1e-3)


# ----------------------------------------------------------------------------- transactions


def test_a_refused_file_changes_nothing(tmp_path: Path, engine: Engine) -> None:
    good = write_geojson(tmp_path / "good.geojson", wards_frame(TWO_WARDS))
    import_boundaries(engine, good, layer="wards", id_field="code", name_field="name")
    bad_frame = wards_frame(TWO_WARDS)
    bad_frame["code"] = ["A", "A"]
    bad = write_geojson(tmp_path / "bad.geojson", bad_frame)
    with engine.connect() as conn:
        before = counts(conn)
        current = conn.execute(text("SELECT id FROM wards WHERE retired_at IS NULL")).all()

    with pytest.raises(BoundaryImportError, match="used by more than one feature: 'A'"):
        import_boundaries(engine, bad, layer="wards", id_field="code", name_field="name")
    with pytest.raises(BoundaryImportError):
        import_boundaries(
            engine, bad, layer="zones", id_field="code", name_field="name", team_field="name"
        )

    with engine.connect() as conn:
        assert counts(conn) == before
        assert conn.execute(text("SELECT id FROM wards WHERE retired_at IS NULL")).all() == current


def test_reimport_retires_old_rows_and_leaves_stored_reports_alone(
    tmp_path: Path, engine: Engine
) -> None:
    settings = RoutingSettings()
    first = write_geojson(tmp_path / "v1.geojson", wards_frame(TWO_WARDS))
    one = import_boundaries(engine, first, layer="wards", id_field="code", name_field="name")
    point = wards_frame({"p": shapely.Point(X0 + 1500, Y0 + 500)}).geometry[0]  # in B
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO categories (code, name_th, name_en) VALUES ('road', 'ถนน', 'Road')")
        )
        report = create_report(
            conn, lon=point.x, lat=point.y, category="road", description="", settings=settings
        )
        ward_b = conn.execute(text("SELECT id FROM wards WHERE code = 'B'")).scalar_one()
    assert report.ward_id == ward_b

    # The new map moves the line between A and B east, so the report's point is now in A.
    moved = {"A": utm_box(0, 0, 1800, 1000), "B": utm_box(1800, 0, 2000, 1000)}
    second = write_geojson(tmp_path / "v2.geojson", wards_frame(moved))
    two = import_boundaries(engine, second, layer="wards", id_field="code", name_field="name")

    assert two.retired_count == 2 and two.import_id != one.import_id
    with engine.connect() as conn:
        wards = conn.execute(
            text("SELECT id, code, import_id, retired_at FROM wards ORDER BY id")
        ).all()
        kept = conn.execute(
            text("SELECT ward_id FROM reports WHERE id = :id"), {"id": report.id}
        ).scalar_one()
        imports = conn.execute(
            text("SELECT source, feature_count FROM boundary_imports ORDER BY id")
        ).all()
    assert [(w.code, w.import_id, w.retired_at is None) for w in wards] == [
        ("A", one.import_id, False),
        ("B", one.import_id, False),
        ("A", two.import_id, True),
        ("B", two.import_id, True),
    ]
    assert kept == ward_b  # still the retired B it was routed to
    assert [(i.source, i.feature_count) for i in imports] == [
        ("v1.geojson", 2),
        ("v2.geojson", 2),
    ]
    with engine.begin() as conn:
        again = create_report(
            conn, lon=point.x, lat=point.y, category="road", description="", settings=settings
        )
    assert again.ward_id == next(w.id for w in wards if w.code == "A" and w.retired_at is None)


# ----------------------------------------------------------------------------- zones and teams


def test_zones_get_the_teams_named_in_the_team_field(tmp_path: Path, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO teams (code, name) VALUES ('ROADS', 'Road crew')"))
    geoms = {c: utm_box(i * 100, 0, i * 100 + 100, 100) for i, c in enumerate(["Z1", "Z2", "Z3"])}
    path = write_geojson(
        tmp_path / "z.geojson", wards_frame(geoms, crew=["ROADS", "PARKS", "PARKS"])
    )

    summary = import_boundaries(
        engine, path, layer="zones", id_field="code", name_field="name", team_field="crew"
    )

    assert summary.teams_created == ("PARKS",)
    with engine.connect() as conn:
        zones = conn.execute(
            text(
                "SELECT z.code, t.code AS team, t.name AS team_name, z.properties"
                " FROM zones AS z JOIN teams AS t ON t.id = z.team_id ORDER BY z.code"
            )
        ).all()
    assert [(z.code, z.team, z.team_name) for z in zones] == [
        ("Z1", "ROADS", "Road crew"),
        ("Z2", "PARKS", "PARKS"),
        ("Z3", "PARKS", "PARKS"),
    ]
    assert zones[0].properties == {}


def test_zones_without_a_team_field_each_get_their_own_team(tmp_path: Path, engine: Engine) -> None:
    path = write_geojson(tmp_path / "z.geojson", wards_frame(TWO_WARDS))
    summary = import_boundaries(engine, path, layer="zones", id_field="code", name_field="name")
    assert summary.teams_created == ("A", "B")
    with engine.connect() as conn:
        teams = conn.execute(
            text("SELECT z.code, t.code, t.name FROM zones z JOIN teams t ON t.id = z.team_id")
        ).all()
    assert sorted(tuple(t) for t in teams) == [("A", "A", "Ward A"), ("B", "B", "Ward B")]


# ------------------------------------------------------------------------ Thai and English names

TRICKY_NAMES = ["{{7*7}} {% raw %}", "<img src=x onerror=alert(1)>'; DROP TABLE wards;--"]


def test_thai_and_english_name_fields_are_stored_apart(tmp_path: Path, engine: Engine) -> None:
    path = write_geojson(
        tmp_path / "z.geojson",
        wards_frame(TWO_WARDS, th=["โซนเหนือ", TRICKY_NAMES[0]], en=["North", None]),
    )

    import_boundaries(
        engine,
        path,
        layer="zones",
        id_field="code",
        name_field="name",
        name_th_field="th",
        name_en_field="en",
    )

    with engine.connect() as conn:
        zones = conn.execute(
            text(
                "SELECT z.code, z.name, z.name_th, z.name_en, z.properties, t.name AS team,"
                " t.name_th AS team_th, t.name_en AS team_en"
                " FROM zones AS z JOIN teams AS t ON t.id = z.team_id ORDER BY z.code"
            )
        ).all()
        teams = {t["code"]: t for t in list_teams(conn)}
        shown = {lang: current_zones_for_display(conn, lang=lang) for lang in ("th", "en")}
    # The name fields become columns, not properties; a blank English name stays missing,
    # and template-looking text is kept as the words it is.
    assert [tuple(z)[:4] for z in zones] == [
        ("A", "Ward A", "โซนเหนือ", "North"),
        ("B", "Ward B", TRICKY_NAMES[0], None),
    ]
    assert zones[0].properties == {}
    # A zone's own team carries the zone's names in each language.
    assert (zones[0].team, zones[0].team_th, zones[0].team_en) == ("Ward A", "โซนเหนือ", "North")
    assert (teams["A"]["name_th"], teams["A"]["name_en"]) == ("โซนเหนือ", "North")
    # Shown to a Thai reader in Thai, to an English reader in English, else as given.
    assert list(shown["th"]["name"]) == ["โซนเหนือ", TRICKY_NAMES[0]]
    assert list(shown["en"]["name"]) == ["North", "Ward B"]
    assert list(shown["en"]["team"]) == ["North", "Ward B"]


def test_an_import_without_name_fields_keeps_the_two_names_empty(
    tmp_path: Path, engine: Engine
) -> None:
    path = write_geojson(tmp_path / "w.geojson", wards_frame(TWO_WARDS, th=["ก", "ข"]))
    import_boundaries(engine, path, layer="wards", id_field="code", name_field="name")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, name_th, name_en, properties FROM wards")).all()
    assert {(r.name, r.name_th, r.name_en) for r in rows} == {
        ("Ward A", None, None),
        ("Ward B", None, None),
    }
    assert all("th" in r.properties for r in rows)  # an unnamed column stays a property


def test_a_missing_name_field_is_named(tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "w.geojson", wards_frame(TWO_WARDS, NAME_TH=["ก", "ข"]))
    with pytest.raises(BoundaryImportError) as caught:
        check_boundaries(
            path, layer="wards", id_field="code", name_field="name", name_th_field="name_th"
        )
    assert "the Thai name field 'name_th' is not in the file (did you mean 'NAME_TH'?)" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ก\x00ข", "holding NUL characters: 'B'"),
        ("ก" * 201, "longer than 200 characters: 'B'"),
    ],
)
def test_unstorable_names_are_refused(value: str, problem: str) -> None:
    # GDAL cuts a file's text at a NUL, so a frame from a notebook is where one can come from.
    frame = wards_frame(TWO_WARDS, en=["North", value])
    with pytest.raises(BoundaryImportError) as caught:
        check_attributes(
            frame, layer="wards", id_field="code", name_field="name", name_en_field="en"
        )
    assert f"names in 'en' {problem}" in str(caught.value)


def test_a_file_with_a_huge_name_changes_nothing(tmp_path: Path, engine: Engine) -> None:
    path = write_geojson(tmp_path / "w.geojson", wards_frame(TWO_WARDS, th=["ก", "ข" * 100_000]))
    with engine.connect() as conn:
        before = counts(conn)
    with pytest.raises(BoundaryImportError, match="names in 'th' longer than 200 characters"):
        import_boundaries(
            engine, path, layer="wards", id_field="code", name_field="name", name_th_field="th"
        )
    with engine.connect() as conn:
        assert counts(conn) == before


# ----------------------------------------------------------------------------- command line


def test_cli_imports_zones_and_prints_the_summary(
    tmp_path: Path, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    path = tmp_path / "zones.gpkg"
    wards_frame(FRAME_WARDS, crew=["T1", "T1", "T2", "T2"]).to_file(path, engine="pyogrio")
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)

    result = CliRunner().invoke(
        app,
        [
            "boundaries",
            "import",
            str(path),
            "--layer",
            "zones",
            "--id-field",
            "code",
            "--name-field",
            "name",
            "--team-field",
            "crew",
        ],
    )

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "features imported │ 4" in output
    assert "repaired (invalid as read) │ 0" in output
    assert "teams created │ 2" in output
    assert "overlaps > 1 m² │ 1 (10,000 m²)" in output
    assert "gaps > 1 m² │ 1 (1,000,000 m²)" in output
    assert "E / S" in output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM zones")).scalar_one() == 4


def test_cli_imports_thai_and_english_names(
    tmp_path: Path, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    path = write_geojson(
        tmp_path / "w.geojson", wards_frame(TWO_WARDS, TH=["ชุมชนก", "ชุมชนข"], EN=["Ko", "Kho"])
    )
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    args = ["boundaries", "import", str(path), "--layer", "wards", "--id-field", "code"]
    names = ["--name-field", "name", "--name-th-field", "TH", "--name-en-field", "EN"]

    result = CliRunner().invoke(app, [*args, *names])

    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT code, name, name_th, name_en FROM wards ORDER BY code"))
        assert [tuple(r) for r in rows] == [
            ("A", "Ward A", "ชุมชนก", "Ko"),
            ("B", "Ward B", "ชุมชนข", "Kho"),
        ]
    wrong = CliRunner().invoke(app, [*args, "--name-field", "name", "--name-en-field", "en"])
    assert wrong.exit_code == 2
    assert "the English name field 'en' is not in the file (did you mean 'EN'?)" in " ".join(
        wrong.output.split()
    )


def test_cli_refuses_a_bad_file_with_a_message_and_exit_code_2(
    tmp_path: Path, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    path = write_geojson(tmp_path / "w.geojson", wards_frame(TWO_WARDS))
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    runner = CliRunner()
    args = ["boundaries", "import", str(path), "--layer", "wards", "--name-field", "name"]

    missing = runner.invoke(app, [*args, "--id-field", "ward_no"])
    with_team = runner.invoke(app, [*args, "--id-field", "code", "--team-field", "name"])

    for result in (missing, with_team):
        assert result.exit_code == 2
        assert isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output
    message = " ".join(missing.output.split())
    assert "error: The file lacks a field it was told to use." in message
    assert "the id field 'ward_no' is not in the file" in message
    assert "Its fields are: 'code', 'name'" in message
    assert "team field only applies to the zones layer" in " ".join(with_team.output.split())
    with engine.connect() as conn:
        assert counts(conn) == {"wards": 0, "zones": 0, "teams": 0, "boundary_imports": 0}


# ----------------------------------------------------------------------------- real files

REAL_FILES = {
    "bangkok-districts": ("bkk-boundaries/bangkok_district.zip", "dcode", "dname", None, 50),
    "bangkok-districts-topojson": (
        "bkk-boundaries/bangkok_district_topo.json",
        "dcode",
        "dname",
        "EPSG:4326",
        50,
    ),
    "bangkok-subdistricts": (
        "bkk-boundaries/bkk_subdistrict.zip",
        "SUBDISTRIC",
        "SUBDISTR_1",
        None,
        180,
    ),
    "nst-tambon": ("nst-boundaries/nst_tambon_hdx.zip", "ADM3_PCODE", "ADM3_EN", None, 170),
    "chicago-wards": ("chicago/chicago_wards_2015.geojson", "ward", "ward", None, 50),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(REAL_FILES))
def test_real_boundary_files_import(name: str, shared_data: Path, engine: Engine) -> None:
    relative, id_field, name_field, crs, expected = REAL_FILES[name]

    summary = import_boundaries(
        engine,
        shared_data / relative,
        layer="wards",
        id_field=id_field,
        name_field=name_field,
        crs=crs,
    )

    print(
        f"\n{name}: {summary.feature_count} features, {summary.repaired_count} repaired, "
        f"{len(summary.overlaps)} overlaps ({sum(o.area_m2 for o in summary.overlaps):,.0f} m²), "
        f"{len(summary.gaps)} gaps ({sum(g.area_m2 for g in summary.gaps):,.0f} m²)"
    )
    assert summary.feature_count == expected
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT count(*) AS n, bool_and(ST_IsValid(geom)) AS valid,"
                " bool_and(GeometryType(geom) = 'MULTIPOLYGON') AS multi,"
                " count(DISTINCT code) AS codes FROM wards WHERE retired_at IS NULL"
            )
        ).one()
    assert (stored.n, stored.valid, stored.multi, stored.codes) == (expected, True, True, expected)
    if name in ("bangkok-districts", "nst-tambon"):
        assert summary.overlaps == () and summary.gaps == ()
    if name == "chicago-wards":
        # No overlaps; the holes are enclaves such as Norridge and Harwood Heights (about 8 km²).
        assert summary.overlaps == ()
        assert summary.gaps[0].ids == ("38", "41", "45")
        assert summary.gaps[0].area_m2 == pytest.approx(7.99e6, rel=0.01)
    if name == "bangkok-subdistricts":
        # The BMA sub-district layer does not tile cleanly: slivers in both directions.
        assert len(summary.overlaps) > 20 and len(summary.gaps) > 20


@pytest.mark.realdata
def test_real_topojson_is_refused_without_crs_and_repaired_to_the_shapefiles_area(
    shared_data: Path, engine: Engine
) -> None:
    topo = shared_data / "bkk-boundaries" / "bangkok_district_topo.json"
    with pytest.raises(BoundaryImportError, match="does not say which coordinate reference"):
        check_boundaries(topo, layer="wards", id_field="dcode", name_field="dname")

    shp = import_boundaries(
        engine,
        shared_data / "bkk-boundaries" / "bangkok_district.zip",
        layer="wards",
        id_field="dcode",
        name_field="dname",
    )
    raw = read_boundaries(topo, crs="EPSG:4326")
    topo_summary = import_boundaries(
        engine, topo, layer="wards", id_field="dcode", name_field="dname", crs="EPSG:4326"
    )

    invalid_as_read = int((~raw.is_valid).sum())
    assert invalid_as_read == 43  # 86% of the 50
    assert topo_summary.repaired_count == invalid_as_read
    assert topo_summary.retired_count == 50
    with engine.connect() as conn:
        area = dict(
            conn.execute(
                text(
                    "SELECT import_id, sum(ST_Area(geom::geography)) FROM wards GROUP BY import_id"
                )
            ).all()
        )
        codes = conn.execute(
            text(
                "SELECT count(*) FROM wards AS a JOIN wards AS b USING (code)"
                " WHERE a.import_id = :a AND b.import_id = :b"
            ),
            {"a": shp.import_id, "b": topo_summary.import_id},
        ).scalar_one()
    difference = abs(area[topo_summary.import_id] - area[shp.import_id]) / area[shp.import_id]
    print(
        f"\nTopoJSON: {topo_summary.repaired_count} of 50 repaired; area differs from the "
        f"shapefile's by {difference:.4%}"
    )
    assert difference < 0.001
    assert codes == 50


@pytest.mark.realdata
def test_real_national_tambon_without_cpg_reads_thai_names(shared_data: Path) -> None:
    frame = read_boundaries(shared_data / "thailand-admin" / "tha_adm3_tambon_simplified.zip")

    assert len(frame) == 7425
    names = dict(zip(frame["ADM3_PCODE"], frame["ADM3_TH"], strict=True))
    assert names["TH100101"] == "พระบรมมหาราชวัง"
    assert not frame["ADM3_TH"].str.contains("à¸").any()


@pytest.mark.realdata
def test_real_national_amphoe_imports_thai_and_english_names_apart(
    shared_data: Path, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    path = shared_data / "thailand-admin" / "tha_adm2_amphoe.zip"  # no .cpg, UTF-8 text
    args = ["boundaries", "import", str(path), "--layer", "wards", "--id-field", "ADM2_PCODE"]

    result = CliRunner().invoke(
        app, [*args, "--name-field", "ADM2_TH", "--name-en-field", "ADM2_EN", "--force"]
    )

    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        stored = {
            r.code: (r.name, r.name_en)
            for r in conn.execute(text("SELECT code, name, name_en FROM wards"))
        }
    assert len(stored) == 928
    assert stored["TH1001"] == ("พระนคร", "Phra Nakhon")
    assert stored["TH8001"] == ("นครศรีธรรมราช", "Mueang Nakhon Si Thammarat")
    assert not any("à¸" in name or "à¸" in english for name, english in stored.values())


# ----------------------------------------------------------------------------- guards on a replace

# The file that took the demo city offline: longitude and latitude swapped, so the one square
# lies at 89.95° N, 8.42° E (inside every coordinate range, so nothing refused it).
SWAPPED = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"code": "W01", "name": "swapped"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[8.41, 89.94], [8.43, 89.94], [8.43, 89.96], [8.41, 89.96], [8.41, 89.94]]
                ],
            },
        }
    ],
}


def current_wards(conn: Connection) -> list[tuple[int, str]]:
    return [
        (r.id, r.code)
        for r in conn.execute(
            text("SELECT id, code FROM wards WHERE retired_at IS NULL ORDER BY id")
        )
    ]


def demo_point(engine: Engine) -> tuple[float, float, str]:
    """A point inside the demo city's first ward, and a category code."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT ST_X(p) AS lon, ST_Y(p) AS lat, (SELECT min(code) FROM categories) AS c"
                " FROM (SELECT ST_PointOnSurface(geom) AS p FROM wards"
                " WHERE retired_at IS NULL ORDER BY code LIMIT 1) AS w"
            )
        ).one()
    return float(row.lon), float(row.lat), str(row.c)


def test_swapped_coordinates_cannot_take_the_demo_city_offline(
    tmp_path: Path, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app
    from geo.demo.city import load_demo_city

    load_demo_city(engine)
    path = tmp_path / "wards.geojson"
    path.write_text(json.dumps(SWAPPED))
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    with engine.connect() as conn:
        before = counts(conn)
        wards_before = current_wards(conn)
        open_reports = conn.execute(
            text("SELECT count(*) FROM reports WHERE status = ANY(:s)"), {"s": list(OPEN_STATUSES)}
        ).scalar_one()
        covered_km2 = conn.execute(
            text(
                "SELECT ST_Area(ST_Union(geom)::geography) / 1e6 FROM wards"
                " WHERE retired_at IS NULL"
            )
        ).scalar_one()
    assert len(wards_before) == 36 and open_reports > 0
    runner = CliRunner()
    args = ["boundaries", "import", str(path), "--layer", "wards", "--id-field", "code"]
    args += ["--name-field", "name"]

    refused = runner.invoke(app, args)

    assert refused.exit_code == 2, refused.output
    message = " ".join(refused.output.split())
    assert f"leave {open_reports:,} of the {open_reports:,} open reports outside" in message
    assert f"uncover {covered_km2:,.2f} km² of the {covered_km2:,.2f} km²" in message
    assert "(100.0%; more than 20% needs confirmation)" in message
    assert "Nothing was changed" in message and "--force" in message
    with engine.connect() as conn:
        assert counts(conn) == before and current_wards(conn) == wards_before
    lon, lat, category = demo_point(engine)
    with engine.begin() as conn:
        routed = create_report(
            conn, lon=lon, lat=lat, category=category, description="", settings=RoutingSettings()
        )
    assert routed.ward_id in {i for i, _ in wards_before}, "intake still routes"

    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    shown = " ".join(dry.output.split())
    assert "dry run: nothing stored" in shown
    assert f"left outside the new wards │ {open_reports + 1:,}" in shown
    assert "would be refused without --force" in shown
    with engine.connect() as conn:
        assert counts(conn) == before and current_wards(conn) == wards_before

    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "Replaced with --force although" in " ".join(forced.output.split())
    with engine.connect() as conn:
        assert [code for _, code in current_wards(conn)] == ["W01"]
        stored = conn.execute(
            text("SELECT summary FROM boundary_imports ORDER BY id DESC LIMIT 1")
        ).scalar_one()
    assert stored["forced"] is True and stored["effect"]["outside"] == open_reports + 1


def tiny_city_with_open_report(engine: Engine) -> int:
    """The tiny city of tests/fixtures.py (wards W-A, W-B) and one open report in W-A."""
    from tests.fixtures import load_tiny_city

    with engine.begin() as conn:
        load_tiny_city(conn)
        report = create_report(
            conn,
            lon=100.005,
            lat=8.405,
            category="road",
            description="",
            settings=RoutingSettings(),
        )
    return report.id


def test_a_replace_that_leaves_open_reports_outside_is_refused_unless_forced(
    tmp_path: Path, engine: Engine
) -> None:
    tiny_city_with_open_report(engine)
    # W-B only: no area lost beyond half, but the open report in W-A would be outside.
    half = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": "W-B", "name": "B"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [100.01, 8.40],
                            [100.02, 8.40],
                            [100.02, 8.41],
                            [100.01, 8.41],
                            [100.01, 8.40],
                        ]
                    ],
                },
            }
        ],
    }
    path = tmp_path / "b.geojson"
    path.write_text(json.dumps(half))
    loose = BoundarySettings(max_area_loss=0.9)
    with engine.connect() as conn:
        before, wards_before = counts(conn), current_wards(conn)

    with pytest.raises(BoundaryReplaceRefusedError) as info:
        import_boundaries(
            engine, path, layer="wards", id_field="code", name_field="name", settings=loose
        )

    assert info.value.parameter == "force"
    assert "leave 1 of the 1 open reports outside the new wards" in str(info.value)
    with engine.connect() as conn:
        assert counts(conn) == before and current_wards(conn) == wards_before
    forced = import_boundaries(
        engine, path, layer="wards", id_field="code", name_field="name", settings=loose, force=True
    )
    assert forced.effect.outside == 1 and forced.needs_force is not None


def test_a_replace_that_uncovers_much_of_the_city_is_refused_by_the_setting(
    tmp_path: Path, engine: Engine
) -> None:
    first = write_geojson(tmp_path / "v1.geojson", wards_frame(TWO_WARDS))
    import_boundaries(engine, first, layer="wards", id_field="code", name_field="name")
    # Ward A only: half the covered area goes, and no report is stored.
    smaller = write_geojson(tmp_path / "v2.geojson", wards_frame({"A": TWO_WARDS["A"]}))

    with pytest.raises(BoundaryReplaceRefusedError) as info:
        import_boundaries(engine, smaller, layer="wards", id_field="code", name_field="name")
    message = str(info.value)
    assert "leave 0 of the 0 open reports" in message
    assert "uncover 1.00 km² of the 2.00 km² they cover now (50.0%; more than 20%" in message

    summary = import_boundaries(
        engine,
        smaller,
        layer="wards",
        id_field="code",
        name_field="name",
        settings=BoundarySettings(max_area_loss=0.5),
    )
    assert summary.needs_force is None
    assert summary.effect.lost_km2 == pytest.approx(1.0, rel=2e-3)
    assert summary.effect.lost_share == pytest.approx(0.5, rel=1e-3)


def test_a_dry_run_measures_the_effect_on_open_reports_and_writes_nothing(
    tmp_path: Path, engine: Engine
) -> None:
    first = write_geojson(tmp_path / "v1.geojson", wards_frame(TWO_WARDS))
    import_boundaries(engine, first, layer="wards", id_field="code", name_field="name")
    point = wards_frame({"p": shapely.Point(X0 + 1500, Y0 + 500)}).geometry[0]  # in B
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO categories (code, name_th, name_en) VALUES ('road', 'ถนน', 'Road')")
        )
        create_report(
            conn,
            lon=point.x,
            lat=point.y,
            category="road",
            description="",
            settings=RoutingSettings(),
        )
    moved = {"A": utm_box(0, 0, 1800, 1000), "B": utm_box(1800, 0, 2000, 1000)}
    second = write_geojson(tmp_path / "v2.geojson", wards_frame(moved))
    with engine.connect() as conn:
        before, wards_before = counts(conn), current_wards(conn)

    summary = import_boundaries(
        engine, second, layer="wards", id_field="code", name_field="name", dry_run=True
    )

    assert summary.dry_run and summary.import_id is None and summary.retired_count == 2
    effect = summary.effect
    assert (effect.open_reports, effect.outside, effect.ward_changed) == (1, 0, 1)
    assert effect.lost_km2 == pytest.approx(0, abs=1e-5)  # a few m² of reprojection noise
    with engine.connect() as conn:
        assert counts(conn) == before and current_wards(conn) == wards_before
        assert (
            conn.execute(
                text("SELECT count(*) FROM report_events WHERE kind = 'rerouted'")
            ).scalar_one()
            == 0
        )


def ring_with(vertices: int) -> Polygon:
    """A circle in UTM 47N drawn with ``vertices`` coordinates (the ring closes on itself)."""
    angles = np.linspace(0, 2 * np.pi, vertices - 1, endpoint=False)
    return Polygon(np.column_stack([X0 + 1000 * np.cos(angles), Y0 + 1000 * np.sin(angles)]))


def test_a_polygon_above_the_vertex_limit_is_refused_naming_it(tmp_path: Path) -> None:
    geoms = {"SMALL": utm_box(5000, 0, 6000, 1000), "DENSE": ring_with(1001), "AT": ring_with(1000)}
    geoms["AT"] = shapely.affinity.translate(geoms["AT"], 3000, 0)
    path = tmp_path / "w.gpkg"
    wards_frame(geoms).to_file(path, engine="pyogrio")

    with pytest.raises(BoundaryImportError) as info:
        check_boundaries(
            path,
            layer="wards",
            id_field="code",
            name_field="name",
            settings=BoundarySettings(max_vertices=1000),
        )
    message = str(info.value)
    assert "1 feature(s) have more than 1,000 vertices" in message
    assert "'DENSE': 1,001 vertices" in message and "'AT'" not in message
    assert check_boundaries(
        path,
        layer="wards",
        id_field="code",
        name_field="name",
        settings=BoundarySettings(max_vertices=1001),
    ).features["code"].tolist() == ["SMALL", "DENSE", "AT"]


def test_the_default_vertex_limit_refuses_a_generated_dense_ward(tmp_path: Path) -> None:
    limit = BoundarySettings().max_vertices
    assert limit > 12_110, "the largest real feature (NST amphoe TH8009) must pass"
    path = tmp_path / "w.gpkg"
    wards_frame({"A": TWO_WARDS["A"], "HUGE": ring_with(limit + 1)}).to_file(path, engine="pyogrio")
    with pytest.raises(BoundaryImportError, match=f"'HUGE': {limit + 1:,} vertices"):
        check_boundaries(path, layer="wards", id_field="code", name_field="name")


def test_unreadable_file_errors_do_not_name_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "issuemap-upload-secret"
    folder.mkdir()
    for name, data in (("w.geojson", b"{not json"), ("w.zip", b"PK\x03\x04garbage")):
        path = folder / name
        path.write_bytes(data)
        with pytest.raises(BoundaryImportError) as info:
            check_boundaries(path, layer="wards", id_field="code", name_field="name")
        assert name in str(info.value)
        assert "issuemap-upload-secret" not in str(info.value)
        assert str(tmp_path) not in str(info.value)
