"""Report import benchmark: a generated Traffy Fondue CSV, end to end, beside its ceiling.

Run with ``.venv/bin/python bench/import_speed.py [--rows N]`` (default 1,400,000, Traffy
Fondue's national volume). It starts a throwaway durable PostgreSQL cluster, loads the
national city from ../shared/data/thailand-admin (``pages_national.load_thailand``: 7,425
tambon as wards, 928 amphoe as zones, a team per zone), writes a CSV of N generated
tickets in Traffy's export format, then measures, in the same run:

* the import: ``geo.reports.imports.import_reports`` from the file to routed, stored
  reports with their audit events, in rows/s, and the process's peak RSS;
* its ceiling: the file's columns COPY-loaded as they are into an unlogged table, and one
  CREATE TABLE AS joining them to the wards that cover them; PostgreSQL alone, no checks,
  no routing rules, no indexes, no audit trail;
* the floor under the import: its final INSERTs alone (the stored rows inserted again
  with the audit events the import writes, rolled back), which the reports table's indexes,
  foreign keys and triggers decide (``insert_floor``); beside it the same INSERTs with the
  table's statement triggers (the kept ward measures and heat cells) switched off, and into
  a bare copy of the table (no index, constraint or trigger).

The last line is JSON: ``import_rows_per_s``, ``ceiling``, ``ratio``, ``peak_rss_mb`` and
``import_rss_growth_mb`` (see ``measure_import``), ``stage_seconds`` (each stage of the
import, in all; they overlap), ``insert_rows_per_s`` (the floor),
``insert_without_triggers_rows_per_s``, ``bare_insert_rows_per_s``, and ``db_cpu_s``: the
CPU seconds the whole cluster spent on each measurement, which a machine busy with other
work changes far less than the elapsed times.
``bench/national.py`` calls ``write_traffy_csv``, ``measure_import`` and ``import_ceiling``
on its own city.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import json
import os
import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import serving
import shapely
from pages_national import load_thailand
from sqlalchemy import Engine, text

from geo.db.engine import make_engine, upgrade
from geo.reports.imports import import_reports

TRAFFY_HEADER = [
    "ticket_id",
    "type",
    "organization",
    "comment",
    "coords",
    "photo",
    "photo_after",
    "address",
    "subdistrict",
    "district",
    "province",
    "timestamp",
    "state",
    "star",
    "count_reopen",
    "last_activity",
]

# Traffy's states with rough national shares: most tickets are long finished.
_STATES = {
    "เสร็จสิ้น": 0.62,
    "ส่งต่อ": 0.08,
    "กำลังดำเนินการ": 0.12,
    "รอรับเรื่อง": 0.12,
    "ไม่พบปัญหา": 0.04,
    "ปฏิเสธ": 0.02,
}
_COMMENTS = (
    "ถนนเป็นหลุมเป็นบ่อ รถจักรยานยนต์ล้มบ่อย",
    "น้ำท่วมขังหลังฝนตก ระบายไม่ทัน",
    "ไฟส่องสว่างดับทั้งซอย กลางคืนมืดมาก",
    "ขยะล้นถัง ส่งกลิ่นเหม็น",
    "กิ่งไม้ใหญ่ยื่นออกมาขวางทาง",
    'ท่อระบายน้ำอุดตัน, มีน้ำเสีย "ดำ"',
    "ทางเท้าชำรุด\nเดินลำบาก",
)


def ward_points(
    engine: Engine, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` points inside the current wards, weighted towards the small (dense) ones.

    Reports follow people, and the smallest wards are the city ones (Bangkok's khwaeng),
    so a ward is drawn with weight 1/sqrt(area). Returns longitudes, latitudes and each
    point's ward code.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT code, ST_AsBinary(geom) FROM wards WHERE retired_at IS NULL ORDER BY code")
        ).all()
    codes = np.array([r[0] for r in rows], dtype=object)
    geoms = shapely.from_wkb([bytes(r[1]) for r in rows])
    areas = shapely.area(geoms)
    weights = 1.0 / np.sqrt(areas)
    chosen = rng.choice(len(geoms), size=n, p=weights / weights.sum())
    bounds = shapely.bounds(geoms)
    lons = np.empty(n)
    lats = np.empty(n)
    todo = np.arange(n)
    shapely.prepare(geoms)
    while len(todo):
        b = bounds[chosen[todo]]
        x = rng.uniform(b[:, 0], b[:, 2])
        y = rng.uniform(b[:, 1], b[:, 3])
        inside = shapely.contains_xy(geoms[chosen[todo]], x, y)
        lons[todo[inside]] = x[inside]
        lats[todo[inside]] = y[inside]
        todo = todo[~inside]
    return lons, lats, codes[chosen]


def _rows(engine: Engine, n: int, seed: int, batch: int = 20_000) -> Iterator[list[list[str]]]:
    """Generated Traffy rows in batches: a few in a thousand are broken as real files are."""
    rng = np.random.default_rng(seed)
    with engine.connect() as conn:
        types = [t for (t,) in conn.execute(text("SELECT name_th FROM categories WHERE active"))]
    states = list(_STATES)
    shares = np.array(list(_STATES.values()))
    start = datetime(2022, 1, 1, tzinfo=UTC).timestamp()
    span = 3 * 365 * 86400.0
    # The points are drawn at once (a few bytes each); the rows are made a batch at a
    # time, so writing the file does not raise this process's peak memory, which the
    # import's figure is read from.
    all_lons, all_lats, _ = ward_points(engine, rng, n)
    for first in range(0, n, batch):
        k = min(batch, n - first)
        lons, lats = all_lons[first : first + k], all_lats[first : first + k]
        created = start + rng.uniform(0, span, k)
        later = created + rng.exponential(5 * 86400, k)
        state = rng.choice(len(states), size=k, p=shares)
        kind = rng.integers(0, len(types), k)
        second = rng.integers(0, len(types), k)
        comment = rng.integers(0, len(_COMMENTS), k)
        broken = rng.random(k)
        out = []
        for i in range(k):
            coords = f"{lons[i]:.6f},{lats[i]:.6f}"
            if broken[i] < 0.001:
                coords = ""  # no position
            elif broken[i] < 0.002:
                coords = f"{lons[i] + 40:.6f},{lats[i]:.6f}"  # far outside the country
            kinds = (
                "{" + types[kind[i]] + "}"
                if second[i] % 3
                else "{" + types[kind[i]] + "," + types[second[i]] + "}"
            )
            out.append(
                [
                    f"{2022 + (first + i) % 3}-{first + i:08X}",
                    kinds,
                    "",
                    _COMMENTS[comment[i]],
                    coords,
                    f"https://storage.example/{first + i}.jpg",
                    "",
                    "",
                    "",
                    "",
                    "",
                    datetime.fromtimestamp(created[i], UTC).isoformat(sep=" "),
                    states[state[i]],
                    "",
                    "0",
                    datetime.fromtimestamp(later[i], UTC).isoformat(sep=" "),
                ]
            )
        yield out


def write_traffy_csv(engine: Engine, path: Path, *, rows: int, seed: int = 14) -> Path:
    """Write ``rows`` generated tickets as a Traffy Fondue export (UTF-8 with BOM) at ``path``.

    The points lie in the city's current wards (see ``ward_points``); the types are the
    active categories' Thai names, as Traffy writes them; about one row in a thousand has
    no position and one in a thousand lies far outside, to be refused.
    """
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRAFFY_HEADER)
        for batch in _rows(engine, rows, seed):
            writer.writerows(batch)
    return path


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    """This process's resident memory now, in MB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def cluster_cpu_s(postmaster: int | None) -> float:
    """CPU seconds used so far by the PostgreSQL cluster whose postmaster is ``postmaster``.

    The postmaster's own time, its ended children's (counted to it when reaped), and its
    running children's (backends, parallel workers, the WAL writer, autovacuum); zero when
    no pid is given (see ``_spent``).
    """
    if postmaster is None:
        return 0.0
    ticks = 0
    for pid in [postmaster, *_children(postmaster)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended since it was listed
        # utime, stime, cutime, cstime; the children's times only for the postmaster.
        ticks += sum(int(f) for f in fields[11 : 15 if pid == postmaster else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def _spent(postmaster: int | None, before: float) -> float | None:
    """The cluster's CPU seconds since ``before`` (a ``cluster_cpu_s``), None without a pid."""
    return None if postmaster is None else round(cluster_cpu_s(postmaster) - before, 2)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                found.append(int(entry.name))
    return found


def measure_import(
    engine: Engine, path: Path, *, rejects: Path, postmaster: int | None = None
) -> dict[str, Any]:
    """Import ``path`` (Traffy format) end to end and time it, with this process's memory.

    ``peak_rss_mb`` is the process's peak (``resource``), which loading the boundaries may
    have set before; ``import_rss_growth_mb`` is how far resident memory rose above its
    level at the start while the import ran (sampled every 50 ms), the figure that shows
    whether memory follows the batch or the file. ``stage_seconds`` is the import's own
    account of its stages; ``db_cpu_s`` the cluster's CPU seconds when its ``postmaster``
    pid is given. The city must hold no reports from the file yet; they stay stored
    afterwards.
    """
    start_rss = _rss_mb()
    highest = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            highest[0] = max(highest[0], _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu = cluster_cpu_s(postmaster)
    started = time.perf_counter()
    try:
        summary = import_reports(engine, path, file_format="traffy", rejects_path=rejects)
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    return {
        "rows": summary.rows,
        "inserted": summary.inserted,
        "rejected": summary.rejected,
        "import_s": round(seconds, 2),
        "import_rows_per_s": round(summary.rows / seconds),
        "peak_rss_mb": round(peak_rss_mb()),
        "import_rss_growth_mb": round(highest[0] - start_rss),
        "stage_seconds": {k: round(v, 2) for k, v in summary.stage_seconds.items()},
        "db_cpu_s": _spent(postmaster, cpu),
    }


def import_ceiling(engine: Engine, path: Path, *, postmaster: int | None = None) -> dict[str, Any]:
    """PostgreSQL alone on the same file: COPY it as text, then one CTAS join to the wards.

    The file's columns go as they are into an unlogged table of text columns, and a CREATE
    TABLE AS pairs each row's point with the current wards covering it: no checks, no
    routing rules, no indexes and no audit trail. Nothing is left behind.
    """
    columns = ", ".join(f'"{c}" text' for c in TRAFFY_HEADER)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cpu = cluster_cpu_s(postmaster)
        started = time.perf_counter()
        with raw.cursor() as cur:
            cur.execute(f"CREATE UNLOGGED TABLE import_ceiling_rows ({columns})")
            copy_sql = "COPY import_ceiling_rows FROM STDIN (FORMAT csv, HEADER true)"
            with path.open("rb") as handle, cur.copy(copy_sql) as copy:
                if handle.read(3) != codecs.BOM_UTF8:
                    handle.seek(0)
                while block := handle.read(1 << 20):
                    copy.write(block)
            cur.execute(
                "CREATE UNLOGGED TABLE import_ceiling_joined AS "
                "SELECT r.ticket_id, w.id AS ward_id FROM import_ceiling_rows AS r "
                "JOIN wards AS w ON w.retired_at IS NULL AND ST_Covers(w.geom, ST_SetSRID("
                "ST_MakePoint(split_part(r.coords, ',', 1)::float8, "
                "split_part(r.coords, ',', 2)::float8), 4326)) "
                "WHERE r.coords LIKE '%,%'"
            )
            found = cur.execute("SELECT count(*) FROM import_ceiling_rows").fetchone()
        seconds = time.perf_counter() - started
        spent = _spent(postmaster, cpu)
        conn.execute(text("DROP TABLE import_ceiling_rows, import_ceiling_joined"))
    rows = int(found[0]) if found else 0
    return {
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "db_cpu_s": spent,
    }


# The import's final INSERTs over rows already stored: the same columns, a new source, and
# the audit events the import writes (created, and a status change for the rest).
_FLOOR = """
WITH new AS (
    INSERT INTO {table} (category_id, description, status, created_at, updated_at,
        resolved_at, ward_id, ward_snapped, zone_id, team_id, due_at, source, external_id,
        media_url, geom)
    SELECT category_id, description, status, created_at, updated_at, resolved_at, ward_id,
           ward_snapped, zone_id, team_id, due_at, 'floor', external_id, media_url, geom
    FROM reports WHERE source = :source
    ORDER BY id
    RETURNING id, created_at, updated_at, status
), created AS (
    INSERT INTO {events} (report_id, at, kind, actor, to_status)
    SELECT id, created_at, 'created', 'bench', 'open' FROM new
), moved AS (
    INSERT INTO {events} (report_id, at, kind, actor, from_status, to_status)
    SELECT id, updated_at, 'status', 'bench', 'open', status FROM new WHERE status <> 'open'
)
SELECT count(*) FROM new
"""

# How the tables are prepared, in the rolled-back transaction, for each floor.
_FLOORS = {
    "insert": [],
    "insert_without_triggers": [
        "ALTER TABLE reports DISABLE TRIGGER USER",
        # The foreign keys' triggers are system triggers: they stay.
    ],
    "bare_insert": [
        "CREATE TABLE floor_reports (LIKE reports INCLUDING DEFAULTS)",
        "CREATE TABLE floor_events (LIKE report_events INCLUDING DEFAULTS)",
    ],
}


def insert_floor(
    engine: Engine,
    source: str = "traffy",
    *,
    floors: tuple[str, ...] = tuple(_FLOORS),
    postmaster: int | None = None,
) -> dict[str, Any]:
    """The stored rows of ``source`` inserted again (new source) with their audit events.

    Only the INSERTs the import ends with: no file, no checks, no routing, each rolled back.
    ``insert`` is into the real tables, so the reports table's indexes, foreign keys and
    triggers are what it measures; ``insert_without_triggers`` the same with the table's
    own (statement) triggers switched off, the foreign keys' kept; ``bare_insert`` into
    copies of the tables with nothing to maintain but the rows. ``floors`` picks among them.
    """
    found: dict[str, Any] = {}
    for name in floors:
        setup = _FLOORS[name]
        bare = name == "bare_insert"
        statement = _FLOOR.format(
            table="floor_reports" if bare else "reports",
            events="floor_events" if bare else "report_events",
        )
        with engine.connect() as conn, conn.begin() as transaction:
            for step in setup:
                conn.execute(text(step))
            cpu = cluster_cpu_s(postmaster)
            started = time.perf_counter()
            rows = conn.execute(text(statement), {"source": source}).scalar_one()
            seconds = time.perf_counter() - started
            spent = _spent(postmaster, cpu)
            transaction.rollback()
        found[name] = {
            "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds),
            "db_cpu_s": spent,
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_400_000, help="rows in the generated CSV")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="issuemap-import-"))
    with serving.cluster("issuemap-bench-import-") as cluster:
        cluster.ensure_database("bench")
        url = cluster.url("bench")
        upgrade(url)
        engine = make_engine(url, pool_size=2)
        started = time.perf_counter()
        city = load_thailand(engine)
        print(
            f"national city: {city['wards']:,} wards, {city['zones']:,} zones, "
            f"loaded in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        started = time.perf_counter()
        path = write_traffy_csv(engine, folder / "traffy.csv", rows=args.rows)
        print(
            f"wrote {args.rows:,} rows ({path.stat().st_size / 1e6:,.0f} MB) "
            f"in {time.perf_counter() - started:.1f} s; peak RSS so far {peak_rss_mb():,.0f} MB",
            flush=True,
        )
        postmaster = cluster.postmaster_pid()
        ceiling = import_ceiling(engine, path, postmaster=postmaster)
        print(
            f"ceiling: COPY + CTAS join {ceiling['seconds']:.1f} s -> "
            f"{ceiling['rows_per_s']:,} rows/s ({ceiling['db_cpu_s']:.1f} s of database CPU)",
            flush=True,
        )
        found = measure_import(engine, path, rejects=folder / "rejects.csv", postmaster=postmaster)
        print(
            f"import: {found['rows']:,} rows ({found['inserted']:,} stored, "
            f"{found['rejected']:,} refused) in {found['import_s']:.1f} s -> "
            f"{found['import_rows_per_s']:,} rows/s ({found['db_cpu_s']:.1f} s of database "
            f"CPU); peak RSS {found['peak_rss_mb']:,} MB, "
            f"{found['import_rss_growth_mb']:,} MB above its level at the start",
            flush=True,
        )
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in found["stage_seconds"].items())
        print(f"  its stages, each in all (they overlap): {stages}", flush=True)
        floors = insert_floor(engine, postmaster=postmaster)
        for name, floor in floors.items():
            print(
                f"the import's INSERTs alone, {name.replace('_', ' ')} (rolled back): "
                f"{floor['seconds']:.1f} s -> {floor['rows_per_s']:,} rows/s "
                f"({floor['db_cpu_s']:.1f} s of database CPU)",
                flush=True,
            )
        engine.dispose()
    for leftover in folder.iterdir():
        leftover.unlink()
    folder.rmdir()
    ratio = found["import_rows_per_s"] / ceiling["rows_per_s"]
    print(
        json.dumps(
            {
                "rows": found["rows"],
                "import_rows_per_s": found["import_rows_per_s"],
                "ceiling": ceiling["rows_per_s"],
                "ratio": round(ratio, 3),
                **{f"{name}_rows_per_s": floor["rows_per_s"] for name, floor in floors.items()},
                "stage_seconds": found["stage_seconds"],
                "peak_rss_mb": found["peak_rss_mb"],
                "import_rss_growth_mb": found["import_rss_growth_mb"],
                "db_cpu_s": {
                    "import": found["db_cpu_s"],
                    "ceiling": ceiling["db_cpu_s"],
                    **{name: floor["db_cpu_s"] for name, floor in floors.items()},
                },
            }
        )
    )


if __name__ == "__main__":
    main()
