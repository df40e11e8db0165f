"""National benchmark: all of Thailand on one box, every path beside its same-run ceiling.

Run with ``.venv/bin/python bench/national.py [--reports N] [--explain]`` (default N is
1,400,000, Traffy Fondue's national volume; ``--reports 20000`` for a quick run). Needs
``../shared/data/thailand-admin`` and Debian's ``wrk``.

It starts a throwaway durable PostgreSQL cluster and builds the national city through
issuemap's own import: the 928 amphoe as zones (each with a team of its own), the 7,425
tambon as wards, the demo city's Traffy-like categories, and city-wide routes sending
drainage, lighting and stray animals to three national units. That empty city is copied
twice (as templates), then:

* ``full`` gets N reports, ``small`` 10,000, through the set-based import path
  (``insert_reports``): points inside tambon drawn with Bangkok's (ADM1 ``TH10``) tambon
  weighted 40 times and each province's Mueang district 4 times the rest, two years of
  ages growing towards now, the categories' Traffy shares, and a service's status mix;
* ``import`` is the empty city that the report import is timed on.

Measured, each beside its ceiling in the same run:

* report import, CSV to routed rows with audit events (``bench/import_speed.py``'s
  generator and timer), beside COPY of the same file plus a CREATE TABLE AS join to wards,
  and the floor its writes set: the same rows' INSERTs alone, with their audit events;
* bulk routing of N points (the import's routing statement) beside a CTAS ``ST_Covers`` join;
* single durable intake at 10k and at N (``bench/intake_history.py``), beside one prepared
  INSERT per durable commit;
* HTTP intake, 16 clients (wrk, ``bench/http_load.py``), beside the database alone with 16
  connections doing the prepared INSERT;
* every map page (``/``, ``/maps/public``, ``/maps/zone`` for the busiest zone,
  ``/maps/wards``, ``/work`` for the busiest team): server time and HTML bytes at N, beside
  the same page at 10k reports;
* zone heat (``heat_grid`` of the open reports, as the zone page draws it) beside the kept
  cell counts it reads (``open_heat_cells``); the ward dashboard's measures of its default
  window (from ``ward_day_measures`` and ``ward_period_measures``) beside the kept rows they
  read, summed;
* ``/api/reports`` zone+status page: time, and requests/s beside tipg serving the same
  items query from the same database (tipg runs from its own virtualenv under
  ``~/.cache/issuemap-bench``, never the service's);
* Gi* hot spots over the whole country (``bench/hotspots.py``, cells as ``hotspots``
  chooses them), beside a count of every report they read.

``--explain`` prints EXPLAIN (ANALYZE, BUFFERS) of the list, count, export, heat, tile and
ward-aggregate queries at N, captured with ``auto_explain`` from the functions the pages
call. The last line printed is one JSON object with the figures.

``--url URL`` builds nothing and writes nothing: on an existing national database it
measures only the ``/api/reports`` zone page beside tipg (and prints the plans with
``--explain``), a quick rerun of the read paths.

The parts come from the other benchmarks, so each path is measured one way everywhere:
``import_speed`` (the Traffy CSV, the import and its ceiling), ``routing`` (bulk routing),
``intake_history`` (single intake and the prepared insert), ``http_load`` (wrk and the
pgbench ceiling), ``hotspots`` (Gi*) and ``pages_national`` (map pages, tiles,
``/healthz``). ``build_city`` and ``national_points`` are for them in turn.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import hotspots
import http_load
import import_speed
import intake_history
import numpy as np
import pages_national
import pandas as pd
import routing
import serving
import shapely

# The pages are timed as a browser meets them: routes, queries, rendering, in process.
from fastapi.testclient import TestClient  # noqa: TID251
from sqlalchemy import Connection, Engine, make_url, text
from sqlalchemy.exc import OperationalError

from api.app import AppSettings, create_app
from geo.access.keys import create_api_key
from geo.access.policy import Principal
from geo.city.boundary_writes import import_boundaries
from geo.city.catalogue import add_category_route, create_team, put_category
from geo.db.engine import make_engine, upgrade
from geo.demo.city import _CATEGORIES
from geo.maps.heat import cell_size_deg, heat_grid
from geo.maps.pagedata import ward_measures
from geo.maps.pages import dashboard_window
from geo.reports.export import MATCH_COUNT_LIMIT, count_reports, report_page
from geo.reports.search import ReportFilter, find_reports, stream_reports
from geo.reports.stats import window_parts
from geo.reports.store import insert_reports
from geo.settings import DatabaseSettings, RoutingSettings
from geo.vocabulary import OPEN_STATUSES

DATA = serving.ROOT.parent / "shared" / "data" / "thailand-admin"
TAMBON = DATA / "tha_adm3_tambon_simplified.zip"
AMPHOE = DATA / "tha_adm2_amphoe.zip"
SMALL = intake_history.SMALL
NOW = datetime.now(UTC).replace(microsecond=0)
TIPG_VERSION = "1.6.1"
API_ZONE_PAGE = "/api/reports zone page"

# A service's mix: most reports long finished, an open backlog, a few refused.
STATUS_SHARES = {
    "closed": 0.52,
    "resolved": 0.25,
    "rejected": 0.04,
    "duplicate": 0.02,
    "open": 0.07,
    "acknowledged": 0.04,
    "in_progress": 0.05,
    "reopened": 0.01,
}
# City-wide units and the categories each takes everywhere (precedence over zone teams).
UNITS = {
    "drainage": ("หน่วยระบายน้ำแห่งชาติ", "National drainage unit", ("flooding", "drainage")),
    "electrical": ("หน่วยไฟฟ้าแห่งชาติ", "National lighting unit", ("lighting",)),
    "animals": ("หน่วยสัตว์จรจัดแห่งชาติ", "National stray animal unit", ("stray_animals",)),
}


def log(message: str, so_far: dict[str, Any] | None = None) -> None:
    """Progress on stderr, so the last line of stdout stays the JSON.

    ``so_far``: the figures measured until now, so a run cut short still shows them.
    """
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
    if so_far is not None:
        print(json.dumps(so_far, ensure_ascii=False, default=str), file=sys.stderr, flush=True)


def median_ms(run: Callable[[], Any], rounds: int) -> float:
    """Median wall time of ``run`` over ``rounds`` calls after one warm-up, in ms."""
    run()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1)


# ----------------------------------------------------------------------------- the city


def build_city(engine: Engine) -> dict[str, float]:
    """Load the national city: amphoe zones with a team each, tambon wards, categories, routes.

    Everything goes through issuemap's own import and catalogue functions. Returns the
    seconds each boundary import took.
    """
    took = {}
    for layer, path, level in (("zones", AMPHOE, "ADM2"), ("wards", TAMBON, "ADM3")):
        started = time.perf_counter()
        summary = import_boundaries(
            engine,
            path,
            layer=layer,
            id_field=f"{level}_PCODE",
            name_field=f"{level}_TH",
            name_th_field=f"{level}_TH",
            name_en_field=f"{level}_EN",
        )
        took[layer] = round(time.perf_counter() - started, 1)
        log(f"{layer}: {summary.feature_count:,} imported in {took[layer]} s")
    with engine.begin() as conn:
        for code, name_th, name_en, sla_hours, *_ in _CATEGORIES:
            put_category(
                conn, code=code, name_th=name_th, name_en=name_en, sla_hours=sla_hours, active=True
            )
        for team, (name_th, name_en, categories) in UNITS.items():
            create_team(conn, code=team, name=name_th, name_th=name_th, name_en=name_en)
            for category in categories:
                add_category_route(conn, category=category, team=team)
    return took


def national_points(
    engine: Engine, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points inside current wards, Bangkok's tambon densest (see the module doc)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT ST_AsBinary(geom), properties->>'ADM1_PCODE', properties->>'ADM2_PCODE' "
                "FROM wards WHERE retired_at IS NULL ORDER BY code"
            )
        ).all()
    geoms = shapely.from_wkb([bytes(r[0]) for r in rows])
    weights = np.array(
        [40.0 if r[1] == "TH10" else 4.0 if str(r[2]).endswith("01") else 1.0 for r in rows]
    )
    chosen = rng.choice(len(geoms), size=n, p=weights / weights.sum())
    bounds = shapely.bounds(geoms)
    shapely.prepare(geoms)
    lons, lats = np.empty(n), np.empty(n)
    todo = np.arange(n)
    while len(todo):
        b = bounds[chosen[todo]]
        x, y = rng.uniform(b[:, 0], b[:, 2]), rng.uniform(b[:, 1], b[:, 3])
        inside = shapely.contains_xy(geoms[chosen[todo]], x, y)
        lons[todo[inside]], lats[todo[inside]] = x[inside], y[inside]
        todo = todo[~inside]
    return lons, lats


def history(
    rng: np.random.Generator, lons: np.ndarray, lats: np.ndarray, categories: pd.DataFrame
) -> pd.DataFrame:
    """Reports at the points: two years of ages (more lately), categories, statuses."""
    n = len(lons)
    # Volume grows over the two years: ages drawn with density falling linearly to a third.
    age_days = 730 * (1 - np.sqrt(1 - rng.random(n) * (1 - 1 / 9))) * 1.5
    created = pd.Timestamp(NOW) - pd.to_timedelta(np.minimum(age_days, 730), unit="D")
    share = categories["share"].to_numpy()
    category = categories["id"].to_numpy()[rng.choice(len(share), n, p=share / share.sum())]
    status = rng.choice(list(STATUS_SHARES), n, p=list(STATUS_SHARES.values()))
    # Recent reports are still open; a report's status is only open-like if it is young-ish.
    young = age_days < rng.exponential(120, n)
    status = np.where(np.isin(status, OPEN_STATUSES) & ~young, "closed", status)
    worked = pd.to_timedelta(rng.exponential(72, n), unit="h")
    done = np.isin(status, ("closed", "resolved"))
    resolved = pd.Series(created + worked).where(done)
    # Open work has no resolution time (a missing time compares false, so it is kept as is).
    resolved = resolved.where(resolved.isna() | (resolved < pd.Timestamp(NOW)), pd.Timestamp(NOW))
    return pd.DataFrame(
        {
            "lon": lons,
            "lat": lats,
            "category_id": category,
            "created_at": created,
            "updated_at": resolved.fillna(pd.Series(created)),
            "status": status,
            "resolved_at": resolved,
            "description": "Generated for the national benchmark",
            "source": "bench",
        }
    )


def add_reports(engine: Engine, n: int, *, seed: int, chunk: int = 200_000) -> float:
    """Store ``n`` generated reports through the import path; seconds taken."""
    rng = np.random.default_rng(seed)
    with engine.connect() as conn:
        categories = pd.DataFrame(
            conn.execute(text("SELECT id, code FROM categories ORDER BY code")).all(),
            columns=["id", "code"],
        )
    shares = {row[0]: row[4] for row in _CATEGORIES}
    categories["share"] = categories["code"].map(shares)
    started = time.perf_counter()
    stored = 0
    for first in range(0, n, chunk):
        k = min(chunk, n - first)
        lons, lats = national_points(engine, rng, k)
        with engine.begin() as conn:
            stored += insert_reports(
                conn, history(rng, lons, lats, categories), settings=RoutingSettings()
            ).inserted
        log(f"  {stored:,} reports stored")
    seconds = time.perf_counter() - started
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) reports, report_events"))
        conn.execute(text("CHECKPOINT"))
    return seconds


def copy_database(url: str, source: str, target: str) -> str:
    """CREATE DATABASE ``target`` TEMPLATE ``source``; its URL (nobody may be on ``source``)."""
    engine = make_engine(url.replace(f"/{source}?", "/postgres?"), pool_size=1)
    for attempt in range(20):
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'CREATE DATABASE "{target}" TEMPLATE "{source}"'))
            break
        except OperationalError:
            # Autovacuum may be on the source for a moment; a template needs it alone.
            if attempt == 19:
                raise
            time.sleep(1)
    engine.dispose()
    return url.replace(f"/{source}?", f"/{target}?")


def settle(url: str, dropped: str) -> None:
    """Drop database ``dropped`` and vacuum the one at ``url``: what follows is timed at rest.

    A database of a million freshly written rows draws autovacuum for minutes, on one of
    the machine's two cores; pages timed meanwhile came out a third slower, and by chance.
    """
    engine = make_engine(url, pool_size=1)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)'))
        conn.execute(text("VACUUM (ANALYZE)"))
        conn.execute(text("CHECKPOINT"))
    engine.dispose()


def busiest(conn: Connection) -> dict[str, Any]:
    """The zone and the team with the most open reports (what the pages are timed on).

    ``bbox`` is that zone's extent.
    """
    found: dict[str, Any] = {}
    for kind, table in (("zone", "zones"), ("team", "teams")):
        row = conn.execute(
            text(
                f"SELECT x.id, x.code, count(*) AS n FROM reports AS r JOIN {table} AS x "
                f"ON x.id = r.{kind}_id WHERE r.status = ANY(:open) "
                "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1"
            ),
            {"open": list(OPEN_STATUSES)},
        ).one()
        found |= {f"{kind}_id": row.id, kind: row.code, f"{kind}_open": row.n}
    extent = conn.execute(
        text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT ST_Extent(geom) AS e FROM zones WHERE id = :id) AS x"
        ),
        {"id": found["zone_id"]},
    ).one()
    found["bbox"] = tuple(float(v) for v in extent)
    return found


# ----------------------------------------------------------------------------- measures


def pages(url: str, where: dict[str, Any], rounds: int) -> dict[str, dict[str, float]]:
    """Server time (median, ms) and bytes of every page, the tiles and ``/healthz``, in process.

    The map pages and tiles are timed by ``bench/pages_national.py``'s functions; the crew
    work view of the busiest team and the ``/api/reports`` zone+status page are added here.
    """
    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        planner = create_api_key(conn, name="bench planner", role="planner").secret
    engine.dispose()
    staff = {"X-API-Key": planner}
    extra = {
        "/work": (f"/work?team={where['team']}", staff),
        API_ZONE_PAGE: (f"/api/reports?zone={where['zone_id']}&status=open&limit=100", {}),
    }
    app = create_app(AppSettings(database=DatabaseSettings(database_url=url)))
    with TestClient(app) as client:
        page_ms, page_bytes, healthz_ms = pages_national.page_figures(
            client, zone=where["zone"], planner=planner, rounds=rounds
        )
        tile_ms, tile_bytes = pages_national.tile_figures(client, rounds=rounds)
        for name, (path, headers) in extra.items():
            answer = client.get(path, headers=headers)
            answer.raise_for_status()

            def get(path: str = path, headers: dict[str, str] = headers) -> None:
                client.get(path, headers=headers).raise_for_status()

            page_ms[name] = median_ms(get, rounds)
            page_bytes[name] = len(answer.content)
    return {
        "ms": {k: round(v, 1) for k, v in page_ms.items()},
        "bytes": dict(page_bytes),
        "tile_ms": {k: round(v, 1) for k, v in tile_ms.items()},
        "tile_bytes": dict(tile_bytes),
        "healthz_ms": {"/healthz": round(healthz_ms, 2)},
    }


def dashboard_wards(conn: Connection) -> Any:
    """The ward dashboard's measures of its default window, as its tiled page reads them."""
    start, end = dashboard_window(None, None)
    return ward_measures(conn, created_from=start, created_to=end, simplify_m=None, median=False)


# The rows of the window's whole months and weeks and of its other days, summed.
_KEPT_WINDOW = (
    "SELECT sum(reports) FROM (SELECT reports FROM ward_period_measures "
    "WHERE (period = 'month' AND first_day = ANY(:months)) "
    "OR (period = 'week' AND first_day = ANY(:weeks)) "
    "UNION ALL SELECT reports FROM ward_day_measures WHERE day = ANY(:days)) AS kept"
)


def queries(engine: Engine, where: dict[str, Any], rounds: int) -> dict[str, float]:
    """Zone heat and the ward dashboard's aggregate, each beside the kept rows it reads."""
    staff = Principal(role="admin")
    zone = ReportFilter(zone_ids=(where["zone_id"],), statuses=OPEN_STATUSES)
    start, end = dashboard_window(None, None)
    parts = window_parts(start.date(), end.date())
    kept = {"months": list(parts.months), "weeks": list(parts.weeks), "days": list(parts.days)}
    view = where["bbox"]
    level = round(float(np.log2(cell_size_deg(view, max_cells=4000))))
    with engine.connect() as conn:
        return {
            "heat_ms": median_ms(
                lambda: heat_grid(conn, zone, bbox=view, max_cells=4000, principal=staff), rounds
            ),
            # The zone's kept counts at the heat's grid, summed: what the heat reads at least.
            "heat_ceiling_ms": median_ms(
                lambda: conn.execute(
                    text(
                        "SELECT sum(staff_reports) FROM open_heat_cells "
                        "WHERE level = :level AND zone_id = :z"
                    ),
                    {"z": where["zone_id"], "level": level},
                ).scalar_one(),
                rounds,
            ),
            "ward_aggregate_ms": median_ms(lambda: dashboard_wards(conn), rounds),
            # The window's kept rows, summed: what the dashboard reads at least.
            "ward_aggregate_ceiling_ms": median_ms(
                lambda: conn.execute(text(_KEPT_WINDOW), kept).scalar_one(), rounds
            ),
        }


def import_rate(url: str, n: int, folder: Path, postmaster: int | None) -> dict[str, Any]:
    """The report import of an ``n``-row Traffy CSV, beside COPY of the file and a CTAS join,
    and beside its INSERTs alone (``import_speed.insert_floor``); with the database's CPU
    seconds of each (``postmaster``: the cluster's)."""
    engine = make_engine(url, pool_size=2)
    path = import_speed.write_traffy_csv(engine, folder / "traffy.csv", rows=n)
    ceiling_found = import_speed.import_ceiling(engine, path, postmaster=postmaster)
    found = import_speed.measure_import(
        engine, path, rejects=folder / "rejects.csv", postmaster=postmaster
    )
    floor = import_speed.insert_floor(engine, floors=("insert",), postmaster=postmaster)
    engine.dispose()
    ratio = found["import_rows_per_s"] / ceiling_found["rows_per_s"]
    return found | {
        "import_ceiling": ceiling_found,
        "import_ratio": round(ratio, 3),
        "import_insert_floor": floor["insert"],
    }


def single_intake(small: Engine, full: Engine, rounds: int, per_round: int) -> dict[str, float]:
    """Single durable intake on the 10k city and at N, alternated, beside a prepared INSERT."""
    rng = np.random.default_rng(9)
    codes = [row[0] for row in _CATEGORIES]
    rates: dict[str, list[float]] = {"small": [], "full": [], "ceiling": []}
    with full.connect() as conn:
        category = conn.execute(text("SELECT min(id) FROM categories")).scalar_one()
    for _ in range(rounds):
        for name, engine in (("small", small), ("full", full)):
            lons, lats = national_points(engine, rng, per_round)
            rates[name].append(
                intake_history.single_intake_rate(
                    engine, points=list(zip(lons, lats, strict=True)), categories=codes
                )
            )
        lons, lats = national_points(full, rng, per_round)
        rates["ceiling"].append(
            intake_history.prepared_insert_rate(
                full, points=list(zip(lons, lats, strict=True)), category_id=category
            )
        )
    found = {name: round(statistics.median(values), 1) for name, values in rates.items()}
    return {
        "single_intake_per_s_small": found["small"],
        "single_intake_per_s_full": found["full"],
        "prepared_insert_per_s": found["ceiling"],
    }


def service_env(url: str) -> dict[str, str]:
    """The service's environment under load: ``url``, and no limit on anonymous intake."""
    return {"ISSUEMAP_DATABASE_URL": url, "ISSUEMAP_RATE_LIMIT_ANONYMOUS": "1000000000/minute"}


def http_intake(url: str, args: argparse.Namespace, where: dict[str, Any]) -> dict[str, Any]:
    """POST /api/reports with 16 clients (wrk), and the zone page's requests/s beside tipg."""
    port = serving.free_port()
    env = service_env(url)
    command = serving.uvicorn_command(port, args.workers)
    found: dict[str, Any] = {}
    with serving.running(command, port=port, env=env, cwd=serving.ROOT) as (base, _):
        http_load.wrk(base, script="post_report.lua", connections=args.clients, seconds=3)
        post = http_load.wrk(
            base, script="post_report.lua", connections=args.clients, seconds=args.seconds
        )
        seconds = post["duration_us"] / 1e6
        found["http_intake_per_s"] = round(post["requests"] / seconds, 1)
        found["http_p99_ms"] = round(post["p99_us"] / 1000, 1)
        found["http_non_2xx"] = post["errors_status"]
        found |= tipg_side_by_side(url, args, where, ours=base)
    codes = [row[0] for row in _CATEGORIES]
    found["database_alone_per_s"] = round(
        http_load.database_ceiling(
            url, categories=codes, clients=args.clients, seconds=args.seconds
        ),
        1,
    )
    found["http_intake_ratio"] = round(
        found["http_intake_per_s"] / found["database_alone_per_s"], 3
    )
    return found


def tipg_python() -> tuple[Path | None, str]:
    """tipg's own virtualenv (made once, cached), or None and why it could not be had."""
    venv = Path.home() / ".cache" / "issuemap-bench" / f"tipg-{TIPG_VERSION}"
    python = venv / "bin" / "python"
    if python.exists():
        return python, ""
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
    if made.returncode == 0:
        made = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"tipg=={TIPG_VERSION}", "uvicorn"],
            capture_output=True,
            text=True,
        )
    if made.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        return None, f"tipg {TIPG_VERSION} could not be installed: {made.stderr[-400:]}"
    return python, ""


def zone_page_path(where: dict[str, Any]) -> str:
    """The ``/api/reports`` zone+status page timed here: the busiest zone's open reports."""
    return f"/api/reports?zone={where['zone_id']}&status=open&limit=100"


def requests_per_s(url: str, args: argparse.Namespace, seconds: int) -> float:
    """GETs of ``url`` per second with ``--clients`` connections (wrk)."""
    got = http_load.wrk(url, script="summary.lua", connections=args.clients, seconds=seconds)
    return got["requests"] / (got["duration_us"] / 1e6)


def tipg_side_by_side(
    url: str, args: argparse.Namespace, where: dict[str, Any], *, ours: str
) -> dict[str, Any]:
    """The zone page on our service at ``ours`` and tipg's same items query, under wrk.

    Both read the same database; they take turns (``--page-rounds`` of ``--page-seconds``
    each), so load from elsewhere on the machine falls on both, and the ratio is the
    median of the rounds' own ratios.
    """
    page = ours + zone_page_path(where)

    def without_tipg(why: str) -> dict[str, Any]:
        log(f"tipg_ratio is null: {why}")
        return {
            "api_zone_page_per_s": round(requests_per_s(page, args, args.page_seconds), 1),
            "tipg_ratio": None,
            "tipg_note": why,
        }

    python, why = tipg_python()
    if python is None:
        return without_tipg(why)
    parts = make_url(url)
    socket_dir = quote(str(parts.query["host"]), safe="")
    # asyncpg takes a percent-encoded socket folder as the host; tipg insists on a host.
    plain = f"postgresql://{parts.username}@{socket_dir}/{parts.database}"
    port = serving.free_port()
    env = {
        "DATABASE_URL": plain,
        "TIPG_DB_SCHEMAS": '["public"]',
        "TIPG_DB_TABLES": '["public.reports"]',
        "TIPG_MAX_FEATURES_PER_QUERY": "100",
    }
    command = [
        str(python),
        *("-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(args.workers), "--no-access-log"),
    ]
    path = f"/collections/public.reports/items?zone_id={where['zone_id']}&status=open&limit=100"
    rates: list[tuple[float, float]] = []
    try:
        with serving.running(command, port=port, env=env, cwd=Path(tempfile.gettempdir())) as (
            base,
            _,
        ):
            probe = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", base + path],
                capture_output=True,
                text=True,
            ).stdout
            if probe != "200":
                return without_tipg(f"tipg answered {probe} to {path}")
            for warm in (page, base + path):
                requests_per_s(warm, args, 2)
            for _ in range(args.page_rounds):
                rates.append(
                    (
                        requests_per_s(page, args, args.page_seconds),
                        requests_per_s(base + path, args, args.page_seconds),
                    )
                )
    except RuntimeError as error:
        return without_tipg(f"tipg did not start: {str(error)[-400:]}")
    return {
        "api_zone_page_per_s": round(statistics.median(o for o, _ in rates), 1),
        "tipg_per_s": round(statistics.median(t for _, t in rates), 1),
        "tipg_ratio": round(statistics.median(o / t for o, t in rates), 3),
    }


def existing(args: argparse.Namespace) -> dict[str, Any]:
    """The zone page beside tipg, and with ``--explain`` the plans, on the database at ``--url``.

    Nothing is built, migrated or written: this is for a national database that is already
    there (say a development copy), to rerun the read paths quickly.
    """
    engine = make_engine(args.url, pool_size=1)
    with engine.connect() as conn:
        where = busiest(conn)
        result: dict[str, Any] = {
            "reports": conn.execute(text("SELECT count(*) FROM reports")).scalar_one(),
            "busiest": where,
        }
    log(f"busiest: {where}")
    if args.explain:
        result["explain_seq_scans_of_reports"] = explain(engine, where)
    engine.dispose()
    app = create_app(AppSettings(database=DatabaseSettings(database_url=args.url)))
    with TestClient(app) as client:
        client.get(zone_page_path(where)).raise_for_status()
        result["api_zone_page_ms"] = median_ms(
            lambda: client.get(zone_page_path(where)).raise_for_status(), args.rounds
        )
    log("the zone page beside tipg", result)
    port = serving.free_port()
    command = serving.uvicorn_command(port, args.workers)
    with serving.running(command, port=port, env=service_env(args.url), cwd=serving.ROOT) as (
        base,
        _,
    ):
        result |= tipg_side_by_side(args.url, args, where, ours=base)
    return result


# ----------------------------------------------------------------------------- plans


@contextmanager
def plans(conn: Connection) -> Iterator[list[str]]:
    """Collect the EXPLAIN (ANALYZE, BUFFERS) plan of every statement run on ``conn``.

    ``auto_explain`` logs each plan at LOG level; with ``client_min_messages = log`` they
    come back to this client as notices, so the plans are those of the real queries.
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    found: list[str] = []

    def keep(notice: Any) -> None:
        found.append(str(notice.message_primary))

    raw.add_notice_handler(keep)
    # On the driver's connection: an export's streaming would wrap SQLAlchemy's in a cursor.
    raw.execute("LOAD 'auto_explain'")
    for setting in (
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_analyze = on",
        "auto_explain.log_buffers = on",
        "auto_explain.log_nested_statements = on",
        "client_min_messages = log",
    ):
        raw.execute(f"SET {setting}")
    try:
        yield found
    finally:
        raw.execute("SET client_min_messages = notice")
        raw.execute("SET auto_explain.log_min_duration = -1")
        raw.remove_notice_handler(keep)


def explain(engine: Engine, where: dict[str, Any]) -> list[str]:
    """Print the plans of the list, count, export, heat, tile and ward-aggregate queries.

    Returns the names of those whose plan scans the whole reports table.
    """
    public = Principal(role="public")
    staff = Principal(role="admin")
    zone_open = ReportFilter(zone_ids=(where["zone_id"],), statuses=("open",))
    calls: dict[str, Callable[[Connection], Any]] = {
        "list: /api/reports zone+status page": lambda c: report_page(
            c, zone_open, public, limit=100
        ),
        "count: numberMatched of that page": lambda c: count_reports(
            c, zone_open, public, at_most=MATCH_COUNT_LIMIT
        ),
        "list: every report, first page": lambda c: report_page(
            c, ReportFilter(), public, limit=100
        ),
        "list: a public bbox page over the busiest zone": lambda c: report_page(
            c, ReportFilter(bbox=where["bbox"]), public, limit=100
        ),
        "list: the busiest team's open work, soonest due": lambda c: find_reports(
            c,
            ReportFilter(team_ids=(where["team_id"],), statuses=OPEN_STATUSES),
            staff,
            limit=100,
            order="due",
        ),
        "export: the zone's open reports, streamed": lambda c: sum(
            1 for _ in stream_reports(c, zone_open, staff)
        ),
        "heat: the busiest zone": lambda c: heat_grid(
            c,
            ReportFilter(zone_ids=(where["zone_id"],), statuses=OPEN_STATUSES),
            bbox=where["bbox"],
            max_cells=4000,
            principal=staff,
        ),
        "aggregate: ward dashboard, last 90 days": dashboard_wards,
    }
    try:
        from geo.maps.tiles import boundary_tile

        calls["tile: wards at z12 over Bangkok"] = lambda c: boundary_tile(
            c, "wards", 12, 3196, 1889, lang="th"
        )
    except ImportError:
        pass
    cliffs: list[str] = []
    with engine.connect() as conn:
        for name, call in calls.items():
            with plans(conn) as found:
                call(conn)
            conn.rollback()
            # The driver's own look-ups (cursor names, SRS rows) are not the query's plan.
            found = [p for p in found if "pg_catalog" not in p and "spatial_ref_sys" not in p]
            seq = any("Seq Scan on reports" in p for p in found)
            if seq:
                cliffs.append(name)
            verdict = "SEQUENTIAL SCAN OF REPORTS" if seq else "no sequential scan of reports"
            print(f"\n===== {name}: {len(found)} statement(s); {verdict}")
            for plan in found:
                print(plan)
    return cliffs


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reports", type=int, default=1_400_000)
    parser.add_argument("--explain", action="store_true", help="print the plans at N")
    parser.add_argument("--rounds", type=int, default=3, help="timed requests per page")
    parser.add_argument("--intake-rounds", type=int, default=3)
    parser.add_argument("--intake-per-round", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=15, help="each wrk run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--page-rounds", type=int, default=3, help="zone page vs tipg turns")
    parser.add_argument("--page-seconds", type=int, default=5, help="each turn's wrk run")
    parser.add_argument(
        "--url",
        help="an existing national database: build nothing, write nothing; only the zone "
        "page beside tipg (and --explain's plans)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run make setup (or apt-get install wrk)")
    if args.url:
        print(json.dumps(existing(args), ensure_ascii=False, default=str))
        return
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: the national boundaries come from there")
    started = time.perf_counter()
    result: dict[str, Any] = {"reports": args.reports}
    with (
        serving.cluster("issuemap-national-", durable=True) as cluster,
        tempfile.TemporaryDirectory(prefix="issuemap-national-") as scratch,
    ):
        cluster.ensure_database("national")
        url = cluster.url("national")
        upgrade(url)
        engine = make_engine(url, pool_size=2)
        result["boundary_import_s"] = build_city(engine)
        with engine.connect() as conn:
            result["wards"] = conn.execute(text("SELECT count(*) FROM wards")).scalar_one()
            result["zones"] = conn.execute(text("SELECT count(*) FROM zones")).scalar_one()
        engine.dispose()
        urls = {name: copy_database(url, "national", name) for name in ("small", "import")}
        engines = {
            "full": make_engine(url, pool_size=2),
            "small": make_engine(urls["small"], pool_size=2),
        }
        log(f"small city: {SMALL:,} reports")
        add_reports(engines["small"], SMALL, seed=1)
        log(f"full city: {args.reports:,} reports")
        result["history_load_s"] = round(add_reports(engines["full"], args.reports, seed=2), 1)

        log("report import", result)
        result |= {
            "import_" + k if not k.startswith("import") else k: v
            for k, v in import_rate(
                urls["import"], args.reports, Path(scratch), cluster.postmaster_pid()
            ).items()
        }
        log("bulk routing", result)
        result |= routing.bulk_routing(engines["full"], args.reports)
        settle(url, "import")

        with engines["full"].connect() as conn:
            where = busiest(conn)
        result["busiest"] = where
        log(f"busiest at N: {where}")
        log("pages", result)
        # The same zone and team in both cities (their ids agree: one template).
        at = {
            name: pages(u, where, args.rounds)
            for name, u in (("small", urls["small"]), ("full", url))
        }
        full, small = at["full"], at["small"]
        result["page_ms"] = {k: v for k, v in full["ms"].items() if k != API_ZONE_PAGE}
        result["page_bytes"] = {k: v for k, v in full["bytes"].items() if k != API_ZONE_PAGE}
        result["page_ms_10k"] = {k: v for k, v in small["ms"].items() if k != API_ZONE_PAGE}
        result["page_full_over_10k"] = {
            k: round(v / small["ms"][k], 2)
            for k, v in result["page_ms"].items()
            if small["ms"].get(k)
        }
        result["healthz_ms"] = full["healthz_ms"]["/healthz"]
        result["tile_ms"] = full["tile_ms"]
        result["tile_bytes"] = full["tile_bytes"]
        result["api_zone_page_ms"] = full["ms"][API_ZONE_PAGE]
        result["api_zone_page_ms_10k"] = small["ms"][API_ZONE_PAGE]
        result |= queries(engines["full"], where, args.rounds)
        if args.explain:
            result["explain_seq_scans_of_reports"] = explain(engines["full"], where)
        log("Gi* hot spots", result)
        result |= {
            name if name.startswith("hotspots") else f"hotspots_{name}": value
            for name, value in hotspots.hotspot_figures(
                engines["full"], cell_m=None, permutations=0, rounds=1
            ).items()
        }

        log("single intake", result)
        result |= single_intake(
            engines["small"], engines["full"], args.intake_rounds, args.intake_per_round
        )
        result["single_intake_full_over_small"] = round(
            result["single_intake_per_s_full"] / result["single_intake_per_s_small"], 3
        )
        for engine in engines.values():
            engine.dispose()
        log("HTTP intake and the zone page beside tipg", result)
        result |= http_intake(url, args, where)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
