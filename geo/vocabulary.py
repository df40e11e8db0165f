"""The words and limits every layer shares: statuses, roles, layers, sources and text limits.

Each is defined here once and imported everywhere else (schema, intake, the API models,
Open311, imports, maps). The Alembic migrations keep literal copies, since they are history:
``tests/test_migrations.py`` checks that they still build the schema these values describe.
"""

from __future__ import annotations

from typing import Final

from geo.i18n import N_

REPORT_STATUSES: Final = (
    "open",
    "acknowledged",
    "in_progress",
    "resolved",
    "closed",
    "reopened",
    "rejected",
    "duplicate",
)
"""Every status a report can hold; ``geo.reports.workflow`` decides the allowed transitions."""

OPEN_STATUSES: Final = ("open", "acknowledged", "in_progress", "reopened")
"""Statuses that still need a team's work."""

FIXED_STATUSES: Final = ("resolved", "closed")
"""Statuses of fixed work, which the public map shows beside the open reports."""

CONFIRMED_MOVES: Final = ("resolved", "rejected")
"""Status moves that end a report's work: a page asks before making them, and tells the
reporter, so a slip of the thumb beside the next button is caught."""

STATUS_NAMES: Final = {
    "open": N_("Open"),
    "acknowledged": N_("Acknowledged"),
    "in_progress": N_("In progress"),
    "resolved": N_("Resolved"),
    "closed": N_("Closed"),
    "reopened": N_("Reopened"),
    "rejected": N_("Rejected"),
    "duplicate": N_("Duplicate"),
}
"""Each status in words (a catalog message id): a status is never shown as its code."""

OPEN_STATUSES_SQL: Final = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"
"""``OPEN_STATUSES`` as a SQL list of constants, for ``status IN ...`` inside statements."""

ROLES: Final = ("public", "field_team", "planner", "admin")
"""API key roles, least to most trusted; a field-team key is bound to one team."""

BOUNDARY_LAYERS: Final = ("wards", "zones")
"""The boundary layers a city loads: wards (where) and zones (which team)."""

LOCATION_SOURCES: Final = ("coordinates", "address", "photo_exif")
"""Where a report's point came from."""

DESCRIPTION_MAX: Final = 4000
"""Longest report description, in characters (the schema's CHECK says the same)."""

NOTE_MAX: Final = 4000
"""Longest status-change note, staff or public."""

CODE_MAX: Final = 64
"""Longest code: category, team, ward and zone codes."""

NAME_MAX: Final = 200
"""Longest name: category and team names, a reporter's name or contact, an external id."""

ADDRESS_MAX: Final = 500
"""Longest address a report may give instead of coordinates."""

URL_MAX: Final = 2000
"""Longest media URL."""

CHAT_CHANNELS: Final = ("line",)
"""Chat platforms residents report through; each is an adapter over ``geo.chat``."""

OUTBOX_KINDS: Final = ("email", "webhook", *CHAT_CHANNELS)
"""What an outbox message is delivered as: an e-mail, a webhook call, or a chat push."""

CHAT_USER_MAX: Final = 128
"""Longest chat-platform user id (LINE's are 33 characters)."""

CHAT_EVENT_ID_MAX: Final = 128
"""Longest chat-platform event id (LINE's ``webhookEventId`` is 26 characters)."""

RATING_MIN: Final = 1
RATING_MAX: Final = 5
"""A resident rates fixed work from ``RATING_MIN`` to ``RATING_MAX`` stars."""

STAFF_ROLES: Final = ("field_team", "planner", "admin")
"""Roles a staff account may hold (``public`` is for app keys only)."""

EMAIL_MAX: Final = 254
"""Longest e-mail address (RFC 5321's path limit)."""

UNDO_WINDOW_S: Final = 60
"""Seconds in which staff may undo their own latest status change of a report; the
notifications of a move that ends a report's work wait this long, so an undone slip is
never announced."""
