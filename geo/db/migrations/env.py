"""Alembic environment: runs migrations against the URL set in the config."""

from alembic import context
from sqlalchemy import create_engine, pool

from geo.db.engine import include_object
from geo.db.schema import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "alembic_config() sets the database URL"
    connectable = create_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


run_migrations()
