"""Shared fixtures: one throwaway PostGIS cluster per run, a fresh database per test.

The cluster is started by ``geo.db.cluster`` (as the ``postgres`` user when we are root, since
PostgreSQL will not run as root). A template database is migrated once; every test gets a
clone of it through pytest-postgresql's ``DatabaseJanitor``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Engine

from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine, upgrade

CHECKOUT = Path(__file__).resolve().parent.parent
SHARED_DATA = CHECKOUT.parent / "shared" / "data"
TEMPLATE_DB = "issuemap_template"


def _loggers() -> list[logging.Logger]:
    named = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(one for one in named if isinstance(one, logging.Logger))]


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Undo the logging set-up a command run in-process made.

    ``serve`` and the workers configure logging onto the stderr they were given, and a test
    runner's stderr is closed when the command ends: the next test's log lines would fail
    on it, or go nowhere.
    """
    saved = {
        one: (list(one.handlers), one.level, one.propagate, one.disabled) for one in _loggers()
    }
    yield
    for one in _loggers():
        if one not in saved:
            # A logger first made during the test keeps its level (a library's import may
            # set one); only the stream handlers a logging set-up gave it go.
            one.handlers[:] = [h for h in one.handlers if not isinstance(h, logging.StreamHandler)]
            continue
        handlers, level, propagate, disabled = saved[one]
        if one.handlers != handlers or one.level != level:
            one.handlers[:] = handlers
            one.setLevel(level)
        one.propagate, one.disabled = propagate, disabled


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes() -> Iterator[None]:
    """Argon2id at its lowest cost for the passwords this process hashes and checks.

    The service's cost is slowness on purpose (about 160 ms a hash, and as much a check, on
    two cores), and the suite makes and signs in hundreds of accounts. The hashes are still
    Argon2id, made and checked by the same code; a server the suite starts as a process of
    its own hashes at the service's cost, which ``test_accounts`` checks.
    """
    from argon2 import PasswordHasher

    from geo.access import accounts

    service = accounts._hasher
    accounts._hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    try:
        yield
    finally:
        accounts._hasher = service


def _in_memory() -> str | None:
    """A memory-backed folder for the throwaway cluster, where the system has one.

    Every test clones the template database and drops it afterwards: on this machine's disk
    that costs 0.13-0.26 s of writing a test, in memory 0.03 s.
    """
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


class _Janitor(DatabaseJanitor):
    """Clones by copying the template's files, with one WAL record instead of its every page.

    The cluster is thrown away, so the checkpoints such a copy asks for write nothing to
    keep; logging each page would fill the WAL with a template's worth every test.
    """

    def _build_create_database_sql(self) -> sql.Composed:
        query = super()._build_create_database_sql()
        return query + sql.SQL(" STRATEGY = FILE_COPY") if self.template_dbname else query


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    """A private PostgreSQL cluster for this test run, deleted afterwards."""
    # Not tmp_path: pytest's folders are private to root and the server runs as postgres.
    cluster = LocalCluster(
        Path(tempfile.mkdtemp(prefix="issuemap-test-", dir=_in_memory())), durable=False
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def _janitor(cluster: LocalCluster, dbname: str, **kwargs: object) -> DatabaseJanitor:
    return _Janitor(user="postgres", host=cluster.host, port=5432, dbname=dbname, **kwargs)


@pytest.fixture(scope="session")
def template_db(pg_cluster: LocalCluster) -> Iterator[str]:
    """Name of a template database holding PostGIS and every migration."""
    janitor = _janitor(pg_cluster, TEMPLATE_DB)
    janitor.init()
    upgrade(pg_cluster.url(TEMPLATE_DB))
    try:
        yield TEMPLATE_DB
    finally:
        janitor.drop()


@pytest.fixture
def db_url(pg_cluster: LocalCluster, template_db: str) -> Iterator[str]:
    """URL of a fresh, migrated, empty database cloned from the template."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    janitor = _janitor(pg_cluster, name, template_dbname=template_db)
    janitor.init()
    try:
        yield pg_cluster.url(name)
    finally:
        janitor.drop()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """SQLAlchemy engine on the per-test database."""
    eng = make_engine(db_url, pool_size=2)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public sample data beside the checkout; CI must always have it."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the sample data folder {SHARED_DATA} is missing")
        pytest.skip(f"sample data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked ``long_running`` first, in order; the others after them, in order.

    The workers take whole files in this order (``make test`` turns off xdist's reordering,
    which hands out the files with the most tests first): a file of one test of two minutes
    handed out last would run alone at the end while the other workers wait.
    """
    items.sort(key=lambda item: item.get_closest_marker("long_running") is None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ISSUEMAP_FAIL_ON_SKIP set (CI), any skipped test fails the run."""
    if not os.environ.get("ISSUEMAP_FAIL_ON_SKIP"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        if reporter:
            reporter.write_line(
                f"FAILED: {skipped} test(s) were skipped; CI allows none.", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def city_app(
    db_url: str, engine: Engine, tmp_path: Path
) -> Iterator[tuple[object, object, object]]:
    """(client, TinyCity, Keys): the app over a database holding the tiny city and keys."""
    from fastapi.testclient import TestClient

    from api.app import AppSettings, create_app
    from geo.settings import DatabaseSettings, GeocoderSettings
    from tests.fixtures import TINY_GAZETTEER, load_tiny_city, make_keys

    gazetteer = tmp_path / "gazetteer.csv"
    gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        keys = make_keys(conn)
    settings = AppSettings(
        database=DatabaseSettings(database_url=db_url),
        geocoder=GeocoderSettings(gazetteer_path=gazetteer),
    )
    with TestClient(create_app(settings)) as client:
        yield client, city, keys
