"""What the map pages show, read from the database: markers and ward measures.

Heat cells are ``geo.maps.heat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import geopandas as gpd
from sqlalchemy import Connection, text

from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, Principal, point_sql
from geo.city.catalogue import display_name

# Map markers filter exactly as report lists do: one WHERE clause for every reader.
from geo.reports.search import ReportFilter, where_clauses
from geo.reports.stats import maintained_ward_measures, ward_report_measures, whole_days
from geo.vocabulary import FIXED_STATUSES, OPEN_STATUSES, REPORT_STATUSES

_LATEST_PUBLIC_NOTE = """(
    SELECT e.public_note FROM report_events AS e
    WHERE e.report_id = r.id AND e.public_note IS NOT NULL
    ORDER BY e.at DESC, e.id DESC LIMIT 1)"""
"""The public note of a report's latest event that has one (ix_report_events_report_at)."""

COUNT_AHEAD_PAGES: Final = 10
"""How many pages past the one shown a map counts its matches; beyond that it says "more than".

A count that only feeds the pager reads at most this many pages of rows, however many
match in the whole history.
"""


@dataclass(frozen=True, slots=True)
class _Part:
    """Reports a page lists together: in ``statuses`` (and ``extra``), in ``order``."""

    statuses: tuple[str, ...]
    extra: tuple[str, ...]
    key: str
    """``order`` as one number (then ``r.id``), so the parts can be merged."""
    order: str
    each_status: bool = False
    """Read each status in ``order`` on its own, for an index on (status, ...)."""


def _parts(flt: ReportFilter, fixed_since: datetime | None) -> tuple[list[_Part], dict[str, Any]]:
    """The parts of a map's page in turn, and the values their conditions name.

    Work still to do comes first, soonest due first; then fixed work (statuses in
    ``FIXED_STATUSES`` that ``flt`` asks for, and with ``fixed_since`` every fixed report
    resolved since then), most recently resolved first. Across the city or a zone each status
    of the work to do is read in due order on its own, so an index on ([zone,] status,
    due_at) hands over only what the page needs; in a ward, whose own index narrows the
    reports first, the statuses are read together rather than the ward once per status.
    """
    wanted = flt.statuses or REPORT_STATUSES
    working = tuple(s for s in wanted if s not in FIXED_STATUSES)
    apart = not flt.ward_ids
    due = _Part(working, (), "extract(epoch FROM r.due_at)", "r.due_at, r.id", each_status=apart)
    parts = [due] if working else []
    always = tuple(s for s in wanted if s in FIXED_STATUSES)
    # A fixed report without a resolution time comes last, as it sorts in the whole page.
    by_resolved = "r.resolved_at DESC NULLS LAST, r.id" if always else "r.resolved_at DESC, r.id"
    fixed = "-extract(epoch FROM r.resolved_at)"
    if fixed_since is not None:
        since = "r.resolved_at >= :fixed_since"
        extra = (f"({since} OR {_status_in(always)})",) if always else (since,)
        parts.append(_Part(FIXED_STATUSES, extra, fixed, by_resolved))
    elif always:
        parts.append(_Part(always, (), fixed, by_resolved))
    return parts, {"fixed_since": fixed_since}


def _reports_from(flt: ReportFilter) -> str:
    """The reports (``r``), with their category (``c``) only when ``flt`` filters by it.

    Every report has a category, so the join never changes which reports match; left
    out, a count can be answered from an index alone.
    """
    return "FROM reports AS r" + (
        " JOIN categories AS c ON c.id = r.category_id" if flt.categories else ""
    )


_IDS = (("ward_ids", "r.ward_id"), ("zone_ids", "r.zone_id"), ("team_ids", "r.team_id"))


def _clauses(
    flt: ReportFilter, principal: Principal, *, public_rounding_m: float
) -> tuple[list[str], dict[str, Any]]:
    """``where_clauses`` of ``flt`` but its statuses, a ward, zone or team as an equality.

    An index scan on ``= ANY`` does not come out in the index's order, so a team's
    reports in due order need ``team_id = :team`` to read ``(team_id, status, due_at)``
    in order; several ids stay a list.
    """
    one = {name: getattr(flt, name)[0] for name, _ in _IDS if len(getattr(flt, name)) == 1}
    rest = replace(
        flt,
        statuses=(),
        ward_ids=() if "ward_ids" in one else flt.ward_ids,
        zone_ids=() if "zone_ids" in one else flt.zone_ids,
        team_ids=() if "team_ids" in one else flt.team_ids,
    )
    clauses, params = where_clauses(rest, principal, public_rounding_m=public_rounding_m)
    clauses += [f"{column} = :one_{name}" for name, column in _IDS if name in one]
    return clauses, params | {f"one_{name}": value for name, value in one.items()}


def _status_in(statuses: Sequence[str]) -> str:
    """``r.status`` is one of ``statuses``, written as the vocabulary's constants.

    Constants rather than bound values, so that a plan made for any values (psycopg
    prepares a statement it runs often) still reads the partial indexes of open reports;
    one status is an equality, as an index scan on ``IN`` does not come out in order.
    """
    named = [f"'{status}'" for status in REPORT_STATUSES if status in statuses]
    return f"r.status = {named[0]}" if len(named) == 1 else f"r.status IN ({', '.join(named)})"


def _where(clauses: Sequence[str], statuses: Sequence[str]) -> str:
    return " WHERE " + " AND ".join([*clauses, _status_in(statuses)])


def map_reports_sql(
    flt: ReportFilter,
    principal: Principal,
    *,
    fixed_since: datetime | None = None,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> tuple[str, str, dict[str, Any]]:
    """The ids of one page of markers and their bounded count, with ``:limit`` and ``:offset``.

    The page query gives ``id, grp, sort_key`` in the maps' order (``map_reports``); each
    part (``_parts``), or status of a part, reads at most ``offset + limit`` rows. The
    count query counts each part up to ``COUNT_AHEAD_PAGES`` pages past this one and one
    more, so it stops early in a long history. Both read ``flt`` as ``principal`` may see
    it (``where_clauses``).
    """
    common, params = _clauses(flt, principal, public_rounding_m=public_rounding_m)
    parts, values = _parts(flt, fixed_since)
    params |= values
    source = _reports_from(flt)
    pages, counts = [], []
    for n, part in enumerate(parts):
        clauses = [*common, *part.extra]
        pages += [
            f"(SELECT r.id, {n} AS grp, {part.key} AS sort_key {source}{_where(clauses, some)} "
            f"ORDER BY {part.order} LIMIT :offset + :limit)"
            for some in ([(s,) for s in part.statuses] if part.each_status else [part.statuses])
        ]
        counts.append(
            f"(SELECT 1 {source}{_where(clauses, part.statuses)} "
            f"LIMIT :offset + :limit * {COUNT_AHEAD_PAGES + 1} + 1)"
        )
    page = (
        f"SELECT id, grp, sort_key FROM ({' UNION ALL '.join(pages)}) AS u "
        "ORDER BY grp, sort_key, id LIMIT :limit OFFSET :offset"
    )
    count = f"SELECT count(*) FROM ({' UNION ALL '.join(counts)}) AS u"
    return page, count, params


@dataclass(frozen=True, slots=True)
class MarkerRows:
    """One page of ``map_reports`` rows, and how many reports match.

    ``more`` says the count stopped early: more than ``total`` match.
    """

    rows: list[dict[str, Any]]
    total: int
    more: bool = False


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
    total: int | None = None,
) -> MarkerRows:
    """One page of markers for ``flt`` as ``principal`` may see it, and how many match.

    Open work first, most urgent first (by due time), then fixed work (``fixed_since``,
    see ``_parts``), most recent first. Only the columns a marker shows are read:
    the status page token, the latest public note, and the description only for staff, cut
    to ``description_chars``; locations as ``geo.access.policy`` lets ``principal`` see them.
    Matches are counted up to ``COUNT_AHEAD_PAGES`` pages past this one (``MarkerRows.more``
    beyond); a caller that knows how many match passes ``total`` and nothing is counted.
    """
    ids, count, params = map_reports_sql(
        flt, principal, fixed_since=fixed_since, public_rounding_m=public_rounding_m
    )
    description = "left(r.description, :chars)" if principal.is_staff else "''"
    point = point_sql(principal, public_rounding_m=public_rounding_m)
    # The page is chosen on ids first; only its rows are looked up and shaped.
    page = (
        f"WITH page AS MATERIALIZED ({ids}) "
        f"SELECT r.id, {point.lat} AS lat, {point.lon} AS lon, c.code AS category, "
        f"r.status, r.created_at, r.due_at, r.resolved_at, r.token, "
        f"{description} AS description, {_LATEST_PUBLIC_NOTE} AS public_note, "
        f"(r.status = ANY(:open_statuses) AND r.due_at < now()) AS overdue "
        "FROM page JOIN reports AS r ON r.id = page.id "
        "JOIN categories AS c ON c.id = r.category_id "
        "ORDER BY page.grp, page.sort_key, page.id"
    )
    values = (
        params
        | point.params
        | {
            "chars": description_chars,
            "open_statuses": list(OPEN_STATUSES),
            "limit": limit,
            "offset": offset,
        }
    )
    result = conn.execute(text(page), values)
    # A page holds hundreds of markers: fetched at once and zipped with the column names,
    # rather than row by row through SQLAlchemy's mapping of each.
    names = list(result.keys())
    rows = [dict(zip(names, row, strict=True)) for row in result.all()]
    if total is not None:
        return MarkerRows(rows, total)
    found = int(conn.execute(text(count), params | {"limit": limit, "offset": offset}).scalar_one())
    cap = offset + limit * (COUNT_AHEAD_PAGES + 1)
    return MarkerRows(rows, min(found, cap), more=found > cap)


def due_page_ids(
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    *,
    limit: int,
    offset: int = 0,
    overdue: bool = False,
) -> list[int]:
    """The ids of one page of ``flt``'s reports, soonest due first (then by id).

    As ``principal`` may see them (``where_clauses``); with ``overdue``, only those past
    due. Each status is read in due order on its own and the parts merged, so with an index
    on (..., status, due_at), such as a team's ``ix_reports_team_status_due``, a page reads
    about its own rows, not its whole queue.
    """
    clauses, params = _clauses(flt, principal, public_rounding_m=DEFAULT_PUBLIC_ROUNDING_M)
    if overdue:
        clauses.append("r.due_at < now()")
    parts = [
        f"(SELECT r.id, r.due_at {_reports_from(flt)}"
        f"{_where(clauses, [status])} "
        "ORDER BY r.due_at, r.id LIMIT :offset + :limit)"
        for status in flt.statuses or REPORT_STATUSES
    ]
    sql = (
        f"SELECT id FROM ({' UNION ALL '.join(parts)}) AS u "
        "ORDER BY due_at, id LIMIT :limit OFFSET :offset"
    )
    found = conn.execute(text(sql), params | {"limit": limit, "offset": offset}).scalars()
    return [int(i) for i in found]


@dataclass(frozen=True, slots=True)
class OpenWork:
    """How much work a queue holds: open reports, and how many of them are past due."""

    open: int
    overdue: int


def open_work_counts(conn: Connection, flt: ReportFilter, principal: Principal) -> OpenWork:
    """The open reports of ``flt`` (its statuses ignored) and how many are overdue.

    Counted over every matching report, not the page of markers shown, so a crew sees the
    whole queue's backlog at the top of its map or list. A team's count is read from
    ``ix_reports_team_status_due``, a zone's from ``ix_reports_zone_status_due``.
    """
    clauses, params = _clauses(flt, principal, public_rounding_m=DEFAULT_PUBLIC_ROUNDING_M)
    row = conn.execute(
        text(
            "SELECT count(*) AS open, count(*) FILTER (WHERE r.due_at < now()) AS overdue "
            f"{_reports_from(flt)}{_where(clauses, OPEN_STATUSES)}"
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
