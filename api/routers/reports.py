"""Native report API: intake, reading, working a report, photos."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from api.deps import (
    AppStateDep,
    ConnDep,
    PrincipalDep,
    PrivacyDep,
    StaffDep,
    client_address,
)
from api.errors import error_responses, problem_message
from api.models import IntakeAnswer, Merged, ReportEvent, ReportOut, StatusChanged, StatusForm
from api.params import Text
from api.routers.login import CSRF_COOKIE
from geo.access.ratelimit import ReportRateLimiter
from geo.city.coordinates import LAT_MAX, LON_MAX
from geo.errors import InvalidInputError, Message
from geo.i18n import N_
from geo.reports import idempotency
from geo.reports.forwarding import forward_report
from geo.reports.intake import (
    IntakeResult,
    PhotoUpload,
    Submission,
    file_report,
)
from geo.reports.moderation import Moderation, hide_report, unhide_report
from geo.reports.search import get_report
from geo.reports.store import public_photo
from geo.reports.tracking import public_record
from geo.reports.workflow import (
    merge_duplicate,
    next_statuses,
    report_events,
    undo_status_change,
    work_report,
)
from geo.vocabulary import ADDRESS_MAX, CODE_MAX, DESCRIPTION_MAX, NAME_MAX, NOTE_MAX, URL_MAX

router = APIRouter(prefix="/api", tags=["reports"], responses=error_responses(422, 503))

ReportId = Annotated[int, Path(ge=1, le=2**62, description="Report id.")]


class ReportIn(BaseModel):
    """A new report. Give ``lat`` and ``lon``, or an ``address``, or a photo with GPS."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    category: Text = Field(min_length=1, max_length=CODE_MAX, description="Category code.")
    description: Text = Field(default="", max_length=DESCRIPTION_MAX)
    lat: float | None = Field(default=None, ge=-LAT_MAX, le=LAT_MAX, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-LON_MAX, le=LON_MAX, allow_inf_nan=False)
    address: Text | None = Field(default=None, max_length=ADDRESS_MAX)
    reporter_name: Text | None = Field(default=None, max_length=NAME_MAX)
    reporter_contact: Text | None = Field(
        default=None, max_length=NAME_MAX, description="Phone or e-mail; never shown publicly."
    )
    media_url: Text | None = Field(default=None, max_length=URL_MAX)


def input_error(error: ValidationError) -> InvalidInputError:
    """The first problem pydantic found, as a domain error naming the field."""
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    return InvalidInputError(field, problem_message(first) or Message(first["msg"]))


@contextmanager
def body_problems() -> Iterator[None]:
    """Pydantic's and Starlette's refusals of a request body as errors naming the field."""
    try:
        yield
    except ValidationError as error:
        raise input_error(error) from error
    except HTTPException as error:
        raise InvalidInputError(
            "body", N_("malformed multipart form: {reason}"), reason=error.detail
        ) from error


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_json(request: Request) -> tuple[Submission, bytes]:
    """Parse a JSON body into a Submission; also return the bytes that fingerprint it."""
    length = int(request.headers.get("content-length") or 0)
    if length > 64 * 1024:
        raise InvalidInputError(
            "description",
            N_("the request is too large; at most {limit:,} characters"),
            limit=DESCRIPTION_MAX,
        )
    body = await request.body()
    if len(body) > 64 * 1024:
        raise InvalidInputError(
            "description",
            N_("the request is too large; at most {limit:,} characters"),
            limit=DESCRIPTION_MAX,
        )
    try:
        payload = ReportIn.model_validate_json(body)
    except ValidationError as error:
        raise input_error(error) from error
    return _submission(payload, ()), body


async def _read_form(
    request: Request, media_type: str, max_photo_bytes: int, max_photos: int
) -> tuple[Submission, bytes]:
    """Parse a form (photos as ``photo``) into a Submission; also return its fingerprint."""
    if media_type not in {"multipart/form-data", "application/x-www-form-urlencoded"}:
        raise InvalidInputError(
            "Content-Type",
            N_("send application/json, or multipart/form-data (with photos) or a url-encoded form"),
        )
    length = int(request.headers.get("content-length") or 0)
    limit = max_photos * max_photo_bytes + 256 * 1024
    if length > limit:
        raise InvalidInputError(
            "photo",
            N_("the upload is too large; each photo may be {limit:,} bytes"),
            limit=max_photo_bytes,
        )
    try:
        form = await request.form(max_files=max_photos + 1, max_fields=20, max_part_size=64 * 1024)
    except HTTPException as error:
        raise InvalidInputError(
            "body", N_("malformed multipart form: {reason}"), reason=error.detail
        ) from error
    if not form and length > 0:
        # Starlette reads a multipart body with a wrong boundary as an empty form.
        raise InvalidInputError("body", N_("malformed multipart form: no fields could be read"))
    fields: dict[str, Any] = {}
    photos: list[PhotoUpload] = []
    # Hashed as it is read: a copy of every photo would double what a request holds.
    fingerprint = hashlib.sha256()
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "photo":
                raise InvalidInputError(name, N_("unexpected file; send photos as 'photo'"))
            data = await value.read(max_photo_bytes + 1)
            if len(data) > max_photo_bytes:
                raise InvalidInputError(
                    "photo",
                    N_("a photo may be at most {megabytes:.0f} MB"),
                    megabytes=max_photo_bytes / 1e6,
                )
            photos.append(PhotoUpload(data=data, declared_type=value.content_type))
            fingerprint.update(data)
        else:
            if name in fields:
                raise InvalidInputError(name, N_("given more than once"))
            fields[name] = value if value != "" else None
            fingerprint.update(f"{name}={value}\n".encode())
    try:
        payload = ReportIn.model_validate(fields)
    except ValidationError as error:
        raise input_error(error) from error
    return _submission(payload, tuple(photos)), fingerprint.digest()


def _submission(payload: ReportIn, photos: tuple[PhotoUpload, ...]) -> Submission:
    return Submission(
        category=payload.category,
        description=payload.description,
        lat=payload.lat,
        lon=payload.lon,
        address=payload.address,
        reporter_name=payload.reporter_name,
        reporter_contact=payload.reporter_contact,
        media_url=payload.media_url,
        photos=photos,
    )


def intake_answer(result: IntakeResult, *, base_url: str) -> dict[str, Any]:
    """The 201 body: where the report went, when it is due, what is already known nearby.

    ``tracking_url`` is the report's status page under ``base_url`` (the site's address).
    """
    report = result.report
    return {
        "id": report.id,
        "tracking_url": f"{base_url.rstrip('/')}/r/{report.token}",
        "status": "open",
        "created_at": report.created_at.isoformat(),
        "due_at": report.due_at.isoformat(),
        "location": {
            "lat": result.lat,
            "lon": result.lon,
            "source": result.location_source,
            "snapped_to_ward": report.snapped,
        },
        "ward": {"id": report.ward_id, "code": report.ward_code, "name": report.ward_name},
        "zone": None
        if report.zone_id is None
        else {"id": report.zone_id, "code": report.zone_code},
        "team": None
        if report.team_id is None
        else {"id": report.team_id, "code": report.team_code, "name": report.team_name},
        "photo_ids": result.photo_ids,
        "likely_duplicates": [
            {
                "id": d["id"],
                "status": d["status"],
                "distance_m": float(d["distance_m"]),
                "created_at": d["created_at"],
                "supporters": d["supporters"],
            }
            for d in report.duplicates
        ],
    }


@router.post(
    "/reports",
    status_code=201,
    summary="File a report",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ReportIn.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            **ReportIn.model_json_schema()["properties"],
                            "photo": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "JPEG, PNG or WebP photos.",
                            },
                        },
                        "required": ["category"],
                    }
                },
            },
        }
    },
    responses={
        201: {"description": "Stored and routed.", "model": IntakeAnswer},
        **error_responses(401, 409, 429),
    },
)
async def post_report(
    request: Request,
    state: AppStateDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(description="Any unique string; a retried POST with it returns the first answer."),
    ] = None,
) -> Response:
    """File a report with coordinates, an address or a geotagged photo.

    The answer says which ward, zone and team it was routed to, when it is due (its
    category's SLA, 48 hours unless set otherwise), and which open reports nearby look like
    the same problem. Photos are stored with their EXIF metadata removed from every copy
    shown publicly. Each caller may file ``ISSUEMAP_RATE_LIMIT_ANONYMOUS`` reports (10 a
    minute) per address without a key, more with a key; beyond that the answer is 429
    with ``Retry-After``.
    """
    intake, limits = state.intake, state.report_limits
    address = client_address(request)
    media_type = _media_type(request)
    counted_on_filing: ReportRateLimiter | None = None
    if media_type == "application/json":
        # A JSON body is small: it is read first, and the report is counted on the
        # connection that then stores it, one trip to the thread pool for both. A body or
        # key that is refused is counted all the same, first, so a caller over the limit
        # hears 429 whatever they sent.
        try:
            if idempotency_key is not None:
                idempotency.check_key(idempotency_key)
            submission, raw = await _read_json(request)
        except InvalidInputError:
            await run_in_threadpool(limits.hit, principal, address)
            raise
        counted_on_filing = limits
    else:
        # A form may carry photos: it is counted before a byte of them is read.
        await run_in_threadpool(limits.hit, principal, address)
        if idempotency_key is not None:
            idempotency.check_key(idempotency_key)
        submission, raw = await _read_form(
            request, media_type, intake.photo_max_bytes, intake.photos_per_report
        )
    fingerprint = (
        ""
        if idempotency_key is None
        else idempotency.request_fingerprint(
            request.headers.get("content-type", "").split(";")[0], raw
        )
    )
    filed = await run_in_threadpool(
        partial(
            file_report,
            state.engine,
            submission,
            principal=principal,
            routing=state.routing,
            intake=intake,
            geocoder=state.geocoder,
            answer=partial(intake_answer, base_url=str(request.base_url)),
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            client_address=address,
            public_rounding_m=state.privacy.public_rounding_m,
            limits=counted_on_filing,
        )
    )
    status, body = filed.status_code, filed.body
    headers = {"Location": f"/api/reports/{body['id']}"}
    if filed.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(status_code=status, content=body, headers=headers)


@router.get(
    "/reports/{report_id}",
    summary="One report",
    response_model=None,
    responses={200: {"model": ReportOut}, **error_responses(401, 404)},
)
def read_report(
    report_id: ReportId, conn: ConnDep, principal: PrincipalDep, privacy: PrivacyDep
) -> dict[str, Any]:
    """A report as the caller may see it; staff also get the reporter's contact.

    Staff get the exact location; everyone else gets it on the public grid
    (``ISSUEMAP_MAP_PUBLIC_ROUNDING_M`` metres). ``public_notes`` and ``after_photo_ids``
    are what staff told the public along the way: the public notes of its status changes
    and the photos taken after the work.
    """
    report = get_report(conn, report_id, principal, public_rounding_m=privacy.public_rounding_m)
    report["next_statuses"] = next_statuses(report["status"]) if principal.is_staff else []
    return report | public_record(conn, report_id)


@router.get(
    "/reports/{report_id}/events",
    summary="A report's audit trail",
    response_model=None,
    responses={200: {"model": list[ReportEvent]}, **error_responses(401, 403, 404)},
)
def read_events(
    report_id: ReportId, conn: ConnDep, principal: PrincipalDep
) -> list[dict[str, Any]]:
    """Every change to the report: who, when, from what to what, notes and photos."""
    return report_events(conn, report_id, principal)


StaffNote = Annotated[
    Text | None, Field(max_length=NOTE_MAX, description="For staff only: kept in the audit trail.")
]
PublicNote = Annotated[
    Text | None,
    Field(max_length=NOTE_MAX, description="Shown to the public as the report's status notes."),
]


class StatusIn(BaseModel):
    """A status change."""

    model_config = ConfigDict(extra="forbid")

    status: Text = Field(min_length=1, max_length=16)
    note: StaffNote = None
    public_note: PublicNote = None


def json_or_form_body(
    model: type[BaseModel], multipart: type[BaseModel] | None = None
) -> dict[str, Any]:
    """``openapi_extra`` for a body of ``model`` as JSON or a form (``multipart``'s if given)."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "multipart/form-data": {"schema": (multipart or model).model_json_schema()},
                "application/x-www-form-urlencoded": {"schema": schema},
            },
        }
    }


@router.post(
    "/reports/{report_id}/status",
    summary="Move a report along its workflow",
    response_model=None,
    openapi_extra=json_or_form_body(StatusIn, StatusForm),
    responses={200: {"model": StatusChanged}, **error_responses(401, 403, 404, 409)},
)
async def post_status(
    report_id: ReportId, request: Request, state: AppStateDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Change the status (JSON, or multipart with an after-photo in ``photo``)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    photo: PhotoUpload | None = None
    intake = state.intake
    with body_problems():
        if content_type in {"multipart/form-data", "application/x-www-form-urlencoded"}:
            form = await request.form(max_files=1, max_fields=5, max_part_size=64 * 1024)
            fields = {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
            upload = form.get("photo")
            if isinstance(upload, UploadFile):
                data = await upload.read(intake.photo_max_bytes + 1)
                if len(data) > intake.photo_max_bytes:
                    raise InvalidInputError("photo", N_("the after-photo is too large"))
                photo = PhotoUpload(data=data, declared_type=upload.content_type)
            change = StatusIn.model_validate(fields)
        else:
            change = StatusIn.model_validate_json(await request.body())
    worked = await run_in_threadpool(
        partial(
            work_report,
            state.engine,
            report_id,
            change.status,
            principal=principal,
            intake=intake,
            note=change.note,
            public_note=change.public_note,
            photo=photo,
            notify=state.notifications,
        )
    )
    done = worked.change
    return {
        "id": report_id,
        "from_status": done.from_status,
        "status": done.to_status,
        "at": done.at.isoformat(),
        "event_id": done.event_id,
        "photo_ids": worked.photo_ids,
        "next_statuses": worked.next_statuses,
    }


class MergeIn(BaseModel):
    """Close this report as a duplicate of ``original_id``."""

    model_config = ConfigDict(extra="forbid")

    original_id: int = Field(ge=1, le=2**62)
    note: StaffNote = None
    public_note: PublicNote = None


@router.post(
    "/reports/{report_id}/merge",
    summary="Merge a duplicate into its original",
    response_model=None,
    responses={200: {"model": Merged}, **error_responses(401, 403, 404, 409)},
)
def post_merge(
    report_id: ReportId,
    merge: MergeIn,
    conn: ConnDep,
    principal: PrincipalDep,
    state: AppStateDep,
) -> dict[str, Any]:
    """The duplicate closes with a link to the original, which gains a supporter."""
    done = merge_duplicate(
        conn,
        report_id,
        merge.original_id,
        principal=principal,
        note=merge.note,
        public_note=merge.public_note,
        notify=state.notifications,
    )
    original = get_report(conn, merge.original_id, principal)
    return {
        "id": report_id,
        "status": done.to_status,
        "duplicate_of": merge.original_id,
        "original_supporters": original["supporters"],
        "event_id": done.event_id,
    }


class HideIn(BaseModel):
    """Why the report is hidden from the public (staff see the reason; the public does not)."""

    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(min_length=1, max_length=NOTE_MAX)


class UnhideIn(BaseModel):
    """Showing a hidden report again; a reason is optional and kept in the audit trail."""

    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(default=None, max_length=NOTE_MAX)


class Moderated(BaseModel):
    """A report hidden from the public or shown again, and the audit event written."""

    id: int
    hidden: bool
    hidden_at: str | None = Field(description="When it was hidden; null once shown again.")
    hidden_reason: str | None
    event_id: int
    at: str


def _moderated(done: Moderation) -> dict[str, Any]:
    return {
        "id": done.report_id,
        "hidden": done.hidden,
        "hidden_at": done.hidden_at.isoformat() if done.hidden_at else None,
        "hidden_reason": done.hidden_reason,
        "event_id": done.event_id,
        "at": done.at.isoformat(),
    }


@router.post(
    "/reports/{report_id}/hide",
    summary="Hide a report from the public",
    response_model=None,
    responses={200: {"model": Moderated}, **error_responses(401, 403, 404, 409)},
)
def post_hide(
    report_id: ReportId, body: HideIn, conn: ConnDep, principal: StaffDep
) -> dict[str, Any]:
    """Take a report out of every public output, saying why (planners and administrators).

    It leaves lists, single reports and their photos, map pages, live events, Open311 and
    exports for everyone without a staff key; staff still see it with the reason, and the
    audit trail records who hid it and why. Field-team keys are refused (403).
    """
    return _moderated(hide_report(conn, report_id, principal=principal, reason=body.reason))


@router.post(
    "/reports/{report_id}/unhide",
    summary="Show a hidden report to the public again",
    response_model=None,
    responses={200: {"model": Moderated}, **error_responses(401, 403, 404, 409)},
)
def post_unhide(
    report_id: ReportId, conn: ConnDep, principal: StaffDep, body: UnhideIn | None = None
) -> dict[str, Any]:
    """Show a hidden report again (planners and administrators); audited like hiding."""
    reason = body.reason if body is not None else None
    return _moderated(unhide_report(conn, report_id, principal=principal, reason=reason))


@router.get(
    "/photos/{photo_id}",
    summary="A photo, without EXIF",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
        **error_responses(401, 404),
    },
)
def read_photo(
    photo_id: Annotated[int, Path(ge=1, le=2**62)], conn: ConnDep, principal: PrincipalDep
) -> Response:
    """The public copy of a photo (EXIF removed), if its report is visible to the caller."""
    content_type, data, report_id = public_photo(conn, photo_id)
    get_report(conn, report_id, principal)
    return Response(content=data, media_type=content_type)


@router.post(
    "/reports/{report_id}/status/{event_id}/undo",
    summary="Undo one's own latest status change",
    response_model=None,
    responses={200: {"model": StatusChanged}, **error_responses(401, 403, 404, 409)},
)
def post_undo(
    report_id: ReportId,
    event_id: Annotated[int, Path(ge=1, le=2**62, description="The status change's event id.")],
    conn: ConnDep,
    principal: PrincipalDep,
    state: AppStateDep,
) -> dict[str, Any]:
    """Take back a status change (its `event_id` from the change's answer).

    Only whoever made it, only while it is the report's latest change, and only within
    `UNDO_WINDOW_S` (60) seconds; otherwise 403 or 409 with a sentence saying why. The
    status (and resolution time) is as before, the undo is in the audit trail, and the
    change's notifications not yet sent are dropped: those of a move that ends the work
    (resolved, rejected) wait out the window, so its reporter never hears of it.
    """
    done = undo_status_change(
        conn, event_id, principal=principal, notify=state.notifications, report_id=report_id
    )
    return {
        "id": report_id,
        "from_status": done.from_status,
        "status": done.to_status,
        "at": done.at.isoformat(),
        "event_id": done.event_id,
        "photo_ids": [],
        "next_statuses": next_statuses(done.to_status),
    }


class ForwardIn(BaseModel):
    """A report sent to another team, and why."""

    model_config = ConfigDict(extra="forbid")

    team: Text = Field(
        min_length=1, max_length=CODE_MAX, description="Code of the team that takes it over."
    )
    reason: Text = Field(
        max_length=NOTE_MAX,
        description="Why it goes there. For staff only: kept in the audit trail, never shown "
        "to the reporter or the public.",
    )
    public_note: PublicNote = None


class ForwardedOut(BaseModel):
    """A forward made: the report, the teams' codes, when, and its audit event."""

    report_id: int
    from_team: str | None = Field(description="The team that had it; null if unassigned.")
    to_team: str
    at: str
    event_id: int


FORWARD_BODY_MAX = 64 * 1024
"""Most bytes a forward's body may hold: two notes of ``NOTE_MAX`` characters and a code."""


async def forward_body(request: Request) -> ForwardIn:
    """The forward a JSON body or form holds (a form's ``csrftoken`` is the CSRF check's)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    too_large = InvalidInputError(
        "reason", N_("the request is too large; at most {limit:,} characters"), limit=NOTE_MAX
    )
    if int(request.headers.get("content-length") or 0) > FORWARD_BODY_MAX:
        raise too_large
    with body_problems():
        if content_type in {"multipart/form-data", "application/x-www-form-urlencoded"}:
            form = await request.form(max_files=0, max_fields=5, max_part_size=FORWARD_BODY_MAX)
            fields = {k: v for k, v in form.items() if k != CSRF_COOKIE}
            return ForwardIn.model_validate(fields)
        body = await request.body()
        if len(body) > FORWARD_BODY_MAX:
            raise too_large
        return ForwardIn.model_validate_json(body)


@router.post(
    "/reports/{report_id}/forward",
    summary="Send a report to another team",
    response_model=None,
    openapi_extra=json_or_form_body(ForwardIn),
    responses={200: {"model": ForwardedOut}, **error_responses(401, 403, 404, 409)},
)
def post_forward(
    report_id: ReportId,
    forward: Annotated[ForwardIn, Depends(forward_body)],
    conn: ConnDep,
    principal: StaffDep,
    state: AppStateDep,
) -> dict[str, Any]:
    """Send open work to the team with code `team`, saying why in `reason` ("ส่งต่อ").

    The new team owns it from now on (its queue, its zone map where the place is in one of
    its zones); status and due time stay. A field team forwards only its own team's
    reports, administrators any; planners get 403, a report the caller may not see 404,
    closed work 409, an unknown team or the team that has it 422 naming `team`. The audit
    trail names the person and keeps the reason; the reporter is told the new team's name
    (and `public_note`, if given) by e-mail or chat, and `report.forwarded` webhooks are
    called. Sent with a session, the request needs its CSRF token.
    """
    done = forward_report(
        conn,
        report_id,
        to_team=forward.team,
        reason=forward.reason,
        public_note=forward.public_note,
        principal=principal,
        notify=state.notifications,
    )
    return {
        "report_id": done.report_id,
        "from_team": done.from_team,
        "to_team": done.to_team,
        "at": done.at.isoformat(),
        "event_id": done.event_id,
    }
