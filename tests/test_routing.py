from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from geo.city.routing import Route, route_point, route_points
from geo.errors import InvalidInputError, OutsideServiceAreaError
from geo.reports.store import create_report
from geo.settings import RoutingSettings
from tests.fixtures import TinyCity, load_tiny_city

SETTINGS = RoutingSettings()
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
# ~0.00045 degrees of latitude is 50 m; 0.0045 is 500 m.
POINTS = {
    "inside A": (100.005, 8.405),
    "inside B, zone Z1": (100.011, 8.405),
    "inside B, zone Z2": (100.015, 8.405),
    "shared edge": (100.01, 8.405),
    "shared corner": (100.01, 8.41),
    "outer edge of B": (100.02, 8.405),
    "50 m north of B": (100.015, 8.41045),
    "500 m north of B": (100.015, 8.4145),
}


@pytest.fixture
def city(engine: Engine) -> TinyCity:
    with engine.begin() as conn:
        return load_tiny_city(conn)


def single(engine: Engine, lon: float, lat: float, category_id: int) -> Route | None:
    with engine.connect() as conn:
        try:
            return route_point(
                conn, lon=lon, lat=lat, category_id=category_id, created_at=T0, settings=SETTINGS
            )
        except OutsideServiceAreaError:
            return None


def test_point_inside_goes_to_covering_ward_and_zone_team(engine: Engine, city: TinyCity) -> None:
    route = single(engine, *POINTS["inside B, zone Z1"], city.categories["road"])
    assert route is not None
    assert route.ward_id == city.wards["W-B"]
    assert route.zone_id == city.zones["Z1"], "zones cross ward lines: this part of B is Z1"
    assert route.team_id == city.teams["T1"]
    assert not route.snapped
    assert route.due_at == T0 + timedelta(hours=48)


def test_point_on_shared_edge_goes_to_first_ward_code_every_time(
    engine: Engine, city: TinyCity
) -> None:
    for name in ("shared edge", "shared corner"):
        answers = {single(engine, *POINTS[name], city.categories["road"]) for _ in range(3)}
        assert len(answers) == 1
        (route,) = answers
        assert route is not None and route.ward_id == city.wards["W-A"], name


def test_outer_edge_is_covered_not_snapped(engine: Engine, city: TinyCity) -> None:
    route = single(engine, *POINTS["outer edge of B"], city.categories["road"])
    assert route is not None and route.ward_id == city.wards["W-B"] and not route.snapped


def test_point_just_outside_snaps_to_nearest_ward(engine: Engine, city: TinyCity) -> None:
    route = single(engine, *POINTS["50 m north of B"], city.categories["road"])
    assert route is not None
    assert route.ward_id == city.wards["W-B"]
    assert route.snapped


def test_snap_distance_is_measured_in_metres(engine: Engine, city: TinyCity) -> None:
    with engine.connect() as conn:
        with pytest.raises(OutsideServiceAreaError):
            route_point(
                conn,
                lon=100.015,
                lat=8.41045,
                category_id=city.categories["road"],
                created_at=T0,
                settings=RoutingSettings(snap_distance_m=40),
            )
        route = route_point(
            conn,
            lon=100.015,
            lat=8.41045,
            category_id=city.categories["road"],
            created_at=T0,
            settings=RoutingSettings(snap_distance_m=60),
        )
        assert route.snapped


def test_far_point_raises_a_message_a_resident_understands(engine: Engine, city: TinyCity) -> None:
    with engine.connect() as conn, pytest.raises(OutsideServiceAreaError) as raised:
        route_point(
            conn,
            lon=100.015,
            lat=8.4145,
            category_id=city.categories["road"],
            created_at=T0,
            settings=SETTINGS,
        )
    message = str(raised.value)
    assert "outside the area this city serves" in message
    assert "about 500 m away" in message
    assert raised.value.distance_m == pytest.approx(498, abs=5)


def test_category_route_takes_precedence_over_zone(engine: Engine, city: TinyCity) -> None:
    flood = single(engine, *POINTS["inside A"], city.categories["flood"])
    assert flood is not None
    assert flood.team_id == city.teams["DRAIN"]
    assert flood.zone_id is None, "DRAIN has no zone polygon here"
    assert flood.due_at == T0 + timedelta(hours=24)


def test_zone_limited_route_applies_only_inside_its_zone(engine: Engine, city: TinyCity) -> None:
    in_z2 = single(engine, *POINTS["inside B, zone Z2"], city.categories["tree"])
    in_z1 = single(engine, *POINTS["inside B, zone Z1"], city.categories["tree"])
    assert in_z2 is not None and in_z1 is not None
    assert (in_z2.zone_id, in_z2.team_id) == (city.zones["Z2"], city.teams["TREE"])
    assert (in_z1.zone_id, in_z1.team_id) == (city.zones["Z1"], city.teams["T1"])


def test_retired_wards_are_not_used(engine: Engine, city: TinyCity) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE wards SET retired_at = now() WHERE code = 'W-A'")
    route = single(engine, *POINTS["shared edge"], city.categories["road"])
    assert route is not None and route.ward_id == city.wards["W-B"]


def test_bad_coordinates_name_the_field(engine: Engine, city: TinyCity) -> None:
    with engine.connect() as conn:
        for lon, lat, field in ((100.0, 91.0, "lat"), (float("nan"), 8.4, "lon")):
            with pytest.raises(InvalidInputError) as raised:
                route_point(conn, lon=lon, lat=lat, category_id=1, created_at=T0, settings=SETTINGS)
            assert raised.value.field == field


@pytest.mark.parametrize("more_routes", [False, True])
def test_bulk_and_single_routing_give_identical_answers(
    engine: Engine, city: TinyCity, more_routes: bool
) -> None:
    if more_routes:
        # Ties the fixture alone never reaches: two city-wide routes for one category (the
        # first route id wins, in its team's zone when that covers the point), and a
        # zone-limited route that beats a city-wide one inside its zone.
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO category_routes (category_id, team_id, zone_code) VALUES "
                    "(:road, :t2, NULL), (:road, :t1, NULL), (:flood, :tree, 'Z1')"
                ),
                {
                    "road": city.categories["road"],
                    "flood": city.categories["flood"],
                    "t1": city.teams["T1"],
                    "t2": city.teams["T2"],
                    "tree": city.teams["TREE"],
                },
            )
    rows = [
        {"name": name, "lon": lon, "lat": lat, "category_id": cat, "created_at": T0}
        for name, (lon, lat) in POINTS.items()
        for cat in city.categories.values()
    ]
    frame = pd.DataFrame(rows).set_index("name", append=True)
    with engine.begin() as conn:
        bulk = route_points(conn, frame, settings=SETTINGS)
    assert len(bulk) == len(frame)
    assert bulk["ward_id"].isna().sum() == len(city.categories), "only the 500 m point is out"
    codes = {category_id: code for code, category_id in city.categories.items()}
    for key, row in frame.iterrows():
        expected = single(engine, row["lon"], row["lat"], row["category_id"])
        stored = intake(engine, row["lon"], row["lat"], codes[row["category_id"]])
        got = bulk.loc[key]
        if expected is None:
            assert pd.isna(got["ward_id"]), key
            assert stored is None, key
            continue
        assert (int(got["ward_id"]), bool(got["snapped"])) == (expected.ward_id, expected.snapped)
        zone = None if pd.isna(got["zone_id"]) else int(got["zone_id"])
        team = None if pd.isna(got["team_id"]) else int(got["team_id"])
        assert (zone, team) == (expected.zone_id, expected.team_id), key
        assert got["due_at"] == expected.due_at, key
        assert stored == expected, key


def intake(engine: Engine, lon: float, lat: float, category: str) -> Route | None:
    """Route one point the way intake does, by storing a report (rolled back)."""
    with engine.connect() as conn:
        try:
            created = create_report(
                conn,
                lon=lon,
                lat=lat,
                category=category,
                description="",
                settings=SETTINGS,
                created_at=T0,
            )
        except OutsideServiceAreaError:
            return None
        finally:
            conn.rollback()
    return Route(
        ward_id=created.ward_id,
        snapped=created.snapped,
        zone_id=created.zone_id,
        team_id=created.team_id,
        due_at=created.due_at,
    )
