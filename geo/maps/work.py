"""The crew work view (``/work``): a team's open work as a phone-first list and map.

The page data is read through the report readers every other view uses
(``geo.maps.pagedata.due_page_ids`` to pick a page of items in due order,
``geo.reports.search.find_reports`` for the items, ``geo.maps.pagedata.open_work_counts``
for the backlog at the top), filtered to one team, so a filter or a visibility rule means
the same thing here as in lists, exports and maps. A long queue comes a page at a time.
The page is a Jinja2 template rendered with autoescaping on; the items reach it as one
JSON document that ``/static/work.js`` draws into the list and the map, so nothing anyone
typed is ever template source, and no script runs inline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

from jinja2.utils import htmlsafe_json_dumps
from sqlalchemy import Connection

from geo.access.policy import Principal, is_field_team, may_see_team_queue, may_work_reports
from geo.city.catalogue import category_names, display_name, list_teams
from geo.errors import InvalidInputError, NotFoundError
from geo.i18n import N_, gettext_for
from geo.maps.pagedata import due_page_ids, open_work_counts
from geo.maps.staff import PAGES
from geo.reports.search import ReportFilter, find_reports
from geo.reports.workflow import next_statuses
from geo.vocabulary import (
    CONFIRMED_MOVES,
    NOTE_MAX,
    OPEN_STATUSES,
    REPORT_STATUSES,
    STATUS_NAMES,
    UNDO_WINDOW_S,
)

WORK_LIMIT: Final = 100
"""Items on one page of the list (and the map); the counts at the top cover the whole queue."""

DESCRIPTION_CHARS: Final = 500
"""How much of a description an item carries; the rest is fetched when the crew asks."""

AGE_CHOICES: Final = (1, 3, 7, 30)
"""The age filter's choices: reports older than this many days."""

AGE_MAX_DAYS: Final = 3650
"""Largest age a request may ask for."""

WORK_LABELS: Final = {
    "title": N_("Work of {team}"),
    "choose_team": N_("Choose a team"),
    "team": N_("Team"),
    "overdue_count": N_("Overdue: {overdue} of {open} open reports"),
    "shown": N_("Showing reports {first} to {last} of those that match, soonest due first."),
    "next_page": N_("Next page"),
    "previous_page": N_("Previous page"),
    "pages": N_("Pages"),
    "read_all": N_("Read all"),
    "filters": N_("Filters"),
    "category": N_("Category"),
    "status": N_("Status"),
    "all": N_("All"),
    "overdue_only": N_("Overdue only"),
    "age": N_("Age"),
    "any_age": N_("Any age"),
    "older_than": N_("Older than {days} days"),
    "apply": N_("Show"),
    "views": N_("Views"),
    "list_view": N_("List"),
    "map_view": N_("Map"),
    "no_reports": N_("No open reports match these choices."),
    "overdue": N_("Overdue"),
    "due": N_("Due"),
    "reported": N_("Reported {age} ago"),
    "days": N_("d"),
    "hours": N_("h"),
    "minutes": N_("min"),
    "photo": N_("Photo {n} of report {id}"),
    "navigate": N_("Navigate"),
    "geo_link": N_("Open in a map app"),
    "maps_link": N_("Directions in Google Maps"),
    "on_map": N_("Show on the map"),
    "in_list": N_("Show in the list"),
    "move": N_("Move to"),
    "details": N_("Note or photo with the move"),
    "staff_note": N_("Note for staff"),
    "public_note": N_("Note for the reporter"),
    "after_photo": N_("Photo of the work"),
    "confirm_title": N_("Are you sure?"),
    "confirm_move": N_("Move report #{id} to “{status}”? The reporter is told."),
    "confirm": N_("Yes, move it"),
    "cancel": N_("Cancel"),
    "moved": N_("Report #{id}: {status}."),
    "undo": N_("Undo"),
    "undone": N_("Report #{id} is back to “{status}”."),
    "failed": N_("Could not change the status"),
    "session_ended": N_("Your session has ended. Sign in again to go on."),
    "sign_in": N_("Sign in"),
    "forward": N_("Forward"),
    "forward_title": N_("Forward report #{id} to another team"),
    "forward_team": N_("Team to take it over"),
    "forward_reason": N_("Why"),
    "forward_send": N_("Forward"),
    "forwarded": N_("Report #{id} was passed to {team}."),
    "live_stale": N_("Reports have changed. Reload the page to see them as they are now."),
    "live_reload": N_("Reload"),
    "read_only": N_(
        "You can look at this team's work; only the team and administrators change it."
    ),
    "sign_out": N_("Sign out"),
}
"""Every word of the work page, by key, as its English message id."""

SESSION_ENDED: Final = WORK_LABELS["session_ended"]
"""What the sign-in form says to someone whose session ended while they worked."""


@dataclass(frozen=True, slots=True)
class WorkFilters:
    """What a crew member chose: a category, a status, overdue only, a minimum age in days."""

    category: str | None = None
    status: str | None = None
    overdue: bool = False
    age_days: int | None = None

    def __post_init__(self) -> None:
        """Refuse a status outside the open ones and an age out of range, naming the field."""
        if self.status is not None and self.status not in OPEN_STATUSES:
            raise InvalidInputError(
                "status",
                N_("unknown status {status!r}; use one of {choices}"),
                status=self.status[:40],
                choices=", ".join(OPEN_STATUSES),
            )
        if self.age_days is not None and not 0 <= self.age_days <= AGE_MAX_DAYS:
            raise InvalidInputError(
                "age", N_("must be between 0 and {limit} days"), limit=AGE_MAX_DAYS
            )


@dataclass(frozen=True, slots=True)
class WorkPage:
    """What the work page shows: the team (or the teams to choose from) and its work."""

    lang: str
    team: dict[str, Any] | None
    teams: list[dict[str, Any]]
    choose_team: bool
    """No team chosen yet: a planner or admin picks one from ``teams``."""
    team_picker: bool
    """Whether the person may look at other teams' work (planners and admins)."""
    actions: bool
    filters: WorkFilters
    categories: dict[str, str]
    items: list[dict[str, Any]]
    open_count: int
    overdue_count: int
    page: int = 1
    """Which page of the matching items this is (``WORK_LIMIT`` to a page)."""
    has_next: bool = False

    @property
    def truncated(self) -> bool:
        """Whether other pages hold more of what matches."""
        return self.has_next or self.page > 1

    @property
    def first(self) -> int:
        """The number of the page's first item among those that match."""
        return (self.page - 1) * WORK_LIMIT + 1


def _team_choices(conn: Connection, lang: str) -> list[dict[str, Any]]:
    return [
        {
            "id": int(t["id"]),
            "code": t["code"],
            "name": display_name(lang, name=t["name"], name_th=t["name_th"], name_en=t["name_en"]),
        }
        for t in list_teams(conn)
    ]


def _work_team(
    teams: list[dict[str, Any]], principal: Principal, team_code: str | None
) -> dict[str, Any] | None:
    """The team whose work ``principal`` opens: a field team its own, others the one asked.

    A field team asking for another team's code is told there is no such team, as for an
    unknown code, so the page never confirms which teams exist.
    """
    if is_field_team(principal):
        own = next((t for t in teams if t["id"] == principal.team_id), None)
        if own is None or (team_code is not None and team_code != own["code"]):
            raise NotFoundError(N_("There is no team {code!r}."), code=team_code or "")
        return own
    if team_code is None:
        return None
    chosen = next((t for t in teams if t["code"] == team_code), None)
    if chosen is None or not may_see_team_queue(principal, chosen["id"]):
        raise NotFoundError(N_("There is no team {code!r}."), code=team_code)
    return chosen


def work_page(
    conn: Connection,
    principal: Principal,
    filters: WorkFilters,
    *,
    team_code: str | None,
    lang: str,
    now: datetime,
    page: int = 1,
) -> WorkPage:
    """The work page's data for ``principal``: their team's open work, overdue first.

    Field teams see their own team (another code is "not found"); planners and admins
    choose a team with ``team_code`` and, without one, get the list of teams to choose
    from. Items come soonest due first, which puts the overdue ones at the top,
    ``WORK_LIMIT`` to a ``page``; only field teams and admins get the next statuses as
    buttons (planners only look).
    """
    if page < 1:
        raise InvalidInputError("page", N_("must be at least {ge}"), ge=1)
    teams = _team_choices(conn, lang)
    team = _work_team(teams, principal, team_code)
    categories = category_names(conn, lang)
    if filters.category is not None and filters.category not in categories:
        raise InvalidInputError(
            "category", N_("unknown category {code!r}"), code=filters.category[:40]
        )
    actions = may_work_reports(principal)
    picker = not is_field_team(principal)
    if team is None:
        return WorkPage(lang, None, teams, True, picker, actions, filters, categories, [], 0, 0)
    flt = ReportFilter(
        team_ids=(team["id"],),
        categories=(filters.category,) if filters.category else (),
        statuses=(filters.status,) if filters.status else OPEN_STATUSES,
        created_to=now - timedelta(days=filters.age_days) if filters.age_days else None,
    )
    # One more than a page tells whether another page follows.
    ids = due_page_ids(
        conn,
        flt,
        principal,
        limit=WORK_LIMIT + 1,
        offset=(page - 1) * WORK_LIMIT,
        overdue=filters.overdue,
    )
    shown = tuple(ids[:WORK_LIMIT])
    rows = (
        find_reports(conn, replace(flt, ids=shown), principal, limit=len(shown), order="due")
        if shown
        else []
    )
    counts = open_work_counts(conn, ReportFilter(team_ids=(team["id"],)), principal)
    items = [_item(r, actions=actions) for r in rows]
    return WorkPage(
        lang,
        team,
        teams,
        False,
        picker,
        actions,
        filters,
        categories,
        items,
        counts.open,
        counts.overdue,
        page=page,
        has_next=len(ids) > WORK_LIMIT,
    )


def _moment(value: datetime | None) -> str | None:
    """A moment to the second in UTC (``2026-05-01T08:00:00Z``), as the script reads it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _item(row: dict[str, Any], *, actions: bool) -> dict[str, Any]:
    """One report as the page's script reads it (plain JSON values), in few bytes.

    The category's name is the page's (``categories``); empty fields are left out; a
    description longer than ``DESCRIPTION_CHARS`` is cut (``description_cut``) and the
    script fetches the rest when asked.
    """
    description = row["description"] or ""
    item: dict[str, Any] = {
        "id": int(row["id"]),
        # About 0.1 m: as precise as the navigation links are written.
        "lat": round(float(row["lat"]), 6),
        "lon": round(float(row["lon"]), 6),
        "category": row["category"],
        "status": row["status"],
        "created_at": _moment(row["created_at"]),
        "due_at": _moment(row["due_at"]),
        "overdue": bool(row["overdue"]),
        "next": next_statuses(row["status"]) if actions else [],
    }
    if description:
        item["description"] = description[:DESCRIPTION_CHARS]
    if len(description) > DESCRIPTION_CHARS:
        item["description_cut"] = True
    if row["address"]:
        item["address"] = row["address"]
    if row["photo_ids"]:
        item["photo_ids"] = [int(p) for p in row["photo_ids"]]
    return item


def work_labels(lang: str) -> dict[str, str]:
    """The work page's words in ``lang``."""
    gettext = gettext_for(lang)
    return {key: gettext(message) for key, message in WORK_LABELS.items()}


def page_data(
    page: WorkPage, *, zone: tzinfo, tiles: str | None, attribution: str | None
) -> dict[str, Any]:
    """The JSON document ``/static/work.js`` draws the page from."""
    gettext = gettext_for(page.lang)
    flt = page.filters
    return {
        "lang": page.lang,
        "timezone": str(zone),
        "team": page.team,
        # Where a report may be forwarded: only someone who moves reports needs the list.
        "teams": [
            {"code": t["code"], "name": t["name"]}
            for t in page.teams
            if page.actions and (page.team is None or t["id"] != page.team["id"])
        ],
        "actions": page.actions,
        "items": page.items,
        "counts": {"open": page.open_count, "overdue": page.overdue_count},
        "filters": {
            "category": flt.category,
            "status": flt.status,
            "overdue": flt.overdue,
            "age_days": flt.age_days,
            "any": flt != WorkFilters(),
        },
        "truncated": page.truncated,
        "page": page.page,
        "open_statuses": list(OPEN_STATUSES),
        "confirm": list(CONFIRMED_MOVES),
        "transitions": {s: next_statuses(s) for s in REPORT_STATUSES} if page.actions else {},
        "statuses": {s: gettext(m) for s, m in STATUS_NAMES.items()},
        "categories": page.categories,
        "undo_s": UNDO_WINDOW_S,
        "note_max": NOTE_MAX,
        "tiles": tiles,
        "attribution": attribution or "",
        "l": work_labels(page.lang),
    }


def render_work_page(
    page: WorkPage,
    *,
    nonce: str,
    zone: tzinfo,
    tiles: str | None,
    attribution: str | None,
    switch_href: str,
    page_href: Callable[[int], str],
    csrf_token: str,
) -> str:
    """The work page in ``page.lang``.

    ``switch_href`` is the same page in the other language, ``page_href(n)`` its page ``n``.
    """
    gettext = gettext_for(page.lang)

    def _(message: str, **values: object) -> str:
        said = gettext(message)
        return said.format(**values) if values else said

    data = page_data(page, zone=zone, tiles=tiles, attribution=attribution)
    return PAGES.get_template("work.html.j2").render(
        _=_,
        l=work_labels(page.lang),
        lang=page.lang,
        other_lang="en" if page.lang == "th" else "th",
        nonce=nonce,
        page=page,
        statuses={s: gettext(STATUS_NAMES[s]) for s in OPEN_STATUSES},
        age_choices=AGE_CHOICES,
        data=data,
        # Thai as UTF-8 rather than \\u escapes (half the bytes); <, > and & still escaped.
        data_json=htmlsafe_json_dumps(data, ensure_ascii=False, separators=(",", ":")),
        switch_href=switch_href,
        page_href=page_href,
        csrf_token=csrf_token,
    )
