"""Export pressure: sixty slow CSV downloads at once, and how /healthz and intake fare.

Run with ``.venv/bin/python bench/export_pressure.py``. It starts a throwaway PostgreSQL
cluster with the demo city, runs the app of this checkout under uvicorn on it, adds
reports with long descriptions until one CSV export is far larger than any socket buffer,
and then:

1. measures ``GET /healthz`` and ``POST /api/reports`` one after the other, unloaded;
2. starts sixty attackers that each ask for ``GET /api/reports?format=csv`` through a tiny
   receive buffer; half read a kilobyte every 200 ms, half never read at all; an attacker
   refused (503) asks again 200 ms later;
3. measures ``/healthz`` and intake again, the same way, while the attack goes on.

It prints p50, p99 and max latency of both, in milliseconds and as a ratio to the ceiling
of 1 s that issue 9 sets (1.00 = at the ceiling), the statuses they got, and what the
attackers were answered.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections import Counter
from datetime import UTC
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import serving
from sqlalchemy import text

from geo.db.engine import make_engine, upgrade
from geo.demo.city import load_demo_city
from geo.reports.store import insert_reports
from geo.settings import RoutingSettings

ROOT = Path(__file__).resolve().parent.parent
CEILING_S = 1.0
CSV_PATH = "/api/reports?format=csv"
REPORT = {"category": "road", "description": "bench", "lat": 0.0, "lon": 0.0}


def top_up(url: str, count: int) -> tuple[float, float, str]:
    """Add ``count`` long reports at the demo city's own report locations.

    Returns one such location and its category code, for the intake probe.
    """
    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        seeds = pd.DataFrame(
            conn.execute(
                text(
                    "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, category_id FROM reports "
                    "WHERE ward_id IS NOT NULL ORDER BY id LIMIT 500"
                )
            ).all(),
            columns=["lon", "lat", "category_id"],
        )
        code = conn.execute(
            text("SELECT code FROM categories WHERE id = :id"),
            {"id": int(seeds.category_id.iloc[0])},
        ).scalar_one()
        picks = np.arange(count) % len(seeds)
        rows = seeds.iloc[picks].reset_index(drop=True)
        rows["created_at"] = pd.date_range("2026-01-01", periods=count, freq="s", tz=UTC)
        rows["description"] = [f"{'ฝาท่อระบายน้ำแตก ' * 60}#{i}" for i in range(count)]
        insert_reports(conn, rows, settings=RoutingSettings())
    engine.dispose()
    return float(seeds.lon.iloc[0]), float(seeds.lat.iloc[0]), str(code)


def probe(base: str, seconds: float, report: dict[str, object]) -> dict[str, list[float]]:
    """Time /healthz and intake alternately for ``seconds``; statuses go in the result too."""
    timings: dict[str, list[float]] = {"health": [], "intake": []}
    statuses: Counter[str] = Counter()
    with httpx.Client(base_url=base, timeout=60.0) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for name in ("health", "intake"):
                start = time.perf_counter()
                status: int | str
                try:
                    if name == "health":
                        status = client.get("/healthz").status_code
                    else:
                        status = client.post("/api/reports", json=report).status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                timings[name].append(time.perf_counter() - start)
                statuses[f"{name} {status}"] += 1
            time.sleep(0.05)
    print("   answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    return timings


def attacker(port: int, *, stall: bool, stop: threading.Event, seen: Counter[str]) -> None:
    """Ask for the CSV export again and again, reading it slowly or not at all."""
    while not stop.is_set():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(60)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET {CSV_PATH} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = sock.recv(4096)
            status = head.split(b" ", 2)[1].decode() if head else "closed"
            seen[status] += 1
            if status != "200":
                stop.wait(0.2)
                continue
            while not stop.is_set():
                if stall:
                    stop.wait(0.2)
                    continue
                if not sock.recv(1024):
                    break
                stop.wait(0.2)
        except OSError as error:
            seen[type(error).__name__] += 1
            stop.wait(0.2)
        finally:
            sock.close()


def summary(name: str, timings: list[float]) -> str:
    values = np.array(timings)
    p50, p99 = np.percentile(values, [50, 99])
    worst = values.max()
    return (
        f"   {name:<7} n={len(values):>4}  p50 {p50 * 1000:7.1f} ms ({p50 / CEILING_S:.3f})  "
        f"p99 {p99 * 1000:7.1f} ms ({p99 / CEILING_S:.3f})  "
        f"max {worst * 1000:7.1f} ms ({worst / CEILING_S:.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attackers", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    with serving.cluster("issuemap-exports-") as cluster:
        cluster.ensure_database("exports")
        url = cluster.url("exports")
        upgrade(url)
        engine = make_engine(url, pool_size=1)
        load_demo_city(engine)
        engine.dispose()
        port = serving.free_port()
        # The intake probe files from one address all along: a limit it never reaches.
        env = {
            "ISSUEMAP_DATABASE_URL": url,
            "ISSUEMAP_RATE_LIMIT_ANONYMOUS": "1000000000/minute",
        }
        command = serving.uvicorn_command(port, args.workers)
        with serving.running(command, port=port, env=env, cwd=serving.ROOT) as (base, _):
            measure(base, url, port, args)


def measure(base: str, url: str, port: int, args: argparse.Namespace) -> None:
    """Add the reports, then probe intake and health while the attackers export."""
    lon, lat, category = top_up(url, args.reports)
    report = REPORT | {"lon": lon, "lat": lat, "category": category}
    size = len(httpx.get(f"{base}{CSV_PATH}", timeout=300).content)
    print(
        f"{args.reports:,} long reports added; one CSV export is {size / 1e6:.0f} MB; "
        f"{args.workers} worker(s); ceiling {CEILING_S:.0f} s (ratios are to it)"
    )

    print(f"unloaded, {args.seconds / 3:.0f} s:")
    quiet = probe(base, args.seconds / 3, report)
    for name, values in quiet.items():
        print(summary(name, values))

    stop = threading.Event()
    seen: Counter[str] = Counter()
    threads = [
        threading.Thread(
            target=attacker,
            args=(port,),
            kwargs={"stall": i % 2 == 0, "stop": stop, "seen": seen},
        )
        for i in range(args.attackers)
    ]
    for thread in threads:
        thread.start()
    time.sleep(2)  # let every attacker be answered once
    print(f"with {args.attackers} slow or stalled CSV downloads, {args.seconds:.0f} s:")
    loaded = probe(base, args.seconds, report)
    stop.set()
    for thread in threads:
        thread.join(90)
    for name, values in loaded.items():
        print(summary(name, values))
    print("   export answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(seen.items())))


if __name__ == "__main__":
    main()
