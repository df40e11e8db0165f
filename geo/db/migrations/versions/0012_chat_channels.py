"""Residents report by chat: conversations, their photos, an inbox of webhook events,
which chat user filed a report, ratings, and chat pushes in the outbox.

- ``chat_conversations``: one per chat user, the parts of a report given so far; expires
  after an idle time.
- ``chat_uploads``: photos sent in a conversation, checked, waiting for the report.
- ``chat_inbox``: webhook events stored before they are handled; the unique event id
  makes a redelivery a no-op.
- ``report_chats``: the chat user who filed a report, apart from ``reports`` so no report
  query can leak it.
- ``reports.rating`` / ``rated_at``: the reporter's 1-5 rating of the fixed work.
- ``outbox.kind`` may be ``line``: status pushes to a LINE user.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHANNEL = "channel::text = ANY ('{line}'::text[])"


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.drop_constraint("kind_known", "outbox", type_="check")
    op.create_check_constraint(
        "kind_known", "outbox", "kind::text = ANY ('{email,webhook,line}'::text[])"
    )
    op.add_column("reports", sa.Column("rating", sa.SmallInteger(), nullable=True))
    op.add_column("reports", sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        "rating_range", "reports", "rating IS NULL OR rating BETWEEN 1 AND 5"
    )
    op.create_check_constraint(
        "rated_with_time", "reports", "(rating IS NULL) = (rated_at IS NULL)"
    )
    op.create_table(
        "chat_conversations",
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("state", postgresql.JSONB(), server_default=sa.text("'{}'"), nullable=False),
        _now("updated_at"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_CHANNEL, name="channel_known"),
        sa.CheckConstraint("language IS NULL OR language IN ('th', 'en')", name="language_known"),
    )
    op.create_table(
        "chat_uploads",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("public_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("original_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("gps_lat", sa.Float(), nullable=True),
        sa.Column("gps_lon", sa.Float(), nullable=True),
        _now("created_at"),
        sa.ForeignKeyConstraint(
            ["channel", "user_id"],
            ["chat_conversations.channel", "chat_conversations.user_id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_chat_uploads_conversation", "chat_uploads", ["channel", "user_id"])
    op.create_table(
        "chat_inbox",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        _now("received_at"),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("channel", "event_id", name="uq_chat_inbox_event"),
        sa.CheckConstraint(_CHANNEL, name="channel_known"),
    )
    op.create_index(
        "ix_chat_inbox_pending",
        "chat_inbox",
        ["channel", "user_id", "id"],
        postgresql_where=sa.text("processed_at IS NULL"),
    )
    op.create_table(
        "report_chats",
        sa.Column(
            "report_id",
            sa.BigInteger(),
            sa.ForeignKey("reports.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.CheckConstraint(_CHANNEL, name="channel_known"),
    )
    op.create_index("ix_report_chats_user", "report_chats", ["channel", "user_id", "report_id"])


def downgrade() -> None:
    op.drop_table("report_chats")
    op.drop_table("chat_inbox")
    op.drop_table("chat_uploads")
    op.drop_table("chat_conversations")
    op.drop_constraint("rated_with_time", "reports", type_="check")
    op.drop_constraint("rating_range", "reports", type_="check")
    op.drop_column("reports", "rated_at")
    op.drop_column("reports", "rating")
    op.execute("DELETE FROM outbox WHERE kind = 'line'")
    op.drop_constraint("kind_known", "outbox", type_="check")
    op.create_check_constraint("kind_known", "outbox", "kind IN ('email', 'webhook')")
