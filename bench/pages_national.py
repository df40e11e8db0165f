"""Map pages at national scale: HTML bytes and server time of every map page, and the tiles.

Run with ``.venv/bin/python bench/pages_national.py [--reports N]``. It starts a throwaway
PostgreSQL cluster and loads Thailand from ``../shared/data/thailand-admin`` (read in place):
the 7,425 tambon as wards and the 928 amphoe as zones, one team per zone, then N reports
(default 20,000; more in Bangkok) routed set-based. Through the app in-process it requests

* ``/``, ``/maps/public``, ``/maps/zone`` (the busiest zone) and ``/maps/wards``, the pages
  the issue's 100 ms and 300 KB targets are about, and ``/maps/wards/measures`` that the
  dashboard fetches; ``/`` also as it was before tiles (every polygon inline), once;
* vector tiles of each layer at the zoom a page first shows and deeper;
* ``/healthz``, the ceiling: a request through the same app that does almost nothing.

Each time is the median over ``--rounds`` requests, printed beside the ceiling. The last line
is one JSON object (``page_ms``, ``page_bytes``, ``tile_ms``, ``tile_bytes``, ...).
``bench/national.py`` can import ``load_thailand``, ``page_figures`` and ``tile_figures``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import serving
from fastapi.testclient import TestClient  # noqa: TID251  (an HTTP client of the whole app)
from maps import random_reports  # the map benchmark's report mix
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from api.deps import replace_app_state
from geo.access.keys import create_api_key
from geo.db.engine import make_engine, upgrade
from geo.maps.tiles import TILE_MIN_ZOOM
from geo.reports.store import insert_reports
from geo.settings import DatabaseSettings, MapSettings, RoutingSettings
from geo.vocabulary import OPEN_STATUSES

DATA = serving.ROOT.parent / "shared" / "data" / "thailand-admin"
TAMBON = "tha_adm3_tambon_simplified.zip"
AMPHOE = "tha_adm2_amphoe.zip"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
HTML_BUDGET = 300_000
MS_BUDGET = 100.0

_BOUNDARY = (
    "INSERT INTO {table} (code, name, name_th, name_en, import_id{team_column}, geom) "
    "VALUES (:code, :name, :name_th, :name_en, :imp{team_value}, "
    "ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_GeomFromWKB(:wkb, 4326)), 3)))"
)


def _import(conn: Any, layer: str, source: str, count: int) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO boundary_imports (layer, source, sha256, feature_count, "
                "repaired_count) VALUES (:layer, :source, 'bench', :n, 0) RETURNING id"
            ),
            {"layer": layer, "source": source, "n": count},
        ).scalar_one()
    )


def load_thailand(engine: Engine, data: Path = DATA) -> dict[str, int]:
    """Thailand's tambon as wards, amphoe as zones (a team each) and two categories.

    The files are read in place (never copied); names are the files' Thai and English ones.
    """
    tambon = pyogrio.read_dataframe(data / TAMBON, encoding="utf-8")
    amphoe = pyogrio.read_dataframe(data / AMPHOE, encoding="utf-8")
    with engine.begin() as conn:
        imp = _import(conn, "wards", TAMBON, len(tambon))
        conn.execute(
            text(_BOUNDARY.format(table="wards", team_column="", team_value="")),
            [
                {
                    "code": r.ADM3_PCODE,
                    "name": r.ADM3_TH,
                    "name_th": r.ADM3_TH,
                    "name_en": r.ADM3_EN,
                    "imp": imp,
                    "wkb": r.geometry.wkb,
                }
                for r in tambon.itertuples()
            ],
        )
        conn.execute(
            text("INSERT INTO teams (code, name, name_th, name_en) VALUES (:c, :th, :th, :en)"),
            [{"c": r.ADM2_PCODE, "th": r.ADM2_TH, "en": r.ADM2_EN} for r in amphoe.itertuples()],
        )
        imp = _import(conn, "zones", AMPHOE, len(amphoe))
        conn.execute(
            text(
                _BOUNDARY.format(
                    table="zones",
                    team_column=", team_id",
                    team_value=", (SELECT id FROM teams WHERE code = :team)",
                )
            ),
            [
                {
                    "code": r.ADM2_PCODE,
                    "name": r.ADM2_TH,
                    "name_th": r.ADM2_TH,
                    "name_en": r.ADM2_EN,
                    "imp": imp,
                    "team": r.ADM2_PCODE,
                    "wkb": r.geometry.wkb,
                }
                for r in amphoe.itertuples()
            ],
        )
        conn.execute(
            text(
                "INSERT INTO categories (code, name_th, name_en, sla_hours) VALUES "
                "('road', 'ถนน', 'Road', 72), ('waste', 'ขยะ', 'Waste', 24)"
            )
        )
        conn.execute(text("ANALYZE wards; ANALYZE zones"))
    return {"wards": len(tambon), "zones": len(amphoe)}


def add_reports(engine: Engine, n: int, *, seed: int = 14) -> int:
    """``n`` reports at points inside tambon, Bangkok's (TH10) twenty times as likely."""
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p), code LIKE 'TH10%' FROM "
                "(SELECT code, ST_PointOnSurface(geom) AS p FROM wards) AS s"
            )
        ).all()
        categories = list(conn.execute(text("SELECT id FROM categories")).scalars())
    points = np.array([(x, y) for x, y, _ in rows], float)
    weights = np.array([20.0 if bangkok else 1.0 for *_, bangkok in rows])
    rng = np.random.default_rng(seed)
    picks = points[rng.choice(len(points), size=len(points) * 4, p=weights / weights.sum())]
    stored = 0
    with engine.begin() as conn:
        while stored < n:
            frame = random_reports(
                rng, min(n - stored, 200_000), points=picks, categories=categories
            )
            done = insert_reports(conn, frame, settings=RoutingSettings())
            stored += done.inserted
            if done.inserted == 0:
                break
        conn.execute(text("ANALYZE reports"))
    return stored


def _timed(client: TestClient, url: str, headers: dict[str, str], rounds: int) -> tuple[float, int]:
    """Median milliseconds of ``rounds`` GETs of ``url`` (after one warm-up), and its bytes."""
    client.get(url, headers=headers).raise_for_status()
    times = []
    size = 0
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        size = len(answer.content)
    return statistics.median(times), size


def page_figures(
    client: TestClient, *, zone: str, planner: str, rounds: int = 5
) -> tuple[dict[str, float], dict[str, int], float]:
    """Server ms and HTML bytes of each map page, and the ``/healthz`` ceiling's ms."""
    staff = {"X-API-Key": planner}
    pages = {
        "/": ("/", {}),
        "/maps/public": ("/maps/public", {}),
        "/maps/zone": (f"/maps/zone?zone={zone}", staff),
        "/maps/wards": ("/maps/wards?measure=count", staff),
        "/maps/wards/measures": ("/maps/wards/measures?measure=count", staff),
    }
    ceiling, _ = _timed(client, "/healthz", {}, rounds)
    page_ms: dict[str, float] = {}
    page_bytes: dict[str, int] = {}
    for name, (url, headers) in pages.items():
        page_ms[name], page_bytes[name] = _timed(client, url, headers, rounds)
    return page_ms, page_bytes, ceiling


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - np.arcsinh(np.tan(np.radians(lat))) / np.pi) / 2 * n)
    return x, y


TILES = [
    # (layer, zoom, where): the zoom a national page first shows, then a city's.
    ("zones", TILE_MIN_ZOOM["zones"], (100.5, 13.75)),
    ("zones", 8, (100.5, 13.75)),
    ("wards", TILE_MIN_ZOOM["wards"], (100.5, 13.75)),
    ("wards", 10, (100.5, 13.75)),
    ("wards", 12, (100.5, 13.75)),
]
"""Tiles over Bangkok, the densest place, from the shallowest zoom each layer is drawn at."""


def tile_figures(client: TestClient, rounds: int = 5) -> tuple[dict[str, float], dict[str, int]]:
    """Server ms and bytes of the ``TILES``, by ``layer/z/x/y``."""
    tile_ms: dict[str, float] = {}
    tile_bytes: dict[str, int] = {}
    for layer, z, (lon, lat) in TILES:
        x, y = _tile(lon, lat, z)
        name = f"{layer}/{z}/{x}/{y}"
        tile_ms[name], tile_bytes[name] = _timed(client, f"/tiles/{name}.pbf?lang=th", {}, rounds)
    return tile_ms, tile_bytes


def main() -> None:
    """Build the national city, measure, print a table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with serving.cluster("issuemap-pages-", durable=False) as cluster:
        cluster.ensure_database("bench")
        url = cluster.url("bench")
        upgrade(url)
        engine = make_engine(url, pool_size=4)
        started = time.perf_counter()
        sizes = load_thailand(engine)
        reports = add_reports(engine, args.reports)
        print(f"{sizes} and {reports:,} reports loaded in {time.perf_counter() - started:.0f} s")
        with engine.begin() as conn:
            planner = create_api_key(conn, name="bench planner", role="planner").secret
            zone = conn.execute(
                text(
                    "SELECT z.code FROM reports AS r JOIN zones AS z ON z.id = r.zone_id "
                    "WHERE r.status = ANY(:open) GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
                ),
                {"open": list(OPEN_STATUSES)},
            ).scalar_one()
        app = create_app(AppSettings(database=DatabaseSettings(database_url=url)))
        with TestClient(app) as client:
            replace_app_state(app, maps=MapSettings())
            page_ms, page_bytes, ceiling = page_figures(
                client, zone=zone, planner=planner, rounds=args.rounds
            )
            tile_ms, tile_bytes = tile_figures(client, rounds=args.rounds)
            # Before tiles: every polygon in the page (one request; it is slow).
            replace_app_state(app, maps=MapSettings(inline_features_max=100_000))
            inline_ms, inline_bytes = _timed(client, "/", {}, 1)
        engine.dispose()
    print(
        f"\nceiling /healthz: {ceiling:.1f} ms   budget: {MS_BUDGET:.0f} ms, "
        f"{HTML_BUDGET // 1000} KB of HTML per page"
    )
    for name, ms in page_ms.items():
        size = page_bytes[name]
        verdict = "ok" if ms <= MS_BUDGET and size <= HTML_BUDGET else "OVER"
        print(
            f"  {name:<22} {ms:8.1f} ms ({ms / ceiling:5.1f}x ceiling) "
            f"{size / 1000:9.1f} KB  {verdict}"
        )
    print(
        f"  {'/ all polygons inline':<22} {inline_ms:8.1f} ms "
        f"({inline_ms / ceiling:5.1f}x ceiling) {inline_bytes / 1000:9.1f} KB  (before tiles)"
    )
    for name, ms in tile_ms.items():
        print(f"  tile {name:<17} {ms:8.1f} ms {tile_bytes[name] / 1000:9.1f} KB")
    print(
        json.dumps(
            {
                "reports": reports,
                **sizes,
                "ceiling_ms": round(ceiling, 2),
                "page_ms": {k: round(v, 1) for k, v in page_ms.items()},
                "page_bytes": page_bytes,
                "inline_overview_ms": round(inline_ms, 1),
                "inline_overview_bytes": inline_bytes,
                "tile_ms": {k: round(v, 1) for k, v in tile_ms.items()},
                "tile_bytes": tile_bytes,
            }
        )
    )


if __name__ == "__main__":
    main()
