"""Indexes for the zone and category filters of report listings and exports.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_reports_zone", "reports", ["zone_id"])
    op.create_index("ix_reports_category_created", "reports", ["category_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_reports_category_created", table_name="reports")
    op.drop_index("ix_reports_zone", table_name="reports")
