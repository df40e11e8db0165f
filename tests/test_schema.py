from sqlalchemy import Engine, text


def test_migrations_create_every_table_with_spatial_and_time_indexes(engine: Engine) -> None:
    with engine.connect() as conn:
        tables = set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )
        assert {
            "wards",
            "zones",
            "teams",
            "categories",
            "category_routes",
            "reports",
            "report_events",
            "boundary_imports",
        } <= tables
        indexes = {
            (row.tablename, row.indexdef.split(" USING ")[1].split(" ")[0])
            for row in conn.execute(
                text("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'")
            )
        }
        for table in ("wards", "zones", "reports"):
            assert (table, "gist") in indexes, f"{table}.geom has no GiST index"
        defs = " ".join(
            conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE tablename = 'reports'")
            ).scalars()
        )
        assert "(created_at)" in defs
        assert "(status)" in defs
        srid = conn.execute(text("SELECT Find_SRID('public', 'reports', 'geom')")).scalar_one()
        assert srid == 4326


def test_category_sla_defaults_to_48_hours(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO categories (code, name_th, name_en) VALUES ('road', 'ถนน', 'Roads')")
        )
        assert conn.execute(text("SELECT sla_hours FROM categories")).scalar_one() == 48
