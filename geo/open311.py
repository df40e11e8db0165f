"""Open311 GeoReport v2: our categories as services, our reports as service requests.

This module knows the GeoReport v2 vocabulary (http://wiki.open311.org/GeoReport_v2) and
nothing about HTTP: it turns query values and POSTed fields into our filters and
submissions, and our rows into GeoReport records, rendered as JSON or as XML.

Service requests are read through ``geo.reports.search`` as the anonymous public, so a GeoReport
client sees exactly what the public sees: never a reporter's name or contact, and ``lat``
and ``long`` on the public location grid (``geo.access.policy``). Our eight
statuses fold into GeoReport's two: a report still being worked is ``open``, every other
one is ``closed``.

A record's ``agency_responsible`` (the team's name) and ``service_notice`` (a sentence) are
in the caller's language, English unless it asks for Thai; every field name, code and
timestamp stays as the spec writes it.

FixMyStreet's extension to the spec (its wiki's "Open311 FMS - Proposed differences to
Open311", and its client ``perllib/Open311.pm``) adds service request updates: GET lists the
public changes of reports in a time window, read from their audit trail with FixMyStreet's
extended statuses; POST brings a resident's comment, kept for staff, or reopens a finished
report. The spec's ``tokens`` resource turns a POST answer's token into its request id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from xml.etree import ElementTree as ET

from sqlalchemy import Connection, Engine, text

from geo.access.keys import authenticate
from geo.access.policy import ANONYMOUS, DEFAULT_PUBLIC_ROUNDING_M, Principal, visibility_sql
from geo.city.catalogue import active_categories, category_id, display_name
from geo.city.coordinates import LAT_MAX, LON_MAX, parse_degrees
from geo.city.geocoding import Geocoder
from geo.errors import AuthenticationError, InvalidInputError, Message, NotFoundError
from geo.i18n import N_
from geo.reports.intake import IntakeResult, Submission, check_media_url, file_report
from geo.reports.search import ReportFilter, get_report, report_query
from geo.reports.tracking import is_token
from geo.reports.workflow import add_comment, reopen_report
from geo.settings import IntakeSettings, NotificationSettings, RoutingSettings
from geo.vocabulary import NAME_MAX, NOTE_MAX, OPEN_STATUSES, REPORT_STATUSES

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"

CHANGESET = "2026-11-24"
"""When the shape of our services last changed; discovery tells clients to refresh on it."""

MAX_WINDOW = timedelta(days=90)
"""Longest span of ``start_date`` .. ``end_date``, and the default span (per the spec)."""

MEDIA_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
"""Content type of each output format, as the spec asks."""

OPEN311_STATUS: dict[str, str] = {
    status: "open" if status in OPEN_STATUSES else "closed" for status in REPORT_STATUSES
}
"""Our status -> GeoReport status: reports still being worked are open, the rest closed."""

POST_FIELDS = frozenset(
    {
        "api_key",
        "jurisdiction_id",
        "service_code",
        "lat",
        "long",
        "address_string",
        "address_id",
        "email",
        "device_id",
        "account_id",
        "first_name",
        "last_name",
        "phone",
        "description",
        "media_url",
    }
)
"""The fields of POST Service Request; ``attribute[code]`` fields come on top of these."""

UPDATE_STATUSES = (
    "open",
    "closed",
    "fixed",
    "in_progress",
    "action_scheduled",
    "investigating",
    "duplicate",
    "not_councils_responsibility",
    "no_further_action",
    "internal_referral",
)
"""FixMyStreet's update statuses (its extension's additional states), as its client reads
them: any case, ``_`` for spaces."""

UPDATE_STATUS: dict[str, str] = {
    "open": "open",
    "acknowledged": "investigating",
    "in_progress": "in_progress",
    "resolved": "fixed",
    # Closed follows resolved: still fixed. FixMyStreet keeps a fixed report fixed on it,
    # where "closed" would turn it into one closed unfixed.
    "closed": "fixed",
    "reopened": "open",
    "rejected": "no_further_action",
    "duplicate": "duplicate",
}
"""Our status -> the update status FixMyStreet understands (its client maps them on)."""

REOPENING = frozenset({"open", "reopen"})
"""Posted update statuses that ask to reopen a finished report (``reopen``: FixMyStreet's
word when a resident reopens one)."""

UPDATE_KINDS = ("status", "merged", "forwarded")
"""Audit events that are updates: status changes, merges, and forwards staff explained to the
public. Creation is the request itself; re-routing, hiding and comments are staff's."""

UPDATE_POST_FIELDS = frozenset(
    {
        "api_key",
        "jurisdiction_id",
        "service_request_id",
        "update_id",
        "updated_datetime",
        "status",
        "description",
        "media_url",
        "first_name",
        "last_name",
        "email",
        "phone",
    }
)
"""The fields of POST Service Request Update that we read; FixMyStreet's others (``title``,
``email_alerts_requested``, ``public_anonymity_required``...) are let through unread."""

REPEATABLE_FIELDS = frozenset({"media_url"})
"""Fields a client may send more than once (FixMyStreet sends a report's every photo); the
first is kept, since a request or update has one ``media_url``."""

_MAX_ID = 2**62

# The W3C profile of ISO 8601 (https://www.w3.org/TR/NOTE-datetime): a time needs a zone.
_W3C_DATETIME = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2}))?)?)?",
    re.ASCII,
)

# Characters XML 1.0 cannot carry at all; ElementTree would write them and break the document.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# In XML a list becomes a wrapper element holding one element per item, named here.
_XML_ITEM = {
    "services": "service",
    "service_requests": "request",
    "service_request_updates": "request_update",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "attributes": "attribute",
    "values": "value",
}


# --- reading query values ----------------------------------------------------------------


def check_jurisdiction(given: str | None, served: str) -> None:
    """Refuse a ``jurisdiction_id`` other than ours; leaving it out is fine (one city here)."""
    if given is not None and given.strip() and given.strip() != served:
        raise NotFoundError(
            N_("There is no jurisdiction {given!r} here; this endpoint serves {served!r}."),
            given=given.strip(),
            served=served,
        )


def split_values(values: Iterable[str] | None) -> tuple[str, ...]:
    """Values declared more than once and/or comma-separated, without blanks or repeats."""
    found: dict[str, None] = {}
    for value in values or ():
        for part in value.split(","):
            if part.strip():
                found[part.strip()] = None
    return tuple(found)


def _report_id(value: str) -> int | None:
    """The report id a service_request_id names, or None if it cannot name one."""
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    number = int(value)
    return number if 1 <= number <= _MAX_ID else None


def parse_request_ids(values: Iterable[str] | None, *, limit: int) -> tuple[int, ...]:
    """The ``service_request_id`` values as report ids, refusing anything that is not one."""
    ids: list[int] = []
    for value in split_values(values):
        report_id = _report_id(value)
        if report_id is None:
            raise InvalidInputError(
                "service_request_id",
                N_("{value!r} is not a service request id"),
                value=value[:40],
            )
        ids.append(report_id)
    if len(ids) > limit:
        raise InvalidInputError(
            "service_request_id", N_("at most {limit:,} ids per call"), limit=limit
        )
    return tuple(ids)


def our_statuses(values: Iterable[str]) -> tuple[str, ...]:
    """Our statuses that make up the GeoReport statuses ``values`` (open, closed)."""
    wanted = set(values)
    unknown = wanted - {"open", "closed"}
    if unknown:
        raise InvalidInputError(
            "status",
            N_("unknown status {status!r}; use open, closed or both"),
            status=sorted(unknown)[0],
        )
    return tuple(s for s in REPORT_STATUSES if OPEN311_STATUS[s] in wanted)


def parse_datetime(name: str, value: str) -> datetime:
    """A W3C datetime (``2010-01-01T00:00:00Z``; a date alone means its midnight UTC)."""
    match = _W3C_DATETIME.fullmatch(value.strip())
    if match is None:
        raise InvalidInputError(
            name,
            N_("{value!r} is not a W3C datetime with a time zone, e.g. 2010-01-01T00:00:00Z"),
            value=value[:40],
        )
    part = match.groupdict()
    zone = part["zone"]
    try:
        if zone is None or zone == "Z":
            tz = UTC
        else:
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        return datetime(
            int(part["year"]),
            int(part["month"] or 1),
            int(part["day"] or 1),
            int(part["hour"] or 0),
            int(part["minute"] or 0),
            int(part["second"] or 0),
            int((part["fraction"] or ".")[1:7].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError as error:
        raise InvalidInputError(
            name, N_("{value!r} is not a real date and time"), value=value
        ) from error


def _shift(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:
        return (datetime.max if delta > timedelta(0) else datetime.min).replace(tzinfo=UTC)


def request_window(
    start: datetime | None, end: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """The ``requested_datetime`` range to search, at most 90 days long.

    With neither bound it is the last 90 days; with one bound it runs 90 days from it.
    """
    if start is None and end is None:
        return now - MAX_WINDOW, now
    if start is None:
        assert end is not None
        return _shift(end, -MAX_WINDOW), end
    if end is None:
        return start, _shift(start, MAX_WINDOW)
    if end < start:
        raise InvalidInputError("end_date", N_("must not be earlier than start_date"))
    if end - start > MAX_WINDOW:
        raise InvalidInputError(
            "end_date", N_("start_date and end_date may be at most 90 days apart")
        )
    return start, end


def request_filter(
    *,
    ids: Sequence[str] | None,
    service_codes: Sequence[str] | None,
    statuses: Sequence[str] | None,
    start_date: str | None,
    end_date: str | None,
    now: datetime,
    max_ids: int,
) -> ReportFilter:
    """The filter for GET Service Requests; ``service_request_id`` overrides the rest."""
    report_ids = parse_request_ids(ids, limit=max_ids)
    if report_ids:
        return ReportFilter(ids=report_ids)
    start = parse_datetime("start_date", start_date) if start_date else None
    end = parse_datetime("end_date", end_date) if end_date else None
    created_from, created_to = request_window(start, end, now=now)
    wanted = split_values(statuses)
    return ReportFilter(
        categories=split_values(service_codes),
        statuses=our_statuses(wanted) if wanted else (),
        created_from=created_from,
        created_to=created_to,
    )


# --- services ----------------------------------------------------------------------------


def service_record(code: str, name_en: str, name_th: str) -> dict[str, Any]:
    """A category as a GeoReport service: English name, Thai name as its description."""
    return {
        "service_code": code,
        "service_name": name_en,
        "description": name_th,
        "metadata": False,
        "type": "realtime",
        "keywords": ", ".join(dict.fromkeys((code, name_en, name_th))),
        "group": None,
    }


def list_services(conn: Connection) -> list[dict[str, Any]]:
    """Every active category, as GET Service List answers it."""
    return [service_record(c.code, c.name_en, c.name_th) for c in active_categories(conn)]


def service_definition(conn: Connection, service_code: str) -> dict[str, Any]:
    """GET Service Definition: our categories ask for no extra attributes."""
    if category_id(conn, service_code) is None:
        raise NotFoundError(
            N_("There is no service with service_code {code!r}."), code=service_code
        )
    return {"service_code": service_code, "attributes": []}


# --- service requests --------------------------------------------------------------------


def w3c(moment: datetime) -> str:
    """A timestamp in the W3C format the spec asks for, in UTC to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_notice(team_name: str | None, due_at: datetime, lang: str = "en") -> str:
    """What happens next, in ``lang``: who works the request and by when (a W3C time)."""
    if team_name:
        notice = Message(
            N_("It has been sent to {team} and is due to be dealt with by {due}."),
            {"team": team_name, "due": w3c(due_at)},
        )
    else:
        notice = Message(
            N_("It has been received and is due to be dealt with by {due}."), {"due": w3c(due_at)}
        )
    return notice.text(lang)


def team_names(
    conn: Connection, lang: str, team_ids: Iterable[int] | None = None
) -> dict[int, str]:
    """The name a reader in ``lang`` sees of each team in ``team_ids`` (every team if None)."""
    query = "SELECT id, name, name_th, name_en FROM teams"
    params: dict[str, Any] = {}
    if team_ids is not None:
        query += " WHERE id = ANY(:ids)"
        params["ids"] = sorted(set(team_ids))
    return {
        int(r.id): display_name(lang, name=r.name, name_th=r.name_th, name_en=r.name_en)
        for r in conn.execute(text(query), params)
    }


def request_record(
    report: Mapping[str, Any],
    *,
    status_notes: str | None,
    base_url: str,
    lang: str = "en",
    team_name: str | None = None,
) -> dict[str, Any]:
    """A report read with the public columns, as a GeoReport service request.

    ``team_name`` is the team's name in ``lang`` (``team_names``); without it the record
    names the team as given.
    """
    status = OPEN311_STATUS[report["status"]]
    team = team_name or report["team_name"]
    media_url = report["media_url"]
    if media_url is None and report["photo_ids"]:
        media_url = f"{base_url}/api/photos/{report['photo_ids'][0]}"
    return {
        "service_request_id": str(report["id"]),
        "status": status,
        "status_notes": status_notes,
        "service_name": report["category_name_en"],
        "service_code": report["category"],
        "description": report["description"],
        "agency_responsible": team,
        "service_notice": (
            service_notice(team, report["due_at"], lang) if status == "open" else None
        ),
        "requested_datetime": w3c(report["created_at"]),
        "updated_datetime": w3c(report["updated_at"]),
        "expected_datetime": w3c(report["due_at"]),
        "address": report["address"],
        "address_id": None,
        "zipcode": None,
        "lat": float(report["lat"]),
        "long": float(report["lon"]),
        "media_url": media_url,
    }


def latest_notes(conn: Connection, report_ids: Sequence[int]) -> dict[int, str]:
    """The newest public note of each report that has one (staff notes are never shown)."""
    if not report_ids:
        return {}
    rows = conn.execute(
        text(
            "SELECT DISTINCT ON (report_id) report_id, public_note FROM report_events "
            "WHERE report_id = ANY(:ids) AND public_note IS NOT NULL "
            "ORDER BY report_id, at DESC, id DESC"
        ),
        {"ids": list(report_ids)},
    )
    return {int(r.report_id): str(r.public_note) for r in rows}


def find_requests(
    conn: Connection,
    flt: ReportFilter,
    *,
    limit: int,
    base_url: str,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
    lang: str = "en",
) -> list[dict[str, Any]]:
    """GET Service Requests: the newest ``limit`` matching reports, as the public sees them.

    Team names and notices are in ``lang``.
    """
    query, params = report_query(
        flt, ANONYMOUS, limit=limit, order="newest", public_rounding_m=public_rounding_m
    )
    reports = [dict(r) for r in conn.execute(query, params).mappings()]
    notes = latest_notes(conn, [r["id"] for r in reports])
    teams = team_names(conn, lang, [r["team_id"] for r in reports if r["team_id"] is not None])
    return [
        request_record(
            r,
            status_notes=notes.get(r["id"]),
            base_url=base_url,
            lang=lang,
            team_name=teams.get(r["team_id"]),
        )
        for r in reports
    ]


def get_request(
    conn: Connection,
    service_request_id: str,
    *,
    base_url: str,
    public_rounding_m: float = DEFAULT_PUBLIC_ROUNDING_M,
    lang: str = "en",
) -> dict[str, Any]:
    """GET Service Request: one report as the public sees it; anything else is a 404.

    Its team's name and notice are in ``lang``.
    """
    report_id = _report_id(service_request_id)
    if report_id is None:
        raise NotFoundError(N_("There is no service request {id!r}."), id=service_request_id[:40])
    report = get_report(conn, report_id, ANONYMOUS, public_rounding_m=public_rounding_m)
    notes = latest_notes(conn, [report["id"]])
    team_id = report["team_id"]
    team = team_names(conn, lang, [team_id]).get(team_id) if team_id is not None else None
    return request_record(
        report, status_notes=notes.get(report["id"]), base_url=base_url, lang=lang, team_name=team
    )


# --- POST Service Request ----------------------------------------------------------------


def _field(fields: Mapping[str, str], name: str) -> str | None:
    # "Optional" in the spec: an empty parameter is the same as one not sent.
    value = (fields.get(name) or "").strip()
    return value or None


def _joined(fields: Mapping[str, str], names: tuple[str, str], sep: str) -> str | None:
    parts = [p for p in (_field(fields, n) for n in names) if p]
    joined = sep.join(parts) or None
    if joined is not None and len(joined) > 200:
        raise InvalidInputError(
            names[0],
            N_("{first} and {second} may be 200 characters together"),
            first=names[0],
            second=names[1],
        )
    return joined


def submission_from_post(fields: Mapping[str, str]) -> Submission:
    """Map POST Service Request fields onto our submission, naming the first wrong field.

    ``first_name`` and ``last_name`` become the reporter's name, ``email`` and ``phone`` the
    reporter's contact; ``device_id``, ``account_id`` and ``attribute[...]`` are not kept.
    """
    service_code = _field(fields, "service_code")
    if service_code is None:
        raise InvalidInputError("service_code", N_("is required; services.json lists the codes"))
    lat_text, long_text = _field(fields, "lat"), _field(fields, "long")
    if (lat_text is None) != (long_text is None):
        raise InvalidInputError(
            "long" if long_text is None else "lat", N_("lat and long must be given together")
        )
    lat = parse_degrees("lat", lat_text, LAT_MAX) if lat_text is not None else None
    lon = parse_degrees("long", long_text, LON_MAX) if long_text is not None else None
    address = _field(fields, "address_string")
    if lat is None and address is None:
        if _field(fields, "address_id") is not None:
            raise InvalidInputError(
                "address_id",
                N_("is not supported here; send lat and long, or address_string"),
            )
        raise InvalidInputError("lat", N_("give the location as lat and long, or address_string"))
    description = _field(fields, "description")
    if description is None:
        raise InvalidInputError("description", N_("is required: describe the problem"))
    return Submission(
        category=service_code,
        description=description,
        lat=lat,
        lon=lon,
        address=address,
        reporter_name=_joined(fields, ("first_name", "last_name"), " "),
        reporter_contact=_joined(fields, ("email", "phone"), " / "),
        media_url=_field(fields, "media_url"),
        source="open311",
    )


def require_key(
    conn: Connection,
    api_key: str | None,
    missing: str = N_("An api_key is required to post a service request."),
) -> Principal:
    """The principal of a posting client; posting needs a valid key of any role."""
    if api_key is None or not api_key.strip():
        raise AuthenticationError(missing)
    return authenticate(conn, api_key.strip())


def post_request(
    engine: Engine,
    fields: Mapping[str, str],
    *,
    jurisdiction_id: str,
    routing: RoutingSettings,
    intake: IntakeSettings,
    geocoder: Geocoder,
    lang: str = "en",
) -> list[dict[str, Any]]:
    """POST Service Request: check the key, file the report, answer with its id and notice.

    The report is filed by the same intake as the native API (``file_report``), in its
    own transaction, so a refused request leaves nothing behind. The notice is in ``lang``.
    """
    with engine.connect() as conn:
        principal = require_key(conn, fields.get("api_key"))
        check_jurisdiction(fields.get("jurisdiction_id"), jurisdiction_id)
        service_code = _field(fields, "service_code")
        if service_code is not None:
            service_definition(conn, service_code)  # an unknown code is a 404, per the spec
        # Routing picks the team as the report is stored; a city has few teams, so the
        # names of all of them are read here rather than in another round trip after.
        teams = team_names(conn, lang)
    submission = submission_from_post(fields)

    def answer(result: IntakeResult) -> dict[str, Any]:
        report = result.report
        team = teams.get(report.team_id) if report.team_id is not None else None
        return {
            "service_request_id": str(report.id),
            # The status page's token, /r/{token}: the resident's link to follow the request.
            "token": report.token,
            "service_notice": service_notice(team or report.team_name, report.due_at, lang),
            # We keep no accounts of our own, so there is no account id to hand back.
            "account_id": None,
        }

    filed = file_report(
        engine,
        submission,
        principal=principal,
        routing=routing,
        intake=intake,
        geocoder=geocoder,
        answer=answer,
    )
    return [filed.body]


# --- tokens ------------------------------------------------------------------------------


def request_for_token(conn: Connection, token: str) -> list[dict[str, Any]]:
    """GET Service Request ID from a token: the request a POST answer's token names.

    Our requests are filed at once, so every token has its id; the token is also the key of
    the request's status page, so it tells nothing the holder could not read there. A
    malformed or unknown token, or a request staff hid, is a 404.
    """
    clauses, params = visibility_sql(ANONYMOUS)
    found = (
        conn.execute(
            text(
                "SELECT r.id FROM reports AS r WHERE r.token = :token AND " + " AND ".join(clauses)
            ),
            params | {"token": token},
        ).scalar_one_or_none()
        if is_token(token)
        else None
    )
    if found is None:
        raise NotFoundError(
            N_("There is no service request with token {token!r}."), token=token[:40]
        )
    return [{"service_request_id": str(found), "token": token}]


# --- service request updates ---------------------------------------------------------------


# An after-photo is found through its report: report_photos has no index on event_id.
_UPDATES = """
SELECT e.id, e.report_id, e.at, e.to_status, e.public_note,
       (SELECT min(p.id) FROM report_photos AS p
        WHERE p.report_id = e.report_id AND p.event_id = e.id) AS photo_id
FROM report_events AS e
JOIN reports AS r ON r.id = e.report_id
WHERE e.at >= :start AND e.at < :end
  AND e.kind = ANY(:kinds)
  AND (e.kind <> 'forwarded' OR e.public_note IS NOT NULL)
  AND {visible}
ORDER BY e.at, e.id
LIMIT :rows
"""

_UNDOS = """
SELECT id, CAST(data ->> 'undoes' AS bigint) AS undoes FROM report_events
WHERE report_id = ANY(:reports) AND data ->> 'undoes' IS NOT NULL
"""


def taken_back(undos: Iterable[tuple[int, int]]) -> set[int]:
    """Ids of the events that standing undos took back, from ``(undo id, undone id)`` pairs.

    Read newest first, as the status page reads them (``geo.reports.tracking``), so an undo
    that was itself undone takes nothing back.
    """
    gone: set[int] = set()
    for undo, undone in sorted(undos, reverse=True):
        if undo not in gone:
            gone.add(undone)
    return gone


def update_window(
    start_date: str | None, end_date: str | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """The ``[start_date, end_date)`` window of GET Service Request Updates.

    The same rules as for service requests (``request_window``): at most 90 days, the last
    90 days without dates. The end is left out, so windows that meet share no update.
    """
    start = parse_datetime("start_date", start_date) if start_date else None
    end = parse_datetime("end_date", end_date) if end_date else None
    return request_window(start, end, now=now)


def find_updates(
    conn: Connection, start: datetime, end: datetime, *, limit: int, base_url: str
) -> list[dict[str, Any]]:
    """GET Service Request Updates: the public changes of reports from ``start`` to ``end``.

    One update per status change, merge, and forward with a note for the public, oldest
    first, never of a report staff hid. Its ``description`` is the note staff wrote for the
    public, its ``media_url`` the change's after-photo (``""`` when there is none: the
    extension wants strings). A change that was undone is left out; the undo stays, as an
    update without text whose status is the one restored, so a client that read the change
    before it was taken back returns to the right status. More than ``limit`` updates in
    the window is refused, naming ``end_date``, rather than answered in part: a client
    polling by time would never ask for the rest.
    """
    clauses, params = visibility_sql(ANONYMOUS)
    rows = conn.execute(
        text(_UPDATES.format(visible=" AND ".join(clauses))),
        params | {"start": start, "end": end, "kinds": list(UPDATE_KINDS), "rows": limit + 1},
    ).all()
    if len(rows) > limit:
        raise _too_many_updates(limit, start, rows[limit].at)
    undos = conn.execute(text(_UNDOS), {"reports": sorted({r.report_id for r in rows})})
    gone = taken_back((int(u.id), int(u.undoes)) for u in undos)
    return [
        {
            "update_id": str(r.id),
            "service_request_id": str(r.report_id),
            "status": UPDATE_STATUS[r.to_status],
            "updated_datetime": w3c(r.at),
            "description": r.public_note or "",
            "media_url": f"{base_url}/api/photos/{r.photo_id}" if r.photo_id else "",
        }
        for r in rows
        if r.id not in gone
    ]


def _too_many_updates(limit: int, start: datetime, first_left: datetime) -> InvalidInputError:
    # The first update that does not fit, to the second: a window ending there holds fewer,
    # and the next one, starting there, holds it.
    end = first_left.astimezone(UTC).replace(microsecond=0)
    if end > start:
        return InvalidInputError(
            "end_date",
            N_(
                "more than {limit:,} updates fall in this window; end it at {end} and ask for "
                "the rest from there"
            ),
            limit=limit,
            end=w3c(end),
        )
    return InvalidInputError(
        "end_date",
        N_(
            "more than {limit:,} updates fall in the second at start_date; this window "
            "cannot be answered in one call"
        ),
        limit=limit,
    )


@dataclass(frozen=True, slots=True)
class PostedUpdate:
    """A POST Service Request Update, checked: what the client said about which request."""

    report_id: int
    status: str | None
    """One of ``UPDATE_STATUSES`` or ``reopen``, lower case; ``None`` if not sent."""
    description: str | None
    written_at: datetime | None
    """``updated_datetime``: when the update was written on the client's side."""
    client_update_id: str | None
    media_url: str | None
    person: dict[str, str]
    """The sender's name and contact, for staff only."""

    @property
    def reopens(self) -> bool:
        """Whether the update asks for the report to be open (reopened, if it is finished)."""
        return self.status in REOPENING


def _posted_status(value: str | None) -> str | None:
    if value is None:
        return None
    status = re.sub(r"[\s-]+", "_", value.strip().lower())
    if status not in (*UPDATE_STATUSES, "reopen"):
        raise InvalidInputError(
            "status",
            N_("unknown status {status!r}; use one of {choices}"),
            status=value[:40],
            choices=", ".join((*UPDATE_STATUSES, "reopen")),
        )
    return status


def update_from_post(fields: Mapping[str, str]) -> PostedUpdate:
    """Check POST Service Request Update fields, naming the first wrong one.

    ``service_request_id`` must name a request (404 otherwise, as GET answers it);
    ``description`` (at most ``NOTE_MAX`` characters) is needed unless the update reopens
    or brings a ``media_url``; ``updated_datetime`` is W3C; ``update_id`` (the client's own
    id, at most ``NAME_MAX`` characters) lets a retry find the update it already sent.
    """
    request_id = _field(fields, "service_request_id")
    if request_id is None:
        raise InvalidInputError("service_request_id", N_("is required: the request to update"))
    report_id = _report_id(request_id)
    if report_id is None:
        raise NotFoundError(N_("There is no service request {id!r}."), id=request_id[:40])
    status = _posted_status(_field(fields, "status"))
    description = _field(fields, "description")
    if description is not None and len(description) > NOTE_MAX:
        raise InvalidInputError(
            "description", N_("must be at most {limit:,} characters"), limit=NOTE_MAX
        )
    media_url = check_media_url(_field(fields, "media_url"))
    if description is None and media_url is None and status not in REOPENING:
        raise InvalidInputError("description", N_("is required: say what the update is"))
    written = _field(fields, "updated_datetime")
    client_update_id = _field(fields, "update_id")
    if client_update_id is not None and len(client_update_id) > NAME_MAX:
        raise InvalidInputError(
            "update_id", N_("must be at most {limit:,} characters"), limit=NAME_MAX
        )
    name = _joined(fields, ("first_name", "last_name"), " ")
    contact = _joined(fields, ("email", "phone"), " / ")
    return PostedUpdate(
        report_id=report_id,
        status=status,
        description=description,
        written_at=parse_datetime("updated_datetime", written) if written else None,
        client_update_id=client_update_id,
        media_url=media_url,
        person={k: v for k, v in (("name", name), ("contact", contact)) if v},
    )


def _finished_at(conn: Connection, report_id: int) -> datetime | None:
    """When the report last changed status (ix_report_events_report_at)."""
    found: datetime | None = conn.execute(
        text(
            "SELECT max(at) FROM report_events WHERE report_id = :id "
            "AND kind IN ('status', 'merged')"
        ),
        {"id": report_id},
    ).scalar_one()
    return found


def _written_before(written_at: datetime | None, finished_at: datetime | None) -> bool:
    # Clients give the time to the second (FixMyStreet does): within the same second as the
    # change, the resident is taken at their word.
    if written_at is None or finished_at is None:
        return False
    return written_at < finished_at.replace(microsecond=0)


def post_update(
    engine: Engine,
    fields: Mapping[str, str],
    *,
    jurisdiction_id: str,
    notify: NotificationSettings | None = None,
) -> list[dict[str, Any]]:
    """POST Service Request Update: keep a comment for staff, or reopen a finished report.

    Any valid key may post. An update whose status is ``open`` or ``reopen`` reopens a
    resolved, closed, rejected or duplicate report, unless it was written before the report
    got there (its ``updated_datetime`` is earlier: the client had not heard of it yet, as
    when FixMyStreet passes on a comment on a report it still thinks open); every other
    update is a ``comment`` event. Either way the words, the sender and the status the
    client gave stay in the staff-only audit trail: only staff say what the public reads.
    A retry with the same ``update_id`` from the same key answers the update already made.
    The answer is the update's id, which GET lists as ``update_id`` for a reopen.
    """
    with engine.begin() as conn:
        principal = require_key(
            conn, fields.get("api_key"), N_("An api_key is required to post an update.")
        )
        check_jurisdiction(fields.get("jurisdiction_id"), jurisdiction_id)
        update = update_from_post(fields)
        get_report(conn, update.report_id, principal)  # 404 for one the key may not see
        # One update of a report at a time, so a retry finds the first one made.
        status = conn.execute(
            text("SELECT status FROM reports WHERE id = :id FOR UPDATE"),
            {"id": update.report_id},
        ).scalar_one()
        if update.client_update_id is not None:
            made = conn.execute(
                text(
                    "SELECT id FROM report_events WHERE report_id = :id AND actor = :actor "
                    "AND data ->> 'client_update_id' = :client ORDER BY id LIMIT 1"
                ),
                {
                    "id": update.report_id,
                    "actor": principal.actor,
                    "client": update.client_update_id,
                },
            ).scalar_one_or_none()
            if made is not None:
                return [{"update_id": str(made)}]
        data: dict[str, Any] = {
            key: value
            for key, value in (
                ("client_update_id", update.client_update_id),
                ("client_status", update.status),
                ("client_updated_datetime", update.written_at and update.written_at.isoformat()),
                ("media_url", update.media_url),
                ("by", update.person or None),
            )
            if value
        }
        finished = _finished_at(conn, update.report_id)
        if (
            update.reopens
            and status not in OPEN_STATUSES
            and not _written_before(update.written_at, finished)
        ):
            change = reopen_report(
                conn,
                update.report_id,
                principal=principal,
                note=update.description,
                data=data,
                notify=notify,
            )
            event_id = change.event_id
        else:
            event_id = add_comment(
                conn,
                update.report_id,
                principal=principal,
                note=update.description,
                data=data,
            )
    return [{"update_id": str(event_id)}]


# --- errors and rendering ----------------------------------------------------------------


def error_records(code: int, description: str) -> list[dict[str, Any]]:
    """The spec's error list: one ``{code, description}`` per problem."""
    return [{"code": code, "description": description}]


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _fill(ET.SubElement(element, key), item)
    elif isinstance(value, list | tuple):
        for item in value:
            _fill(ET.SubElement(element, _XML_ITEM[element.tag]), item)
    elif value is not None:
        element.text = _xml_text(value)


def to_xml(root: str, payload: Mapping[str, Any] | Sequence[Any]) -> bytes:
    """A GeoReport document: ``root`` holds the record, or one element per listed record."""
    element = ET.Element(root)
    _fill(element, payload)
    document: bytes = ET.tostring(element, encoding="UTF-8", xml_declaration=True)
    return document


def render(payload: Mapping[str, Any] | Sequence[Any], *, root: str, fmt: str) -> bytes:
    """``payload`` as UTF-8 JSON, or as XML under the element ``root``."""
    if fmt == "xml":
        return to_xml(root, payload)
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def discovery(*, url: str, contact: str) -> dict[str, Any]:
    """The Service Discovery document for our one production endpoint."""
    return {
        "changeset": CHANGESET,
        "contact": contact,
        "key_service": f"API keys are issued by the city's administrators; contact: {contact}.",
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": url,
                "changeset": CHANGESET,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }
