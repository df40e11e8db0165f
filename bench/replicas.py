"""Read replicas on this machine: how often a read right after a write misses it, and pages/s.

Run with ``.venv/bin/python bench/replicas.py`` (needs Debian's ``wrk``). It starts a
throwaway durable PostgreSQL cluster with the demo city and ``--reports`` more reports, and
a streaming replica of it (``pg_basebackup -R``), then measures:

* read after write: ``--writes`` rows each committed on the primary and read at once on the
  replica by id; how many reads missed the row, and the median time until the replica
  shows one (why a caller who just wrote reads the primary);
* public map pages (``/maps/public?view=list`` and ``/api/reports``) served by two uvicorn
  workers, driven by wrk, with ``ISSUEMAP_DATABASE_REPLICA_URLS`` pointing at the replica
  and without (every read on the primary), in alternating ``--slices`` so a burst of other
  load on a shared machine falls on both alike.

The last line printed is one JSON object: ``missed_share`` (reads right after a write that
missed it), ``visible_ms_median``, ``pages_per_s_primary`` (the ceiling: the same pages on
the primary alone, median slice), ``pages_per_s_replica`` and ``ratio`` (median of the
slices' own ratios). Primary and replica share this machine's cores, so a ratio near 1 is
expected here: a replica adds capacity only on a machine of its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import serving
from hotspots import add_reports
from http_load import wrk

from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine, upgrade
from geo.demo.city import load_demo_city

PAGES = ("/maps/public?view=list", "/api/reports?limit=100")


def read_after_write(primary: LocalCluster, replica: LocalCluster, writes: int) -> dict[str, float]:
    """Commit ``writes`` rows on the primary, each read at once on the replica by id."""
    with (
        psycopg.connect(
            host=primary.host, user="postgres", dbname="issuemap", autocommit=True
        ) as p,
        psycopg.connect(
            host=replica.host, user="postgres", dbname="issuemap", autocommit=True
        ) as r,
    ):
        p.execute("CREATE TABLE IF NOT EXISTS bench_replica (id bigint PRIMARY KEY)")
        deadline = time.monotonic() + 30
        while r.execute("SELECT to_regclass('bench_replica')").fetchone() == (None,):
            if time.monotonic() > deadline:
                raise RuntimeError("the replica never showed the benchmark's table")
            time.sleep(0.01)
        missed = 0
        visible_ms: list[float] = []
        for row_id in range(writes):
            p.execute("INSERT INTO bench_replica VALUES (%s)", (row_id,))
            committed = time.perf_counter()
            query = "SELECT 1 FROM bench_replica WHERE id = %s"
            if r.execute(query, (row_id,)).fetchone() is None:
                missed += 1
                while r.execute(query, (row_id,)).fetchone() is None:
                    pass
            visible_ms.append((time.perf_counter() - committed) * 1000)
        p.execute("DROP TABLE bench_replica")
    return {
        "missed_share": missed / writes,
        "visible_ms_median": statistics.median(visible_ms),
    }


def pages_per_s(base: str, *, seconds: int, connections: int) -> float:
    """Pages per second wrk gets from ``base`` over ``PAGES`` (each page its share)."""
    rates = []
    for page in PAGES:
        got = wrk(base + page, script="summary.lua", connections=connections, seconds=seconds)
        if got["errors_status"] or got["socket_errors"]:
            raise RuntimeError(f"{page} answered errors under load: {got}")
        rates.append(got["requests"] / (got["duration_us"] / 1e6))
    return statistics.mean(rates)


def main() -> None:
    """Build the city and its replica, measure, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--writes", type=int, default=1_000)
    parser.add_argument("--slices", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()

    with serving.cluster("issuemap-bench-primary-") as primary:
        primary.ensure_database("issuemap")
        url = primary.url("issuemap")
        upgrade(url)
        engine = make_engine(url, pool_size=2)
        load_demo_city(engine, now=datetime.now(UTC) - timedelta(days=1))
        add_reports(engine, args.reports)
        engine.dispose()
        replica = LocalCluster(Path(tempfile.mkdtemp(prefix="issuemap-bench-replica-")))
        try:
            replica.replicate(primary)
            replica.start()
            figures: dict[str, float] = read_after_write(primary, replica, args.writes)
            print(f"read after write: {figures}", file=sys.stderr)
            plain = {"ISSUEMAP_DATABASE_URL": url, "ISSUEMAP_LOAD_DEMO": "false"}
            replicated = plain | {"ISSUEMAP_DATABASE_REPLICA_URLS": replica.url("issuemap")}
            on_primary: list[float] = []
            on_replica: list[float] = []
            for _ in range(args.slices):
                for env, into in ((plain, on_primary), (replicated, on_replica)):
                    port = serving.free_port()
                    with serving.running(
                        serving.uvicorn_command(port, 2), port=port, env=env, cwd=serving.ROOT
                    ) as (base, _process):
                        pages_per_s(base, seconds=2, connections=args.connections)  # warm up
                        into.append(
                            pages_per_s(base, seconds=args.seconds, connections=args.connections)
                        )
                print(f"pages/s primary {on_primary}, replica {on_replica}", file=sys.stderr)
        finally:
            replica.destroy()
    figures |= {
        "pages_per_s_primary": statistics.median(on_primary),
        "pages_per_s_replica": statistics.median(on_replica),
        "ratio": statistics.median(r / p for r, p in zip(on_replica, on_primary, strict=True)),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
