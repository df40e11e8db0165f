"""Intake: reporter contact, address, duplicates, photos, API keys, idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(role = 'field_team') = (team_id IS NOT NULL)", name="team_iff_field_team"
        ),
        sa.CheckConstraint(
            "role IN ('public', 'field_team', 'planner', 'admin')", name="role_known"
        ),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "report_photos",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("report_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("public_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("original_bytes", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["event_id"], ["report_events.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_report_photos_report", "report_photos", ["report_id"], unique=False)
    op.add_column("reports", sa.Column("reporter_name", sa.Text(), nullable=True))
    op.add_column("reports", sa.Column("reporter_contact", sa.Text(), nullable=True))
    op.add_column("reports", sa.Column("address", sa.Text(), nullable=True))
    op.add_column(
        "reports",
        sa.Column(
            "location_source", sa.String(length=16), server_default="coordinates", nullable=False
        ),
    )
    op.add_column("reports", sa.Column("media_url", sa.Text(), nullable=True))
    op.add_column("reports", sa.Column("duplicate_of", sa.BigInteger(), nullable=True))
    op.add_column(
        "reports",
        sa.Column("supporters", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.create_foreign_key(
        "reports_duplicate_of_fkey", "reports", "reports", ["duplicate_of"], ["id"]
    )
    op.create_index(
        "ix_reports_duplicate_of",
        "reports",
        ["duplicate_of"],
        postgresql_where=sa.text("duplicate_of IS NOT NULL"),
    )
    op.create_check_constraint(
        "location_source_known",
        "reports",
        "location_source IN ('coordinates', 'address', 'photo_exif')",
    )
    op.create_check_constraint("supporters_not_negative", "reports", "supporters >= 0")
    op.create_check_constraint(
        "not_own_duplicate", "reports", "duplicate_of IS NULL OR duplicate_of <> id"
    )


def downgrade() -> None:
    for name in ("not_own_duplicate", "supporters_not_negative", "location_source_known"):
        op.drop_constraint(name, "reports", type_="check")
    op.drop_index("ix_reports_duplicate_of", table_name="reports")
    op.drop_constraint("reports_duplicate_of_fkey", "reports", type_="foreignkey")
    op.drop_column("reports", "supporters")
    op.drop_column("reports", "duplicate_of")
    op.drop_column("reports", "media_url")
    op.drop_column("reports", "location_source")
    op.drop_column("reports", "address")
    op.drop_column("reports", "reporter_contact")
    op.drop_column("reports", "reporter_name")
    op.drop_index("ix_report_photos_report", table_name="report_photos")
    op.drop_table("report_photos")
    op.drop_table("api_keys")
    op.drop_table("idempotency_keys")
