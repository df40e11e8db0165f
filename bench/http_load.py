"""HTTP load benchmark: POST /api/reports with 16 concurrent clients, and a zone's GeoJSON GET.

Run with ``.venv/bin/python bench/http_load.py`` (needs Debian's ``wrk``:
``apt-get install wrk``). It starts a throwaway PostgreSQL cluster with the service's
durable settings, runs ``issuemap serve`` on it (which loads the demo city), then drives
the service with wrk over loopback and prints:

* the sustained rate and p50/p99 latency of ``POST /api/reports`` (each answer is sent
  only after its report is routed and durably committed), and the number of reports the
  database holds afterwards;
* the rate and latency of ``GET /api/reports?zone=…`` (one GeoJSON page of a zone);
* the ceiling: the same intake statement run by pgbench straight on the database from as
  many connections as there are clients, each report its own durable transaction (what the
  database alone sustains, measured in the same run on the same data).

HTTP and pgbench take turns in ``--slices`` short runs, so a burst of other load on a shared
machine falls on both alike. The last line printed is one JSON object: ``http_intake_per_s``
(reports stored per second through HTTP, median slice), ``http_p99_ms`` (the worst slice's),
``db_intake_per_s`` (the ceiling, median slice), ``db_p99_ms`` (the worst slice's p99 of
pgbench's own transactions: what the disk alone leaves of the 50 ms) and ``ratio`` (median of
the slices' own ratios; the target is at least 0.35, with p99 under 50 ms).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import serving
from sqlalchemy import text
from sqlalchemy.engine import make_url

from geo.db.engine import make_engine, upgrade
from geo.reports.store import _create_one
from geo.settings import IntakeSettings, RoutingSettings

HERE = Path(__file__).resolve().parent


def _run_for(command: list[str], pattern: str) -> tuple[re.Match[str], str]:
    """Run a load tool; return the match of ``pattern`` in what it printed, and the output."""
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(pattern, out)
    if match is None:
        raise RuntimeError(f"{command[0]} printed no result:\n{out}")
    return match, out


def wrk(url: str, *, script: str, connections: int, seconds: int) -> dict[str, float]:
    """Run wrk and return its RESULT line as numbers."""
    match, out = _run_for(
        [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{seconds}s",
            *("--timeout", "5s", "-s", str(HERE / "wrk" / script), url),
        ],
        r"RESULT (.*)",
    )
    values = dict(pair.split("=") for pair in match.group(1).split())
    socket_errors = re.search(r"Socket errors: (.*)", out)
    result = {k: float(v) for k, v in values.items()}
    result["socket_errors"] = 0.0 if socket_errors is None else 1.0
    return result


PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")

DEMO_AREA = (99.945, 8.41, 99.975, 8.45)
"""(min lon, min lat, max lon, max lat) that ``post_report.lua`` draws its points from."""

_UNSENT = ("external_id", "reporter_name", "reporter_contact", "address", "media_url", "language")


def _intake_script(category: str, area: tuple[float, float, float, float]) -> str:
    """The intake statement with its duplicate lookup as a pgbench script for ``category``.

    The point is drawn uniformly from ``area``; every other bind is a constant, as a
    resident's report without name or contact sends it.
    """
    minx, miny, maxx, maxy = area
    point = "".join(
        f"\\set {name} {low:.9f} + random(0, 1000000) * {(high - low) / 1e6:.12f}\n"
        for name, low, high in (("lon", minx, maxx), ("lat", miny, maxy))
    )
    intake = IntakeSettings()
    constants = {
        "category": f"'{category}'",
        "description": "'load test report'",
        "created_at": "now()",
        "source": "'api'",
        "actor": "'public'",
        "location_source": "'coordinates'",
        "dup_radius": str(intake.duplicate_radius_m),
        "dup_days": str(intake.duplicate_window_days),
        "snap_m": str(RoutingSettings().snap_distance_m),
        **dict.fromkeys(
            (
                "external_id",
                "reporter_name",
                "reporter_contact",
                "address",
                "media_url",
                "language",
            ),
            "NULL",
        ),
    }
    statement = re.sub(
        r"(?<!:):([a-z_]+)",
        lambda m: constants.get(m.group(1), m.group(0)),
        _create_one(with_duplicates=True),
    )
    return point + statement.strip() + ";\n"


def database_ceiling(
    url: str,
    *,
    categories: list[str],
    clients: int,
    seconds: int,
    area: tuple[float, float, float, float] = DEMO_AREA,
    latencies_ms: list[float] | None = None,
) -> float:
    """Reports/s the database alone stores through the intake statement from ``clients``
    connections (pgbench, prepared statements, one durable transaction per report), with
    points drawn from ``area`` and ``categories`` taken in turn at random.

    ``latencies_ms`` gets each transaction's latency (from pgbench's log), the floor under
    HTTP intake's own latency on the same disk.
    """
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory() as scripts:
        files = []
        for category in categories:
            path = Path(scripts) / f"{category}.sql"
            path.write_text(_intake_script(category, area))
            files += ["-f", f"{path}@1"]
        pgbench = [str(PGBENCH), "-n", "-M", "prepared", f"-c{clients}", f"-j{min(2, clients)}"]
        if latencies_ms is not None:
            pgbench += ["-l", f"--log-prefix={Path(scripts) / 'latency'}"]
        match, _ = _run_for([*pgbench, f"-T{seconds}", *files, libpq], r"tps = ([0-9.]+)")
        if latencies_ms is not None:
            # One line per transaction: client, number, latency in microseconds, ...
            for log in Path(scripts).glob("latency.*"):
                for line in log.read_text().splitlines():
                    latencies_ms.append(int(line.split()[2]) / 1000)
    return float(match.group(1))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20, help="of each side, in all")
    parser.add_argument("--slices", type=int, default=4, help="turns each side takes")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run make setup (or apt-get install wrk)")

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
            figures = measure(base, url, args)
    print(json.dumps(figures))


def measure(base: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Drive the running service with wrk, then the database alone with pgbench; print what
    each sustained and return the figures of the JSON line."""
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
        zone = conn.execute(
            text("SELECT id, code FROM zones WHERE retired_at IS NULL ORDER BY code LIMIT 1")
        ).one()
        categories = list(
            conn.execute(text("SELECT code FROM categories WHERE active ORDER BY code")).scalars()
        )
    # Warm up every worker's pool and prepared statements.
    wrk(base, script="post_report.lua", connections=args.clients, seconds=3)
    # HTTP and the database alone take turns in short slices, so a burst of other load on
    # this shared machine falls on both alike; each slice pair gives one ratio.
    slice_s = max(1, args.seconds // args.slices)
    http_rates: list[float] = []
    db_rates: list[float] = []
    p99s: list[float] = []
    db_p99s: list[float] = []
    for n in range(1, args.slices + 1):
        post = wrk(base, script="post_report.lua", connections=args.clients, seconds=slice_s)
        seconds = post["duration_us"] / 1e6
        http_rates.append((post["requests"] - post["errors_status"]) / seconds)
        p99s.append(post["p99_us"] / 1000)
        latencies: list[float] = []
        db_rates.append(
            database_ceiling(
                url,
                categories=categories,
                clients=args.clients,
                seconds=slice_s,
                latencies_ms=latencies,
            )
        )
        db_p99s.append(percentile(latencies, 0.99))
        print(
            f"slice {n}: POST /api/reports, {args.clients} clients, {args.workers} workers: "
            f"{http_rates[-1]:,.0f} reports stored/s (non-2xx: {post['errors_status']:.0f}), "
            f"p50 {post['p50_us'] / 1000:.1f} ms, p99 {p99s[-1]:.1f} ms; the intake statement "
            f"on the database alone (pgbench, {args.clients} connections): {db_rates[-1]:,.0f}/s, "
            f"p99 {db_p99s[-1]:.1f} ms"
        )
    with engine.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
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
    http, ceiling = statistics.median(http_rates), statistics.median(db_rates)
    ratio = statistics.median(h / d for h, d in zip(http_rates, db_rates, strict=True))
    print(
        f"HTTP intake {http:,.0f} reports/s, the database alone {ceiling:,.0f}/s (medians); "
        f"HTTP is {ratio:.2f} of it (median of the slices' ratios); worst p99 {max(p99s):.1f} ms "
        f"(the database alone: {max(db_p99s):.1f} ms)"
    )
    return {
        "http_intake_per_s": round(http, 1),
        "http_p99_ms": round(max(p99s), 1),
        "db_intake_per_s": round(ceiling, 1),
        "db_p99_ms": round(max(db_p99s), 1),
        "ratio": round(ratio, 3),
    }


if __name__ == "__main__":
    main()
