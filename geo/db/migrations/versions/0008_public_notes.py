"""Separate what staff tell the public about a report from their own notes.

Open311 ``status_notes`` showed the newest staff note, so a note quoting a resident's phone
number would have been published. Notes now stay in the staff-only audit trail, and only
``public_note`` is shown. Existing notes stay internal: none was written for the public.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("report_events", sa.Column("public_note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("report_events", "public_note")
