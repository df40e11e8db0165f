"""Hearing back in the chat: a report's status changes as chat messages, and LINE pushes.

The outbox (``geo.reports.notifications``) queues one chat message per public status change
of a report filed by chat and hands it to the channel's ``ChatSender`` when it is due.
``status_update`` writes the message for any platform (``Reply`` values): the status in
words, the public note, the after-photos, the status page link and, once the work is fixed,
buttons to rate it. ``line_sender`` pushes it to the LINE user who filed the report.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Final

from sqlalchemy import Connection, text

from geo.chat.line_api import LINE_LIMITS, LineApiError, LineClient
from geo.chat.messages import Button, ChannelLimits, Pressed, Reply
from geo.i18n import LANGUAGES, translate
from geo.reports.notifications import (
    ChatSender,
    DeliveryError,
    Photo,
    PublicEvent,
    event_photos,
    photo_url,
    update_lines,
)
from geo.vocabulary import FIXED_STATUSES, RATING_MAX, RATING_MIN

PUSH_NAMESPACE: Final = uuid.UUID("6f0b7c52-3a0e-5d0c-9d55-1f3c2a9e4b71")
"""The namespace of push retry keys (``push_retry_key``)."""

LINE_IMAGE_TYPES: Final = ("image/jpeg", "image/png")
"""What LINE shows as an image message; other photos are linked in the text instead."""


def push_retry_key(outbox_id: int) -> uuid.UUID:
    """The retry key of every try of outbox message ``outbox_id``: LINE sends it once."""
    return uuid.uuid5(PUSH_NAMESPACE, f"outbox:{outbox_id}")


def rating_buttons(report_id: int) -> tuple[Button, ...]:
    """One button per rating, ``RATING_MIN`` to ``RATING_MAX``: the number and its stars."""
    return tuple(
        Button(label=f"{n} " + "★" * n, press=Pressed("rate", f"{report_id}:{n}"))
        for n in range(RATING_MIN, RATING_MAX + 1)
    )


def status_update(
    event: PublicEvent,
    *,
    language: str,
    public_url: str,
    photos: Sequence[Photo],
    image_types: Collection[str] | None = None,
    rated: bool = False,
    limits: ChannelLimits | None = None,
) -> list[Reply]:
    """The chat messages telling a reporter about ``event``, in ``language`` (else Thai).

    One text with the status in words, the public note and the status page link (the same
    lines as the mail, ``geo.reports.notifications.update_lines``), the after-``photos``
    as images, and, when the work is fixed (``FIXED_STATUSES``), the report is not hidden
    and the reporter has not rated it yet, a question with one button per rating
    (``Pressed("rate", "<id>:<n>")``).

    Parameters
    ----------
    event
        The change, as the public may learn it (``geo.reports.notifications.load_event``).
    language
        The report's language (``reports.language``); anything else reads Thai.
    public_url
        The service's public address, which links and photos are under.
    photos
        The public copies of the event's photos (``event_photos``); staff notes and the
        exact location are never part of the event.
    image_types
        The photo types the channel shows as images (``None``: any); other photos, and any
        beyond what fits in ``limits.max_messages``, are linked in the text.
    rated
        Whether the reporter rated the work already (then nothing is asked).
    limits
        What the channel can show (``ChannelLimits`` defaults).
    """
    lang = language if language in LANGUAGES else "th"
    fits = limits or ChannelLimits()
    # A hidden report cannot be rated (``geo.reports.reporters.rate_report``), so is not asked.
    ask = (
        event.status in FIXED_STATUSES
        and event.event == "report.status_changed"
        and not rated
        and not event.hidden
    )
    # One message for the text, one for the question; images take the rest.
    room = max(0, fits.max_messages - 1 - int(ask))
    # The public cannot open a hidden report's photos, and a platform fetches them as such.
    showable = [] if event.hidden else photos
    shown = [p for p in showable if image_types is None or p.content_type in image_types][:room]
    shown_ids = {p.id for p in shown}
    linked = [p for p in showable if p.id not in shown_ids]
    lines = update_lines(
        event,
        language=lang,
        public_url=public_url,
        photo_urls=[photo_url(public_url, p.id) for p in linked],
    )
    replies = [Reply(image_url=photo_url(public_url, p.id)) for p in shown]
    replies.append(Reply(text="\n".join(lines)))
    if ask:
        replies.append(
            Reply(
                text=translate(
                    lang,
                    "How well was it fixed? Rate the work from {low} (poor) to {high} (very good).",
                    low=RATING_MIN,
                    high=RATING_MAX,
                ),
                buttons=rating_buttons(event.report_id)[: fits.max_buttons],
            )
        )
    return replies


def _rated(conn: Connection, report_id: int) -> bool:
    found = conn.execute(
        text("SELECT rating IS NOT NULL FROM reports WHERE id = :id"), {"id": report_id}
    ).scalar_one_or_none()
    return bool(found)


def line_sender(client: LineClient, *, public_url: str) -> ChatSender:
    """The outbox's sender for ``kind='line'``: pushes ``status_update`` to the LINE user.

    Each try of one outbox message carries the same retry key (``push_retry_key``), so a
    push LINE accepted before the answer was lost is not shown twice. A failed push is a
    ``DeliveryError``, permanent when LINE refused that message for good (a 4xx such as
    400 for a user who cannot receive it), retried when LINE is unreachable, overloaded or
    refuses the channel's token. LINE fetches images itself and only over HTTPS, so photos are
    shown as images only when ``public_url`` is an https address and the public may see
    them (not on a report staff hid); otherwise they are left to the status page.
    """
    image_types = LINE_IMAGE_TYPES if public_url.lower().startswith("https://") else ()

    def send(conn: Connection, event: PublicEvent, user_id: str, outbox_id: int) -> None:
        replies = status_update(
            event,
            language=event.language,
            public_url=public_url,
            photos=[] if event.hidden else event_photos(conn, event),
            image_types=image_types,
            rated=_rated(conn, event.report_id),
            limits=LINE_LIMITS,
        )
        try:
            client.push(user_id, replies, retry_key=push_retry_key(outbox_id))
        except LineApiError as error:
            # A refused token (401, 403) is the channel's setting, not this message: once
            # it is fixed every waiting message goes out.
            permanent = error.permanent and error.status not in (401, 403)
            raise DeliveryError(f"LINE: {error}", permanent=permanent) from error

    return send
