"""Response models of the report, Open311 and export routes: what each JSON answer holds.

They document the answers in the OpenAPI document. The routes send their answers as they
are built (times keep their ``+00:00`` offset), so the models describe them rather than
re-serialise them; the tests validate real answers against the document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from geo.vocabulary import NOTE_MAX


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its nested models written out in place.

    For answers FastAPI cannot document by model, such as a media type other than JSON.
    """
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


class _Answer(BaseModel):
    # New fields may be added to an answer without breaking clients that validate it.
    model_config = ConfigDict(extra="allow")


# --- native reports ----------------------------------------------------------------------


class IntakeLocation(_Answer):
    """Where the report was placed, and how that place was found."""

    lat: float
    lon: float
    source: str = Field(description="`given`, `geocoded` or `photo_exif`.")
    snapped_to_ward: bool = Field(
        description="The point lay just outside every ward and was moved to the nearest."
    )


class WardRef(_Answer):
    """The ward a report lies in."""

    id: int
    code: str
    name: str


class ZoneRef(_Answer):
    """The field-team zone a report was routed to."""

    id: int
    code: str | None


class TeamRef(_Answer):
    """The team a report was routed to."""

    id: int
    code: str | None
    name: str | None


class LikelyDuplicate(_Answer):
    """An open report nearby that may be the same problem (never its coordinates)."""

    id: int
    status: str
    distance_m: float = Field(
        description="Metres to it; for the public, to where the public map shows it."
    )
    created_at: datetime
    supporters: int


class IntakeAnswer(_Answer):
    """A filed report: where it went, when it is due, what is already known nearby."""

    id: int
    status: Literal["open"]
    created_at: datetime
    due_at: datetime
    location: IntakeLocation
    ward: WardRef
    zone: ZoneRef | None
    team: TeamRef | None
    photo_ids: list[int]
    likely_duplicates: list[LikelyDuplicate]


class ReportOut(_Answer):
    """A report as the caller may see it.

    Staff get the exact location and the reporter's name and contact; everyone else gets
    the location on the public grid and no personal data.
    """

    id: int
    category: str
    category_name_th: str | None
    category_name_en: str | None
    description: str | None
    status: str
    created_at: datetime
    updated_at: datetime | None
    resolved_at: datetime | None
    due_at: datetime | None
    overdue: bool | None
    ward_id: int | None
    ward_code: str | None
    ward_name: str | None
    ward_snapped: bool | None
    zone_id: int | None
    zone_code: str | None
    team_id: int | None
    team_code: str | None
    team_name: str | None
    lat: float
    lon: float
    address: str | None
    location_source: str | None
    media_url: str | None
    source: str | None
    external_id: str | None
    supporters: int
    duplicate_of: int | None
    is_demo: bool | None
    photo_ids: list[int]
    reporter_name: str | None = Field(default=None, description="Staff only.")
    reporter_contact: str | None = Field(default=None, description="Staff only.")
    next_statuses: list[str] = Field(
        description="Where a staff caller may move it next; empty for the public."
    )


class ReportEvent(_Answer):
    """One entry of a report's audit trail."""

    id: int
    at: datetime
    kind: str
    actor: str | None
    from_status: str | None
    to_status: str | None
    note: str | None = Field(description="Staff only.")
    public_note: str | None
    data: dict[str, Any] | list[Any] | None
    photo_ids: list[int]


class StatusChanged(_Answer):
    """A status change, as recorded."""

    id: int
    from_status: str
    status: str
    at: datetime
    event_id: int
    photo_ids: list[int] = Field(description="The after-photo, if one was sent.")
    next_statuses: list[str]


class Merged(_Answer):
    """A duplicate closed into its original."""

    id: int
    status: Literal["duplicate"]
    duplicate_of: int
    original_supporters: int
    event_id: int


class StatusForm(BaseModel):
    """A status change sent as a form, with an optional after-photo."""

    status: str = Field(min_length=1, max_length=16, description="The new status.")
    note: str | None = Field(
        default=None, max_length=NOTE_MAX, description="For staff only: kept in the audit trail."
    )
    public_note: str | None = Field(
        default=None,
        max_length=NOTE_MAX,
        description="Shown to the public as the report's status notes.",
    )
    photo: bytes | None = Field(
        default=None,
        description="An after-photo: JPEG, PNG or WebP; stored without EXIF.",
    )


# --- GeoJSON page ------------------------------------------------------------------------


class PointGeometry(_Answer):
    """A GeoJSON point, ``[lon, lat]`` in WGS 84."""

    type: Literal["Point"]
    coordinates: list[float] = Field(min_length=2, max_length=2)


class ReportFeature(_Answer):
    """A report as a GeoJSON feature; its properties are the report's fields."""

    type: Literal["Feature"]
    id: int | str | None = None
    geometry: PointGeometry | None
    properties: dict[str, Any]


class Link(_Answer):
    """A link to this page, the next page, or every match as a file."""

    rel: str
    type: str
    href: str
    title: str | None = None


class ReportCollection(_Answer):
    """A page of reports as a GeoJSON FeatureCollection (OGC API Features style)."""

    type: Literal["FeatureCollection"]
    features: list[ReportFeature]
    links: list[Link]
    numberMatched: int | None = None
    numberReturned: int


# --- Open311 GeoReport v2 ----------------------------------------------------------------


class Open311Endpoint(_Answer):
    """One endpoint in the discovery document."""

    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class Open311Discovery(_Answer):
    """The discovery document."""

    changeset: str
    contact: str
    key_service: str
    endpoints: list[Open311Endpoint]


class Open311Service(_Answer):
    """A service: one of our report categories."""

    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: str
    keywords: str
    group: str | None


class Open311ServiceDefinition(_Answer):
    """A service's extra attributes (none for our categories)."""

    service_code: str
    attributes: list[dict[str, Any]]


class Open311Request(_Answer):
    """A service request as the public sees it."""

    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str | None
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str = Field(description="W3C, UTC to the second.")
    updated_datetime: str
    expected_datetime: str
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float
    long: float
    media_url: str | None


class Open311Posted(_Answer):
    """The answer to a posted service request."""

    service_request_id: str
    service_notice: str
    account_id: None = Field(description="Always null: we keep no accounts of our own.")
