"""Reusable query parameters: bounding box, time window, filters by code and id, paging.

Each group is parsed and validated once, here, as a typed dependency; a router takes the
``...Dep`` alias and gets plain values back, or a whole ``geo.reports.search.ReportFilter`` from
``ReportFilterDep``. A bad value raises ``InvalidInputError`` naming the parameter, which
the app's handlers turn into a 422 (FastAPI's own checks, such as ``limit``'s range, end
there too). The groups are coroutines, though they only parse: a plain function dependency
runs through the thread pool, a hop per parameter group on every request.

Text never carries a NUL character: PostgreSQL cannot store one, so it would fail deep in
a query. ``refuse_nul_characters`` runs before every route and checks each query, path and
header value; body fields are ``Text`` (or pass through ``refuse_nul``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from geo.city.coordinates import BBox, parse_bbox
from geo.errors import InvalidInputError
from geo.i18n import N_
from geo.reports.search import MAX_PAGE, ReportFilter
from geo.vocabulary import REPORT_STATUSES

MAX_VALUES = 100
"""Most codes or ids one filter parameter may list."""

MAX_ID = 2**62
"""Largest id accepted in a parameter (ids are bigints; this keeps clear of overflow)."""

NUL_PROBLEM = N_("must not contain NUL characters (%00)")

# Headers by the name their documentation gives them; others are written Like-This.
_HEADER_NAMES = {"x-api-key": "X-API-Key", "idempotency-key": "Idempotency-Key"}


def refuse_nul(name: str, value: str) -> str:
    """``value`` unchanged, or ``InvalidInputError`` naming ``name`` if it holds a NUL."""
    if "\x00" in value:
        raise InvalidInputError(name, NUL_PROBLEM)
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(NUL_PROBLEM)
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
"""A string field of a request body; a NUL in it is a 422 naming the field."""

DateOrTime = Annotated[
    str | None,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date", "maxLength": 64},
                {"type": "string", "format": "date-time", "maxLength": 64},
            ]
        }
    ),
]
"""A date or a time with its offset, typed so in the OpenAPI document; the parameter is read
as text by the dependency that takes it, which also accepts forms the schema leaves out (a
``+`` that arrived as a space; Open311's year or month alone)."""


ACCEPTED_EVERYWHERE = frozenset({"lang"})
"""Query parameters any route takes: ``lang`` picks the language of pages and messages."""

UNKNOWN_PARAMETER = N_(
    "is not a parameter of this address, so it would be ignored; it takes: {names}"
)
_NAME_SHOWN = 40
_NAMES_SHOWN = 5


def _query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameter names ``dependant`` and its dependencies declare."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        for param in current.query_params:
            annotation = param.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                # A model of query parameters (``Annotated[Model, Query()]``) takes its fields.
                names.update(f.alias or n for n, f in annotation.model_fields.items())
            else:
                names.add(param.alias)
        pending.extend(current.dependencies)
    return frozenset(names)


_ROUTE_QUERY_NAMES: dict[int, tuple[APIRoute, frozenset[str]]] = {}


def accepted_query_names(route: APIRoute) -> frozenset[str]:
    """Every query parameter ``route`` reads: those it declares and ``ACCEPTED_EVERYWHERE``.

    Declared by the route's own parameters and dependencies. FastAPI keeps a router's and
    the app's ``dependencies=`` apart from the route it includes, so none of those may take
    a query parameter (none does: they check keys, sessions and NUL characters).
    """
    known = _ROUTE_QUERY_NAMES.get(id(route))
    if known is None or known[0] is not route:
        known = (route, _query_names(route.dependant) | ACCEPTED_EVERYWHERE)
        _ROUTE_QUERY_NAMES[id(route)] = known
    return known[1]


async def refuse_unknown_parameters(request: Request) -> None:
    """Refuse a query parameter the route does not read, naming it (422; Open311: 400).

    A misspelt or invented filter (``overdue=true`` where there is none) would otherwise be
    ignored, and the answer would look filtered when it is not. Only reads (GET, and HEAD,
    which runs as GET) are checked: writes take their input from the body, and an Open311
    POST may carry ``api_key`` in the query or the body, as the spec allows. The app runs
    this before every route, so the error is in the route's own format; mounted apps
    (``/ogc``, ``/static``, the admin) check their own.
    """
    route = request.scope.get("route")
    if request.method != "GET" or not isinstance(route, APIRoute):
        return
    refuse_names_outside(request, accepted_query_names(route))


def refuse_names_outside(request: Request, accepted: frozenset[str]) -> None:
    """Refuse the request's query parameters that are not in ``accepted``, naming them."""
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in accepted]
    if unknown:
        shown = [
            name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "..." for name in unknown
        ]
        raise InvalidInputError(
            ", ".join(shown[:_NAMES_SHOWN]), UNKNOWN_PARAMETER, names=", ".join(sorted(accepted))
        )


async def refuse_nul_characters(request: Request) -> None:
    """Refuse a NUL in any path parameter, query parameter (name or value) or header.

    The app runs this before every route, so the error is in the route's own format. It
    is a coroutine so that it runs on the event loop, not through the thread pool that a
    plain function dependency costs on every request.
    """
    for name, value in request.path_params.items():
        if isinstance(value, str):
            refuse_nul(name, value)
    for name, value in request.query_params.multi_items():
        if "\x00" in name:
            raise InvalidInputError(
                repr(name), N_("a parameter name must not contain NUL characters (%00)")
            )
        refuse_nul(name, value)
    for name, value in request.headers.items():
        refuse_nul(_HEADER_NAMES.get(name, name.title()), value)


_SPLIT = re.compile(r"\s*,\s*")
# An unencoded "+" in a URL arrives as a space, turning "...T08:00+07:00" into
# "...T08:00 07:00"; put the sign back rather than refuse what the user meant.
_SPACE_FOR_PLUS = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


def _items(name: str, values: list[str] | None) -> tuple[str, ...]:
    """Values of a repeatable parameter that also takes comma-separated lists, de-duplicated."""
    items = [item for value in values or () for item in _SPLIT.split(value.strip()) if item]
    unique = tuple(dict.fromkeys(items))
    if len(unique) > MAX_VALUES:
        raise InvalidInputError(name, N_("at most {count} values"), count=MAX_VALUES)
    return unique


async def bbox_param(
    bbox: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Only reports inside `min_lon,min_lat,max_lon,max_lat` (WGS84 degrees).",
            examples=["100.00,8.40,100.02,8.41"],
        ),
    ] = None,
) -> BBox | None:
    """The ``bbox`` parameter: four finite numbers, ordered, within WGS84's range."""
    return parse_bbox(bbox)


BBoxDep = Annotated[BBox | None, Depends(bbox_param)]


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Reports created from ``start`` to ``end``, both inclusive; ``None`` is open-ended."""

    start: datetime | None = None
    end: datetime | None = None


def _instant(name: str, value: str | None, *, end_of_day: bool) -> datetime | None:
    """An ISO 8601 time with its offset, or a date meaning that whole day in UTC."""
    if value is None or not value.strip():
        return None
    written = value.strip()
    try:
        day = date.fromisoformat(written)
    except ValueError:
        pass
    else:
        start = datetime.combine(day, time.min, tzinfo=UTC)
        return start + timedelta(days=1, microseconds=-1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(_SPACE_FOR_PLUS.sub(r"\1+\2", written))
    except ValueError as error:
        raise InvalidInputError(
            name,
            N_("must be an ISO 8601 date (2024-05-01) or time (2024-05-01T08:00:00+07:00)"),
        ) from error
    if moment.tzinfo is None:
        raise InvalidInputError(
            name, N_("a time needs its UTC offset, e.g. 2024-05-01T08:00:00+07:00 or ...Z")
        )
    return moment


async def time_window(
    created_from: Annotated[
        DateOrTime,
        Query(
            max_length=64,
            description="Only reports created at or after this ISO 8601 time (with offset) "
            "or date (a date starts at 00:00 UTC).",
            examples=["2024-05-01", "2024-05-01T08:00:00+07:00"],
        ),
    ] = None,
    created_to: Annotated[
        DateOrTime,
        Query(
            max_length=64,
            description="Only reports created at or before this ISO 8601 time (with offset) "
            "or date (a date includes the whole day, UTC).",
            examples=["2024-05-31"],
        ),
    ] = None,
) -> TimeWindow:
    """The ``created_from``/``created_to`` window; ``created_from`` must not be later."""
    window = TimeWindow(
        start=_instant("created_from", created_from, end_of_day=False),
        end=_instant("created_to", created_to, end_of_day=True),
    )
    if window.start is not None and window.end is not None and window.start > window.end:
        raise InvalidInputError("created_to", N_("must not be earlier than created_from"))
    return window


TimeWindowDep = Annotated[TimeWindow, Depends(time_window)]


async def category_param(
    category: Annotated[
        list[str] | None,
        Query(
            description="Only these category codes; repeat the parameter or separate by commas.",
            examples=["road,flood"],
        ),
    ] = None,
) -> tuple[str, ...]:
    """Category codes to keep; an empty tuple means every category."""
    codes = _items("category", category)
    for code in codes:
        if len(code) > 64:
            raise InvalidInputError(
                "category", N_("{code!r}... is longer than a code can be"), code=code[:20]
            )
    return codes


CategoriesDep = Annotated[tuple[str, ...], Depends(category_param)]


async def status_param(
    status: Annotated[
        list[str] | None,
        Query(
            description="Only these statuses ("
            + ", ".join(REPORT_STATUSES)
            + "); repeat the parameter or separate by commas.",
            examples=["open,in_progress"],
        ),
    ] = None,
) -> tuple[str, ...]:
    """Statuses to keep, each one a known status; an empty tuple means every status."""
    statuses = _items("status", status)
    for value in statuses:
        if value not in REPORT_STATUSES:
            raise InvalidInputError(
                "status",
                N_("unknown status {status!r}; use one of {choices}"),
                status=value[:40],
                choices=", ".join(REPORT_STATUSES),
            )
    return statuses


StatusesDep = Annotated[tuple[str, ...], Depends(status_param)]

_Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _ids(name: str, values: list[int] | None) -> tuple[int, ...]:
    unique = tuple(dict.fromkeys(values or ()))
    if len(unique) > MAX_VALUES:
        raise InvalidInputError(name, N_("at most {count} values"), count=MAX_VALUES)
    return unique


async def _area_refs(name: str, values: list[str] | None) -> tuple[str, ...]:
    refs = _items(name, values)
    for ref in refs:
        if len(ref) > 64:
            raise InvalidInputError(
                name, N_("{code!r}... is longer than a code can be"), code=ref[:20]
            )
    return refs


async def ward_param(
    ward: Annotated[
        list[str] | None,
        Query(
            description="Only reports in these wards, by code or id; repeat the parameter "
            "or separate by commas.",
            examples=["W-A"],
        ),
    ] = None,
) -> tuple[str, ...]:
    """Ward codes or ids to keep, looked up by ``geo.reports.export.with_areas``."""
    return await _area_refs("ward", ward)


async def zone_param(
    zone: Annotated[
        list[str] | None,
        Query(
            description="Only reports in these field-team zones, by code or id; repeat the "
            "parameter or separate by commas.",
            examples=["Z1"],
        ),
    ] = None,
) -> tuple[str, ...]:
    """Zone codes or ids to keep, looked up by ``geo.reports.export.with_areas``."""
    return await _area_refs("zone", zone)


async def team_param(
    team: Annotated[
        list[_Id] | None,
        Query(description="Only reports assigned to these team ids (repeatable)."),
    ] = None,
) -> tuple[int, ...]:
    """Team ids to keep; empty means every team."""
    return _ids("team", team)


WardsDep = Annotated[tuple[str, ...], Depends(ward_param)]
ZonesDep = Annotated[tuple[str, ...], Depends(zone_param)]
TeamsDep = Annotated[tuple[int, ...], Depends(team_param)]


@dataclass(frozen=True, slots=True)
class Page:
    """At most ``limit`` items with ids greater than ``after`` (``None``: from the start)."""

    limit: int
    after: int | None = None


async def page_param(
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE, description=f"Items per page, 1 to {MAX_PAGE}.")
    ] = 100,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_ID,
            description="Cursor: only items with a greater id. Follow the `next` link "
            "rather than building it.",
        ),
    ] = None,
) -> Page:
    """Keyset paging by id: ``limit`` and the ``after`` cursor."""
    return Page(limit=limit, after=after)


PageDep = Annotated[Page, Depends(page_param)]


@dataclass(frozen=True, slots=True)
class ReportFilterParams:
    """The report filter parameters: ``filter``, and the wards and zones still to look up.

    Wards and zones are named by code or id, which only the database can tell apart
    (``geo.reports.export.with_areas`` turns them into ids, or a 422 naming the parameter).
    """

    filter: ReportFilter
    wards: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()


async def report_filter(
    bbox: BBoxDep,
    window: TimeWindowDep,
    categories: CategoriesDep,
    statuses: StatusesDep,
    wards: WardsDep,
    zones: ZonesDep,
    teams: TeamsDep,
) -> ReportFilterParams:
    """Every report filter parameter at once, for the ``ReportFilter`` geo.reports.search reads."""
    return ReportFilterParams(
        filter=ReportFilter(
            bbox=bbox,
            team_ids=teams,
            categories=categories,
            statuses=statuses,
            created_from=window.start,
            created_to=window.end,
        ),
        wards=wards,
        zones=zones,
    )


ReportFilterDep = Annotated[ReportFilterParams, Depends(report_filter)]
