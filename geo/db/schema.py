"""ORM models of the issuemap schema. The Alembic migrations in ``geo/db/migrations`` create it.

Boundaries are versioned rather than overwritten: a re-import retires the current rows and
adds new ones, so a stored report keeps pointing at the ward and zone it was routed to.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, ClassVar

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from geo.vocabulary import (
    BOUNDARY_LAYERS,
    CHAT_CHANNELS,
    CHAT_EVENT_ID_MAX,
    CHAT_USER_MAX,
    CODE_MAX,
    DESCRIPTION_MAX,
    EMAIL_MAX,
    FIXED_STATUSES,
    LOCATION_SOURCES,
    OPEN_STATUSES,
    OUTBOX_KINDS,
    RATING_MAX,
    RATING_MIN,
    REPORT_STATUSES,
    ROLES,
    STAFF_ROLES,
)

__all__ = ["BOUNDARY_LAYERS", "LOCATION_SOURCES", "OPEN_STATUSES", "REPORT_STATUSES", "ROLES"]


REPORT_TOKEN_SQL = "translate(encode(gen_random_bytes(18), 'base64'), '+/', '-_')"
"""A new report's token: 18 random bytes (pgcrypto) as 24 URL-safe characters."""


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK that ``column`` holds one of ``values``, as one ``text[]`` constant."""
    return f"{column}::text = ANY ('{{{','.join(values)}}}'::text[])"


class Base(DeclarativeBase):
    """Declarative base of every issuemap table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB}


class BoundaryImport(Base):
    """One accepted boundary file: what was loaded, from where, and what was repaired."""

    __tablename__ = "boundary_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    feature_count: Mapped[int] = mapped_column(Integer)
    repaired_count: Mapped[int] = mapped_column(Integer, default=0)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    imported_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint(
            "layer IN (" + ", ".join(f"'{x}'" for x in BOUNDARY_LAYERS) + ")", name="layer_known"
        ),
    )


class _Boundary:
    """Columns shared by the versioned boundary layers (wards and zones)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE_MAX))
    name: Mapped[str] = mapped_column(Text)
    """The name as the boundary file gave it; ``name_th``/``name_en`` when the file had both."""
    name_th: Mapped[str | None] = mapped_column(Text)
    name_en: Mapped[str | None] = mapped_column(Text)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    import_id: Mapped[int] = mapped_column(ForeignKey("boundary_imports.id"))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)
    )

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Index, ...]:
        table = cls.__tablename__  # type: ignore[attr-defined]
        return (
            Index(f"ix_{table}_geom", "geom", postgresql_using="gist"),
            # Routing only looks at current rows; without a matching partial GiST index the
            # planner prefers the partial unique index below and tests every polygon.
            Index(
                f"ix_{table}_geom_current",
                "geom",
                postgresql_using="gist",
                postgresql_where=text("retired_at IS NULL"),
            ),
            Index(
                f"uq_{table}_current_code",
                "code",
                unique=True,
                postgresql_where=text("retired_at IS NULL"),
            ),
        )


class Ward(_Boundary, Base):
    """An administrative area (ward, khwaeng, tambon) that reports are counted in."""

    __tablename__ = "wards"


class Team(Base):
    """A field team that works the reports routed to it."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE_MAX), unique=True)
    name: Mapped[str] = mapped_column(Text)
    name_th: Mapped[str | None] = mapped_column(Text)
    name_en: Mapped[str | None] = mapped_column(Text)


class Zone(_Boundary, Base):
    """A field team's working area; drawn independently of wards, so it may cross them."""

    __tablename__ = "zones"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))


class Category(Base):
    """A kind of problem, with the promise (SLA) the city makes for it."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE_MAX), unique=True)
    name_th: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str] = mapped_column(Text)
    sla_hours: Mapped[int] = mapped_column(Integer, default=48, server_default=text("48"))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))

    __table_args__ = (CheckConstraint("sla_hours > 0", name="sla_positive"),)


class CategoryRoute(Base):
    """Send a category to a team, everywhere or only inside the zone named by ``zone_code``.

    Zones are named by code, not id, so a route survives a re-import of the zone layer.
    """

    __tablename__ = "category_routes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    zone_code: Mapped[str | None] = mapped_column(String(CODE_MAX))

    __table_args__ = (
        UniqueConstraint("category_id", "team_id", "zone_code", name="uq_category_route"),
        Index("ix_category_routes_category", "category_id"),
    )


class Report(Base):
    """A citizen report, with the ward, zone, team and due time fixed when it arrived."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    description: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ward_id: Mapped[int | None] = mapped_column(ForeignKey("wards.id"))
    ward_snapped: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(String(32), default="api", server_default="api")
    external_id: Mapped[str | None] = mapped_column(Text)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Private: never part of a public output (tests scan every public endpoint for them).
    reporter_name: Mapped[str | None] = mapped_column(Text)
    reporter_contact: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    location_source: Mapped[str] = mapped_column(
        String(16), default="coordinates", server_default="coordinates"
    )
    media_url: Mapped[str | None] = mapped_column(Text)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    supporters: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    token: Mapped[str] = mapped_column(String(32), server_default=text(REPORT_TOKEN_SQL))
    """The status page's address, ``/r/{token}``: 144 random bits, never the id."""
    language: Mapped[str | None] = mapped_column(String(8))
    """The language the resident reported in; their notifications use it."""
    hidden_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set when staff took the report out of every public output (it stays in staff views)."""
    hidden_reason: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    """The reporter's rating of the fixed work, ``RATING_MIN`` to ``RATING_MAX``."""
    rated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326, spatial_index=False))

    __table_args__ = (
        # Written against one array constant, not IN (...): PostgreSQL re-reads a table's
        # CHECK expressions for every INSERT, and IN builds and coerces its array each time.
        CheckConstraint(_one_of("status", REPORT_STATUSES), name="status_known"),
        CheckConstraint(
            f"char_length(description) <= {DESCRIPTION_MAX}", name="description_length"
        ),
        CheckConstraint(_one_of("location_source", LOCATION_SOURCES), name="location_source_known"),
        CheckConstraint("supporters >= 0", name="supporters_not_negative"),
        CheckConstraint("duplicate_of IS NULL OR duplicate_of <> id", name="not_own_duplicate"),
        CheckConstraint("language IS NULL OR language IN ('th', 'en')", name="language_known"),
        CheckConstraint("(hidden_at IS NULL) = (hidden_reason IS NULL)", name="hidden_with_reason"),
        CheckConstraint(
            f"rating IS NULL OR rating BETWEEN {RATING_MIN} AND {RATING_MAX}", name="rating_range"
        ),
        CheckConstraint("(rating IS NULL) = (rated_at IS NULL)", name="rated_with_time"),
        Index("uq_reports_token", "token", unique=True),
        UniqueConstraint("source", "external_id", name="uq_reports_source_external_id"),
        Index("ix_reports_geom", "geom", postgresql_using="gist"),
        Index("ix_reports_created_at", "created_at"),
        # A status's reports in due order: the public map's open work takes its first page
        # of each status from here, however much history the city holds.
        Index("ix_reports_status_due", "status", "due_at", "id"),
        Index("ix_reports_team_status_due", "team_id", "status", "due_at"),
        Index("ix_reports_ward", "ward_id"),
        # A zone's reports by status, then due time: its map counts its open work and takes
        # the first page of each status, however long the zone's closed history.
        Index("ix_reports_zone_status_due", "zone_id", "status", "due_at", "id"),
        Index("ix_reports_category_created", "category_id", "created_at"),
        # The public map's fixed work: reports resolved in the last few days, in order,
        # and how many there are, from the index alone (visibility is kept in it).
        Index(
            "ix_reports_fixed_resolved",
            "resolved_at",
            "id",
            postgresql_include=["hidden_at"],
            postgresql_where=text(_one_of("status", FIXED_STATUSES)),
        ),
        Index(
            "ix_reports_duplicate_of",
            "duplicate_of",
            postgresql_where=text("duplicate_of IS NOT NULL"),
        ),
        # Intake's duplicate lookup: open, visible reports by place, then time (btree_gist),
        # so it never reads the closed history around a point.
        Index(
            "ix_reports_open_geom_created",
            "geom",
            "created_at",
            postgresql_using="gist",
            postgresql_where=text(f"{_one_of('status', OPEN_STATUSES)} AND hidden_at IS NULL"),
        ),
    )


class ReportEvent(Base):
    """One entry in a report's audit trail: created, status change, re-routed, note."""

    __tablename__ = "report_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(Text, default="system", server_default="system")
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    """Staff's note: stays in the audit trail, which only staff read."""
    public_note: Mapped[str | None] = mapped_column(Text)
    """What staff chose to tell the public about this change (Open311 ``status_notes``)."""
    data: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))

    __table_args__ = (
        Index("ix_report_events_report_at", "report_id", "at"),
        # The Open311 update feed reads a window of time.
        Index("ix_report_events_at", "at"),
    )


class ReportPhoto(Base):
    """A photo of a report, or an after-photo attached to a status change.

    ``public_bytes`` is re-encoded without EXIF (no GPS, camera or owner tags) and is the
    only version ever shown publicly; ``original_bytes`` stays with staff.
    """

    __tablename__ = "report_photos"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("report_events.id", ondelete="CASCADE"))
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    public_bytes: Mapped[bytes] = mapped_column(LargeBinary)
    original_bytes: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_report_photos_report", "report_id"),)


class ApiKey(Base):
    """An API key. Only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    """The staff member answerable for the key (an app's or a script's)."""
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="role_known"),
        CheckConstraint(
            "(role = 'field_team') = (team_id IS NOT NULL)", name="team_iff_field_team"
        ),
    )


class IdempotencyRecord(Base):
    """The first answer to a POST sent with an ``Idempotency-Key``, replayed on retries."""

    __tablename__ = "idempotency_keys"

    # The caller: "key:<api key id>" or "addr:<client address>" (geo.reports.idempotency.scope_for).
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    # Expired keys are deleted in small batches, oldest first.
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)


class OutboxMessage(Base):
    """A notification (e-mail or webhook call) waiting for, or done with, delivery.

    Written in the transaction that makes the change it announces, so the change and its
    notification commit together; ``geo.reports.notifications`` delivers it with retries.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    """An e-mail address, ``webhook:<id>``, or a chat user id (kind ``line``)."""
    report_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    available_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    """Not tried again before this time (the retry backoff)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Given up on (out of attempts, or refused for good); kept for staff to see why."""
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_one_of("kind", OUTBOX_KINDS), name="kind_known"),
        Index(
            "ix_outbox_pending",
            "available_at",
            postgresql_where=text("delivered_at IS NULL AND failed_at IS NULL"),
        ),
    )


class Webhook(Base):
    """An endpoint an admin registered for report events, with its HMAC signing secret."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(ARRAY(Text))
    description: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RateLimitCounter(Base):
    """A fixed-window counter shared by every server process (``geo.access.ratelimit``).

    Unlogged: losing the current window's counts in a crash is harmless.
    """

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_rate_limits_expires_at", "expires_at"),
        {"prefixes": ["UNLOGGED"]},
    )


class ChatConversation(Base):
    """One resident's conversation with the service on a chat platform (``geo.chat``).

    Held here, never in a process, so a restart or another worker carries it on; it is
    forgotten after ``ChatSettings.idle_minutes`` without a message. ``user_id`` is the
    platform's id of the person: personal data, never in a public output.
    """

    __tablename__ = "chat_conversations"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(CHAT_USER_MAX), primary_key=True)
    language: Mapped[str | None] = mapped_column(String(8))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    """What the resident has given so far and what the service asked last."""
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_one_of("channel", CHAT_CHANNELS), name="channel_known"),
        CheckConstraint("language IS NULL OR language IN ('th', 'en')", name="language_known"),
    )


class ChatUpload(Base):
    """A photo a resident sent in a conversation, checked, waiting for the report it joins."""

    __tablename__ = "chat_uploads"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(CHAT_USER_MAX))
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    public_bytes: Mapped[bytes] = mapped_column(LargeBinary)
    original_bytes: Mapped[bytes] = mapped_column(LargeBinary)
    gps_lat: Mapped[float | None] = mapped_column(Float)
    gps_lon: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        ForeignKeyConstraint(
            ["channel", "user_id"],
            ["chat_conversations.channel", "chat_conversations.user_id"],
            ondelete="CASCADE",
        ),
        Index("ix_chat_uploads_conversation", "channel", "user_id"),
    )


class ChatInboxEvent(Base):
    """A chat platform's webhook event, stored before it is handled.

    The webhook answers at once and a worker handles the rows in order, one conversation at a
    time; the unique ``event_id`` makes a redelivered event a no-op.
    """

    __tablename__ = "chat_inbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(CHAT_EVENT_ID_MAX))
    user_id: Mapped[str] = mapped_column(String(CHAT_USER_MAX))
    payload: Mapped[dict[str, Any]] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("channel", "event_id", name="uq_chat_inbox_event"),
        CheckConstraint(_one_of("channel", CHAT_CHANNELS), name="channel_known"),
        Index(
            "ix_chat_inbox_pending",
            "channel",
            "user_id",
            "id",
            postgresql_where=text("processed_at IS NULL"),
        ),
    )


class ReportChat(Base):
    """Which chat user filed a report, so status changes are pushed back to them.

    Kept apart from ``reports`` so no query of reports can leak a chat user id by accident.
    """

    __tablename__ = "report_chats"

    report_id: Mapped[int] = mapped_column(
        ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(CHAT_USER_MAX))

    __table_args__ = (
        CheckConstraint(_one_of("channel", CHAT_CHANNELS), name="channel_known"),
        Index("ix_report_chats_user", "channel", "user_id", "report_id"),
    )


class User(Base):
    """A staff member's own account: they sign in at ``/login`` and the audit trail names them.

    Only an Argon2 hash of the password is kept. ``failed_logins`` counts wrong passwords in
    a row; past the limit the account is locked until ``locked_until``.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="RESTRICT"))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_one_of("role", STAFF_ROLES), name="staff_role_known"),
        CheckConstraint(
            "(role = 'field_team') = (team_id IS NOT NULL)", name="team_iff_field_team"
        ),
        CheckConstraint("email = lower(email)", name="email_lower_case"),
        Index("uq_users_email", "email", unique=True),
    )


class StaffSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept here.

    ``csrf_token`` is what the session's forms must send back with every change.
    """

    __tablename__ = "staff_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_staff_sessions_user", "user_id"),
        Index("ix_staff_sessions_expires_at", "expires_at"),
    )


# A team's zones, current (``retired_at IS NULL``) or not: which teams a replace left bare.
Index("ix_zones_team", Zone.team_id, Zone.retired_at)


class BoundaryStage(Base):
    """A boundary file checked in the admin pages, waiting for the admin to confirm it.

    The confirm form carries a random token; only its SHA-256 is kept. ``based_on`` is the
    layer's latest import when the file was checked (0 when none): once another import has
    replaced the layer, the check is stale and its confirm is refused.
    """

    __tablename__ = "boundary_stages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    layer: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    based_on: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(
            "layer IN (" + ", ".join(f"'{x}'" for x in BOUNDARY_LAYERS) + ")",
            name="stage_layer_known",
        ),
        Index("uq_boundary_stages_token", "token_hash", unique=True),
        Index("ix_boundary_stages_expires_at", "expires_at"),
    )


class BoundaryStagePart(Base):
    """A part of a staged file's bytes, in order of ``seq``."""

    __tablename__ = "boundary_stage_parts"

    stage_id: Mapped[int] = mapped_column(
        ForeignKey("boundary_stages.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class WardDayMeasures(Base):
    """The ward dashboard's measures per ward, category, day and time to resolve.

    Kept by triggers on ``reports``; ``geo.reports.stats`` reads them. ``ward_id`` is the
    current ward covering the reports (NULL: outside every current ward); ``day`` the UTC
    day they were created; ``hours_bucket`` how long they took to resolve
    (``geo.reports.stats.hours_bucket_edges``; NULL: not resolved). Only reports the public
    sees count. ``resolve_seconds`` sums their seconds from report to resolution.
    """

    __tablename__ = "ward_day_measures"

    day: Mapped[date] = mapped_column(Date)
    ward_id: Mapped[int | None] = mapped_column(Integer)
    category_id: Mapped[int] = mapped_column(Integer)
    hours_bucket: Mapped[int | None] = mapped_column(SmallInteger)
    reports: Mapped[int] = mapped_column(Integer)
    resolved: Mapped[int] = mapped_column(Integer)
    within_sla: Mapped[int] = mapped_column(Integer)
    rated: Mapped[int] = mapped_column(Integer)
    rating_sum: Mapped[int] = mapped_column(Integer)
    resolve_seconds: Mapped[int] = mapped_column(BigInteger)

    # No primary key: a NULL ward is a key value here, which only a unique index allows.
    __table_args__ = (
        Index(
            "uq_ward_day_measures_key",
            "day",
            "ward_id",
            "category_id",
            "hours_bucket",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )
    __mapper_args__: Mapping[str, Any] = {"primary_key": [day, ward_id, category_id, hours_bucket]}


class WardPeriodMeasures(Base):
    """``WardDayMeasures`` summed per ward and ISO week or calendar month.

    ``period`` (``week`` or ``month``) starts on ``first_day``; every category and bucket of
    hours is summed in. The same triggers keep it.
    """

    __tablename__ = "ward_period_measures"

    period: Mapped[str] = mapped_column(String(8))
    first_day: Mapped[date] = mapped_column(Date)
    ward_id: Mapped[int | None] = mapped_column(Integer)
    reports: Mapped[int] = mapped_column(Integer)
    resolved: Mapped[int] = mapped_column(Integer)
    within_sla: Mapped[int] = mapped_column(Integer)
    rated: Mapped[int] = mapped_column(Integer)
    rating_sum: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("period IN ('week', 'month')", name="ward_period_known"),
        Index(
            "uq_ward_period_measures_key",
            "period",
            "first_day",
            "ward_id",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )
    __mapper_args__: Mapping[str, Any] = {"primary_key": [period, first_day, ward_id]}


class OpenHeatCell(Base):
    """Open reports counted in one heat-map grid cell, kept by triggers on ``reports``.

    ``level`` is the grid step as a power of two of a degree; the cell holds the points
    whose ``round(lon / step), round(lat / step)`` is ``(cell_x, cell_y)`` (what
    ``ST_SnapToGrid`` gives). ``staff_reports`` counts reports where staff see them, hidden
    ones included; ``public_reports`` where the public sees them on the default public
    location grid, hidden ones left out (``geo.maps.heat``). ``zone_id`` is 0 for reports
    without a zone. The table is kept with fillfactor 70, so count updates stay HOT.
    """

    __tablename__ = "open_heat_cells"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    cell_x: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    cell_y: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    zone_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    category_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    staff_reports: Mapped[int] = mapped_column(Integer)
    public_reports: Mapped[int] = mapped_column(Integer)


# Heat maps count the cells a view's edge cuts through from the reports; staff count hidden
# reports too, and find the open ones here rather than through every report ever filed.
Index(
    "ix_reports_open_hidden_geom",
    Report.__table__.c.geom,
    postgresql_using="gist",
    postgresql_where=text(f"{_one_of('status', OPEN_STATUSES)} AND hidden_at IS NOT NULL"),
)
