"""Writing reports out: GeoJSON features, CSV and GeoPackage, one row at a time.

The rows are the plain dicts ``geo.reports.search`` yields, so an export holds exactly the columns
its caller may see, locations as precise as the caller may see them (``geo.access.policy``):
nothing here adds or removes a private field. The CSV and GeoPackage
writers take any iterable and pull from it as they write (chunks of text, batches of
rows), so an export of every report never holds every report in memory.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from sqlalchemy import Connection, text

from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, Principal
from geo.errors import InvalidInputError
from geo.i18n import N_
from geo.reports.search import ReportFilter, report_query, select_sql

LAYER = "reports"
"""Name of the reports' layer in an exported GeoPackage."""

BOUNDARY_LAYERS = ("wards", "zones")
"""The current boundaries an exported GeoPackage holds beside the reports, as layers named
after their tables, so a planner has the areas the reports were counted in."""

GPKG_VERSION = "1.3"
"""The GeoPackage version an export declares. GDAL 3.7 and later write 1.4 by default,
which GDAL 3.6 (Debian bookworm's QGIS and ogr2ogr) opens with a "may only be partially
supported" warning; 1.3 holds everything an export uses."""

CRS = "EPSG:4326"
"""Every report is stored, and exported, in WGS84 longitude/latitude."""

GPKG_BATCH = 5000
"""Reports written to a GeoPackage per append: big enough to be fast, small enough to hold."""

CSV_CHUNK_CHARS = 64 * 1024
"""Roughly how much CSV text is gathered before it is handed on."""

BOM = "\ufeff"
"""Starts a CSV export (as UTF-8, ``EF BB BF``): without it Excel on Windows reads UTF-8 as
the local code page, and Thai text comes out garbled."""

MATCH_COUNT_LIMIT = 10_000
"""A page says how many reports match only up to this many (``numberMatched``).

Counting reads every match; past this a count costs more than the page it comes with,
and grows with history.
"""

_Row = TypeVar("_Row")
_COORDINATES = ("lon", "lat")
# How each column is typed in a GeoPackage. The layer's schema is fixed by the first batch,
# so types cannot be guessed from values (a batch may hold only NULLs in a column); any
# column not named here is written as text.
_INTEGER_COLUMNS = frozenset({"id", "ward_id", "zone_id", "team_id", "supporters", "duplicate_of"})
_BOOLEAN_COLUMNS = frozenset({"overdue", "ward_snapped", "is_demo"})
_DATETIME_COLUMNS = frozenset({"created_at", "updated_at", "resolved_at", "due_at"})
_LIST_SEPARATOR = ";"
# Spreadsheets run a cell that starts like a formula. Report text comes from the public and
# CSV exports are opened by staff in Excel, so such text gets a leading apostrophe (OWASP
# "CSV injection"); numbers, dates and flags are never text and are left as they are.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A signed plain number ("-87.62", a longitude read as text) cannot be a formula.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


_AREA_TABLES = {"ward": "wards", "zone": "zones"}
_NO_SUCH_AREA = {
    "ward": N_("{ref!r} is not the code or id of a ward"),
    "zone": N_("{ref!r} is not the code or id of a zone"),
}
_DIGITS = re.compile(r"[0-9]{1,18}", re.ASCII)


def with_areas(
    conn: Connection, flt: ReportFilter, *, wards: Sequence[str] = (), zones: Sequence[str] = ()
) -> ReportFilter:
    """``flt`` limited to the wards and zones named, each by its code or its id.

    A code means every version of that area (a redrawn ward keeps its code), so reports
    routed before a boundary change are found too. A value that is no code and no id is
    an ``InvalidInputError`` naming ``ward`` or ``zone``; one that is both is the code.
    """
    found: dict[str, tuple[int, ...]] = {}
    for field, refs in (("ward", wards), ("zone", zones)):
        if not refs:
            continue
        by_code: dict[str, list[int]] = {}
        rows = conn.execute(
            text(f"SELECT code, id FROM {_AREA_TABLES[field]} WHERE code = ANY(:codes)"),
            {"codes": list(refs)},
        )
        for code, area_id in rows:
            by_code.setdefault(code, []).append(area_id)
        ids: list[int] = []
        for ref in refs:
            if ref in by_code:
                ids += by_code[ref]
            elif _DIGITS.fullmatch(ref) and int(ref) > 0:
                ids.append(int(ref))
            else:
                raise InvalidInputError(field, _NO_SUCH_AREA[field], ref=ref[:40])
        found[field] = tuple(dict.fromkeys(ids))
    if not found:
        return flt
    return replace(
        flt,
        ward_ids=found.get("ward", flt.ward_ids),
        zone_ids=found.get("zone", flt.zone_ids),
    )


def report_columns(conn: Connection, principal: Principal) -> list[str]:
    """The columns ``principal`` gets for a report, in order, even when nothing matches."""
    query, params = report_query(ReportFilter(), principal, limit=0)
    return list(conn.execute(query, params).keys())


def count_reports(
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    *,
    at_most: int | None = None,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> int | None:
    """How many reports ``flt`` selects for ``principal``, as pages select them.

    With ``at_most``, the count stops after that many and more than that is ``None``.
    """
    # The filter and joins pages use, without the columns pages compute or their order.
    matched, params = select_sql("1", flt, principal, public_rounding_m=public_rounding_m)
    if at_most is not None:
        matched += " LIMIT :count_limit"
        params["count_limit"] = at_most + 1
    found = int(conn.execute(text(f"SELECT count(*) FROM ({matched}) AS m"), params).scalar_one())
    return None if at_most is not None and found > at_most else found


def report_page(
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    *,
    limit: int,
    after_id: int | None = None,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of reports after ``after_id`` as ``principal`` sees them, and whether more follow.

    One row more than asked says whether there is a next page, so the last page has no
    ``next`` link leading to an empty one.
    """
    query, params = report_query(
        flt, principal, limit=limit + 1, after_id=after_id, public_rounding_m=public_rounding_m
    )
    result = conn.execute(query, params)
    # Zipped with the names read once: a mapping per row cost more than reading the row.
    names = list(result.keys())
    rows = [dict(zip(names, row, strict=True)) for row in result]
    return rows[:limit], len(rows) > limit


def json_value(value: Any) -> Any:
    """A column value JSON has no type for, as JSON has it: dates and times as ISO 8601 text.

    The ``default`` of a JSON encoder writing the features here; anything else is a
    ``TypeError``, as ``json`` expects of it.
    """
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def feature(row: dict[str, Any]) -> dict[str, Any]:
    """A report as a GeoJSON Feature with a Point ``[lon, lat]`` geometry.

    Property values are the columns' own (times stay ``datetime``): write the feature out
    with ``json_value`` as the encoder's ``default``.
    """
    properties = dict(row)
    coordinates = [properties.pop(name) for name in _COORDINATES]
    return {
        "type": "Feature",
        "id": row["id"],
        "geometry": {"type": "Point", "coordinates": coordinates},
        "properties": properties,
    }


def feature_collection(
    rows: Iterable[dict[str, Any]],
    *,
    links: Sequence[dict[str, str]] = (),
    number_matched: int | None = None,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection with OGC API Features' ``links`` and counts."""
    features = [feature(row) for row in rows]
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if number_matched is not None:
        collection["numberMatched"] = number_matched
    collection["numberReturned"] = len(features)
    collection["links"] = list(links)
    return collection


def geojson_chunks(
    rows: Iterable[dict[str, Any]],
    *,
    links: Sequence[dict[str, str]] = (),
    chunk_chars: int = CSV_CHUNK_CHARS,
) -> Generator[bytes, None, None]:
    """Every row as one GeoJSON FeatureCollection, yielded in chunks as rows arrive.

    The whole answer, not a page: GDAL's GeoJSON driver (``ogrinfo``, QGIS) reads one
    document and follows no ``next`` link, so a file meant for it must hold every feature.
    ``numberReturned`` and ``links`` follow the features, as in a page, once they are counted.
    """
    encoder = json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=json_value
    )
    parts: list[str] = ['{"type":"FeatureCollection","features":[']
    size = 0
    count = 0
    for row in rows:
        text_out = ("," if count else "") + encoder.encode(feature(row))
        parts.append(text_out)
        size += len(text_out)
        count += 1
        if size >= chunk_chars:
            yield "".join(parts).encode("utf-8")
            parts.clear()
            size = 0
    parts.append(f'],"numberReturned":{count},"links":{encoder.encode(list(links))}}}')
    yield "".join(parts).encode("utf-8")


def _joined(values: Sequence[Any]) -> str:
    return _LIST_SEPARATOR.join(str(item) for item in values)


def spreadsheet_safe(value: str) -> str:
    """``value`` as a spreadsheet shows it without running it: the one CSV-injection rule.

    Text that starts like a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return) gets a
    leading apostrophe; a plain signed number such as ``-87.62`` is left as it is. Every CSV
    issuemap writes for people to open (exports, import rejects) passes its text through here.
    """
    if value.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_cell(value: Any) -> str | float | int:
    """A column value as a CSV cell: ISO 8601 times, ``true``/``false``, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return spreadsheet_safe(_joined(value))
    if isinstance(value, str):
        return spreadsheet_safe(value)
    if isinstance(value, int | float):
        return value
    return str(value)


def csv_chunks(
    rows: Iterable[dict[str, Any]],
    *,
    columns: Sequence[str],
    chunk_chars: int = CSV_CHUNK_CHARS,
    bom: bool = True,
) -> Generator[bytes, None, None]:
    """UTF-8 CSV of ``rows`` with a header of ``columns``, yielded in chunks as rows arrive.

    Parameters
    ----------
    rows
        Dicts holding at least ``columns``; pulled one at a time, never gathered.
    columns
        Header and column order; the header is written even when there are no rows.
    chunk_chars
        A chunk is handed on once about this many characters are waiting.
    bom
        Start with the byte order mark (``BOM``), which spreadsheets need to read the text
        as UTF-8.
    """
    buffer = io.StringIO()
    if bom:
        buffer.write(BOM)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row[name]) for name in columns])
        if buffer.tell() >= chunk_chars:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def _frame(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> gpd.GeoDataFrame:
    """One batch as a GeoDataFrame whose column types do not depend on its values."""
    records = pd.DataFrame.from_records(rows, columns=list(columns))
    data: dict[str, Any] = {}
    for name in columns:
        if name in _COORDINATES:
            continue
        values = records[name].tolist()
        if name in _INTEGER_COLUMNS:
            data[name] = pd.array(values, dtype="Int64")
        elif name in _BOOLEAN_COLUMNS:
            data[name] = pd.array(values, dtype="boolean")
        elif name in _DATETIME_COLUMNS:
            data[name] = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
        else:
            data[name] = pd.Series(
                [_joined(v) if isinstance(v, list | tuple) else v for v in values], dtype=object
            )
    geometry = shapely.points(
        records["lon"].to_numpy(dtype=float), records["lat"].to_numpy(dtype=float)
    )
    return gpd.GeoDataFrame(data, geometry=geometry, crs=CRS)


def _write_layer(
    frames: Iterable[gpd.GeoDataFrame], path: Path, *, layer: str, geometry_type: str
) -> int:
    """Append ``frames`` to ``layer`` of the GeoPackage at ``path``; return how many rows.

    The first frame creates the layer, even an empty one (so an export that matched nothing
    still has the layer's schema), and the file if there is none yet.
    """
    written = 0
    first = True
    for frame in frames:
        if not first and frame.empty:
            continue
        pyogrio.write_dataframe(
            frame,
            path,
            layer=layer,
            driver="GPKG",
            geometry_type=geometry_type,
            append=not first,
            # A dataset option: it only counts when the file is created, and is refused
            # (with a warning) when the file exists.
            dataset_options=None if path.exists() else {"VERSION": GPKG_VERSION},
        )
        written += len(frame)
        first = False
    return written


def _batches(rows: Iterable[_Row], batch_size: int) -> Iterator[list[_Row]]:
    """``rows`` in lists of ``batch_size``; at least one list, empty when there are no rows."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    iterator = iter(rows)
    batch = list(islice(iterator, batch_size))
    yield batch
    while len(batch) == batch_size:
        batch = list(islice(iterator, batch_size))
        if batch:
            yield batch


def write_geopackage(
    rows: Iterable[dict[str, Any]],
    path: Path,
    *,
    columns: Sequence[str],
    batch_size: int = GPKG_BATCH,
) -> int:
    """Write ``rows`` to the layer ``reports`` of a GeoPackage at ``path`` in batches.

    The layer holds Point geometries in EPSG:4326 and every column except ``lon`` and
    ``lat`` (which are the geometry). Only one batch of rows is held at a time; each is
    appended to the layer before the next is read. Returns how many were written.
    """
    return _write_layer(
        (_frame(batch, columns) for batch in _batches(rows, batch_size)),
        path,
        layer=LAYER,
        geometry_type="Point",
    )


_BOUNDARY_SQL = {
    "wards": "SELECT w.id, w.code, w.name, w.name_th, w.name_en, ST_AsBinary(w.geom) AS geom "
    "FROM wards AS w WHERE w.retired_at IS NULL ORDER BY w.id",
    "zones": "SELECT z.id, z.code, z.name, z.name_th, z.name_en, z.team_id, t.code AS team_code, "
    "t.name AS team, ST_AsBinary(z.geom) AS geom "
    "FROM zones AS z JOIN teams AS t ON t.id = z.team_id "
    "WHERE z.retired_at IS NULL ORDER BY z.id",
}
# Identifiers and names only: the boundaries and their teams are what the public maps show.


def _boundary_frame(rows: Sequence[Any], names: Sequence[str]) -> gpd.GeoDataFrame:
    """One batch of boundary rows (``geom`` as WKB) as a GeoDataFrame of fixed column types."""
    data: dict[str, Any] = {}
    for index, name in enumerate(names):
        values = [row[index] for row in rows]
        if name == "geom":
            continue
        if name in _INTEGER_COLUMNS or name == "id":
            data[name] = pd.array(values, dtype="Int64")
        else:
            data[name] = pd.Series(values, dtype=object)
    geometry = shapely.from_wkb([bytes(row[names.index("geom")]) for row in rows])
    return gpd.GeoDataFrame(data, geometry=geometry, crs=CRS)


def write_boundaries(
    conn: Connection, path: Path, *, batch_size: int = GPKG_BATCH
) -> dict[str, int]:
    """Add the current wards and zones to the GeoPackage at ``path``, one layer each.

    Read through a server-side cursor and written a batch at a time. Returns how many of
    each were written.
    """
    written: dict[str, int] = {}
    for layer in BOUNDARY_LAYERS:
        result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(
            text(_BOUNDARY_SQL[layer])
        )
        names = list(result.keys())
        written[layer] = _write_layer(
            (_boundary_frame(batch, names) for batch in _batches(result, batch_size)),
            path,
            layer=layer,
            geometry_type="MultiPolygon",
        )
    return written
