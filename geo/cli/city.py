"""``issuemap categories``, ``teams`` and ``routes``: set an empty city up from the command line.

Every write goes through ``geo.city.catalogue``, the functions the admin pages write with, so
a code, name or route is checked the same way wherever it comes from; each command is one
transaction, so a refused one stores nothing. Messages and tables are in Thai unless
``--lang en`` asks for English.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Annotated, Final

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Connection

from geo.city import catalogue
from geo.errors import InvalidInputError, IssuemapError, Message
from geo.i18n import LANGUAGES, N_, translate

categories_app = typer.Typer(
    help="Report categories: their codes, names and SLA.", no_args_is_help=True
)
teams_app = typer.Typer(help="Field teams: their codes and names.", no_args_is_help=True)
routes_app = typer.Typer(
    help="Category routes: which team gets a category, everywhere or in one zone.",
    no_args_is_help=True,
)

CITY_FLAGS: Final[Mapping[str, str]] = {
    "code": "CODE",
    "name": "--name",
    "name_th": "--name-th",
    "name_en": "--name-en",
    "sla_hours": "--sla-hours",
    "category": "--category",
    "team": "--team",
    "zone": "--zone",
    "lang": "--lang",
}
"""The argument or flag of each catalogue field a refusal names."""

Lang = Annotated[
    str,
    typer.Option("--lang", metavar="th|en", help="Language of the messages and tables: th or en."),
]
CodeArgument = Annotated[
    str, typer.Argument(metavar="CODE", help="Letters A-Z, digits, . _ -", show_default=False)
]
NameTh = Annotated[str | None, typer.Option("--name-th", help="The Thai name.")]
NameEn = Annotated[str | None, typer.Option("--name-en", help="The English name.")]


def _flags() -> dict[str, str]:
    from geo.cli.main import FLAGS

    return {**FLAGS, **CITY_FLAGS}


def _language(lang: str) -> str:
    """``lang`` if we speak it; else the command is refused (in Thai, the default)."""
    from geo.cli.main import fail

    spoken = lang.strip().lower()
    if spoken not in LANGUAGES:
        refused = InvalidInputError(
            "lang", N_("must be one of: {choices}"), choices=", ".join(LANGUAGES)
        )
        raise fail(refused, lang="th", flags=_flags())
    return spoken


@contextmanager
def _catalogue(lang: str, *, write: bool) -> Iterator[Connection]:
    """A connection (a transaction when ``write``); a domain error ends the command in ``lang``."""
    from geo.cli.main import fail, open_engine

    try:
        with open_engine() as engine, engine.begin() if write else engine.connect() as conn:
            yield conn
    except IssuemapError as error:
        field = catalogue.ROUTE_REFUSAL_FIELDS.get(error.msgid)
        if field is not None and not isinstance(error, InvalidInputError):
            # "There is no team 'X'" is about --team: say so, as the admin form does.
            error = InvalidInputError(field, Message(error.msgid, error.values))
        raise fail(error, lang=lang, flags=_flags()) from error


def _say(lang: str, message: str, **values: object) -> None:
    """Print a catalog message in ``lang``; the values (user input) are never markup."""
    from geo.cli.main import console

    escaped = {k: escape(str(v)) for k, v in values.items()}
    console.print(translate(lang, message, **escaped), highlight=False, soft_wrap=True)


def _table(lang: str, headers: tuple[str, ...], rows: Sequence[tuple[object, ...]]) -> None:
    """Print ``rows`` under ``headers`` (catalog messages); every cell is shown as plain text."""
    from geo.cli.main import console

    table = Table(*(translate(lang, h) for h in headers))
    for row in rows:
        table.add_row(*(escape("" if cell is None else str(cell)) for cell in row))
    console.print(table)


def _none_yet(lang: str, rows: Sequence[tuple[object, ...]], message: str) -> bool:
    if not rows:
        _say(lang, message)
    return not rows


# --------------------------------------------------------------------------- categories


@categories_app.command("add")
def categories_add(
    code: CodeArgument,
    name_th: NameTh = None,
    name_en: NameEn = None,
    sla_hours: Annotated[
        int,
        typer.Option("--sla-hours", help="Hours the city promises to resolve a report of it in."),
    ] = 48,
    lang: Lang = "th",
) -> None:
    """Add a category; give a Thai name, an English name, or both.

    A name left out is the other one. A code in use is refused and nothing changes.
    """
    lang = _language(lang)
    with _catalogue(lang, write=True) as conn:
        thai, english = catalogue.either_name(name_th, name_en)
        stored = catalogue.put_category(
            conn,
            code=code,
            name_th=thai,
            name_en=english,
            sla_hours=sla_hours,
            active=True,
            create_only=True,
        )
    _say(
        lang,
        N_("Category {code} added: {name_th} / {name_en}, resolved within {hours} hours."),
        code=stored["code"],
        name_th=stored["name_th"],
        name_en=stored["name_en"],
        hours=stored["sla_hours"],
    )


@categories_app.command("list")
def categories_list(lang: Lang = "th") -> None:
    """List the categories offered to residents: code, names, SLA hours."""
    lang = _language(lang)
    with _catalogue(lang, write=False) as conn:
        found = catalogue.list_categories(conn)
    rows = [(c["code"], c["name_th"], c["name_en"], c["sla_hours"]) for c in found]
    if not _none_yet(lang, rows, N_("No categories yet: add one with `issuemap categories add`.")):
        headers = (N_("Code"), N_("Thai name"), N_("English name"), N_("SLA (hours)"))
        _table(lang, headers, rows)


# --------------------------------------------------------------------------- teams


@teams_app.command("add")
def teams_add(
    code: CodeArgument,
    name_th: NameTh = None,
    name_en: NameEn = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The name as the team calls itself; default: --name-th."),
    ] = None,
    lang: Lang = "th",
) -> None:
    """Add a field team; give a Thai name, an English name, or both. A code in use is refused."""
    lang = _language(lang)
    with _catalogue(lang, write=True) as conn:
        if not (name or "").strip():
            catalogue.either_name(name_th, name_en)  # refuses a team with no name at all
        team_id = catalogue.create_team(
            conn,
            code=code,
            name=name or name_th or name_en or "",
            name_th=name_th,
            name_en=name_en,
        )
    _say(lang, N_("Team {code} added (id {id})."), code=code.strip(), id=team_id)


@teams_app.command("list")
def teams_list(lang: Lang = "th") -> None:
    """List the field teams: code, names, current zones."""
    lang = _language(lang)
    with _catalogue(lang, write=False) as conn:
        found = catalogue.list_teams(conn)
    rows = [
        (t["code"], t["name"], t["name_th"], t["name_en"], ", ".join(t["zones"])) for t in found
    ]
    if not _none_yet(lang, rows, N_("No teams yet: add one with `issuemap teams add`.")):
        headers = (N_("Code"), N_("Name"), N_("Thai name"), N_("English name"), N_("Zones"))
        _table(lang, headers, rows)


# --------------------------------------------------------------------------- routes


@routes_app.command("add")
def routes_add(
    category: Annotated[str, typer.Option("--category", help="The category's code.")],
    team: Annotated[str, typer.Option("--team", help="The code of the team that gets it.")],
    zone: Annotated[
        str | None,
        typer.Option("--zone", help="Only in this current zone (its code); default: everywhere."),
    ] = None,
    lang: Lang = "th",
) -> None:
    """Send a category's new reports to a team, everywhere or only in one current zone.

    Stored reports keep their team. An unknown category, team or zone, a retired zone or
    a route that exists already is refused, naming the option.
    """
    lang = _language(lang)
    with _catalogue(lang, write=True) as conn:
        route_id = catalogue.add_category_route(
            conn, category=category, team=team, zone=zone or None
        )
    _say(
        lang,
        N_("Route {id} added: {category} goes to team {team} in {zone}."),
        id=route_id,
        category=category,
        team=team,
        zone=zone or translate(lang, N_("(everywhere)")),
    )


@routes_app.command("list")
def routes_list(lang: Lang = "th") -> None:
    """List the category routes: id, category, team, zone (everywhere when none)."""
    lang = _language(lang)
    with _catalogue(lang, write=False) as conn:
        found = catalogue.list_category_routes(conn)
    everywhere = translate(lang, N_("(everywhere)"))
    rows = [(r["id"], r["category"], r["team"], r["zone"] or everywhere) for r in found]
    if not _none_yet(lang, rows, N_("No routes yet: add one with `issuemap routes add`.")):
        _table(lang, (N_("Id"), N_("Category"), N_("Team"), N_("Zone")), rows)
