"""Routing real reports against real boundaries, both imported through ``geo.city.boundary_writes``.

Each city's reports carry the ward their own system assigned; routing through our import
and ``route_points`` must agree with it about as often as a plain geopandas join does
(see ../shared/data/README.md: 97.4% for Bangkok, 99.48% for Chicago).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from geo.city.boundary_writes import import_boundaries
from geo.city.routing import route_points
from geo.settings import RoutingSettings

pytestmark = pytest.mark.realdata

BANGKOK = ("กรุงเทพมหานคร", "จังหวัดกรุงเทพมหานคร")  # both spellings occur in Traffy
KHET = "เขต"  # "district", which the BMA names carry and Traffy's do not


def import_and_route(
    engine: Engine, boundary: Path, points: pd.DataFrame, *, id_field: str, name_field: str
) -> pd.DataFrame:
    """Import ``boundary`` as the wards, then route ``points`` (lon, lat) in one statement.

    Returns ``points`` with the routed ward's ``code`` and ``name`` (missing when outside).
    """
    import_boundaries(engine, boundary, layer="wards", id_field=id_field, name_field=name_field)
    with engine.begin() as conn:
        category = conn.execute(
            text(
                "INSERT INTO categories (code, name_th, name_en) "
                "VALUES ('general', 'ทั่วไป', 'General') RETURNING id"
            )
        ).scalar_one()
        routed = route_points(
            conn,
            points.assign(category_id=category, created_at=datetime(2024, 1, 1, tzinfo=UTC)),
            settings=RoutingSettings(),
        )
        wards = {
            row.id: (row.code, row.name)
            for row in conn.execute(text("SELECT id, code, name FROM wards"))
        }
    ward = routed["ward_id"].map(
        lambda i: wards.get(i, (None, None)) if pd.notna(i) else (None, None)
    )
    return points.join(routed).assign(code=ward.str[0], name=ward.str[1])


def test_traffy_tickets_in_bangkok_route_to_their_own_district(
    shared_data: Path, engine: Engine
) -> None:
    tickets = pd.read_csv(shared_data / "bkk-traffy" / "traffy_teamchadchart.csv")
    lonlat = tickets["coords"].str.split(",", expand=True).astype(float)
    tickets = tickets.assign(lon=lonlat[0], lat=lonlat[1])
    routed = import_and_route(
        engine,
        shared_data / "bkk-boundaries" / "bangkok_district.zip",
        tickets[["lon", "lat", "district", "province"]],
        id_field="dcode",
        name_field="dname",
    )

    # "In Bangkok": Traffy says so, and the point lies inside the district layer's envelope
    # (a ticket filed under Bangkok with a point in another province is not a routing miss).
    with engine.connect() as conn:
        west, south, east, north = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT ST_Extent(geom)::geometry AS e FROM wards WHERE retired_at IS NULL) x"
            )
        ).one()
    in_bangkok = routed[
        routed["province"].isin(BANGKOK)
        & routed["lon"].between(west, east)
        & routed["lat"].between(south, north)
    ]
    assigned = in_bangkok[in_bangkok["ward_id"].notna()]
    own = assigned["name"].str.removeprefix(KHET) == assigned["district"].str.removeprefix(KHET)
    routed_share = len(assigned) / len(in_bangkok)
    match_share = own.mean()
    print(
        f"\nBangkok: {len(in_bangkok)} of {len(routed)} tickets in Bangkok; "
        f"{len(assigned)} routed ({routed_share:.2%}), {assigned['snapped'].sum()} of them "
        f"snapped; {own.sum()} in their own district ({match_share:.2%})"
    )
    assert len(in_bangkok) >= 990
    assert routed_share >= 0.99
    assert match_share >= 0.97


def test_chicago_311_requests_route_to_their_own_ward(shared_data: Path, engine: Engine) -> None:
    requests = pd.read_csv(
        shared_data / "chicago" / "chicago_311_data.csv",
        usecols=["sr_number", "ward", "latitude", "longitude"],
    ).rename(columns={"latitude": "lat", "longitude": "lon"})
    located = requests.dropna(subset=["lat", "lon"])
    routed = import_and_route(
        engine,
        shared_data / "chicago" / "chicago_wards_2015.geojson",
        located[["lon", "lat", "ward"]],
        id_field="ward",
        name_field="ward",
    )

    reported = routed["ward"].astype("Int64").astype("string")
    own = (routed["code"] == reported).fillna(False)
    match_share = own.mean()
    print(
        f"\nChicago: {len(located)} of {len(requests)} requests have coordinates; "
        f"{routed['ward_id'].notna().sum()} routed, {own.sum()} to their own ward "
        f"({match_share:.2%})"
    )
    assert len(located) == 4996
    assert match_share >= 0.994
