from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from geo.errors import InvalidInputError, OutsideServiceAreaError
from geo.reports.store import create_report, insert_reports, reroute_reports
from geo.settings import RoutingSettings
from tests.fixtures import TinyCity, load_tiny_city

SETTINGS = RoutingSettings()
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def city(engine: Engine) -> TinyCity:
    with engine.begin() as conn:
        return load_tiny_city(conn)


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_created_report_keeps_its_route_due_time_and_audit_event(
    engine: Engine, city: TinyCity
) -> None:
    with engine.begin() as conn:
        created = create_report(
            conn,
            lon=100.015,
            lat=8.405,
            category="road",
            description="หลุมบนถนนหน้าตลาด",
            settings=SETTINGS,
            created_at=T0,
        )
    assert created.ward_id == city.wards["W-B"]
    assert created.team_id == city.teams["T2"]
    assert created.due_at == T0 + timedelta(hours=48)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT description, status FROM reports")).one()
        event = conn.execute(text("SELECT kind, to_status FROM report_events")).one()
    assert row == ("หลุมบนถนนหน้าตลาด", "open")
    assert tuple(event) == ("created", "open")


@pytest.mark.parametrize(
    ("lon", "lat", "category", "error"),
    [
        (100.015, 8.405, "nope", InvalidInputError),
        (100.015, 8.5, "road", OutsideServiceAreaError),
        (100.015, 91.0, "road", InvalidInputError),
    ],
)
def test_refused_report_writes_nothing(
    engine: Engine, city: TinyCity, lon: float, lat: float, category: str, error: type
) -> None:
    with pytest.raises(error), engine.begin() as conn:
        create_report(conn, lon=lon, lat=lat, category=category, description="x", settings=SETTINGS)
    assert count(engine, "reports") == 0
    assert count(engine, "report_events") == 0


def test_batch_insert_rejects_outside_rows_and_is_idempotent(
    engine: Engine, city: TinyCity
) -> None:
    rows = pd.DataFrame(
        {
            "lon": [100.005, 100.015, 100.015],
            "lat": [8.405, 8.405, 8.6],
            "category_id": [city.categories["road"]] * 3,
            "created_at": [T0] * 3,
            "status": ["open", "resolved", "open"],
            "source": ["test"] * 3,
            "external_id": ["a", "b", "c"],
            "description": ["", 'comma, "quote"', "far away"],
        },
        index=[10, 11, 12],
    )
    with engine.begin() as conn:
        first = insert_reports(conn, rows, settings=SETTINGS)
    assert first.inserted == 2
    assert list(first.rejected.index) == [12]
    with engine.begin() as conn:
        again = insert_reports(conn, rows, settings=SETTINGS)
    assert (again.inserted, again.already_present) == (0, 2)
    assert count(engine, "reports") == 2
    with engine.connect() as conn:
        descriptions = set(conn.execute(text("SELECT description FROM reports")).scalars())
        moved = conn.execute(
            text("SELECT count(*) FROM report_events WHERE kind = 'status'")
        ).scalar_one()
    assert descriptions == {"", 'comma, "quote"'}
    assert moved == 1
    # Stored rows are set aside before routing: with every ward retired, a re-run still
    # counts them as already present instead of refusing them as outside.
    with engine.begin() as conn:
        conn.execute(text("UPDATE wards SET retired_at = now()"))
        third = insert_reports(conn, rows, settings=SETTINGS)
    assert (third.inserted, third.already_present) == (0, 2)
    assert list(third.rejected.index) == [12]


def test_batch_rows_without_external_id_are_all_kept(engine: Engine, city: TinyCity) -> None:
    rows = pd.DataFrame(
        {
            "lon": [100.005, 100.006],
            "lat": [8.405, 8.405],
            "category_id": [city.categories["road"]] * 2,
            "created_at": [T0, T0],
        }
    )
    with engine.begin() as conn:
        result = insert_reports(conn, rows, settings=SETTINGS)
    assert result.inserted == 2
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(external_id) FROM reports")).scalar_one() == 0


def test_new_boundaries_never_reroute_history_until_reroute_is_run(
    engine: Engine, city: TinyCity
) -> None:
    with engine.begin() as conn:
        open_report = create_report(
            conn, lon=100.011, lat=8.405, category="road", description="", settings=SETTINGS
        )
        done = create_report(
            conn, lon=100.011, lat=8.405, category="road", description="", settings=SETTINGS
        )
        conn.execute(text("UPDATE reports SET status = 'closed' WHERE id = :id"), {"id": done.id})
        # Move the ward line east: the point at lon 100.011 now lies in W-A.
        conn.execute(
            text("UPDATE wards SET geom = ST_Multi(ST_GeomFromText(:wkt, 4326)) WHERE code = :c"),
            {"c": "W-A", "wkt": "POLYGON((100 8.4,100.0115 8.4,100.0115 8.41,100 8.41,100 8.4))"},
        )
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT ward_id FROM reports WHERE id = :id"), {"id": open_report.id}
        ).scalar_one()
    assert stored == city.wards["W-B"], "a boundary change alone must not move a report"

    with engine.begin() as conn:
        preview = reroute_reports(conn, settings=SETTINGS, dry_run=True)
    assert (preview.examined, preview.changed) == (1, 1)
    assert count(engine, "report_events WHERE kind = 'rerouted'") == 0

    with engine.begin() as conn:
        result = reroute_reports(conn, settings=SETTINGS, actor="planner@city")
    assert (result.examined, result.changed, result.outside) == (1, 1, 0)
    with engine.connect() as conn:
        wards = dict(conn.execute(text("SELECT id, ward_id FROM reports")).all())
        event = conn.execute(
            text("SELECT report_id, actor, data FROM report_events WHERE kind = 'rerouted'")
        ).one()
    assert wards == {open_report.id: city.wards["W-A"], done.id: city.wards["W-B"]}
    assert event.report_id == open_report.id and event.actor == "planner@city"
    assert event.data["from"]["ward_id"] == city.wards["W-B"]
    assert event.data["to"]["ward_id"] == city.wards["W-A"]

    with engine.begin() as conn:
        assert reroute_reports(conn, settings=SETTINGS).changed == 0


def test_reroute_command_reports_what_it_changed(
    engine: Engine, city: TinyCity, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    with engine.begin() as conn:
        create_report(
            conn, lon=100.011, lat=8.405, category="road", description="", settings=SETTINGS
        )
        conn.execute(text("UPDATE zones SET retired_at = now()"))
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["reports", "reroute", "--actor", "ops"])
    assert result.exit_code == 0, result.output
    assert "examined 1 reports; changed 1" in result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT team_id FROM reports")).scalar_one() is None


def test_intake_follows_the_callers_transaction(engine: Engine, city: TinyCity) -> None:
    with engine.connect() as conn:
        create_report(
            conn, lon=100.005, lat=8.405, category="road", description="kept", settings=SETTINGS
        )
        conn.commit()
        create_report(
            conn, lon=100.005, lat=8.405, category="road", description="undone", settings=SETTINGS
        )
        conn.rollback()
        create_report(
            conn, lon=100.005, lat=8.405, category="road", description="dropped", settings=SETTINGS
        )
    # Closing without commit rolls back, as with any SQLAlchemy connection.
    with engine.connect() as conn:
        kept = list(conn.execute(text("SELECT description FROM reports")).scalars())
    assert kept == ["kept"]


def test_intake_keeps_one_generic_plan_once_reports_pile_up(engine: Engine, city: TinyCity) -> None:
    # PostgreSQL plans a prepared statement for its values for five calls, then keeps a
    # generic plan unless the value-specific plans looked cheaper. Planning the intake
    # statement costs more than running it, so intake must settle on the generic plan,
    # also over a table of many reports, close together, with fresh statistics.
    rng = np.random.default_rng(3)
    n = 60_000
    crowd = pd.DataFrame(
        {
            "lon": rng.uniform(100.0, 100.02, n),
            "lat": rng.uniform(8.40, 8.41, n),
            "category_id": city.categories["road"],
            "created_at": [T0 - timedelta(hours=int(h)) for h in rng.integers(0, 24 * 30, n)],
        }
    )
    with engine.begin() as conn:
        assert insert_reports(conn, crowd, settings=SETTINGS).inserted == n
    # Without and with the duplicate check, each on a connection of its own: a prepared
    # statement's plans are counted per connection.
    for duplicate_radius_m in (0.0, 50.0):
        engine.dispose()  # a new connection, without the last one's prepared statements
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE reports"))
            for i in range(15):
                create_report(
                    conn,
                    lon=100.001 + i * 0.001,
                    lat=8.405,
                    category="road",
                    description="x",
                    settings=SETTINGS,
                    created_at=T0,
                    duplicate_radius_m=duplicate_radius_m,
                )
            plans = conn.execute(
                text(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE '%INSERT INTO reports%'"
                )
            ).one()
        assert plans.custom_plans <= 5, duplicate_radius_m
        assert plans.generic_plans >= 10, duplicate_radius_m
