"""Intake speed against a ward's vertex count: why boundary imports have a vertex limit.

Run with ``.venv/bin/python bench/boundary_vertices.py``. It starts a throwaway PostgreSQL
cluster, loads the demo city, picks one ward, and times ``create_report`` (one routed INSERT
and one COMMIT per report, on one connection) for points inside that ward while the ward's
outline is drawn with more and more vertices (``ST_Segmentize`` of the same outline, so
every answer stays the same). The cluster does not fsync unless ``--durable`` is given: on a
shared disk the flush of each commit swamps what routing costs, and it is the routing that
the vertex count changes (with fsync, each report costs the same flush more, so the ratios
move towards 1). The sizes timed:

* as generated (the ceiling: a few hundred vertices);
* 12,110: the most of any feature in the real boundary files in ``../shared/data`` (Nakhon
  Si Thammarat's amphoe TH8009);
* the default ``ISSUEMAP_BOUNDARY_MAX_VERTICES`` (``geo.settings.BoundarySettings``);
* 2,000,001: the file that was accepted before the limit existed (``--attack`` only, slow).

Rounds alternate between the plain ward and the densified one, so the machine's drift
touches both; the figure to quote is each size's median rate as a ratio of the plain ward's
median rate measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import Engine, text

from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine, upgrade
from geo.demo.city import load_demo_city
from geo.reports.store import create_report
from geo.settings import BoundarySettings, RoutingSettings

REAL_MAX_VERTICES = 12_110
ATTACK_VERTICES = 2_000_001


def points_in(geom: shapely.Geometry, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniform points inside ``geom``, as (lon, lat) rows."""
    minx, miny, maxx, maxy = geom.bounds
    found: list[np.ndarray] = []
    have = 0
    while have < n:
        xy = rng.uniform((minx, miny), (maxx, maxy), (n, 2))
        keep = xy[shapely.contains_xy(geom, xy[:, 0], xy[:, 1])]
        found.append(keep)
        have += len(keep)
    return np.concatenate(found)[:n]


def set_vertices(engine: Engine, ward: str, original: bytes, vertices: int | None) -> int:
    """Draw ``ward`` with about ``vertices`` vertices (None: as generated); return the count."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE wards SET geom = ST_GeomFromWKB(:wkb, 4326) WHERE code = :code"),
            {"wkb": original, "code": ward},
        )
        if vertices is not None:
            # Segments of the perimeter / vertices: the outline, with points added along it.
            conn.execute(
                text(
                    "UPDATE wards SET geom = ST_Multi(ST_Segmentize(geom, "
                    "ST_Perimeter(geom) / :n)) WHERE code = :code"
                ),
                {"n": vertices, "code": ward},
            )
        conn.execute(text("ANALYZE wards"))
        return int(
            conn.execute(
                text("SELECT ST_NPoints(geom) FROM wards WHERE code = :code"), {"code": ward}
            ).scalar_one()
        )


def rate(engine: Engine, points: np.ndarray, category: str, settings: RoutingSettings) -> float:
    """Reports/s of durable single intake for ``points``."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        t0 = time.perf_counter()
        for lon, lat in points:
            create_report(
                conn,
                lon=float(lon),
                lat=float(lat),
                category=category,
                description="benchmark",
                settings=settings,
            )
        return len(points) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=1_000, help="reports per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--also", type=int, nargs="*", default=[], help="more vertex counts to time"
    )
    parser.add_argument(
        "--attack", action="store_true", help="also time the 2,000,001-vertex ward (slow)"
    )
    parser.add_argument(
        "--durable", action="store_true", help="fsync every commit, as the service does"
    )
    args = parser.parse_args()
    limit = BoundarySettings().max_vertices

    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="issuemap-bench-")), durable=args.durable)
    cluster.start()
    try:
        cluster.ensure_database("bench")
        url = cluster.url("bench")
        upgrade(url)
        engine = make_engine(url, pool_size=2)
        load_demo_city(engine, now=datetime(2026, 11, 1, tzinfo=UTC))
        with engine.connect() as conn:
            # The ward in the middle of the city, by its generated code.
            ward = conn.execute(
                text(
                    "SELECT code FROM wards ORDER BY ST_Distance(ST_Centroid(geom), "
                    "(SELECT ST_Centroid(ST_Union(geom)) FROM wards)) LIMIT 1"
                )
            ).scalar_one()
            original = bytes(
                conn.execute(
                    text("SELECT ST_AsBinary(geom) FROM wards WHERE code = :c"), {"c": ward}
                ).scalar_one()
            )
            category = conn.execute(text("SELECT code FROM categories LIMIT 1")).scalar_one()
        geom = shapely.from_wkb(original)
        settings = RoutingSettings()
        rng = np.random.default_rng(11)
        sizes = sorted({REAL_MAX_VERTICES, limit, *args.also})
        sizes += [ATTACK_VERTICES] if args.attack else []
        plain_rates: list[float] = []
        dense_rates: dict[int, list[float]] = {size: [] for size in sizes}
        counts: dict[int, int] = {}
        for round_no in range(1, args.rounds + 1):
            plain = set_vertices(engine, ward, original, None)
            plain_rates.append(rate(engine, points_in(geom, rng, args.singles), category, settings))
            print(f"round {round_no}: {plain:,} vertices: {plain_rates[-1]:,.0f} reports/s")
            for size in sizes:
                counts[size] = set_vertices(engine, ward, original, size)
                # The attack size is slow enough that a tenth of the reports tells the story.
                n = args.singles if size != ATTACK_VERTICES else max(args.singles // 10, 20)
                dense_rates[size].append(rate(engine, points_in(geom, rng, n), category, settings))
                print(
                    f"round {round_no}: {counts[size]:,} vertices: "
                    f"{dense_rates[size][-1]:,.0f} reports/s"
                )
        ceiling = statistics.median(plain_rates)
        print(f"\nward {ward} as generated ({plain:,} vertices): median {ceiling:,.0f} reports/s")
        for size in sizes:
            median = statistics.median(dense_rates[size])
            label = {
                REAL_MAX_VERTICES: "largest real",
                limit: "the limit",
                ATTACK_VERTICES: "attack",
            }.get(size, "other")
            print(
                f"ward {ward} with {counts[size]:,} vertices ({label}): median {median:,.0f} "
                f"reports/s = {median / ceiling:.2f} x the ward as generated "
                f"({ceiling / median:.1f}x slower)"
            )
        engine.dispose()
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
