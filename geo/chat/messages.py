"""What a resident sends in a chat and what the service answers, whatever the platform.

The conversation core (``geo.chat.conversation``) reads ``Incoming`` values and answers
``Reply`` values; a platform adapter (``geo.chat.line``) turns the platform's events into
the first and renders the second as the platform's messages. Nothing here knows a platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode

ACTIONS: Final = (
    "group",
    "category",
    "confirm",
    "cancel",
    "support",
    "new_report",
    "rate",
    "my_reports",
    "start",
)
"""What a button may do when pressed (``Pressed.action``)."""

PRESS_VALUE_MAX: Final = 64
"""Longest ``Pressed.value``: a category code, a report id, a rating."""


@dataclass(frozen=True, slots=True)
class SharedLocation:
    """The resident shared a place (a map pin or their position)."""

    lat: float
    lon: float
    address: str | None = None


@dataclass(frozen=True, slots=True)
class SentPhoto:
    """The resident sent a photo: its bytes as downloaded from the platform."""

    data: bytes
    declared_type: str | None = None


@dataclass(frozen=True, slots=True)
class SentText:
    """The resident typed something."""

    text: str


@dataclass(frozen=True, slots=True)
class Pressed:
    """The resident pressed a button the service offered (a postback)."""

    action: str
    value: str = ""


Incoming = SharedLocation | SentPhoto | SentText | Pressed
"""Anything a resident can send."""


def encode_press(press: Pressed) -> str:
    """The button's data as the platform carries it back (``action=...&value=...``)."""
    return urlencode({"action": press.action, "value": press.value})


def decode_press(data: str) -> Pressed | None:
    """The button a postback's data names, or None when it is not one the service made.

    Postback data comes back from the platform, which passes on whatever a client sends:
    anything unknown, too long or holding control characters is not a button.
    """
    if len(data) > 300 or any(ord(c) < 32 for c in data):
        return None
    fields = dict(parse_qsl(data, keep_blank_values=True, max_num_fields=2))
    action, value = fields.get("action"), fields.get("value", "")
    if action not in ACTIONS or len(value) > PRESS_VALUE_MAX:
        return None
    if any(ord(c) < 32 for c in value):
        return None
    return Pressed(action=action, value=value)


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a reply: pressing it sends ``press`` back, or opens a platform picker.

    ``asks`` is ``"location"`` (share a place), ``"camera"`` or ``"camera_roll"`` (send a
    photo); such a button has no ``press``.
    """

    label: str
    press: Pressed | None = None
    asks: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One message of the service's answer: text, an optional image, buttons under it."""

    text: str = ""
    image_url: str | None = None
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """What a platform can show; the core shapes its answers to fit.

    The defaults are LINE's: 13 quick-reply buttons, labels of 20 characters, 5 messages
    in one reply, 5,000 characters in a text message.
    """

    max_buttons: int = 13
    label_max: int = 20
    max_messages: int = 5
    text_max: int = 5000
