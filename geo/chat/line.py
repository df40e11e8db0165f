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
import uuid
from typing import Any, Final

from linebot.v3 import WebhookParser
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.webhooks import FollowEvent, MessageEvent, PostbackEvent, UserSource
from sqlalchemy import Engine

from geo.chat import inbox
from geo.chat.context import ChatContext
from geo.chat.inbox import InboxEvent
from geo.chat.line_api import LineClient
from geo.errors import InvalidInputError
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


def _without_nul(value: Any) -> Any:
    """``value`` with NUL characters taken out of every string.

    PostgreSQL's jsonb refuses them, and no resident types one.
    """
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def _user_id(event: Any) -> str | None:
    """The LINE user id of a one-to-one chat event, else None."""
    source = getattr(event, "source", None)
    if not isinstance(source, UserSource):
        return None
    user_id = source.user_id
    return user_id if isinstance(user_id, str) and 0 < len(user_id) <= CHAT_USER_MAX else None


def _wanted(event: Any) -> bool:
    """Whether the event is one a resident sent to the service (a message, a button, a follow)."""
    return isinstance(event, MessageEvent | PostbackEvent | FollowEvent)


class LineChannel:
    """The city's LINE Official Account: the webhook's events in, the conversation's replies out.

    One per process; ``close`` releases its connections to LINE.
    """

    def __init__(self, settings: LineSettings, context: ChatContext) -> None:
        secret = settings.channel_secret
        if secret is None or not secret.get_secret_value():
            raise ValueError("ISSUEMAP_LINE_CHANNEL_SECRET is not set")
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
        if not signature:
            raise LineWebhookError("X-Line-Signature", SIGNATURE_MISSING)
        if len(body.encode()) > WEBHOOK_BODY_MAX:
            raise LineWebhookTooLargeError
        try:
            events = self._parser.parse(body, signature)
            raw = json.loads(body)["events"]
        except InvalidSignatureError:
            raise LineWebhookError("X-Line-Signature", SIGNATURE_WRONG) from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise LineWebhookError("body", BODY_NOT_LINE) from None
        if not isinstance(raw, list) or len(raw) != len(events):
            raise LineWebhookError("body", BODY_NOT_LINE)
        stored: list[InboxEvent] = []
        for parsed, payload in zip(events, raw, strict=True):
            user_id = _user_id(parsed)
            event_id = _without_nul(getattr(parsed, "webhook_event_id", None))
            if user_id is None or not _wanted(parsed):
                continue
            if not isinstance(event_id, str) or not 0 < len(event_id) <= CHAT_EVENT_ID_MAX:
                log.warning("a LINE event without a usable webhookEventId was left out")
                continue
            stored.append(
                InboxEvent(
                    event_id=event_id, user_id=_without_nul(user_id), payload=_without_nul(payload)
                )
            )
        if not stored:
            return 0
        with engine.begin() as conn:
            return inbox.store_events(conn, CHANNEL, stored)
