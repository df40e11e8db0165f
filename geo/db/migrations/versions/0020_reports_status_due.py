"""Index reports by status, then due time: the public map's open work in due order.

The public map shows open work by due time, one ordered and limited part per open status.
With an index on status alone each part read every report of its status and sorted them,
which grew with the open backlog (at national scale about 20,000 per status); with due time
and id after the status, each part reads its first page and stops. The new index answers
everything the status index did, so it replaces it and imports maintain no more indexes.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_reports_status_due", "reports", ["status", "due_at", "id"])
    op.drop_index("ix_reports_status", table_name="reports")


def downgrade() -> None:
    op.create_index("ix_reports_status", "reports", ["status"])
    op.drop_index("ix_reports_status_due", table_name="reports")
