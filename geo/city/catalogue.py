"""The catalogue: report categories, field teams and category routes.

Wards, zones, teams and categories keep a Thai and an English name apart (``name_th``,
``name_en``) beside the name as given (``name``); ``display_name`` is the one rule for which
of them a reader in a language sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from geo.errors import ConflictError, InvalidInputError, NotFoundError
from geo.i18n import N_


def display_name(
    lang: str, *, name: str | None, name_th: str | None = None, name_en: str | None = None
) -> str:
    """The name a reader in ``lang`` sees: ``name_th`` for ``th``, ``name_en`` for ``en``.

    A ward, zone or team whose boundary file gave no name in that language falls back to
    the name as given, then to the other language's name, so a reader always sees a name.
    """
    own = name_th if lang == "th" else name_en
    other = name_en if lang == "th" else name_th
    for candidate in (own, name, other):
        if candidate:
            return candidate
    return ""


@dataclass(frozen=True, slots=True)
class Category:
    """An active report category as every reader sees it."""

    id: int
    code: str
    name_th: str
    name_en: str
    sla_hours: int

    def name(self, lang: str) -> str:
        """The category's name in ``lang`` (``th``, else English)."""
        return display_name(lang, name=None, name_th=self.name_th, name_en=self.name_en)


def active_categories(conn: Connection) -> list[Category]:
    """Every category offered to reporters, by code.

    This is the one read of the categories list: the API, Open311's services, the map
    filters and the CSV import all show what it returns.
    """
    rows = conn.execute(
        text(
            "SELECT id, code, name_th, name_en, sla_hours FROM categories "
            "WHERE active ORDER BY code"
        )
    ).all()
    return [Category(int(r.id), r.code, r.name_th, r.name_en, int(r.sla_hours)) for r in rows]


def category_id(conn: Connection, code: str) -> int | None:
    """Id of the active category ``code``, or None when no active category has it."""
    found = conn.execute(
        text("SELECT id FROM categories WHERE code = :code AND active"), {"code": code}
    ).scalar_one_or_none()
    return None if found is None else int(found)


def require_category_id(conn: Connection, code: str) -> int:
    """Id of the active category ``code``; an unknown code is an input error on ``category``."""
    found = category_id(conn, code)
    if found is None:
        raise InvalidInputError(
            "category", N_("there is no category with code {code!r}"), code=code
        )
    return found


def category_names(conn: Connection, lang: str) -> dict[str, str]:
    """Active category codes with their name in ``lang`` (``th`` or ``en``), by code."""
    return {c.code: c.name(lang) for c in active_categories(conn)}


def list_categories(conn: Connection) -> list[dict[str, Any]]:
    """Every active category: code, Thai and English names, SLA in hours."""
    return [
        {"code": c.code, "name_th": c.name_th, "name_en": c.name_en, "sla_hours": c.sla_hours}
        for c in active_categories(conn)
    ]


def put_category(
    conn: Connection, *, code: str, name_th: str, name_en: str, sla_hours: int, active: bool
) -> dict[str, Any]:
    """Create category ``code`` or replace its names, SLA and whether it is offered.

    A new SLA applies to reports filed from then on; stored due times do not change.
    """
    row = conn.execute(
        text(
            "INSERT INTO categories (code, name_th, name_en, sla_hours, active) "
            "VALUES (:code, :name_th, :name_en, :sla_hours, :active) "
            "ON CONFLICT (code) DO UPDATE SET name_th = EXCLUDED.name_th, "
            "name_en = EXCLUDED.name_en, sla_hours = EXCLUDED.sla_hours, "
            "active = EXCLUDED.active RETURNING code, name_th, name_en, sla_hours, active"
        ),
        {
            "code": code,
            "name_th": name_th,
            "name_en": name_en,
            "sla_hours": sla_hours,
            "active": active,
        },
    ).mappings()
    return dict(row.one())


def list_category_routes(conn: Connection) -> list[dict[str, Any]]:
    """Every category route: its id, category and team codes, and zone code (or none)."""
    rows = conn.execute(
        text(
            "SELECT cr.id, c.code AS category, t.code AS team, cr.zone_code AS zone "
            "FROM category_routes AS cr JOIN categories AS c ON c.id = cr.category_id "
            "JOIN teams AS t ON t.id = cr.team_id ORDER BY c.code, t.code, cr.zone_code"
        )
    ).mappings()
    return [dict(r) for r in rows]


def add_category_route(
    conn: Connection, *, category: str, team: str, zone: str | None = None
) -> int:
    """Send ``category`` to ``team`` (codes), everywhere or only in current zone ``zone``.

    Returns the new route's id. New reports use it; stored ones keep their team. An
    unknown category, team or zone is a ``NotFoundError``, an existing route a
    ``ConflictError``.
    """
    ids = conn.execute(
        text(
            "SELECT (SELECT id FROM categories WHERE code = :category) AS category_id, "
            "(SELECT id FROM teams WHERE code = :team) AS team_id, "
            "(CAST(:zone AS varchar) IS NULL OR EXISTS (SELECT 1 FROM zones WHERE code = :zone "
            "AND retired_at IS NULL)) AS zone_ok"
        ),
        {"category": category, "team": team, "zone": zone},
    ).one()
    if ids.category_id is None:
        raise NotFoundError(N_("There is no category {code!r}."), code=category)
    if ids.team_id is None:
        raise NotFoundError(N_("There is no team {code!r}."), code=team)
    if not ids.zone_ok:
        raise NotFoundError(N_("There is no current zone {code!r}."), code=zone)
    new_id = conn.execute(
        text(
            "INSERT INTO category_routes (category_id, team_id, zone_code) "
            "VALUES (:c, :t, :z) ON CONFLICT DO NOTHING RETURNING id"
        ),
        {"c": ids.category_id, "t": ids.team_id, "z": zone},
    ).scalar_one_or_none()
    if new_id is None:
        raise ConflictError(N_("That route exists already."))
    return int(new_id)


def delete_category_route(conn: Connection, route_id: int) -> None:
    """Stop routing by route ``route_id``; stored reports keep their team."""
    done = conn.execute(
        text("DELETE FROM category_routes WHERE id = :id"), {"id": route_id}
    ).rowcount
    if not done:
        raise NotFoundError(N_("There is no category route {id}."), id=route_id)


def list_teams(conn: Connection) -> list[dict[str, Any]]:
    """Every team: id, code, name as given, Thai and English names, codes of its current zones."""
    rows = conn.execute(
        text(
            "SELECT t.id, t.code, t.name, t.name_th, t.name_en, "
            "COALESCE(array_agg(z.code ORDER BY z.code) FILTER (WHERE z.id IS NOT NULL), '{}') "
            "AS zones FROM teams AS t "
            "LEFT JOIN zones AS z ON z.team_id = t.id AND z.retired_at IS NULL "
            "GROUP BY t.id ORDER BY t.code"
        )
    ).mappings()
    return [dict(r) for r in rows]


def require_team(conn: Connection, team_id: int) -> None:
    """``NotFoundError`` unless team ``team_id`` exists."""
    if conn.execute(text("SELECT 1 FROM teams WHERE id = :id"), {"id": team_id}).first() is None:
        raise NotFoundError(N_("There is no team {id}."), id=team_id)
