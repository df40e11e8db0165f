"""The views OGC API Features serves at ``/ogc``: schemas ``ogc_public`` and ``ogc_staff``.

Each holds the collections ``reports``, ``wards`` and ``zones``. The public reports view
applies the public rules (no private fields, hidden reports left out, locations on the
public grid) from their one definition in ``geo.access.policy`` and ``geo.reports.search``;
``geo.reports.ogc_views`` generates the SQL, and a later change to those rules needs a
migration that runs it again.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

from geo.reports.ogc_views import create_statements, drop_statements

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in create_statements():
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements():
        op.execute(statement)
