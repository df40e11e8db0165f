"""The views OGC API Features (``/ogc``) serves: reports, wards and zones, public and staff.

Two schemas hold the same three collections. ``ogc_public`` is what the public sees
everywhere else: the columns ``geo.reports.search`` selects for the public (no reporter
name or contact, nothing about hiding), reports staff hid left out by
``geo.access.policy.visibility_sql``, and each location on the public grid of
``geo.access.policy.point_sql``, its point (``geom``) built from the snapped latitude and
longitude, so a bounding box or a tile tests the snapped point as the native API does.
``ogc_staff`` is the staff view: exact locations, private fields, hidden reports, limited
to a field team's own reports and zones when the connection names the team.

The SQL is generated here from those definitions, never written a second time. A view
cannot take bound values, so the two values that change at run time are read from the
connection's settings instead:

- ``issuemap.public_rounding_m``: the public grid in metres (``PrivacySettings``), set for
  every connection of the pool that serves ``/ogc``; a connection that never set it (psql)
  gets the default grid, never exact places. 0 publishes exact locations, as elsewhere.
- ``issuemap.viewer_team``: the team id of a field team's key, or empty for planners and
  admins, who see every report; set per request before the staff view is read.

A migration creates the views with ``create_statements`` as they are when it runs; a change
to the rules they follow needs a migration that runs them again.
"""

from __future__ import annotations

import re

from geo.access.policy import (
    ANONYMOUS,
    DEFAULT_PUBLIC_ROUNDING_M,
    METRES_PER_DEGREE,
    Principal,
    is_field_team,
    point_sql,
    visibility_sql,
)
from geo.reports.search import REPORTS_FROM, report_columns_sql

PUBLIC_SCHEMA = "ogc_public"
"""The collections everyone without a staff key or session reads."""
STAFF_SCHEMA = "ogc_staff"
"""The collections staff read (a field team only its own reports)."""
COLLECTIONS = ("reports", "wards", "zones")
"""The collection ids ``/ogc`` serves, each a view in both schemas."""
REPORTS_DATETIME_COLUMN = "created_at"
"""The time the ``datetime`` parameter of the reports collection filters on."""

ROUNDING_SETTING = "issuemap.public_rounding_m"
"""The connection setting holding the public grid in metres."""
VIEWER_TEAM_SETTING = "issuemap.viewer_team"
"""The connection setting holding a field team's id (empty: every report)."""

_STAFF = Principal(role="admin")
"""Any staff member who sees every report: the staff view's columns and locations."""
_FIELD_TEAM = Principal(role="field_team", team_id=0)
"""A field team: the staff view's visibility rule, its team read from the connection."""

_METRES = (
    f"CAST(coalesce(NULLIF(current_setting('{ROUNDING_SETTING}', true), ''), "
    f"'{DEFAULT_PUBLIC_ROUNDING_M!r}') AS float8)"
)
# NULL for a grid of 0 m: the snapped coordinates come out NULL and the exact ones are used.
_GRID_METRES = f"NULLIF(greatest({_METRES}, CAST(0 AS float8)), CAST(0 AS float8))"
_VIEWER_TEAM = f"CAST(NULLIF(current_setting('{VIEWER_TEAM_SETTING}', true), '') AS integer)"


def _bind(sql: str, values: dict[str, str]) -> str:
    """``sql`` with each ``:name`` replaced by the SQL expression ``values[name]``."""

    def value(match: re.Match[str]) -> str:
        return values[match.group(1)]

    bound = re.sub(r"(?<!:):([a-z_]+)\b", value, sql)
    return bound


def _literal(value: object) -> str:
    """A float or int as a SQL literal that reads back as the same float8."""
    if not isinstance(value, float | int) or isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    return repr(float(value))


_GRID = "ogc_grid"
"""The one-row subquery holding the grid's values, worked out once per query, not per row."""


def _public_point_values(params: dict[str, object]) -> dict[str, str]:
    """SQL for each value ``point_sql`` binds: the grid's from ``_GRID``, the rest as is."""
    grid_dependent = {"loc_m": f"{_GRID}.loc_m", "loc_step_lat": f"{_GRID}.loc_step_lat"}
    if not set(grid_dependent) <= set(params):
        raise RuntimeError("point_sql binds other values than the OGC views expect")
    values = {name: _literal(value) for name, value in params.items()}
    values.update(grid_dependent)
    return values


def _public_reports() -> str:
    """The public reports view's query."""
    columns, params = report_columns_sql(ANONYMOUS, public_rounding_m=DEFAULT_PUBLIC_ROUNDING_M)
    snapped = point_sql(ANONYMOUS, public_rounding_m=DEFAULT_PUBLIC_ROUNDING_M)
    exact = point_sql(_STAFF, public_rounding_m=DEFAULT_PUBLIC_ROUNDING_M)
    values = _public_point_values(dict(params))
    lat = f"coalesce({_bind(snapped.lat, values)}, {exact.lat})"
    lon = f"coalesce({_bind(snapped.lon, values)}, {exact.lon})"
    # The longitude's expression holds the latitude's: replace the longitude first.
    for expression, name, public in ((snapped.lon, "lon", lon), (snapped.lat, "lat", lat)):
        column = f"{expression} AS {name}"
        if columns.count(column) != 1:
            raise RuntimeError(f"the report columns do not hold {name} as point_sql writes it")
        columns = columns.replace(column, f"{public} AS {name}")
    conditions, visibility_params = visibility_sql(ANONYMOUS)
    if visibility_params:
        raise RuntimeError("the public visibility rule binds values a view cannot hold")
    geom = f"CAST(ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326) AS geometry(Point, 4326))"
    # OFFSET 0 keeps the subquery whole, so the grid is read from the settings once.
    grid = (
        f"(SELECT {_GRID_METRES} AS loc_m,"
        f" {_GRID_METRES} / CAST({METRES_PER_DEGREE!r} AS float8) AS loc_step_lat"
        f" OFFSET 0) AS {_GRID}"
    )
    reports = "FROM reports AS r"
    if REPORTS_FROM.count(reports) != 1:
        raise RuntimeError("the reports' joins do not start from reports AS r")
    source = REPORTS_FROM.replace(reports, f"{reports}\nCROSS JOIN {grid}")
    return (
        f"SELECT {columns.strip()},\n    {geom} AS geom{source}"
        f"WHERE {' AND '.join(conditions) or 'true'}"
    )


def _staff_reports() -> str:
    """The staff reports view's query: every report, or a field team's when one is named."""
    columns, params = report_columns_sql(_STAFF)
    if params:
        raise RuntimeError("staff report columns bind values a view cannot hold")
    conditions, _ = visibility_sql(_FIELD_TEAM)
    team_rule = _bind(" AND ".join(conditions), {"viewer_team": _VIEWER_TEAM})
    return (
        f"SELECT {columns.strip()},\n    r.geom{REPORTS_FROM}"
        f"WHERE {_VIEWER_TEAM} IS NULL OR ({team_rule})"
    )


_WARDS = """SELECT w.id, w.code, w.name, w.name_th, w.name_en, w.geom
FROM wards AS w WHERE w.retired_at IS NULL"""
_ZONES = """SELECT z.id, z.code, z.name, z.name_th, z.name_en,
    t.code AS team_code, t.name AS team_name, z.geom
FROM zones AS z JOIN teams AS t ON t.id = z.team_id WHERE z.retired_at IS NULL"""


def view_queries(schema: str) -> dict[str, str]:
    """Each collection's query in ``schema`` (``PUBLIC_SCHEMA`` or ``STAFF_SCHEMA``)."""
    reports = {PUBLIC_SCHEMA: _public_reports, STAFF_SCHEMA: _staff_reports}[schema]()
    return {"reports": reports, "wards": _WARDS, "zones": _ZONES}


def create_statements() -> list[str]:
    """SQL creating (or replacing) both schemas and every view in them."""
    statements: list[str] = []
    for schema in (PUBLIC_SCHEMA, STAFF_SCHEMA):
        statements.append(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for name, query in view_queries(schema).items():
            statements.append(f"DROP VIEW IF EXISTS {schema}.{name}")
            statements.append(f"CREATE VIEW {schema}.{name} AS\n{query}")
    return statements


def drop_statements() -> list[str]:
    """SQL dropping both schemas and their views."""
    return [f"DROP SCHEMA IF EXISTS {schema} CASCADE" for schema in (PUBLIC_SCHEMA, STAFF_SCHEMA)]


def connection_settings(public_rounding_m: float) -> dict[str, str]:
    """The settings every connection serving ``/ogc`` starts with."""
    return {ROUNDING_SETTING: _literal(max(public_rounding_m, 0.0))}


def catalog_schema(principal: Principal) -> str:
    """The schema whose collections ``principal`` reads: staff's or the public's."""
    return STAFF_SCHEMA if principal.is_staff else PUBLIC_SCHEMA


def viewer_team(principal: Principal) -> str:
    """``VIEWER_TEAM_SETTING``'s value for a staff ``principal``: its team, or all (empty)."""
    if is_field_team(principal):
        # A field-team key always names its team; one that did not would see no report.
        return str(principal.team_id if principal.team_id is not None else -1)
    return ""
