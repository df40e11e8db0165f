"""Routing benchmark: bulk set-based routing of 1,000,000 points, and single durable intake.

Run with ``.venv/bin/python bench/routing.py``. It starts a throwaway PostgreSQL cluster
with the service's durable settings (fsync and synchronous commit on), loads the demo city,
then prints:

* bulk: points/s of the set-based routing statement over COPY-loaded points (and the COPY
  rate on its own);
* single: reports/s of ``create_report`` (one routed INSERT and one durable COMMIT per
  report) on one connection: first on the near-empty demo city, then after storing the
  million points as the city's reports (through the import path, also timed), which is
  the state intake works in once a city is in service.

With ``--national`` it loads Thailand instead (``pages_national.load_thailand``: 7,425
tambon as wards, 928 amphoe as zones) and prints only the bulk routing figure: the routing
statement beside a CTAS ``ST_Covers`` join of the same points (``bulk_routing``, which
``bench/national.py`` calls on its own city), with a JSON last line holding
``bulk_route_ratio``. ``--points`` sets N (default 1,400,000 there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import serving
import shapely
from import_speed import ward_points
from pages_national import load_thailand
from sqlalchemy import Engine, text

from geo.city.routing import staged_points, staged_route_select
from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine, upgrade
from geo.demo.city import DEMO_BOUNDS, demo_city_outline, load_demo_city
from geo.errors import OutsideServiceAreaError
from geo.reports.store import create_report, insert_reports
from geo.settings import RoutingSettings


def points_in_city(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points over the demo city, a few just outside its edge (to snap)."""
    outline = shapely.buffer(demo_city_outline(), 0.0003)  # about 30 m
    minx, miny, maxx, maxy = DEMO_BOUNDS
    lons: list[np.ndarray] = []
    lats: list[np.ndarray] = []
    have = 0
    while have < n:
        x = rng.uniform(minx, maxx, n)
        y = rng.uniform(miny, maxy, n)
        keep = shapely.contains_xy(outline, x, y)
        lons.append(x[keep])
        lats.append(y[keep])
        have += int(keep.sum())
    return np.concatenate(lons)[:n], np.concatenate(lats)[:n]


def single_rounds(
    engine: Engine,
    rng: np.random.Generator,
    codes: list[str],
    settings: RoutingSettings,
    singles: int,
    rounds: int,
) -> list[float]:
    """Reports/s of ``create_report`` in ``rounds`` rounds of ``singles`` reports each.

    Autocommit: the intake statement is its own transaction, so each report costs one
    round trip and one durable commit (WAL flush), as at the API. This machine is noisy,
    so the single path runs in rounds and the median is the figure to quote.
    """
    rates = []
    for round_no in range(1, rounds + 1):
        lons, lats = points_in_city(rng, singles)
        done = outside = 0
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            t0 = time.perf_counter()
            for i in range(singles):
                try:
                    create_report(
                        conn,
                        lon=float(lons[i]),
                        lat=float(lats[i]),
                        category=codes[i % len(codes)],
                        description="benchmark",
                        settings=settings,
                    )
                    done += 1
                except OutsideServiceAreaError:
                    outside += 1
            elapsed = time.perf_counter() - t0
        rates.append(done / elapsed)
        print(
            f"single, round {round_no}: {done:,} routed, durably committed reports in "
            f"{elapsed:.2f} s -> {done / elapsed:,.0f} reports/s ({outside} refused as outside)"
        )
    return rates


def bulk_routing(engine: Engine, n: int, *, seed: int = 5) -> dict[str, float]:
    """Bulk routing of ``n`` points in the city's wards beside a CTAS join, in one run.

    The points are drawn as the import benchmark draws its reports (``ward_points``) with
    the city's categories, COPY-loaded once, then routed by the statement imports and
    re-routing run (``staged_route_select``, into a table), and joined by a plain
    ``CREATE TABLE AS`` to the current wards covering them: the ceiling, PostgreSQL's own
    join with no tie-break, no zones, no teams and no snapping. Each is run twice,
    alternating, and the better time counts, since this machine is shared.
    """
    rng = np.random.default_rng(seed)
    lons, lats, _ = ward_points(engine, rng, n)
    with engine.connect() as conn:
        categories = [int(i) for i in conn.execute(text("SELECT id FROM categories")).scalars()]
    points = pd.DataFrame(
        {
            "idx": np.arange(n),
            "lon": lons,
            "lat": lats,
            "category_id": rng.choice(categories, n),
            "created_at": datetime(2026, 11, 1, tzinfo=UTC),
        }
    )
    settings = RoutingSettings()
    routed: list[float] = []
    ceiling: list[float] = []
    with engine.begin() as conn, staged_points(conn, points) as table:
        for _ in range(2):
            started = time.perf_counter()
            conn.execute(
                text(f"CREATE UNLOGGED TABLE bulk_routed AS {staged_route_select(table)}"),
                {"snap_m": settings.snap_distance_m},
            )
            routed.append(time.perf_counter() - started)
            started = time.perf_counter()
            conn.execute(
                text(
                    "CREATE UNLOGGED TABLE bulk_ceiling AS SELECT p.idx, w.id AS ward_id "
                    f'FROM "{table}" AS p JOIN wards AS w ON w.retired_at IS NULL AND '
                    "ST_Covers(w.geom, ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326))"
                )
            )
            ceiling.append(time.perf_counter() - started)
            conn.execute(text("DROP TABLE bulk_routed, bulk_ceiling"))
    return {
        "bulk_route_s": round(min(routed), 2),
        "bulk_route_ceiling_s": round(min(ceiling), 2),
        "bulk_route_ratio": round(min(ceiling) / min(routed), 3),
    }


def national(points: int) -> None:
    """The bulk routing figure on Thailand's tambon and amphoe, with a JSON last line."""
    with serving.cluster("issuemap-bench-routing-") as cluster:
        cluster.ensure_database("bench")
        url = cluster.url("bench")
        upgrade(url)
        engine = make_engine(url, pool_size=2)
        city = load_thailand(engine)
        found = bulk_routing(engine, points)
        engine.dispose()
    print(
        f"bulk, national ({city['wards']:,} wards, {city['zones']:,} zones): {points:,} points "
        f"routed in {found['bulk_route_s']:.2f} s; CTAS join {found['bulk_route_ceiling_s']:.2f} s"
    )
    print(json.dumps({"points": points} | found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--singles", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--empty-rounds", type=int, default=3)
    parser.add_argument(
        "--national",
        action="store_true",
        help="only the bulk routing ratio, on Thailand's 7,425 tambon (default 1.4M points)",
    )
    args = parser.parse_args()
    if args.national:
        national(args.points if args.points != 1_000_000 else 1_400_000)
        return

    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="issuemap-bench-")), durable=True)
    cluster.start()
    try:
        cluster.ensure_database("bench")
        url = cluster.url("bench")
        upgrade(url)
        engine = make_engine(url, pool_size=2)
        started = time.perf_counter()
        load_demo_city(engine, now=datetime(2026, 11, 1, tzinfo=UTC))
        with engine.connect() as conn:
            wards = conn.execute(text("SELECT count(*) FROM wards")).scalar_one()
            categories = list(conn.execute(text("SELECT id, code FROM categories")).all())
            durability = conn.execute(
                text("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            ).one()
        print(f"demo city: {wards} wards, loaded in {time.perf_counter() - started:.1f} s")
        print(f"durability: fsync={durability[0]} synchronous_commit={durability[1]}")

        rng = np.random.default_rng(7)
        lons, lats = points_in_city(rng, args.points)
        n = len(lons)
        points = pd.DataFrame(
            {
                "idx": np.arange(n),
                "lon": lons,
                "lat": lats,
                "category_id": rng.choice([c.id for c in categories], n),
                "created_at": datetime(2026, 11, 1, tzinfo=UTC),
            }
        )
        settings = RoutingSettings()
        with engine.begin() as conn:
            t0 = time.perf_counter()
            with staged_points(conn, points) as table:
                t1 = time.perf_counter()
                counts = conn.execute(
                    text(
                        "SELECT count(*) AS n, count(ward_id) AS routed, "
                        "count(*) FILTER (WHERE snapped) AS snapped, count(team_id) AS teams "
                        f"FROM ({staged_route_select(table)}) AS r"
                    ),
                    {"snap_m": settings.snap_distance_m},
                ).one()
                t2 = time.perf_counter()
        print(f"bulk: {n:,} points COPY-loaded in {t1 - t0:.2f} s ({n / (t1 - t0):,.0f} points/s)")
        print(
            f"bulk: routed in {t2 - t1:.2f} s -> {n / (t2 - t1):,.0f} points/s "
            f"({counts.routed:,} to a ward, {counts.snapped:,} snapped, "
            f"{counts.teams:,} to a team; COPY + routing {n / (t2 - t0):,.0f} points/s)"
        )

        codes = [c.code for c in categories]
        empty = single_rounds(engine, rng, codes, settings, args.singles, args.empty_rounds)
        print(
            f"single, near-empty city (3,000 demo reports): median "
            f"{statistics.median(empty):,.0f} reports/s on one connection"
        )

        # Then the city as it looks in service: holding the million points as reports from
        # three years, stored through the import path, vacuumed and analysed, and with the
        # import's 2 GB of WAL checkpointed, so the checkpointer's writes do not share the
        # disk with the intake commits being timed.
        since = pd.Timestamp(datetime(2023, 11, 1, tzinfo=UTC))
        backlog = points.drop(columns="idx").assign(
            created_at=since + pd.to_timedelta(rng.uniform(0, 3 * 365 * 86400, n), unit="s"),
            status=rng.choice(
                ["closed", "resolved", "rejected", "open", "in_progress"],
                n,
                p=[0.55, 0.3, 0.05, 0.07, 0.03],
            ),
            source="bench",
        )
        backlog["updated_at"] = backlog["created_at"]
        t0 = time.perf_counter()
        with engine.begin() as conn:
            stored = insert_reports(conn, backlog, settings=settings)
        t1 = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) reports, report_events"))
            conn.execute(text("CHECKPOINT"))
        print(
            f"bulk: {stored.inserted:,} reports stored through the import path in "
            f"{t1 - t0:.1f} s ({stored.inserted / (t1 - t0):,.0f} reports/s with their audit "
            f"events); VACUUM ANALYZE and CHECKPOINT {time.perf_counter() - t1:.1f} s"
        )
        rates = single_rounds(engine, rng, codes, settings, args.singles, args.rounds)
        print(
            f"single, city of {stored.inserted + 3000:,} reports: median "
            f"{statistics.median(rates):,.0f} reports/s on one connection"
        )
        engine.dispose()
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
