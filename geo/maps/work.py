"""The crew work view (``/work``): a team's open work as a phone-first list and map.

The page data is read through the report readers every other view uses
(``geo.reports.search.find_reports`` for the items, ``geo.maps.pagedata.open_work_counts``
for the backlog at the top), filtered to one team, so a filter or a visibility rule means
the same thing here as in lists, exports and maps. The page is a Jinja2 template rendered
with autoescaping on; the items reach it as one JSON document that ``/static/work.js``
draws into the list and the map, so nothing anyone typed is ever template source, and no
script runs inline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Final

from sqlalchemy import Connection

from geo.access.policy import Principal, is_field_team, may_see_team_queue, may_work_reports
from geo.city.catalogue import category_names, display_name, list_teams
from geo.errors import InvalidInputError, NotFoundError
from geo.i18n import N_, gettext_for
from geo.maps.pagedata import open_work_counts
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

WORK_LIMIT: Final = 500
"""Most items the page lists; the counts at the top always cover the whole queue."""

AGE_CHOICES: Final = (1, 3, 7, 30)
"""The age filter's choices: reports older than this many days."""

AGE_MAX_DAYS: Final = 3650
"""Largest age a request may ask for."""

WORK_LABELS: Final = {
    "title": N_("Work of {team}"),
    "choose_team": N_("Choose a team"),
    "team": N_("Team"),
    "overdue_count": N_("Overdue: {overdue} of {open} open reports"),
    "shown": N_("Showing the first {shown} reports that match; narrow the filters to see others."),
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
    truncated: bool


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
) -> WorkPage:
    """The work page's data for ``principal``: their team's open work, overdue first.

    Field teams see their own team (another code is "not found"); planners and admins
    choose a team with ``team_code`` and, without one, get the list of teams to choose
    from. Items come soonest due first, which puts the overdue ones at the top; only field
    teams and admins get the next statuses as buttons (planners only look).
    """
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
        return WorkPage(
            lang, None, teams, True, picker, actions, filters, categories, [], 0, 0, False
        )
    flt = ReportFilter(
        team_ids=(team["id"],),
        categories=(filters.category,) if filters.category else (),
        statuses=(filters.status,) if filters.status else OPEN_STATUSES,
        created_to=now - timedelta(days=filters.age_days) if filters.age_days else None,
    )
    found = find_reports(conn, flt, principal, limit=WORK_LIMIT, order="due")
    rows = found
    if filters.overdue:
        # Soonest due first puts every overdue report ahead of the rest, so this keeps them all.
        rows = [r for r in found if r["overdue"]]
    # More may match only if the page was full of what was asked for.
    truncated = len(found) >= WORK_LIMIT and len(rows) == len(found)
    counts = open_work_counts(conn, ReportFilter(team_ids=(team["id"],)), principal)
    items = [_item(r, categories, actions=actions) for r in rows]
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
        truncated,
    )


def _item(row: dict[str, Any], categories: dict[str, str], *, actions: bool) -> dict[str, Any]:
    """One report as the page's script reads it (plain JSON values)."""
    return {
        "id": int(row["id"]),
        "lat": float(row["lat"]),
        "lon": float(row["lon"]),
        "category": row["category"],
        "category_name": categories.get(row["category"], row["category"]),
        "description": row["description"] or "",
        "address": row["address"] or "",
        "status": row["status"],
        "created_at": row["created_at"].isoformat(),
        "due_at": row["due_at"].isoformat() if row["due_at"] else None,
        "overdue": bool(row["overdue"]),
        "photo_ids": [int(p) for p in row["photo_ids"]],
        "next": next_statuses(row["status"]) if actions else [],
    }


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
        "teams": [t for t in page.teams if page.team is None or t["id"] != page.team["id"]],
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
    csrf_token: str,
) -> str:
    """The work page in ``page.lang``; ``switch_href`` is the same page in the other language."""
    gettext = gettext_for(page.lang)

    def _(message: str, **values: object) -> str:
        said = gettext(message)
        return said.format(**values) if values else said

    return PAGES.get_template("work.html.j2").render(
        _=_,
        l=work_labels(page.lang),
        lang=page.lang,
        other_lang="en" if page.lang == "th" else "th",
        nonce=nonce,
        page=page,
        statuses={s: gettext(STATUS_NAMES[s]) for s in OPEN_STATUSES},
        age_choices=AGE_CHOICES,
        data=page_data(page, zone=zone, tiles=tiles, attribution=attribution),
        switch_href=switch_href,
        csrf_token=csrf_token,
    )
