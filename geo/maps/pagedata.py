"""What the map pages show, read from the database: markers and ward measures.

Heat cells are ``geo.maps.heat``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import geopandas as gpd
from sqlalchemy import Connection, text

from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, Principal, point_sql
from geo.city.catalogue import display_name

# Map markers filter exactly as report lists do: one WHERE clause for every reader.
from geo.reports.search import REPORTS_FROM, ReportFilter, where_clauses
from geo.reports.stats import maintained_ward_measures, ward_report_measures, whole_days
from geo.vocabulary import FIXED_STATUSES, OPEN_STATUSES

_LATEST_PUBLIC_NOTE = """(
    SELECT e.public_note FROM report_events AS e
    WHERE e.report_id = r.id AND e.public_note IS NOT NULL
    ORDER BY e.at DESC, e.id DESC LIMIT 1)"""
"""The public note of a report's latest event that has one (ix_report_events_report_at)."""


def map_reports_sql(
    flt: ReportFilter,
    principal: Principal,
    *,
    fixed_since: datetime | None = None,
    description_chars: int = 160,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> tuple[str, str, dict[str, Any]]:
    """The page and count queries of ``map_reports`` (without LIMIT/OFFSET values), and params.

    With ``fixed_since``, reports in ``FIXED_STATUSES`` resolved since then match as well as
    those in ``flt.statuses``; the resolved-at test uses ``ix_reports_resolved_at``.
    """
    statuses = flt.statuses
    clauses, params = where_clauses(
        replace(flt, statuses=()) if fixed_since is not None else flt,
        principal,
        public_rounding_m=public_rounding_m,
    )
    if fixed_since is not None:
        clauses.append(
            "(r.status = ANY(:statuses) OR "
            "(r.status = ANY(:fixed_statuses) AND r.resolved_at >= :fixed_since))"
        )
        params |= {
            "statuses": list(statuses),
            "fixed_statuses": list(FIXED_STATUSES),
            "fixed_since": fixed_since,
        }
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    description = "left(r.description, :chars)" if principal.is_staff else "''"
    point = point_sql(principal, public_rounding_m=public_rounding_m)
    page = (
        f"SELECT r.id, {point.lat} AS lat, {point.lon} AS lon, c.code AS category, "
        f"r.status, r.created_at, r.due_at, r.resolved_at, r.token, "
        f"{description} AS description, {_LATEST_PUBLIC_NOTE} AS public_note, "
        f"(r.status = ANY(:open_statuses) AND r.due_at < now()) AS overdue "
        # Work still to do first, most urgent first; then the most recently fixed.
        f"{REPORTS_FROM}{where} ORDER BY (r.status = ANY(:fixed_statuses)), "
        f"CASE WHEN r.status = ANY(:fixed_statuses) THEN -extract(epoch FROM r.resolved_at) "
        f"ELSE extract(epoch FROM r.due_at) END, r.id LIMIT :limit OFFSET :offset"
    )
    count = f"SELECT count(*) {REPORTS_FROM}{where}"
    params = params | point.params
    params |= {
        "chars": description_chars,
        "open_statuses": list(OPEN_STATUSES),
        "fixed_statuses": list(FIXED_STATUSES),
    }
    return page, count, params


def map_reports(
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    *,
    limit: int,
    offset: int = 0,
    fixed_since: datetime | None = None,
    description_chars: int = 160,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> tuple[list[dict[str, Any]], int]:
    """One page of markers for ``flt`` as ``principal`` may see it, and how many match.

    Open work first, most urgent first (by due time), then fixed work (``fixed_since``,
    see ``map_reports_sql``), most recent first. Only the columns a marker shows are read:
    the status page token, the latest public note, and the description only for staff, cut
    to ``description_chars``; locations as ``geo.access.policy`` lets ``principal`` see them.
    """
    page, count, params = map_reports_sql(
        flt,
        principal,
        fixed_since=fixed_since,
        description_chars=description_chars,
        public_rounding_m=public_rounding_m,
    )
    rows = conn.execute(text(page), params | {"limit": limit, "offset": offset}).all()
    total = conn.execute(text(count), params).scalar_one()
    return [dict(r._mapping) for r in rows], int(total)


@dataclass(frozen=True, slots=True)
class OpenWork:
    """How much work a queue holds: open reports, and how many of them are past due."""

    open: int
    overdue: int


def open_work_counts(conn: Connection, flt: ReportFilter, principal: Principal) -> OpenWork:
    """The open reports of ``flt`` (its statuses ignored) and how many are overdue.

    Counted over every matching report, not the page of markers shown, so a crew sees the
    whole queue's backlog at the top of its map or list; one scan of the
    ``ix_reports_team_status_due`` (or zone) index.
    """
    clauses, params = where_clauses(replace(flt, statuses=OPEN_STATUSES), principal)
    row = conn.execute(
        text(
            "SELECT count(*) AS open, count(*) FILTER (WHERE r.due_at < now()) AS overdue "
            f"{REPORTS_FROM} WHERE {' AND '.join(clauses)}"
        ),
        params,
    ).one()
    return OpenWork(open=int(row.open), overdue=int(row.overdue))


def ward_measures(
    conn: Connection,
    *,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    simplify_m: float | None = 5.0,
    lang: str | None = None,
    median: bool = True,
) -> gpd.GeoDataFrame:
    """The ward dashboard's wards: ``ward_report_measures`` over reports created in the window.

    A window of whole UTC days (what the dashboard's date inputs give) is read from the
    measures the database keeps (``maintained_ward_measures``); any other from the reports.
    Adds the dashboard's measures under the names its ``measure`` parameter takes:
    ``count`` (reports), ``sla`` (``within_sla_share``) and ``median_hours``
    (``median_hours_to_resolve``, left out unless ``median``). With ``lang``, ``name`` is
    the name a reader in that language sees (``geo.city.catalogue.display_name``).
    """
    # Refuses a window that ends before it starts, naming the parameter.
    window = ReportFilter(created_from=created_from, created_to=created_to)
    days = whole_days(created_from, created_to)
    if days is None:
        frame = ward_report_measures(conn, window, simplify_m=simplify_m)
    else:
        frame = maintained_ward_measures(conn, *days, median=median, simplify_m=simplify_m)
    if lang is not None:
        names = ward_names(conn, lang)
        frame["name"] = [
            names.get(code, name) for code, name in zip(frame["code"], frame["name"], strict=True)
        ]
    return frame.assign(
        count=frame["reports"],
        sla=frame["within_sla_share"],
        median_hours=frame["median_hours_to_resolve"],
    )


def ward_names(conn: Connection, lang: str) -> dict[str, str]:
    """Each current ward's name as a reader in ``lang`` sees it, by ward code."""
    rows = conn.execute(
        text("SELECT code, name, name_th, name_en FROM wards WHERE retired_at IS NULL")
    )
    return {
        r.code: display_name(lang, name=r.name, name_th=r.name_th, name_en=r.name_en) for r in rows
    }
