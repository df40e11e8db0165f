"""Open311 GeoReport v2 at ``/open311/v2``, with FixMyStreet's service request updates.

Discovery, services, service requests, tokens, and updates (FixMyStreet's extension).

Every resource comes as ``.json`` or ``.xml``, chosen by the path's suffix. Sentences and
team names (``service_notice``, ``agency_responsible``, error descriptions) are in English
unless ``?lang=th`` or Accept-Language asks for Thai. Errors on these
paths, FastAPI's own validation errors included, take the spec's form: a list of
``{code, description}`` (``<errors><error>`` in XML) with HTTP 400, 403 or 404.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from api.deps import (
    AppState,
    AppStateDep,
    ConnDep,
    Open311Dep,
    PrivacyDep,
    ReadConnDep,
    client_address,
    limit_reports_by_key,
)
from api.errors import (
    DATABASE_UNAVAILABLE,
    RETRY_AFTER_HEADER,
    RETRY_AFTER_S,
    UNAVAILABLE_DETAIL,
    rate_limited_detail,
    request_language,
    unreadable_body,
    unreadable_body_detail,
    validation_problem,
)
from api.models import (
    Open311Discovery,
    Open311Posted,
    Open311Request,
    Open311Service,
    Open311ServiceDefinition,
)
from api.params import DateOrTime, refuse_nul
from geo import open311
from geo.errors import (
    AuthenticationError,
    InvalidInputError,
    IssuemapError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from geo.i18n import N_, translate
from geo.reports.search import ReportFilter
from geo.vocabulary import CODE_MAX

MAX_BODY = 64 * 1024
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# A form's files are read only to be refused by name; the body limit bounds them already.
_MAX_FILES = 16

# The spec knows three error statuses: 403 for keys, 404 for what does not exist, 400 else.
_STATUS_BY_ERROR: dict[type[IssuemapError], int] = {
    AuthenticationError: 403,
    PermissionDeniedError: 403,
    NotFoundError: 404,
}


class Format(StrEnum):
    """Output formats, chosen by the path suffix."""

    json = "json"
    xml = "xml"


def _format_of(request: Request) -> str:
    return "xml" if request.url.path.endswith(".xml") else "json"


def _respond(
    payload: dict[str, Any] | list[dict[str, Any]], *, root: str, fmt: str, status: int = 200
) -> Response:
    return Response(
        content=open311.render(payload, root=root, fmt=fmt),
        status_code=status,
        media_type=open311.MEDIA_TYPES[fmt],
    )


def error_response(request: Request, status: int, description: str) -> Response:
    """The spec's error document, in the format the path asks for."""
    return _respond(
        open311.error_records(status, description),
        root="errors",
        fmt=_format_of(request),
        status=status,
    )


def _validation_description(error: RequestValidationError, lang: str) -> str:
    problems = error.errors()
    if not problems:
        return translate(lang, N_("The request is not valid."))
    first = problems[0]
    # The path's format suffix is the parameter ``fmt`` in code; users know it as the format.
    names = [
        "format" if p == "fmt" else str(p)
        for p in first["loc"]
        if p not in ("body", "query", "path", "header")
    ]
    field = ".".join(names) or "request"
    return f"{field}: {validation_problem(first, lang)}"


class Open311Route(APIRoute):
    """A route whose domain and validation errors answer in the GeoReport error format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so errors never reach the app's native error handlers."""
        handler = super().get_route_handler()

        async def spec_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return error_response(
                    request, 400, _validation_description(error, request_language(request))
                )
            except HTTPException as error:
                if not unreadable_body(error):
                    raise
                return error_response(
                    request, 400, unreadable_body_detail(request_language(request))
                )
            except RateLimitedError as error:
                answer = error_response(request, 429, rate_limited_detail(request, error))
                answer.headers["Retry-After"] = str(error.retry_after_s)
                return answer
            except IssuemapError as error:
                status = next(
                    (code for cls, code in _STATUS_BY_ERROR.items() if isinstance(error, cls)),
                    400,
                )
                return error_response(request, status, error.message(request_language(request)))
            except DATABASE_UNAVAILABLE:
                answer = error_response(
                    request, 503, translate(request_language(request), UNAVAILABLE_DETAIL)
                )
                answer.headers["Retry-After"] = str(RETRY_AFTER_S)
                return answer

        return spec_errors


router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route)

FormatPath = Annotated[Format, Path(description="Response format: `json` or `xml`.")]
Jurisdiction = Annotated[
    str | None,
    Query(max_length=200, description="Optional: this endpoint serves one jurisdiction."),
]


class Open311Error(BaseModel):
    """One problem, in the GeoReport v2 error format (a list of these is the answer)."""

    code: int = Field(description="The HTTP status of the answer.")
    description: str = Field(description="What went wrong, in a sentence.")


_ERROR_DESCRIPTIONS: dict[int | str, str] = {
    400: "Bad request; the description names the parameter or field.",
    403: "The api_key is missing, unknown or revoked.",
    404: "No such resource, service, request or jurisdiction.",
    429: "Too many requests posted by this key or address just now; try again after "
    "`Retry-After` seconds.",
    503: "The database is unavailable just now; try again after `Retry-After` seconds.",
    "4XX": "Any other refused request, in the same format.",
}


def spec_error_responses(*statuses: int | str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for GeoReport errors: ``[{code, description}]`` or ``<errors>``.

    ``4XX`` stands for any other client error, so FastAPI documents no 422 of its own.
    """
    return {
        status: {
            "model": list[Open311Error],
            "description": _ERROR_DESCRIPTIONS[status] + " JSON `[{code, description}]`, "
            "or XML `<errors><error><code/><description/></error></errors>`.",
            "content": {"text/xml": {"schema": {"type": "string"}}},
            **({"headers": RETRY_AFTER_HEADER} if status in (429, 503) else {}),
        }
        for status in (*statuses, "4XX")
    }


def _formats(model: Any) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a GeoReport resource: ``model`` in JSON (or XML), and its errors."""
    return {
        200: {"model": model, "content": {"application/json": {}, "text/xml": {}}},
        **spec_error_responses(400, 404, 503),
    }


@router.get("/discovery.{fmt}", summary="Service discovery", responses=_formats(Open311Discovery))
def get_discovery(request: Request, fmt: FormatPath, settings: Open311Dep) -> Response:
    """The Open311 discovery document: our GeoReport v2 endpoint, its formats and contact."""
    url = str(request.base_url).rstrip("/") + router.prefix
    return _respond(open311.discovery(url=url, contact=settings.contact), root="discovery", fmt=fmt)


@router.get("/services.{fmt}", summary="GET Service List", responses=_formats(list[Open311Service]))
def get_services(
    fmt: FormatPath, conn: ReadConnDep, settings: Open311Dep, jurisdiction_id: Jurisdiction = None
) -> Response:
    """Every report category as a service: the code, English name, Thai name as description.

    No category asks for extra attributes, so `metadata` is false throughout.
    """
    open311.check_jurisdiction(jurisdiction_id, settings.jurisdiction_id)
    return _respond(open311.list_services(conn), root="services", fmt=fmt)


@router.get(
    "/services/{service_code}.{fmt}",
    summary="GET Service Definition",
    responses=_formats(Open311ServiceDefinition),
)
def get_service_definition(
    service_code: Annotated[str, Path(max_length=CODE_MAX, description="A code from services.")],
    fmt: FormatPath,
    conn: ReadConnDep,
    settings: Open311Dep,
    jurisdiction_id: Jurisdiction = None,
) -> Response:
    """A service's extra attributes: none for our categories, so an empty list."""
    open311.check_jurisdiction(jurisdiction_id, settings.jurisdiction_id)
    return _respond(
        open311.service_definition(conn, service_code), root="service_definition", fmt=fmt
    )


def request_filter(
    settings: Open311Dep,
    service_request_id: Annotated[
        list[str] | None,
        Query(description="Comma-separated ids; when given, every other filter is ignored."),
    ] = None,
    service_code: Annotated[
        list[str] | None, Query(description="Comma-separated service codes.")
    ] = None,
    status: Annotated[
        list[str] | None, Query(description="`open`, `closed`, or both comma-separated.")
    ] = None,
    start_date: Annotated[
        DateOrTime,
        Query(
            max_length=64,
            description="Earliest requested_datetime (W3C), e.g. 2010-01-01T00:00:00Z.",
        ),
    ] = None,
    end_date: Annotated[
        DateOrTime,
        Query(max_length=64, description="Latest requested_datetime (W3C); at most 90 days on."),
    ] = None,
    jurisdiction_id: Jurisdiction = None,
) -> ReportFilter:
    """The GET Service Requests filters, validated once."""
    open311.check_jurisdiction(jurisdiction_id, settings.jurisdiction_id)
    return open311.request_filter(
        ids=service_request_id,
        service_codes=service_code,
        statuses=status,
        start_date=start_date,
        end_date=end_date,
        now=datetime.now(UTC),
        max_ids=settings.max_requests,
    )


@router.get(
    "/requests.{fmt}", summary="GET Service Requests", responses=_formats(list[Open311Request])
)
def get_requests(
    request: Request,
    fmt: FormatPath,
    conn: ReadConnDep,
    settings: Open311Dep,
    privacy: PrivacyDep,
    flt: Annotated[ReportFilter, Depends(request_filter)],
) -> Response:
    """Service requests, newest first, as the public sees them.

    Without dates the last 90 days are searched; `start_date` and `end_date` may be at most
    90 days apart. Our statuses fold into `open` (open, acknowledged, in progress, reopened)
    and `closed` (resolved, closed, rejected, duplicate). `agency_responsible` and
    `service_notice` are in English, or in Thai when `lang=th` or Accept-Language asks.
    """
    base = str(request.base_url).rstrip("/")
    records = open311.find_requests(
        conn,
        flt,
        limit=settings.max_requests,
        base_url=base,
        public_rounding_m=privacy.public_rounding_m,
        lang=request_language(request),
    )
    return _respond(records, root="service_requests", fmt=fmt)


@router.get(
    "/requests/{service_request_id}.{fmt}",
    summary="GET Service Request",
    responses=_formats(list[Open311Request]),
)
def get_service_request(
    request: Request,
    service_request_id: Annotated[str, Path(max_length=64, description="A request's id.")],
    fmt: FormatPath,
    conn: ConnDep,
    settings: Open311Dep,
    privacy: PrivacyDep,
    jurisdiction_id: Jurisdiction = None,
) -> Response:
    """One service request, as a one-element list (the spec's shape)."""
    open311.check_jurisdiction(jurisdiction_id, settings.jurisdiction_id)
    base = str(request.base_url).rstrip("/")
    record = open311.get_request(
        conn,
        service_request_id,
        base_url=base,
        public_rounding_m=privacy.public_rounding_m,
        lang=request_language(request),
    )
    return _respond([record], root="service_requests", fmt=fmt)


def _form_body(fields: frozenset[str], *required: str) -> dict[str, Any]:
    """``openapi_extra`` of a POST whose fields come form-encoded, each a string."""
    schema = {
        "type": "object",
        "properties": {name: {"type": "string"} for name in sorted(fields)},
        "required": list(required),
    }
    content = {"application/x-www-form-urlencoded": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


async def _read_fields(request: Request, known: frozenset[str]) -> dict[str, str]:
    """The POSTed form fields named in ``known``; of a repeatable one, the first.

    ``api_key`` and ``jurisdiction_id`` may be in the query too.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length", "0")
    if (length.isdigit() and int(length) > MAX_BODY) or len(await request.body()) > MAX_BODY:
        raise InvalidInputError(
            "body",
            N_("the request is larger than {limit} KB; send a photo as a media_url"),
            limit=MAX_BODY // 1024,
        )
    fields: dict[str, str] = {}
    if content_type in _FORM_TYPES:
        try:
            form = await request.form(max_files=_MAX_FILES, max_fields=200, max_part_size=MAX_BODY)
        except HTTPException as error:
            raise InvalidInputError(
                "body", N_("malformed form: {reason}"), reason=error.detail
            ) from error
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise InvalidInputError(name[:40], N_("files are not accepted; send a media_url"))
            refuse_nul(name, value)
            if name in known:
                if name not in fields:
                    fields[name] = value
                elif name not in open311.REPEATABLE_FIELDS:
                    raise InvalidInputError(name, N_("given more than once"))
            # attribute[...] and anything else: our services define no attributes.
    elif await request.body():
        raise InvalidInputError(
            "Content-Type", N_("send the fields as application/x-www-form-urlencoded")
        )
    for name in ("api_key", "jurisdiction_id"):
        if name not in fields and name in request.query_params:
            fields[name] = request.query_params[name]
    return fields


def _create(state: AppState, fields: dict[str, str], lang: str) -> list[dict[str, Any]]:
    return open311.post_request(
        state.engine,
        fields,
        jurisdiction_id=state.open311.jurisdiction_id,
        routing=state.routing,
        intake=state.intake,
        geocoder=state.geocoder,
        lang=lang,
    )


@router.post(
    "/requests.{fmt}",
    summary="POST Service Request",
    openapi_extra=_form_body(open311.POST_FIELDS, "api_key", "service_code"),
    responses={
        **_formats(list[Open311Posted]),
        **spec_error_responses(403, 429),
    },
)
async def post_service_request(fmt: FormatPath, request: Request, state: AppStateDep) -> Response:
    """File a report through Open311: form-encoded fields, an `api_key` of any role.

    Give `lat` and `long`, or `address_string` (`address_id` is not supported). The
    reporter's `first_name`, `last_name`, `email` and `phone` are kept for staff and never
    published. The answer holds the new `service_request_id`, its `token` (the resident's
    status page is `/r/{token}`) and a `service_notice` saying which team has it and when
    it is due: in English, or in Thai when `lang=th` or Accept-Language asks.
    """
    fields = await _read_fields(request, open311.POST_FIELDS)
    await run_in_threadpool(
        limit_reports_by_key, state, fields.get("api_key"), client_address(request)
    )
    answer = await run_in_threadpool(_create, state, fields, request_language(request))
    return _respond(answer, root="service_requests", fmt=fmt)


class Open311Token(BaseModel):
    """The request a token names."""

    service_request_id: str
    token: str


@router.get(
    "/tokens/{token}.{fmt}",
    summary="GET Service Request ID from a token",
    responses=_formats(list[Open311Token]),
)
def get_token(
    token: Annotated[str, Path(max_length=64, description="A token from POST Service Request.")],
    fmt: FormatPath,
    conn: ConnDep,
    settings: Open311Dep,
    jurisdiction_id: Jurisdiction = None,
) -> Response:
    """The `service_request_id` of the request a POST answer's `token` names.

    Requests are filed at once, so every token has its id at once (the POST answer gives
    both); the token is also the key of the request's status page, `/r/{token}`.
    """
    open311.check_jurisdiction(jurisdiction_id, settings.jurisdiction_id)
    return _respond(open311.request_for_token(conn, token), root="service_requests", fmt=fmt)


class Open311Update(BaseModel):
    """A service request update (FixMyStreet's extension)."""

    update_id: str
    service_request_id: str
    status: Literal[open311.UPDATE_STATUSES] = Field(  # type: ignore[valid-type]
        description="FixMyStreet's statuses: open (open, reopened), investigating "
        "(acknowledged), in_progress, fixed (resolved, closed), no_further_action (rejected), "
        "duplicate."
    )
    updated_datetime: str = Field(description="W3C, UTC to the second.")
    description: str = Field(description="Staff's note for the public; empty if none.")
    media_url: str = Field(description="The change's after-photo; empty if none.")


@router.get(
    "/servicerequestupdates.{fmt}",
    summary="GET Service Request Updates (FixMyStreet)",
    responses=_formats(list[Open311Update]),
)
def get_updates(
    request: Request,
    fmt: FormatPath,
    conn: ReadConnDep,
    settings: Open311Dep,
    start_date: Annotated[
        DateOrTime,
        Query(max_length=64, description="Earliest updated_datetime (W3C), included."),
    ] = None,
    end_date: Annotated[
        DateOrTime,
        Query(
            max_length=64,
            description="Latest updated_datetime (W3C), left out; at most 90 days on.",
        ),
    ] = None,
    jurisdiction_id: Jurisdiction = None,
    api_key: Annotated[
        str | None,
        Query(max_length=200, description="Not needed; FixMyStreet sends it, and it is ignored."),
    ] = None,
) -> Response:
    """Public changes of reports, oldest first: FixMyStreet's update extension.

    One update per status change, merge, or forward staff explained to the public, never
    of a hidden report: `description` is staff's note for the public, `media_url` the
    after-photo. Updates from `start_date` up to, not including, `end_date`, so windows
    that meet repeat nothing (poll a few seconds behind now, or overlap windows and skip
    known `update_id`s, as FixMyStreet does: a change shows once its transaction ends).
    Without dates, the last 90 days. More updates in the window than one answer holds
    (`ISSUEMAP_OPEN311_MAX_REQUESTS`) is a 400 saying where to end it.
    """
    open311.check_jurisdiction(jurisdiction_id, settings.jurisdiction_id)
    start, end = open311.update_window(start_date, end_date, now=datetime.now(UTC))
    updates = open311.find_updates(
        conn,
        start,
        end,
        limit=settings.max_requests,
        base_url=str(request.base_url).rstrip("/"),
    )
    return _respond(updates, root="service_request_updates", fmt=fmt)


class Open311UpdatePosted(BaseModel):
    """The answer to a posted update."""

    update_id: str


def _post_update(state: AppState, fields: dict[str, str]) -> list[dict[str, Any]]:
    return open311.post_update(
        state.engine,
        fields,
        jurisdiction_id=state.open311.jurisdiction_id,
        notify=state.notifications,
    )


@router.post(
    "/servicerequestupdates.{fmt}",
    summary="POST Service Request Update (FixMyStreet)",
    openapi_extra=_form_body(open311.UPDATE_POST_FIELDS, "api_key", "service_request_id"),
    responses={
        **_formats(list[Open311UpdatePosted]),
        **spec_error_responses(403, 429),
    },
)
async def post_service_request_update(
    fmt: FormatPath, request: Request, state: AppStateDep
) -> Response:
    """A resident's comment on a request, or their word that a finished one is back.

    Form-encoded, as FixMyStreet posts it, with an `api_key` of any role. `status` `open`
    or `reopen` reopens a resolved, closed, rejected or duplicate request, unless the
    update's `updated_datetime` is earlier than that status (the client had not heard of
    it); anything else is kept as a comment. The words (`description`), the sender
    (`first_name`, `last_name`, `email`, `phone`), `media_url` and the status sent stay
    with staff and are never published. The answer is the new `update_id`; sending the
    same client `update_id` again answers the same one.
    """
    fields = await _read_fields(request, open311.UPDATE_POST_FIELDS)
    await run_in_threadpool(
        limit_reports_by_key, state, fields.get("api_key"), client_address(request)
    )
    answer = await run_in_threadpool(_post_update, state, fields)
    return _respond(answer, root="service_request_updates", fmt=fmt)


@router.api_route(
    "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
def unknown_resource(path: str, request: Request) -> Response:
    """Anything else under the endpoint is a 404 in the spec's error format."""
    raise NotFoundError(
        N_("There is no Open311 resource {method} {path!r}; see discovery.json for what is here."),
        method=request.method,
        path=path[:80],
    )
