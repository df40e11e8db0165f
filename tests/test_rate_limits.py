"""Report rate limits: per address and per key, 429 with Retry-After in the caller's language,
counted in PostgreSQL so they hold across server processes, and client addresses taken from
X-Forwarded-For only when a trusted proxy sends it."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from limits import parse
from limits.strategies import FixedWindowRateLimiter
from pydantic import ValidationError
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from geo.access.policy import Principal
from geo.access.ratelimit import (
    PURGE_BATCH,
    PostgresStorage,
    ReportRateLimiter,
    address_bucket,
    caller_identity,
)
from geo.db.cluster import LocalCluster
from geo.errors import RateLimitedError
from geo.settings import (
    DatabaseSettings,
    GeocoderSettings,
    ProxySettings,
    RateLimitSettings,
)
from tests.fixtures import TINY_GAZETTEER, Keys, TinyCity, load_tiny_city, make_keys
from tests.test_serve import free_port, stop_service, wait_for, web_workers

pytestmark = pytest.mark.long_running

ROAD = {"category": "road", "description": "หลุมบ่อ", "lat": 8.405, "lon": 100.005}


def reports(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM reports")).scalar_one())


# --- the storage: one atomic statement per hit ------------------------------------------------


def counters(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT key, count FROM rate_limits")).all()
    return {row.key: row.count for row in rows}


def test_counts_grow_within_a_window_and_start_again_after_it(engine: Engine) -> None:
    storage = PostgresStorage(engine)
    assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert storage.get("k") == 3
    assert storage.get("other") == 0
    assert time.time() < storage.get_expiry("k") <= time.time() + 61
    # The window ends (as if a minute had passed): the next hit starts a new one.
    with engine.begin() as conn:
        conn.execute(text("UPDATE rate_limits SET expires_at = now() - interval '1 second'"))
    assert storage.get("k") == 0
    assert storage.incr("k", 60) == 1
    storage.clear("k")
    assert storage.get("k") == 0 and counters(engine) == {}
    storage.incr("a", 60)
    storage.incr("b", 60)
    assert storage.reset() == 2
    assert storage.check()


def test_expired_counters_are_deleted_a_few_at_a_time_by_later_hits(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rate_limits (key, count, expires_at) "
                "SELECT 'old' || i, 3, now() - interval '1 minute' FROM generate_series(1, 10) i"
            )
        )
    storage = PostgresStorage(engine)
    storage.incr("new", 60)
    left = counters(engine)
    assert len(left) == 1 + 10 - PURGE_BATCH, "one hit deletes a small batch, never all"
    for _ in range(3):
        storage.incr("new", 60)
    assert counters(engine) == {"new": 4}


def test_concurrent_hits_let_exactly_the_limit_through(engine: Engine) -> None:
    limiter = FixedWindowRateLimiter(PostgresStorage(engine))
    item = parse("10/minute")
    with ThreadPoolExecutor(max_workers=8) as pool:
        allowed = list(pool.map(lambda _: limiter.hit(item, "report", "addr:x"), range(40)))
    assert allowed.count(True) == 10
    assert limiter.get_window_stats(item, "report", "addr:x").remaining == 0


def test_who_is_counted_together() -> None:
    app = Principal(role="public", key_id=7, name="app")
    assert caller_identity(app, "203.0.113.1") == caller_identity(app, "198.51.100.2") == "key:7"
    anonymous = Principal(role="public")
    assert caller_identity(anonymous, "203.0.113.1") == "addr:203.0.113.1"
    # One IPv6 subscriber holds a whole /64: its addresses are one caller.
    assert address_bucket("2001:db8:1:2::1") == address_bucket("2001:db8:1:2:ffff::9")
    assert address_bucket("2001:db8:1:2::1") != address_bucket("2001:db8:1:3::1")
    assert address_bucket("::ffff:203.0.113.1") == "203.0.113.1"
    assert address_bucket(None) == "unknown"
    assert len(caller_identity(anonymous, "x" * 10_000)) <= 64


@pytest.mark.parametrize(
    "value",
    ["x", "{{7*7}}", "10/minute\x00", "0/minute", "10/minute;100/hour", "-5/minute", "9" * 400],
)
def test_a_limit_that_is_not_one_limit_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="anonymous"):
        RateLimitSettings(anonymous=value)


def test_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISSUEMAP_RATE_LIMIT_ANONYMOUS", "3 per 10 seconds")
    monkeypatch.setenv("ISSUEMAP_RATE_LIMIT_STAFF", "none")
    monkeypatch.setenv("ISSUEMAP_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
    limits = RateLimitSettings()
    assert (limits.anonymous, limits.app, limits.staff) == (
        "3 per 10 seconds",
        "120/minute",
        "none",
    )
    assert ProxySettings().trusted_proxies == ["10.0.0.0/8", "192.0.2.1/32"]
    assert RateLimitSettings.model_construct().anonymous == "10/minute"


@pytest.mark.parametrize(
    "value", ["*", "proxy.example", "<img src=x>", "10.0.0.0/33", "1.2.3.4\x00"]
)
def test_a_trusted_proxy_must_be_an_address_or_network(value: str) -> None:
    with pytest.raises(ValidationError, match="trusted_proxies"):
        ProxySettings(trusted_proxies=value)  # type: ignore[arg-type]  # as the variable reads
    with pytest.raises(ValidationError, match="trusted_proxies"):
        ProxySettings(trusted_proxies=["10.0.0.1", value])


def test_a_refusal_says_when_the_window_ends(engine: Engine) -> None:
    limiter = ReportRateLimiter(engine, RateLimitSettings(anonymous="2/hour"))
    caller = Principal(role="public")
    limiter.hit(caller, "203.0.113.9")
    limiter.hit(caller, "203.0.113.9")
    with pytest.raises(RateLimitedError) as refused:
        limiter.hit(caller, "203.0.113.9")
    assert 3500 < refused.value.retry_after_s <= 3600
    limiter.hit(caller, "203.0.113.10")  # another address has its own count


# --- over HTTP --------------------------------------------------------------------------------


@dataclass
class City:
    app: object
    city: TinyCity
    keys: Keys
    engine: Engine

    def client(self, address: str = "203.0.113.7", **headers: str) -> TestClient:
        """A client of the running app calling from ``address``."""
        return TestClient(self.app, client=(address, 50000), headers=headers)  # type: ignore[arg-type]


@pytest.fixture
def limited(db_url: str, engine: Engine, tmp_path: Path) -> Iterator[City]:
    """The tiny city served with small limits; 127.0.0.1 and 10.9.0.0/16 are trusted proxies."""
    gazetteer = tmp_path / "gazetteer.csv"
    gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        keys = make_keys(conn)
    settings = AppSettings(
        database=DatabaseSettings(database_url=db_url),
        geocoder=GeocoderSettings(gazetteer_path=gazetteer),
        rate_limits=RateLimitSettings(anonymous="10/minute", app="4/minute", staff="none"),
        proxies=ProxySettings(trusted_proxies=["127.0.0.1", "10.9.0.0/16"]),
    )
    app = create_app(settings)
    with TestClient(app):
        yield City(app, city, keys, engine)


def test_an_address_files_ten_reports_a_minute_and_then_gets_429(limited: City) -> None:
    resident = limited.client("203.0.113.7")
    statuses = [resident.post("/api/reports", json=ROAD).status_code for _ in range(10)]
    assert statuses == [201] * 10
    refused = resident.post("/api/reports", json=ROAD)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    body = refused.json()
    assert body["error"] == "RateLimitedError"
    assert f"wait {refused.headers['Retry-After']} seconds" in body["detail"]
    # Refused before the body is even read: nothing stored, and bad input is refused alike.
    assert resident.post("/api/reports", content=b"{not json").status_code == 429
    assert reports(limited.engine) == 10
    # Someone else, at another address, is not affected.
    assert limited.client("203.0.113.8").post("/api/reports", json=ROAD).status_code == 201


def test_the_429_sentence_is_in_the_callers_language(limited: City) -> None:
    resident = limited.client("203.0.113.20")
    for _ in range(10):
        resident.post("/api/reports", json=ROAD)
    thai = resident.post("/api/reports", json=ROAD, headers={"Accept-Language": "th,en;q=0.5"})
    assert thai.status_code == 429
    assert "กรุณารอ" in thai.json()["detail"]
    assert thai.headers["Retry-After"] in thai.json()["detail"]
    by_query = resident.post("/api/reports?lang=th", json=ROAD)
    assert "กรุณารอ" in by_query.json()["detail"]
    english = resident.post("/api/reports", json=ROAD, headers={"Accept-Language": "en-GB"})
    assert english.json()["detail"].startswith("Too many reports")
    odd = resident.post(
        "/api/reports?lang={{7*7}}", json=ROAD, headers={"Accept-Language": "<img src=x>"}
    )
    assert odd.status_code == 429 and odd.json()["detail"].startswith("Too many reports")


def test_an_app_key_has_its_own_limit_wherever_it_calls_from(limited: City) -> None:
    app_key = {"X-API-Key": limited.keys.app}
    for _ in range(10):
        limited.client("203.0.113.30").post("/api/reports", json=ROAD)
    # The address is spent, but the app's key is counted on its own ...
    assert (
        limited.client("203.0.113.30").post("/api/reports", json=ROAD, headers=app_key).status_code
        == 201
    )
    # ... and from every address alike: four a minute in this app.
    statuses = [
        limited.client(f"198.51.100.{n}")
        .post("/api/reports", json=ROAD, headers=app_key)
        .status_code
        for n in range(1, 6)
    ]
    assert statuses == [201, 201, 201, 429, 429]


def test_staff_keys_can_be_exempt(limited: City) -> None:
    staff = limited.client("203.0.113.40", **{"X-API-Key": limited.keys.t1})
    assert {staff.post("/api/reports", json=ROAD).status_code for _ in range(12)} == {201}


def test_open311_posts_are_limited_per_key_in_the_specs_error_format(limited: City) -> None:
    form = {
        "api_key": limited.keys.app,
        "service_code": "road",
        "description": "หลุมบ่อ",
        "lat": "8.405",
        "long": "100.005",
    }
    poster = limited.client("203.0.113.50", **{"Accept-Language": "th"})
    statuses = [poster.post("/open311/v2/requests.json", data=form).status_code for _ in range(4)]
    assert statuses == [200] * 4, statuses
    refused = poster.post("/open311/v2/requests.json", data=form)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit()
    [error] = refused.json()
    assert error["code"] == 429 and "กรุณารอ" in error["description"]
    xml = poster.post("/open311/v2/requests.xml", data=form)
    assert xml.status_code == 429 and "<code>429</code>" in xml.text
    # A key that is not valid is still refused as invalid, not counted.
    bad = poster.post("/open311/v2/requests.json", data=form | {"api_key": "nope"})
    assert bad.status_code == 403


def test_a_forwarded_address_counts_only_from_a_trusted_proxy(limited: City) -> None:
    untrusted = limited.client("203.0.113.60")
    spoofed = [
        untrusted.post(
            "/api/reports", json=ROAD, headers={"X-Forwarded-For": f"192.0.2.{n}"}
        ).status_code
        for n in range(12)
    ]
    assert spoofed == [201] * 10 + [429] * 2, "a made-up X-Forwarded-For changes nothing"
    proxy = limited.client("10.9.3.4")
    forwarded = [
        proxy.post(
            "/api/reports", json=ROAD, headers={"X-Forwarded-For": f"192.0.2.{n}, 10.9.0.1"}
        ).status_code
        for n in range(12)
    ]
    assert forwarded == [201] * 12, "each resident behind the proxy has a count of their own"
    one = [
        proxy.post("/api/reports", json=ROAD, headers={"X-Forwarded-For": "192.0.2.200"})
        for _ in range(11)
    ]
    assert [r.status_code for r in one] == [201] * 10 + [429]
    # The idempotency scope agrees on who the caller is.
    keyed = proxy.post(
        "/api/reports",
        json=ROAD,
        headers={"X-Forwarded-For": "192.0.2.201", "Idempotency-Key": "k1"},
    )
    assert keyed.status_code == 201
    with limited.engine.connect() as conn:
        scopes = set(conn.execute(text("SELECT scope FROM idempotency_keys")).scalars())
    assert scopes == {"addr:192.0.2.201"}


def test_without_trusted_proxies_forwarded_headers_are_ignored(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        load_tiny_city(conn)
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    with TestClient(app, client=("127.0.0.1", 50000)) as local:
        statuses = [
            local.post(
                "/api/reports", json=ROAD, headers={"X-Forwarded-For": f"192.0.2.{n}"}
            ).status_code
            for n in range(11)
        ]
    assert statuses == [201] * 10 + [429]


# --- several server processes -----------------------------------------------------------------

DEMO_REPORT = json.dumps(
    {"category": "road", "description": "rate limit test", "lat": 8.42, "lon": 99.96}
)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """`issuemap serve --workers 2` on its own PostGIS with the demo city, default limits."""
    data_dir = Path(tempfile.mkdtemp(prefix="issuemap-ratelimit-"))
    log = data_dir.parent / f"{data_dir.name}.log"
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "ISSUEMAP_DATABASE_URL"
        and not k.startswith(("ISSUEMAP_RATE_LIMIT_", "FORWARDED"))
        and k != "ISSUEMAP_TRUSTED_PROXIES"
    }
    env |= {"ISSUEMAP_DATA_DIR": str(data_dir), "ISSUEMAP_LOAD_DEMO": "true"}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "issuemap"),
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
                "--no-access-log",
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", process, 300).status_code == 200
        deadline = time.monotonic() + 300
        while log.read_text(errors="replace").count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        yield Served(process, port, log)
    finally:
        stop_service(process)
        LocalCluster(data_dir).destroy()
        log.unlink(missing_ok=True)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _tcp_inode(server_port: int, *, client_port: int | None) -> str | None:
    """The inode of the server's listening socket (no ``client_port``) or of the server's
    end of the loopback connection from ``client_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) != server_port:
                continue
            if client_port is None and state == "0A":  # LISTEN
                return inode
            if client_port is not None and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return inode
    return None


def connections_on_each_worker(served: Served) -> list[http.client.HTTPConnection]:
    """One open connection served by each of the two workers (found through /proc)."""
    # The web workers are the children sharing the listening socket (serve may run others).
    listening = _tcp_inode(served.port, client_port=None)
    workers = [pid for pid in web_workers(served.process.pid) if listening in _socket_inodes(pid)]
    assert len(workers) == 2, workers
    found: dict[int, http.client.HTTPConnection] = {}
    spare: list[http.client.HTTPConnection] = []
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() is not None
        assert conn.sock is not None
        inode = _tcp_inode(served.port, client_port=conn.sock.getsockname()[1])
        owner = next((pid for pid in workers if inode in _socket_inodes(pid)), None)
        if owner is not None and owner not in found:
            found[owner] = conn
        else:
            spare.append(conn)
        if len(found) == 2:
            break
    for conn in spare:
        conn.close()
    assert len(found) == 2, "could not reach both workers"
    return list(found.values())


def test_the_limit_holds_across_two_server_processes(served: Served) -> None:
    first, second = connections_on_each_worker(served)
    statuses: list[int] = []
    retry_after: set[str] = set()
    for n in range(16):
        conn = first if n % 2 == 0 else second
        # A made-up X-Forwarded-For from a client no setting trusts changes nothing either
        # (uvicorn by itself would believe one from 127.0.0.1).
        conn.request(
            "POST",
            "/api/reports",
            body=DEMO_REPORT,
            headers={"Content-Type": "application/json", "X-Forwarded-For": f"192.0.2.{n}"},
        )
        answer = conn.getresponse()
        answer.read()
        statuses.append(answer.status)
        if answer.status == 429:
            retry_after.add(answer.getheader("Retry-After") or "")
    first.close()
    second.close()
    assert statuses == [201] * 10 + [429] * 6, statuses
    assert all(value.isdigit() and 1 <= int(value) <= 60 for value in retry_after)
    listed = httpx.get(f"http://127.0.0.1:{served.port}/api/reports?limit=1", timeout=30)
    assert listed.status_code == 200, "reading is never limited"


def test_the_report_form_is_limited_like_the_api(limited: City) -> None:
    resident = limited.client("203.0.113.70", **{"Accept-Language": "th"})
    # Every form sent counts, filed or sent back with a problem.
    for _ in range(10):
        assert resident.post("/report", data={"category": "road"}).status_code != 429
    refused = resident.post("/report", data={"category": "road"})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit()
    assert "กรุณารอ" in refused.text


def test_the_support_button_is_limited_like_the_form(limited: City) -> None:
    """Supporting a report nearby writes as filing does: the eleventh press is refused."""
    filer = limited.client("203.0.113.80")
    near = filer.post("/api/reports", json=ROAD).json()["id"]
    mine = filer.post("/api/reports", json=ROAD | {"lat": 8.4051, "lon": 100.0051}).json()["id"]
    with limited.engine.connect() as conn:
        token = conn.execute(
            text("SELECT token FROM reports WHERE id = :id"), {"id": mine}
        ).scalar_one()
    resident = limited.client("203.0.113.81")
    path = f"/r/{token}/support?lang=th"
    hostile = ["{{7*7}}", "{%", "<img src=x onerror=alert(1)>", "1 OR 1=1", "abc", str(mine)]
    # Every press counts, whether it supports a report or is sent back with a problem.
    for n in range(10):
        value = hostile[n % len(hostile)]
        answer = resident.post(path, data={"report_id": value}, follow_redirects=False)
        assert answer.status_code == 422, (value, answer.text[:200])

    def state() -> list[tuple[object, ...]]:
        with limited.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, status, supporters, duplicate_of FROM reports ORDER BY id")
            )
            return [tuple(row) for row in rows]

    before = state()
    refused = resident.post(path, data={"report_id": str(near)}, follow_redirects=False)
    assert refused.status_code == 429
    seconds = refused.headers["Retry-After"]
    assert seconds.isdigit() and 1 <= int(seconds) <= 60
    assert refused.headers["content-type"].startswith("text/html")
    assert f"กรุณารอ {seconds} วินาที" in refused.text, refused.text
    assert state() == before, "a refused press changes nothing"
    english = resident.post(
        f"/r/{token}/support?lang=en", data={"report_id": str(near)}, follow_redirects=False
    )
    assert english.status_code == 429 and "Too many reports" in english.text
    assert state() == before
    # The same press from another address goes through: only this address was refused.
    joined = limited.client("203.0.113.82").post(
        path, data={"report_id": str(near)}, follow_redirects=False
    )
    assert joined.status_code == 303
    assert state() != before
