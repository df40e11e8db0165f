"""LINE's Messaging API through the official SDK: replies, pushes, profiles and photo content.

Every call goes through ``line-bot-sdk`` (v3); the hosts come from ``LineSettings`` so tests
point them at a local server that speaks LINE's protocol. Core ``Reply`` values are rendered
here as LINE messages: quick replies for buttons (at most ``ChannelLimits.max_buttons``),
labels cut to LINE's 20 characters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

import urllib3.exceptions

from geo.chat.messages import Button, ChannelLimits, Reply, encode_press
from geo.i18n import LANGUAGES
from geo.settings import LineSettings

LINE_LIMITS: Final = ChannelLimits()
"""What a LINE chat can show (the ``ChannelLimits`` defaults are LINE's)."""

PHOTO_MAX_BYTES: Final = 10 * 1024 * 1024
"""LINE keeps images up to 10 MB; anything larger from the data API is refused unread."""


def _sdk() -> Any:
    """``linebot.v3.messaging``, imported on first use.

    Its hundreds of models cost over a second of every server's and command's start, and
    only a LINE channel sends messages.
    """
    from linebot.v3 import messaging

    return messaging


class LineApiError(Exception):
    """A LINE API call failed; ``status`` is its HTTP status (0 when LINE was unreachable)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        """Whether trying again cannot help (a 4xx other than 408, 409 and 429)."""
        return 400 <= self.status < 500 and self.status not in (408, 409, 429)


def _label(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LINE_LIMITS.label_max else text[: LINE_LIMITS.label_max - 1] + "…"


def _action(button: Button) -> Any:
    sdk = _sdk()
    label = _label(button.label)
    if button.asks == "location":
        return sdk.LocationAction(label=label)
    if button.asks == "camera":
        return sdk.CameraAction(label=label)
    if button.asks == "camera_roll":
        return sdk.CameraRollAction(label=label)
    if button.press is None:
        raise ValueError(f"button {button.label!r} neither asks nor presses anything")
    return sdk.PostbackAction(label=label, data=encode_press(button.press), displayText=label)


def line_messages(replies: Sequence[Reply]) -> list[Any]:
    """``replies`` as LINE messages: an image message for each image, then its text.

    LINE shows quick replies only under the last message, so the buttons of the last reply
    that has any go on the last message sent.
    """
    sdk = _sdk()
    messages: list[Any] = []
    for reply in replies:
        if reply.image_url:
            messages.append(
                sdk.ImageMessage(
                    originalContentUrl=reply.image_url, previewImageUrl=reply.image_url
                )
            )
        if reply.text:
            messages.append(sdk.TextMessage(text=reply.text[: LINE_LIMITS.text_max]))
    buttons = next((r.buttons for r in reversed(replies) if r.buttons), ())
    if buttons and messages:
        items = [sdk.QuickReplyItem(action=_action(b)) for b in buttons[: LINE_LIMITS.max_buttons]]
        messages[-1].quick_reply = sdk.QuickReply(items=items)
    return messages[: LINE_LIMITS.max_messages]


class LineClient:
    """LINE's Messaging API for one channel, with the hosts and token of ``LineSettings``."""

    def __init__(self, settings: LineSettings) -> None:
        sdk = _sdk()
        token = settings.channel_access_token
        if token is None:
            raise ValueError("ISSUEMAP_LINE_CHANNEL_ACCESS_TOKEN is not set")
        self._timeout = settings.timeout_s
        self._api = sdk.ApiClient(
            sdk.Configuration(host=settings.api_url, access_token=token.get_secret_value())
        )
        self._data = sdk.ApiClient(
            sdk.Configuration(host=settings.data_api_url, access_token=token.get_secret_value())
        )

    def close(self) -> None:
        """Release the connection pools."""
        self._api.close()
        self._data.close()

    def reply(self, reply_token: str, replies: Sequence[Reply]) -> None:
        """Answer a webhook event with its one-time ``reply_token``."""
        sdk = _sdk()
        messages = line_messages(replies)
        if not messages:
            return
        request = sdk.ReplyMessageRequest(replyToken=reply_token, messages=messages)
        self._call(lambda: sdk.MessagingApi(self._api).reply_message(request, **self._kw()))

    def push(self, user_id: str, replies: Sequence[Reply], *, retry_key: uuid.UUID) -> None:
        """Send ``replies`` to ``user_id`` at any time.

        ``retry_key`` is the same for every try of one message: LINE answers 409 to a try
        it already accepted, which counts as sent, so a retry never doubles a message.
        """
        sdk = _sdk()
        messages = line_messages(replies)
        if not messages:
            return
        request = sdk.PushMessageRequest(to=user_id, messages=messages)
        try:
            self._call(
                lambda: sdk.MessagingApi(self._api).push_message(
                    request, x_line_retry_key=str(retry_key), **self._kw()
                )
            )
        except LineApiError as error:
            if error.status != 409:
                raise

    def language(self, user_id: str) -> str | None:
        """The user's LINE language, when it is one the service speaks (else None)."""
        sdk = _sdk()
        profile = self._call(lambda: sdk.MessagingApi(self._api).get_profile(user_id, **self._kw()))
        tag = (getattr(profile, "language", None) or "").split("-")[0].lower()
        return tag if tag in LANGUAGES else None

    def content(self, message_id: str) -> bytes:
        """The bytes of an image a user sent, from the data API."""
        sdk = _sdk()
        data = self._call(
            lambda: sdk.MessagingApiBlob(self._data).get_message_content(message_id, **self._kw())
        )
        blob = bytes(data)
        if len(blob) > PHOTO_MAX_BYTES:
            raise LineApiError("the image is larger than LINE allows", status=413)
        return blob

    def _kw(self) -> dict[str, Any]:
        return {"_request_timeout": self._timeout}

    @staticmethod
    def _call(call: Any) -> Any:
        sdk = _sdk()
        try:
            return call()
        except sdk.ApiException as error:
            raise LineApiError(
                f"LINE answered {error.status}: {error.reason}", status=int(error.status or 0)
            ) from error
        except (OSError, urllib3.exceptions.HTTPError) as error:
            raise LineApiError(f"LINE is unreachable: {error}") from error
