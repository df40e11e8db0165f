"""Where a caller may see a report: the one location rule.

Staff (field teams, planners, admins) see a report where it was reported. Everyone else,
anonymous callers and app keys alike, sees it snapped to a grid about ``public_rounding_m``
wide (``PrivacySettings``, the variable ``ISSUEMAP_MAP_PUBLIC_ROUNDING_M``), in every
output: report lists and single reports, exports, Open311, live events and map markers.
A bounding box the public asks for is tested against the snapped point, since a box
tested against the exact one could be narrowed until it finds it; and heat-map cells are
counted from snapped points on cells never finer than the grid.

The grid is written twice: as SQL (``point_sql``) for rows read from the database, and in
Python (``snap_point``) for rows already fetched (live events, map markers). Both do the
same float8 operations in the same order with the same constants, and the tests require
identical answers. Latitude goes in steps of ``m / 111,320`` degrees; longitude, in each
row of that grid, in steps of ``m / (111,320 cos(row latitude))``. The longitude step is
taken at the snapped latitude, never the exact one: the step can be read back from the
published longitude, and would otherwise give the exact latitude away.

Reports staff hid (``geo.reports.moderation``) are out of every public output and stay in
staff views: ``visibility_sql`` for rows read from the database, ``sees_hidden`` for events
already fetched (live events).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from geo.settings import PrivacySettings


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role, the team a field-team key is bound to, and the key's id.

    A staff member signed in with a session (``geo.access.sessions``) has no key: their
    ``user_id`` and their own name instead.
    """

    role: str
    team_id: int | None = None
    key_id: int | None = None
    name: str = "anonymous"
    user_id: int | None = None

    @property
    def is_staff(self) -> bool:
        """Field teams, planners and admins: people who work reports."""
        return self.role in {"field_team", "planner", "admin"}

    @property
    def sees_everything(self) -> bool:
        """Planners and admins read every report, with private fields."""
        return self.role in {"planner", "admin"}

    @property
    def actor(self) -> str:
        """How this caller appears in a report's audit trail: a person, a key, or the public."""
        if self.user_id is not None:
            return f"user:{self.user_id}:{self.name}"
        return f"{self.role}:{self.name}" if self.key_id is not None else "public"

    @property
    def identified(self) -> bool:
        """Whether the caller showed a key or a session (not the anonymous public)."""
        return self.key_id is not None or self.user_id is not None


ANONYMOUS = Principal(role="public")


def is_admin(principal: Principal) -> bool:
    """Administrators manage boundaries, categories, routes and keys."""
    return principal.role == "admin"


def is_field_team(principal: Principal) -> bool:
    """A field team's key, bound to one team."""
    return principal.role == "field_team"


def may_work_reports(principal: Principal) -> bool:
    """Whether ``principal`` may move reports along the workflow and merge them.

    Field teams and admins do; planners only look.
    """
    return principal.role in {"field_team", "admin"}


def may_see_zone(principal: Principal, zone_team_id: int) -> bool:
    """Whether ``principal`` may open the zone worked by team ``zone_team_id``.

    A field team sees only its own team's zones; other staff see every zone.
    """
    return not is_field_team(principal) or principal.team_id == zone_team_id


def sees_event_whole(
    principal: Principal, *, team_id: object, zone_id: object, own_zones: frozenset[int]
) -> bool:
    """Whether a live event about a report (its team and zone) reaches ``principal`` whole.

    Planners and admins see every report whole; a field team those of its team and zones.
    """
    if principal.sees_everything:
        return True
    if not is_field_team(principal):
        return False
    return team_id == principal.team_id or zone_id in own_zones


def report_limit_tier(principal: Principal) -> str:
    """Which report rate limit (``RateLimitSettings``) applies to ``principal``.

    Without a key or session a caller is counted by address ("anonymous"); an app key
    (role 'public'), a staff key and a signed-in staff member are each counted as one
    caller, wherever they come from.
    """
    if not principal.identified:
        return "anonymous"
    return "staff" if principal.is_staff else "app"


def sees_private_fields(principal: Principal) -> bool:
    """Whether ``principal`` gets a report's reporter name and contact (staff who see it)."""
    return principal.is_staff


def sees_hidden(principal: Principal) -> bool:
    """Whether ``principal`` sees reports staff hid from the public (staff do, with the reason)."""
    return principal.is_staff


def may_moderate(principal: Principal) -> bool:
    """Whether ``principal`` may hide a report from the public, or show it again.

    Planners and admins, who answer for what the city publishes. Field teams do not: their
    keys are many and work in the field, and hiding is an editorial decision they can ask
    for; a hidden report stays in their queue all the same.
    """
    return principal.role in {"planner", "admin"}


def visibility_sql(principal: Principal) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions on ``reports AS r`` limiting reports to those ``principal`` may see.

    A field team sees its own team's reports and every report in its zones; planners and
    admins see every report; everyone else (anonymous callers and app keys) sees every
    report staff have not hidden, through the location rule and without private fields.
    Every public output (lists, single reports and their photos, exports, Open311, map
    pages, heat maps) reads reports through this.
    """
    if not sees_hidden(principal):
        return ["r.hidden_at IS NULL"], {}
    if not is_field_team(principal):
        return [], {}
    return [
        "(r.team_id = :viewer_team OR r.zone_id IN "
        "(SELECT id FROM zones WHERE team_id = :viewer_team))"
    ], {"viewer_team": principal.team_id}


DEFAULT_PUBLIC_ROUNDING_M: float = PrivacySettings.model_fields["public_rounding_m"].default
"""Grid the public sees locations on, in metres, where no setting is passed in."""

METRES_PER_DEGREE = 111_320.0
"""Metres in a degree of latitude (and of longitude at the equator)."""

RADIANS_PER_DEGREE = math.pi / 180.0
# Bound as a parameter rather than using SQL's radians(), whose constant may differ from
# Python's by one unit in the last place and so move a point to the neighbouring cell.

_MIN_COS = 0.01
"""Longitude steps stop widening about 89.4° from the equator."""

BBox = tuple[float, float, float, float]
"""``(min_lon, min_lat, max_lon, max_lat)`` in WGS84 degrees."""


def location_rounding_m(principal: Principal, public_rounding_m: float) -> float:
    """How coarsely ``principal`` sees report locations, in metres; 0 is exactly."""
    return 0.0 if principal.is_staff else max(public_rounding_m, 0.0)


def _lon_step(lat_snapped: float, metres: float) -> float:
    cos = max(math.cos(lat_snapped * RADIANS_PER_DEGREE), _MIN_COS)
    return metres / (METRES_PER_DEGREE * cos)


def snap_point(lat: float, lon: float, metres: float) -> tuple[float, float]:
    """``(lat, lon)`` snapped to the location grid ``metres`` wide (unchanged for 0)."""
    if metres <= 0:
        return lat, lon
    step_lat = metres / METRES_PER_DEGREE
    lat_snapped = math.floor(lat / step_lat + 0.5) * step_lat
    step_lon = _lon_step(lat_snapped, metres)
    return lat_snapped, math.floor(lon / step_lon + 0.5) * step_lon


def visible_point(
    lat: float, lon: float, principal: Principal, *, public_rounding_m: float
) -> tuple[float, float]:
    """``(lat, lon)`` as ``principal`` may see it: exact for staff, snapped for the public."""
    return snap_point(lat, lon, location_rounding_m(principal, public_rounding_m))


@dataclass(frozen=True, slots=True)
class PointSQL:
    """SQL expressions for a location's latitude and longitude, and their bound values."""

    lat: str
    lon: str
    params: dict[str, Any]


def point_sql(principal: Principal, *, public_rounding_m: float, geom: str = "r.geom") -> PointSQL:
    """The latitude and longitude of ``geom`` (a trusted column name) as ``principal`` sees it.

    The SQL twin of ``visible_point``: same operations, same order, same constants.
    """
    metres = location_rounding_m(principal, public_rounding_m)
    if metres <= 0:
        return PointSQL(lat=f"ST_Y({geom})", lon=f"ST_X({geom})", params={})
    lat = (
        f"(floor(ST_Y({geom}) / CAST(:loc_step_lat AS float8) + 0.5)"
        " * CAST(:loc_step_lat AS float8))"
    )
    step_lon = (
        "(CAST(:loc_m AS float8) / (CAST(:loc_mpd AS float8) * greatest("
        f"cos({lat} * CAST(:loc_rad AS float8)), CAST(:loc_min_cos AS float8))))"
    )
    return PointSQL(
        lat=lat,
        lon=f"(floor(ST_X({geom}) / {step_lon} + 0.5) * {step_lon})",
        params={
            "loc_step_lat": metres / METRES_PER_DEGREE,
            "loc_m": metres,
            "loc_mpd": METRES_PER_DEGREE,
            "loc_rad": RADIANS_PER_DEGREE,
            "loc_min_cos": _MIN_COS,
        },
    )


def bbox_sql(
    principal: Principal, bbox: BBox, *, public_rounding_m: float, geom: str = "r.geom"
) -> tuple[list[str], dict[str, Any]]:
    """Conditions for "inside ``bbox``" as ``principal`` sees locations, and their values.

    For the public, the snapped point must lie in the box; the exact geometry is only
    tested against the box grown by one grid step, so the spatial index still does the work.
    """
    params: dict[str, Any] = dict(
        zip(("min_lon", "min_lat", "max_lon", "max_lat"), bbox, strict=True)
    )
    envelope = "ST_MakeEnvelope(:min_lon, :min_lat, :max_lon, :max_lat, 4326)"
    metres = location_rounding_m(principal, public_rounding_m)
    if metres <= 0:
        return [f"{geom} && {envelope}"], params
    point = point_sql(principal, public_rounding_m=public_rounding_m, geom=geom)
    step_lat = metres / METRES_PER_DEGREE
    # A snapped point inside the box has |lat| at most the box's; its longitude step is
    # then at most the step at that latitude.
    edge = min(max(abs(bbox[1]), abs(bbox[3])), 90.0)
    params |= point.params | {"bbox_dx": _lon_step(edge, metres), "bbox_dy": step_lat}
    inside = (
        f"{point.lat} BETWEEN :min_lat AND :max_lat AND {point.lon} BETWEEN :min_lon AND :max_lon"
    )
    # One CASE, not two conditions: PostgreSQL guesses each BETWEEN on a computed value keeps
    # 0.5% of rows (1 in 40,000 for both), so for a box dense with reports it read every one
    # of them to sort a page instead of walking ids; a CASE it guesses at half.
    return [
        f"{geom} && ST_Expand({envelope}, :bbox_dx, :bbox_dy)",
        f"CASE WHEN {inside} THEN true ELSE false END",
    ], params


def grown_bbox(principal: Principal, bbox: BBox, *, public_rounding_m: float) -> BBox:
    """``bbox`` grown by one grid step for the public (as is for staff), within WGS84.

    A map view counts the reports whose public place lies a little outside it too, so a
    report near the edge of the view (or of the city) still shows there.
    """
    metres = location_rounding_m(principal, public_rounding_m)
    if metres <= 0:
        return bbox
    min_lon, min_lat, max_lon, max_lat = bbox
    dy = metres / METRES_PER_DEGREE
    dx = _lon_step(min(max(abs(min_lat), abs(max_lat)) + dy, 90.0), metres)
    return (
        max(min_lon - dx, -180.0),
        max(min_lat - dy, -90.0),
        min(max_lon + dx, 180.0),
        min(max_lat + dy, 90.0),
    )


def min_cell_deg(principal: Principal, bbox: BBox, *, public_rounding_m: float) -> float:
    """The finest heat-map cell, in degrees, ``principal`` may get over ``bbox`` (0: any).

    For the public a cell is at least the location grid wide in both directions anywhere
    in the box, so a heat map never shows a place more precisely than a marker does.
    """
    metres = location_rounding_m(principal, public_rounding_m)
    if metres <= 0:
        return 0.0
    edge = min(max(abs(bbox[1]), abs(bbox[3])) + metres / METRES_PER_DEGREE, 90.0)
    return _lon_step(edge, metres)


def may_see_team_queue(principal: Principal, team_id: int) -> bool:
    """Whether staff member ``principal`` may read team ``team_id``'s queue.

    A field team reads only its own; planners and admins read every team's.
    """
    return principal.is_staff and (principal.role != "field_team" or principal.team_id == team_id)
