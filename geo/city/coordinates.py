"""The one check of a position and of a bounding box, in WGS84 degrees.

Every entry point that takes a place uses these: intake (native API and Open311 alike), the
routing lookup, the report filters behind lists, exports and map pages, and the CSV import
(which applies the same limits to whole columns at once). A value refused here is refused
with the same field and the same sentence wherever it was sent.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Final

from geo.errors import InvalidInputError
from geo.i18n import N_

LAT_MAX: Final = 90
"""Largest latitude, in degrees (the smallest is its negative)."""

LON_MAX: Final = 180
"""Largest longitude, in degrees (the smallest is its negative)."""

SMALLEST_DEGREE: Final = sys.float_info.min
"""A nonzero coordinate smaller than this (a subnormal float) is refused: see ``check_degrees``."""

BBox = tuple[float, float, float, float]
"""min_lon, min_lat, max_lon, max_lat."""

_SPLIT = re.compile(r"\s*,\s*")


def check_degrees(name: str, value: float, limit: float) -> None:
    """Refuse one coordinate, named ``name``, unless it is finite, normal and within ``limit``.

    A subnormal float (nonzero but below ``sys.float_info.min``, e.g. ``5e-324``) is
    refused too: no place is that close to the equator or the prime meridian without
    being on it, and PostgreSQL raises "value out of range: underflow" when arithmetic
    on such a value (a conversion to radians) rounds it to zero.
    """
    if not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
        raise InvalidInputError(name, N_("must be a finite number of degrees"))
    if abs(value) > limit:
        raise InvalidInputError(name, N_("must be between -{limit:g} and {limit:g}"), limit=limit)
    if value and abs(value) < SMALLEST_DEGREE:
        raise InvalidInputError(
            name,
            N_("{value!r} is too close to 0 to be a position; send 0 for 0 degrees"),
            value=value,
        )


def check_coordinates(lon: float, lat: float, *, names: tuple[str, str] = ("lon", "lat")) -> None:
    """Refuse coordinates that are not finite WGS84 degrees, naming the field.

    ``names`` are the (longitude, latitude) field names the caller's users know, such as
    Open311's ``("long", "lat")``.
    """
    check_degrees(names[1], lat, LAT_MAX)
    check_degrees(names[0], lon, LON_MAX)


def parse_degrees(name: str, value: str, limit: float) -> float:
    """A coordinate sent as text, checked by ``check_degrees``."""
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(
            name, N_("{value!r} is not a number of degrees"), value=value[:40]
        ) from None
    check_degrees(name, number, limit)
    return number


def check_bbox(box: BBox, name: str = "bbox") -> BBox:
    """Refuse a bounding box unless it is four finite, ordered WGS84 degrees; return it."""
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
        raise InvalidInputError(name, N_("every value must be a finite number"))
    min_lon, min_lat, max_lon, max_lat = box
    for label, value, limit in (
        ("min_lon", min_lon, LON_MAX),
        ("min_lat", min_lat, LAT_MAX),
        ("max_lon", max_lon, LON_MAX),
        ("max_lat", max_lat, LAT_MAX),
    ):
        if not -limit <= value <= limit:
            raise InvalidInputError(
                name,
                N_("{label} {value:g} is outside -{limit:g}..{limit:g}"),
                label=label,
                value=value,
                limit=limit,
            )
    if min_lon > max_lon:
        raise InvalidInputError(name, N_("min_lon must not be greater than max_lon"))
    if min_lat > max_lat:
        raise InvalidInputError(name, N_("min_lat must not be greater than max_lat"))
    return box


def parse_bbox(value: str | None, name: str = "bbox") -> BBox | None:
    """A ``min_lon,min_lat,max_lon,max_lat`` parameter, checked by ``check_bbox``; blank is None."""
    if value is None or not value.strip():
        return None
    parts = _SPLIT.split(value.strip())
    if len(parts) != 4:
        raise InvalidInputError(
            name,
            N_("give 4 numbers, min_lon,min_lat,max_lon,max_lat (got {count})"),
            count=len(parts),
        )
    try:
        min_lon, min_lat, max_lon, max_lat = (float(part) for part in parts)
    except ValueError as error:
        raise InvalidInputError(name, N_("every value must be a number")) from error
    return check_bbox((min_lon, min_lat, max_lon, max_lat), name)
