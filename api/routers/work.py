"""The crew work view: ``GET /work``, a team's open work for a signed-in staff member.

A browser without a session is sent to ``/login?next=/work`` (``login.SignInRequired``);
one whose session has ended gets the sign-in form in its language with a sentence saying
so, never a JSON error. Status moves, undo and forwarding are the JSON API's routes, which
the page's script calls with the session cookie and its CSRF token.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse

from api.deps import CityDep, ConnDep, MapSettingsDep, PrincipalDep
from api.errors import error_responses
from api.params import Text
from api.routers.login import SignInRequired, wants_html
from geo.access.sessions import SESSION_COOKIE
from geo.errors import AuthenticationError
from geo.i18n import N_, pick_language, translate
from geo.maps.builders import content_security_policy
from geo.maps.staff import render_login
from geo.maps.work import (
    AGE_MAX_DAYS,
    SESSION_ENDED,
    WORK_LIMIT,
    WorkFilters,
    render_work_page,
    work_page,
)
from geo.vocabulary import CODE_MAX, OPEN_STATUSES

PAGE_MAX = 10_000
"""The last page of the list a request may ask for."""

router = APIRouter(tags=["staff pages"], responses=error_responses(422, 503, page=True))

_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
    "Vary": "Accept-Language, Cookie",
}


def _html(page: str, *, nonce: str, tiles: str | None, status_code: int = 200) -> HTMLResponse:
    policy = content_security_policy(nonce=nonce, tiles=tiles, frame_ancestors=["'none'"])
    return HTMLResponse(
        page, status_code=status_code, headers={"Content-Security-Policy": policy, **_HEADERS}
    )


def _csrf_token(request: Request) -> str:
    token: str = request.scope["csrftoken"]()
    return token


def _this_page(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


@router.get(
    "/work",
    response_class=HTMLResponse,
    summary="A team's open work (crew work view)",
    responses=error_responses(401, 404, page=True),
)
def work(
    request: Request,
    conn: ConnDep,
    principal: PrincipalDep,
    maps: MapSettingsDep,
    city: CityDep,
    team: Annotated[
        Text | None,
        Query(max_length=CODE_MAX, description="Team code (planners and admins choose one)."),
    ] = None,
    category: Annotated[
        Text | None, Query(max_length=CODE_MAX, description="Only this category code.")
    ] = None,
    status: Annotated[
        str | None,
        Query(
            pattern="^(" + "|".join(OPEN_STATUSES) + ")?$",
            description="Only this open status.",
        ),
    ] = None,
    overdue: Annotated[bool, Query(description="Only overdue reports.")] = False,
    age: Annotated[
        str | None,
        Query(
            pattern=r"^\d{0,5}$",
            description=f"Only reports older than this many days (0 to {AGE_MAX_DAYS}).",
        ),
    ] = None,
    lang: Annotated[
        str | None, Query(max_length=8, description="Page language, `th` or `en`.")
    ] = None,
    page: Annotated[
        int,
        Query(ge=1, le=PAGE_MAX, description=f"Page of the list ({WORK_LIMIT} reports each)."),
    ] = 1,
    accept_language: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> HTMLResponse:
    """The team's open work, overdue first then soonest due, as a list and a map.

    A field team sees its own team's work (another team's code is 404); planners and
    administrators choose a team with `team` (without one, the page lists the teams).
    Filters: `category`, `status` (an open status), `overdue`, `age` (older than this many
    days); a long list comes a `page` at a time. Field teams and administrators get the
    next statuses as buttons; planners only look.
    """
    page_lang = pick_language(lang, accept_language)
    nonce = secrets.token_urlsafe(18)
    if not principal.is_staff:
        if request.cookies.get(SESSION_COOKIE):
            # A session cookie that no longer signs anyone in: the form, saying why.
            login = render_login(
                lang=page_lang,
                csrf_token=_csrf_token(request),
                next_path=_this_page(request),
                message=translate(page_lang, SESSION_ENDED),
            )
            return _html(login, nonce=nonce, tiles=None, status_code=401)
        if wants_html(request):
            raise SignInRequired(_this_page(request))
        raise AuthenticationError(N_("This needs a field-team, planner or admin key."))
    filters = WorkFilters(
        category=category or None,
        status=status or None,
        overdue=overdue,
        age_days=int(age) if age else None,
    )
    work_data = work_page(
        conn,
        principal,
        filters,
        team_code=team or None,
        lang=page_lang,
        now=datetime.now(UTC),
        page=page,
    )
    other = "en" if page_lang == "th" else "th"

    def href(**changes: str | int) -> str:
        url = request.url.include_query_params(**changes)
        return url.path + "?" + url.query

    html = render_work_page(
        work_data,
        nonce=nonce,
        zone=city.zone,
        tiles=maps.tiles,
        attribution=maps.tiles_attribution,
        switch_href=href(lang=other),
        page_href=lambda n: href(page=n),
        csrf_token=_csrf_token(request),
    )
    return _html(html, nonce=nonce, tiles=maps.tiles)
