"""Index fixed reports by resolution time, with their visibility: the public map's fixed work.

The public map lists reports fixed in the chosen days and counts them (up to a few pages
ahead). The index on ``resolved_at`` of every report that had one found them, but each
count then read the table for the status and visibility of every row, about 2,500 pages at
a national 200,000 reports for a count of 5,500. Kept only for fixed statuses, ordered by
time then id (the list's order) and carrying ``hidden_at``, the new index answers both
the list and the count by itself, so it replaces the old one.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in geo.vocabulary.FIXED_STATUSES when this revision was written.
_FIXED = "status::text = ANY ('{resolved,closed}'::text[])"


def upgrade() -> None:
    op.create_index(
        "ix_reports_fixed_resolved",
        "reports",
        ["resolved_at", "id"],
        postgresql_include=["hidden_at"],
        postgresql_where=sa.text(_FIXED),
    )
    op.drop_index("ix_reports_resolved_at", table_name="reports")


def downgrade() -> None:
    op.create_index(
        "ix_reports_resolved_at",
        "reports",
        ["resolved_at"],
        postgresql_where=sa.text("resolved_at IS NOT NULL"),
    )
    op.drop_index("ix_reports_fixed_resolved", table_name="reports")
