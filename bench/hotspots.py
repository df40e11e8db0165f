"""Whole-city Gi* hot spots over a million reports in the demo city.

Starts a throwaway PostgreSQL cluster (or uses --url), loads the demo city, adds reports
around the demo's own report locations (jittered by about 150 m) through
``geo.reports.store.insert_reports`` in batches, so they are routed like any import, then times
``geo.analysis.hotspots`` over the whole city and prints the figures.

    .venv/bin/python bench/hotspots.py [--reports 1000000] [--cell-m 100] [--url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress
from sqlalchemy import Engine, text

from geo import analysis
from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine, upgrade
from geo.demo.city import DEMO_CENTRE, load_demo_city
from geo.reports.store import insert_reports
from geo.settings import RoutingSettings

NOW = datetime(2026, 6, 1, tzinfo=UTC)
BATCH = 100_000


@contextmanager
def bench_database(url: str | None) -> Iterator[str]:
    if url is not None:
        upgrade(url)
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="issuemap-bench-"))
    folder.chmod(0o777)  # the server may run as postgres
    cluster = LocalCluster(folder, durable=False)
    cluster.start()
    try:
        cluster.ensure_database("bench")
        upgrade(cluster.url("bench"))
        yield cluster.url("bench")
    finally:
        cluster.destroy()


def add_reports(engine: Engine, total: int, *, seed: int = 1) -> float:
    """Add ``total`` reports near the demo reports; return the seconds it took."""
    rng = np.random.default_rng(seed)
    with engine.connect() as conn:
        seeds = conn.execute(text("SELECT ST_X(geom), ST_Y(geom), category_id FROM reports")).all()
    base = np.array([(x, y) for x, y, _ in seeds])
    categories = np.array([c for _, _, c in seeds])
    m_per_deg_lon = 111_320.0 * np.cos(np.radians(DEMO_CENTRE[1]))
    started = time.perf_counter()
    with Progress() as progress:
        task = progress.add_task("inserting reports", total=total)
        done = 0
        while done < total:
            n = min(BATCH, total - done)
            pick = rng.integers(0, len(base), n)
            jitter = rng.normal(0.0, 150.0, size=(n, 2))
            frame = pd.DataFrame(
                {
                    "lon": base[pick, 0] + jitter[:, 0] / m_per_deg_lon,
                    "lat": base[pick, 1] + jitter[:, 1] / 110_574.0,
                    "category_id": categories[pick],
                    "created_at": NOW - pd.to_timedelta(rng.uniform(0, 24 * 365, n), unit="h"),
                    "source": "bench",
                }
            )
            with engine.begin() as conn:
                insert_reports(conn, frame, settings=RoutingSettings(), actor="bench")
            done += n
            progress.update(task, advance=n)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE reports"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--cell-m", type=float, default=100.0)
    parser.add_argument("--permutations", type=int, default=0)
    parser.add_argument("--url", default=None, help="an empty, migrated database to use")
    args = parser.parse_args()

    with bench_database(args.url) as url:
        engine = make_engine(url, pool_size=2)
        load_demo_city(engine, now=NOW - timedelta(days=1))
        load_s = add_reports(engine, args.reports)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
        print(f"reports stored: {stored:,} (insert and routing took {load_s:.1f} s)")

        for cell_m, permutations in ((args.cell_m, args.permutations), (250.0, 999)):
            started = time.perf_counter()
            cells = analysis.hotspots(engine, cell_m=cell_m, permutations=permutations)
            seconds = time.perf_counter() - started
            significant = int((cells["significance"] != "not significant").sum())
            print(
                f"hotspots: {len(cells):,} cells of {cell_m:.0f} m, "
                f"{int(cells['count'].sum()):,} reports, permutations={permutations}, "
                f"{significant:,} significant cells: {seconds:.2f} s"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
