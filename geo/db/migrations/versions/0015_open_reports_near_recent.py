"""Index open, visible reports by place and time, for intake's duplicate lookup.

Intake looks for open reports of the same category within a few tens of metres filed in
the last days. Through the index of every report's point, that lookup read every report
ever filed nearby, closed or not, so intake slowed as a city's history grew. This GiST
index holds only open reports that staff have not hidden (the predicate cannot name
``now()``, so recency is its second key, from ``btree_gist``): the lookup reads the few
open reports near the point and filed in the window, however many closed ones surround it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in geo.vocabulary.OPEN_STATUSES when this revision was written.
_OPEN = "status::text = ANY ('{open,acknowledged,in_progress,reopened}'::text[])"


def upgrade() -> None:
    # Trusted since PostgreSQL 13: a database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.create_index(
        "ix_reports_open_geom_created",
        "reports",
        ["geom", "created_at"],
        postgresql_using="gist",
        postgresql_where=sa.text(f"{_OPEN} AND hidden_at IS NULL"),
    )


def downgrade() -> None:
    # The extension stays: other objects of the database may have come to use it.
    op.drop_index("ix_reports_open_geom_created", table_name="reports")
