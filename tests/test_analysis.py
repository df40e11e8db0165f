"""geo.analysis on layouts whose answers are known: a planted hot spot, a tiny city's SLA."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box
from sqlalchemy import Engine, text

from geo import analysis
from geo.city.boundary_writes import import_boundaries
from geo.errors import InvalidInputError
from geo.maps.pagedata import ward_measures
from geo.reports.store import create_report, insert_reports
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


@pytest.mark.parametrize(("neighbours", "threshold"), [("queen", 1.5), ("rook", 1.01)])
@pytest.mark.parametrize("permutations", [0, 99])
def test_grid_weights_give_the_statistic_distance_bands_give(
    neighbours: str, threshold: float, permutations: int
) -> None:
    from esda.getisord import G_Local
    from libpysal.weights import DistanceBand

    # An irregular area (cells missing here and there, islands too) off the origin.
    rng = np.random.default_rng(3)
    iy, ix = np.indices((15, 20))
    kept = rng.random(ix.size) < 0.7
    ix, iy = ix.ravel()[kept] - 7, iy.ravel()[kept] + 3
    y = rng.poisson(2, len(ix)).astype(float)
    banded = DistanceBand(np.column_stack([ix, iy]).astype(float), threshold=threshold, binary=True)
    read_off = analysis._grid_weights(ix, iy, neighbours=neighbours, k=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, got = (
            G_Local(y, w, transform="B", star=True, permutations=permutations, seed=1, n_jobs=1)
            for w in (banded, read_off)
        )
    np.testing.assert_allclose(got.Zs, expected.Zs)
    if permutations:
        np.testing.assert_allclose(got.p_sim, expected.p_sim)


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


def test_ratings_show_per_ward_and_team(engine: Engine, sla_city: TinyCity) -> None:
    """Reporters' ratings of fixed work: how many were rated and their mean, written once."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE reports SET rating = v.rating, rated_at = now() FROM (VALUES "
                "(CAST(:first AS bigint), 3), (CAST(:second AS bigint), 5)) AS v (id, rating) "
                "WHERE reports.id = v.id"
            ),
            dict(
                zip(
                    ("first", "second"),
                    conn.execute(
                        text("SELECT id FROM reports WHERE status = 'resolved' ORDER BY id")
                    ).scalars(),
                    strict=True,
                )
            ),
        )
    wards = analysis.ward_stats(engine).set_index("code")
    assert (wards.loc["W-A", "rated"], wards.loc["W-A", "mean_rating"]) == (2, 4.0)
    assert wards.loc["W-B", "rated"] == 0 and pd.isna(wards.loc["W-B", "mean_rating"])
    teams = analysis.team_performance(engine, now=NOW).set_index("team_code")
    assert (teams.loc["T1", "rated"], teams.loc["T1", "mean_rating"]) == (2, 4.0)
    assert teams.loc["T2", "rated"] == 0 and pd.isna(teams.loc["T2", "mean_rating"])
    with engine.connect() as conn:
        dashboard = ward_measures(conn).set_index("code")
    assert dashboard.loc["W-A", "mean_rating"] == 4.0, "the dashboard reads the same query"


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


def test_hotspots_coarsen_a_grid_too_big_and_refuse_too_fine_a_cell(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as conn:
        city = load_tiny_city(conn)
    _insert(engine, city, [dict(lon=100.005, lat=8.405, created_at=at(5))] * 3)
    # The tiny city spans about 2.2 by 1.1 km: 250 m cells make a grid of about 50.
    assert analysis.hotspots(engine).attrs["cell_m"] == 250
    monkeypatch.setattr(analysis, "MAX_GRID_CELLS", 20)
    cells = analysis.hotspots(engine)
    assert cells.attrs["cell_m"] == 500
    assert cells["count"].sum() == 3
    with pytest.raises(InvalidInputError, match="cell_m") as refused:
        analysis.hotspots(engine, cell_m=100)
    assert "use 500 m or more" in str(refused.value)
    monkeypatch.setattr(analysis, "MAX_GRID_CELLS", 0)
    with pytest.raises(InvalidInputError, match="wards"):
        analysis.hotspots(engine)


def test_zone_what_if_moves_work_and_writes_nothing(engine: Engine, sla_city: TinyCity) -> None:
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
        {"code": ["Z1", "Z2"], "team": ["T1", "T2"]},
        geometry=[box(100.0, 8.40, 100.010, 8.41), box(100.010, 8.40, 100.02, 8.41)],
        crs=4326,
    )
    with engine.connect() as conn:
        before = conn.execute(text("SELECT id, team_id FROM reports ORDER BY id")).all()
        # A read-only transaction: the what-if needs no table of its own.
        conn.execute(text("SET TRANSACTION READ ONLY"))
        table = analysis.zone_what_if(conn, candidate, now=NOW).set_index("team_code")
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


def test_dashboard_and_notebooks_count_a_report_in_the_current_ward_covering_it(
    engine: Engine, sla_city: TinyCity, tmp_path: Path
) -> None:
    # The new ward file keeps the codes and moves the line between W-A and W-B east, so
    # the W-B report at lon 100.015 now lies in W-A's outline (stored routing keeps W-B's old
    # row): the measures count it where it is, in the new W-A.
    moved = gpd.GeoDataFrame(
        {"code": ["W-A", "W-B"], "name": ["A", "B"]},
        geometry=[box(100.0, 8.40, 100.0175, 8.41), box(100.0175, 8.40, 100.02, 8.41)],
        crs=4326,
    )
    path = tmp_path / "wards.geojson"
    moved.to_file(path, driver="GeoJSON", engine="pyogrio")
    summary = import_boundaries(engine, path, layer="wards", id_field="code", name_field="name")
    assert summary.retired_count == 2
    # One more report after the re-import, routed to the new W-A row.
    _insert(
        engine,
        sla_city,
        [dict(lon=100.005, lat=8.405, created_at=at(7), status="resolved", resolved_at=at(8))],
    )
    with engine.connect() as conn:
        dashboard = ward_measures(conn).set_index("code")
        ids = conn.execute(text("SELECT DISTINCT ward_id FROM reports")).scalars().all()
    notebook = analysis.ward_stats(engine).set_index("code")
    assert len(ids) == 3  # the old W-A and W-B rows and the new W-A row

    # Every report under the current ward covering it: 4 + 1 + 1 in W-A, none in W-B.
    assert list(notebook["reports"]) == [6, 0]
    assert notebook.attrs["outside"]["reports"] == 0
    assert list(dashboard["count"]) == list(notebook["reports"])
    pd.testing.assert_series_equal(
        dashboard["sla"], notebook["within_sla_share"], check_names=False
    )
    pd.testing.assert_series_equal(
        dashboard["median_hours"], notebook["median_hours_to_resolve"], check_names=False
    )
    assert notebook.loc["W-A", "within_sla_share"] == pytest.approx(3 / 4)


def _current_zones(engine: Engine) -> gpd.GeoDataFrame:
    """Today's zones as a zone file would give them: code, team code, exact outline."""
    with engine.connect() as conn:
        return gpd.read_postgis(
            text(
                "SELECT z.code, t.code AS team, z.geom FROM zones AS z "
                "JOIN teams AS t ON t.id = z.team_id WHERE z.retired_at IS NULL ORDER BY z.code"
            ),
            conn,
            geom_col="geom",
        )


EDGE = (100.012, 8.405)
"""A point on the line Z1 and Z2 share."""


def test_what_if_with_todays_zones_is_the_stored_routing(
    engine: Engine, sla_city: TinyCity
) -> None:
    settings = RoutingSettings()
    with engine.begin() as conn:
        # Intake routes each: the edge point to Z1 (its code sorts first), a tree in Z2 to
        # TREE (a route limited to Z2), a tree in Z1 to T1, a flood to DRAIN.
        for (lon, lat), category in [
            (EDGE, "road"),
            ((100.015, 8.405), "tree"),
            ((100.005, 8.405), "tree"),
            (EDGE, "flood"),
        ]:
            create_report(
                conn, lon=lon, lat=lat, category=category, description="", settings=settings
            )
    # Listed in reverse, so "the first zone in file order" would send the edge point to T2.
    today = _current_zones(engine).iloc[::-1]
    routes = analysis.what_if_routes(engine, today)
    assert len(routes) == 6
    assert list(routes["new_team"]) == list(routes["team"])
    assert list(routes["new_zone"].fillna("")) == list(routes["zone"].fillna(""))
    assert set(routes["team"]) == {"T1", "T2", "TREE", "DRAIN"}
    table = analysis.zone_what_if(engine, today, now=NOW)
    assert (table["open_after"] == table["open_before"]).all()
    assert (table["change_in_open"] == 0).all()


def test_what_if_gives_a_shared_edge_the_zone_intake_gives_it(
    engine: Engine, sla_city: TinyCity, tmp_path: Path
) -> None:
    settings = RoutingSettings()
    with engine.begin() as conn:
        stored = create_report(
            conn, lon=EDGE[0], lat=EDGE[1], category="road", description="", settings=settings
        )
    # New zones meeting on the same line; the west one comes first in the file, the east
    # one's code sorts first, and the east one's team is new.
    candidate = gpd.GeoDataFrame(
        {"code": ["B-WEST", "A-EAST"], "team": ["T1", "T-NEW"]},
        geometry=[box(100.0, 8.40, 100.012, 8.41), box(100.012, 8.40, 100.02, 8.41)],
        crs=4326,
    )
    routes = analysis.what_if_routes(engine, candidate).set_index("id")
    table = analysis.zone_what_if(engine, candidate, now=NOW).set_index("team_code")
    assert table.loc["T-NEW", "open_before"] == 0

    # Adopt the candidates and file the same report again: intake decides as the what-if did.
    path = tmp_path / "zones.geojson"
    candidate.to_file(path, driver="GeoJSON", engine="pyogrio")
    import_boundaries(
        engine, path, layer="zones", id_field="code", name_field="code", team_field="team"
    )
    with engine.begin() as conn:
        again = create_report(
            conn, lon=EDGE[0], lat=EDGE[1], category="road", description="", settings=settings
        )
        zone, team = conn.execute(
            text(
                "SELECT z.code, t.code FROM zones AS z JOIN teams AS t ON t.id = :team "
                "WHERE z.id = :zone"
            ),
            {"zone": again.zone_id, "team": again.team_id},
        ).one()
    assert (zone, team) == ("A-EAST", "T-NEW")
    assert (routes.loc[stored.id, "new_zone"], routes.loc[stored.id, "new_team"]) == (zone, team)
    # The open W-B report and the edge report.
    assert table.loc["T-NEW", "open_after"] == 2
