"""Behind pgBouncer in transaction mode: filing and reading reports, prepared statements off.

A real pgBouncer (Debian's 1.18, too old to track prepared statements) pools two server
connections in front of the test cluster, configured as the README tells admins to
(``pool_mode = transaction``, ``ignore_startup_parameters = options``). The app's callers
file reports from several connections at once, so their transactions land on either server
connection. With ``ISSUEMAP_DATABASE_PREPARED_STATEMENTS=false`` every request succeeds; with
the default, a statement prepared on one server connection is looked for on the other. The
live stream and ``/ogc``, which keep sessions, connect to ``ISSUEMAP_DATABASE_SESSION_URL``.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

from api.app import AppSettings, create_app
from api.deps import app_state
from geo.db.cluster import SERVICE_USER, LocalCluster
from geo.db.engine import Prepared, execute_prepared, make_engine
from geo.settings import DatabaseSettings, GeocoderSettings
from tests.fixtures import TINY_GAZETTEER, Keys, load_tiny_city, make_keys

SERVER_CONNECTIONS = 2
"""pgBouncer's server connections per database: fewer than the app's client connections."""
CALLERS = 6
"""Requests in flight at once, so the app's pool opens more connections than pgBouncer has."""
REPORTS = 60
"""Reports filed: each client connection runs intake's statements past psycopg's threshold
of five several times over. Under the app key's limit of 120 a minute."""
PORT = 6432
"""Only names pgBouncer's socket file, in a folder of its own: nothing else can collide."""

ROAD = {"category": "road", "lat": 8.405, "lon": 100.011}
WHERE = "behind pgBouncer"


def pgbouncer_program() -> str:
    """Debian's pgbouncer; missing, it skips the test, or fails it under CI."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but pgbouncer is missing: run `make setup`, which installs it")
        pytest.skip("needs pgbouncer (Debian's pgbouncer package)")
    return found


class Bouncer:
    """A pgBouncer in transaction mode in front of ``cluster``, listening on a unix socket."""

    def __init__(self, program: str, cluster: LocalCluster) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="issuemap-pgbouncer-"))
        self.log = self.folder / "pgbouncer.log"
        config = self.folder / "pgbouncer.ini"
        users = self.folder / "userlist.txt"
        users.write_text(f'"{SERVICE_USER}" ""\n')
        config.write_text(
            f"""\
[databases]
* = host={cluster.host} port=5432

[pgbouncer]
unix_socket_dir = {self.folder}
listen_port = {PORT}
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 200
ignore_startup_parameters = options
"""
        )
        # pgBouncer refuses to run as root, like PostgreSQL: run it as the cluster's owner.
        as_root = os.geteuid() == 0
        if as_root:
            shutil.chown(self.folder, SERVICE_USER, SERVICE_USER)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [program, str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=SERVICE_USER if as_root else None,
                group=SERVICE_USER if as_root else None,
                extra_groups=[] if as_root else None,
            )
        self._wait_until_ready()

    def _wait_until_ready(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(self.conninfo("postgres")).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    said = self.log.read_text(errors="replace")[-2000:]
                    self.stop()
                    pytest.fail(f"pgbouncer did not start:\n{said}")
                time.sleep(0.05)

    def conninfo(self, dbname: str) -> str:
        """libpq connection string of database ``dbname`` through pgBouncer."""
        return f"host={self.folder} port={PORT} user={SERVICE_USER} dbname={dbname}"

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of database ``dbname`` through pgBouncer."""
        return f"postgresql+psycopg://{SERVICE_USER}@/{dbname}?host={self.folder}&port={PORT}"

    def stop(self) -> None:
        """Stop pgBouncer and delete its folder."""
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def bouncer(pg_cluster: LocalCluster) -> Iterator[Bouncer]:
    """pgBouncer in front of the test cluster, for the whole module."""
    running = Bouncer(pgbouncer_program(), pg_cluster)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def city(engine: Engine) -> Keys:
    """The tiny city and its keys in this test's database (a pgBouncer pool of its own)."""
    with engine.begin() as conn:
        load_tiny_city(conn)
        return make_keys(conn)


@pytest.fixture
def app_behind(bouncer: Bouncer, db_url: str, tmp_path: Path) -> Callable[..., TestClient]:
    """Make the app reach this test's database through pgBouncer, with ``database`` settings."""
    gazetteer = tmp_path / "gazetteer.csv"
    gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
    dbname = make_url(db_url).database
    assert dbname is not None

    def make(**database: Any) -> TestClient:
        settings = AppSettings(
            database=DatabaseSettings(database_url=bouncer.url(dbname), **database),
            geocoder=GeocoderSettings(gazetteer_path=gazetteer),
        )
        return TestClient(create_app(settings))

    return make


Outcome = tuple[int | Exception, Any]
"""A request's status and body, or the error the app raised on it."""


def file_and_read(client: TestClient, keys: Keys) -> tuple[list[Outcome], list[Outcome]]:
    """File ``REPORTS`` reports from ``CALLERS`` callers at once, then read each one filed."""
    headers = {"X-API-Key": keys.app}

    def call(method: str, path: str, **body: Any) -> Outcome:
        try:
            answer = client.request(method, path, headers=headers, **body)
        except Exception as error:  # the app's own failure, raised through the test client
            return error, None
        return answer.status_code, answer.json()

    def file(n: int) -> Outcome:
        return call("POST", "/api/reports", json=ROAD | {"description": f"Pothole {n} {WHERE}"})

    with ThreadPoolExecutor(CALLERS) as pool:
        filed = list(pool.map(file, range(REPORTS)))
        ids = [body["id"] for status, body in filed if status == 201]
        read = list(pool.map(lambda i: call("GET", f"/api/reports/{i}"), ids))
    return filed, read


def test_reports_are_filed_and_read_through_pgbouncer_with_prepared_statements_off(
    app_behind: Callable[..., TestClient], city: Keys, engine: Engine
) -> None:
    with app_behind(database_prepared_statements=False) as client:
        filed, read = file_and_read(client, city)
        pool = app_state(client.app).engine.pool  # type: ignore[arg-type]
        assert isinstance(pool, QueuePool)
        clients = pool.checkedin()
        # Exports read through pools of their own, past the threshold on each connection.
        with ThreadPoolExecutor(3) as exporters:
            exports = list(
                exporters.map(
                    lambda _: client.get(
                        "/api/reports", params={"format": "csv"}, headers={"X-API-Key": city.app}
                    ),
                    range(12),
                )
            )
    assert [answer.status_code for answer in exports] == [200] * 12
    assert all(answer.text.count(WHERE) == REPORTS for answer in exports)
    assert [status for status, _ in filed] == [201] * REPORTS
    assert [status for status, _ in read] == [200] * REPORTS
    described = sorted(f"Pothole {n} {WHERE}" for n in range(REPORTS))
    assert sorted(body["description"] for _, body in read) == described
    with engine.connect() as conn:
        servers = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    # More client connections than server connections: transactions moved between them.
    assert servers == SERVER_CONNECTIONS
    assert clients > SERVER_CONNECTIONS


def test_prepared_statements_on_fail_behind_pgbouncer_in_transaction_mode(
    app_behind: Callable[..., TestClient], city: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    with app_behind() as client:
        filed, read = file_and_read(client, city)
    failed = [status for status, _ in filed + read if status not in (200, 201)]
    assert failed, "every request succeeded: no prepared statement met another server connection"
    # A failure is raised (500), or answered 503 when PostgreSQL calls it a protocol
    # violation (a Bind naming another client's statement), which the app logs.
    raised = [str(status) for status in failed if isinstance(status, Exception)]
    unavailable = [r.getMessage() for r in caplog.records if r.name == "api.errors"]
    assert [status for status in failed if isinstance(status, int)] == [503] * len(unavailable)
    reasons = raised + unavailable
    assert len(reasons) == len(failed)
    assert all("prepared statement" in reason for reason in reasons), reasons


def test_the_live_map_and_ogc_keep_their_sessions_on_a_url_of_their_own(
    app_behind: Callable[..., TestClient], city: Keys, db_url: str
) -> None:
    # The live stream LISTENs and tipg keeps functions and settings on its connections: a
    # pooler in transaction mode would hand those sessions to other clients.
    behind = {"database_prepared_statements": False, "database_session_url": db_url}
    with app_behind(**behind) as client:
        heard: queue.Queue[dict[str, Any]] = queue.Queue()
        app_state(client.app).live.subscribe(heard.put)  # type: ignore[arg-type]
        filed = client.post(
            "/api/reports",
            json=ROAD | {"description": f"Live {WHERE}"},
            headers={"X-API-Key": city.app},
        )
        assert filed.status_code == 201, filed.text
        report = filed.json()["id"]
        seen = []
        while report not in seen:
            event = heard.get(timeout=10)
            seen.append(event.get("id"))
        ogc = client.get(f"/ogc/collections/reports/items/{report}")
        assert ogc.status_code == 200, ogc.text
    # Without a URL of its own, /ogc's connections cannot even start through the pooler.
    with app_behind(database_prepared_statements=False) as client:
        refused = client.get("/ogc/collections/reports/items", params={"limit": 1})
        assert refused.status_code >= 500


@pytest.mark.parametrize("prepared", [True, False])
def test_the_setting_decides_whether_postgresql_keeps_prepared_statements(
    db_url: str, prepared: bool
) -> None:
    engine = make_engine(db_url, pool_size=1, prepared_statements=prepared)
    hot = Prepared.compile("SELECT CAST(:n AS int) AS n")
    try:
        with engine.connect() as conn:
            for n in range(10):
                assert execute_prepared(conn, hot, {"n": n}).n == n
                conn.execute(text("SELECT CAST(:n AS int) + 1"), {"n": n})
            kept = conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one()
    finally:
        engine.dispose()
    # On, execute_prepared's statement at once and the other past psycopg's threshold.
    assert kept == (2 if prepared else 0)


def test_prepared_statements_are_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISSUEMAP_DATABASE_PREPARED_STATEMENTS", raising=False)
    assert DatabaseSettings().database_prepared_statements is True
    monkeypatch.setenv("ISSUEMAP_DATABASE_PREPARED_STATEMENTS", "false")
    assert DatabaseSettings().database_prepared_statements is False
