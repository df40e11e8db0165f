"""One table mapping domain errors to HTTP statuses, and handlers that use it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from geo.chat.line import LineWebhookError, LineWebhookTooLargeError
from geo.city.geocoding import GeocodingUnavailableError
from geo.errors import (
    AuthenticationError,
    BoundaryImportError,
    ConflictError,
    DatabaseNotEmptyError,
    InvalidInputError,
    IssuemapError,
    Message,
    NotFoundError,
    OutsideServiceAreaError,
    PermissionDeniedError,
    RateLimitedError,
)
from geo.i18n import N_, pick_language, translate

STATUS_BY_ERROR: dict[type[IssuemapError], int] = {
    GeocodingUnavailableError: 503,
    LineWebhookTooLargeError: 413,
    LineWebhookError: 400,
    InvalidInputError: 422,
    OutsideServiceAreaError: 422,
    BoundaryImportError: 422,
    NotFoundError: 404,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    ConflictError: 409,
    DatabaseNotEmptyError: 409,
    RateLimitedError: 429,
}


DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
"""The database could not be reached or gave up on the statement (server restarting,
connections refused, a statement timeout), or every pooled connection stayed busy for the
pool timeout: the request may well work a little later."""

UNAVAILABLE_DETAIL = N_(
    "The issue database cannot be reached just now, so nothing was read or stored. "
    "Please try again in a minute."
)
RETRY_AFTER_S = 30

_log = logging.getLogger(__name__)


class ExportsBusyError(Exception):
    """As many exports as the service allows at once are already running."""


EXPORTS_BUSY_DETAIL = N_(
    "Too many exports are running just now, so this one was not started. "
    "Please try again in a minute, or narrow the filters to make a smaller file."
)


def status_for(error: IssuemapError) -> int:
    """HTTP status of a domain error: the closest mapped ancestor, else 500."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def request_language(request: Request) -> str:
    """The language an API caller reads: ``?lang=``, else ``Accept-Language``, else English.

    Clients that name no language keep the English messages they were written against.
    """
    return pick_language(
        request.query_params.get("lang"), request.headers.get("accept-language"), default="en"
    )


async def _handle(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, IssuemapError)
    return error_answer(request, error)


def error_answer(request: Request, error: IssuemapError) -> JSONResponse:
    """The native API's answer to ``error``: its status, its message in the caller's language."""
    body: dict[str, object] = {
        "detail": error.message(request_language(request)),
        "error": type(error).__name__,
    }
    if isinstance(error, InvalidInputError):
        body["field"] = error.field
    return JSONResponse(status_code=status_for(error), content=body)


# Pydantic's error types a caller meets most, as catalog messages; ``ctx`` fills them.
VALIDATION_MESSAGES: dict[str, str] = {
    "missing": N_("this field is required"),
    "string_too_long": N_("must be at most {max_length:,} characters"),
    "string_too_short": N_("must be at least {min_length:,} characters"),
    "too_long": N_("must have at most {max_length:,} items"),
    "too_short": N_("must have at least {min_length:,} items"),
    "int_parsing": N_("must be a whole number"),
    "int_from_float": N_("must be a whole number"),
    "int_type": N_("must be a whole number"),
    "float_parsing": N_("must be a number"),
    "float_type": N_("must be a number"),
    "finite_number": N_("must be a finite number"),
    "greater_than": N_("must be more than {gt}"),
    "greater_than_equal": N_("must be at least {ge}"),
    "less_than": N_("must be less than {lt}"),
    "less_than_equal": N_("must be at most {le}"),
    "bool_parsing": N_("must be true or false"),
    "string_type": N_("must be text"),
    "string_pattern_mismatch": N_("does not have the expected form"),
    "literal_error": N_("must be one of {expected}"),
    "enum": N_("must be one of {expected}"),
    "datetime_parsing": N_("must be a date and time, such as 2026-01-31T09:00:00+07:00"),
    "datetime_from_date_parsing": N_("must be a date and time, such as 2026-01-31T09:00:00+07:00"),
    "date_parsing": N_("must be a date, such as 2026-01-31"),
    "date_from_datetime_parsing": N_("must be a date, such as 2026-01-31"),
    "json_invalid": N_("the request body is not valid JSON"),
    "model_attributes_type": N_("must be a JSON object"),
    "dict_type": N_("must be a JSON object"),
    "list_type": N_("must be a list"),
    "extra_forbidden": N_("is not a field this request takes"),
}
UNKNOWN_PROBLEM = N_("this value is not valid")


def problem_message(problem: Mapping[str, Any]) -> Message | None:
    """One pydantic problem as a catalog message, without the field's name.

    None for a kind of problem the table lacks (its words are pydantic's, in English).
    """
    kind = str(problem.get("type", ""))
    context = problem.get("ctx") or {}
    if not isinstance(context, Mapping):
        context = {}
    if kind == "value_error" and "error" in context:
        # Our own validators raise ValueError with a catalog message (``api.params``).
        return Message(str(context["error"]))
    msgid = VALIDATION_MESSAGES.get(kind)
    if msgid is None:
        return None
    values = {str(k): v for k, v in context.items()}
    try:
        msgid.format(**values)
    except (KeyError, IndexError, ValueError):
        return None  # a context that lacks what the sentence names
    return Message(msgid, values)


def validation_problem(problem: Mapping[str, Any], lang: str) -> str:
    """One pydantic problem as a sentence in ``lang``, without the field's name.

    A problem of a kind the table lacks keeps pydantic's English words for an English
    reader and gets a plain sentence in the reader's own language otherwise.
    """
    message = problem_message(problem)
    if message is not None:
        return message.text(lang)
    if lang == "en" and problem.get("msg"):
        return str(problem["msg"])
    return translate(lang, UNKNOWN_PROBLEM)


async def _handle_validation(request: Request, error: Exception) -> JSONResponse:
    # FastAPI's own 422 lists every problem; lead with a sentence naming the first field.
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {"loc": ("body",), "msg": "invalid request"}
    location = [str(p) for p in first["loc"] if p not in ("body", "query", "path", "header")]
    # A body that is not JSON at all is located at a character offset: name the body.
    field = "body" if first.get("type") == "json_invalid" else ".".join(location) or "body"
    return JSONResponse(
        status_code=422,
        content={
            "detail": f"{field}: {validation_problem(first, request_language(request))}",
            "error": "InvalidInputError",
            "field": field,
            "errors": jsonable_encoder(problems, exclude={"input", "ctx"}),
        },
    )


UNREADABLE_BODY_PROBLEM = N_(
    "the request body could not be read: send UTF-8 JSON, or a well-formed form, "
    "as the Content-Type header says"
)
UNREADABLE_BODY_DETAIL = f"body: {UNREADABLE_BODY_PROBLEM}"
"""In English; ``unreadable_body_detail`` says it in the caller's language."""


def unreadable_body_detail(lang: str) -> str:
    """The 422 (Open311: 400) sentence for a body that could not be decoded, in ``lang``."""
    return f"body: {translate(lang, UNREADABLE_BODY_PROBLEM)}"


def unreadable_body(error: Exception) -> bool:
    """Whether ``error`` is FastAPI's or Starlette's 400 for a body it could not decode.

    issuemap itself never raises ``HTTPException``: its errors are domain errors, so a 400
    of that kind only ever comes from reading a malformed body (not UTF-8, not JSON, a
    broken multipart form).
    """
    return isinstance(error, StarletteHTTPException) and error.status_code == 400


async def _handle_http(request: Request, error: Exception) -> Response:
    # A body that cannot even be decoded is bad input like any other: 422 naming the body.
    if unreadable_body(error):
        return JSONResponse(
            status_code=422,
            content={
                "detail": unreadable_body_detail(request_language(request)),
                "error": "InvalidInputError",
                "field": "body",
            },
        )
    assert isinstance(error, StarletteHTTPException)
    return await http_exception_handler(request, error)


async def _handle_unavailable(request: Request, error: Exception) -> JSONResponse:
    _log.warning("database unavailable for %s %s: %s", request.method, request.url.path, error)
    return JSONResponse(
        status_code=503,
        content={
            "detail": translate(request_language(request), UNAVAILABLE_DETAIL),
            "error": "DatabaseUnavailable",
        },
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _handle_exports_busy(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={
            "detail": translate(request_language(request), EXPORTS_BUSY_DETAIL),
            "error": "ExportsBusy",
        },
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def rate_limited_detail(request: Request, error: RateLimitedError) -> str:
    """The 429 sentence in the caller's language (``lang``, else ``Accept-Language``).

    API clients that name no language get English, as for every API message.
    """
    return error.message(request_language(request))


async def _handle_rate_limited(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RateLimitedError)
    return JSONResponse(
        status_code=429,
        content={"detail": rate_limited_detail(request, error), "error": "RateLimitedError"},
        headers={"Retry-After": str(error.retry_after_s)},
    )


def install(app: FastAPI) -> None:
    """Register the domain-error, validation, database-outage, busy and 429 handlers."""
    app.add_exception_handler(IssuemapError, _handle)
    app.add_exception_handler(ExportsBusyError, _handle_exports_busy)
    app.add_exception_handler(RateLimitedError, _handle_rate_limited)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, _handle_unavailable)


# --- the error answers as the OpenAPI document describes them ---------------------------


class ErrorBody(BaseModel):
    """Every error answer of the native API (Open311 routes answer in their own format)."""

    detail: str = Field(
        description="What went wrong, in a sentence meant for people: in Thai or English as "
        "`?lang=` or the Accept-Language header asks, English when neither names one."
    )
    error: str = Field(
        description="The kind of error: InvalidInputError, NotFoundError, "
        "AuthenticationError, PermissionDeniedError, ConflictError, DatabaseUnavailable, ..."
    )
    field: str | None = Field(
        default=None,
        description="For bad input: the parameter, header or body field at fault.",
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None,
        description="For a request that could not be read at all: every problem found "
        "(`loc`, `msg`, `type`).",
    )


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request is wrong; the description names the parameter or field.",
    401: "An API key is needed, or the one sent is unknown or revoked.",
    403: "The key's role may not do this.",
    404: "There is no such thing, or none this caller may see.",
    409: "The request clashes with what is stored (a reused Idempotency-Key, a step the "
    "workflow does not allow, an existing record).",
    413: "The request body is larger than this route takes.",
    422: "A parameter, header or body field is wrong (`field` names it), or the place is "
    "outside the area the city serves.",
    429: "Too many requests just now; try again after `Retry-After` seconds.",
    503: "The database or another service it needs is unavailable just now; nothing was "
    "stored. Try again after `Retry-After` seconds.",
}

ERROR_BODY_REF = "#/components/schemas/ErrorBody"

RETRY_AFTER_HEADER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}


def error_responses(*statuses: int, page: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting these error statuses with the ``ErrorBody`` model.

    ``page``: for routes that answer HTML, whose errors are JSON all the same. FastAPI
    would file a model under the route's own media type, so the schema is named directly
    (the JSON routes put ``ErrorBody`` among the document's schemas).
    """
    body: dict[str, Any] = (
        {"content": {"application/json": {"schema": {"$ref": ERROR_BODY_REF}}}}
        if page
        else {"model": ErrorBody}
    )
    return {
        status: {
            **body,
            "description": ERROR_DESCRIPTIONS[status],
            **({"headers": RETRY_AFTER_HEADER} if status in (429, 503) else {}),
        }
        for status in statuses
    }
