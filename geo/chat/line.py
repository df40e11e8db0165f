"""LINE as one adapter over the conversation core: webhook events in, replies out.

``LineChannel.accept`` is the webhook's work and is quick: it checks the call's
``X-Line-Signature`` with the SDK (``linebot.v3.WebhookParser``) before the body is parsed,
and stores each event a resident sent in the durable inbox (``geo.chat.inbox``), keyed by its
``webhookEventId`` so that LINE redelivering it has no second effect. The slow work happens
in ``LineChannel.process_pending``, after the webhook has answered: photos are downloaded from
LINE's data API, each event becomes an ``Incoming`` for ``geo.chat.conversation.handle``, and
the answer goes back with the event's reply token, or as a push when that token has expired.

Only one-to-one chats are handled (``source.type == "user"``): group and room events, and
events that carry nothing to answer (an unfollow), are not stored.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import Connection, Engine, select

from geo.chat import conversation, inbox
from geo.chat.context import ChatContext
from geo.chat.inbox import InboxEvent, PendingEvent
from geo.chat.line_api import PHOTO_MAX_BYTES, LineApiError, LineClient
from geo.chat.messages import (
    Incoming,
    Pressed,
    Reply,
    SentPhoto,
    SentText,
    SharedLocation,
    decode_press,
)
from geo.db.schema import ChatConversation
from geo.errors import InvalidInputError, Message
from geo.i18n import N_
from geo.settings import LineSettings
from geo.vocabulary import CHAT_EVENT_ID_MAX, CHAT_USER_MAX

log = logging.getLogger(__name__)

CHANNEL: Final = "line"
"""This adapter's name in the chat tables (``geo.vocabulary.CHAT_CHANNELS``)."""

WEBHOOK_BODY_MAX: Final = 1024 * 1024
"""Largest webhook body taken, in bytes. LINE sends a few kilobytes (events of one user come
in small batches); anything near this is not LINE."""

RETRY_NAMESPACE: Final = uuid.UUID("5b0c6f0e-3c55-4a39-9d52-1f0c2b6a8e41")
"""Namespace of the retry keys of pushes sent in place of a reply (``uuid5`` of the inbox
row), so that trying one again never sends it twice."""

# What the adapter says by itself, where there is nothing for the conversation to do.
PHOTO_FAILED = N_(
    "Sorry, the photo could not be fetched from LINE. Please send it again in a moment."
)
PHOTO_TOO_LARGE = N_(
    "Sorry, that photo is too large (at most {limit} MB). Please send a smaller one."
)
NOT_UNDERSTOOD = N_(
    "Sorry, I can only read a shared location, photos and text. "
    "Please send one of those to report a problem."
)
OLD_BUTTON = N_(
    "Sorry, that button is no longer in use. "
    "Please send a location, a photo or a few words about the problem."
)

SIGNATURE_MISSING = N_("is missing: this address only takes webhook calls signed by LINE")
SIGNATURE_WRONG = N_(
    "does not match the body: this address only takes webhook calls signed by LINE "
    "with the channel secret"
)
BODY_NOT_LINE = N_("is not a LINE webhook body (a JSON object with a list of events)")
BODY_TOO_LARGE = N_("is larger than {limit:,} bytes, more than LINE ever sends")


class LineWebhookError(InvalidInputError):
    """A webhook call refused before anything was stored (``api.errors`` answers 400).

    It was unsigned, wrongly signed, or not a LINE webhook body.
    """


class LineWebhookTooLargeError(LineWebhookError):
    """A webhook body larger than ``WEBHOOK_BODY_MAX`` (``api.errors`` answers 413)."""

    def __init__(self) -> None:
        super().__init__("body", BODY_TOO_LARGE, limit=WEBHOOK_BODY_MAX)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(value: Any) -> Any:
    """``value`` with every string made storable in PostgreSQL's jsonb.

    JSON may spell what jsonb refuses and no resident types: NUL characters are taken out,
    and halves of a UTF-16 pair that stand alone become U+FFFD.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", ""))
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def _not_json(constant: str) -> Any:
    """Refuse ``NaN`` and ``Infinity``: Python reads them, JSON (and jsonb) has no such thing."""
    raise ValueError(f"{constant} is not JSON")


ANSWERED: Final = ("message", "postback", "follow")
"""Event types a resident sends to the service; the others (an unfollow, a group join, a
read receipt) carry nothing to answer."""


def _inbox_event(payload: Any) -> InboxEvent | None:
    """The inbox entry of one event as LINE sent it, or None when there is nothing to answer.

    Only one-to-one chats are answered; an event in standby mode belongs to another
    module of the account and must not be answered.
    """
    if not isinstance(payload, dict):
        return None
    payload = _storable(payload)
    source = payload.get("source")
    if payload.get("type") not in ANSWERED or payload.get("mode") == "standby":
        return None
    if not isinstance(source, dict) or source.get("type") != "user":
        return None
    user_id, event_id = source.get("userId"), payload.get("webhookEventId")
    if not isinstance(user_id, str) or not 0 < len(user_id) <= CHAT_USER_MAX:
        return None
    if not isinstance(event_id, str) or not 0 < len(event_id) <= CHAT_EVENT_ID_MAX:
        log.warning("a LINE event without a usable webhookEventId was left out")
        return None
    return InboxEvent(event_id=event_id, user_id=user_id, payload=payload)


class LineChannel:
    """The city's LINE Official Account: the webhook's events in, the conversation's replies out.

    One per process; ``close`` releases its connections to LINE.
    """

    def __init__(self, settings: LineSettings, context: ChatContext) -> None:
        secret = settings.channel_secret
        if secret is None or not secret.get_secret_value():
            raise ValueError("ISSUEMAP_LINE_CHANNEL_SECRET is not set")
        # linebot is imported by the channel, not with the module: it is over half a second
        # of every server's and command's start, and a city without LINE never needs it.
        from linebot.v3 import WebhookParser

        self._parser = WebhookParser(secret.get_secret_value())
        self._client = LineClient(settings)
        self._context = context

    def close(self) -> None:
        """Release the connections to LINE."""
        self._client.close()

    # --- the webhook ---------------------------------------------------------------------

    def accept(self, engine: Engine, body: str, signature: str) -> int:
        """Check a webhook call and store its events; return how many were new.

        The signature is checked (by the SDK) before the body is parsed: a missing or wrong
        one raises ``LineWebhookError`` naming ``X-Line-Signature``, and a signed body that
        is not LINE's shape one naming ``body``; either way nothing is stored. Events from
        groups and rooms, and those with nothing to answer, are left out; an event already
        stored (LINE redelivered it) is not stored again.
        """
        from linebot.v3.exceptions import InvalidSignatureError

        if not signature:
            raise LineWebhookError("X-Line-Signature", SIGNATURE_MISSING)
        if len(body.encode()) > WEBHOOK_BODY_MAX:
            raise LineWebhookTooLargeError
        try:
            # The SDK checks the signature first, then reads the body as LINE's events.
            events = self._parser.parse(body, signature)
            raw = json.loads(body, parse_constant=_not_json)["events"]
            if not isinstance(raw, list) or len(raw) != len(events):
                raise ValueError("not LINE's events")
            # What LINE sent is stored, not the SDK's reading of it: an event of a kind
            # newer than the SDK still gets an answer.
            stored = [found for found in map(_inbox_event, raw) if found is not None]
        except InvalidSignatureError:
            raise LineWebhookError("X-Line-Signature", SIGNATURE_WRONG) from None
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            # RecursionError: JSON nested deeper than Python reads (LINE's is a few levels).
            raise LineWebhookError("body", BODY_NOT_LINE) from None
        if not stored:
            return 0
        with engine.begin() as conn:
            return inbox.store_events(conn, CHANNEL, stored)

    # --- the work after the webhook answered ---------------------------------------------

    def process_pending(self, engine: Engine, *, limit: int = 100) -> int:
        """Handle up to ``limit`` stored events, oldest first per user; return how many.

        Any number of processes may run this at once (``geo.chat.inbox.process_pending``
        keeps each conversation to one of them at a time).
        """
        return inbox.process_pending(
            engine, CHANNEL, handler=self._handle, send=self._send, limit=limit
        )

    def _language(self, user_id: str) -> Callable[[], str | None]:
        """The user's LINE language, asked of their profile (None when LINE will not say)."""

        def ask() -> str | None:
            try:
                return self._client.language(user_id)
            except LineApiError as error:
                log.info("the LINE profile's language could not be read: %s", error)
                return None

        return ask

    def _handle(self, conn: Connection, pending: PendingEvent) -> list[Reply]:
        """One stored event through the conversation core (inside its transaction)."""
        incoming, excuse = self._incoming(pending.payload)
        replies = conversation.handle(
            conn,
            channel=CHANNEL,
            user_id=pending.user_id,
            incoming=incoming,
            context=self._context,
            language=self._language(pending.user_id),
        )
        if excuse is None:
            return replies
        # The core has just settled the conversation's language; the excuse speaks it too.
        lang = conn.execute(
            select(ChatConversation.language).where(
                ChatConversation.channel == CHANNEL, ChatConversation.user_id == pending.user_id
            )
        ).scalar_one_or_none()
        said = Reply(text=excuse.text(lang or "th"))
        return [said, *replies][: self._context.limits.max_messages]

    def _incoming(self, payload: dict[str, Any]) -> tuple[Incoming, Message | None]:
        """What the resident sent, as the core reads it, and the adapter's excuse if any.

        Where LINE gives nothing the core can take (a photo that could not be fetched, a
        sticker, a button the service never made), the core gets empty text, which changes
        nothing and asks for what is still missing, and the excuse says why first.
        """
        from linebot.v3.webhooks import (
            Event,
            FollowEvent,
            ImageMessageContent,
            LocationMessageContent,
            MessageEvent,
            PostbackEvent,
            TextMessageContent,
        )

        try:
            event = Event.from_dict(payload)
        except (ValueError, KeyError, TypeError):
            # A kind of message (or a shape) newer than the SDK: read what can be read.
            event = None
        kind = payload.get("type")
        if isinstance(event, FollowEvent) or kind == "follow":
            return Pressed("start"), None
        if isinstance(event, PostbackEvent) or kind == "postback":
            postback = payload.get("postback")
            data = postback.get("data") if isinstance(postback, dict) else None
            press = decode_press(data) if isinstance(data, str) else None
            return (press, None) if press is not None else (SentText(""), Message(OLD_BUTTON))
        if not isinstance(event, MessageEvent):
            return SentText(""), Message(NOT_UNDERSTOOD)
        message = event.message
        if isinstance(message, TextMessageContent):
            return SentText(str(message.text or "")), None
        if isinstance(message, LocationMessageContent):
            address = str(message.address or message.title or "").strip()
            location = SharedLocation(
                lat=float(message.latitude), lon=float(message.longitude), address=address or None
            )
            return location, None
        if isinstance(message, ImageMessageContent):
            return self._photo(str(message.id))
        return SentText(""), Message(NOT_UNDERSTOOD)

    def _photo(self, message_id: str) -> tuple[Incoming, Message | None]:
        """The photo's bytes from LINE's data API, or the excuse when LINE would not give it."""
        limit = min(PHOTO_MAX_BYTES, self._context.intake.photo_max_bytes)
        too_large = Message(PHOTO_TOO_LARGE, {"limit": f"{limit / (1024 * 1024):g}"})
        try:
            data = self._client.content(message_id)
        except LineApiError as error:
            log.warning("a photo could not be fetched from LINE: %s", error)
            return SentText(""), too_large if error.status == 413 else Message(PHOTO_FAILED)
        if len(data) > limit:
            return SentText(""), too_large
        return SentPhoto(data=data), None

    def _send(self, pending: PendingEvent, replies: list[Reply]) -> None:
        """Answer with the event's reply token; push instead when LINE refuses the token.

        A reply token works once and for a short time (a redelivered event's has often
        expired): LINE then answers 400, and the answer goes as a push whose retry key is
        derived from the inbox row, so sending it again can never show it twice.
        """
        token = pending.payload.get("replyToken")
        if isinstance(token, str) and token:
            try:
                self._client.reply(token, replies)
                return
            except LineApiError as error:
                if error.status != 400:
                    raise
                log.info("LINE refused a reply token (%s); pushing instead", error)
        key = uuid.uuid5(RETRY_NAMESPACE, f"inbox:{pending.id}")
        self._client.push(pending.user_id, replies, retry_key=key)
