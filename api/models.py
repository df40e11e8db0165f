"""Response models: what each JSON answer holds, as the OpenAPI document describes it.

Service, catalogue, team and administration routes answer these models, which forbid
fields they do not name, so a model falling behind shows in the tests
(``tests/test_api_models.py``). The report, Open311 and export routes send their answers as
they are built (times keep their ``+00:00`` offset), so their models describe them rather
than re-serialise them (``tests/test_response_models.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from geo.vocabulary import NOTE_MAX


class _Out(BaseModel):
    # A field the route sends but the model lacks would be dropped without a word; a
    # schema that forbids extra fields lets the tests notice the model falling behind.
    model_config = ConfigDict(extra="forbid")


class ReplicaHealth(_Out):
    """One read replica, as its last check found it."""

    url: str = Field(description="The replica's database URL, without its password.")
    status: Literal["ok", "down", "lagging", "not a standby"]
    lag_s: float | None = Field(
        description="Seconds its replay is behind the primary (0 when caught up); null when "
        "unknown (down)."
    )


class Health(_Out):
    """Whether the service, its database and its read replicas answer."""

    status: Literal["ok", "degraded", "down"] = Field(
        description="`ok`; `degraded` when the database answers but a replica does not "
        "serve (reads go to the others or to the primary); `down` (HTTP 503) when the "
        "database does not answer."
    )
    database: Literal["ok", "busy", "down"] = Field(
        description="`busy` when every pooled connection stayed taken for the pool timeout."
    )
    postgis: str | None = Field(description="PostGIS's version; null when the database is down.")
    replicas: list[ReplicaHealth] = Field(
        default_factory=list, description="Each configured read replica; none by default."
    )
    detail: str | None = Field(
        default=None, description="When the database does not answer: what to do, in a sentence."
    )


class RouteAnswer(_Out):
    """The ward, zone and team a report would go to, and when it would be due."""

    ward_id: int
    snapped: bool
    zone_id: int | None
    team_id: int | None
    due_at: datetime


class Category(_Out):
    """A category the public may report, with its SLA in hours."""

    code: str
    name_th: str
    name_en: str
    sla_hours: int


class StoredCategory(Category):
    """A category as stored, offered to the public or not."""

    active: bool


class CategoryRoute(_Out):
    """Reports of ``category`` go to ``team``, everywhere or only in zone ``zone``."""

    id: int
    category: str
    team: str
    zone: str | None


class NewKey(_Out):
    """A created API key: ``key`` is shown in this answer only."""

    id: int
    key: str
    role: str
    team_id: int | None


class Team(_Out):
    """A field team and the codes of its current zones."""

    id: int
    code: str
    name: str = Field(description="The name as given (a boundary file's team or zone name).")
    name_th: str | None = Field(description="The Thai name, when one is known.")
    name_en: str | None = Field(description="The English name, when one is known.")
    zones: list[str]


class ReportFields(BaseModel):
    """A report's fields as ``geo.reports.search`` reads them; staff also get the reporter's."""

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
    hidden_at: datetime | None = Field(
        default=None, description="Staff only: when staff hid the report from the public."
    )
    hidden_reason: str | None = Field(default=None, description="Staff only: why it is hidden.")


class QueuedReport(ReportFields):
    """A report in a team's queue, as staff see it."""

    model_config = ConfigDict(extra="forbid")


class TeamQueue(_Out):
    """A team's open work, soonest due first."""

    team_id: int
    count: int
    overdue: int
    reports: list[QueuedReport]


class Overlap(_Out):
    """Two features of an imported layer that overlap, and by how much."""

    ids: list[str]
    area_m2: float


class Gap(_Out):
    """A hole between features of an imported layer, with a point inside it."""

    ids: list[str]
    area_m2: float
    lon: float
    lat: float


class ReplaceEffect(_Out):
    """What replacing the layer does to the area covered and to open reports."""

    current_count: int
    covered_km2: float
    new_covered_km2: float
    lost_km2: float
    lost_share: float
    open_reports: int
    outside: int
    ward_changed: int
    zone_changed: int
    team_changed: int


class BoundaryImport(_Out):
    """What a boundary import stored (or, on a dry run, would store) and what it found."""

    import_id: int | None
    layer: Literal["wards", "zones"]
    source_crs: str
    metric_crs: str
    tolerance_m2: float
    repaired_ids: list[str]
    retired_count: int
    teams_created: list[str]
    overlap_count: int
    overlap_total_m2: float
    overlaps: list[Overlap]
    gap_count: int
    gap_total_m2: float
    gaps: list[Gap]
    effect: ReplaceEffect
    needs_force: str | None
    forced: bool
    dry_run: bool


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
    tracking_url: str = Field(
        description="The report's status page (`/r/{token}`): give it to the resident."
    )
    status: Literal["open"]
    created_at: datetime
    due_at: datetime
    location: IntakeLocation
    ward: WardRef
    zone: ZoneRef | None
    team: TeamRef | None
    photo_ids: list[int]
    likely_duplicates: list[LikelyDuplicate]


class PublicNote(_Answer):
    """A note staff wrote for the public when a report changed status."""

    at: datetime
    status: str | None = Field(description="The status the report moved to.")
    note: str


class ReportOut(ReportFields):
    """A report as the caller may see it.

    Staff get the exact location and the reporter's name and contact; everyone else gets
    the location on the public grid and no personal data.
    """

    # New fields may be added to an answer without breaking clients that validate it.
    model_config = ConfigDict(extra="allow")

    next_statuses: list[str] = Field(
        description="Where a staff caller may move it next; empty for the public."
    )
    public_notes: list[PublicNote] = Field(
        description="What staff told the public at each status change, oldest first."
    )
    after_photo_ids: list[int] = Field(
        description="Photos staff attached to status changes (after the work)."
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
    token: str = Field(description="The request's status page is `/r/{token}` on this site.")
    service_notice: str
    account_id: None = Field(description="Always null: we keep no accounts of our own.")


class Webhook(_Out):
    """A registered webhook and how its calls stand; its secret is never shown again."""

    id: int
    url: str
    events: list[str] = Field(description="Events it receives (report.created, ...).")
    description: str
    created_at: datetime
    pending: int = Field(description="Calls waiting to be sent or tried again.")
    failed: int = Field(description="Calls given up on.")
    last_error: str | None = Field(description="Why its latest failed try failed.")


class NewWebhook(_Out):
    """A created webhook: ``secret`` is shown in this answer only."""

    id: int
    url: str
    events: list[str]
    description: str
    created_at: datetime
    secret: str = Field(
        description="Key of the HMAC-SHA256 in each call's X-Issuemap-Signature header "
        "(sha256=<hex digest of the raw body>)."
    )
