"""Report intake: validate a submission, find its location, route it, store it with photos.

The location comes from, in order: the coordinates sent, the address (through the
configured geocoder), or the GPS position in the first photo's EXIF. Likely duplicates are
looked up by the same statement that stores the report, so the answer can show the
reporter what is already known nearby.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, Principal, location_rounding_m, snap_point
from geo.access.ratelimit import ReportRateLimiter
from geo.city.coordinates import check_coordinates
from geo.city.geocoding import Geocoder
from geo.errors import InvalidInputError, OutsideServiceAreaError
from geo.i18n import LANGUAGES, N_
from geo.reports import idempotency
from geo.reports.photos import ProcessedPhoto, process_photo
from geo.reports.store import CreatedReport, create_report, store_photo
from geo.settings import IntakeSettings, RoutingSettings
from geo.vocabulary import ADDRESS_MAX, CODE_MAX, DESCRIPTION_MAX, NAME_MAX, URL_MAX

_URL = re.compile(r"^https?://[^\s/$.?#][^\s]+$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PhotoUpload:
    """An uploaded file as received: bytes and what the client said it was."""

    data: bytes
    declared_type: str | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """A report as a resident, an app or an import sends it."""

    category: str
    description: str = ""
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    reporter_name: str | None = None
    reporter_contact: str | None = None
    media_url: str | None = None
    photos: tuple[PhotoUpload, ...] = field(default=())
    source: str = "api"
    external_id: str | None = None
    language: str | None = None
    """The language the resident reported in (``th`` or ``en``); what they hear back uses it."""


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What intake did: the stored report, where its point came from, likely duplicates."""

    report: CreatedReport
    lat: float
    lon: float
    location_source: str
    photo_ids: list[int]


def _check_text(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if "\x00" in value:
        raise InvalidInputError(name, N_("must not contain NUL characters"))
    value = value.strip()
    if len(value) > limit:
        raise InvalidInputError(name, N_("must be at most {limit:,} characters"), limit=limit)
    return value or None


def check_media_url(value: str | None) -> str | None:
    """A media URL trimmed (``None`` if blank), refused naming ``media_url`` unless http(s)."""
    media_url = _check_text("media_url", value, URL_MAX)
    if media_url is not None and not _URL.match(media_url):
        raise InvalidInputError("media_url", N_("must be an http(s) URL"))
    return media_url


def validate(submission: Submission, intake: IntakeSettings) -> Submission:
    """Check every field of a submission, naming the first field that is wrong."""
    if not submission.category or len(submission.category) > CODE_MAX:
        raise InvalidInputError("category", N_("is required (a category code)"))
    _check_text("category", submission.category, CODE_MAX)
    description = _check_text("description", submission.description, DESCRIPTION_MAX) or ""
    if not description and not submission.photos:
        raise InvalidInputError("description", N_("describe the problem or attach a photo"))
    if (submission.lat is None) != (submission.lon is None):
        missing = "lon" if submission.lon is None else "lat"
        raise InvalidInputError(missing, N_("lat and lon must be given together"))
    if submission.lat is not None and submission.lon is not None:
        check_coordinates(submission.lon, submission.lat)
    media_url = check_media_url(submission.media_url)
    if len(submission.photos) > intake.photos_per_report:
        raise InvalidInputError(
            "photo", N_("at most {count} photos per report"), count=intake.photos_per_report
        )
    if submission.language is not None and submission.language not in LANGUAGES:
        raise InvalidInputError(
            "language", N_("must be one of {choices}"), choices=", ".join(LANGUAGES)
        )
    return Submission(
        category=submission.category,
        description=description,
        lat=submission.lat,
        lon=submission.lon,
        address=_check_text("address", submission.address, ADDRESS_MAX),
        reporter_name=_check_text("reporter_name", submission.reporter_name, NAME_MAX),
        reporter_contact=_check_text("reporter_contact", submission.reporter_contact, NAME_MAX),
        media_url=media_url,
        photos=submission.photos,
        source=submission.source,
        external_id=_check_text("external_id", submission.external_id, NAME_MAX),
        language=submission.language,
    )


def _locate(
    submission: Submission, photos: list[ProcessedPhoto], geocoder: Geocoder
) -> tuple[float, float, str]:
    if submission.lat is not None and submission.lon is not None:
        return submission.lat, submission.lon, "coordinates"
    if submission.address:
        found = geocoder.geocode(submission.address)
        if found is None:
            raise InvalidInputError(
                "address",
                N_(
                    "we could not find {address!r}; check the spelling, name a nearby "
                    "street or landmark, or send the location as lat and lon"
                ),
                address=submission.address,
            )
        return found.lat, found.lon, "address"
    for photo in photos:
        if photo.gps is not None:
            return photo.gps[0], photo.gps[1], "photo_exif"
    raise InvalidInputError(
        "location", N_("give lat and lon, an address, or a photo with its GPS position")
    )


def process_photos(submission: Submission, intake: IntakeSettings) -> list[ProcessedPhoto]:
    """Check the submission, then check its photos and make their public copies.

    Photos wait their turn to be decoded (``IntakeSettings.photo_workers`` at a time), so
    call this before taking a database connection: none is held while they wait.
    """
    return _process_valid_photos(validate(submission, intake), intake)


def _process_valid_photos(submission: Submission, intake: IntakeSettings) -> list[ProcessedPhoto]:
    return [
        process_photo(p.data, declared_type=p.declared_type, intake=intake)
        for p in submission.photos
    ]


MAX_DUPLICATES = 10
"""Most likely duplicates an intake answer lists."""


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the mean Earth sphere (ample for a public estimate)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


def visible_duplicates(
    found: tuple[dict[str, Any], ...],
    *,
    lat: float,
    lon: float,
    grid_m: float,
) -> tuple[dict[str, Any], ...]:
    """The likely duplicates of a report at (``lat``, ``lon``), as its filer may see them.

    ``found`` are the nearby open reports with their exact distance, which
    staff (``grid_m`` 0) see as it is. For the public the distance is measured to where
    the public sees each one (snapped to the ``grid_m`` grid), so three probing reports
    cannot triangulate an exact place. Coordinates are never part of the answer.
    """
    shown = []
    for row in found:
        distance = float(row["distance_m"])
        if grid_m > 0:
            d_lat, d_lon = snap_point(float(row["lat"]), float(row["lon"]), grid_m)
            distance = round(_metres(lat, lon, d_lat, d_lon), 1)
        kept = {k: v for k, v in row.items() if k not in ("lat", "lon")}
        shown.append(kept | {"distance_m": distance})
    shown.sort(key=lambda d: (d["distance_m"], d["id"]))
    return tuple(shown[:MAX_DUPLICATES])


class IntakeObserver(Protocol):
    """Hears of each report intake files, and of each it could not route (metrics count them)."""

    def filed(self, source: str, *, team_id: int | None) -> None:
        """A report from channel ``source`` was stored, for team ``team_id`` (None: no team)."""

    def outside(self, source: str) -> None:
        """A report from channel ``source`` was refused: its point is outside every ward."""


INTAKE_OBSERVER: ContextVar[IntakeObserver | None] = ContextVar("intake_observer", default=None)
"""The observer of intake in this context: the web service sets one per request, and the
threads and background tasks a request starts inherit it; elsewhere there is none."""


def submit_report(
    conn: Connection,
    submission: Submission,
    *,
    principal: Principal,
    routing: RoutingSettings,
    intake: IntakeSettings,
    geocoder: Geocoder,
    photos: list[ProcessedPhoto] | None = None,
    now: datetime | None = None,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
) -> IntakeResult:
    """Validate, locate, route and store a report; the caller commits (or rolls back).

    ``photos`` are the submission's photos from ``process_photos``; without them they are
    processed here. Likely duplicates are told as ``principal`` may see them: for the
    public, their distance is measured to where the public sees them (``geo.access.policy``).
    """
    submission = validate(submission, intake)
    if photos is None:
        photos = _process_valid_photos(submission, intake)
    lat, lon, location_source = _locate(submission, photos, geocoder)
    observer = INTAKE_OBSERVER.get()
    try:
        report = create_report(
            conn,
            lon=lon,
            lat=lat,
            category=submission.category,
            description=submission.description,
            settings=routing,
            source=submission.source,
            external_id=submission.external_id,
            actor=principal.actor,
            created_at=now or datetime.now(UTC),
            reporter_name=submission.reporter_name,
            reporter_contact=submission.reporter_contact,
            address=submission.address,
            location_source=location_source,
            media_url=submission.media_url,
            duplicate_radius_m=intake.duplicate_radius_m,
            duplicate_window_days=intake.duplicate_window_days,
            language=submission.language,
        )
    except OutsideServiceAreaError:
        if observer is not None:
            observer.outside(submission.source)
        raise
    if observer is not None:
        observer.filed(submission.source, team_id=report.team_id)
    report = replace(
        report,
        duplicates=visible_duplicates(
            report.duplicates,
            lat=lat,
            lon=lon,
            grid_m=location_rounding_m(principal, public_rounding_m),
        ),
    )
    photo_ids = [
        store_photo(
            conn,
            report_id=report.id,
            content_type=p.content_type,
            width=p.width,
            height=p.height,
            sha256=p.sha256,
            public_bytes=p.public_bytes,
            original_bytes=p.original_bytes,
        )
        for p in photos
    ]
    return IntakeResult(
        report=report,
        lat=lat,
        lon=lon,
        location_source=location_source,
        photo_ids=photo_ids,
    )


@dataclass(frozen=True, slots=True)
class FiledReport:
    """The answer to a filed report: its status and body, and whether it was a replay."""

    status_code: int
    body: dict[str, Any]
    replayed: bool


def file_report(
    engine: Engine,
    submission: Submission,
    *,
    principal: Principal,
    routing: RoutingSettings,
    intake: IntakeSettings,
    geocoder: Geocoder,
    answer: Callable[[IntakeResult], dict[str, Any]],
    idempotency_key: str | None = None,
    fingerprint: str = "",
    client_address: str | None = None,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
    limits: ReportRateLimiter | None = None,
) -> FiledReport:
    """File a report in its own transaction, replaying a retried ``idempotency_key``.

    ``answer`` shapes the stored report into the body that is returned and remembered for
    replays; ``fingerprint`` tells a retry of the same request from a different one with
    the same key (``geo.reports.idempotency``). Photos are decoded before a connection is
    taken, so none is held while they wait their turn. With ``limits`` the report is first
    counted against the caller's rate limit (``RateLimitedError`` over it), on the
    connection that then stores it, and the count stands whatever becomes of the report.
    """

    def submit(conn: Connection, photos: list[ProcessedPhoto] | None) -> IntakeResult:
        return submit_report(
            conn,
            submission,
            principal=principal,
            routing=routing,
            intake=intake,
            geocoder=geocoder,
            photos=photos,
            public_rounding_m=public_rounding_m,
        )

    if idempotency_key is None and not submission.photos:
        # One statement stores the report and its event: let it be its own transaction,
        # which saves the BEGIN and COMMIT round trips on the busiest path.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if limits is not None:
                limits.hit(principal, client_address, conn=conn)
            return FiledReport(201, answer(submit(conn, None)), replayed=False)
    if limits is not None:
        limits.hit(principal, client_address)
    photos = process_photos(submission, intake)
    scope = idempotency.scope_for(key_id=principal.key_id, client_address=client_address)
    ttl = timedelta(hours=intake.idempotency_ttl_hours)
    with engine.begin() as conn:
        if idempotency_key is not None:
            stored = idempotency.claim(
                conn, scope=scope, key=idempotency_key, fingerprint=fingerprint, ttl=ttl
            )
            if stored is not None:
                return FiledReport(stored.status_code, stored.body, replayed=True)
        body = answer(submit(conn, photos))
        if idempotency_key is not None:
            idempotency.remember(
                conn,
                scope=scope,
                key=idempotency_key,
                fingerprint=fingerprint,
                status_code=201,
                body=body,
                ttl=ttl,
            )
    return FiledReport(201, body, replayed=False)
