"""While the database is unreachable every route answers 503 with a sentence, and the
service recovers by itself once the database is back."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from geo.db.engine import make_engine


@contextmanager
def database_down(db_url: str) -> Iterator[None]:
    """Refuse new connections to the test database and cut the ones it has."""
    name = make_url(db_url).database
    admin = make_engine(str(make_url(db_url).set(database="postgres")), pool_size=1)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        try:
            yield
        finally:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    admin.dispose()


def count_reports(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM reports")).scalar_one())


def test_a_database_outage_is_a_503_and_the_service_recovers(
    city_app, db_url: str, engine: Engine
) -> None:
    client, _, keys = city_app
    report = {"category": "road", "description": "หลุม", "lat": 8.405, "lon": 100.011}
    assert client.post("/api/reports", json=report).status_code == 201
    with database_down(db_url):
        answers = {
            "list": client.get("/api/reports"),
            "intake": client.post("/api/reports", json=report),
            "queue": client.get("/api/reports", headers={"X-API-Key": keys.planner}),
        }
        for name, answer in answers.items():
            assert answer.status_code == 503, (name, answer.text)
            assert answer.headers["Retry-After"] == "30"
            assert "try again" in answer.json()["detail"], name
        spec = client.get("/open311/v2/requests.json")
        assert spec.status_code == 503
        assert spec.json()[0]["code"] == 503
        assert "try again" in spec.json()[0]["description"]
    recovered = client.post("/api/reports", json=report)
    assert recovered.status_code == 201, recovered.text
    assert count_reports(engine) == 2, "the report refused during the outage was not stored"


def test_a_pooled_connection_the_server_ended_is_replaced_before_it_is_used(db_url: str) -> None:
    # No pre-ping round trip: the dead connection is found by its readable socket.
    pooled = make_engine(db_url, pool_size=1, max_overflow=0)
    with pooled.connect() as conn:
        first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = make_engine(db_url, pool_size=1)
    with admin.connect() as conn:
        # Waits until the backend is gone, so its goodbye is already on the socket.
        ended = text("SELECT pg_terminate_backend(:pid, 5000)")
        assert conn.execute(ended, {"pid": first}).scalar_one()
    admin.dispose()
    with pooled.connect() as conn:
        second = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert second != first
    pooled.dispose()


def test_service_connections_never_compile_queries_to_machine_code(db_url: str) -> None:
    """JIT compiling cost the ward dashboard more than its query at national scale."""
    engine = make_engine(db_url, pool_size=1)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW jit")).scalar_one() == "off"
    finally:
        engine.dispose()
