"""`issuemap serve` end to end: its own PostGIS starts with the service and stops with it."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from geo.localdb import LocalCluster


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited early"
        try:
            return httpx.get(url, timeout=2.0)
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_serve_runs_its_own_postgis_and_stops_it_on_shutdown() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="issuemap-serve-"))
    cluster = LocalCluster(data_dir)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ISSUEMAP_DATABASE_URL"}
    env |= {"ISSUEMAP_DATA_DIR": str(data_dir), "ISSUEMAP_LOAD_DEMO": "true"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "issuemap"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        health = wait_for(f"http://127.0.0.1:{port}/healthz", process)
        assert health.status_code == 200
        assert cluster.is_running()
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30.0)
        assert page.status_code == 200
        assert "W01" in page.text, "the demo city's wards are on the map"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert not cluster.is_running(), "the local cluster must stop with the service"
        output = process.stdout.read().decode() if process.stdout else ""
        assert "demo city" in output
    finally:
        if process.poll() is None:
            process.kill()
        cluster.destroy()
