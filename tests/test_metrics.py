"""``/metrics`` (Prometheus), the JSON request log, and ``/healthz``.

Metrics are for the machines the settings name (loopback by default), whatever a caller
writes in ``X-Forwarded-For``; their route label is a template, so made-up paths add no
series; each request is one JSON log line without any secret it carried.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from api.metrics import REQUEST_LOGGER
from geo.cli.main import serve_log_config
from geo.cli.service import json_formatter
from geo.settings import DatabaseSettings, GeocoderSettings, MetricsSettings, ProxySettings
from tests.fixtures import TINY_GAZETTEER, Keys, load_tiny_city, make_keys
from tests.test_outage import database_down

pytestmark = pytest.mark.long_running

LOCAL = ("127.0.0.1", 40000)
REMOTE = ("203.0.113.5", 40000)
ROAD = {"category": "road", "description": "หลุม", "lat": 8.405, "lon": 100.005}
OUTSIDE = {"category": "road", "description": "far away", "lat": 8.6, "lon": 100.015}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def settings_for(db_url: str, tmp_path: Path, **groups: object) -> AppSettings:
    gazetteer = tmp_path / "gazetteer.csv"
    gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
    return AppSettings(
        database=DatabaseSettings(database_url=db_url),
        geocoder=GeocoderSettings(gazetteer_path=gazetteer),
        **groups,  # type: ignore[arg-type]
    )


@pytest.fixture
def keys(engine: Engine) -> Keys:
    with engine.begin() as conn:
        load_tiny_city(conn)
        return make_keys(conn)


@pytest.fixture
def local(db_url: str, tmp_path: Path, keys: Keys) -> Iterator[TestClient]:
    """The service as a client on this machine reaches it."""
    app = create_app(settings_for(db_url, tmp_path))
    with TestClient(app, client=LOCAL, raise_server_exceptions=False) as client:
        yield client


def samples(client: TestClient) -> Samples:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    found: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_by_route_intake_by_channel_and_routing_failures(
    local: TestClient, engine: Engine, keys: Keys
) -> None:
    filed = local.post("/api/reports", json=ROAD)
    assert filed.status_code == 201, filed.text
    open311 = {"api_key": keys.app, "service_code": "road", "lat": "8.405", "long": "100.005"}
    open311["description"] = "หลุม"
    assert local.post("/open311/v2/requests.json", data=open311).status_code == 200
    report = filed.json()["id"]
    assert local.get(f"/api/reports/{report}").status_code == 200
    # Refused by a check every route makes, and still counted by its route.
    assert local.get(f"/api/reports/{report}", params={"lang": "\x00"}).status_code == 422
    assert local.post("/api/reports", json=OUTSIDE).status_code == 422
    # A corner of ward W-A that no zone covers: the report is stored, for no team.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE zones SET geom = ST_Multi(ST_GeomFromText('POLYGON((100.00 8.40, "
                "100.005 8.40, 100.005 8.41, 100.00 8.41, 100.00 8.40))', 4326)) "
                "WHERE code = 'Z1'"
            )
        )
    orphan = local.post("/api/reports", json=ROAD | {"lon": 100.008})
    assert orphan.status_code == 201, orphan.text
    assert orphan.json()["team"] is None
    # The residents' form, as a browser without JavaScript posts it: in the city, then not.
    for lat in ("8.405", "8.6"):
        form_key = re.search(r'name="form_key" value="([^"]+)"', local.get("/report").text)
        assert form_key is not None
        fields = {"category": "road", "description": "หลุม", "lat": lat, "lon": "100.005"}
        answer = local.post(
            "/report", data=fields | {"form_key": form_key.group(1)}, follow_redirects=False
        )
        assert answer.status_code == (303 if lat == "8.405" else 422), answer.text[:300]
    found = samples(local)

    route = {"method": "GET", "route": "/api/reports/{report_id}", "status": "200"}
    assert value(found, "issuemap_http_requests_total", **route) == 1
    assert value(found, "issuemap_http_requests_total", **route | {"status": "422"}) == 1
    assert (
        value(found, "issuemap_http_requests_total", **route | {"route": f"/api/reports/{report}"})
        == 0
    )
    posted = {"method": "POST", "route": "/api/reports"}
    assert value(found, "issuemap_http_requests_total", **posted, status="201") == 2
    assert value(found, "issuemap_http_requests_total", **posted, status="422") == 1
    assert value(found, "issuemap_http_request_duration_seconds_count", **posted) == 3
    assert value(found, "issuemap_intake_reports_total", channel="api") == 2
    assert value(found, "issuemap_intake_reports_total", channel="open311") == 1
    outside = {"channel": "api", "reason": "outside_service_area"}
    assert value(found, "issuemap_routing_failures_total", **outside) == 1
    no_team = {"channel": "api", "reason": "no_team"}
    assert value(found, "issuemap_routing_failures_total", **no_team) == 1
    assert value(found, "issuemap_intake_reports_total", channel="web") == 1
    web_outside = outside | {"channel": "web"}
    assert value(found, "issuemap_routing_failures_total", **web_outside) == 1

    assert value(found, "issuemap_db_pool_limit") == 20  # pool_size 10, as many in overflow
    assert ("issuemap_db_pool_checked_out", frozenset()) in found
    assert value(found, "issuemap_database_up") == 1
    # Filing a report queues nothing without webhooks or a reporter's e-mail.
    assert ("issuemap_outbox_backlog", frozenset()) in found
    assert value(found, "issuemap_outbox_backlog") == 0


def test_the_live_tailers_lag_is_a_fraction_of_a_second(local: TestClient) -> None:
    deadline = time.monotonic() + 10
    while True:
        found = samples(local)
        if value(found, "issuemap_live_tailer_up") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert value(found, "issuemap_live_tailer_up") == 1
    assert 0 <= value(found, "issuemap_live_tailer_lag_seconds") < 5


def test_the_outbox_backlog_counts_messages_waiting(local: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox (kind, target, payload) VALUES "
                "('email', 'a@example.org', '{}'), ('email', 'b@example.org', '{}'), "
                "('email', 'c@example.org', '{}')"
            )
        )
        conn.execute(text("UPDATE outbox SET delivered_at = now() WHERE target = 'c@example.org'"))
    assert value(samples(local), "issuemap_outbox_backlog") == 2


def test_made_up_paths_add_no_series(local: TestClient) -> None:
    for _ in range(1000):
        assert local.get(f"/{secrets.token_hex(8)}/x").status_code == 404
    for _ in range(50):
        local.request(f"X{secrets.token_hex(4).upper()}", "/healthz")
    # Paths of a route are counted by its template.
    for number in range(1_000_000, 1_000_020):
        assert local.get(f"/api/reports/{number}").status_code == 404
    found = samples(local)
    requests = {labels for name, labels in found if name == "issuemap_http_requests_total"}
    assert len(requests) < 10, sorted(requests)
    assert (
        sum(
            v
            for (n, labels), v in found.items()
            if n == "issuemap_http_requests_total" and ("method", "other") in labels
        )
        == 50
    )
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(found, "issuemap_http_requests_total", **unmatched) == 1000
    assert (
        sum(
            v
            for (n, labels), v in found.items()
            if n == "issuemap_http_requests_total"
            and ("route", "/api/reports/{report_id}") in labels
        )
        == 20
    )


def test_metrics_are_refused_to_other_addresses(db_url: str, tmp_path: Path, keys: Keys) -> None:
    app = create_app(settings_for(db_url, tmp_path))
    with TestClient(app, client=REMOTE) as remote:
        assert remote.get("/metrics").status_code == 404
        # Saying it is local does not make it so.
        spoofed = remote.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
        assert spoofed.status_code == 404
    with TestClient(app, client=LOCAL) as local:
        assert local.get("/metrics").status_code == 200
        # The local proxy, trusted by nobody here, passing a remote client's request on.
        relayed = local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"})
        assert relayed.status_code == 404
        assert local.get("/metrics", headers={"X-Real-IP": "203.0.113.5"}).status_code == 404


def test_behind_a_trusted_proxy_a_spoofed_forwarded_for_does_not_reach_metrics(
    db_url: str, tmp_path: Path, keys: Keys
) -> None:
    settings = settings_for(db_url, tmp_path, proxies=ProxySettings(trusted_proxies=["127.0.0.1"]))
    with TestClient(create_app(settings), client=LOCAL) as proxy:
        # nginx appends the address it saw to what the client wrote.
        spoofed = proxy.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.5"})
        assert spoofed.status_code == 404
        assert proxy.get("/metrics", headers={"X-Forwarded-For": "::1"}).status_code == 200


def test_the_allow_list_comes_from_the_settings(db_url: str, tmp_path: Path, keys: Keys) -> None:
    settings = settings_for(
        db_url, tmp_path, metrics=MetricsSettings(metrics_allow=["203.0.113.0/24"])
    )
    app = create_app(settings)
    with TestClient(app, client=REMOTE) as monitor:
        assert monitor.get("/metrics").status_code == 200
    with TestClient(app, client=LOCAL) as local:
        assert local.get("/metrics").status_code == 404


def test_the_allow_list_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISSUEMAP_METRICS_ALLOW", "10.0.0.0/8, 192.168.1.7")
    assert MetricsSettings().metrics_allow == ["10.0.0.0/8", "192.168.1.7/32"]
    monkeypatch.setenv("ISSUEMAP_METRICS_ALLOW", "*")
    with pytest.raises(ValueError, match="not an IP address or CIDR network"):
        MetricsSettings()
    assert MetricsSettings(metrics_allow=[]).metrics_allow == []


def test_each_request_is_one_json_log_line_without_its_secrets(
    local: TestClient, keys: Keys
) -> None:
    token = local.post("/api/reports", json=ROAD).json()["tracking_url"].rsplit("/", 1)[1]
    config = serve_log_config()
    assert config["loggers"][REQUEST_LOGGER]["level"] == "INFO"
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger(REQUEST_LOGGER)
    logger.addHandler(handler)
    before = logger.level
    logger.setLevel(logging.INFO)
    secret = {
        "key": "querykey" + secrets.token_hex(8),
        "cookie": "cookievalue" + secrets.token_hex(8),
        "bearer": "bearertoken" + secrets.token_hex(8),
        "line": "linesignature" + secrets.token_hex(8),
        "password": "hunter2" + secrets.token_hex(8),
    }
    try:
        local.get("/api/reports", headers={"X-API-Key": keys.planner})
        local.get("/api/reports", headers={"Authorization": f"Bearer {secret['bearer']}"})
        local.get(f"/maps/zone?key={secret['key']}&lang=en")
        local.get("/api/reports", headers={"Cookie": f"issuemap_session={secret['cookie']}"})
        local.post("/line/webhook", content=b"{}", headers={"X-Line-Signature": secret["line"]})
        local.post("/login", data={"username": "planner", "password": secret["password"]})
        local.get(f"/r/{token}")
        local.get("/api/reports", headers={"X-Request-ID": "trace-42"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
    output = written.getvalue()
    for value_ in [keys.planner, token, *secret.values()]:
        assert value_ not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 8
    for line in lines:
        assert {"time", "level", "logger", "message", "method", "route", "path", "status"} <= set(
            line
        )
        assert line["client"] == "127.0.0.1"
        assert line["duration_ms"] >= 0 and line["request_id"]
    assert lines[2]["path"] == "/maps/zone?key=[redacted]&lang=en"
    assert lines[6]["route"] == "/r/{token}" and lines[6]["path"] == "/r/[redacted]"
    assert lines[7]["request_id"] == "trace-42"


def test_health_reports_the_database_and_replicas(local: TestClient, db_url: str) -> None:
    up = local.get("/healthz")
    assert up.status_code == 200, up.text
    body = up.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["postgis"].startswith("3.") and body["replicas"] == []
    with database_down(db_url):
        down = local.get("/healthz", headers={"Accept-Language": "th"})
        assert down.status_code == 503, down.text
        assert down.headers["Retry-After"] == "30"
        body = down.json()
        assert body["status"] == "down" and body["database"] == "down"
        assert body["postgis"] is None and body["detail"]
        # The metrics still answer, and say so.
        assert value(samples(local), "issuemap_database_up") == 0
    assert local.get("/healthz").json()["status"] == "ok"


WORKER = """
import sys
from fastapi.testclient import TestClient
from api.app import AppSettings, create_app
from geo.settings import DatabaseSettings

app = create_app(AppSettings(database=DatabaseSettings(database_url=sys.argv[1])))
with TestClient(app, client=("127.0.0.1", 40000)) as client:
    for _ in range(int(sys.argv[2])):
        assert client.get("/healthz").status_code == 200
    if sys.argv[3] == "scrape":
        print(client.get("/metrics").text)
"""


def test_workers_of_their_own_add_up_their_counts(db_url: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from geo.cli.service import shared_metrics_folder

    def worker(requests: int, then: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", WORKER, db_url, str(requests), then],
            capture_output=True,
            text=True,
            check=False,
            env=os.environ.copy(),
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    with shared_metrics_folder(None) as folder:
        worker(2, "exit")
        text = worker(1, "scrape")
    assert not folder.exists(), "counts must not outlive the run"
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(found, "issuemap_http_requests_total", **healthz) == 3
    # The pool of the worker that ended no longer counts.
    assert value(found, "issuemap_db_pool_limit") == 20
