"""Idempotency keys belong to their caller and expire.

Anonymous keys shared one scope, ``public``, and were kept for ever, so one resident's key
``1`` refused every other resident's. A scope is now an API key (``key:<id>``) or a client
address (``addr:<address>``, up to an IPv6 address long), and an index on ``created_at``
lets expired keys be deleted a small batch at a time. The old shared-scope rows can never
be replayed again (no caller has that scope any more), so they go.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE scope = 'public'")
    op.alter_column(
        "idempotency_keys",
        "scope",
        existing_type=sa.String(length=32),
        type_=sa.String(length=64),
        existing_nullable=False,
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    # Address scopes may not fit the old width; their keys would only block retries.
    op.execute("DELETE FROM idempotency_keys WHERE length(scope) > 32")
    op.alter_column(
        "idempotency_keys",
        "scope",
        existing_type=sa.String(length=64),
        type_=sa.String(length=32),
        existing_nullable=False,
    )
