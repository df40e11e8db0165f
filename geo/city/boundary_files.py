"""Boundary files: read a ward or zone file, check it and repair it. No database here.

The steps, each usable on its own (from a notebook, say):

1. ``read_boundaries`` reads GeoJSON, TopoJSON, a Shapefile (plain or zipped) or a GeoPackage
   through pyogrio (a Shapefile without a ``.cpg`` in UTF-8 or TIS-620, whichever its bytes
   are), refuses text garbled by a wrong encoding (mojibake), settles the coordinate
   reference system and reprojects to EPSG:4326.
2. ``check_attributes`` picks the id, name (and optional Thai and English name) and team
   columns and refuses missing fields, blank and duplicate ids, unstorable names.
3. ``repair_geometries`` repairs invalid polygons with ``shapely.make_valid`` and refuses
   every feature that is not, or does not stay, a polygon.
   ``check_vertex_counts`` refuses a feature drawn with more vertices than
   ``BoundarySettings.max_vertices``: every report in a ward reads its whole outline.
4. ``find_overlaps`` and ``find_gaps`` *report* (never refuse) where features overlap and
   where holes lie inside the covered area, in square metres.

``check_boundaries`` runs the four steps; ``geo.city.boundary_writes`` stores the result.
"""

from __future__ import annotations

import codecs
import hashlib
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any, TypeAlias

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from geo.errors import BoundaryImportError, Message
from geo.i18n import N_
from geo.settings import BoundarySettings
from geo.vocabulary import BOUNDARY_LAYERS, CODE_MAX, NAME_MAX

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"

DEFAULT_TOLERANCE_M2 = 1.0
"""Overlaps and gaps of at most this many square metres are digitising noise, not news."""

SUPPORTED_FORMATS = {
    "GeoJSON": "GeoJSON",
    "TopoJSON": "TopoJSON",
    "ESRI Shapefile": "Shapefile",
    "GPKG": "GeoPackage",
}
"""GDAL driver names we accept, and what to call them in messages."""

SHAPEFILE_FALLBACK_ENCODING = "cp874"
"""How a Shapefile with no ``.cpg`` whose text is not UTF-8 is read: Thai Windows (TIS-620).

Thai government Shapefiles often come without a ``.cpg``; GDAL then assumes ISO-8859-1 and
turns every Thai name into mojibake. Their text is UTF-8 (HDX COD-AB) or TIS-620.
"""

_LISTED = 20  # ids named in one refusal message before "and N more"
_GAP_NEIGHBOUR_M = 1.0  # a feature this close to a gap is one of the features around it


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two features that cover the same ground."""

    ids: tuple[str, str]
    area_m2: float


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole inside the covered area that no feature covers.

    ``ids`` are the features around it; ``lon`` and ``lat`` are a point inside it.
    """

    ids: tuple[str, ...]
    area_m2: float
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class CheckedBoundaries:
    """A boundary file that passed every check, ready to be written.

    ``features`` has columns ``code``, ``name``, ``name_th`` and ``name_en`` (None where the
    file gave none), ``team_code`` (zones only, else missing), ``properties`` (JSON-safe
    dicts) and ``geometry`` (valid polygons, EPSG:4326).
    """

    layer: str
    source: str
    sha256: str
    source_crs: str
    features: gpd.GeoDataFrame
    repaired_ids: tuple[str, ...]
    overlaps: tuple[Overlap, ...]
    gaps: tuple[Gap, ...]
    tolerance_m2: float
    metric_crs: str
    teams_from_field: bool


def parse_crs(value: str) -> CRS:
    """Parse a user's CRS (``EPSG:32647``, a WKT or PROJ string) or refuse it."""
    try:
        return CRS.from_user_input(value)
    except CRSError as error:
        raise BoundaryImportError(
            N_(
                "{value!r} is not a coordinate reference system pyproj knows; "
                "give it as EPSG:<code>, for example EPSG:4326."
            ),
            value=value,
        ) from error


def _crs_label(crs: CRS) -> str:
    code = crs.to_epsg()
    return f"EPSG:{code}" if code is not None else crs.name


def check_coordinate_range(
    bounds: tuple[float, float, float, float], crs: CRS, *, use_area_of_use: bool
) -> None:
    """Refuse coordinates that cannot be in ``crs``.

    A geographic CRS needs longitudes within ±180 and latitudes within ±90. With
    ``use_area_of_use`` a projected CRS also needs the coordinates inside the projected
    bounds of the CRS's area of use, widened by a tenth of their size on each side (areas of
    use are drawn tightly, and a city may spill a little over the edge of its zone).
    """
    minx, miny, maxx, maxy = bounds
    if not all(math.isfinite(v) for v in bounds):
        return  # no usable coordinates at all; the geometry checks name the features
    label = _crs_label(crs)
    found = {"minx": minx, "maxx": maxx, "miny": miny, "maxy": maxy, "label": label}
    if crs.is_geographic:
        if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
            raise BoundaryImportError(
                N_(
                    "The coordinates (x from {minx:.6g} to {maxx:.6g}, y from {miny:.6g} to "
                    "{maxy:.6g}) are not longitude/latitude degrees, so they cannot be in "
                    "{label} (longitude -180 to 180, latitude -90 to 90). Check which CRS the "
                    "file really uses."
                ),
                **found,
            )
        return
    if not crs.is_projected:
        raise BoundaryImportError(
            N_(
                "{label} is neither a geographic nor a projected CRS; boundaries need one of those."
            ),
            label=label,
        )
    if not use_area_of_use or crs.area_of_use is None:
        return
    west, south, east, north = crs.area_of_use.bounds
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    left, bottom, right, top = to_crs.transform_bounds(west, south, east, north, densify_pts=21)
    pad_x, pad_y = (right - left) / 10, (top - bottom) / 10
    if minx < left - pad_x or maxx > right + pad_x or miny < bottom - pad_y or maxy > top + pad_y:
        raise BoundaryImportError(
            N_(
                "The coordinates (x from {minx:.6g} to {maxx:.6g}, y from {miny:.6g} to "
                "{maxy:.6g}) lie outside the area where {label} ({name}) is valid (x from "
                "{left:.6g} to {right:.6g}, y from {bottom:.6g} to {top:.6g}). Check which CRS "
                "the file really uses."
            ),
            **found,
            name=crs.name,
            left=left,
            right=right,
            bottom=bottom,
            top=top,
        )


def _without_folder(error: BaseException, path: Path) -> str:
    """The error's text naming the file by its name only.

    GDAL and the OS quote the full path, and on the server that is a temporary folder the
    person uploading has no business seeing.
    """
    message = str(error)
    for full in sorted({str(path), str(path.absolute()), str(path.resolve())}, key=len)[::-1]:
        message = message.replace(full, path.name)
    for folder in sorted({str(path.parent.absolute()), str(path.parent.resolve())}, key=len)[::-1]:
        message = message.replace(folder + "/", "").replace(folder, ".")
    return message


def check_encoding(value: str) -> str:
    """The codec name Python knows ``value`` by, or refuse it naming ``encoding``."""
    try:
        name = codecs.lookup(value).name
        # bytes.decode refuses codecs such as base64 or rot13 that do not turn bytes into text.
        b"a".decode(name)
    except UnicodeDecodeError:
        return name  # a real text codec that "a" alone is too short for (utf-16)
    except (LookupError, ValueError, TypeError) as error:
        raise BoundaryImportError(
            N_(
                "`encoding`: {value!r} is not a text encoding Python knows; give one such as "
                "utf-8 or cp874 (Thai, TIS-620)."
            ),
            value=value if len(value) <= 40 else value[:40] + "...",
        ) from error
    return name


def _shapefile_members(path: Path, layer: str) -> dict[str, bytes] | None:
    """The ``.dbf`` and ``.cpg`` of the Shapefile ``layer`` in ``path`` (a ``.shp`` or ``.zip``).

    Keys are the lower-case suffixes present; None when the parts cannot be found.
    """
    wanted = (".dbf", ".cpg")
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                return {
                    member.suffix.lower(): archive.read(info)
                    for info in archive.infolist()
                    if (member := PurePosixPath(info.filename)).stem == layer
                    and member.suffix.lower() in wanted
                }
        return {
            sibling.suffix.lower(): sibling.read_bytes()
            for sibling in path.parent.iterdir()
            if sibling.stem == path.stem and sibling.suffix.lower() in wanted
        }
    except (OSError, zipfile.BadZipFile):
        return None


def _dbf_text_values(dbf: bytes) -> Iterator[tuple[str, int, bytes]]:
    """Every character field's value in a dBASE table: (field name, feature number from 1, bytes).

    The bytes are as stored, padding cut; a value may end in the middle of a character,
    since writers truncate by bytes.
    """
    if len(dbf) < 32:
        return
    records = int.from_bytes(dbf[4:8], "little")
    header_length = int.from_bytes(dbf[8:10], "little")
    record_length = int.from_bytes(dbf[10:12], "little")
    text_fields: list[tuple[str, int, int]] = []
    offset = 1  # each record starts with its deletion flag
    for start in range(32, min(header_length, len(dbf)) - 31, 32):
        if dbf[start] == 0x0D:
            break
        width = dbf[start + 16]
        if dbf[start + 11 : start + 12] == b"C":
            name = dbf[start : start + 11].split(b"\x00", 1)[0].decode("ascii", "replace")
            text_fields.append((name, offset, width))
        offset += width
    for row in range(records):
        base = header_length + row * record_length
        for name, field_offset, width in text_fields:
            value = dbf[base + field_offset : base + field_offset + width].rstrip(b" \x00")
            yield name, row + 1, value


def _is_utf8(value: bytes) -> bool:
    """Whether ``value`` is UTF-8, allowing a character cut short at its end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(value, final=False)
    except UnicodeDecodeError:
        return False
    return True


_THAI_CONSONANTS = frozenset(chr(c) for c in range(0x0E01, 0x0E2F))
_THAI_MARKS = frozenset(chr(c) for c in (0x0E31, *range(0x0E34, 0x0E3B), *range(0x0E47, 0x0E4F)))


def reads_as_thai(text: str) -> bool:
    """Whether ``text`` is well-formed as Thai: every vowel or tone mark sits on a consonant.

    Text in another single-byte encoding read as TIS-620 puts marks after Latin letters or
    spaces (``é`` is byte 0xE9, the tone mark ``้``), which Thai writing never does.
    """
    previous = " "
    for char in text:
        if char in _THAI_MARKS and previous not in _THAI_CONSONANTS and previous not in _THAI_MARKS:
            return False
        previous = char
    return True


def _is_thai_tis620(value: bytes) -> bool:
    try:
        return reads_as_thai(value.decode(SHAPEFILE_FALLBACK_ENCODING))
    except UnicodeDecodeError:
        return False


def shapefile_encoding(path: Path, layer: str) -> str | None:
    """The encoding to read a Shapefile's text in, or None to leave it to its ``.cpg``.

    Without a ``.cpg`` the text is read as UTF-8 when all of it is valid UTF-8, else as
    ``SHAPEFILE_FALLBACK_ENCODING`` when all of it reads as Thai in it. Text that is
    neither is refused naming the first field and feature that is neither, since any
    guess would store garbled names.
    """
    members = _shapefile_members(path, layer)
    if not members or ".cpg" in members or ".dbf" not in members:
        return None
    dbf = members[".dbf"]
    if all(_is_utf8(value) for _, _, value in _dbf_text_values(dbf)):
        return "utf-8"
    for field, row, value in _dbf_text_values(dbf):
        if not _is_thai_tis620(value):
            raise BoundaryImportError(
                N_(
                    "The text of {name} is neither UTF-8 nor Thai (TIS-620), and the file has "
                    "no .cpg saying which encoding it is: field {field!r} of feature {row} "
                    "reads as neither. Give the encoding it was written in as `encoding` "
                    "(for example cp1252)."
                ),
                name=path.name,
                field=field,
                row=row,
            )
    return SHAPEFILE_FALLBACK_ENCODING


def unmangled(value: str) -> str | None:
    """The text ``value`` was before a wrong encoding garbled it (mojibake), or None.

    Two misreadings are recognised: UTF-8 bytes read as Latin-1 or cp1252 (``พระ`` becomes
    ``à¸žà¸£à¸°``), and Thai TIS-620 bytes read as Latin-1 or cp1252 (``พระ`` becomes
    ``¾ÃÐ``). Text in which ASCII letters appear is never taken for the second.
    """
    if value.isascii():
        return None
    for codec in ("latin-1", "cp1252"):
        try:
            raw = value.encode(codec)
        except UnicodeEncodeError:
            continue
        try:
            fixed = raw.decode("utf-8")
        except UnicodeDecodeError:
            if any(c.isascii() and c.isalpha() for c in value):
                return None
            try:
                fixed = raw.decode(SHAPEFILE_FALLBACK_ENCODING)
            except UnicodeDecodeError:
                return None
            thai = sum(c in _THAI_CONSONANTS for c in fixed)
            return fixed if thai >= 2 and reads_as_thai(fixed) else None
        return fixed if fixed != value else None
    return None


def check_text(frame: pd.DataFrame, *, name: str, shapefile: bool) -> None:
    """Refuse a frame whose text looks garbled by a wrong encoding, naming each field.

    A Shapefile read with a wrong ``.cpg`` or ``encoding`` turns every Thai name into
    mojibake, and so does a file saved from text already misread; storing it would show
    residents gibberish, so the file is refused with one example per field.
    """
    problems: list[str | Message] = []
    for column in frame.columns:
        if column == frame.geometry.name:
            continue
        for row, value in enumerate(frame[column], start=1):
            fixed = unmangled(value) if isinstance(value, str) else None
            if fixed is not None:
                problems.append(
                    Message(
                        N_("field {field!r}, feature {row}: {value!r} (meant: {fixed!r})"),
                        {
                            "field": str(column),
                            "row": row,
                            "value": value[:40],
                            "fixed": fixed[:40],
                        },
                    )
                )
                break
    if not problems:
        return
    advice = (
        N_(
            "Give the encoding the text was written in as `encoding` (utf-8 or cp874), "
            "or fix the file's .cpg."
        )
        if shapefile
        else N_("The text was garbled before the file was saved; fix it and save the file again.")
    )
    raise BoundaryImportError(
        N_("The text of {name} looks garbled by a wrong encoding (mojibake). {advice}"),
        problems,
        name=name,
        advice=Message(advice),
    )


def read_boundaries(
    path: Path | str, *, crs: str | None = None, encoding: str | None = None
) -> gpd.GeoDataFrame:
    """Read a boundary file and return its features in EPSG:4326, 2D, every column kept.

    The CRS the coordinates were read in is noted in ``frame.attrs["source_crs"]``.

    Parameters
    ----------
    path
        A GeoJSON, TopoJSON, Shapefile (``.shp`` or a ``.zip`` holding one) or GeoPackage
        with exactly one layer.
    crs
        The CRS of the coordinates, for a file that declares none (TopoJSON usually does
        not). A file that declares one must agree with it. The coordinates must lie in the
        CRS's valid range.
    encoding
        Shapefiles only: the encoding of the attribute text, overriding the ``.cpg``. Without
        it, a Shapefile with no ``.cpg`` is read as UTF-8 when its text is valid UTF-8, as
        ``SHAPEFILE_FALLBACK_ENCODING`` (TIS-620) when it reads as Thai in that, and is
        refused otherwise (``shapefile_encoding``).

    Raises
    ------
    BoundaryImportError
        When the file is missing, unreadable, not a supported vector format, holds no or
        several layers or no features, its text does not decode or looks garbled by a wrong
        encoding (``check_text``), or its CRS is missing or does not fit.
    """
    path = Path(path)
    codec = check_encoding(encoding) if encoding is not None else None
    if not path.exists():
        raise BoundaryImportError(N_("{path}: no such file."), path=str(path))
    if path.is_dir():
        raise BoundaryImportError(
            N_("{path} is a folder; give the boundary file itself."), path=str(path)
        )
    try:
        layers = pyogrio.list_layers(path)
    except (pyogrio.errors.DataSourceError, OSError) as error:
        raise BoundaryImportError(
            N_(
                "{name} could not be read as a vector boundary file (GeoJSON, TopoJSON, "
                "Shapefile or GeoPackage): {reason}"
            ),
            name=path.name,
            reason=_without_folder(error, path),
        ) from error
    if len(layers) == 0:
        raise BoundaryImportError(N_("{name} holds no layers."), name=path.name)
    if len(layers) > 1:
        names = ", ".join(repr(str(name)) for name in layers[:, 0])
        raise BoundaryImportError(
            N_("{name} holds {count} layers ({layers}); give a file with one layer."),
            name=path.name,
            count=len(layers),
            layers=names,
        )
    layer_name = str(layers[0, 0])
    try:
        info = pyogrio.read_info(path, layer=layer_name)
        driver = str(info["driver"])
        if driver not in SUPPORTED_FORMATS:
            raise BoundaryImportError(
                N_(
                    "{name} is a {driver} file; boundaries must be GeoJSON, TopoJSON, "
                    "Shapefile (plain or zipped) or GeoPackage."
                ),
                name=path.name,
                driver=driver,
            )
        if info["geometry_type"] is None:
            raise BoundaryImportError(N_("{name} has no geometry column."), name=path.name)
        if driver != "ESRI Shapefile" and codec is not None:
            raise BoundaryImportError(
                N_(
                    "`encoding` applies to Shapefiles only; {name} is a {format} file, "
                    "whose text is always UTF-8."
                ),
                name=path.name,
                format=SUPPORTED_FORMATS[driver],
            )
        if driver == "ESRI Shapefile" and codec is None:
            codec = shapefile_encoding(path, layer_name)
        options = {"encoding": codec} if codec is not None else {}
        # What the text was taken to be, to name if it does not decode: ours or the .cpg's.
        codec = codec or str(info.get("encoding") or "UTF-8")
        frame = gpd.read_file(path, engine="pyogrio", layer=layer_name, **options)
        check_text(frame, name=path.name, shapefile=driver == "ESRI Shapefile")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as error:
        raise BoundaryImportError(
            N_("{name} could not be read: {reason}"),
            name=path.name,
            reason=_without_folder(error, path),
        ) from error
    except UnicodeDecodeError as error:
        raise BoundaryImportError(
            N_(
                "The text of {name} is not valid {encoding}; give the encoding it was "
                "written in as `encoding`."
            ),
            name=path.name,
            encoding=codec,
        ) from error
    if len(frame) == 0:
        raise BoundaryImportError(
            N_("{name} has no features (the layer is empty)."), name=path.name
        )
    return _settle_crs(frame, path.name, crs)


def _settle_crs(frame: gpd.GeoDataFrame, name: str, crs: str | None) -> gpd.GeoDataFrame:
    """Apply the given or declared CRS, check the coordinates fit it, reproject to 4326."""
    given = parse_crs(crs) if crs is not None else None
    declared: CRS | None = frame.crs
    if declared is None and given is None:
        raise BoundaryImportError(
            N_(
                "{name} does not say which coordinate reference system it uses. Give it as "
                "`crs` (EPSG:4326 if the coordinates are longitude/latitude degrees)."
            ),
            name=name,
        )
    if declared is not None and given is not None and not _same_crs(declared, given):
        raise BoundaryImportError(
            N_(
                "{name} declares {declared} but {given} was given; "
                "leave the CRS out, or fix the file."
            ),
            name=name,
            declared=_crs_label(declared),
            given=_crs_label(given),
        )
    source = given if given is not None else declared
    assert source is not None
    bounds = tuple(float(v) for v in frame.total_bounds)
    check_coordinate_range(
        (bounds[0], bounds[1], bounds[2], bounds[3]), source, use_area_of_use=given is not None
    )
    frame = frame.set_crs(source, allow_override=True)
    frame = frame.set_geometry(shapely.force_2d(np.asarray(frame.geometry.array)), crs=source)
    if source.to_epsg() != 4326:
        frame = frame.to_crs(4326)
    coords = shapely.get_coordinates(np.asarray(frame.geometry.array))
    if len(coords) and not (
        np.isfinite(coords).all()
        and np.abs(coords[:, 0]).max() <= 180
        and np.abs(coords[:, 1]).max() <= 90
    ):
        raise BoundaryImportError(
            N_(
                "The coordinates of {name} could not be converted from {crs} to "
                "longitude/latitude; check which CRS the file really uses."
            ),
            name=name,
            crs=_crs_label(source),
        )
    frame.attrs["source_crs"] = _crs_label(source)
    return frame


def _same_crs(a: CRS, b: CRS) -> bool:
    if a.equals(b, ignore_axis_order=True):
        return True
    code = a.to_epsg()
    return code is not None and code == b.to_epsg()


# --------------------------------------------------------------------------- attributes


def _as_text(value: object) -> str | None:
    """A cell as an id, name or team code: trimmed text, or None when blank or missing."""
    if value is None or isinstance(value, list | tuple | dict | np.ndarray):
        return None if value is None else str(value)
    if pd.isna(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        # Numeric ids read from a shapefile come back as 1025.0; the code is "1025".
        return str(int(value))
    result = str(value).strip()
    return result or None


def _json_safe(value: object) -> JsonValue:
    """A cell as a JSON value: NaN and NaT become null, dates ISO text, bytes hex."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_safe(v) for v in value]
    if pd.isna(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating | Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.datetime64):
        return str(pd.Timestamp(value).isoformat())
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _some(ids: list[str]) -> str | Message:
    """Quote at most ``_LISTED`` ids, then say how many more there are (in the reader's words)."""
    quoted = [repr(i) for i in ids]
    if len(quoted) <= _LISTED:
        return ", ".join(quoted)
    return Message(
        N_("{shown} and {more} more"),
        {"shown": ", ".join(quoted[:_LISTED]), "more": len(quoted) - _LISTED},
    )


def some_plain(items: list[str], listed: int) -> str:
    """The first ``listed`` items, comma-separated, and how many more there are."""
    shown = ", ".join(items[:listed])
    return shown if len(items) <= listed else f"{shown} and {len(items) - listed} more"


def _check_options(*, layer: str, team_field: str | None, tolerance_m2: float) -> None:
    if layer not in BOUNDARY_LAYERS:
        raise BoundaryImportError(
            N_("Unknown layer {layer!r}; it must be one of: {choices}."),
            layer=layer,
            choices=", ".join(BOUNDARY_LAYERS),
        )
    if team_field is not None and layer != "zones":
        raise BoundaryImportError(
            N_("A team field only applies to the zones layer; wards have no teams.")
        )
    if not (math.isfinite(tolerance_m2) and tolerance_m2 >= 0):
        raise BoundaryImportError(N_("The overlap and gap tolerance must be 0 m² or more."))


def check_attributes(
    frame: gpd.GeoDataFrame,
    *,
    layer: str,
    id_field: str,
    name_field: str,
    team_field: str | None = None,
    name_th_field: str | None = None,
    name_en_field: str | None = None,
) -> gpd.GeoDataFrame:
    """Take the id, names and (zones) team of each feature; refuse what cannot be stored.

    Returns a frame with ``code``, ``name``, ``name_th`` and ``name_en`` (from the optional
    Thai and English name fields; None where a feature leaves them blank or there is no such
    field), ``team_code`` (zones only: the team field's value, or the zone's own code when
    there is no team field), ``properties`` (every other column, JSON-safe) and
    ``geometry``. Raises ``BoundaryImportError`` listing every problem: a field missing from
    the file (naming the fields it has), blank, duplicate or over-long ids, blank names,
    names that are over-long or hold NUL characters, blank or over-long team codes.
    """
    _check_options(layer=layer, team_field=team_field, tolerance_m2=0.0)
    geometry_name = frame.geometry.name
    fields = [str(c) for c in frame.columns if c != geometry_name]
    wanted = [(N_("the id field"), id_field), (N_("the name field"), name_field)]
    if name_th_field is not None:
        wanted.append((N_("the Thai name field"), name_th_field))
    if name_en_field is not None:
        wanted.append((N_("the English name field"), name_en_field))
    if team_field is not None:
        wanted.append((N_("the team field"), team_field))
    missing: list[str | Message] = []
    for role, field in wanted:
        if field not in fields:
            similar = [f for f in fields if f.casefold() == field.casefold()]
            missing.append(
                Message(
                    N_("{role} {field!r} is not in the file (did you mean {similar!r}?)"),
                    {"role": Message(role), "field": field, "similar": similar[0]},
                )
                if similar
                else Message(
                    N_("{role} {field!r} is not in the file"),
                    {"role": Message(role), "field": field},
                )
            )
    if missing:
        raise BoundaryImportError(
            N_("The file lacks a field it was told to use. Its fields are: {fields}")
            if fields
            else N_("The file lacks a field it was told to use. It has no fields."),
            missing,
            fields=", ".join(repr(f) for f in fields),
        )

    codes = [_as_text(v) for v in frame[id_field]]
    names = [_as_text(v) for v in frame[name_field]]
    names_th = _optional_names(frame, name_th_field)
    names_en = _optional_names(frame, name_en_field)
    teams = [_as_text(v) for v in frame[team_field]] if team_field is not None else None
    problems: list[str | Message] = []
    blank = [str(n) for n, code in enumerate(codes, start=1) if code is None]
    if blank:
        problems.append(
            Message(
                N_(
                    "{count} feature(s) have no id in {field!r} (feature number {ids}, "
                    "counting from 1)"
                ),
                {"count": len(blank), "field": id_field, "ids": _some(blank)},
            )
        )
    counts = pd.Series([c for c in codes if c is not None], dtype=object).value_counts()
    duplicated = sorted(str(c) for c in counts[counts > 1].index)
    if duplicated:
        problems.append(
            Message(
                N_("{count} id(s) in {field!r} are used by more than one feature: {ids}"),
                {"count": len(duplicated), "field": id_field, "ids": _some(duplicated)},
            )
        )
    too_long = [c for c in codes if c is not None and len(c) > CODE_MAX]
    if too_long:
        problems.append(
            Message(
                N_("ids longer than {limit} characters: {ids}"),
                {"limit": CODE_MAX, "ids": _some(too_long)},
            )
        )
    nameless = [str(c) for c, n in zip(codes, names, strict=True) if n is None]
    if nameless:
        problems.append(
            Message(
                N_("features with no name in {field!r}: {ids}"),
                {"field": name_field, "ids": _some(nameless)},
            )
        )
    for column, values in (
        (name_field, names),
        (name_th_field, names_th),
        (name_en_field, names_en),
    ):
        # Names are shown to residents and stored as text: PostgreSQL text holds no NUL.
        with_nul = [str(c) for c, n in zip(codes, values, strict=True) if n and "\x00" in n]
        if with_nul:
            problems.append(
                Message(
                    N_("names in {field!r} holding NUL characters: {ids}"),
                    {"field": column, "ids": _some(with_nul)},
                )
            )
        long_names = [str(c) for c, n in zip(codes, values, strict=True) if n and len(n) > NAME_MAX]
        if long_names:
            problems.append(
                Message(
                    N_("names in {field!r} longer than {limit} characters: {ids}"),
                    {"field": column, "limit": NAME_MAX, "ids": _some(long_names)},
                )
            )
    if teams is not None:
        teamless = [str(c) for c, t in zip(codes, teams, strict=True) if t is None]
        if teamless:
            problems.append(
                Message(
                    N_("zones with no team in {field!r}: {ids}"),
                    {"field": team_field, "ids": _some(teamless)},
                )
            )
        long_teams = sorted({t for t in teams if t is not None and len(t) > CODE_MAX})
        if long_teams:
            problems.append(
                Message(
                    N_("team codes longer than {limit} characters: {ids}"),
                    {"limit": CODE_MAX, "ids": _some(long_teams)},
                )
            )
    if problems:
        raise BoundaryImportError(N_("The file's ids, names or teams cannot be stored."), problems)

    used = {id_field, name_field, name_th_field, name_en_field, team_field, geometry_name}
    others = [c for c in frame.columns if c not in used]
    properties = [
        {str(k): _json_safe(v) for k, v in row.items()}
        for row in frame[others].to_dict(orient="records")
    ]
    columns: dict[str, Any] = {
        "code": codes,
        "name": names,
        "name_th": names_th,
        "name_en": names_en,
    }
    if layer == "zones":
        columns["team_code"] = teams if teams is not None else codes
    columns["properties"] = properties
    return gpd.GeoDataFrame(columns, geometry=np.asarray(frame.geometry.array), crs=frame.crs)


def _optional_names(frame: gpd.GeoDataFrame, field: str | None) -> list[str | None]:
    """The values of an optional name field (None where blank), or all None without one."""
    if field is None:
        return [None] * len(frame)
    return [_as_text(v) for v in frame[field]]


# --------------------------------------------------------------------------- geometry


def repair_geometries(frame: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, tuple[str, ...]]:
    """Repair invalid polygons; return the repaired frame and the ids that needed it.

    Repair uses ``make_valid(method="structure", keep_collapsed=False)``, which keeps the
    area the rings enclose and drops parts that collapse to lines or points, so the result
    is polygonal. A feature with no geometry, one that is not a polygon, or one that is
    still invalid or empty after repair is refused, with its id (``code``) and the reason.
    """
    geoms = np.asarray(frame.geometry.array, dtype=object).copy()
    codes = list(frame["code"])
    problems: list[str | Message] = []
    repaired: list[str] = []
    valid = shapely.is_valid(geoms)
    for i, geom in enumerate(geoms):
        code = codes[i]
        if geom is None or geom.is_empty:
            problems.append(Message(N_("{code!r}: has no geometry (it is empty)"), {"code": code}))
            continue
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            problems.append(
                Message(
                    N_("{code!r}: is a {kind}, not a polygon"),
                    {"code": code, "kind": geom.geom_type},
                )
            )
            continue
        if valid[i]:
            continue
        reason = shapely.is_valid_reason(geom)
        fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False)
        if fixed.geom_type == "GeometryCollection":
            fixed = shapely.union_all([g for g in fixed.geoms if g.geom_type.endswith("Polygon")])
        if fixed.is_empty:
            problems.append(
                Message(
                    N_("{code!r}: collapses to nothing when repaired ({reason})"),
                    {"code": code, "reason": reason},
                )
            )
        elif fixed.geom_type not in ("Polygon", "MultiPolygon"):
            problems.append(
                Message(
                    N_("{code!r}: repairing it leaves a {kind} ({reason})"),
                    {"code": code, "kind": fixed.geom_type, "reason": reason},
                )
            )
        elif not fixed.is_valid:
            problems.append(
                Message(
                    N_("{code!r}: still invalid after repair ({reason})"),
                    {"code": code, "reason": shapely.is_valid_reason(fixed)},
                )
            )
        else:
            geoms[i] = fixed
            repaired.append(str(code))
    if problems:
        raise BoundaryImportError(
            N_("{count} feature(s) cannot be stored as polygons."), problems, count=len(problems)
        )
    return frame.set_geometry(geoms, crs=frame.crs), tuple(repaired)


def check_vertex_counts(frame: gpd.GeoDataFrame, *, max_vertices: int) -> None:
    """Refuse features drawn with more than ``max_vertices`` vertices, naming each and its count.

    Routing a report reads the whole outline of the ward and zones around it, so a feature
    with millions of vertices slows every report there (bench/boundary_vertices.py).
    ``frame`` needs ``code`` and geometry.
    """
    counts = shapely.get_num_coordinates(np.asarray(frame.geometry.array))
    over = np.flatnonzero(counts > max_vertices)
    if len(over) == 0:
        return
    over = over[np.argsort(-counts[over], kind="stable")]
    codes = list(frame["code"])
    problems: list[str | Message] = [
        Message(N_("{code!r}: {count:,} vertices"), {"code": codes[i], "count": int(counts[i])})
        for i in over[:_LISTED]
    ]
    if len(over) > _LISTED:
        problems.append(Message(N_("and {count} more"), {"count": len(over) - _LISTED}))
    raise BoundaryImportError(
        N_(
            "{count} feature(s) have more than {limit:,} vertices, the most one ward or zone "
            "may have (ISSUEMAP_BOUNDARY_MAX_VERTICES). Simplify them, for example with "
            "ogr2ogr -simplify or mapshaper, to a few metres' tolerance."
        ),
        problems,
        count=len(over),
        limit=max_vertices,
    )


def metric_crs(frame: gpd.GeoDataFrame) -> CRS:
    """The CRS overlaps and gaps are measured in: the layer's UTM zone.

    Falls back to the World Cylindrical Equal Area projection where no UTM zone applies.
    """
    try:
        utm = frame.estimate_utm_crs()
    except (RuntimeError, ValueError):
        utm = None
    return CRS.from_epsg(6933) if utm is None else CRS(utm)


def find_overlaps(
    frame: gpd.GeoDataFrame,
    *,
    tolerance_m2: float = DEFAULT_TOLERANCE_M2,
    crs: CRS | None = None,
) -> list[Overlap]:
    """Pairs of features that share more than ``tolerance_m2``, largest first, ids sorted.

    ``frame`` needs ``code`` and geometry; areas are measured in ``crs`` (a metric CRS,
    by default ``metric_crs(frame)``).
    """
    metric = frame.to_crs(crs if crs is not None else metric_crs(frame))
    geoms = np.asarray(metric.geometry.array)
    left, right = metric.sindex.query(geoms, predicate="intersects")
    pairs = left < right
    left, right = left[pairs], right[pairs]
    areas = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    codes = list(frame["code"])
    found = []
    for a, b, area in zip(left, right, areas, strict=True):
        if area > tolerance_m2:
            first, second = sorted((str(codes[a]), str(codes[b])))
            found.append(Overlap(ids=(first, second), area_m2=float(area)))
    return sorted(found, key=lambda o: (-o.area_m2, o.ids))


def find_gaps(
    frame: gpd.GeoDataFrame,
    *,
    tolerance_m2: float = DEFAULT_TOLERANCE_M2,
    crs: CRS | None = None,
) -> list[Gap]:
    """Holes of more than ``tolerance_m2`` inside the area the features cover, largest first.

    A hole is an interior ring of the union of all features: ground surrounded by the layer
    that no feature covers (an enclave that is really outside the city shows up too, which
    is for a person to judge). Each gap names the features within a metre of it.
    """
    metric_ref = crs if crs is not None else metric_crs(frame)
    metric = frame.to_crs(metric_ref)
    union = shapely.union_all(np.asarray(metric.geometry.array))
    parts = getattr(union, "geoms", [union])
    holes = [
        hole
        for part in parts
        if part.geom_type == "Polygon"
        for ring in part.interiors
        if (hole := shapely.Polygon(ring)).area > tolerance_m2
    ]
    if not holes:
        return []
    to_lonlat = Transformer.from_crs(metric_ref, "EPSG:4326", always_xy=True)
    codes = list(frame["code"])
    gaps = []
    for hole in holes:
        near = metric.sindex.query(hole, predicate="dwithin", distance=_GAP_NEIGHBOUR_M)
        inside = hole.representative_point()
        lon, lat = to_lonlat.transform(inside.x, inside.y)
        gaps.append(
            Gap(
                ids=tuple(sorted(str(codes[i]) for i in near)),
                area_m2=float(hole.area),
                lon=float(lon),
                lat=float(lat),
            )
        )
    return sorted(gaps, key=lambda g: (-g.area_m2, g.ids))


# --------------------------------------------------------------------------- the whole import


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of the file's bytes."""
    try:
        with Path(path).open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as error:
        raise BoundaryImportError(
            N_("{name} could not be read: {reason}"),
            name=Path(path).name,
            reason=_without_folder(error, Path(path)),
        ) from error


def check_boundaries(
    path: Path | str,
    *,
    layer: str,
    id_field: str,
    name_field: str,
    team_field: str | None = None,
    name_th_field: str | None = None,
    name_en_field: str | None = None,
    crs: str | None = None,
    tolerance_m2: float = DEFAULT_TOLERANCE_M2,
    settings: BoundarySettings | None = None,
    encoding: str | None = None,
) -> CheckedBoundaries:
    """Read, check and repair a boundary file, and find its overlaps and gaps; write nothing.

    The arguments are those of ``import_boundaries``. Raises ``BoundaryImportError`` for
    anything that refuses the file.
    """
    settings = settings if settings is not None else BoundarySettings()
    _check_options(layer=layer, team_field=team_field, tolerance_m2=tolerance_m2)
    path = Path(path)
    frame = read_boundaries(path, crs=crs, encoding=encoding)
    sha256 = file_sha256(path)
    features = check_attributes(
        frame,
        layer=layer,
        id_field=id_field,
        name_field=name_field,
        team_field=team_field,
        name_th_field=name_th_field,
        name_en_field=name_en_field,
    )
    # Before repair: make_valid on millions of vertices is slow, and repair adds few.
    check_vertex_counts(features, max_vertices=settings.max_vertices)
    features, repaired = repair_geometries(features)
    metric = metric_crs(features)
    return CheckedBoundaries(
        layer=layer,
        source=path.name,
        sha256=sha256,
        source_crs=str(frame.attrs["source_crs"]),
        features=features,
        repaired_ids=repaired,
        overlaps=tuple(find_overlaps(features, tolerance_m2=tolerance_m2, crs=metric)),
        gaps=tuple(find_gaps(features, tolerance_m2=tolerance_m2, crs=metric)),
        tolerance_m2=tolerance_m2,
        metric_crs=_crs_label(metric),
        teams_from_field=team_field is not None,
    )


# Identifiers are fixed here, per layer; nothing from the file reaches the SQL text.
