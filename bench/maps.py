"""Map page benchmark: build time and HTML size of every map page as reports pile up.

Run with ``.venv/bin/python bench/maps.py``. It starts a throwaway PostgreSQL cluster, loads
the demo city, then grows the reports table set-based (``geo.reports.store.insert_reports``) to
10,000, 100,000 and 1,000,000 reports spread over the city (most resolved, a realistic
share open, some overdue), and at each size requests every map page through the app:

* ``/`` (city overview) and ``/maps/public`` (city-wide pages, budget 600 KB);
* ``/maps/zone?zone={code}`` for the busiest zone (budget 300 KB);
* ``/maps/wards`` for each measure.

It prints, per page, the median build time over ``--rounds`` requests and the HTML size, and,
at the first size, the bytes a first visit to ``/maps/public`` downloads: the page and every
script, stylesheet and stylesheet image it names, as served to a browser that accepts brotli
and gzip (target: under 150 KB).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np
import pandas as pd

# The bench is an HTTP client of the whole app, as a browser is: routes, queries, rendering.
from fastapi.testclient import TestClient  # noqa: TID251
from sqlalchemy import text

from api.app import AppSettings, create_app
from api.deps import replace_app_state
from geo.access.keys import create_api_key
from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine, upgrade
from geo.db.schema import OPEN_STATUSES
from geo.demo.city import load_demo_city
from geo.reports.store import insert_reports
from geo.settings import DatabaseSettings, MapSettings, RoutingSettings

NOW = datetime(2026, 11, 1, tzinfo=UTC)
BUDGET = {"zone": 300_000, "city": 600_000}
FIRST_VISIT_TARGET = 150_000
ASSET = re.compile(r"<(?:script|link)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"")
CSS_URL = re.compile(r"url\(['\"]?([^'\")]+)['\"]?\)")


def random_reports(
    rng: np.random.Generator, n: int, *, points: np.ndarray, categories: list[int]
) -> pd.DataFrame:
    """``n`` reports near the demo city's own reports (so they fall inside wards)."""
    picks = points[rng.integers(0, len(points), n)]
    jitter = rng.normal(0, 0.002, (n, 2))
    age_h = rng.exponential(24 * 60, n)
    created = pd.to_datetime(NOW) - pd.to_timedelta(age_h, unit="h")
    open_share = rng.random(n) < 0.12
    status = np.where(open_share, rng.choice(list(OPEN_STATUSES), n), "closed")
    resolved = np.where(
        open_share,
        pd.NaT,
        created + pd.to_timedelta(rng.exponential(40, n), unit="h"),
    )
    return pd.DataFrame(
        {
            "lon": picks[:, 0] + jitter[:, 0],
            "lat": picks[:, 1] + jitter[:, 1],
            "category_id": rng.choice(categories, n),
            "created_at": created,
            "status": status,
            "resolved_at": pd.to_datetime(resolved, utc=True),
            "description": "Generated for the map benchmark; " + "x" * 60,
            "reporter_contact": "+66 80 000 0000",
        }
    )


def timed(
    client: TestClient, url: str, *, headers: dict[str, str], rounds: int
) -> tuple[float, int]:
    times = []
    size = 0
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(url, headers=headers)
        times.append(time.perf_counter() - started)
        answer.raise_for_status()
        size = len(answer.content)
    return statistics.median(times), size


def first_visit(client: TestClient, url: str) -> tuple[int, int, int]:
    """(page bytes, asset bytes, assets): what a browser with an empty cache downloads.

    Bytes on the wire, compressed as served (``num_bytes_downloaded``); a stylesheet's
    images count too, though a page may not show them all.
    """
    accept = {"Accept-Encoding": "br, gzip"}
    page = client.get(url, headers=accept)
    page.raise_for_status()
    todo = [urljoin(url, a) for a in ASSET.findall(page.text)]
    seen: set[str] = set()
    total = 0
    while todo:
        asset = todo.pop()
        if asset in seen or urlsplit(asset).netloc not in ("", "testserver"):
            continue
        seen.add(asset)
        answer = client.get(asset, headers=accept)
        answer.raise_for_status()
        total += answer.num_bytes_downloaded
        if urlsplit(asset).path.endswith(".css"):
            todo += [urljoin(asset, u) for u in CSS_URL.findall(answer.text) if "data:" not in u]
    return page.num_bytes_downloaded, total, len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="issuemap-bench-")), durable=False)
    cluster.start()
    try:
        cluster.ensure_database("bench")
        url = cluster.url("bench")
        upgrade(url)
        engine = make_engine(url, pool_size=4)
        print(load_demo_city(engine, now=NOW))
        with engine.begin() as conn:
            categories = list(conn.execute(text("SELECT id FROM categories")).scalars())
            points = np.array(
                conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM reports")).all(), float
            )
            admin = create_api_key(conn, name="bench", role="admin").secret
            planner = create_api_key(conn, name="bench planner", role="planner").secret
        rng = np.random.default_rng(11)
        app = create_app(AppSettings(database=DatabaseSettings(database_url=url)))
        with TestClient(app) as client:
            # The default OSM tiles: the page carries the tile URL, as it would in service.
            replace_app_state(app, maps=MapSettings())
            for target in sizes:
                with engine.begin() as conn:
                    have = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
                    started = time.perf_counter()
                    while have < target:
                        chunk = min(target - have, 200_000)
                        rows = random_reports(rng, chunk, points=points, categories=categories)
                        done = insert_reports(conn, rows, settings=RoutingSettings())
                        have += done.inserted
                        if done.inserted == 0:
                            break
                    loaded = time.perf_counter() - started
                with engine.begin() as conn:
                    conn.execute(text("ANALYZE reports"))
                    zone, open_in_zone = conn.execute(
                        text(
                            "SELECT z.code, count(*) FROM reports AS r "
                            "JOIN zones AS z ON z.id = r.zone_id "
                            "WHERE r.status = ANY(:open) GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
                        ),
                        {"open": list(OPEN_STATUSES)},
                    ).one()
                    total_open = conn.execute(
                        text("SELECT count(*) FROM reports WHERE status = ANY(:open)"),
                        {"open": list(OPEN_STATUSES)},
                    ).scalar_one()
                print(
                    f"\n{have:,} reports ({total_open:,} open; busiest zone {zone} has "
                    f"{open_in_zone:,} open), loaded in {loaded:.1f} s"
                )
                pages = [
                    ("city", "/", {}),
                    ("city", "/maps/public", {}),
                    ("zone", f"/maps/zone?zone={zone}", {"X-API-Key": admin}),
                    ("city", "/maps/wards?measure=count", {"X-API-Key": planner}),
                    ("city", "/maps/wards?measure=sla", {"X-API-Key": planner}),
                    ("city", "/maps/wards?measure=median_hours", {"X-API-Key": planner}),
                ]
                if target == sizes[0]:
                    html, assets, count = first_visit(client, "/maps/public")
                    total = html + assets
                    verdict = "ok" if total < FIRST_VISIT_TARGET else "OVER TARGET"
                    print(
                        f"  first visit to /maps/public: {total / 1000:.1f} KB (HTML "
                        f"{html / 1000:.1f} KB + {count} assets {assets / 1000:.1f} KB; "
                        f"target {FIRST_VISIT_TARGET // 1000} KB: {verdict})"
                    )
                for kind, page, headers in pages:
                    seconds, size = timed(client, page, headers=headers, rounds=args.rounds)
                    verdict = "ok" if size <= BUDGET[kind] else "OVER BUDGET"
                    print(
                        f"  {page:<34} {seconds * 1000:8.0f} ms {size / 1000:8.1f} KB "
                        f"(budget {BUDGET[kind] // 1000} KB: {verdict})"
                    )
        engine.dispose()
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
