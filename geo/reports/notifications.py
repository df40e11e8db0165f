"""Hearing back: e-mails to reporters and signed webhook calls, through a transactional outbox.

A change a resident or another system should hear about writes its ``outbox`` rows in the
transaction that makes the change (``enqueue_event``, and ``CREATED_WEBHOOKS_SQL`` inside
the intake statement), so the change and its notifications commit together or not at all.
A row holds only which event it announces (``{"event": ..., "event_id": ...}``, the
``report_events`` row); what is sent is read from that event and its report when it is
delivered, through the public rules: a status in words, the public note, the status page
link, the location on the public grid, never a reporter's name or contact, never a staff note.

``deliver_due`` sends what is due. Each row is claimed with ``FOR UPDATE SKIP LOCKED`` in a
transaction of its own that lasts until its fate is written, so any number of workers never
send one message twice at the same time. A failed try is retried later, each wait twice the
one before (``NotificationSettings.outbox_retry_s`` up to ``outbox_retry_max_s``), until
``outbox_max_attempts``; a mail server that refuses a message for good (5xx) fails it at once.
While the mail server is down nothing is lost: the rows wait, and go out once it is back.

A report filed by chat (``report_chats``) also gets a chat message per public status change,
to the user who filed it. This module knows no chat platform: the worker is handed a
``ChatSender`` per channel (``geo.chat.updates.line_sender`` for LINE), and a row of a
channel without a sender waits until there is one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import smtplib
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, Engine, func, insert, text
from sqlalchemy.exc import DBAPIError

from geo.access.accounts import is_email as is_email  # the one e-mail address rule
from geo.access.policy import snap_point
from geo.city.catalogue import display_name
from geo.db.schema import OutboxMessage
from geo.errors import InvalidInputError, NotFoundError
from geo.i18n import LANGUAGES, N_, translate
from geo.settings import NotificationSettings, SmtpServer
from geo.settings import settings_problems as settings_problems  # what the workers report
from geo.vocabulary import CHAT_CHANNELS, NAME_MAX, STATUS_NAMES, URL_MAX

log = logging.getLogger(__name__)

WEBHOOK_EVENTS: Final = (
    "report.created",
    "report.status_changed",
    "report.merged",
    "report.forwarded",
)
"""The events a webhook may subscribe to."""

SIGNATURE_HEADER: Final = "X-Issuemap-Signature"
"""``sha256=<hex>``: HMAC-SHA256 of the raw request body, keyed with the webhook's secret."""

EVENT_HEADER: Final = "X-Issuemap-Event"
EVENT_ID_HEADER: Final = "X-Issuemap-Event-Id"
"""The same for every try of one event: a receiver drops a repeat by it."""
TIMESTAMP_HEADER: Final = "X-Issuemap-Timestamp"
"""When this try was sent, in Unix seconds."""

ERROR_MAX = 1000
"""Longest ``last_error`` kept on an outbox row."""

CHAT_EVENTS: Final = ("report.status_changed", "report.merged", "report.forwarded")
"""The events a reporter who filed by chat hears about in their chat."""

CHAT_SETTINGS: Final = {"line": "ISSUEMAP_LINE_CHANNEL_SECRET"}
"""The setting that turns each chat channel on, named when a message waits for it."""

# --- writing the outbox, in the caller's transaction --------------------------------------

CREATED_WEBHOOKS_SQL: Final = """created_webhooks AS (
    INSERT INTO outbox (kind, target, report_id, payload)
    SELECT 'webhook', 'webhook:' || w.id, e.report_id,
           jsonb_build_object('event', 'report.created', 'event_id', e.id)
    FROM event AS e
    JOIN webhooks AS w ON w.revoked_at IS NULL AND 'report.created' = ANY (w.events)
)"""
"""A CTE for the intake statement: a ``report.created`` call per subscribed webhook.

It reads the statement's ``event`` CTE (the new ``created`` event, ``RETURNING id,
report_id``), so the report and its webhook calls are one statement, one commit.
"""


def enqueue_event(
    conn: Connection, *, event: str, event_id: int, email: bool, delay_s: float = 0.0
) -> int:
    """Queue what announces ``report_events`` row ``event_id`` as ``event``; the caller commits.

    With ``email`` (mail is configured: ``NotificationSettings.email_enabled``) a reporter
    who left an e-mail address gets one mail. A reporter who filed by chat
    (``report_chats``) gets one chat message for a change of ``CHAT_EVENTS`` that staff made
    (not for their own join of a report nearby). Every active webhook subscribed to
    ``event`` gets a call, unless staff hid the report from the public: webhooks go to
    systems outside the city, while the reporter still hears about their own report.
    With ``delay_s`` nothing is sent before that many seconds from now, so a change its
    author may still undo (``geo.reports.workflow.undo_status_change``) is not announced
    before it is final. Returns the number of rows queued.
    """
    row = conn.execute(
        text(
            "SELECT r.id, r.reporter_contact, r.hidden_at IS NOT NULL AS hidden, "
            "COALESCE(e.data ->> 'by', '') = 'reporter' AS by_reporter, "
            "rc.channel AS chat_channel, rc.user_id AS chat_user "
            "FROM report_events AS e JOIN reports AS r ON r.id = e.report_id "
            "LEFT JOIN report_chats AS rc ON rc.report_id = r.id WHERE e.id = :id"
        ),
        {"id": event_id},
    ).one()
    payload = {"event": event, "event_id": event_id}
    rows: list[dict[str, Any]] = []
    if email and is_email(row.reporter_contact):
        rows.append(
            {
                "kind": "email",
                "target": row.reporter_contact.strip(),
                "report_id": row.id,
                "payload": payload,
            }
        )
    if (
        row.chat_user is not None
        and row.chat_channel in CHAT_CHANNELS
        and event in CHAT_EVENTS
        and not row.by_reporter
    ):
        rows.append(
            {
                "kind": row.chat_channel,
                "target": row.chat_user,
                "report_id": row.id,
                "payload": payload,
            }
        )
    if not row.hidden:
        hooks = conn.execute(
            text(
                "SELECT id FROM webhooks WHERE revoked_at IS NULL AND :event = ANY (events) "
                "ORDER BY id"
            ),
            {"event": event},
        ).scalars()
        rows += [
            {"kind": "webhook", "target": f"webhook:{h}", "report_id": row.id, "payload": payload}
            for h in hooks
        ]
    if rows:
        queued = insert(OutboxMessage)
        if delay_s > 0:
            # The database's clock, as the worker's ``available_at <= now()`` reads it.
            queued = queued.values(
                available_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay_s)
            )
        conn.execute(queued, rows)
    return len(rows)


# --- what is sent ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TeamNames:
    """A team as residents may learn of it: its code and names (``geo.city.catalogue``)."""

    code: str
    name: str
    name_th: str | None
    name_en: str | None

    def display(self, lang: str) -> str:
        """The name a reader in ``lang`` sees (``display_name``)."""
        return display_name(lang, name=self.name, name_th=self.name_th, name_en=self.name_en)


@dataclass(frozen=True, slots=True)
class PublicEvent:
    """An event of a report as anyone outside the city may learn it (exact point aside)."""

    event: str
    event_id: int
    report_id: int
    at: datetime
    from_status: str | None
    status: str
    public_note: str | None
    duplicate_of: int | None
    token: str
    language: str
    hidden: bool
    category: str
    category_th: str
    category_en: str
    created_at: datetime
    lat: float
    lon: float
    """The exact point: only ever sent snapped to the public grid (``webhook_body``)."""
    photo_ids: tuple[int, ...] = ()
    """Photos staff attached to this change (after-photos); their public copies only."""
    forwarded_to: TeamNames | None = None
    """The team a ``report.forwarded`` event passed the report to (never the staff reason)."""


def load_event(conn: Connection, *, event: str, event_id: int) -> PublicEvent | None:
    """The event an outbox row announces, or ``None`` if its report is gone."""
    row = conn.execute(
        text(
            "SELECT e.id, e.report_id, e.at, e.from_status, e.to_status, e.public_note, "
            "r.duplicate_of, r.token, r.language, r.hidden_at IS NOT NULL AS hidden, "
            "c.code, c.name_th, c.name_en, r.created_at, ST_Y(r.geom) AS lat, "
            "ST_X(r.geom) AS lon, "
            "ARRAY(SELECT p.id FROM report_photos AS p WHERE p.event_id = e.id ORDER BY p.id) "
            "AS photo_ids, t.code AS team_code, t.name AS team_name, "
            "t.name_th AS team_name_th, t.name_en AS team_name_en "
            "FROM report_events AS e JOIN reports AS r ON r.id = e.report_id "
            "JOIN categories AS c ON c.id = r.category_id "
            # The team a forward named (``geo.reports.forwarding``), as it is called now.
            "LEFT JOIN teams AS t ON e.kind = 'forwarded' "
            "AND t.id = CAST(e.data ->> 'to_team_id' AS integer) WHERE e.id = :id"
        ),
        {"id": event_id},
    ).one_or_none()
    if row is None:
        return None
    return PublicEvent(
        event=event,
        event_id=int(row.id),
        report_id=int(row.report_id),
        at=row.at,
        from_status=row.from_status,
        status=row.to_status,
        public_note=row.public_note,
        duplicate_of=row.duplicate_of if event == "report.merged" else None,
        token=row.token,
        language=row.language if row.language in LANGUAGES else "th",
        hidden=bool(row.hidden),
        category=row.code,
        category_th=row.name_th,
        category_en=row.name_en,
        created_at=row.created_at,
        lat=float(row.lat),
        lon=float(row.lon),
        photo_ids=tuple(int(p) for p in row.photo_ids),
        forwarded_to=(
            TeamNames(row.team_code, row.team_name, row.team_name_th, row.team_name_en)
            if row.team_code is not None
            else None
        ),
    )


def photo_url(public_url: str, photo_id: int) -> str:
    """A photo's public copy (no EXIF): ``{public_url}/api/photos/{photo_id}``."""
    return f"{public_url.rstrip('/')}/api/photos/{photo_id}"


def status_page_url(public_url: str, token: str) -> str:
    """A report's status page: ``{public_url}/r/{token}``."""
    return f"{public_url.rstrip('/')}/r/{token}"


@dataclass(frozen=True, slots=True)
class MailText:
    """An e-mail's subject and plain-text body, in the reporter's language."""

    subject: str
    body: str


def update_lines(
    event: PublicEvent,
    *,
    language: str,
    public_url: str,
    photo_urls: Sequence[str] = (),
    photos_attached: bool = False,
) -> list[str]:
    """What a reporter reads about ``event`` in ``language``, line by line, mail or chat alike.

    The status in words with the category, the report it was joined to, the public note,
    the links of ``photo_urls`` (the after-photos a mail attaches, with
    ``photos_attached``, or a chat cannot show as images) and the status page link. Both
    links open only while the report is public, so a report staff hid gets neither. Only
    the catalog's own messages are templates; the note and names are values placed into
    them, so ``{{7*7}}`` or HTML in a note arrives exactly as staff wrote it. The location
    is left out altogether.
    """
    lang = language if language in LANGUAGES else "th"
    status = translate(lang, STATUS_NAMES.get(event.status, event.status))
    category = event.category_th if lang == "th" else event.category_en
    lines = [
        translate(
            lang,
            "Your report #{id} ({category}) is now: {status}.",
            id=event.report_id,
            category=category,
            status=status,
        )
        if event.forwarded_to is None
        else translate(
            lang,
            "Your report #{id} ({category}) was passed to {team}, who will deal with it "
            "from now on.",
            id=event.report_id,
            category=category,
            team=event.forwarded_to.display(lang),
        ),
    ]
    if event.duplicate_of is not None:
        lines.append(
            translate(
                lang,
                "It was joined to report #{original}, which covers the same problem.",
                original=event.duplicate_of,
            )
        )
    if event.public_note:
        lines += ["", translate(lang, "Message from the city:"), event.public_note]
    if event.hidden:
        return lines
    if photo_urls:
        heading = (
            N_("Photo of the work (also attached):")
            if photos_attached
            else N_("Photo of the work:")
        )
        lines += ["", translate(lang, heading), *photo_urls]
    lines += [
        "",
        translate(lang, "See your report and what has been done:"),
        status_page_url(public_url, event.token),
    ]
    return lines


def email_text(event: PublicEvent, *, public_url: str) -> MailText:
    """The mail a reporter gets about ``event``, in the language they reported in.

    Its body is ``update_lines`` (photos linked, and attached by ``email_message``) between
    a greeting and why the reporter gets it.
    """
    lang = event.language
    status = translate(lang, STATUS_NAMES.get(event.status, event.status))
    lines = [
        translate(lang, "Hello,"),
        "",
        *update_lines(
            event,
            language=lang,
            public_url=public_url,
            photo_urls=[photo_url(public_url, p) for p in event.photo_ids],
            photos_attached=True,
        ),
        "",
        "-- ",
        translate(lang, "You get this e-mail because you left this address when you reported."),
    ]
    subject = (
        translate(lang, "Your report #{id}: {status}", id=event.report_id, status=status)
        if event.forwarded_to is None
        else translate(
            lang,
            "Your report #{id}: passed to {team}",
            id=event.report_id,
            team=event.forwarded_to.display(lang),
        )
    )
    return MailText(subject=subject, body="\n".join(lines) + "\n")


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo's public copy, to attach to a mail."""

    id: int
    content_type: str
    data: bytes


def event_photos(conn: Connection, event: PublicEvent) -> list[Photo]:
    """The public copies (re-encoded, without EXIF) of the photos attached to ``event``."""
    if not event.photo_ids:
        return []
    rows = conn.execute(
        text(
            "SELECT id, content_type, public_bytes FROM report_photos "
            "WHERE id = ANY(:ids) ORDER BY id"
        ),
        {"ids": list(event.photo_ids)},
    )
    return [Photo(int(r.id), r.content_type, bytes(r.public_bytes)) for r in rows]


def email_message(
    event: PublicEvent,
    *,
    to: str,
    settings: NotificationSettings,
    photos: Iterable[Photo] = (),
) -> EmailMessage:
    """The whole e-mail about ``event`` for ``to``: plain text (UTF-8), photos attached."""
    content = email_text(event, public_url=settings.public_url)
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = content.subject
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = make_msgid(domain=_domain(settings.mail_from))
    # Tells vacation responders and other robots not to answer.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(content.body, charset="utf-8")
    # After set_content, which replaces every Content-* header.
    message["Content-Language"] = event.language
    for photo in photos:
        maintype, _, subtype = photo.content_type.partition("/")
        message.add_attachment(
            photo.data,
            maintype=maintype,
            subtype=subtype,
            filename=f"report-{event.report_id}-photo-{photo.id}.{subtype}",
        )
    return message


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip(" >") or "localhost"


def webhook_body(event: PublicEvent, *, public_url: str, public_rounding_m: float) -> bytes:
    """The JSON a webhook receives about ``event``.

    Receivers are outside the city, so it holds what the public may see: the location on
    the public grid (``geo.access.policy``), the public note, no reporter name or contact
    and no staff note. A ``report.forwarded`` call names the team the report went to
    (``forwarded_to``), never the staff's reason.
    """
    lat, lon = snap_point(event.lat, event.lon, public_rounding_m)
    document: dict[str, Any] = {
        "event": event.event,
        "event_id": event.event_id,
        "occurred_at": event.at.isoformat(),
        "report": {
            "id": event.report_id,
            "category": event.category,
            "status": event.status,
            "from_status": event.from_status,
            "public_note": event.public_note,
            "duplicate_of": event.duplicate_of,
            "created_at": event.created_at.isoformat(),
            "lat": round(lat, 7),
            "lon": round(lon, 7),
            "location_rounding_m": public_rounding_m,
            "status_url": status_page_url(public_url, event.token),
            "photo_urls": [photo_url(public_url, p) for p in event.photo_ids],
        },
    }
    if event.forwarded_to is not None:
        document["report"]["forwarded_to"] = {
            "team": event.forwarded_to.code,
            "name": event.forwarded_to.name,
        }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """The ``X-Issuemap-Signature`` value of ``body``: ``sha256=`` and the HMAC's hex digest."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


# --- sending -----------------------------------------------------------------------------


class DeliveryError(Exception):
    """A try failed; ``permanent`` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


ChatSender = Callable[[Connection, PublicEvent, str, int], None]
"""Sends ``event`` to a chat user: ``(conn, event, user id, outbox id)``.

The outbox id is the same for every try of one message, so a platform that drops repeats
by a key (LINE's ``X-Line-Retry-Key``) never shows one message twice. A failure is raised as
``DeliveryError`` (``permanent`` when trying again cannot help).
"""


def send_email(message: EmailMessage, server: SmtpServer, *, timeout_s: float) -> None:
    """Hand ``message`` to the mail server (smtplib), raising ``DeliveryError`` on failure.

    A 5xx refusal of the recipient or the message is permanent; anything else (no answer,
    4xx, a failed login) is worth another try.
    """
    context = ssl.create_default_context()
    client: smtplib.SMTP
    try:
        if server.tls:
            client = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout_s, context=context)
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=timeout_s)
        with client:
            if server.starttls:
                client.starttls(context=context)
            if server.username is not None:
                client.login(server.username, server.password or "")
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        raise DeliveryError(
            f"recipient refused: {error.recipients}", permanent=all(c >= 500 for c in codes)
        ) from error
    except smtplib.SMTPDataError as error:
        raise DeliveryError(
            f"message refused: {error.smtp_code} {error.smtp_error!r}",
            permanent=error.smtp_code >= 500,
        ) from error
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(f"mail server: {type(error).__name__}: {error}") from error


def call_webhook(
    url: str, secret: str, event: PublicEvent, body: bytes, *, timeout_s: float
) -> None:
    """POST ``body`` to ``url`` signed with ``secret`` (httpx); any 2xx is delivered.

    Redirects are not followed (the registered address is the one that gets the data).
    A 410 Gone ends the tries; any other answer or no answer is tried again.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "issuemap-webhooks",
        SIGNATURE_HEADER: signature(secret, body),
        EVENT_HEADER: event.event,
        EVENT_ID_HEADER: str(event.event_id),
        TIMESTAMP_HEADER: str(int(time.time())),
    }
    try:
        answer = httpx.post(
            url, content=body, headers=headers, timeout=timeout_s, follow_redirects=False
        )
    except httpx.HTTPError as error:
        raise DeliveryError(f"webhook: {type(error).__name__}: {error}") from error
    if not answer.is_success:
        raise DeliveryError(
            f"webhook answered {answer.status_code}", permanent=answer.status_code == 410
        )


# --- the worker --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRound:
    """What one ``deliver_due`` did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def tried(self) -> int:
        """Messages tried in this round."""
        return self.delivered + self.retrying + self.failed


_CLAIM = text(
    "SELECT id, kind, target, payload, attempts FROM outbox "
    "WHERE delivered_at IS NULL AND failed_at IS NULL AND available_at <= now() "
    "ORDER BY available_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)


def outbox_backlog(conn: Connection) -> int:
    """Messages waiting to go out: neither delivered nor given up on (due or retrying later)."""
    # The partial index ix_outbox_pending holds exactly these rows.
    return int(
        conn.execute(
            text("SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL")
        ).scalar_one()
    )


def retry_delay_s(attempts: int, settings: NotificationSettings) -> float:
    """Seconds to wait after the ``attempts``-th failed try: doubling, up to the cap."""
    return float(
        min(settings.outbox_retry_s * 2 ** min(attempts - 1, 40), settings.outbox_retry_max_s)
    )


def deliver_due(
    engine: Engine,
    settings: NotificationSettings,
    *,
    public_rounding_m: float,
    limit: int = 100,
    chat_senders: Mapping[str, ChatSender] | None = None,
) -> DeliveryRound:
    """Try every outbox message that is due, at most ``limit``; return what happened.

    ``public_rounding_m`` is the public location grid (``PrivacySettings``) webhook
    bodies use. ``chat_senders`` sends the messages of each chat channel that is configured
    (``{"line": ...}``); a message of a channel without one is tried again later.
    """
    senders = chat_senders or {}
    delivered = retrying = failed = 0
    for _ in range(limit):
        with engine.begin() as conn:
            row = conn.execute(_CLAIM).one_or_none()
            if row is None:
                break
            outcome = _deliver_one(
                conn, row, settings, public_rounding_m=public_rounding_m, chat_senders=senders
            )
        if outcome == "delivered":
            delivered += 1
        elif outcome == "retrying":
            retrying += 1
        else:
            failed += 1
    return DeliveryRound(delivered=delivered, retrying=retrying, failed=failed)


def _deliver_one(
    conn: Connection,
    row: Any,
    settings: NotificationSettings,
    *,
    public_rounding_m: float,
    chat_senders: Mapping[str, ChatSender],
) -> str:
    attempts = int(row.attempts) + 1
    try:
        try:
            _send(
                conn, row, settings, public_rounding_m=public_rounding_m, chat_senders=chat_senders
            )
        except DBAPIError:
            raise
        except DeliveryError:
            raise
        except Exception as error:  # a bad message must not stall the queue
            raise DeliveryError(f"{type(error).__name__}: {error}") from error
    except DeliveryError as error:
        give_up = error.permanent or attempts >= settings.outbox_max_attempts
        conn.execute(
            text(
                "UPDATE outbox SET attempts = :attempts, last_error = :error, "
                "failed_at = CASE WHEN :give_up THEN now() END, "
                "available_at = now() + make_interval(secs => :delay) WHERE id = :id"
            ),
            {
                "id": row.id,
                "attempts": attempts,
                "error": str(error)[:ERROR_MAX],
                "give_up": give_up,
                "delay": 0.0 if give_up else retry_delay_s(attempts, settings),
            },
        )
        log.warning(
            "outbox message %d (%s) try %d failed%s: %s",
            row.id,
            row.kind,
            attempts,
            "; giving up" if give_up else "",
            error,
        )
        return "failed" if give_up else "retrying"
    conn.execute(
        text(
            "UPDATE outbox SET attempts = :attempts, delivered_at = now(), last_error = NULL "
            "WHERE id = :id"
        ),
        {"id": row.id, "attempts": attempts},
    )
    return "delivered"


def _send(
    conn: Connection,
    row: Any,
    settings: NotificationSettings,
    *,
    public_rounding_m: float,
    chat_senders: Mapping[str, ChatSender],
) -> None:
    payload = row.payload
    event = load_event(conn, event=str(payload["event"]), event_id=int(payload["event_id"]))
    if event is None:
        raise DeliveryError("the report no longer exists", permanent=True)
    if row.kind in CHAT_CHANNELS:
        sender = chat_senders.get(row.kind)
        if sender is None:
            # Queued while the channel was on; kept until it is configured again.
            setting = CHAT_SETTINGS.get(row.kind, "its settings")
            raise DeliveryError(f"{row.kind} is not configured ({setting})")
        # Hidden reports too: like a mail, the message goes only to the one who filed it.
        sender(conn, event, str(row.target), int(row.id))
        return
    if row.kind == "email":
        server = settings.smtp
        if server is None:
            # Queued while mail was configured; kept until it is configured again.
            raise DeliveryError("e-mail is not configured (ISSUEMAP_SMTP_URL)")
        message = email_message(
            event, to=row.target, settings=settings, photos=event_photos(conn, event)
        )
        send_email(message, server, timeout_s=settings.smtp_timeout_s)
        return
    hook = conn.execute(
        text("SELECT url, secret, revoked_at FROM webhooks WHERE id = :id"),
        {"id": int(str(row.target).removeprefix("webhook:"))},
    ).one_or_none()
    if hook is None or hook.revoked_at is not None:
        raise DeliveryError("the webhook was revoked", permanent=True)
    if event.hidden:
        raise DeliveryError("staff hid the report from the public", permanent=True)
    body = webhook_body(event, public_url=settings.public_url, public_rounding_m=public_rounding_m)
    call_webhook(hook.url, hook.secret, event, body, timeout_s=settings.webhook_timeout_s)


class StopSignal(Protocol):
    """What tells the worker to stop: a ``threading.Event`` or ``multiprocessing.Event``."""

    def is_set(self) -> bool: ...  # noqa: D102

    def wait(self, timeout: float | None = None) -> bool: ...  # noqa: D102


PRUNE_EVERY_S = 3600.0
"""How often the worker deletes old delivered messages."""


def prune_delivered(engine: Engine, *, keep_days: float) -> int:
    """Delete messages delivered more than ``keep_days`` ago; return how many went."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                text("DELETE FROM outbox WHERE delivered_at < now() - make_interval(secs => :s)"),
                {"s": keep_days * 86_400.0},
            ).rowcount
        )


def run_worker(
    engine: Engine,
    settings: NotificationSettings,
    *,
    public_rounding_m: float,
    stop: StopSignal,
    chat_senders: Mapping[str, ChatSender] | None = None,
    each_round: Sequence[Callable[[], object]] = (),
) -> None:
    """Deliver what falls due until ``stop`` is set; a database outage is waited out.

    ``chat_senders`` are as for ``deliver_due``. ``each_round`` are further chores run
    before each round (a chat channel's leftover incoming messages); one that fails is
    logged and tried again next round.
    """
    log.info(
        "delivery worker started (e-mail %s, chat: %s)",
        "on" if settings.email_enabled else "off",
        ", ".join(sorted(chat_senders or {})) or "off",
    )
    next_prune = time.monotonic()
    while not stop.is_set():
        try:
            if time.monotonic() >= next_prune:
                prune_delivered(engine, keep_days=settings.outbox_keep_days)
                next_prune = time.monotonic() + PRUNE_EVERY_S
            for chore in each_round:
                try:
                    chore()
                except DBAPIError:
                    raise
                except Exception:  # one chore's failure must not stop the deliveries
                    log.exception("delivery worker: %r failed; trying again next round", chore)
            done = deliver_due(
                engine, settings, public_rounding_m=public_rounding_m, chat_senders=chat_senders
            )
        except DBAPIError as error:
            log.warning("delivery worker: database unavailable, waiting: %s", error.orig)
            done = DeliveryRound()
        if done.tried == 0:
            stop.wait(settings.outbox_poll_s)
    log.info("delivery worker stopped")


# --- webhook registrations ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """A registered webhook; ``secret`` is only ever shown in this answer."""

    id: int
    url: str
    events: list[str]
    description: str
    created_at: datetime
    secret: str


def check_webhook_url(url: str) -> str:
    """``url`` if it is a plain http(s) address we may call, else ``InvalidInputError``."""
    if len(url) > URL_MAX:
        raise InvalidInputError("url", f"must be at most {URL_MAX:,} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidInputError("url", "must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"}:
        raise InvalidInputError("url", "must be an http:// or https:// address")
    if parts.username is not None or parts.password is not None:
        raise InvalidInputError("url", "must not hold a user name or password")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError as error:
        raise InvalidInputError("url", "has a bad port number") from error
    if not host:
        raise InvalidInputError("url", "must name a host")
    if parts.fragment:
        raise InvalidInputError("url", "must not have a #fragment")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as error:
        raise InvalidInputError("url", f"is not a valid address: {error}") from error
    return url


def _check_events(events: Iterable[str] | None) -> list[str]:
    chosen = list(WEBHOOK_EVENTS if events is None else events)
    unknown = [e for e in chosen if e not in WEBHOOK_EVENTS]
    if unknown or not chosen:
        raise InvalidInputError("events", f"choose one or more of {', '.join(WEBHOOK_EVENTS)}")
    return [e for e in WEBHOOK_EVENTS if e in chosen]


def create_webhook(
    conn: Connection,
    *,
    url: str,
    events: Iterable[str] | None = None,
    description: str = "",
) -> NewWebhook:
    """Register ``url`` for ``events`` (default: all of ``WEBHOOK_EVENTS``), with a new secret."""
    url = check_webhook_url(url)
    chosen = _check_events(events)
    if "\x00" in description:
        raise InvalidInputError("description", "must not contain NUL characters")
    if len(description) > NAME_MAX:
        raise InvalidInputError("description", f"must be at most {NAME_MAX:,} characters")
    secret = secrets.token_urlsafe(32)
    row = conn.execute(
        text(
            "INSERT INTO webhooks (url, secret, events, description) "
            "VALUES (:url, :secret, :events, :description) RETURNING id, created_at"
        ),
        {"url": url, "secret": secret, "events": chosen, "description": description},
    ).one()
    return NewWebhook(
        id=row.id,
        url=url,
        events=chosen,
        description=description,
        created_at=row.created_at,
        secret=secret,
    )


def list_webhooks(conn: Connection) -> list[dict[str, Any]]:
    """Every active webhook with how its deliveries stand; never a secret."""
    rows = conn.execute(
        text(
            """
            SELECT w.id, w.url, w.events, w.description, w.created_at,
                   count(o.id) FILTER (WHERE o.delivered_at IS NULL AND o.failed_at IS NULL)
                       AS pending,
                   count(o.id) FILTER (WHERE o.failed_at IS NOT NULL) AS failed,
                   (SELECT o2.last_error FROM outbox AS o2
                    WHERE o2.target = 'webhook:' || w.id AND o2.last_error IS NOT NULL
                    ORDER BY o2.id DESC LIMIT 1) AS last_error
            FROM webhooks AS w
            LEFT JOIN outbox AS o ON o.target = 'webhook:' || w.id
            WHERE w.revoked_at IS NULL
            GROUP BY w.id ORDER BY w.id
            """
        )
    ).mappings()
    return [dict(r) for r in rows]


def revoke_webhook(conn: Connection, webhook_id: int) -> None:
    """Stop calling webhook ``webhook_id``; calls still queued for it are not sent."""
    done = conn.execute(
        text(
            "UPDATE webhooks SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL "
            "RETURNING id"
        ),
        {"id": webhook_id},
    ).one_or_none()
    if done is None:
        raise NotFoundError(f"There is no active webhook {webhook_id}.")
