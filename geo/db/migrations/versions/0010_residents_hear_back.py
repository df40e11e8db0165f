"""What residents need to hear back: status-page tokens, hidden reports, names in two
languages, a notification outbox, outgoing webhooks and shared rate-limit counters.

- ``reports.token``: the status page's address (``/r/{token}``), 144 random bits from
  pgcrypto, given to every row by the column default, so imports and old rows get one too.
- ``reports.language``: the language the resident reported in (their e-mails use it).
- ``reports.hidden_at`` / ``hidden_reason``: staff took the report out of public outputs.
- ``name_th`` / ``name_en`` on wards, zones and teams: the two names apart, instead of one
  string glueing them; filled from the boundary properties where those held them.
- ``outbox``: notifications written in the same transaction as the change they announce,
  delivered later by a worker with retries.
- ``webhooks``: endpoints an admin registered, each with its signing secret.
- ``rate_limits``: fixed-window counters every server process shares. Unlogged: a crash may
  forget the current minute's counts, which is harmless, and writes skip the WAL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TOKEN = "translate(encode(gen_random_bytes(18), 'base64'), '+/', '-_')"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
    op.add_column(
        "reports",
        sa.Column("token", sa.String(32), server_default=sa.text(_TOKEN), nullable=False),
    )
    op.create_index("uq_reports_token", "reports", ["token"], unique=True)
    op.add_column("reports", sa.Column("language", sa.String(8), nullable=True))
    op.add_column("reports", sa.Column("hidden_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("reports", sa.Column("hidden_reason", sa.Text(), nullable=True))
    op.create_check_constraint(
        "language_known", "reports", "language IS NULL OR language IN ('th', 'en')"
    )
    op.create_check_constraint(
        "hidden_with_reason", "reports", "(hidden_at IS NULL) = (hidden_reason IS NULL)"
    )
    for table in ("wards", "zones", "teams"):
        op.add_column(table, sa.Column("name_th", sa.Text(), nullable=True))
        op.add_column(table, sa.Column("name_en", sa.Text(), nullable=True))
    for table in ("wards", "zones"):
        op.execute(
            f"UPDATE {table} SET name_th = NULLIF(btrim(properties->>'name_th'), ''), "
            "name_en = NULLIF(btrim(properties->>'name_en'), '') "
            "WHERE properties ? 'name_th' OR properties ? 'name_en'"
        )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("report_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "available_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('email', 'webhook')", name="kind_known"),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["available_at"],
        postgresql_where=sa.text("delivered_at IS NULL AND failed_at IS NULL"),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        prefixes=["UNLOGGED"],
    )
    op.create_index("ix_rate_limits_expires_at", "rate_limits", ["expires_at"])


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("webhooks")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")
    for table in ("teams", "zones", "wards"):
        op.drop_column(table, "name_en")
        op.drop_column(table, "name_th")
    op.drop_constraint("hidden_with_reason", "reports", type_="check")
    op.drop_constraint("language_known", "reports", type_="check")
    op.drop_column("reports", "hidden_reason")
    op.drop_column("reports", "hidden_at")
    op.drop_column("reports", "language")
    op.drop_index("uq_reports_token", table_name="reports")
    op.drop_column("reports", "token")
