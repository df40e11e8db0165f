"""The report file formats an import reads, as a registry: one entry a format.

A format says which of its columns hold our fields, how its statuses read, and how its
category values may be named. ``csv`` is the generic one: its columns come from the
caller's ``column_map`` (see ``FIELDS``). Adding a city's own export format is adding an
entry to ``FORMATS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from geo.vocabulary import REPORT_STATUSES

FIELDS: Final[dict[str, str]] = {
    "lat": "latitude, WGS84 degrees",
    "lon": "longitude, WGS84 degrees",
    "coords": "longitude and latitude in one column, read with the coordinates pattern",
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

CSV_REQUIRED: Final = ("external_id",)
"""Fields every generic CSV must map: also ``lat`` and ``lon`` or ``coords``, and
``category`` unless there is a default."""

TRAFFY_STATES: Final[dict[str, str]] = {
    "รอรับเรื่อง": "open",  # waiting to be taken on
    "ส่งต่อ": "acknowledged",  # forwarded to the agency responsible
    "เชิญร่วม": "acknowledged",  # another agency invited to take part
    "กำลังดำเนินการ": "in_progress",
    "เสร็จสิ้น": "resolved",
    "ไม่พบปัญหา": "rejected",  # no problem found
    "ปฏิเสธ": "rejected",
    "ไม่เกี่ยวข้อง": "rejected",  # not the agency's matter
    "ยุติเรื่อง": "closed",  # the case was ended
    "รอการตรวจสอบ": "acknowledged",  # waiting to be checked
}
"""Traffy Fondue ticket states and the status each becomes; any other state is rejected.

Newer exports add a note in brackets (``ส่งต่อ(ใหม่)``, forwarded again, new); such a state
reads as the one before its note (``ImportFormat.status_note``).
"""

TRAFFY_CATEGORIES: Final[tuple[tuple[str, str, str, tuple[str, ...]], ...]] = (
    # code, Thai name, English name, the Traffy types it takes
    ("road", "ถนน", "Roads", ("ถนน",)),
    ("sidewalk", "ทางเท้า", "Sidewalks", ("ทางเท้า",)),
    ("flooding", "น้ำท่วม", "Flooding", ("น้ำท่วม",)),
    ("drainage", "ท่อระบายน้ำ", "Drains and sewers", ("ท่อระบายน้ำ",)),
    ("lighting", "แสงสว่าง", "Street lighting", ("แสงสว่าง", "ไฟฟ้า")),
    ("cleanliness", "ความสะอาด", "Cleanliness and rubbish", ("ความสะอาด",)),
    ("trees", "ต้นไม้", "Trees", ("ต้นไม้",)),
    ("obstruction", "กีดขวาง", "Obstructions", ("กีดขวาง",)),
    ("noise", "เสียงรบกวน", "Noise", ("เสียงรบกวน",)),
    ("stray_animals", "สัตว์จรจัด", "Stray animals", ("สัตว์จรจัด",)),
    ("electrical_wires", "สายไฟ", "Overhead wires", ("สายไฟ",)),
    ("traffic", "จราจร", "Traffic", ("จราจร", "ป้ายจราจร")),
    ("safety", "ความปลอดภัย", "Safety", ("ความปลอดภัย",)),
    ("toilets", "ห้องน้ำ", "Public toilets", ("ห้องน้ำ",)),
    ("canal", "คลอง", "Canals", ("คลอง",)),
    ("bridge", "สะพาน", "Bridges", ("สะพาน",)),
    ("signs", "ป้าย", "Signs and billboards", ("ป้าย",)),
    ("homeless", "คนจรจัด", "Homeless people", ("คนจรจัด",)),
    ("pm25", "ฝุ่น PM2.5", "PM2.5 dust", ("PM2.5",)),
    ("complaint", "ร้องเรียน", "Complaints", ("ร้องเรียน",)),
    ("enquiry", "สอบถาม", "Enquiries", ("สอบถาม",)),
    ("suggestion", "เสนอแนะ", "Suggestions", ("เสนอแนะ",)),
    ("transport", "การเดินทาง", "Getting around", ("การเดินทาง",)),
)
"""Every Traffy type in a real Bangkok export, as the category ``--create-categories`` adds.

The codes of the first fifteen are the demo city's, so a demo city takes a Traffy file as
it is.
"""

TRAFFY_TYPES: Final[dict[str, str]] = {
    value: code for code, _, _, values in TRAFFY_CATEGORIES for value in values
}
"""Traffy types and the category code each names."""

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

LON_LAT: Final = (
    r"^\s*[\[(]?\s*['\"]?(?P<lon>[^,'\"\s\[\]()]+)['\"]?\s*,"
    r"\s*['\"]?(?P<lat>[^,'\"\s\[\]()]+)['\"]?\s*[\])]?\s*$"
)
"""One column holding "lon,lat": as text (``100.5,13.7``) or as a list, JSON or Python
style (``[100.5, 13.7]``, ``['100.5', '13.7']``). The groups ``lon`` and ``lat`` are read
as numbers afterwards, so a value that is no number is refused with that reason."""

COLUMN_SYNONYMS: Final[tuple[frozenset[str], ...]] = tuple(
    frozenset(group)
    for group in (
        ("comment", "comments", "description", "details", "detail", "text", "message"),
        ("coords", "coordinates", "location", "latlon", "lonlat", "position", "geometry"),
        ("lat", "latitude", "y"),
        ("lon", "lng", "long", "longitude", "x"),
        ("ticket_id", "id", "external_id", "case_id", "sr_number", "request_id"),
        ("type", "types", "category", "categories", "problem_type", "sr_type"),
        ("state", "status", "state_name"),
        ("timestamp", "created_at", "created", "created_date", "reported_at", "date"),
        ("last_activity", "updated_at", "last_update", "last_modified_date", "modified"),
        ("photo", "photo_url", "image", "media_url", "picture"),
        ("address", "street_address", "location_text"),
    )
)
"""Column names that often mean the same thing (lower case): a column a format or map
expects but a file lacks is suggested from its group, besides names spelt alike."""

CategoryLayout = Literal["single", "list"]
"""How a category cell holds its values: one value, or a list (a PostgreSQL array
``{a,b}`` or a JSON/Python list ``['a', 'b']``), the first value that names a category
winning."""


@dataclass(frozen=True, slots=True)
class SourceCategory:
    """A category a source knows, which ``--create-categories`` can add to a city."""

    code: str
    name_th: str
    name_en: str
    values: tuple[str, ...]
    """The source's values that mean it."""


@dataclass(frozen=True, slots=True)
class ImportFormat:
    """One file format: where our fields are, and how its values read."""

    name: str
    status_map: Mapping[str, str]
    """Casefolded status value -> our status; any other value is rejected."""
    blank_status: str | None
    """The status of a blank value, or None to reject it."""
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Our field (or ``coords``, see ``coords_pattern``) -> the column names it may have,
    the first one found in a file winning. Every file must have one of them."""
    optional: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Our field -> column names read when the file has one."""
    category_layout: CategoryLayout = "single"
    """How the category column holds its values."""
    category_separator: str | None = None
    """Splits a category cell into several values (the first known one wins)."""
    categories: tuple[SourceCategory, ...] = ()
    """The source's own categories: their values name them, and ``--create-categories``
    adds them."""
    coords_pattern: str = LON_LAT
    """How the ``coords`` column reads: a regular expression with groups ``lon``, ``lat``."""
    status_note: str | None = None
    """A regular expression for a note after a status value that does not change it."""
    mapped: bool = False
    """The caller maps the columns (``column_map``), as for a generic CSV."""

    @property
    def type_map(self) -> dict[str, str]:
        """Category values of this format -> our category codes."""
        return {value: c.code for c in self.categories for value in c.values}


def _source_categories(
    rows: tuple[tuple[str, str, str, tuple[str, ...]], ...],
) -> tuple[SourceCategory, ...]:
    return tuple(SourceCategory(code, th, en, values) for code, th, en, values in rows)


FORMATS: Final[dict[str, ImportFormat]] = {
    "traffy": ImportFormat(
        name="traffy",
        status_map=TRAFFY_STATES,
        blank_status=None,
        columns={
            "external_id": ("ticket_id",),
            "category": ("type",),
            "coords": ("coords",),
            "created_at": ("timestamp",),
            "status": ("state",),
        },
        optional={
            "description": ("comment",),
            "updated_at": ("last_activity",),
            "address": ("address",),
            "media_url": ("photo", "photo_url"),
        },
        category_layout="list",
        categories=_source_categories(TRAFFY_CATEGORIES),
        status_note=r"\s*\(.*\)\s*$",
    ),
    "socrata": ImportFormat(
        name="socrata",
        status_map=SOCRATA_STATUSES,
        blank_status=None,
        columns={
            "external_id": ("sr_number",),
            "category": ("sr_type",),
            "lat": ("latitude",),
            "lon": ("longitude",),
            "created_at": ("created_date",),
            "status": ("status",),
        },
        optional={
            "description": ("sr_type",),
            "updated_at": ("last_modified_date",),
            "resolved_at": ("closed_date",),
            "address": ("street_address",),
        },
    ),
    "csv": ImportFormat(name="csv", status_map=CSV_STATUSES, blank_status="open", mapped=True),
}
"""Every format ``issuemap reports import --format`` reads, by name."""
