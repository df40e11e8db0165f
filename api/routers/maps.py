"""Map pages: the city overview, a field team's zone, the public map and the ward dashboard.

Every page loads its scripts and styles from ``/static/vendor`` (``scripts/vendor_assets.sh``);
the only third-party request it makes is for base-map tiles, if tiles are configured.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from api.deps import (
    KEY_COOKIE,
    AppStateDep,
    BrowserPrincipalDep,
    CityDep,
    MapSettingsDep,
    PrivacyDep,
    ReadConnDep,
    authenticate_key,
)
from api.errors import error_responses
from api.params import BBoxDep, CategoriesDep, StatusesDep, TimeWindowDep
from api.routers.login import SignInRequired, wants_html
from geo.access.policy import Principal
from geo.errors import AuthenticationError
from geo.i18n import N_, pick_language
from geo.maps.builders import (
    MEASURES,
    content_security_policy,
    list_security_policy,
    render_page,
)
from geo.maps.choropleth import CLASS_METHODS, K_DEFAULT, K_MAX, K_MIN
from geo.maps.pages import (
    MAX_FIXED_DAYS,
    MEASURES_PATH,
    PageFilters,
    city_page_map,
    public_page_list,
    public_page_map,
    wards_page_map,
    wards_page_measures,
    zone_page_map,
)
from geo.settings import MapSettings
from geo.vocabulary import CODE_MAX

router = APIRouter(tags=["maps"], responses=error_responses(422, 503, page=True))

log = logging.getLogger(__name__)

STATIC_DIR = FilePath(__file__).resolve().parent.parent / "static"
"""The folder ``api/app.py`` serves as ``/static``, vendored assets in ``vendor/``."""


Lang = Annotated[
    str | None,
    Query(max_length=8, description="Label language, `th` or `en`; else Accept-Language."),
]
AcceptLanguage = Annotated[str | None, Header(include_in_schema=False)]
PageNo = Annotated[int, Query(ge=1, le=10_000, description="Page of markers, from 1.")]
FixedDays = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_FIXED_DAYS,
        description="Also show reports resolved or closed in this many days, with the time "
        "they took to fix (0: open reports only).",
    ),
]
View = Annotated[
    str,
    Query(
        pattern="^(map|list)$",
        description="`map`, or `list`: the same reports as a table, with no script.",
    ),
]
KeyParam = Annotated[
    str | None,
    Query(
        max_length=200,
        description="API key, for browsers that cannot send `X-API-Key` (the page tells "
        "browsers never to pass its address on as a referrer).",
    ),
]


def _live() -> bool:
    # Only include the live-update client once it exists: a 404 script is a console error.
    return (STATIC_DIR / "live.js").is_file()


class KeyInUrl(Exception):
    """A staff page was opened with ``?key=``: answer with a redirect that drops it."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(url)
        self.url = url
        self.key = key


def key_redirect(request: Request, error: Exception) -> RedirectResponse:
    """Move a valid ``?key=`` into an HttpOnly cookie, so no later URL carries it.

    The cookie is sent with every request to the site, but only the map pages and the
    live stream (``BrowserPrincipalDep``) read it.
    """
    assert isinstance(error, KeyInUrl)
    answer = RedirectResponse(error.url, status_code=303)
    answer.headers["Cache-Control"] = "no-store"
    answer.headers["Referrer-Policy"] = "no-referrer"
    # ``?key=`` is deprecated: staff sign in at /login; keys belong in headers.
    answer.headers["Deprecation"] = "true"
    answer.headers["Link"] = '</login>; rel="alternate"'
    answer.set_cookie(
        KEY_COOKIE,
        error.key,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


def _render(
    fmap: object, *, maps: MapSettings, frame_ancestors: list[str], private: bool
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    page = render_page(fmap, nonce=nonce)  # type: ignore[arg-type]
    policy = content_security_policy(nonce=nonce, tiles=maps.tiles, frame_ancestors=frame_ancestors)
    return _html(page, policy=policy, private=private)


def _html(page: str, *, policy: str, private: bool) -> HTMLResponse:
    headers = {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer" if private else "strict-origin-when-cross-origin",
        "Cache-Control": "no-store" if private else "public, max-age=60",
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(page, headers=headers)


async def _staff(
    request: Request, state: AppStateDep, principal: BrowserPrincipalDep, key: KeyParam = None
) -> Principal:
    if key:
        principal = await run_in_threadpool(authenticate_key, state.engine, key)
        if principal.is_staff:
            # Keys in URLs end up in histories, logs and shared links: keep it in a cookie
            # and send the browser to the same page without it.
            log.warning("a staff map was opened with ?key= (deprecated; sign in at /login)")
            url = request.url.remove_query_params("key")
            raise KeyInUrl(url.path + (f"?{url.query}" if url.query else ""), key)
    if not principal.is_staff:
        if wants_html(request):
            url = request.url.remove_query_params("key")
            raise SignInRequired(url.path + (f"?{url.query}" if url.query else ""))
        raise AuthenticationError(
            N_("This map needs the API key of a field team, planner or admin.")
        )
    return principal


StaffDep = Annotated[Principal, Depends(_staff)]


def _sent_key(request: Request) -> str | None:
    """The key the page was requested with, for its status buttons."""
    header = request.headers.get("x-api-key")
    if header:
        return header
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.cookies.get(KEY_COOKIE)


@router.get("/", response_class=HTMLResponse, summary="City overview map")
def city_map(
    conn: ReadConnDep,
    maps: MapSettingsDep,
    privacy: PrivacyDep,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> HTMLResponse:
    """City overview map: wards, field-team zones and a heat layer of open reports.

    In Thai unless `lang` or Accept-Language asks for English, names of wards, zones and
    teams included.
    """
    fmap = city_page_map(
        conn,
        maps=maps,
        public_rounding_m=privacy.public_rounding_m,
        lang=pick_language(lang, accept_language),
    )
    return _render(fmap, maps=maps, frame_ancestors=["'self'"], private=False)


@router.get("/maps/public", response_class=HTMLResponse, summary="Public map (embeddable)")
def public_page(
    conn: ReadConnDep,
    maps: MapSettingsDep,
    privacy: PrivacyDep,
    city: CityDep,
    bbox: BBoxDep,
    categories: CategoriesDep,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
    page: PageNo = 1,
    fixed_days: FixedDays = 30,
    view: View = "map",
) -> HTMLResponse:
    """Open reports as a heat layer and clustered markers, and recently fixed work.

    Each popup shows the status in words, due time or time to fix, the latest public note
    and a link to the report's status page. `view=list` gives the same reports as a table.
    No personal data; locations are rounded. Embed it with an iframe; the sites allowed to
    do so are set by ``ISSUEMAP_MAP_FRAME_ANCESTORS``.
    """
    filters = PageFilters(
        bbox=bbox,
        categories=categories,
        lang=pick_language(lang, accept_language),
        page=page,
        fixed_days=fixed_days,
    )
    if view == "list":
        page_html = public_page_list(
            conn, filters, maps=maps, public_rounding_m=privacy.public_rounding_m, zone=city.zone
        )
        policy = list_security_policy(frame_ancestors=list(maps.frame_ancestors))
        return _html(page_html, policy=policy, private=False)
    fmap = public_page_map(
        conn, filters, maps=maps, public_rounding_m=privacy.public_rounding_m, live=_live()
    )
    return _render(fmap, maps=maps, frame_ancestors=list(maps.frame_ancestors), private=False)


@router.get(
    "/maps/zone",
    response_class=HTMLResponse,
    summary="A field team's zone map",
    responses=error_responses(401, 404, page=True),
)
def zone_page(
    zone_code: Annotated[
        str, Query(alias="zone", min_length=1, max_length=CODE_MAX, description="Zone code.")
    ],
    request: Request,
    conn: ReadConnDep,
    principal: StaffDep,
    maps: MapSettingsDep,
    bbox: BBoxDep,
    categories: CategoriesDep,
    statuses: StatusesDep,
    window: TimeWindowDep,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
    page: PageNo = 1,
) -> HTMLResponse:
    """A field team's zone: outline, wards, heat of open reports, workable markers.

    Markers are the filtered open reports in view (overdue ones ringed in red), each with
    buttons that move the report to its next status. Needs the key of the team working the
    zone (or a planner or admin key), in ``X-API-Key`` or the ``key`` parameter.
    """
    filters = PageFilters(
        bbox=bbox,
        categories=categories,
        statuses=statuses,
        created_from=window.start,
        created_to=window.end,
        lang=pick_language(lang, accept_language),
        page=page,
    )
    fmap = zone_page_map(
        conn,
        principal,
        zone_code,
        filters,
        maps=maps,
        api_key=_sent_key(request),
        live=_live(),
    )
    return _render(fmap, maps=maps, frame_ancestors=["'self'"], private=True)


Measure = Annotated[
    str,
    Query(
        pattern="^(" + "|".join(MEASURES) + ")$",
        description="count: reports; sla: share resolved within SLA; "
        "median_hours: median time to resolve.",
    ),
]
Method = Annotated[
    str,
    Query(
        pattern="^(" + "|".join(CLASS_METHODS) + ")$",
        description="How wards are classed: quantiles (as many wards in each class) "
        "or fisher_jenks (natural breaks).",
    ),
]
Classes = Annotated[
    int, Query(ge=K_MIN, le=K_MAX, description="How many classes (fewer if few values).")
]


@router.get(
    "/maps/wards",
    response_class=HTMLResponse,
    summary="Ward dashboard for planners",
    responses=error_responses(401, 403, page=True),
)
def wards_page(
    conn: ReadConnDep,
    principal: StaffDep,
    maps: MapSettingsDep,
    window: TimeWindowDep,
    measure: Measure = "count",
    method: Method = "quantiles",
    k: Classes = K_DEFAULT,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> HTMLResponse:
    """Wards coloured by report count, share resolved within SLA, or median time to resolve.

    Counts reports created from `created_from` to `created_to` (dates; by default the last
    90 days) in the current ward that covers each report; the legend says how many lie
    outside every current ward. For planners and administrators.
    """
    filters = PageFilters(
        created_from=window.start,
        created_to=window.end,
        lang=pick_language(lang, accept_language),
    )
    fmap = wards_page_map(conn, principal, filters, measure=measure, maps=maps, method=method, k=k)
    return _render(fmap, maps=maps, frame_ancestors=["'self'"], private=True)


@router.get(
    MEASURES_PATH,
    summary="Ward dashboard: each ward's colour and values",
    responses=error_responses(401, 403),
)
def wards_measures(
    conn: ReadConnDep,
    principal: StaffDep,
    window: TimeWindowDep,
    measure: Measure = "count",
    method: Method = "quantiles",
    k: Classes = K_DEFAULT,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> JSONResponse:
    """Each ward's colour and values on the ward dashboard with the same choices, by ward code.

    The dashboard of a city with many wards draws their outlines from vector tiles and
    colours them from this. For planners and administrators.
    """
    filters = PageFilters(
        created_from=window.start,
        created_to=window.end,
        lang=pick_language(lang, accept_language),
    )
    body = wards_page_measures(conn, principal, filters, measure=measure, method=method, k=k)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
