"""What a killed PostgreSQL costs the service: how long requests are refused, and how fast.

Run with ``.venv/bin/python bench/postgres_restart.py`` (as root, as the service is run in
production, or as any user). It runs ``issuemap serve`` on its own throwaway cluster (which
loads the demo city), measures ``GET /api/reports?limit=1`` while the database is up, then
SIGKILLs the postmaster and keeps asking until the supervisor has restarted it. It prints:

* the outage, from the kill to the first 200 again (the supervisor's look, crash recovery);
* the latency of the 503s answered meanwhile, as a ratio of the same request's median
  latency with the database up (measured in this run): a refusal should cost no more than
  an answer.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import serving

from geo.db.cluster import LocalCluster

URL = "/api/reports?limit=1"


def timed_get(client: httpx.Client, url: str) -> tuple[int, float]:
    started = time.perf_counter()
    status = client.get(url).status_code
    return status, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--healthy-requests", type=int, default=200)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="issuemap-restart-"))
    cluster = LocalCluster(data_dir)
    port = serving.free_port()
    env = {k: v for k, v in os.environ.items() if k != "ISSUEMAP_DATABASE_URL"}
    env |= {"ISSUEMAP_DATA_DIR": str(data_dir), "ISSUEMAP_LOAD_DEMO": "true"}
    log = data_dir.parent / f"{data_dir.name}.log"
    with log.open("wb") as sink:
        service = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "issuemap"),
                *("serve", "--port", str(port), "--workers", str(args.workers)),
                "--no-access-log",
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
            deadline = time.monotonic() + 180
            while True:
                assert service.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the service did not start"
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
            healthy = []
            for _ in range(args.healthy_requests):
                status, seconds = timed_get(client, URL)
                assert status == 200, status
                healthy.append(seconds)

            pid = cluster.postmaster_pid()
            assert pid is not None
            killed_at = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            refused: list[float] = []
            others: dict[int, int] = {}
            while True:
                status, seconds = timed_get(client, URL)
                if status == 200 and refused:
                    break
                if status == 503:
                    refused.append(seconds)
                elif status != 200:
                    others[status] = others.get(status, 0) + 1
                assert time.perf_counter() - killed_at < 300, "no restart within 5 minutes"
            outage = time.perf_counter() - killed_at
        # The restart is logged once pg_ctl has done waiting, which may be after the first 200.
        logged = time.monotonic() + 60
        while "restarted PostgreSQL" not in log.read_text() and time.monotonic() < logged:
            time.sleep(0.2)
        output = log.read_text(errors="replace")
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
        cluster.destroy()
        log.unlink(missing_ok=True)

    base = statistics.median(healthy)
    print(f"GET {URL} with the database up: median {base * 1000:.1f} ms ({len(healthy)} requests)")
    print(f"postmaster SIGKILLed: requests refused for {outage:.2f} s, then answered again")
    print(
        f"{len(refused)} answers 503 meanwhile: median {statistics.median(refused) * 1000:.1f} ms "
        f"= {statistics.median(refused) / base:.2f} x the healthy median, "
        f"max {max(refused) * 1000:.1f} ms = {max(refused) / base:.2f} x"
    )
    print(f"other statuses meanwhile: {others or 'none'}")
    print(f"restart logged: {'restarted PostgreSQL' in output}")


if __name__ == "__main__":
    main()
