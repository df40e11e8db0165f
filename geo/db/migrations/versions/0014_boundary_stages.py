"""A boundary file checked in the admin pages waits here until the admin confirms it.

- ``boundary_stages``: one checked upload, by the SHA-256 of the random token its confirm
  form carries, with who checked it, the options it was checked with, the file's SHA-256,
  the layer's latest import at the time (a later import makes the check stale) and an
  expiry.
- ``boundary_stage_parts``: the file's bytes in parts, so no row holds a whole large file.
- ``ix_zones_team``: a team's zones, current or retired, for the teams a replace left
  without a zone.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "boundary_stages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("layer", sa.String(16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("options", JSONB(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("based_on", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("layer IN ('wards', 'zones')", name="stage_layer_known"),
    )
    op.create_index("uq_boundary_stages_token", "boundary_stages", ["token_hash"], unique=True)
    op.create_index("ix_boundary_stages_expires_at", "boundary_stages", ["expires_at"])
    op.create_table(
        "boundary_stage_parts",
        sa.Column(
            "stage_id",
            sa.Integer(),
            sa.ForeignKey("boundary_stages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_zones_team", "zones", ["team_id", "retired_at"])


def downgrade() -> None:
    op.drop_index("ix_zones_team", table_name="zones")
    op.drop_table("boundary_stage_parts")
    op.drop_table("boundary_stages")
