"""Whole-city Gi* hot spots over a million reports in the demo city, or over a whole country.

Starts a throwaway PostgreSQL cluster (or uses --url), loads the demo city, adds reports
around the demo's own report locations (jittered by about 150 m) through
``geo.reports.store.insert_reports`` in batches, so they are routed like any import, then times
``geo.analysis.hotspots`` over the whole city and prints the figures.

    .venv/bin/python bench/hotspots.py [--reports 1000000] [--cell-m 100] [--url URL]

With ``--existing``, ``--url`` is a database that already holds its city and reports (such
as the national one ``bench/national.py`` builds): nothing is migrated, loaded or written.
Hot spots over every ward are timed (cells of ``--cell-m``, or chosen by ``hotspots``), beside
the same run's ceiling, a count of the reports they read, and the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
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


def seconds_of(run: Callable[[], object], rounds: int) -> float:
    """Median wall time of ``run`` over ``rounds`` calls, in seconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def hotspot_figures(
    engine: Engine, *, cell_m: float | None, permutations: int, rounds: int
) -> dict[str, object]:
    """Hot spots over every ward of the city at ``engine``, timed beside reading its reports.

    ``hotspots_s`` is the median of ``rounds`` whole runs; ``count_ceiling_s`` reads every
    report Gi* counts once, the least any whole-area statistic costs. Read only.
    """
    found: dict[str, object] = {}

    def run() -> None:
        cells = analysis.hotspots(engine, cell_m=cell_m, permutations=permutations)
        found["cells"] = len(cells)
        found["cell_m"] = cells.attrs["cell_m"]
        found["significant"] = int((cells["significance"] != "not significant").sum())

    def ceiling() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM reports WHERE hidden_at IS NULL")).one()

    figures: dict[str, object] = {
        "permutations": permutations,
        "hotspots_s": round(seconds_of(run, rounds), 2),
        "count_ceiling_s": round(seconds_of(ceiling, rounds), 2),
    }
    return figures | found


def existing(url: str, *, cell_m: float | None, permutations: int, rounds: int) -> None:
    """Time hot spots over every ward of the city already at ``url``; read only."""
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
        wards = conn.execute(text("SELECT count(*) FROM wards WHERE retired_at IS NULL")).scalar()
    figures: dict[str, object] = {"reports": stored, "wards": wards}
    figures |= hotspot_figures(engine, cell_m=cell_m, permutations=permutations, rounds=rounds)
    print(
        f"hotspots: {figures['cells']:,} cells of {figures['cell_m']:,.0f} m over {wards:,} "
        f"wards, {stored:,} reports: {figures['hotspots_s']} s (count alone "
        f"{figures['count_ceiling_s']} s)"
    )
    print(json.dumps(figures))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument(
        "--cell-m", type=float, default=None, help="default 100, or chosen with --existing"
    )
    parser.add_argument("--permutations", type=int, default=0)
    parser.add_argument("--url", default=None, help="an empty, migrated database to use")
    parser.add_argument(
        "--existing", action="store_true", help="--url already holds a city: time it, read only"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed runs with --existing")
    args = parser.parse_args()
    if args.existing:
        if args.url is None:
            parser.error("--existing needs --url")
        existing(args.url, cell_m=args.cell_m, permutations=args.permutations, rounds=args.rounds)
        return
    cell_m = 100.0 if args.cell_m is None else args.cell_m

    with bench_database(args.url) as url:
        engine = make_engine(url, pool_size=2)
        load_demo_city(engine, now=NOW - timedelta(days=1))
        load_s = add_reports(engine, args.reports)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
        print(f"reports stored: {stored:,} (insert and routing took {load_s:.1f} s)")

        for size, permutations in ((cell_m, args.permutations), (250.0, 999)):
            started = time.perf_counter()
            cells = analysis.hotspots(engine, cell_m=size, permutations=permutations)
            seconds = time.perf_counter() - started
            significant = int((cells["significance"] != "not significant").sum())
            print(
                f"hotspots: {len(cells):,} cells of {size:.0f} m, "
                f"{int(cells['count'].sum()):,} reports, permutations={permutations}, "
                f"{significant:,} significant cells: {seconds:.2f} s"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
