"""Single durable intake against history: reports/s at 10k reports and at N, beside a ceiling.

Run with ``.venv/bin/python bench/intake_history.py [--reports N]`` (default 1,000,000). It
starts a throwaway PostgreSQL cluster with the service's durable settings and builds the demo
city twice, in two databases: one holding 10,000 reports and one holding N, the extra reports
stored through the import path over three years with a service's mix of statuses (most of
them closed). Then, alternating between the two so that other load on the machine falls on
both alike, it times:

* intake: ``file_report`` as the API calls it for a report without photos (a pool checkout,
  routing, the duplicate lookup with the service's radius and window, one durable commit);
* the ceiling: one prepared ``INSERT`` of a report row, one durable commit each, on the
  database holding N (what a report costs the database with no routing and no lookup).

``--explain`` prints the duplicate lookup's plan on both databases. The last line printed
is one JSON object: ``single_intake_per_s_small``, ``single_intake_per_s_full``, ``ratio``
(full over small; the target is at least 0.9), ``prepared_insert_per_s``,
``full_over_ceiling``, and ``statement_ratio``: full over small for the same intake without
waiting for the WAL flush (synchronous_commit off), the statement's own cost apart from a
disk other work shares (the ratios are medians of each round's own ratio); and
``wal_bytes_per_intake_small`` and ``_full``: the WAL each durable intake writes, which grows
with history when its index pages are first written after a checkpoint (full-page images).

``single_intake_rate`` and ``prepared_insert_rate`` take any migrated city's engine and
points, so other benchmarks (``national.py``) time intake on their own cities with them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import serving
import shapely
from psycopg import RawCursor
from sqlalchemy import Engine, create_engine, text

from geo.access.policy import Principal
from geo.city.geocoding import GeocodeResult
from geo.db.engine import make_engine, normalise_url, upgrade
from geo.demo.city import DEMO_BOUNDS, demo_city_outline, load_demo_city
from geo.errors import OutsideServiceAreaError
from geo.reports.intake import Submission, file_report
from geo.reports.store import insert_reports
from geo.settings import IntakeSettings, RoutingSettings

SMALL = 10_000
"""Reports in the small city (``single_intake_per_s_small``)."""

Point = tuple[float, float]
"""(lon, lat)."""


class _NoGeocoder:
    """Every timed report carries its coordinates, so no address is ever looked up."""

    def geocode(self, address: str) -> GeocodeResult | None:
        return None


def single_intake_rate(
    engine: Engine,
    *,
    points: Sequence[Point],
    categories: Sequence[str],
    intake: IntakeSettings | None = None,
    routing: RoutingSettings | None = None,
) -> float:
    """Reports/s of single durable intake, one report after another, over ``points``.

    Each report is filed as ``POST /api/reports`` files it (``file_report``: a pool checkout,
    one statement that routes, looks up duplicates and stores, one durable commit). Points
    outside the service area are refused and not counted.
    """
    intake = intake or IntakeSettings()
    routing = routing or RoutingSettings()
    public = Principal(role="public")
    geocoder = _NoGeocoder()
    done = 0
    started = time.perf_counter()
    for i, (lon, lat) in enumerate(points):
        submission = Submission(
            category=categories[i % len(categories)],
            description="benchmark",
            lat=lat,
            lon=lon,
        )
        try:
            file_report(
                engine,
                submission,
                principal=public,
                routing=routing,
                intake=intake,
                geocoder=geocoder,
                answer=_answer,
            )
        except OutsideServiceAreaError:
            continue
        done += 1
    return done / (time.perf_counter() - started)


def _answer(result: Any) -> dict[str, Any]:
    return {"id": result.report.id}


_PREPARED_INSERT = (
    "INSERT INTO reports (category_id, description, status, created_at, updated_at, due_at, "
    "source, geom) VALUES ($1, 'ceiling', 'closed', $2, $2, $2, 'ceiling', "
    "ST_SetSRID(ST_MakePoint($3, $4), 4326))"
)


def prepared_insert_rate(engine: Engine, *, points: Sequence[Point], category_id: int) -> float:
    """Rows/s of one prepared ``INSERT`` of a report row per durable commit: the ceiling.

    The rows are stored closed (so they never count as anyone's duplicate) with source
    ``ceiling``.
    """
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.autocommit = True
        cursor = RawCursor(driver)
        started = time.perf_counter()
        for lon, lat in points:
            cursor.execute(
                _PREPARED_INSERT, (category_id, datetime.now(UTC), lon, lat), prepare=True
            )
        elapsed = time.perf_counter() - started
        cursor.close()
        driver.autocommit = False
    return len(points) / elapsed


def wal_position(engine: Engine) -> int:
    """Bytes of WAL the cluster has written so far."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')")
            ).scalar_one()
        )


def points_in_demo_city(rng: np.random.Generator, n: int) -> list[Point]:
    """``n`` uniform points inside the demo city."""
    outline = demo_city_outline()
    minx, miny, maxx, maxy = DEMO_BOUNDS
    found: list[Point] = []
    while len(found) < n:
        x = rng.uniform(minx, maxx, n)
        y = rng.uniform(miny, maxy, n)
        keep = shapely.contains_xy(outline, x, y)
        found.extend(zip(x[keep].tolist(), y[keep].tolist(), strict=True))
    return found[:n]


def add_history(engine: Engine, rng: np.random.Generator, count: int, now: datetime) -> None:
    """Store ``count`` reports from the last three years through the import path."""
    with engine.connect() as conn:
        category_ids = conn.execute(text("SELECT id FROM categories ORDER BY id")).scalars().all()
    batch = 200_000
    for start in range(0, count, batch):
        n = min(batch, count - start)
        points = np.array(points_in_demo_city(rng, n))
        created = pd.Timestamp(now - timedelta(days=3 * 365)) + pd.to_timedelta(
            rng.uniform(0, 3 * 365 * 86400, n), unit="s"
        )
        rows = pd.DataFrame(
            {
                "lon": points[:, 0],
                "lat": points[:, 1],
                "category_id": rng.choice(category_ids, n),
                "created_at": created,
                "status": rng.choice(
                    ["closed", "resolved", "rejected", "open", "in_progress"],
                    n,
                    p=[0.55, 0.3, 0.05, 0.07, 0.03],
                ),
                "source": "history",
            }
        )
        with engine.begin() as conn:
            insert_reports(conn, rows, settings=RoutingSettings())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) reports, report_events"))
        conn.execute(text("CHECKPOINT"))


def explain_duplicate_lookup(engine: Engine, point: Point, category: str) -> str:
    """The plan of intake's duplicate lookup at ``point`` (the preview runs the same CTEs)."""
    from geo.reports.store import _PREVIEW

    intake = IntakeSettings()
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS) {_PREVIEW}"),
            {
                "lon": point[0],
                "lat": point[1],
                "category": category,
                "created_at": datetime.now(UTC),
                "dup_radius": intake.duplicate_radius_m,
                "dup_days": intake.duplicate_window_days,
                "snap_m": RoutingSettings().snap_distance_m,
            },
        ).scalars()
        return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--singles", type=int, default=1_000, help="reports per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slices", type=int, default=10, help="alternations per round")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(14)
    now = datetime.now(UTC)
    with serving.cluster("issuemap-intake-") as cluster:
        engines: dict[str, Engine] = {}
        unflushed: dict[str, Engine] = {}
        for name, total in (("small", SMALL), ("full", max(args.reports, SMALL))):
            cluster.ensure_database(name)
            url = cluster.url(name)
            upgrade(url)
            engine = engines[name] = make_engine(url, pool_size=2)
            # The same intake without waiting for the WAL flush: what the statement itself
            # costs, apart from the disk, which other work on this machine shares.
            unflushed[name] = create_engine(
                normalise_url(url), connect_args={"options": "-c synchronous_commit=off"}
            )
            load_demo_city(engine, now=now)
            with engine.connect() as conn:
                have = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
            started = time.perf_counter()
            add_history(engine, rng, total - have, now)
            print(f"{name}: {total:,} reports, built in {time.perf_counter() - started:.1f} s")
        with engines["full"].connect() as conn:
            codes = conn.execute(text("SELECT code FROM categories ORDER BY code")).scalars().all()
            category_id = conn.execute(text("SELECT min(id) FROM categories")).scalar_one()
        if args.explain:
            point = points_in_demo_city(rng, 1)[0]
            for name, engine in engines.items():
                plan = explain_duplicate_lookup(engine, point, codes[0])
                print(f"duplicate lookup, {name}:\n{plan}")

        # Each round alternates small slices of the three, so a burst of other load on this
        # shared machine falls on all of them alike; a round's rate is its reports over its
        # time, and the median round is the figure.
        rates: dict[str, list[float]] = {
            name: [] for name in ("small", "full", "ceiling", "small_unflushed", "full_unflushed")
        }
        timed = engines | {f"{name}_unflushed": engine for name, engine in unflushed.items()}
        step = max(1, args.singles // args.slices)
        wal = dict.fromkeys(engines, 0)
        for round_no in range(1, args.rounds + 1):
            done = dict.fromkeys(rates, 0.0)
            spent = dict.fromkeys(rates, 0.0)
            for _ in range(args.slices):
                for name, engine in timed.items():
                    points = points_in_demo_city(rng, step)
                    before = wal_position(engine)
                    rate = single_intake_rate(engine, points=points, categories=codes)
                    if name in wal:
                        wal[name] += wal_position(engine) - before
                    done[name] += step
                    spent[name] += step / rate
                points = points_in_demo_city(rng, step)
                rate = prepared_insert_rate(engines["full"], points=points, category_id=category_id)
                done["ceiling"] += step
                spent["ceiling"] += step / rate
            for name in rates:
                rates[name].append(done[name] / spent[name])
            print(
                f"round {round_no}: "
                + ", ".join(f"{name} {values[-1]:,.0f}/s" for name, values in rates.items())
            )
        for engine in timed.values():
            engine.dispose()
    small, full, ceiling = (statistics.median(rates[k]) for k in ("small", "full", "ceiling"))
    # Ratios within a round, where both saw the same load; their median is the figure.
    ratio = statistics.median(f / s for f, s in zip(rates["full"], rates["small"], strict=True))
    of_ceiling = statistics.median(
        f / c for f, c in zip(rates["full"], rates["ceiling"], strict=True)
    )
    statement_ratio = statistics.median(
        f / s for f, s in zip(rates["full_unflushed"], rates["small_unflushed"], strict=True)
    )
    print(
        json.dumps(
            {
                "reports": max(args.reports, SMALL),
                "single_intake_per_s_small": round(small, 1),
                "single_intake_per_s_full": round(full, 1),
                "ratio": round(ratio, 3),
                "prepared_insert_per_s": round(ceiling, 1),
                "full_over_ceiling": round(of_ceiling, 3),
                "statement_ratio": round(statement_ratio, 3),
                "wal_bytes_per_intake_small": round(
                    wal["small"] / (args.rounds * step * args.slices)
                ),
                "wal_bytes_per_intake_full": round(
                    wal["full"] / (args.rounds * step * args.slices)
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
