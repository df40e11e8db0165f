"""A tiny city you can check by eye, for routing tests.

Two wards side by side near Nakhon Si Thammarat, sharing the meridian 100.01:

    lat 8.41 +---------+---------+
             |  W-A    |   W-B   |     zone Z1 (team T1): lon 100.000 .. 100.012
             |         |         |     zone Z2 (team T2): lon 100.012 .. 100.020
    lat 8.40 +---------+---------+     (zones cross the ward line at 100.01)
          100.00    100.01    100.02

Categories: ``road`` (no route: zone's team), ``flood`` (city-wide route to DRAIN, a team
with no zone), ``tree`` (route to TREE limited to zone Z2).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

WARDS = {
    "W-A": "POLYGON((100.00 8.40, 100.01 8.40, 100.01 8.41, 100.00 8.41, 100.00 8.40))",
    "W-B": "POLYGON((100.01 8.40, 100.02 8.40, 100.02 8.41, 100.01 8.41, 100.01 8.40))",
}
ZONES = {
    "Z1": ("T1", "POLYGON((100.00 8.40, 100.012 8.40, 100.012 8.41, 100.00 8.41, 100.00 8.40))"),
    "Z2": ("T2", "POLYGON((100.012 8.40, 100.02 8.40, 100.02 8.41, 100.012 8.41, 100.012 8.40))"),
}


@dataclass(frozen=True)
class TinyCity:
    """Ids of everything in the tiny city, by code."""

    wards: dict[str, int]
    zones: dict[str, int]
    teams: dict[str, int]
    categories: dict[str, int]


def load_tiny_city(conn: Connection) -> TinyCity:
    """Insert the tiny city with plain SQL and return its ids."""
    ward_import = conn.execute(
        text(
            "INSERT INTO boundary_imports (layer, source, sha256, feature_count, repaired_count)"
            " VALUES ('wards', 'tiny', 'x', 2, 0) RETURNING id"
        )
    ).scalar_one()
    zone_import = conn.execute(
        text(
            "INSERT INTO boundary_imports (layer, source, sha256, feature_count, repaired_count)"
            " VALUES ('zones', 'tiny', 'x', 2, 0) RETURNING id"
        )
    ).scalar_one()
    wards = {
        code: conn.execute(
            text(
                "INSERT INTO wards (code, name, import_id, geom) VALUES "
                "(:code, :name, :imp, ST_Multi(ST_GeomFromText(:wkt, 4326))) RETURNING id"
            ),
            {"code": code, "name": code, "imp": ward_import, "wkt": wkt},
        ).scalar_one()
        for code, wkt in WARDS.items()
    }
    teams = {
        code: conn.execute(
            text("INSERT INTO teams (code, name) VALUES (:c, :n) RETURNING id"),
            {"c": code, "n": code},
        ).scalar_one()
        for code in ("T1", "T2", "DRAIN", "TREE")
    }
    zones = {
        code: conn.execute(
            text(
                "INSERT INTO zones (code, name, team_id, import_id, geom) VALUES "
                "(:code, :name, :team, :imp, ST_Multi(ST_GeomFromText(:wkt, 4326))) RETURNING id"
            ),
            {"code": code, "name": code, "team": teams[team], "imp": zone_import, "wkt": wkt},
        ).scalar_one()
        for code, (team, wkt) in ZONES.items()
    }
    categories = {
        code: conn.execute(
            text(
                "INSERT INTO categories (code, name_th, name_en, sla_hours) "
                "VALUES (:c, :th, :en, :sla) RETURNING id"
            ),
            {"c": code, "th": th, "en": en, "sla": sla},
        ).scalar_one()
        for code, th, en, sla in (
            ("road", "ถนน", "Roads", 48),
            ("flood", "น้ำท่วม", "Flooding", 24),
            ("tree", "ต้นไม้", "Trees", 72),
        )
    }
    conn.execute(
        text(
            "INSERT INTO category_routes (category_id, team_id, zone_code) VALUES "
            "(:flood, :drain, NULL), (:tree, :tree_team, 'Z2')"
        ),
        {
            "flood": categories["flood"],
            "drain": teams["DRAIN"],
            "tree": categories["tree"],
            "tree_team": teams["TREE"],
        },
    )
    return TinyCity(wards=wards, zones=zones, teams=teams, categories=categories)


@dataclass(frozen=True)
class Keys:
    """API key secrets for each role in the tiny city."""

    admin: str
    planner: str
    t1: str
    t2: str
    app: str


def make_keys(conn: Connection) -> Keys:
    """Create one key per role (field-team keys for T1 and T2)."""
    from geo.access.keys import create_api_key

    return Keys(
        admin=create_api_key(conn, name="admin", role="admin").secret,
        planner=create_api_key(conn, name="planner", role="planner").secret,
        t1=create_api_key(conn, name="crew one", role="field_team", team_code="T1").secret,
        t2=create_api_key(conn, name="crew two", role="field_team", team_code="T2").secret,
        app=create_api_key(conn, name="city app", role="public").secret,
    )


TINY_GAZETTEER = """name,alt_names,kind,lat,lon
ถนนทดสอบ,Test Road,street,8.405,100.005
ตลาดทดสอบ,Test Market,landmark,8.405,100.015
"""
