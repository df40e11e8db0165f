"""Heat maps from the maintained cell counts equal heat maps counted from the reports.

A random life of the tiny city (seeded): single and batch intake, status changes and their
undo, merges, hiding, forwards, re-routes, a zone boundary replace, a moved and a deleted
report. Afterwards ``open_heat_cells`` equals a count from scratch, and ``heat_grid`` gives
the same cells through it as over the reports, for the public, staff and a field team,
over boxes cut anywhere, with and without a category.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box
from sqlalchemy import Connection, Engine, text

from geo.access.policy import ANONYMOUS, Principal, point_sql
from geo.city.boundary_writes import import_boundaries
from geo.errors import ConflictError
from geo.maps.heat import MAINTAINED_LEVELS, MAINTAINED_ROUNDING_M, heat_grid
from geo.reports.forwarding import forward_report
from geo.reports.moderation import hide_report, unhide_report
from geo.reports.search import ReportFilter
from geo.reports.store import create_report, insert_reports, reroute_reports
from geo.reports.workflow import change_status, merge_duplicate, next_statuses, undo_status_change
from geo.settings import RoutingSettings
from geo.vocabulary import OPEN_STATUSES, REPORT_STATUSES
from tests.fixtures import TinyCity, load_tiny_city

ADMIN = Principal(role="admin", key_id=1, name="dispatch")
PLANNER = Principal(role="planner", key_id=2, name="planner")
ROUTING = RoutingSettings()
GRID = 2.0**-11
"""Points on multiples of this lie on the edges of the maintained cells (ties of ``rint``)."""

BOXES = [
    (100.0, 8.40, 100.02, 8.41),  # the city
    (99.9, 8.3, 100.1, 8.5),
    (100.003, 8.402, 100.017, 8.4085),
    (100.0101, 8.4, 100.0199, 8.41),
    # Edges on cell edges of the finer grids.
    (100.0 + 3 * GRID, 8.0 + 821 * GRID, 100.0 + 37 * GRID, 8.0 + 838 * GRID),
]
MAX_CELLS = (9, 30, 90, 300, 2_500)


def _point(rng: random.Random) -> tuple[float, float]:
    if rng.random() < 0.25:
        return 100.0 + rng.randint(0, 40) * GRID, 8.0 + rng.randint(820, 839) * GRID
    return 100.0 + rng.random() * 0.02, 8.40 + rng.random() * 0.01


def _ids(conn: Connection, where: str) -> list[int]:
    return list(conn.execute(text(f"SELECT id FROM reports WHERE {where} ORDER BY id")).scalars())


def _replace_zones(engine: Engine, folder: Path, split: float) -> None:
    zones = gpd.GeoDataFrame(
        {"code": ["Z1", "Z2"], "name": ["Zone 1", "Zone 2"], "team": ["T1", "T2"]},
        geometry=[box(100.0, 8.40, split, 8.41), box(split, 8.40, 100.02, 8.41)],
        crs=4326,
    )
    path = folder / f"zones-{split}.geojson"
    zones.to_file(path, driver="GeoJSON", engine="pyogrio")
    import_boundaries(
        engine,
        path,
        layer="zones",
        id_field="code",
        name_field="name",
        team_field="team",
        force=True,
    )


def _step(engine: Engine, rng: random.Random, folder: Path, undoable: list[int]) -> None:
    """One random thing that happens to the city's reports."""
    kind = rng.choices(
        [
            "intake",
            "batch",
            "status",
            "undo",
            "merge",
            "hide",
            "forward",
            "reroute",
            "move",
            "delete",
            "zones",
        ],
        weights=[10, 3, 10, 3, 2, 3, 3, 1, 1, 1, 0.3],
    )[0]
    if kind == "zones":
        _replace_zones(engine, folder, rng.choice([100.008, 100.012, 100.015]))
        return
    with engine.begin() as conn:
        opened = _ids(conn, "status IN ('open', 'acknowledged', 'in_progress', 'reopened')")
        every = _ids(conn, "true")
        if kind == "intake" or not every:
            lon, lat = _point(rng)
            create_report(
                conn,
                lon=lon,
                lat=lat,
                category=rng.choice(["road", "flood", "tree"]),
                description="",
                settings=ROUTING,
            )
        elif kind == "batch":
            n = rng.randint(1, 30)
            points = [_point(rng) for _ in range(n)]
            categories = dict(conn.execute(text("SELECT code, id FROM categories")).all())
            insert_reports(
                conn,
                pd.DataFrame(
                    {
                        "lon": [p[0] for p in points],
                        "lat": [p[1] for p in points],
                        "category_id": [categories[rng.choice(list(categories))] for _ in points],
                        "created_at": datetime.now(UTC),
                        "status": [rng.choice(REPORT_STATUSES[:-1]) for _ in points],
                    }
                ),
                settings=ROUTING,
            )
        elif kind == "status":
            rid = rng.choice(every)
            status = conn.execute(
                text("SELECT status FROM reports WHERE id = :id"), {"id": rid}
            ).scalar_one()
            moves = next_statuses(status)
            if moves:
                undoable.append(
                    change_status(conn, rid, rng.choice(moves), principal=ADMIN).event_id
                )
        elif kind == "undo" and undoable:
            # A report that changed since has nothing to take back.
            with contextlib.suppress(ConflictError):
                undo_status_change(conn, undoable.pop(), principal=ADMIN)
        elif kind == "merge" and len(opened) >= 2:
            duplicate, original = rng.sample(opened, 2)
            merge_duplicate(conn, duplicate, original, principal=ADMIN)
        elif kind == "hide":
            rid = rng.choice(every)
            hidden = conn.execute(
                text("SELECT hidden_at IS NOT NULL FROM reports WHERE id = :id"), {"id": rid}
            ).scalar_one()
            if hidden:
                unhide_report(conn, rid, principal=PLANNER)
            else:
                hide_report(conn, rid, principal=PLANNER, reason="a name in the photo")
        elif kind == "forward" and opened:
            rid = rng.choice(opened)
            team = conn.execute(
                text(
                    "SELECT t.code FROM teams AS t, reports AS r WHERE r.id = :id "
                    "AND t.id IS DISTINCT FROM r.team_id ORDER BY random() LIMIT 1"
                ),
                {"id": rid},
            ).scalar_one()
            forward_report(conn, rid, to_team=team, reason="theirs", principal=ADMIN, notify=None)
        elif kind == "reroute":
            reroute_reports(conn, settings=ROUTING, actor="test")
        elif kind == "move":
            lon, lat = _point(rng)
            conn.execute(
                text(
                    "UPDATE reports SET geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) "
                    "WHERE id = :id"
                ),
                {"id": rng.choice(every), "lon": lon, "lat": lat},
            )
        elif kind == "delete":
            conn.execute(
                text(
                    "DELETE FROM reports WHERE id = (SELECT r.id FROM reports AS r WHERE NOT "
                    "EXISTS (SELECT FROM reports AS d WHERE d.duplicate_of = r.id) "
                    "ORDER BY random() LIMIT 1)"
                )
            )


def _live(engine: Engine, seed: int, steps: int, folder: Path) -> TinyCity:
    """The tiny city after ``steps`` random things happened to its reports."""
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        conn.execute(text("SELECT setseed(:s)"), {"s": seed / 1000})
    rng = random.Random(seed)
    undoable: list[int] = []
    for _ in range(steps):
        _step(engine, rng, folder, undoable)
    return city


def _kept(conn: Connection) -> Counter[tuple[object, ...]]:
    """The kept counts by (staff, level, zone, category, cell_x, cell_y), zeros left out."""
    kept: Counter[tuple[object, ...]] = Counter()
    for r in conn.execute(text("SELECT * FROM open_heat_cells")).mappings():
        key = (r["level"], r["zone_id"], r["category_id"], r["cell_x"], r["cell_y"])
        for staff in (True, False):
            n = r["staff_reports" if staff else "public_reports"]
            if n:
                kept[(staff, *key)] = n
    return kept


def _recounted(conn: Connection) -> Counter[tuple[object, ...]]:
    """The cells counted from scratch: the heat query's own point and ST_SnapToGrid."""
    counted: Counter[tuple[object, ...]] = Counter()
    for principal, staff in ((ADMIN, True), (ANONYMOUS, False)):
        point = point_sql(principal, public_rounding_m=MAINTAINED_ROUNDING_M)
        rows = conn.execute(
            text(
                "SELECT l.level, coalesce(r.zone_id, 0) AS zone_id, r.category_id, "
                "  ST_X(c.cell) / l.step AS x, ST_Y(c.cell) / l.step AS y, count(*) AS n "
                "FROM reports AS r CROSS JOIN unnest(CAST(:levels AS int[]), "
                "  CAST(:steps AS float8[])) AS l (level, step), "
                f" LATERAL (SELECT ST_SnapToGrid(ST_MakePoint({point.lon}, {point.lat}), "
                "  l.step) AS cell) AS c "
                "WHERE r.status = ANY(:open) AND (:staff OR r.hidden_at IS NULL) "
                "GROUP BY 1, 2, 3, 4, 5"
            ),
            point.params
            | {
                "levels": list(MAINTAINED_LEVELS),
                "steps": [2.0**k for k in MAINTAINED_LEVELS],
                "open": list(OPEN_STATUSES),
                "staff": staff,
            },
        ).all()
        for r in rows:
            assert r.x == int(r.x) and r.y == int(r.y)
            counted[(staff, r.level, r.zone_id, r.category_id, int(r.x), int(r.y))] = r.n
    return counted


def _differences(conn: Connection, city: TinyCity) -> list[str]:
    """Every view whose heat from the kept counts differs from the heat over the reports."""
    zones = list(conn.execute(text("SELECT id FROM zones ORDER BY id")).scalars())
    t1 = Principal(role="field_team", team_id=city.teams["T1"], key_id=3, name="crew one")
    t1_zones = tuple(
        conn.execute(
            text("SELECT id FROM zones WHERE team_id = :t ORDER BY id"), {"t": city.teams["T1"]}
        ).scalars()
    )
    views: list[tuple[Principal, tuple[int, ...], float]] = [
        (ANONYMOUS, (), MAINTAINED_ROUNDING_M),
        (ANONYMOUS, (), 30.0),  # another public grid: counted from the reports
        (PLANNER, (), MAINTAINED_ROUNDING_M),
        (ADMIN, (zones[-1],), MAINTAINED_ROUNDING_M),
        (t1, t1_zones, MAINTAINED_ROUNDING_M),
    ]
    found = []
    for principal, zone_ids, rounding in views:
        for categories in ((), ("road",), ("flood", "tree")):
            flt = ReportFilter(statuses=OPEN_STATUSES, zone_ids=zone_ids, categories=categories)
            for bbox in BOXES:
                for max_cells in MAX_CELLS:
                    got, want = (
                        heat_grid(
                            conn,
                            flt,
                            bbox=bbox,
                            max_cells=max_cells,
                            principal=principal,
                            public_rounding_m=rounding,
                            maintained=maintained,
                        )
                        for maintained in (True, False)
                    )
                    if got != want:
                        found.append(f"{principal.role} {zone_ids} {categories} {bbox} {max_cells}")
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kept_counts_equal_a_count_from_scratch_after_a_random_life(
    engine: Engine, tmp_path: Path, seed: int
) -> None:
    city = _live(engine, seed, 70, tmp_path)
    with engine.connect() as conn:
        opened = conn.execute(
            text("SELECT count(*) FROM reports WHERE status = ANY(:s)"), {"s": list(OPEN_STATUSES)}
        ).scalar_one()
        assert opened > 20
        assert _kept(conn) == _recounted(conn)
        # A cell whose counts both reached zero is deleted.
        assert not conn.execute(
            text(
                "SELECT count(*) FROM open_heat_cells "
                "WHERE staff_reports = 0 AND public_reports = 0"
            )
        ).scalar_one()
        assert _differences(conn, city) == []


def test_the_check_sees_counts_nobody_kept(engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER reports_open_heat_cells_insert ON reports"))
    city = _live(engine, 4, 20, tmp_path)
    with engine.connect() as conn:
        assert _kept(conn) != _recounted(conn)
        differing = _differences(conn, city)
    # Both the public and the staff views, over whole cells and over cut ones, came from
    # the kept counts.
    assert any(d.startswith("public ()") for d in differing)
    assert any(d.startswith("planner") for d in differing)
    assert any(d.startswith("field_team") for d in differing)
