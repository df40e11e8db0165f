"""Index reports by when they were resolved, for the public map's fixed work.

The public map shows reports resolved or closed in a chosen period beside open ones; without
an index on ``resolved_at`` that reads every fixed report the city ever had. Only resolved
reports carry the time, so the index leaves out the open ones.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_reports_resolved_at",
        "reports",
        ["resolved_at"],
        postgresql_where=sa.text("resolved_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_reports_resolved_at", table_name="reports")
