"""geo.analysis on layouts whose answers are known: a planted hot spot, a tiny city's SLA."""

from __future__ import annotations

from datetime import UTC, datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box
from sqlalchemy import Engine, text

from geo import analysis
from geo.errors import InvalidInputError
from geo.reports.store import insert_reports
from geo.settings import RoutingSettings
from tests.fixtures import TinyCity, load_tiny_city

JAN = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 13, tzinfo=UTC)


def at(day: int, hour: int = 0) -> datetime:
    return JAN.replace(day=day, hour=hour)


def grid(counts: np.ndarray) -> pd.DataFrame:
    iy, ix = np.indices(counts.shape)
    return pd.DataFrame({"ix": ix.ravel(), "iy": iy.ravel(), "count": counts.ravel()})


@pytest.fixture
def planted() -> tuple[pd.DataFrame, set[tuple[int, int]], set[tuple[int, int]]]:
    """20×20 cells of Poisson(3) noise, a 3×3 block of 15 per cell, a 3×3 block of zeros."""
    counts = np.random.default_rng(7).poisson(3.0, size=(20, 20))
    counts[4:7, 4:7] = 15
    counts[13:16, 13:16] = 0
    hot = {(x, y) for x in range(4, 7) for y in range(4, 7)}
    cold = {(x, y) for x in range(13, 16) for y in range(13, 16)}
    return grid(counts), hot, cold


@pytest.mark.parametrize("permutations", [0, 199])
def test_planted_hotspot_is_significant_and_noise_is_not(
    planted: tuple[pd.DataFrame, set[tuple[int, int]], set[tuple[int, int]]], permutations: int
) -> None:
    cells, hot, cold = planted
    result = analysis.grid_hotspots(cells, permutations=permutations, seed=1)
    cell = {(r.ix, r.iy): r for r in result.itertuples()}

    assert cell[(5, 5)].significance in {"hot 99%", "hot 95%"}
    assert cell[(5, 5)].p < 0.05 and cell[(5, 5)].z > 0
    assert all(cell[c].z > 0 for c in hot)
    assert not any(cell[c].significance.startswith("hot") for c in cold)
    # Away from both plants (and their neighbours) it is noise: at 95% about 1 in 20 cells
    # may be flagged by chance, but no more than that.
    near = {(x + dx, y + dy) for x, y in hot | cold for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    noise = result[[(r.ix, r.iy) not in near for r in result.itertuples()]]
    assert (noise["p"] < 0.05).mean() <= 0.08


def test_uniform_counts_have_no_hotspots() -> None:
    result = analysis.grid_hotspots(grid(np.full((6, 6), 4)))
    assert set(result["significance"]) == {"not significant"}
    assert (result["p"] == 1.0).all()


def test_analytical_z_matches_getis_ord_by_hand() -> None:
    counts = np.array([[1, 2, 0, 1], [3, 9, 2, 0], [1, 4, 1, 1], [0, 1, 0, 2]])
    result = analysis.grid_hotspots(grid(counts), neighbours="rook")
    x = counts.ravel().astype(float)
    n, mean = x.size, x.mean()
    s = np.sqrt((x**2).mean() - mean**2)
    for r in result.itertuples():
        # Gi*: the cell itself and the cells sharing an edge, binary weights.
        near = [
            counts[r.iy + dy, r.ix + dx]
            for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
            if 0 <= r.ix + dx < 4 and 0 <= r.iy + dy < 4
        ]
        w = len(near)
        z = (sum(near) - mean * w) / (s * np.sqrt((n * w - w**2) / (n - 1)))
        assert r.z == pytest.approx(z)


def test_significance_classes_follow_confidence_levels() -> None:
    z = np.array([3.0, 2.0, 1.7, 0.5, -1.7, -2.0, -3.0])
    p = np.array([0.001, 0.04, 0.08, 0.6, 0.08, 0.04, 0.001])
    assert list(analysis.significance(z, p)) == [
        "hot 99%",
        "hot 95%",
        "hot 90%",
        "not significant",
        "cold 90%",
        "cold 95%",
        "cold 99%",
    ]


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(InvalidInputError, match="neighbours"):
        analysis.grid_hotspots(grid(np.ones((3, 3))), neighbours="hexagon")


def _insert(engine: Engine, city: TinyCity, rows: list[dict[str, object]]) -> None:
    frame = pd.DataFrame([{"category": "road", **row} for row in rows])
    frame["category_id"] = frame.pop("category").map(city.categories)
    with engine.begin() as conn:
        result = insert_reports(conn, frame, settings=RoutingSettings())
    assert result.inserted == len(rows)


@pytest.fixture
def sla_city(engine: Engine) -> TinyCity:
    """Five road reports (SLA 48 h) with chosen times, and W-A's population 2,000.

    In W-A (team T1): resolved after 24 h, 72 h (late) and exactly 48 h, and one still open,
    due 8 January, so 120 h overdue on 13 January. In W-B (team T2): one open, not yet due.
    """
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        conn.execute(
            text("UPDATE wards SET properties = '{\"population\": \"2000\"}' WHERE code = 'W-A'")
        )
    a, b = (100.005, 8.405), (100.015, 8.405)
    _insert(
        engine,
        city,
        [
            dict(lon=a[0], lat=a[1], created_at=at(5), status="resolved", resolved_at=at(6)),
            dict(lon=a[0], lat=a[1], created_at=at(5), status="resolved", resolved_at=at(8)),
            dict(lon=a[0], lat=a[1], created_at=at(5, 12), status="closed", resolved_at=at(7, 12)),
            dict(lon=a[0], lat=a[1], created_at=at(6), status="open", resolved_at=None),
            dict(lon=b[0], lat=b[1], created_at=at(12), status="open", resolved_at=None),
        ],
    )
    return city


def test_ward_stats_match_hand_computed_sla(engine: Engine, sla_city: TinyCity) -> None:
    stats = analysis.ward_stats(engine, population_field="population").set_index("code")
    wa, wb = stats.loc["W-A"], stats.loc["W-B"]
    assert (wa.reports, wa.resolved, wa.within_sla) == (4, 3, 2)
    assert wa.within_sla_share == pytest.approx(2 / 3)
    assert wa.median_hours_to_resolve == pytest.approx(48.0)
    assert wa.per_1000 == pytest.approx(2.0)
    assert (wb.reports, wb.resolved) == (1, 0)
    assert pd.isna(wb.within_sla_share) and pd.isna(wb.per_1000)
    assert isinstance(stats, gpd.GeoDataFrame)


def test_team_performance_counts_open_overdue_and_ageing(
    engine: Engine, sla_city: TinyCity
) -> None:
    teams = analysis.team_performance(engine, now=NOW).set_index("team_code")
    t1, t2 = teams.loc["T1"], teams.loc["T2"]
    assert (t1.open, t1.overdue, t1.resolved, t1.within_sla) == (1, 1, 3, 2)
    assert t1.within_sla_share == pytest.approx(2 / 3)
    assert t1.median_hours_overdue == pytest.approx(120.0)
    assert (t1.overdue_1d, t1.overdue_1_3d, t1.overdue_3_7d, t1.overdue_7d_plus) == (0, 0, 1, 0)
    assert (t2.open, t2.overdue, t2.resolved) == (1, 0, 0)
    assert teams.loc["DRAIN"].reports == 0


def test_selection_filters_like_the_api(engine: Engine, sla_city: TinyCity) -> None:
    assert len(analysis.reports_frame(engine, analysis.Selection(wards=("W-B",)))) == 1
    assert len(analysis.reports_frame(engine, analysis.Selection(teams=("T1",)))) == 4
    assert len(analysis.reports_frame(engine, analysis.Selection(statuses=("open",)))) == 2
    assert len(analysis.reports_frame(engine, analysis.Selection(wards=("nowhere",)))) == 0
    late = analysis.Selection(created_from=at(6))
    frame = analysis.reports_frame(engine, late)
    assert len(frame) == 2 and frame.crs.to_epsg() == 4326
    assert "reporter_contact" not in frame


def test_weekly_trends_count_iso_weeks(engine: Engine, sla_city: TinyCity) -> None:
    weeks = analysis.weekly_trends(engine)
    assert weeks.to_dict("records") == [
        {"week": "2026-W02", "category": "road", "reports": 4},
        {"week": "2026-W03", "category": "road", "reports": 1},
    ]


def test_hotspots_find_a_planted_cluster_in_the_database(engine: Engine) -> None:
    with engine.begin() as conn:
        city = load_tiny_city(conn)
    # One report in the middle of every 100 m cell, thirty more in one spot of W-A.
    lons = np.arange(100.0005, 100.02, 0.001)
    lats = np.arange(8.4005, 8.41, 0.001)
    background = [dict(lon=x, lat=y, created_at=at(5)) for x in lons for y in lats]
    cluster = [dict(lon=100.0055, lat=8.4055, created_at=at(5))] * 30
    _insert(engine, city, background + cluster)

    cells = analysis.hotspots(engine, cell_m=100)
    assert cells["count"].sum() == len(background) + len(cluster)
    assert cells.crs.to_epsg() == 4326
    spot = cells[cells.covers(gpd.points_from_xy([100.0055], [8.4055])[0])].iloc[0]
    assert spot["count"] >= 30 and spot["significance"] in {"hot 99%", "hot 95%"}
    # Gi* counts a cell's neighbours too, so the ring around the spot may be hot; no other.
    hot = cells[cells["significance"].str.startswith("hot")]
    assert ((hot["ix"] - spot["ix"]).abs().le(1) & (hot["iy"] - spot["iy"]).abs().le(1)).all()


def test_zone_what_if_reroutes_in_memory_only(engine: Engine, sla_city: TinyCity) -> None:
    # A road report at lon 100.011 is in Z1 (T1) today; a flood report there goes to DRAIN.
    _insert(
        engine,
        sla_city,
        [
            dict(lon=100.011, lat=8.405, created_at=at(12), category="road"),
            dict(lon=100.011, lat=8.405, created_at=at(12), category="flood"),
        ],
    )
    candidate = gpd.GeoDataFrame(
        {"team": ["T1", "T2"]},
        geometry=[box(100.0, 8.40, 100.010, 8.41), box(100.010, 8.40, 100.02, 8.41)],
        crs=4326,
    )
    with engine.connect() as conn:
        before = conn.execute(text("SELECT id, team_id FROM reports ORDER BY id")).all()
    table = analysis.zone_what_if(engine, candidate, now=NOW).set_index("team_code")
    assert (table.loc["T1", "open_before"], table.loc["T1", "open_after"]) == (2, 1)
    assert (table.loc["T2", "open_before"], table.loc["T2", "open_after"]) == (1, 2)
    assert (table.loc["DRAIN", "open_before"], table.loc["DRAIN", "open_after"]) == (1, 1)
    assert table.loc["T1", "overdue_after"] == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, team_id FROM reports ORDER BY id")).all() == before


def test_a_fixed_target_replaces_the_category_sla(engine: Engine, sla_city: TinyCity) -> None:
    # Within 24 hours of being reported: only the report resolved after exactly 24 h.
    stats = analysis.ward_stats(engine, target_hours=24).set_index("code")
    assert stats.loc["W-A", "within_sla"] == 1
    teams = analysis.team_performance(engine, now=NOW, target_hours=72).set_index("team_code")
    assert teams.loc["T1", "within_sla"] == 3
