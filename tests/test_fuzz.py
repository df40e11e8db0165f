"""Schema-driven fuzzing of every operation against a real server and a real PostGIS.

Schemathesis reads the service's own OpenAPI document and sends what it describes, and
what it does not (wrong types, missing fields, odd strings, bodies that are not JSON), to
every operation, as the public and as an administrator. No answer may be a 5xx, and every
answer must be one the document lists, with the content type and body schema it gives.
The run is bounded by a number of examples per operation, so it takes a few minutes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from api.app import AppSettings, create_app
from geo.settings import DatabaseSettings
from tests.browser import running
from tests.fixtures import load_tiny_city, make_keys

pytestmark = pytest.mark.long_running

EXAMPLES_PER_OPERATION = 100
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The live stream never ends and the map pages are HTML, checked by their own tests.
SKIPPED = r"^/api/live$"


@pytest.fixture(scope="module")
def fuzz_server(
    pg_cluster: object, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A real server over the tiny city, for the whole module: (base URL, admin key)."""
    import uuid

    from pytest_postgresql.janitor import DatabaseJanitor

    from geo.db.engine import make_engine

    cluster = pg_cluster
    name = f"fuzz_{uuid.uuid4().hex[:10]}"
    janitor = DatabaseJanitor(
        user="postgres",
        host=cluster.host,  # type: ignore[attr-defined]
        port=5432,
        dbname=name,
        template_dbname=template_db,
    )
    janitor.init()
    url = cluster.url(name)  # type: ignore[attr-defined]
    engine: Engine = make_engine(url, pool_size=2)
    with engine.begin() as conn:
        load_tiny_city(conn)
        keys = make_keys(conn)
    engine.dispose()
    app = create_app(AppSettings(database=DatabaseSettings(database_url=url)))
    try:
        with running(app) as base:
            yield base, keys.admin
    finally:
        janitor.drop()


def test_no_operation_answers_5xx_or_off_schema(fuzz_server: tuple[str, str]) -> None:
    base, admin = fuzz_server
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json").exclude(path_regex=SKIPPED)
    callers = itertools.cycle([{}, {"X-API-Key": admin}])
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
        )
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            headers = dict(next(callers))
            if (case.headers or {}).get("X-API-Key"):
                headers = {}
            case.call_and_validate(base_url=base, headers=headers, checks=CHECKS, timeout=30)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as error:  # report every operation that fails
            failures.append(f"{operation.label}: {error}")
    assert operations >= 20, "the OpenAPI document lost its operations"
    assert not failures, "\n\n".join(failures)
