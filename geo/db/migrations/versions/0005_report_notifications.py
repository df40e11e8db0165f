"""Notify listeners when reports are created or change status (live maps).

A row trigger sends one notification per report on channel ``issuemap_reports``. Batch
writers (imports, the demo city) set ``issuemap.bulk = on`` for their transaction, which
the trigger's WHEN clause checks before any function runs, and send one ``bulk``
notification themselves, so a million-row load neither floods the queue nor slows down.
Payloads carry no personal data.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE FUNCTION issuemap_notify_report() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('issuemap_reports', json_build_object(
        'kind', 'report', 'op', lower(TG_OP), 'id', NEW.id, 'status', NEW.status,
        'category', (SELECT code FROM categories WHERE id = NEW.category_id),
        'ward_id', NEW.ward_id, 'zone_id', NEW.zone_id, 'team_id', NEW.team_id,
        'lat', ST_Y(NEW.geom), 'lon', ST_X(NEW.geom), 'created_at', NEW.created_at,
        'due_at', NEW.due_at, 'updated_at', NEW.updated_at)::text);
    RETURN NULL;
END
$$;
"""
_NOT_BULK = "current_setting('issuemap.bulk', true) IS DISTINCT FROM 'on'"


def upgrade() -> None:
    op.execute(_FUNCTION)
    op.execute(
        "CREATE TRIGGER reports_notify_insert AFTER INSERT ON reports FOR EACH ROW "
        f"WHEN ({_NOT_BULK}) EXECUTE FUNCTION issuemap_notify_report()"
    )
    op.execute(
        "CREATE TRIGGER reports_notify_update AFTER UPDATE OF status ON reports FOR EACH ROW "
        f"WHEN (OLD.status IS DISTINCT FROM NEW.status AND {_NOT_BULK}) "
        "EXECUTE FUNCTION issuemap_notify_report()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER reports_notify_update ON reports")
    op.execute("DROP TRIGGER reports_notify_insert ON reports")
    op.execute("DROP FUNCTION issuemap_notify_report()")
