"""Exports cannot exhaust the database pool: attacks on a real server over real sockets.

Slow and stalled downloads were enough to take a whole city offline: each CSV export held
two pooled connections, idle in transaction, for as long as its client took to read it.
These tests run the service under uvicorn on 127.0.0.1 with a small pool, fill the tiny
city with reports whose CSV is far larger than any socket buffer, and then behave as an
attacker would: sixty downloads that never read, downloads cut off by the client, a
database connection killed halfway through a download, a pool with no connection left.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from api.deps import app_state
from geo.reports.store import insert_reports
from geo.settings import DatabaseSettings, GeocoderSettings, RoutingSettings
from tests.fixtures import TINY_GAZETTEER, Keys, TinyCity, load_tiny_city, make_keys

EXPORT_PLACES = 3
ATTACKERS = 60
REPORTS = 12_000  # more than two of the stream's 5,000-row batches
# About 3 KB of UTF-8 per report: 36 MB of CSV, which no socket buffer holds.
DESCRIPTION = "ฝาท่อระบายน้ำแตก " * 60
CLIENT_TIMEOUT_S = 60.0  # generous: the point is that an answer comes, not how soon
CSV_PATH = "/api/reports?format=csv"
REPORT = {"category": "road", "description": "หลุม", "lat": 8.405, "lon": 100.005}


@dataclass
class Served:
    """A running service: its base URL, port, the app and the keys of the tiny city."""

    base: str
    port: int
    app: FastAPI
    keys: Keys


def fill(engine: Engine, city: TinyCity, count: int = REPORTS) -> None:
    rows = pd.DataFrame(
        {
            "lon": [100.001 + (i % 180) * 1e-4 for i in range(count)],
            "lat": 8.405,
            "category_id": city.categories["road"],
            "created_at": pd.date_range("2026-01-01", periods=count, freq="min", tz=UTC),
            "description": [f"{DESCRIPTION}#{i}" for i in range(count)],
        }
    )
    with engine.begin() as conn:
        assert insert_reports(conn, rows, settings=RoutingSettings()).inserted == count


def settings_for(db_url: str, tmp_path: Path, **database: Any) -> AppSettings:
    gazetteer = tmp_path / "gazetteer.csv"
    gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
    return AppSettings(
        database=DatabaseSettings(database_url=db_url, **database),
        geocoder=GeocoderSettings(gazetteer_path=gazetteer),
    )


@contextmanager
def uvicorn_on_loopback(app: FastAPI) -> Iterator[int]:
    """Serve ``app`` with uvicorn in a thread on a free loopback port; yield the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="critical", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert eventually(lambda: server.started or not thread.is_alive()), "no start"
        assert server.started, "the service did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture
def served(
    request: pytest.FixtureRequest, db_url: str, engine: Engine, tmp_path: Path
) -> Iterator[Served]:
    """The service under uvicorn over the tiny city and its many long reports.

    A small shared pool, so that exhausting it would show; other database settings come
    from indirect parametrisation.
    """
    database: dict[str, Any] = {"pool_size": 2, "export_max_concurrent": EXPORT_PLACES}
    database |= getattr(request, "param", {})
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        keys = make_keys(conn)
    fill(engine, city)
    app = create_app(settings_for(db_url, tmp_path, **database))
    with uvicorn_on_loopback(app) as port:
        yield Served(f"http://127.0.0.1:{port}", port, app, keys)


def eventually(check: Callable[[], bool], within_s: float = 30.0) -> bool:
    """Whether ``check`` comes true within a generous time (polled, never a timing claim)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


IN_TRANSACTION = (
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend' AND xact_start IS NOT NULL"
)


def held_in_transaction(engine: Engine) -> int:
    """Connections to the test database inside a transaction: held by a running export."""
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) {IN_TRANSACTION}")).scalar_one())


@dataclass
class RawAnswer:
    """An answer's head read off a raw socket that is then left unread (a stalled client)."""

    sock: socket.socket
    status: int
    headers: dict[str, str]
    rest: bytes

    def body(self) -> bytes:
        """The whole body of a small answer sent with a Content-Length."""
        data = self.rest
        while len(data) < int(self.headers["content-length"]):
            data += self.sock.recv(65536)
        return data


def send_request(port: int, path: str) -> socket.socket:
    """A GET sent from a client with a tiny receive buffer, which will not read it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(CLIENT_TIMEOUT_S)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def read_head(sock: socket.socket) -> RawAnswer:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(4096)
        assert part, "the server closed the connection before answering"
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines)}
    return RawAnswer(sock, int(status_line.split()[1]), headers, rest)


def reset(sock: socket.socket) -> None:
    """Drop the connection the way a client that gives up does (RST, nothing more read)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_to_end(sock: socket.socket) -> bytes:
    data = bytearray()
    while part := sock.recv(1 << 20):
        data += part
    return bytes(data)


def test_sixty_stalled_exports_leave_health_and_intake_answering(
    served: Served, engine: Engine
) -> None:
    socks = [send_request(served.port, CSV_PATH) for _ in range(ATTACKERS)]
    try:
        answers = [read_head(sock) for sock in socks]
        running = [a for a in answers if a.status == 200]
        refused = [a for a in answers if a.status != 200]
        # Exactly the allowed number run; every other one is refused at once, readably.
        assert len(running) == EXPORT_PLACES
        assert len(refused) == ATTACKERS - EXPORT_PLACES
        for answer in refused:
            assert answer.status == 503
            assert int(answer.headers["retry-after"]) > 0
            body = json.loads(answer.body())
            assert body["error"] == "ExportsBusy" and "try again" in body["detail"]
        # Each running export holds one connection, no more.
        assert eventually(lambda: held_in_transaction(engine) == EXPORT_PLACES)

        with httpx.Client(base_url=served.base, timeout=CLIENT_TIMEOUT_S) as client:
            health = client.get("/healthz")
            assert health.status_code == 200, health.text
            intake = client.post("/api/reports", json=REPORT)
            assert intake.status_code == 201, intake.text
            open311 = client.post(
                "/open311/v2/requests.json",
                data={
                    "api_key": served.keys.app,
                    "service_code": "road",
                    "lat": "8.405",
                    "long": "100.005",
                    "description": "หลุม",
                },
            )
            assert open311.status_code == 200, open311.text
            page = client.get("/api/reports", params={"limit": 1})
            assert page.status_code == 200, page.text
    finally:
        for sock in socks:
            reset(sock)
    assert eventually(lambda: held_in_transaction(engine) == 0), "exports were not released"
    # Places freed by the clients that left are taken again.
    with (
        httpx.Client(base_url=served.base, timeout=CLIENT_TIMEOUT_S) as client,
        client.stream("GET", CSV_PATH) as again,
    ):
        assert again.status_code == 200


def test_an_aborted_download_frees_its_connection_and_its_place(
    served: Served, engine: Engine
) -> None:
    first = [read_head(send_request(served.port, CSV_PATH)) for _ in range(EXPORT_PLACES)]
    assert [a.status for a in first] == [200] * EXPORT_PLACES
    assert eventually(lambda: held_in_transaction(engine) == EXPORT_PLACES)
    refused = read_head(send_request(served.port, CSV_PATH))
    assert refused.status == 503
    reset(refused.sock)

    reset(first[0].sock)
    assert eventually(lambda: held_in_transaction(engine) == EXPORT_PLACES - 1), (
        "the aborted download still holds its connection"
    )
    taken_again = read_head(send_request(served.port, CSV_PATH))
    assert taken_again.status == 200, "the aborted download still holds its place"
    for answer in [*first[1:], taken_again]:
        reset(answer.sock)
    assert eventually(lambda: held_in_transaction(engine) == 0)


@pytest.mark.parametrize("served", [{"export_max_seconds": 2}], indirect=True)
def test_a_client_that_stops_reading_is_cut_off_and_its_connection_freed(
    served: Served, engine: Engine
) -> None:
    stalled = read_head(send_request(served.port, CSV_PATH))
    assert stalled.status == 200
    assert stalled.headers["transfer-encoding"] == "chunked"
    assert eventually(lambda: held_in_transaction(engine) == 1)
    # The client never reads; the export is ended for it, and its connection freed.
    assert eventually(lambda: held_in_transaction(engine) == 0), "a stalled export is held"
    received = stalled.rest + read_to_end(stalled.sock)
    stalled.sock.close()
    assert not received.endswith(b"0\r\n\r\n"), "a cut export must not look finished"
    assert received.count(f"{DESCRIPTION}#".encode()) < REPORTS


def test_a_download_that_fails_midway_does_not_look_complete(
    served: Served, engine: Engine, db_url: str
) -> None:
    received = bytearray()
    with (
        httpx.Client(base_url=served.base, timeout=CLIENT_TIMEOUT_S) as client,
        client.stream("GET", CSV_PATH) as answer,
    ):
        assert answer.status_code == 200
        chunks = answer.iter_bytes()
        received += next(chunks)
        # Halfway through, the database drops the export's connection.
        assert eventually(lambda: held_in_transaction(engine) >= 1)
        with engine.connect() as conn:
            killed = conn.execute(
                text(f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) {IN_TRANSACTION}")
            ).scalar_one()
        assert killed >= 1
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            for chunk in chunks:
                received += chunk
    lines = bytes(received).decode("utf-8", errors="ignore").count("\n")
    assert 0 < lines < REPORTS + 1, "the client got part of the file and knows it"
    # The service goes on: the next export is whole.
    with httpx.Client(base_url=served.base, timeout=CLIENT_TIMEOUT_S) as client:
        whole = client.get(CSV_PATH)
    assert whole.status_code == 200
    assert whole.text.count(f"{DESCRIPTION}#") == REPORTS


def test_a_pool_with_no_free_connection_is_a_503_not_a_500(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        load_tiny_city(conn)
    settings = settings_for(db_url, tmp_path, pool_size=1, pool_timeout_s=0.5)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        pool = app_state(client.app).engine
        # pool_size 1 and as many in overflow: two connections, both taken.
        with pool.connect(), pool.connect():
            answers = {
                "health": client.get("/healthz"),
                "intake": client.post("/api/reports", json=REPORT),
                "page": client.get("/api/reports"),
            }
            for name, answer in answers.items():
                assert answer.status_code == 503, (name, answer.text)
                assert int(answer.headers["Retry-After"]) > 0
                assert "try again" in answer.json()["detail"], name
            open311 = client.get("/open311/v2/requests.json")
            assert open311.status_code == 503
            assert open311.headers["Retry-After"]
            assert "try again" in open311.json()[0]["description"]
        assert client.get("/healthz").status_code == 200
