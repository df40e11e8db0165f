import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal
from sqlalchemy import Engine, text

from geo.city.catalogue import display_name, list_teams
from geo.db.schema import OPEN_STATUSES, REPORT_STATUSES
from geo.demo.city import (
    DEMO_BOUNDARY_SOURCE,
    DEMO_BOUNDS,
    DEMO_CENTRE,
    DEMO_DAYS,
    DEMO_REPORT_SOURCE,
    REPORT_COUNT,
    WARD_COUNT,
    DemoCity,
    demo_city_outline,
    generate_demo_city,
    load_demo_city,
)
from geo.errors import DatabaseNotEmptyError, InvalidInputError

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
THAI = re.compile(r"[\u0E00-\u0E7F]")
TABLES = (
    "boundary_imports",
    "wards",
    "zones",
    "teams",
    "categories",
    "category_routes",
    "reports",
    "report_events",
)


def assert_same_city(a: DemoCity, b: DemoCity) -> None:
    assert_geodataframe_equal(a.wards, b.wards)
    assert_geodataframe_equal(a.zones, b.zones)
    for name in ("teams", "categories", "category_routes", "reports"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def test_the_same_seed_and_time_give_the_same_city_and_another_seed_does_not() -> None:
    city = generate_demo_city(seed=7, now=NOW)
    assert_same_city(city, generate_demo_city(seed=7, now=NOW))

    other = generate_demo_city(seed=8, now=NOW)
    assert not city.wards.geometry.geom_equals(other.wards.geometry).all()
    assert not city.zones.geometry.geom_equals(other.zones.geometry).all()
    assert not city.reports["lon"].equals(other.reports["lon"])
    # Names, categories and routes are the city's, not the seed's.
    pd.testing.assert_frame_equal(city.categories, other.categories)
    pd.testing.assert_frame_equal(city.category_routes, other.category_routes)

    later = generate_demo_city(seed=7, now=NOW + timedelta(days=3))
    assert later.reports["created_at"].max() > city.reports["created_at"].max()


def test_generation_needs_an_aware_time() -> None:
    with pytest.raises(InvalidInputError, match="now"):
        generate_demo_city(seed=1, now=datetime(2026, 11, 24, 10))


def test_generated_city_tiles_its_outline_and_its_reports_lie_inside() -> None:
    city = generate_demo_city(seed=2026, now=NOW)
    outline = demo_city_outline()
    minx, miny, maxx, maxy = outline.bounds
    assert DEMO_BOUNDS[0] <= minx and DEMO_BOUNDS[1] <= miny
    assert maxx <= DEMO_BOUNDS[2] and maxy <= DEMO_BOUNDS[3]
    assert outline.contains(shapely.Point(DEMO_CENTRE))

    assert list(city.wards["code"]) == [f"W{i:02d}" for i in range(1, WARD_COUNT + 1)]
    for layer in (city.wards, city.zones):
        assert layer.is_valid.all()
        assert set(layer.geom_type) == {"MultiPolygon"}
        # The parts tile the outline: no gaps, no overlaps (in square degrees, ~1 m² here).
        assert abs(layer.union_all().area - outline.area) < 1e-10
        assert abs(shapely.area(layer.geometry.to_numpy()).sum() - outline.area) < 1e-10
    assert 5 <= len(city.zones) <= 6

    reports = city.reports
    assert len(reports) == REPORT_COUNT
    points = shapely.points(reports["lon"], reports["lat"])
    assert shapely.contains(outline, points).mean() >= 0.99
    assert (reports["created_at"] > NOW - timedelta(days=DEMO_DAYS)).all()
    assert (reports["created_at"] <= reports["updated_at"]).all()
    assert (reports["updated_at"] <= NOW).all()
    resolved = reports["resolved_at"].notna()
    assert set(reports.loc[resolved, "status"]) == {"resolved", "closed"}
    assert (reports.loc[resolved, "resolved_at"] >= reports.loc[resolved, "created_at"]).all()
    assert (reports.loc[resolved, "resolved_at"] <= reports.loc[resolved, "updated_at"]).all()
    assert set(reports["status"]) == set(REPORT_STATUSES)
    assert reports["external_id"].is_unique


@pytest.fixture
def loaded(engine: Engine) -> str:
    """The per-test database with the demo city of seed 2026 at ``NOW``; its summary."""
    return load_demo_city(engine, seed=2026, now=NOW)


def query(engine: Engine, sql: str, **params: object) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(text(sql), params)
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def test_loaded_demo_city_is_labelled_as_demo_data(engine: Engine, loaded: str) -> None:
    assert loaded.startswith("Loaded the demo city (generated data, seed 2026): 36 wards, ")
    assert "\n" not in loaded
    assert counts(engine)["wards"] == WARD_COUNT
    assert counts(engine)["reports"] == REPORT_COUNT
    imports = query(engine, "SELECT layer, source, is_demo FROM boundary_imports ORDER BY layer")
    assert imports.to_dict("records") == [
        {"layer": "wards", "source": DEMO_BOUNDARY_SOURCE, "is_demo": True},
        {"layer": "zones", "source": DEMO_BOUNDARY_SOURCE, "is_demo": True},
    ]
    labels = query(engine, "SELECT source, is_demo, count(*) FROM reports GROUP BY 1, 2")
    assert labels.to_dict("records") == [
        {"source": DEMO_REPORT_SOURCE, "is_demo": True, "count": REPORT_COUNT}
    ]


def test_demo_zones_are_drawn_across_ward_lines(engine: Engine, loaded: str) -> None:
    crossed = query(
        engine,
        "SELECT z.code, count(w.id) AS wards FROM zones AS z LEFT JOIN wards AS w "
        "ON ST_Relate(ST_Boundary(z.geom), w.geom, 'T********') GROUP BY z.code",
    )
    assert len(crossed) in (5, 6)
    # Every zone's edge runs through the inside of several wards.
    assert (crossed["wards"] >= 3).all()


def test_demo_categories_are_bilingual_with_mostly_48_hour_promises(
    engine: Engine, loaded: str
) -> None:
    categories = query(engine, "SELECT code, name_th, name_en, sla_hours FROM categories")
    assert len(categories) >= 12
    assert categories["name_th"].map(lambda name: bool(THAI.search(name))).all()
    assert categories["name_en"].map(lambda name: name.isascii() and name[0].isupper()).all()
    sla = categories.set_index("code")["sla_hours"]
    assert (sla["flooding"], sla["trees"]) == (24, 72)
    assert (sla == 48).mean() > 0.5


@pytest.mark.parametrize("table", ["wards", "zones", "teams"])
def test_demo_wards_zones_and_teams_keep_their_thai_and_english_names_apart(
    engine: Engine, loaded: str, table: str
) -> None:
    names = query(engine, f"SELECT code, name, name_th, name_en FROM {table}")
    assert len(names) >= 5
    # No glued "ไทย (English)": the name is the Thai one, the English one stands alone.
    assert (names["name"] == names["name_th"]).all()
    assert names["name_th"].map(lambda name: bool(THAI.search(name)) and "(" not in name).all()
    assert names["name_en"].map(lambda name: name.isascii() and name[0].isupper()).all()
    with engine.connect() as conn:
        teams = {t["code"]: t for t in list_teams(conn)}
    assert (teams["drainage"]["name_th"], teams["drainage"]["name_en"]) == (
        "หน่วยระบายน้ำและป้องกันน้ำท่วม",
        "Drainage and flood unit",
    )


def test_display_name_picks_the_readers_language_and_falls_back() -> None:
    both = {"name": "as given", "name_th": "ชื่อไทย", "name_en": "English name"}
    assert display_name("th", **both) == "ชื่อไทย"
    assert display_name("en", **both) == "English name"
    assert display_name("en", name="as given", name_th="ชื่อไทย") == "as given"
    assert display_name("en", name=None, name_th="ชื่อไทย") == "ชื่อไทย"
    assert display_name("th", name="", name_th="", name_en="English name") == "English name"


def test_demo_reports_are_routed_by_every_precedence_level(engine: Engine, loaded: str) -> None:
    routed = query(
        engine,
        "SELECT c.code AS category, t.code AS team, z.code AS zone, zt.code AS zone_team, "
        "r.ward_id, r.ward_snapped AS snapped "
        "FROM reports AS r JOIN categories AS c ON c.id = r.category_id "
        "LEFT JOIN teams AS t ON t.id = r.team_id LEFT JOIN zones AS z ON z.id = r.zone_id "
        "LEFT JOIN teams AS zt ON zt.id = z.team_id",
    )
    assert routed["ward_id"].notna().all()
    assert 0 < routed["snapped"].sum() <= 30  # a few lie just outside and were snapped
    assert routed["team"].notna().mean() >= 0.95

    # a. Zone-limited route: trees in the old town and the north go to the tree unit ...
    trees = routed[routed["category"] == "trees"]
    in_unit_zones = trees["zone"].isin(["Z-OLD", "Z-N"])
    assert in_unit_zones.sum() > 0
    assert (trees.loc[in_unit_zones, "team"] == "trees").all()
    # ... c. and elsewhere to the team owning the zone.
    elsewhere = trees[~in_unit_zones & trees["zone"].notna()]
    assert len(elsewhere) > 0
    assert (elsewhere["team"] == elsewhere["zone_team"]).all()
    # b. City-wide route: flooding goes to the drainage unit, which has no zone of its own.
    flooding = routed[routed["category"] == "flooding"]
    assert (flooding["team"] == "drainage").all()
    assert flooding["zone"].isna().all()
    # c. No route: roads go to the team owning the zone they lie in.
    roads = routed[(routed["category"] == "road") & routed["zone"].notna()]
    assert len(roads) > 100
    assert (roads["team"] == roads["zone_team"]).all()


def test_demo_work_has_a_backlog_and_late_and_on_time_resolutions(
    engine: Engine, loaded: str
) -> None:
    mix = query(
        engine,
        "SELECT count(*) FILTER (WHERE status = ANY(:open) AND due_at < :now) AS overdue,"
        " count(*) FILTER (WHERE status = ANY(:open) AND due_at >= :now) AS not_due,"
        " count(*) FILTER (WHERE resolved_at <= due_at) AS on_time,"
        " count(*) FILTER (WHERE resolved_at > due_at) AS late,"
        " count(DISTINCT status) AS statuses"
        " FROM reports",
        open=list(OPEN_STATUSES),
        now=NOW,
    ).iloc[0]
    assert mix["overdue"] >= 100
    assert mix["not_due"] >= 20
    assert mix["on_time"] > mix["late"] >= 200
    assert mix["statuses"] == len(REPORT_STATUSES)
    events = query(engine, "SELECT kind, count(*) FROM report_events GROUP BY kind")
    assert events.set_index("kind")["count"]["created"] == REPORT_COUNT


def test_a_second_load_is_refused_and_changes_nothing(engine: Engine) -> None:
    before = datetime.now(UTC)
    load_demo_city(engine)
    with engine.connect() as conn:
        newest = conn.execute(text("SELECT max(created_at) FROM reports")).scalar_one()
    # ``now`` defaults to the current hour, so the newest reports are hours old at most.
    assert before - timedelta(hours=12) < newest <= datetime.now(UTC)
    loaded = counts(engine)

    with pytest.raises(DatabaseNotEmptyError, match=r"already holds 36 wards.*Nothing was"):
        load_demo_city(engine, seed=99, now=NOW)
    assert counts(engine) == loaded


def test_load_refuses_a_database_that_already_has_categories(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO categories (code, name_th, name_en) VALUES ('road', 'ถนน', 'Roads')")
        )
    with pytest.raises(DatabaseNotEmptyError, match=r"holds 1 category\."):
        load_demo_city(engine, now=NOW)
    assert counts(engine)["categories"] == 1
    assert counts(engine)["wards"] == 0
