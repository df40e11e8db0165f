"""The catalogue: report categories, field teams and category routes.

Wards, zones, teams and categories keep a Thai and an English name apart (``name_th``,
``name_en``) beside the name as given (``name``); ``display_name`` is the one rule for which
of them a reader in a language sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, text

from geo.errors import ConflictError, InvalidInputError, NotFoundError
from geo.i18n import N_
from geo.vocabulary import CODE_MAX, NAME_MAX

CODE_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.-]+$")
"""What a category or team code may hold: it goes into URLs, files and command lines."""

SLA_HOURS_MAX: Final = 24 * 365
"""Longest promise a category may make, in hours (a year)."""

NO_CATEGORY: Final = N_("There is no category {code!r}.")
NO_TEAM: Final = N_("There is no team {code!r}.")
NO_CURRENT_ZONE: Final = N_("There is no current zone {code!r}.")
ROUTE_EXISTS: Final = N_("That route exists already.")

ROUTE_REFUSAL_FIELDS: Final[Mapping[str, str]] = {
    NO_CATEGORY: "category",
    NO_TEAM: "team",
    NO_CURRENT_ZONE: "zone",
    ROUTE_EXISTS: "zone",
}
"""The field each refusal of ``add_category_route`` is about, for a form or flag to name."""


def display_name(
    lang: str, *, name: str | None, name_th: str | None = None, name_en: str | None = None
) -> str:
    """The name a reader in ``lang`` sees: ``name_th`` for ``th``, ``name_en`` for ``en``.

    A ward, zone or team whose boundary file gave no name in that language falls back to
    the name as given, then to the other language's name, so a reader always sees a name.
    """
    given = {"name": name, "name_th": name_th, "name_en": name_en}
    for column in name_order(lang):
        value = given[column]
        if value:
            return value
    return ""


def name_order(lang: str) -> tuple[str, str, str]:
    """The name columns ``display_name`` tries for ``lang``, first to last (SQL uses it too)."""
    return ("name_th", "name", "name_en") if lang == "th" else ("name_en", "name", "name_th")


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


def category_codes(conn: Connection) -> dict[int, str]:
    """Every category's code by id, offered or not (the admin pages' lists)."""
    rows = conn.execute(text("SELECT id, code FROM categories")).all()
    return {int(r.id): str(r.code) for r in rows}


def category_names(conn: Connection, lang: str) -> dict[str, str]:
    """Active category codes with their name in ``lang`` (``th`` or ``en``), by code."""
    return {c.code: c.name(lang) for c in active_categories(conn)}


def list_categories(conn: Connection) -> list[dict[str, Any]]:
    """Every active category: code, Thai and English names, SLA in hours."""
    return [
        {"code": c.code, "name_th": c.name_th, "name_en": c.name_en, "sla_hours": c.sla_hours}
        for c in active_categories(conn)
    ]


def check_code(field: str, code: str) -> str:
    """``code`` trimmed, if it is a usable category or team code; else ``InvalidInputError``."""
    cleaned = code.strip()
    if not cleaned:
        raise InvalidInputError(field, N_("must not be empty"))
    if len(cleaned) > CODE_MAX:
        raise InvalidInputError(field, N_("must be at most {n} characters"), n=CODE_MAX)
    if not CODE_PATTERN.match(cleaned):
        raise InvalidInputError(
            field, N_("may hold only letters A-Z, digits, and the characters . _ -")
        )
    return cleaned


def check_name(field: str, name: str | None, *, required: bool = True) -> str | None:
    """``name`` trimmed (None when empty and not ``required``); else ``InvalidInputError``."""
    cleaned = (name or "").strip()
    if not cleaned:
        if required:
            raise InvalidInputError(field, N_("must not be empty"))
        return None
    if "\x00" in cleaned:
        raise InvalidInputError(field, N_("must not contain NUL characters"))
    if len(cleaned) > NAME_MAX:
        raise InvalidInputError(field, N_("must be at most {n} characters"), n=NAME_MAX)
    return cleaned


def either_name(name_th: str | None, name_en: str | None) -> tuple[str, str]:
    """A Thai and an English name from one or both, each checked as ``check_name`` does.

    A category is always shown with a name, so the one given stands in for the one left
    out; neither is refused on ``name_th``.
    """
    thai = check_name("name_th", name_th, required=False)
    english = check_name("name_en", name_en, required=False)
    if thai is None and english is None:
        raise InvalidInputError(
            "name_th", N_("give a Thai name, an English name (`name_en`), or both")
        )
    return thai or english or "", english or thai or ""


def put_category(
    conn: Connection,
    *,
    code: str,
    name_th: str,
    name_en: str,
    sla_hours: int,
    active: bool,
    create_only: bool = False,
) -> dict[str, Any]:
    """Create category ``code`` or replace its names, SLA and whether it is offered.

    A new SLA applies to reports filed from then on; stored due times do not change.
    With ``create_only`` an existing ``code`` is refused instead of replaced.
    """
    values = {
        "code": check_code("code", code),
        "name_th": check_name("name_th", name_th),
        "name_en": check_name("name_en", name_en),
        "sla_hours": sla_hours,
        "active": active,
    }
    if not 1 <= sla_hours <= SLA_HOURS_MAX:
        raise InvalidInputError(
            "sla_hours", N_("must be from {low} to {high}"), low=1, high=SLA_HOURS_MAX
        )
    on_conflict = (
        "DO NOTHING"
        if create_only
        else "DO UPDATE SET name_th = EXCLUDED.name_th, name_en = EXCLUDED.name_en, "
        "sla_hours = EXCLUDED.sla_hours, active = EXCLUDED.active"
    )
    row = conn.execute(
        text(
            "INSERT INTO categories (code, name_th, name_en, sla_hours, active) "
            "VALUES (:code, :name_th, :name_en, :sla_hours, :active) "
            f"ON CONFLICT (code) {on_conflict} "
            "RETURNING code, name_th, name_en, sla_hours, active"
        ),
        values,
    ).mappings()
    stored = row.one_or_none()
    if stored is None:
        raise InvalidInputError("code", N_("is taken already"))
    return dict(stored)


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
    ``ConflictError``. A code no row could hold (too long, with a NUL) is an
    ``InvalidInputError`` on its field.
    """
    for field, code in (("category", category), ("team", team), ("zone", zone)):
        # Checked before the query: PostgreSQL refuses text holding NUL outright.
        if code is not None and "\x00" in code:
            raise InvalidInputError(field, N_("must not contain NUL characters"))
        if code is not None and len(code) > CODE_MAX:
            raise InvalidInputError(field, N_("must be at most {n} characters"), n=CODE_MAX)
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
        raise NotFoundError(NO_CATEGORY, code=category)
    if ids.team_id is None:
        raise NotFoundError(NO_TEAM, code=team)
    if not ids.zone_ok:
        # A retired zone counts as none: a route to it would never match a new report.
        raise NotFoundError(NO_CURRENT_ZONE, code=zone)
    new_id = conn.execute(
        text(
            "INSERT INTO category_routes (category_id, team_id, zone_code) "
            "VALUES (:c, :t, :z) ON CONFLICT DO NOTHING RETURNING id"
        ),
        {"c": ids.category_id, "t": ids.team_id, "z": zone},
    ).scalar_one_or_none()
    if new_id is None:
        raise ConflictError(ROUTE_EXISTS)
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


def create_team(
    conn: Connection,
    *,
    code: str,
    name: str,
    name_th: str | None = None,
    name_en: str | None = None,
) -> int:
    """Create team ``code`` with its names; its id. A code in use is refused on ``code``."""
    new_id = conn.execute(
        text(
            "INSERT INTO teams (code, name, name_th, name_en) "
            "VALUES (:code, :name, :name_th, :name_en) "
            "ON CONFLICT (code) DO NOTHING RETURNING id"
        ),
        {
            "code": check_code("code", code),
            "name": check_name("name", name),
            "name_th": check_name("name_th", name_th, required=False),
            "name_en": check_name("name_en", name_en, required=False),
        },
    ).scalar_one_or_none()
    if new_id is None:
        raise InvalidInputError("code", N_("is taken already"))
    return int(new_id)


def rename_team(
    conn: Connection,
    team_id: int,
    *,
    name: str,
    name_th: str | None = None,
    name_en: str | None = None,
) -> None:
    """Change team ``team_id``'s names; its code stays, since keys and files name it."""
    done = conn.execute(
        text(
            "UPDATE teams SET name = :name, name_th = :name_th, name_en = :name_en WHERE id = :id"
        ),
        {
            "id": team_id,
            "name": check_name("name", name),
            "name_th": check_name("name_th", name_th, required=False),
            "name_en": check_name("name_en", name_en, required=False),
        },
    ).rowcount
    if not done:
        raise NotFoundError(N_("There is no team {id}."), id=team_id)


def require_team(conn: Connection, team_id: int) -> None:
    """``NotFoundError`` unless team ``team_id`` exists."""
    if conn.execute(text("SELECT 1 FROM teams WHERE id = :id"), {"id": team_id}).first() is None:
        raise NotFoundError(N_("There is no team {id}."), id=team_id)
