"""The report file formats an import reads, as a registry: one entry a format.

A format says which of its columns hold our fields, how its statuses read, and how its
category values may be named. ``csv`` is the generic one: its columns come from the
caller's ``column_map`` (see ``FIELDS``). Adding a city's own export format is adding an
entry to ``FORMATS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from geo.vocabulary import REPORT_STATUSES

FIELDS: Final[dict[str, str]] = {
    "lat": "latitude, WGS84 degrees",
    "lon": "longitude, WGS84 degrees",
    "external_id": "the id the report has in the other system (the re-import key)",
    "category": "category code, English or Thai name, or a value the category map knows",
    "description": "the reporter's text",
    "created_at": "when the report was made (the import time when not mapped)",
    "updated_at": "last change",
    "resolved_at": "when it was resolved or closed",
    "status": "one of " + ", ".join(REPORT_STATUSES) + " (blank is open)",
    "reporter_name": "the reporter's name (private)",
    "reporter_contact": "the reporter's e-mail or phone (private)",
    "address": "street address (private)",
    "media_url": "link to a photo",
}
"""Fields a generic CSV can map with ``column_map``, and what each holds."""

CSV_REQUIRED: Final = ("lat", "lon", "external_id")
"""Fields every generic CSV must map (``category`` too, unless there is a default)."""

TRAFFY_STATES: Final[dict[str, str]] = {
    "รอรับเรื่อง": "open",  # waiting to be taken on
    "ส่งต่อ": "acknowledged",  # forwarded to the agency responsible
    "เชิญร่วม": "acknowledged",  # another agency invited to take part
    "กำลังดำเนินการ": "in_progress",
    "เสร็จสิ้น": "resolved",
    "ไม่พบปัญหา": "rejected",  # no problem found
    "ปฏิเสธ": "rejected",
}
"""Traffy Fondue ticket states and the status each becomes; any other state is rejected."""

TRAFFY_TYPES: Final[dict[str, str]] = {
    "ถนน": "road",
    "ทางเท้า": "sidewalk",
    "น้ำท่วม": "flooding",
    "ท่อระบายน้ำ": "drainage",
    "แสงสว่าง": "lighting",
    "ไฟฟ้า": "lighting",
    "ความสะอาด": "cleanliness",
    "ต้นไม้": "trees",
    "กีดขวาง": "obstruction",
    "เสียงรบกวน": "noise",
    "สัตว์จรจัด": "stray_animals",
    "สายไฟ": "electrical_wires",
    "จราจร": "traffic",
    "ป้ายจราจร": "traffic",
    "ความปลอดภัย": "safety",
    "ห้องน้ำ": "toilets",
    "คลอง": "canal",
}
"""Common Traffy types and the demo city's category code for each.

Used only for codes the database has, after a category's own Thai name and the category
map. Types with no clear counterpart (ร้องเรียน complaint, ป้าย signs and billboards,
สะพาน bridge, คนจรจัด homeless people, PM2.5, สอบถาม enquiry, เสนอแนะ suggestion) are
left out: such a ticket takes its next type, or the default category.
"""

SOCRATA_STATUSES: Final[dict[str, str]] = {
    "open": "open",
    "completed": "closed",
    "canceled": "rejected",
    "cancelled": "rejected",
    "open - dup": "duplicate",
    "completed - dup": "duplicate",
}
"""Socrata 311 statuses (compared case-insensitively) and the status each becomes."""

CSV_STATUSES: Final[dict[str, str]] = {s: s for s in REPORT_STATUSES} | {
    s.replace("_", " "): s for s in REPORT_STATUSES
}


@dataclass(frozen=True, slots=True)
class ImportFormat:
    """One file format: where our fields are, and how its values read."""

    name: str
    status_map: Mapping[str, str]
    """Casefolded status value -> our status; any other value is rejected."""
    blank_status: str | None
    """The status of a blank value, or None to reject it."""
    columns: Mapping[str, str] = field(default_factory=dict)
    """Our field (or ``coords`` for a "lon,lat" column) -> the column every file has."""
    optional: Mapping[str, str] = field(default_factory=dict)
    """Our field -> a column read when the file has it."""
    category_is_array: bool = False
    """The category column holds a PostgreSQL array of types (the first known one wins)."""
    type_map: Mapping[str, str] = field(default_factory=dict)
    """Category values of this format -> our category codes, after names and the map."""
    mapped: bool = False
    """The caller maps the columns (``column_map``), as for a generic CSV."""


FORMATS: Final[dict[str, ImportFormat]] = {
    "traffy": ImportFormat(
        name="traffy",
        status_map=TRAFFY_STATES,
        blank_status=None,
        columns={
            "external_id": "ticket_id",
            "category": "type",
            "coords": "coords",
            "created_at": "timestamp",
            "status": "state",
        },
        optional={
            "description": "comment",
            "updated_at": "last_activity",
            "address": "address",
            "media_url": "photo",
        },
        category_is_array=True,
        type_map=TRAFFY_TYPES,
    ),
    "socrata": ImportFormat(
        name="socrata",
        status_map=SOCRATA_STATUSES,
        blank_status=None,
        columns={
            "external_id": "sr_number",
            "category": "sr_type",
            "lat": "latitude",
            "lon": "longitude",
            "created_at": "created_date",
            "status": "status",
        },
        optional={
            "description": "sr_type",
            "updated_at": "last_modified_date",
            "resolved_at": "closed_date",
            "address": "street_address",
        },
    ),
    "csv": ImportFormat(name="csv", status_map=CSV_STATUSES, blank_status="open", mapped=True),
}
"""Every format ``issuemap reports import --format`` reads, by name."""
