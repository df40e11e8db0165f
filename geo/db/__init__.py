"""The database: the engine, the local PostgreSQL cluster, the ORM schema and its migrations."""
