"""Read replicas: read-only pages and exports served by a real streaming replica.

One replica of the test cluster (``pg_basebackup -R``) serves the whole module. The app
reads map pages, searches (Open311's too), exports and OGC API Features from it, and so
does a notebook's analysis; a caller who just wrote reads the primary; a replica that lags
or is stopped is skipped and the primary answers.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from pytest_postgresql.janitor import DatabaseJanitor

from api.app import AppSettings, create_app
from api.deps import WROTE_COOKIE, app_state
from geo import analysis
from geo.db.cluster import LocalCluster
from geo.db.engine import REPLICA_APPLICATION_NAME, ReplicaSet, make_engine, read_pool
from geo.settings import DatabaseSettings, GeocoderSettings
from tests.fixtures import TINY_GAZETTEER, Keys, load_tiny_city, make_keys

ROAD = {
    "category": "road",
    "description": "Pothole by the replica test",
    "lat": 8.405,
    "lon": 100.011,
}


class Setup:
    """The primary's database, its replica, and what the tests need to reach them."""

    def __init__(self, primary_url: str, dbname: str, replica: LocalCluster, keys: Keys) -> None:
        self.primary_url = primary_url
        self.dbname = dbname
        self.replica = replica
        self.keys = keys
        self.gazetteer = replica.data_dir.parent / f"{dbname}-gazetteer.csv"

    def replica_sql(self, statement: str) -> list[tuple[Any, ...]]:
        """Run ``statement`` on the replica's copy of the database."""
        with psycopg.connect(
            host=self.replica.host, user="postgres", dbname=self.dbname, autocommit=True
        ) as conn:
            return conn.execute(statement).fetchall()  # type: ignore[arg-type]

    def client(self, **database: Any) -> TestClient:
        """The app reading from the replica, with ``database`` settings on top."""
        settings = AppSettings(
            database=DatabaseSettings(
                database_url=self.primary_url,
                database_replica_urls=self.replica.url(self.dbname),
                **{"database_replica_check_s": 0.1} | database,
            ),
            geocoder=GeocoderSettings(gazetteer_path=self.gazetteer),
        )
        return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def setup(pg_cluster: LocalCluster, template_db: str) -> Iterator[Setup]:
    """A database with the tiny city on the test cluster, and a running replica of it."""
    dbname = f"r_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user="postgres", host=pg_cluster.host, port=5432, dbname=dbname, template_dbname=template_db
    )
    janitor.init()
    replica = LocalCluster(Path(tempfile.mkdtemp(prefix="issuemap-replica-")), durable=False)
    try:
        engine = make_engine(pg_cluster.url(dbname), pool_size=1)
        with engine.begin() as conn:
            load_tiny_city(conn)
            keys = make_keys(conn)
        engine.dispose()
        replica.replicate(pg_cluster)
        replica.start()
        found = Setup(pg_cluster.url(dbname), dbname, replica, keys)
        found.gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
        yield found
    finally:
        replica.destroy()
        janitor.drop()


@pytest.fixture(scope="module")
def client(setup: Setup) -> Iterator[TestClient]:
    """The app with the replica, allowing it 1 s of lag."""
    with setup.client(database_replica_max_lag_s=1.0) as running:
        yield running


def replicas(client: TestClient) -> ReplicaSet:
    """The app's replicas and what it last found of them."""
    reads = app_state(client.app).reads  # type: ignore[arg-type]
    assert reads is not None
    return reads.replicas


def wait_for(predicate: Any, what: str, timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` until it holds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def served_by_replica(setup: Setup, since: datetime) -> list[str]:
    """The queries the app's replica connections started after ``since``."""
    rows = setup.replica_sql(
        f"SELECT query, query_start FROM pg_stat_activity "
        f"WHERE application_name = '{REPLICA_APPLICATION_NAME}'"
    )
    return [query for query, started in rows if started is not None and started > since]


def replica_now(setup: Setup) -> datetime:
    """The replica's clock (``pg_stat_activity`` times are its own)."""
    now: datetime = setup.replica_sql("SELECT clock_timestamp()")[0][0]
    return now


def report_ids(answer: Any) -> set[int]:
    """The report ids on a GeoJSON page of ``GET /api/reports``."""
    assert answer.status_code == 200, answer.text
    return {int(feature["id"]) for feature in answer.json()["features"]}


def test_map_pages_searches_and_exports_are_served_by_the_replica(
    setup: Setup, client: TestClient
) -> None:
    wait_for(lambda: replicas(client).status()[0].usable, "the replica is in use")
    for path in (
        "/",
        "/maps/public",
        "/maps/public?view=list",
        "/api/reports",
        "/api/reports?format=csv",
        "/ogc/collections/reports/items",
        "/ogc/collections/wards/items?limit=3",
        "/open311/v2/services.json",
        "/open311/v2/requests.json",
        "/open311/v2/servicerequestupdates.json",
    ):
        since = replica_now(setup)
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        # The request's transaction ran on the replica: its connection there started a
        # statement (the transaction's last, ROLLBACK, which pg_stat_activity keeps) since.
        assert served_by_replica(setup, since), path


def test_notebook_analysis_reads_the_replica(setup: Setup) -> None:
    settings = DatabaseSettings(
        database_url=setup.primary_url,
        database_replica_urls=setup.replica.url(setup.dbname),
        database_replica_check_s=0.1,
    )
    primary = make_engine(setup.primary_url, pool_size=1)
    try:
        with read_pool(settings, primary, pool_size=1) as reads:
            wait_for(lambda: reads.replicas.status()[0].usable, "the replica is in use")
            since = replica_now(setup)
            with reads.connect() as conn:
                wards = analysis.ward_stats(conn)
                weekly = analysis.weekly_trends(conn)
            assert served_by_replica(setup, since)
        assert set(wards["code"]) == {"W-A", "W-B"}
        assert int(weekly["reports"].sum()) == int(wards["reports"].sum())
    finally:
        primary.dispose()


def test_a_caller_who_wrote_reads_its_write_at_once(setup: Setup) -> None:
    # A replica allowed to lag an hour: only the read-your-writes rule keeps the write seen.
    with setup.client(database_replica_max_lag_s=3600.0) as client:
        wait_for(lambda: replicas(client).status()[0].usable, "the replica is in use")
        setup.replica_sql("SELECT pg_wal_replay_pause()")
        try:
            key = {"X-API-Key": setup.keys.app}
            filed = client.post("/api/reports", json=ROAD, headers=key)
            assert filed.status_code == 201, filed.text
            report_id = int(filed.json()["id"])
            # The same caller's search and export right after: from the primary.
            assert report_id in report_ids(client.get("/api/reports", headers=key))
            csv = client.get("/api/reports?format=csv", headers=key)
            assert f"\n{report_id}," in csv.text
            # A browser that wrote through another worker carries the cookie that says so.
            client.cookies.set(WROTE_COOKIE, "1")
            assert report_id in report_ids(client.get("/api/reports"))
            feature = f"/ogc/collections/reports/items/{report_id}"
            assert client.get(feature).status_code == 200
            client.cookies.clear()
            # Anyone else reads the replica, which has not replayed the report yet.
            assert report_id not in report_ids(client.get("/api/reports"))
            assert client.get(feature).status_code == 404
        finally:
            setup.replica_sql("SELECT pg_wal_replay_resume()")


def test_a_write_from_a_browser_marks_it_for_the_primary(setup: Setup, client: TestClient) -> None:
    client.cookies.clear()
    client.cookies.set("issuemap_lang", "en")
    answer = client.post("/api/reports", json=ROAD, headers={"X-API-Key": setup.keys.app})
    client.cookies.clear()
    # A cookieless API call gets no cookie (it would subject its next calls to CSRF checks).
    plain = client.post("/api/reports", json=ROAD, headers={"X-API-Key": setup.keys.t1})
    assert plain.status_code == 201, plain.text
    assert WROTE_COOKIE not in plain.cookies
    assert answer.status_code == 201, answer.text
    assert answer.cookies.get(WROTE_COOKIE) == "1"


def test_a_lagging_replica_is_skipped(setup: Setup, client: TestClient) -> None:
    wait_for(lambda: replicas(client).status()[0].usable, "the replica is in use")
    setup.replica_sql("SELECT pg_wal_replay_pause()")
    try:
        filed = client.post("/api/reports", json=ROAD, headers={"X-API-Key": setup.keys.admin})
        report_id = int(filed.json()["id"])
        wait_for(lambda: replicas(client).status()[0].problem == "lagging", "the lag is seen")
        # The public's search now comes from the primary, new report included.
        assert report_id in report_ids(client.get("/api/reports"))
        lagging = client.get("/healthz").json()["replicas"][0]
        assert lagging["status"] == "lagging" and lagging["lag_s"] > 1.0, lagging
    finally:
        setup.replica_sql("SELECT pg_wal_replay_resume()")
    wait_for(lambda: replicas(client).status()[0].usable, "the replica caught up")


def test_a_stopped_replica_falls_back_to_the_primary(setup: Setup, client: TestClient) -> None:
    wait_for(lambda: replicas(client).status()[0].usable, "the replica is in use")
    # Pooled connections on the replica, about to be cut.
    client.get("/maps/public")
    client.get("/ogc/collections/reports/items")
    setup.replica.stop()
    try:
        for path in (
            "/",
            "/maps/public",
            "/api/reports",
            "/api/reports?format=csv",
            "/ogc/collections/reports/items",
        ):
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text)
        status = replicas(client).status()[0]
        assert not status.usable and status.problem == "down"
        health = client.get("/healthz").json()
        assert health["status"] == "degraded", health
        assert [replica["status"] for replica in health["replicas"]] == ["down"]
    finally:
        setup.replica.start()
    wait_for(lambda: replicas(client).status()[0].usable, "the replica is back")


def test_replica_urls_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ISSUEMAP_DATABASE_REPLICA_URLS",
        "postgresql://reader@10.0.0.12/issuemap, postgresql://reader@10.0.0.13/issuemap",
    )
    assert DatabaseSettings().database_replica_urls == [
        "postgresql://reader@10.0.0.12/issuemap",
        "postgresql://reader@10.0.0.13/issuemap",
    ]
    monkeypatch.setenv("ISSUEMAP_DATABASE_REPLICA_URLS", "postgresql://a@h/db,mysql://b@h/db")
    with pytest.raises(ValidationError, match="database_replica_urls"):
        DatabaseSettings()
