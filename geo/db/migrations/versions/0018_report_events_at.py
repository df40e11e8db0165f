"""Index the audit trail by time, for the Open311 update feed.

FixMyStreet and other Open311 clients poll ``servicerequestupdates`` for the changes made in a
time window. Without an index on ``at`` each poll read every event the city ever recorded;
with it a poll reads the window's events only. Events are written in time order, so the
index grows at its right edge and costs intake little.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_report_events_at", "report_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_report_events_at", table_name="report_events")
