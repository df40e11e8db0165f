"""HTTP load benchmark: POST /api/reports with 16 concurrent clients, and a zone's GeoJSON GET.

Run with ``.venv/bin/python bench/http_load.py`` (needs Debian's ``wrk``:
``apt-get install wrk``). It starts a throwaway PostgreSQL cluster with the service's
durable settings, runs ``issuemap serve`` on it (which loads the demo city), then drives
the service with wrk over loopback and prints:

* the sustained rate and p50/p99 latency of ``POST /api/reports`` (each answer is sent
  only after its report is routed and durably committed), and the number of reports the
  database holds afterwards;
* the rate and latency of ``GET /api/reports?zone=…`` (one GeoJSON page of a zone).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import serving
from sqlalchemy import text

from geo.db.engine import make_engine, upgrade

HERE = Path(__file__).resolve().parent


def wrk(url: str, *, script: str, connections: int, seconds: int) -> dict[str, float]:
    """Run wrk and return its RESULT line as numbers."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(HERE / "wrk" / script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"RESULT (.*)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    values = dict(pair.split("=") for pair in match.group(1).split())
    socket_errors = re.search(r"Socket errors: (.*)", out)
    result = {k: float(v) for k, v in values.items()}
    result["socket_errors"] = 0.0 if socket_errors is None else 1.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    with serving.cluster("issuemap-load-", for_serve=True) as cluster:
        cluster.ensure_database("load")
        url = cluster.url("load")
        upgrade(url)
        port = serving.free_port()
        # Every request comes from this one address: keep the limiter counting (its cost is
        # part of intake) with a limit the load never reaches.
        env = {
            "ISSUEMAP_DATABASE_URL": url,
            "ISSUEMAP_LOAD_DEMO": "true",
            "ISSUEMAP_RATE_LIMIT_ANONYMOUS": "1000000000/minute",
        }
        command = serving.serve_command(port, args.workers)
        with serving.running(command, port=port, env=env) as (base, _):
            measure(base, url, args)


def measure(base: str, url: str, args: argparse.Namespace) -> None:
    """Drive the running service with wrk and print what it sustained."""
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
        zone = conn.execute(
            text("SELECT id, code FROM zones WHERE retired_at IS NULL ORDER BY code LIMIT 1")
        ).one()
    # Warm up every worker's pool and prepared statements.
    wrk(base, script="post_report.lua", connections=args.clients, seconds=3)
    with engine.connect() as conn:
        warm = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
    post = wrk(base, script="post_report.lua", connections=args.clients, seconds=args.seconds)
    with engine.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
    seconds = post["duration_us"] / 1e6
    stored = after - warm
    print(
        f"POST /api/reports, {args.clients} clients, {args.workers} workers, "
        f"{seconds:.1f} s: {post['requests'] / seconds:,.0f} requests/s, "
        f"{stored / seconds:,.0f} reports stored/s; p50 {post['p50_us'] / 1000:.1f} ms, "
        f"p99 {post['p99_us'] / 1000:.1f} ms; non-2xx answers: {post['errors_status']:.0f}"
    )
    print(f"reports in the database: {before:,} (demo) -> {after:,}")
    get = wrk(
        f"{base}/api/reports?zone={zone.id}&limit=100",
        script="summary.lua",
        connections=args.clients,
        seconds=10,
    )
    seconds = get["duration_us"] / 1e6
    print(
        f"GET /api/reports?zone={zone.code} (GeoJSON, 100 per page), {args.clients} clients: "
        f"{get['requests'] / seconds:,.0f} requests/s; p50 {get['p50_us'] / 1000:.1f} ms, "
        f"p99 {get['p99_us'] / 1000:.1f} ms; non-2xx answers: {get['errors_status']:.0f}"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
