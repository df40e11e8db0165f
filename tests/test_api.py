from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import AppSettings, create_app
from geo.settings import DatabaseSettings
from tests.fixtures import TinyCity, load_tiny_city


@pytest.fixture
def client(db_url: str, engine: Engine) -> Iterator[TestClient]:
    with TestClient(
        create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    ) as test_client:
        yield test_client


@pytest.fixture
def city(engine: Engine) -> TinyCity:
    with engine.begin() as conn:
        return load_tiny_city(conn)


def test_health_reports_postgis(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert answer.json()["postgis"].startswith("3.")


def test_route_lookup_answers_ward_and_team(client: TestClient, city: TinyCity) -> None:
    answer = client.get("/api/route", params={"lat": 8.405, "lon": 100.015, "category": "tree"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ward_id"] == city.wards["W-B"]
    assert body["team_id"] == city.teams["TREE"]
    assert body["snapped"] is False


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lat": "91", "lon": "100.01", "category": "road"}, "lat"),
        ({"lat": "8.405", "lon": "abc", "category": "road"}, "lon"),
        ({"lat": "nan", "lon": "100.01", "category": "road"}, "lat"),
        ({"lat": "8.405", "lon": "100.01", "category": "potholes"}, "category"),
    ],
)
def test_route_lookup_refuses_bad_input_naming_the_field(
    client: TestClient, city: TinyCity, params: dict[str, str], field: str
) -> None:
    answer = client.get("/api/route", params=params)
    assert answer.status_code == 422
    assert field in answer.text


def test_point_outside_the_city_is_a_422_with_a_plain_sentence(
    client: TestClient, city: TinyCity
) -> None:
    answer = client.get("/api/route", params={"lat": 8.6, "lon": 100.015, "category": "road"})
    assert answer.status_code == 422
    assert "outside the area this city serves" in answer.json()["detail"]


def test_city_map_shows_wards_and_zones(client: TestClient, city: TinyCity) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    for code in ("W-A", "W-B", "Z1", "Z2"):
        assert f'"{code}"' in answer.text
