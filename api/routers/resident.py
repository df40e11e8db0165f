"""Resident pages: the report form (``/report``) and a report's status page (``/r/{token}``).

The form posts as multipart with the JSON API's field names and goes through the same
intake (``geo.reports.intake.file_report``): routing, likely duplicates, photos without
EXIF, and idempotency, keyed by a random key the form carries, so a double tap files one
report. Both pages speak Thai unless ``?lang=en`` or the browser's Accept-Language says
otherwise, and work without JavaScript.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from api.deps import (
    AppState,
    AppStateDep,
    ConnDep,
    PrincipalDep,
    PrivacyDep,
    client_address,
    limit_reports,
)
from api.errors import ERROR_BODY_REF, RETRY_AFTER_HEADER, error_responses
from geo.access.policy import Principal
from geo.city.coordinates import LAT_MAX, LON_MAX, parse_degrees
from geo.city.geocoding import GeocodingUnavailableError
from geo.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    OutsideServiceAreaError,
    RateLimitedError,
    translated,
)
from geo.i18n import pick_language, translate
from geo.maps.builders import content_security_policy
from geo.maps.resident import (
    ALREADY_SENT,
    GEOCODER_DOWN,
    OUTSIDE_AREA,
    FormValues,
    field_message,
    render_not_found,
    render_report_form,
    render_status_page,
    report_form_page,
)
from geo.reports import idempotency
from geo.reports.intake import IntakeResult, PhotoUpload, Submission, file_report
from geo.reports.tracking import NOT_NEARBY, support_report, track_report

# The form's own problems come back as the page; requests refused before the form is read
# (app-wide checks, FastAPI's field limits) get the API's JSON error body.
_HTML_OR_ERROR_BODY = {"text/html": {}, "application/json": {"schema": {"$ref": ERROR_BODY_REF}}}

router = APIRouter(tags=["resident pages"], responses=error_responses(422, 503, page=True))

Lang = Annotated[
    str | None, Query(description="Page language, `th` or `en`; else Accept-Language, else Thai.")
]
AcceptLanguage = Annotated[str | None, Header(include_in_schema=False)]

TEXT_FIELDS = (
    "category",
    "description",
    "lat",
    "lon",
    "address",
    "reporter_name",
    "reporter_contact",
)
"""The form's text fields, named as the JSON API names them."""

MAX_FORM_FIELDS = 20


def _page(
    html: str, *, nonce: str, status_code: int = 200, tiles: str | None = None
) -> HTMLResponse:
    """An HTML page with its CSP; never cached, never sending its address on as a referrer.

    Status pages hold their token in the address and forms a one-time key, so neither may
    be kept by a shared cache nor leak through a Referer header.
    """
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": content_security_policy(
                nonce=nonce, tiles=tiles, frame_ancestors=["'none'"]
            ),
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Robots-Tag": "noindex",
            "Vary": "Accept-Language",
        },
    )


def _form(
    state: AppState,
    *,
    lang: str,
    values: FormValues | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    with state.engine.connect() as conn:
        page = report_form_page(
            conn,
            lang=lang,
            form_key=secrets.token_urlsafe(24),
            photos_per_report=state.intake.photos_per_report,
            maps=state.maps,
            values=values or FormValues(),
            errors=errors or {},
        )
    return _page(
        render_report_form(page, nonce=nonce),
        nonce=nonce,
        status_code=status_code,
        tiles=state.maps.tiles,
    )


@router.get("/report", response_class=HTMLResponse, summary="The report form")
async def report_form(
    state: AppStateDep, lang: Lang = None, accept_language: AcceptLanguage = None
) -> HTMLResponse:
    """A form for residents to report a problem from a phone, without an account.

    It posts to `POST /report`; the place can be a map pin, the phone's location, or an
    address typed in.
    """
    return await run_in_threadpool(partial(_form, state, lang=pick_language(lang, accept_language)))


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _degrees(name: str, value: str, limit: float) -> float | None:
    return parse_degrees(name, value.strip(), limit) if value.strip() else None


@dataclass(frozen=True, slots=True)
class _SentForm:
    """A posted form: what to show again, what to file, its key and its fingerprint."""

    values: FormValues
    fields: dict[str, str]
    photos: tuple[PhotoUpload, ...]
    key: str
    lang: str
    fingerprint: str


async def _read_form(request: Request, state: AppState) -> _SentForm:
    """The form's text fields, its photos, its key and the fingerprint of what was sent.

    Raises ``InvalidInputError`` for a body too large or unreadable (naming ``body`` or
    ``photo``); empty file fields (photos not taken) are left out.
    """
    intake = state.intake
    length = request.headers.get("content-length", "0")
    limit = intake.photos_per_report * intake.photo_max_bytes + 256 * 1024
    if length.isdigit() and int(length) > limit:
        raise InvalidInputError("photo", "the photos are too large together")
    try:
        form = await request.form(
            max_files=intake.photos_per_report + 1,
            max_fields=MAX_FORM_FIELDS,
            max_part_size=64 * 1024,
        )
    except HTTPException as error:
        raise InvalidInputError("body", f"the form could not be read: {error.detail}") from error
    fields = {name: _text(form, name) for name in TEXT_FIELDS}
    fingerprint = hashlib.sha256()
    for name in TEXT_FIELDS:
        fingerprint.update(f"{name}={fields[name]}\n".encode())
    photos: list[PhotoUpload] = []
    for name, value in form.multi_items():
        if not isinstance(value, UploadFile):
            continue
        if name != "photo":
            raise InvalidInputError(name, "unexpected file; send photos as 'photo'")
        data = await value.read(intake.photo_max_bytes + 1)
        if not data:
            continue  # a photo field left empty
        if len(data) > intake.photo_max_bytes:
            raise InvalidInputError("photo", "the photo is too large")
        photos.append(PhotoUpload(data=data, declared_type=value.content_type))
        fingerprint.update(hashlib.sha256(data).digest())
    # Shown again if the form comes back: PostgreSQL cannot store NUL, and neither may a page.
    values = FormValues(**{name: value.replace("\x00", "") for name, value in fields.items()})
    return _SentForm(
        values=values,
        fields=fields,
        photos=tuple(photos),
        key=_text(form, "form_key"),
        lang=_text(form, "lang"),
        fingerprint=fingerprint.hexdigest(),
    )


def _answer(result: IntakeResult) -> dict[str, Any]:
    """What a filed form remembers for a retry: where its status page is."""
    return {"id": result.report.id, "token": result.report.token}


def _file(
    state: AppState,
    principal: Principal,
    submission: Submission,
    *,
    key: str,
    fingerprint: str,
    address: str | None,
) -> str:
    filed = file_report(
        state.engine,
        submission,
        principal=principal,
        routing=state.routing,
        intake=state.intake,
        geocoder=state.geocoder,
        answer=_answer,
        idempotency_key=key,
        fingerprint=idempotency.request_fingerprint("report-form", fingerprint),
        client_address=address,
        public_rounding_m=state.privacy.public_rounding_m,
    )
    return str(filed.body["token"])


@router.post(
    "/report",
    response_class=HTMLResponse,
    status_code=303,
    summary="Send the report form",
    responses={
        303: {"description": "Filed: on to the report's status page."},
        **error_responses(401, page=True),
        422: {
            "description": "A field is wrong or missing: the form again, as filled in, with "
            "the problem beside the field in the resident's language. A request no form sends "
            "(NUL characters, an oversized field) is answered with the JSON error body.",
            "content": _HTML_OR_ERROR_BODY,
        },
        429: {
            "description": "Too many reports from this address just now: the form again, "
            "saying how long to wait.",
            "content": {"text/html": {}},
            "headers": RETRY_AFTER_HEADER,
        },
    },
)
async def send_report_form(
    request: Request,
    state: AppStateDep,
    principal: PrincipalDep,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Response:
    """File the form's report through the same intake as `POST /api/reports`.

    Multipart fields: `category`, `description`, `lat` and `lon` or `address`, `photo`
    (repeatable), `reporter_name`, `reporter_contact`, and the form's own `form_key` and
    `lang`. On success, 303 to the report's status page; otherwise the form again (422)
    with what was typed and a message next to each problem. Each form counts against the
    same report rate limits as the API (429, with the form saying how long to wait).
    """
    values = FormValues()
    errors: dict[str, str] = {}
    page_lang = pick_language(lang, accept_language)
    try:
        # Counted before the body is read, so a refused form costs one counting statement.
        await run_in_threadpool(limit_reports, request, state, principal)
    except RateLimitedError as error:
        refused = await run_in_threadpool(
            partial(
                _form,
                state,
                lang=page_lang,
                errors={"form": error.message(page_lang)},
                status_code=429,
            )
        )
        refused.headers["Retry-After"] = str(error.retry_after_s)
        return refused
    try:
        sent = await _read_form(request, state)
        values = sent.values
        # The form carries the language it was shown in: the answer and the report keep it.
        page_lang = pick_language(sent.lang or lang, accept_language)
        idempotency.check_key(sent.key)
        fields = sent.fields
        submission = Submission(
            category=fields["category"].strip(),
            description=fields["description"],
            lat=_degrees("lat", fields["lat"], LAT_MAX),
            lon=_degrees("lon", fields["lon"], LON_MAX),
            address=fields["address"] or None,
            reporter_name=fields["reporter_name"] or None,
            reporter_contact=fields["reporter_contact"] or None,
            photos=sent.photos,
            source="web",
            language=page_lang,
        )
        token = await run_in_threadpool(
            partial(
                _file,
                state,
                principal,
                submission,
                key=sent.key,
                fingerprint=sent.fingerprint,
                address=client_address(request),
            )
        )
    except GeocodingUnavailableError:
        errors["address"] = translate(page_lang, GEOCODER_DOWN)
    except OutsideServiceAreaError:
        errors["location"] = translate(page_lang, OUTSIDE_AREA)
    except ConflictError:
        errors["form"] = translate(page_lang, ALREADY_SENT)
    except InvalidInputError as error:
        where, message = field_message(page_lang, error)
        errors[where] = message
    else:
        return RedirectResponse(f"/r/{token}?new=1&lang={page_lang}", status_code=303)
    return await run_in_threadpool(
        partial(_form, state, lang=page_lang, values=values, errors=errors, status_code=422)
    )


@router.get(
    "/r/{token}",
    response_class=HTMLResponse,
    summary="A report's status page",
    responses={
        404: {
            "description": "No report the public may see has this address.",
            "content": {"text/html": {}},
        }
    },
)
def status_page(
    token: str,
    conn: ConnDep,
    state: AppStateDep,
    privacy: PrivacyDep,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
    new: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> HTMLResponse:
    """What the city is doing about a report: status, team, due time and a public timeline.

    The address is the one the resident got when they filed it. It shows no reporter name
    or contact, no staff notes, and the place only on the public grid.
    """
    page_lang = pick_language(lang, accept_language)
    nonce = secrets.token_urlsafe(18)
    try:
        report = track_report(
            conn,
            token,
            public_rounding_m=privacy.public_rounding_m,
            duplicate_radius_m=state.intake.duplicate_radius_m,
            duplicate_window_days=state.intake.duplicate_window_days,
        )
    except NotFoundError:
        return _page(render_not_found(lang=page_lang, nonce=nonce), nonce=nonce, status_code=404)
    html = render_status_page(
        report,
        lang=page_lang,
        nonce=nonce,
        new=new == "1",
        public_rounding_m=privacy.public_rounding_m,
        zone=state.city.zone,
    )
    return _page(html, nonce=nonce)


@router.post(
    "/r/{token}/support",
    response_class=HTMLResponse,
    status_code=303,
    summary="Support a report nearby instead",
    responses={
        303: {"description": "Supported: back to the status page."},
        **error_responses(401, page=True),
        404: {
            "description": "No report the public may see has this address.",
            "content": {"text/html": {}},
        },
        409: {
            "description": "The report is already being handled, or the other one is: the "
            "status page, saying so.",
            "content": {"text/html": {}},
        },
        422: {
            "description": "That report is not one offered nearby: the status page, saying so. "
            "A request no page sends (NUL characters, an oversized field) is answered with the "
            "JSON error body.",
            "content": _HTML_OR_ERROR_BODY,
        },
        429: {
            "description": "Too many reports or supports from this address just now: the "
            "status page, saying how long to wait.",
            "content": {"text/html": {}},
            "headers": RETRY_AFTER_HEADER,
        },
    },
)
def support_nearby(
    request: Request,
    token: str,
    conn: ConnDep,
    state: AppStateDep,
    principal: PrincipalDep,
    privacy: PrivacyDep,
    report_id: Annotated[str, Form(max_length=32, description="The report to support.")] = "",
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Response:
    """The resident whose report this is adds their support to an open report nearby.

    Their report is joined to that one as a duplicate, and it gains a supporter; the
    status page offers the reports this may name. Each press counts against the same
    report rate limits as the report form (429, with the page saying how long to wait).
    """
    page_lang = pick_language(lang, accept_language)
    settings: dict[str, Any] = {
        "public_rounding_m": privacy.public_rounding_m,
        "duplicate_radius_m": state.intake.duplicate_radius_m,
        "duplicate_window_days": state.intake.duplicate_window_days,
    }
    nonce = secrets.token_urlsafe(18)
    status_code = 422
    retry_after: int | None = None
    try:
        # A support writes to reports as a filing does: counted first, as the form counts.
        limit_reports(request, state, principal)
        if not report_id.strip().isdigit() or len(report_id.strip()) > 18:
            raise InvalidInputError("report_id", NOT_NEARBY)
        support_report(conn, token, int(report_id.strip()), **settings)
    except RateLimitedError as error:
        message, status_code = error.message(page_lang), 429
        retry_after = error.retry_after_s
    except NotFoundError:
        return _page(render_not_found(lang=page_lang, nonce=nonce), nonce=nonce, status_code=404)
    except ConflictError as error:
        message, status_code = error.message(page_lang), 409
    except InvalidInputError as error:
        message = translated(page_lang, error.msgid, error.values)
    else:
        return RedirectResponse(f"/r/{token}?lang={page_lang}", status_code=303)
    try:
        report = track_report(conn, token, **settings)
    except NotFoundError:
        # A bad report_id was checked before the token: the page is still a 404 page.
        return _page(render_not_found(lang=page_lang, nonce=nonce), nonce=nonce, status_code=404)
    html = render_status_page(
        report,
        lang=page_lang,
        nonce=nonce,
        message=message,
        public_rounding_m=privacy.public_rounding_m,
        zone=state.city.zone,
    )
    answer = _page(html, nonce=nonce, status_code=status_code)
    if retry_after is not None:
        answer.headers["Retry-After"] = str(retry_after)
    return answer
