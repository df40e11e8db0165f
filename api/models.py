"""Response models of the service, catalogue, team and administration routes.

Each names every field the route sends, so the OpenAPI document says what comes back and
the answers are checked against it (``tests/test_api_models.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    # A field the route sends but the model lacks would be dropped without a word; a
    # schema that forbids extra fields lets the tests notice the model falling behind.
    model_config = ConfigDict(extra="forbid")


class Health(_Out):
    """The service is up and its database answers."""

    status: Literal["ok"]
    postgis: str


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
    name: str
    zones: list[str]


class QueuedReport(_Out):
    """A report in a team's queue, as staff see it."""

    id: int
    category: str
    category_name_th: str
    category_name_en: str
    description: str
    status: str
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    due_at: datetime
    overdue: bool
    ward_id: int | None
    ward_code: str | None
    ward_name: str | None
    ward_snapped: bool
    zone_id: int | None
    zone_code: str | None
    team_id: int | None
    team_code: str | None
    team_name: str | None
    lat: float
    lon: float
    address: str | None
    location_source: str
    media_url: str | None
    source: str
    external_id: str | None
    supporters: int
    duplicate_of: int | None
    is_demo: bool
    photo_ids: list[int]
    reporter_name: str | None
    reporter_contact: str | None


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
