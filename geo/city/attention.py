"""What needs an admin's attention after a boundary replace.

A replace retires the old wards or zones but never re-routes stored reports on its own
(``geo.reports.store.reroute_reports`` does that, when asked). Three lists say what the
replace left behind:

- teams that had a zone and now have none: no report reaches them by place any more;
- category routes limited to a zone code that no current zone has: they route nothing;
- open reports whose ward or zone is retired: they wait for a re-route.

Each list is one query over indexes: teams through ``ix_zones_team``, routes through the
current zones' unique code index, reports through the open statuses and their ward and
zone keys. None of them reads the boundary history beyond what the open reports point at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from geo.city.catalogue import display_name
from geo.vocabulary import OPEN_STATUSES

REPORTS_LISTED = 200
"""Open reports shown by ``needs_attention``; the total is always counted."""


@dataclass(frozen=True, slots=True)
class Named:
    """A team, ward, zone or category as a reader sees it: its code and names."""

    code: str
    name: str | None = None
    name_th: str | None = None
    name_en: str | None = None

    def label(self, lang: str) -> str:
        """The name a reader in ``lang`` sees (``display_name``), else the code."""
        return (
            display_name(lang, name=self.name, name_th=self.name_th, name_en=self.name_en)
            or self.code
        )


def named(
    code: str | None, name: str | None, name_th: str | None, name_en: str | None
) -> Named | None:
    """A ``Named`` from a row's columns; None when there is no code (no such thing)."""
    return None if code is None else Named(code, name, name_th, name_en)


@dataclass(frozen=True, slots=True)
class BareTeam:
    """A team that had a zone and has no current one; ``open_reports`` still assigned to it."""

    team: Named
    open_reports: int


@dataclass(frozen=True, slots=True)
class StrandedRoute:
    """A category route limited to a zone code no current zone has (retired or unknown)."""

    id: int
    category: Named
    team: Named
    zone_code: str


@dataclass(frozen=True, slots=True)
class StrandedReport:
    """An open report whose ward or zone is retired, with where it was routed."""

    id: int
    status: str
    category: Named
    created_at: datetime
    ward: Named | None
    ward_retired: bool
    zone: Named | None
    zone_retired: bool
    team: Named | None


@dataclass(frozen=True, slots=True)
class Attention:
    """The three lists; ``reports_total`` counts every such report, ``reports`` the first ones."""

    teams: tuple[BareTeam, ...]
    routes: tuple[StrandedRoute, ...]
    reports: tuple[StrandedReport, ...]
    reports_total: int

    @property
    def empty(self) -> bool:
        """Whether nothing needs attention."""
        return not (self.teams or self.routes or self.reports_total)


_BARE_TEAMS = """
SELECT t.code, t.name, t.name_th, t.name_en,
       (SELECT count(*) FROM reports AS r
        WHERE r.team_id = t.id AND r.status = ANY(CAST(:statuses AS text[]))) AS open_reports
FROM teams AS t
WHERE NOT EXISTS (SELECT FROM zones AS z WHERE z.team_id = t.id AND z.retired_at IS NULL)
  AND EXISTS (SELECT FROM zones AS z WHERE z.team_id = t.id)
ORDER BY t.code
"""
_STRANDED_ROUTES = """
SELECT cr.id, cr.zone_code,
       c.code AS c_code, c.name_en AS c_name, c.name_th AS c_th, c.name_en AS c_en,
       t.code AS t_code, t.name AS t_name, t.name_th AS t_th, t.name_en AS t_en
FROM category_routes AS cr
JOIN categories AS c ON c.id = cr.category_id
JOIN teams AS t ON t.id = cr.team_id
WHERE cr.zone_code IS NOT NULL
  AND NOT EXISTS (
      SELECT FROM zones AS z WHERE z.code = cr.zone_code AND z.retired_at IS NULL)
ORDER BY c.code, t.code, cr.zone_code
"""
_STRANDED_REPORTS = """
SELECT r.id, r.status, r.created_at,
       c.code AS c_code, c.name_en AS c_name, c.name_th AS c_th, c.name_en AS c_en,
       w.code AS w_code, w.name AS w_name, w.name_th AS w_th, w.name_en AS w_en,
       w.retired_at IS NOT NULL AS ward_retired,
       z.code AS z_code, z.name AS z_name, z.name_th AS z_th, z.name_en AS z_en,
       z.retired_at IS NOT NULL AS zone_retired,
       t.code AS t_code, t.name AS t_name, t.name_th AS t_th, t.name_en AS t_en,
       count(*) OVER () AS total
FROM reports AS r
JOIN categories AS c ON c.id = r.category_id
LEFT JOIN wards AS w ON w.id = r.ward_id
LEFT JOIN zones AS z ON z.id = r.zone_id
LEFT JOIN teams AS t ON t.id = r.team_id
WHERE r.status = ANY(CAST(:statuses AS text[]))
  AND (w.retired_at IS NOT NULL OR z.retired_at IS NOT NULL)
ORDER BY r.created_at, r.id
LIMIT :limit
"""


def needs_attention(conn: Connection, *, limit: int = REPORTS_LISTED) -> Attention:
    """The teams, routes and open reports a boundary replace left needing attention."""
    statuses = list(OPEN_STATUSES)
    teams = tuple(
        BareTeam(Named(r.code, r.name, r.name_th, r.name_en), int(r.open_reports))
        for r in conn.execute(text(_BARE_TEAMS), {"statuses": statuses})
    )
    routes = tuple(
        StrandedRoute(
            id=int(r.id),
            category=Named(r.c_code, r.c_name, r.c_th, r.c_en),
            team=Named(r.t_code, r.t_name, r.t_th, r.t_en),
            zone_code=r.zone_code,
        )
        for r in conn.execute(text(_STRANDED_ROUTES))
    )
    rows = conn.execute(text(_STRANDED_REPORTS), {"statuses": statuses, "limit": limit}).all()
    reports = tuple(
        StrandedReport(
            id=int(r.id),
            status=r.status,
            category=Named(r.c_code, r.c_name, r.c_th, r.c_en),
            created_at=r.created_at,
            ward=named(r.w_code, r.w_name, r.w_th, r.w_en),
            ward_retired=bool(r.ward_retired),
            zone=named(r.z_code, r.z_name, r.z_th, r.z_en),
            zone_retired=bool(r.zone_retired),
            team=named(r.t_code, r.t_name, r.t_th, r.t_en),
        )
        for r in rows
    )
    return Attention(
        teams=teams,
        routes=routes,
        reports=reports,
        reports_total=int(rows[0].total) if rows else 0,
    )
