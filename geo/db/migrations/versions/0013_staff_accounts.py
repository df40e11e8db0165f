"""Staff sign in under their own names: accounts, browser sessions, and keys with owners.

- ``users``: a staff member's account (e-mail, name, role, team, an Argon2 password hash,
  wrong passwords in a row and a lock).
- ``staff_sessions``: signed-in browsers, by the SHA-256 of the cookie's token, with the
  session's CSRF token, its last use (the idle timeout) and its end.
- ``api_keys``: an owner, an expiry and the time the key was last used.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column(
            "team_id", sa.Integer(), sa.ForeignKey("teams.id", ondelete="RESTRICT"), nullable=True
        ),
        sa.Column("password_hash", sa.Text(), nullable=False),
        _now("created_at"),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_logins", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role::text = ANY ('{field_team,planner,admin}'::text[])", name="staff_role_known"
        ),
        sa.CheckConstraint(
            "(role = 'field_team') = (team_id IS NOT NULL)", name="team_iff_field_team"
        ),
        sa.CheckConstraint("email = lower(email)", name="email_lower_case"),
    )
    op.create_index("uq_users_email", "users", ["email"], unique=True)
    op.create_table(
        "staff_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _now("created_at"),
        _now("last_seen_at"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_staff_sessions_user", "staff_sessions", ["user_id"])
    op.create_index("ix_staff_sessions_expires_at", "staff_sessions", ["expires_at"])
    op.add_column(
        "api_keys",
        sa.Column(
            "owner_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
    )
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "last_used_at")
    op.drop_column("api_keys", "expires_at")
    op.drop_column("api_keys", "owner_id")
    op.drop_table("staff_sessions")
    op.drop_index("uq_users_email", table_name="users")
    op.drop_table("users")
