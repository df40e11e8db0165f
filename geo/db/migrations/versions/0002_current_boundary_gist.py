"""Partial GiST indexes on current wards and zones, which routing uses.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("wards", "zones"):
        op.create_index(
            f"ix_{table}_geom_current",
            table,
            ["geom"],
            unique=False,
            postgresql_using="gist",
            postgresql_where=sa.text("retired_at IS NULL"),
        )


def downgrade() -> None:
    for table in ("wards", "zones"):
        op.drop_index(f"ix_{table}_geom_current", table_name=table)
