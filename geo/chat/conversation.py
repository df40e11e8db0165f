"""The conversation core: a resident reports a problem by chatting, on any chat platform.

``handle`` takes one thing the resident sent (``geo.chat.messages.Incoming``) and answers
with ``Reply`` values. It knows no platform: an adapter (``geo.chat.line``) turns the
platform's events into ``Incoming`` values and renders the replies.

A report needs a place, a category, and a description or a photo; the resident gives them
in any order:

- a shared location, checked at once against the service area by the routing rules
  (``geo.city.routing.route_point``); a place outside gets a plain sentence and a request
  for another, and is not kept;
- photos, checked by the photo pipeline (``geo.reports.photos``) and kept in
  ``chat_uploads`` until the report is sent; the GPS position in a photo's EXIF is the
  place when none was shared (checked like a shared one);
- text, the description (several messages are joined); it is only ever data, never a
  template;
- a category, from buttons with the categories' names in the resident's language.

While the place is missing the platform's location picker is offered. Once everything is
there, open reports of the same category nearby are looked up by intake's own rules
(``geo.reports.store.preview_report``, which stores nothing), so the resident can add
their support to one instead; otherwise, or when they want a new report anyway, a
summary with confirm and cancel follows. Confirm stores the report through the same
intake as every channel and answers with the team, the due time and the status page.

Categories are offered a page at a time when there are more than the platform shows at
once: each page holds as many as fit beside a "More" button (``Pressed("group", n)``,
pages counted from 0) that leads to the next page, and the last page's leads back to
the first, so every category is reachable. Categories are ordered by their name in the
resident's language.

The state lives only in PostgreSQL (``chat_conversations``, locked ``FOR UPDATE`` while a
message is handled), so a restart or another worker carries a conversation on. A
conversation nobody wrote in for ``ChatSettings.idle_minutes`` starts over, and its photos
are deleted. The platform's user id stays in ``chat_conversations``, ``chat_uploads`` and
``report_chats``: never in a report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import bindparam

from geo.access.policy import ANONYMOUS, location_rounding_m
from geo.chat.context import ChatContext
from geo.chat.messages import (
    Button,
    ChannelLimits,
    Incoming,
    Pressed,
    Reply,
    SentPhoto,
    SentText,
    SharedLocation,
)
from geo.city.catalogue import Category, active_categories, category_id, display_name
from geo.city.routing import route_point
from geo.errors import IssuemapError, OutsideServiceAreaError, translated
from geo.i18n import LANGUAGES, N_, translate
from geo.maps.resident import when
from geo.reports.intake import (
    INTAKE_OBSERVER,
    IntakeResult,
    PhotoUpload,
    Submission,
    submit_report,
    visible_duplicates,
)
from geo.reports.notifications import status_page_url
from geo.reports.photos import ProcessedPhoto, process_photo
from geo.reports.reporters import link_report, open_reports_of, rate_report, report_token
from geo.reports.store import preview_report
from geo.reports.tracking import support_report, track_report
from geo.vocabulary import ADDRESS_MAX, CHAT_CHANNELS, CHAT_USER_MAX, DESCRIPTION_MAX, STATUS_NAMES

MY_REPORTS_KEYWORDS: Final = frozenset({"รายงานของฉัน", "my reports"})
"""Typed words that list the resident's open reports (compared trimmed, case-folded)."""

SUMMARY_DESCRIPTION_MAX: Final = 500
"""Longest part of the description the summary repeats."""

DUPLICATES_OFFERED_MAX: Final = 3
"""Most likely duplicates offered for support at once."""

_RATING = re.compile(r"([0-9]{1,18}):([0-9])")
_REPORT_ID = re.compile(r"[0-9]{1,18}")

# --- what the resident reads -------------------------------------------------------------

GREETING = N_(
    "Hello! To report a problem in the city, share where it is, send a photo or a few "
    "words about it, and choose a category, in any order. I will show you a summary "
    "before anything is sent."
)
EXPIRED = N_("The report you started earlier was set aside after a long pause; let's start again.")
ASK_LOCATION = N_("Where is the problem? Press “Share location” and put the pin on the spot.")
ASK_CATEGORY = N_("What kind of problem is it? Choose a category.")
ASK_CATEGORY_AGAIN = N_("That category is not available. Please choose one of these.")
ASK_DETAILS = N_("Please describe the problem in a few words, or send a photo of it.")
LOCATION_NOTED = N_("Thank you, the location is noted.")
OTHER_LOCATION = N_("Please share another location, inside the area the city serves.")
PHOTO_NOTED = N_("Photo received ({count} of at most {limit}).")
PHOTO_PLACE = N_("Photo received; the place where it was taken is used as the location.")
PHOTO_PLACE_OUTSIDE = N_(
    "Photo received, but the place where it was taken is outside the area the city serves."
)
PHOTO_REFUSED = N_("That photo could not be used: {problem}. Please send another one.")
PHOTOS_FULL = N_("This report already has {limit} photos, the most it can hold.")
DESCRIPTION_NOTED = N_("Thank you, the description is noted.")
DESCRIPTION_REFUSED = N_("The description could not be kept: {problem}.")
CATEGORY_NOTED = N_("Category: {name}.")
SUMMARY = N_(
    "Please check your report:\n"
    "Category: {category}\n"
    "Place: {place}\n"
    "Description: {description}\n"
    "Photos: {photos}\n"
    "It goes to: {team}\n"
    "Press “Send” to send it, or “Cancel”."
)
NO_DESCRIPTION = N_("(none)")
THE_CITY = N_("the city")
DUPLICATES = N_(
    "Reports like this one are already open nearby. You can add your support to one of "
    "them instead of sending a new report:"
)
DUPLICATE_LINE = N_("No. {id}: about {distance} m away, reported {when}, {count} supporters")
SENT = N_(
    "Thank you! Your report no. {id} has been sent to {team}. It should be dealt with by "
    "{due}. Follow it here: {url}"
)
SUPPORTED = N_(
    "Thank you! Your support was added to report no. {id}; {count} residents now support "
    "it. Follow it here: {url}"
)
NOT_SENT = N_("The report could not be sent: {problem}")
CANCELLED = N_(
    "Cancelled; nothing was sent. Send a location, a photo or a few words whenever you "
    "want to report a problem."
)
NOT_OFFERED = N_("Sorry, that button is not one I offered just now. Please use the ones below.")
RATED = N_("Thank you for rating report no. {id}: {stars}")
NOT_RATED = N_("Sorry, that rating could not be stored: {problem}")
MY_REPORTS = N_("Your open reports:")
NO_REPORTS = N_("You have no open reports just now.")

LABEL_LOCATION = N_("Share location")
LABEL_CAMERA = N_("Take a photo")
LABEL_CAMERA_ROLL = N_("Choose a photo")
LABEL_SEND = N_("Send")
LABEL_CANCEL = N_("Cancel")
LABEL_NEW_REPORT = N_("New report")
LABEL_SUPPORT = N_("Support no. {id}")
LABEL_MORE = N_("More…")
LABEL_MY_REPORTS = N_("My reports")


# --- the state ---------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    """What the resident has given so far (``chat_conversations.state``)."""

    lat: float | None = None
    lon: float | None = None
    from_photo: bool = False
    """The place is a photo's EXIF position (intake then records ``photo_exif``)."""
    address: str | None = None
    description: str = ""
    category: str | None = None
    new_report: bool = False
    """The resident chose a new report over the likely duplicates offered."""
    offered: list[int] = field(default_factory=list)
    """Reports offered for support just now: only these can be supported."""

    @property
    def started(self) -> bool:
        return self.lat is not None or bool(self.description) or self.category is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "from_photo": self.from_photo,
            "address": self.address,
            "description": self.description,
            "category": self.category,
            "new_report": self.new_report,
            "offered": self.offered,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _State:
        lat, lon = data.get("lat"), data.get("lon")
        return cls(
            lat=float(lat) if isinstance(lat, int | float) else None,
            lon=float(lon) if isinstance(lon, int | float) else None,
            from_photo=bool(data.get("from_photo")),
            address=data.get("address") if isinstance(data.get("address"), str) else None,
            description=str(data.get("description") or ""),
            category=data.get("category") if isinstance(data.get("category"), str) else None,
            new_report=bool(data.get("new_report")),
            offered=[int(i) for i in data.get("offered") or () if isinstance(i, int)],
        )


@dataclass(slots=True)
class _Turn:
    """One message being handled: where it came from and what is known."""

    conn: Connection
    channel: str
    user_id: str
    lang: str
    context: ChatContext
    now: datetime
    state: _State
    photos: int
    """Photos kept so far in this conversation."""

    def t(self, message: str, **values: object) -> str:
        return translate(self.lang, message, **values)


# --- the entry point ---------------------------------------------------------------------


def handle(
    conn: Connection,
    *,
    channel: str,
    user_id: str,
    incoming: Incoming,
    context: ChatContext,
    language: Callable[[], str | None],
    now: datetime | None = None,
) -> list[Reply]:
    """Apply what ``user_id`` sent on ``channel`` to their conversation; return the answer.

    The conversation is loaded and locked (created when there is none; started over when
    idle longer than ``context.chat.idle_minutes``), ``incoming`` applied, and the state
    saved. ``language`` is asked only when the conversation has no language yet (Thai when
    it answers none we speak). The caller commits. A resident's mistake is never raised:
    it becomes a reply saying what is wrong, in their language. The answer holds at most
    ``context.limits.max_messages`` replies of at most ``max_buttons`` buttons each.
    """
    if channel not in CHAT_CHANNELS:
        raise ValueError(f"unknown chat channel {channel!r}")
    if not user_id or len(user_id) > CHAT_USER_MAX:
        raise ValueError("a chat user id must be 1 to CHAT_USER_MAX characters")
    now = now or datetime.now(UTC)
    turn, expired = _load(conn, channel, user_id, context, language, now)
    replies = [Reply(turn.t(EXPIRED))] if expired else []
    replies += _apply(turn, incoming)
    _save(turn)
    return _fit(replies, context.limits)


def _load(
    conn: Connection,
    channel: str,
    user_id: str,
    context: ChatContext,
    language: Callable[[], str | None],
    now: datetime,
) -> tuple[_Turn, bool]:
    """Lock (or create) the conversation; forget it when it was idle too long."""
    key = {"channel": channel, "user_id": user_id}
    conn.execute(
        text(
            "INSERT INTO chat_conversations (channel, user_id, state, updated_at, expires_at) "
            "VALUES (:channel, :user_id, '{}', :now, :now) ON CONFLICT DO NOTHING"
        ),
        key | {"now": now},
    )
    row = conn.execute(
        text(
            "SELECT language, state, expires_at FROM chat_conversations "
            "WHERE channel = :channel AND user_id = :user_id FOR UPDATE"
        ),
        key,
    ).one()
    state = _State.from_json(dict(row.state or {}))
    photos = int(
        conn.execute(
            text(
                "SELECT count(*) FROM chat_uploads WHERE channel = :channel AND user_id = :user_id"
            ),
            key,
        ).scalar_one()
    )
    # Told only when something was forgotten; a new conversation starts out expired.
    expired = row.expires_at <= now and (state.started or photos > 0)
    if row.expires_at <= now:
        state, photos = _State(), 0
        _forget_photos(conn, channel, user_id)
    lang = row.language
    if lang not in LANGUAGES:
        asked = language()
        lang = asked if asked in LANGUAGES else "th"
    return _Turn(conn, channel, user_id, str(lang), context, now, state, photos), expired


def _save(turn: _Turn) -> None:
    turn.conn.execute(
        text(
            "UPDATE chat_conversations SET state = :state, language = :lang, "
            "updated_at = :now, expires_at = :expires "
            "WHERE channel = :channel AND user_id = :user_id"
        ).bindparams(bindparam("state", type_=JSONB)),
        {
            "state": turn.state.as_json(),
            "lang": turn.lang,
            "now": turn.now,
            "expires": turn.now + timedelta(minutes=turn.context.chat.idle_minutes),
            "channel": turn.channel,
            "user_id": turn.user_id,
        },
    )


def _forget_photos(conn: Connection, channel: str, user_id: str) -> None:
    conn.execute(
        text("DELETE FROM chat_uploads WHERE channel = :channel AND user_id = :user_id"),
        {"channel": channel, "user_id": user_id},
    )


def _clear(turn: _Turn) -> None:
    """Forget the report being put together (the conversation keeps its language)."""
    turn.state = _State()
    turn.photos = 0
    _forget_photos(turn.conn, turn.channel, turn.user_id)


def _fit(replies: Sequence[Reply], limits: ChannelLimits) -> list[Reply]:
    """``replies`` cut to what the channel shows: messages, buttons, label and text lengths."""
    fitted = []
    for reply in replies[: limits.max_messages]:
        buttons = tuple(
            Button(_cut(b.label, limits.label_max), press=b.press, asks=b.asks)
            for b in reply.buttons[: limits.max_buttons]
        )
        fitted.append(Reply(_cut(reply.text, limits.text_max), reply.image_url, buttons))
    return fitted


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: max(limit - 1, 0)] + "…"


# --- applying what the resident sent -----------------------------------------------------


def _apply(turn: _Turn, incoming: Incoming) -> list[Reply]:
    if isinstance(incoming, SharedLocation):
        return _location(turn, incoming)
    if isinstance(incoming, SentPhoto):
        return _photo(turn, incoming)
    if isinstance(incoming, SentText):
        return _text(turn, incoming.text)
    if isinstance(incoming, Pressed):
        return _pressed(turn, incoming)
    return [Reply(turn.t(GREETING)), *_next(turn)]


def _location(turn: _Turn, shared: SharedLocation) -> list[Reply]:
    problem = _outside(turn, shared.lat, shared.lon)
    if problem is not None:
        return [Reply(f"{problem} {turn.t(OTHER_LOCATION)}", buttons=_location_buttons(turn))]
    state = turn.state
    state.lat, state.lon, state.from_photo = shared.lat, shared.lon, False
    address = (shared.address or "").replace("\x00", "").strip()
    state.address = address[:ADDRESS_MAX] or None
    state.new_report, state.offered = False, []
    return [Reply(turn.t(LOCATION_NOTED)), *_next(turn)]


def _outside(turn: _Turn, lat: float, lon: float) -> str | None:
    """Why (``lat``, ``lon``) cannot be a report's place, in the resident's words, or None.

    The routing rules decide (a ward covers the point, or one lies within the snapping
    distance); routing needs a category, so the resident's is used, else any active one.
    """
    code = turn.state.category
    found = category_id(turn.conn, code) if code else None
    if found is None:
        categories = active_categories(turn.conn)
        if not categories:
            return None
        found = categories[0].id
    try:
        route_point(
            turn.conn,
            lon=lon,
            lat=lat,
            category_id=found,
            created_at=turn.now,
            settings=turn.context.routing,
        )
    except OutsideServiceAreaError as error:
        # Refused here, before intake would refuse it: counted as intake counts its own.
        observer = INTAKE_OBSERVER.get()
        if observer is not None:
            observer.outside(turn.channel)
        return error.message(turn.lang)
    except IssuemapError as error:
        return _problem(turn, error)
    return None


def _problem(turn: _Turn, error: IssuemapError) -> str:
    """What is wrong, in the resident's language, without the field's name."""
    return translated(turn.lang, error.msgid, error.values)


def _photo(turn: _Turn, photo: SentPhoto) -> list[Reply]:
    limit = turn.context.intake.photos_per_report
    if turn.photos >= limit:
        return [Reply(turn.t(PHOTOS_FULL, limit=limit)), *_next(turn)]
    try:
        processed = process_photo(
            photo.data, declared_type=photo.declared_type, intake=turn.context.intake
        )
    except IssuemapError as error:
        return [Reply(turn.t(PHOTO_REFUSED, problem=_problem(turn, error))), *_next(turn)]
    gps = processed.gps
    turn.conn.execute(
        text(
            "INSERT INTO chat_uploads (channel, user_id, content_type, width, height, sha256, "
            "public_bytes, original_bytes, gps_lat, gps_lon, created_at) VALUES (:channel, "
            ":user_id, :content_type, :width, :height, :sha256, :public_bytes, "
            ":original_bytes, :gps_lat, :gps_lon, :now)"
        ),
        {
            "channel": turn.channel,
            "user_id": turn.user_id,
            "content_type": processed.content_type,
            "width": processed.width,
            "height": processed.height,
            "sha256": processed.sha256,
            "public_bytes": processed.public_bytes,
            "original_bytes": processed.original_bytes,
            "gps_lat": gps[0] if gps else None,
            "gps_lon": gps[1] if gps else None,
            "now": turn.now,
        },
    )
    turn.photos += 1
    state = turn.state
    if state.lat is None and gps is not None:
        problem = _outside(turn, gps[0], gps[1])
        if problem is None:
            state.lat, state.lon, state.from_photo = gps[0], gps[1], True
            state.new_report, state.offered = False, []
            return [Reply(turn.t(PHOTO_PLACE)), *_next(turn)]
        return [Reply(f"{turn.t(PHOTO_PLACE_OUTSIDE)} {problem}"), *_next(turn)]
    return [Reply(turn.t(PHOTO_NOTED, count=turn.photos, limit=limit)), *_next(turn)]


def _text(turn: _Turn, typed: str) -> list[Reply]:
    if typed.strip().casefold() in MY_REPORTS_KEYWORDS:
        return _my_reports(turn)
    started = turn.state.started or turn.photos > 0
    problem = None
    if "\x00" in typed:
        problem = turn.t(N_("must not contain NUL characters"))
    words = typed.strip()
    joined = "\n".join(p for p in (turn.state.description, words) if p)
    if problem is None and len(joined) > DESCRIPTION_MAX:
        problem = turn.t(N_("must be at most {limit:,} characters"), limit=DESCRIPTION_MAX)
    replies = [] if started else [Reply(turn.t(GREETING))]
    if problem is not None:
        return [*replies, Reply(turn.t(DESCRIPTION_REFUSED, problem=problem)), *_next(turn)]
    if not words:
        return [*replies, *_next(turn)]
    turn.state.description = joined
    return [*replies, Reply(turn.t(DESCRIPTION_NOTED)), *_next(turn)]


def _pressed(turn: _Turn, press: Pressed) -> list[Reply]:
    action, value = press.action, press.value
    if action == "start":
        _clear(turn)
        return [Reply(turn.t(GREETING)), *_next(turn)]
    if action == "cancel":
        _clear(turn)
        return [Reply(turn.t(CANCELLED), buttons=_start_buttons(turn))]
    if action == "my_reports":
        return _my_reports(turn)
    if action == "rate":
        return _rate(turn, value)
    if action == "group":
        page = int(value) if _REPORT_ID.fullmatch(value) else 0
        return [_category_menu(turn, turn.t(ASK_CATEGORY), page)]
    if action == "category":
        return _category(turn, value)
    if action == "new_report" and _complete(turn):
        turn.state.new_report, turn.state.offered = True, []
        return _next(turn)
    if action == "support":
        return _support(turn, value)
    if action == "confirm" and _complete(turn):
        return _confirm(turn)
    return [Reply(turn.t(NOT_OFFERED)), *_next(turn)]


def _category(turn: _Turn, code: str) -> list[Reply]:
    chosen = next((c for c in active_categories(turn.conn) if c.code == code), None)
    if chosen is None:
        return [_category_menu(turn, turn.t(ASK_CATEGORY_AGAIN), 0)]
    if turn.state.category != chosen.code:
        turn.state.category = chosen.code
        turn.state.new_report, turn.state.offered = False, []
    return [Reply(turn.t(CATEGORY_NOTED, name=chosen.name(turn.lang))), *_next(turn)]


# --- what comes next ---------------------------------------------------------------------


def _complete(turn: _Turn) -> bool:
    state = turn.state
    return (
        state.lat is not None
        and state.category is not None
        and (bool(state.description) or turn.photos > 0)
    )


def _next(turn: _Turn) -> list[Reply]:
    """Ask for what is missing; with everything there, offer duplicates or the summary."""
    state = turn.state
    if state.lat is None:
        return [Reply(turn.t(ASK_LOCATION), buttons=_location_buttons(turn))]
    if state.category is None:
        return [_category_menu(turn, turn.t(ASK_CATEGORY), 0)]
    if not state.description and turn.photos == 0:
        return [Reply(turn.t(ASK_DETAILS), buttons=(*_photo_buttons(turn), _cancel(turn)))]
    try:
        draft = _dry_run(turn)
    except IssuemapError as error:
        state.offered = []
        return [
            Reply(turn.t(NOT_SENT, problem=_problem(turn, error)), buttons=_start_buttons(turn))
        ]
    if not state.new_report:
        offer = _duplicates(turn, draft)
        if offer is not None:
            return [offer]
    state.offered = []
    return [_summary(turn, draft)]


def _submission(turn: _Turn, photos: Sequence[PhotoUpload], *, exact: bool) -> Submission:
    """The report as it stands; without ``exact`` its place is left to intake (a photo's)."""
    state = turn.state
    assert state.category is not None
    return Submission(
        category=state.category,
        description=state.description,
        lat=state.lat if exact else None,
        lon=state.lon if exact else None,
        address=state.address,
        photos=tuple(photos),
        source=turn.channel,
        language=turn.lang,
    )


def _uploads(turn: _Turn) -> list[ProcessedPhoto]:
    rows = turn.conn.execute(
        text(
            "SELECT content_type, width, height, sha256, public_bytes, original_bytes, "
            "gps_lat, gps_lon FROM chat_uploads "
            "WHERE channel = :channel AND user_id = :user_id ORDER BY id"
        ),
        {"channel": turn.channel, "user_id": turn.user_id},
    ).all()
    return [
        ProcessedPhoto(
            content_type=r.content_type,
            width=int(r.width),
            height=int(r.height),
            sha256=r.sha256,
            public_bytes=bytes(r.public_bytes),
            original_bytes=bytes(r.original_bytes),
            gps=(float(r.gps_lat), float(r.gps_lon)) if r.gps_lat is not None else None,
        )
        for r in rows
    ]


def _submit(turn: _Turn, photos: list[ProcessedPhoto]) -> IntakeResult:
    """Store the report through intake, as every channel does; the caller commits."""
    state = turn.state
    # A place from a photo is left to intake, which finds it in the first photo with a
    # position and records it came from there (``photo_exif``), as the web form does;
    # unless that first photo is not the one whose place was taken (it lay outside).
    first_gps = next((p.gps for p in photos if p.gps is not None), None)
    exact = not state.from_photo or first_gps != (state.lat, state.lon)
    uploads = [PhotoUpload(p.original_bytes, p.content_type) for p in photos]
    return submit_report(
        turn.conn,
        _submission(turn, uploads, exact=exact),
        principal=ANONYMOUS,
        routing=turn.context.routing,
        intake=turn.context.intake,
        geocoder=turn.context.geocoder,
        photos=photos,
        now=turn.now,
        public_rounding_m=turn.context.public_rounding_m,
    )


@dataclass(frozen=True, slots=True)
class _Draft:
    """What intake would answer for the report as it stands: its team and duplicates."""

    team: str
    duplicates: tuple[dict[str, Any], ...]


def _dry_run(turn: _Turn) -> _Draft:
    """What intake would do with the report as it stands: its team and likely duplicates.

    ``preview_report`` runs intake's own routing and duplicate rules without storing
    anything; the duplicates are told as the public may see them, as intake tells them.
    """
    state = turn.state
    assert state.category is not None and state.lat is not None and state.lon is not None
    intake = turn.context.intake
    found = preview_report(
        turn.conn,
        lon=state.lon,
        lat=state.lat,
        category=state.category,
        settings=turn.context.routing,
        duplicate_radius_m=intake.duplicate_radius_m,
        duplicate_window_days=intake.duplicate_window_days,
        created_at=turn.now,
    )
    duplicates = visible_duplicates(
        found.duplicates,
        lat=state.lat,
        lon=state.lon,
        grid_m=location_rounding_m(ANONYMOUS, turn.context.public_rounding_m),
    )
    return _Draft(team=_team_name(turn, found.team_id), duplicates=duplicates)


def _team_name(turn: _Turn, team_id: int | None) -> str:
    if team_id is None:
        return turn.t(THE_CITY)
    row = turn.conn.execute(
        text("SELECT name, name_th, name_en FROM teams WHERE id = :id"), {"id": team_id}
    ).one()
    return display_name(turn.lang, name=row.name, name_th=row.name_th, name_en=row.name_en)


def _duplicates(turn: _Turn, draft: _Draft) -> Reply | None:
    found = draft.duplicates[:DUPLICATES_OFFERED_MAX]
    if not found:
        return None
    turn.state.offered = [int(d["id"]) for d in found]
    lines = [turn.t(DUPLICATES)]
    for d in found:
        lines.append(
            turn.t(
                DUPLICATE_LINE,
                id=d["id"],
                distance=f"{float(d['distance_m']):,.0f}",
                when=when(_moment(d["created_at"]), turn.lang, zone=turn.context.zone),
                count=d["supporters"],
            )
        )
    buttons = [
        Button(turn.t(LABEL_SUPPORT, id=d["id"]), press=Pressed("support", str(d["id"])))
        for d in found
    ]
    buttons += [Button(turn.t(LABEL_NEW_REPORT), press=Pressed("new_report")), _cancel(turn)]
    return Reply("\n".join(lines), buttons=tuple(buttons))


def _moment(value: object) -> datetime | None:
    # Intake's answer comes from JSON: a timestamp is text there.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return None


def _summary(turn: _Turn, draft: _Draft) -> Reply:
    state = turn.state
    assert state.category is not None and state.lat is not None and state.lon is not None
    names = {c.code: c.name(turn.lang) for c in active_categories(turn.conn)}
    place = state.address or f"{state.lat:.5f}, {state.lon:.5f}"
    description = _cut(state.description, SUMMARY_DESCRIPTION_MAX) or turn.t(NO_DESCRIPTION)
    body = turn.t(
        SUMMARY,
        category=names.get(state.category, state.category),
        place=place,
        description=description,
        photos=turn.photos,
        team=draft.team,
    )
    buttons = [Button(turn.t(LABEL_SEND), press=Pressed("confirm")), _cancel(turn)]
    if turn.photos < turn.context.intake.photos_per_report:
        buttons += _photo_buttons(turn)
    return Reply(body, buttons=tuple(buttons))


# --- sending, supporting ------------------------------------------------------------------


def _confirm(turn: _Turn) -> list[Reply]:
    try:
        with turn.conn.begin_nested():
            result = _submit(turn, _uploads(turn))
            link_report(
                turn.conn, report_id=result.report.id, channel=turn.channel, user_id=turn.user_id
            )
    except IssuemapError as error:
        return [Reply(turn.t(NOT_SENT, problem=_problem(turn, error))), *_next(turn)]
    report = result.report
    tracked = track_report(
        turn.conn,
        report.token,
        public_rounding_m=turn.context.public_rounding_m,
        duplicate_radius_m=turn.context.intake.duplicate_radius_m,
        duplicate_window_days=turn.context.intake.duplicate_window_days,
    )
    team = (
        display_name(
            turn.lang,
            name=tracked.team_name,
            name_th=tracked.team_name_th,
            name_en=tracked.team_name_en,
        )
        if report.team_id is not None
        else turn.t(THE_CITY)
    )
    _clear(turn)
    answer = turn.t(
        SENT,
        id=report.id,
        team=team,
        due=when(report.due_at, turn.lang, zone=turn.context.zone),
        url=status_page_url(turn.context.public_url, report.token),
    )
    return [Reply(answer, buttons=_start_buttons(turn))]


def _support(turn: _Turn, value: str) -> list[Reply]:
    original = int(value) if _REPORT_ID.fullmatch(value) else None
    if original is None or original not in turn.state.offered or not _complete(turn):
        return [Reply(turn.t(NOT_OFFERED)), *_next(turn)]
    try:
        with turn.conn.begin_nested():
            # The resident's report is stored and joined to the original as a duplicate,
            # as the status page's support button does: the original's supporters are
            # the reports joined to it, and staff still see this one's photos and words.
            result = _submit(turn, _uploads(turn))
            link_report(
                turn.conn, report_id=result.report.id, channel=turn.channel, user_id=turn.user_id
            )
            supporters = support_report(
                turn.conn,
                result.report.token,
                original,
                public_rounding_m=turn.context.public_rounding_m,
                duplicate_radius_m=turn.context.intake.duplicate_radius_m,
                duplicate_window_days=turn.context.intake.duplicate_window_days,
            )
    except IssuemapError as error:
        turn.state.offered = [i for i in turn.state.offered if i != original]
        return [Reply(turn.t(NOT_SENT, problem=_problem(turn, error))), *_next(turn)]
    token = report_token(turn.conn, original)
    _clear(turn)
    url = status_page_url(turn.context.public_url, token) if token else ""
    answer = turn.t(SUPPORTED, id=original, count=supporters, url=url)
    return [Reply(answer, buttons=_start_buttons(turn))]


# --- rating, the resident's reports ------------------------------------------------------


def _rate(turn: _Turn, value: str) -> list[Reply]:
    parsed = _RATING.fullmatch(value)
    if parsed is None:
        return [Reply(turn.t(NOT_OFFERED)), *_next_if_started(turn)]
    report_id, stars = int(parsed.group(1)), int(parsed.group(2))
    try:
        with turn.conn.begin_nested():
            rate_report(
                turn.conn,
                report_id=report_id,
                channel=turn.channel,
                user_id=turn.user_id,
                rating=stars,
                now=turn.now,
            )
    except IssuemapError as error:
        reply = Reply(turn.t(NOT_RATED, problem=_problem(turn, error)))
        return [reply, *_next_if_started(turn)]
    return [Reply(turn.t(RATED, id=report_id, stars="★" * stars)), *_next_if_started(turn)]


def _next_if_started(turn: _Turn) -> list[Reply]:
    """The next question of a report being put together; nothing when there is none."""
    return _next(turn) if turn.state.started or turn.photos else []


def _my_reports(turn: _Turn) -> list[Reply]:
    own = open_reports_of(turn.conn, channel=turn.channel, user_id=turn.user_id)
    if not own:
        return [Reply(turn.t(NO_REPORTS)), *_next_if_started(turn)]
    names = {c.code: c.name(turn.lang) for c in active_categories(turn.conn)}
    lines = [turn.t(MY_REPORTS)]
    for report in own:
        status = turn.t(STATUS_NAMES.get(report.status, report.status))
        name = names.get(report.category, report.category)
        url = status_page_url(turn.context.public_url, report.token)
        lines.append(f"#{report.id} {name}: {status}\n{url}")
    return [Reply("\n\n".join(lines)), *_next_if_started(turn)]


# --- buttons -----------------------------------------------------------------------------


def _cancel(turn: _Turn) -> Button:
    return Button(turn.t(LABEL_CANCEL), press=Pressed("cancel"))


def _photo_buttons(turn: _Turn) -> tuple[Button, ...]:
    if turn.photos >= turn.context.intake.photos_per_report:
        return ()
    return (
        Button(turn.t(LABEL_CAMERA), asks="camera"),
        Button(turn.t(LABEL_CAMERA_ROLL), asks="camera_roll"),
    )


def _location_buttons(turn: _Turn) -> tuple[Button, ...]:
    buttons = [Button(turn.t(LABEL_LOCATION), asks="location"), *_photo_buttons(turn)]
    if turn.state.started or turn.photos:
        buttons.append(_cancel(turn))
    else:
        buttons.append(Button(turn.t(LABEL_MY_REPORTS), press=Pressed("my_reports")))
    return tuple(buttons)


def _start_buttons(turn: _Turn) -> tuple[Button, ...]:
    return (
        Button(turn.t(LABEL_LOCATION), asks="location"),
        Button(turn.t(LABEL_MY_REPORTS), press=Pressed("my_reports")),
    )


def category_pages(
    categories: Sequence[Category], lang: str, per_page: int
) -> list[list[Category]]:
    """``categories`` by name in ``lang``, cut into pages of ``per_page`` (at least one page)."""
    ordered = sorted(categories, key=lambda c: (c.name(lang).casefold(), c.code))
    size = max(per_page, 1)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)] or [[]]


def _category_menu(turn: _Turn, question: str, page: int) -> Reply:
    """``question`` with the categories as buttons: one page, with "More" when they do not fit."""
    categories = active_categories(turn.conn)
    room = turn.context.limits.max_buttons
    # One button is kept for "Cancel"; with more categories than fit, one more for "More".
    if len(categories) <= room - 1:
        pages = category_pages(categories, turn.lang, len(categories))
    else:
        pages = category_pages(categories, turn.lang, room - 2)
    page = page if 0 <= page < len(pages) else 0
    buttons = [Button(c.name(turn.lang), press=Pressed("category", c.code)) for c in pages[page]]
    if len(pages) > 1:
        following = (page + 1) % len(pages)
        label = f"{turn.t(LABEL_MORE)} ({following + 1}/{len(pages)})"
        buttons.append(Button(label, press=Pressed("group", str(following))))
    if len(buttons) < room:
        buttons.append(_cancel(turn))
    return Reply(question, buttons=tuple(buttons))
