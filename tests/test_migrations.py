from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from geo.db.engine import include_object
from geo.db.schema import Base


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        assert compare_metadata(context, Base.metadata) == []


def test_every_migration_downgrades_and_upgrades_again(db_url: str, engine: Engine) -> None:
    from alembic import command

    from geo.db.engine import alembic_config

    config = alembic_config(db_url)
    command.downgrade(config, "base")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() is None
    command.upgrade(config, "head")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        assert compare_metadata(context, Base.metadata) == []
