"""Boundary upload in the admin pages: check first, replace on confirm, then what needs attention.

The tiny city (``tests.fixtures``) has zones Z1 (team T1) and Z2 (team T2) and a route of
``tree`` to TREE inside Z2. The new zone file here makes one zone over the whole city for
T1: T2 is left with no zone, the tree route points at a retired zone, and open reports in
Z2 keep their retired zone until they are re-routed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from geo.access.accounts import create_user
from geo.city.attention import needs_attention
from geo.city.boundary_stages import (
    BoundaryOptions,
    confirm_staged,
    saved_upload,
    stage_boundary_file,
)
from geo.city.boundary_writes import import_boundaries
from geo.errors import (
    BoundaryImportError,
    BoundaryReplaceRefusedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from geo.reports.store import create_report, reroute_reports
from geo.settings import BoundarySettings, RoutingSettings
from tests.fixtures import TinyCity, load_tiny_city

ROUTING = RoutingSettings()
LIMITS = BoundarySettings()
WHOLE_CITY = [[100.0, 8.40], [100.02, 8.40], [100.02, 8.41], [100.0, 8.41], [100.0, 8.40]]


def zone_file(*features: tuple[str, str, str, list[list[float]]]) -> bytes:
    """A zone GeoJSON: (code, name, team, ring) per feature."""
    return json.dumps(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {"ZONE": code, "NAME": name, "TEAM": team},
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                }
                for code, name, team, ring in features
            ],
        }
    ).encode()


ONE_ZONE = zone_file(("ZA", "Whole city", "T1", WHOLE_CITY))
ZONES = BoundaryOptions(layer="zones", id_field="ZONE", name_field="NAME", team_field="TEAM")


@pytest.fixture
def city(engine: Engine) -> TinyCity:
    with engine.begin() as conn:
        return load_tiny_city(conn)


def make_admin(engine: Engine, email: str = "admin@city.example") -> int:
    with engine.begin() as conn:
        return create_user(conn, email=email, name="Admin", role="admin", password="pw" * 8).id


def stage(engine: Engine, data: bytes, user_id: int, options: BoundaryOptions = ZONES) -> Any:
    with saved_upload(io.BytesIO(data), "zones.geojson", max_bytes=10**6) as path:
        return stage_boundary_file(
            engine, path, options, user_id=user_id, settings=LIMITS, routing=ROUTING
        )


def confirm(engine: Engine, staged: Any, user_id: int, **changes: Any) -> Any:
    arguments = {"sha256": staged.sha256, "user_id": user_id, "force": False} | changes
    token = arguments.pop("token", staged.token)
    return confirm_staged(engine, token, settings=LIMITS, routing=ROUTING, **arguments)


def current_zones(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT code FROM zones WHERE retired_at IS NULL ORDER BY code")
            ).scalars()
        )


def file_reports(engine: Engine, *points: tuple[float, str]) -> list[int]:
    with engine.begin() as conn:
        return [
            create_report(
                conn, lon=lon, lat=8.405, category=category, description="", settings=ROUTING
            ).id
            for lon, category in points
        ]


def test_a_checked_file_waits_and_only_its_confirm_replaces_it(
    engine: Engine, city: TinyCity
) -> None:
    admin, other = make_admin(engine), make_admin(engine, "other@city.example")
    staged = stage(engine, ONE_ZONE, admin)

    assert staged.summary.dry_run and staged.summary.feature_count == 1
    assert current_zones(engine) == ["Z1", "Z2"], "a check replaces nothing"
    with pytest.raises(NotFoundError):
        confirm(engine, staged, other)  # another admin cannot confirm my check
    with pytest.raises(NotFoundError):
        confirm(engine, staged, admin, token=staged.token + "x")
    with pytest.raises(ConflictError, match="not the file that was checked"):
        confirm(engine, staged, admin, sha256="0" * 64)
    assert current_zones(engine) == ["Z1", "Z2"]

    done = confirm(engine, staged, admin)

    assert done.import_id is not None and done.sha256 == staged.sha256
    assert current_zones(engine) == ["ZA"]
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT sha256, source FROM boundary_imports WHERE id = :id"),
            {"id": done.import_id},
        ).one()
        assert conn.execute(text("SELECT count(*) FROM boundary_stages")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM boundary_stage_parts")).scalar_one() == 0
    assert stored.sha256 == staged.sha256 and stored.source == "zones.geojson"
    with pytest.raises(NotFoundError):
        confirm(engine, staged, admin)  # used once


def test_a_check_made_stale_by_another_import_is_refused(engine: Engine, city: TinyCity) -> None:
    admin = make_admin(engine)
    staged = stage(engine, ONE_ZONE, admin)
    other = zone_file(("ZB", "Other", "T2", WHOLE_CITY))
    with saved_upload(io.BytesIO(other), "other.geojson", max_bytes=10**6) as path:
        import_boundaries(engine, path, layer="zones", id_field="ZONE", name_field="NAME")

    with pytest.raises(ConflictError, match="replaced by another import"):
        confirm(engine, staged, admin)
    assert current_zones(engine) == ["ZB"]


def test_an_expired_check_is_refused_and_cleared(engine: Engine, city: TinyCity) -> None:
    admin = make_admin(engine)
    old = stage(engine, ONE_ZONE, admin)
    with engine.begin() as conn:
        conn.execute(text("UPDATE boundary_stages SET expires_at = now() - interval '1 second'"))
    with pytest.raises(NotFoundError, match="expired"):
        confirm(engine, old, admin)
    stage(engine, ONE_ZONE, admin)  # a new check sweeps the expired ones away
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM boundary_stages")).scalar_one() == 1
    assert current_zones(engine) == ["Z1", "Z2"]


def test_a_refused_file_is_not_kept(engine: Engine, city: TinyCity) -> None:
    admin = make_admin(engine)
    with pytest.raises(BoundaryImportError, match="NOPE"):
        stage(engine, ONE_ZONE, admin, BoundaryOptions("zones", "NOPE", "NAME"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM boundary_stages")).scalar_one() == 0


def test_a_replace_needing_force_waits_for_it(engine: Engine, city: TinyCity) -> None:
    admin = make_admin(engine)
    file_reports(engine, (100.015, "road"))
    far = [[101.0, 9.0], [101.01, 9.0], [101.01, 9.01], [101.0, 9.01], [101.0, 9.0]]
    staged = stage(engine, zone_file(("ZF", "Far", "T1", far)), admin)
    assert staged.summary.needs_force is not None
    with pytest.raises(BoundaryReplaceRefusedError):
        confirm(engine, staged, admin)
    assert current_zones(engine) == ["Z1", "Z2"]
    assert confirm(engine, staged, admin, force=True).import_id is not None
    assert current_zones(engine) == ["ZF"]


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"layer": "roads", "id_field": "A", "name_field": "B"}, "layer"),
        ({"layer": "wards", "id_field": " ", "name_field": "B"}, "id_field"),
        ({"layer": "wards", "id_field": "A", "name_field": "B\x00"}, "name_field"),
        ({"layer": "wards", "id_field": "A", "name_field": "B", "crs": "x" * 101}, "crs"),
    ],
)
def test_bad_options_name_their_field(form: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        BoundaryOptions.from_form(form)
    assert refused.value.field == field


def test_an_upload_over_the_limit_is_refused_naming_the_file(tmp_path: Path) -> None:
    with (
        pytest.raises(InvalidInputError, match="at most 1,024 bytes") as refused,
        saved_upload(io.BytesIO(b"x" * 2000), "big.geojson", max_bytes=1024),
    ):
        pass
    assert refused.value.field == "file"


def test_after_a_replace_the_lists_say_what_needs_attention(engine: Engine, city: TinyCity) -> None:
    west, east, tree = file_reports(engine, (100.005, "road"), (100.015, "road"), (100.015, "tree"))
    with engine.connect() as conn:
        assert needs_attention(conn).empty
    admin = make_admin(engine)
    confirm(engine, stage(engine, ONE_ZONE, admin), admin)

    with engine.connect() as conn:
        found = needs_attention(conn)
    assert [(t.team.code, t.open_reports) for t in found.teams] == [("T2", 1)]
    assert [(r.category.code, r.team.code, r.zone_code) for r in found.routes] == [
        ("tree", "TREE", "Z2")
    ]
    assert found.reports_total == 3
    assert {r.id for r in found.reports} == {west, east, tree}
    assert all(r.zone_retired and not r.ward_retired for r in found.reports)

    with engine.begin() as conn:
        preview = reroute_reports(conn, settings=ROUTING, dry_run=True)
    moves = {(m.from_team.code, m.to_team.code): m.reports for m in preview.teams}  # type: ignore[union-attr]
    # The tree report's route is stranded, so it goes to the zone's team like the rest.
    assert moves == {("T1", "T1"): 1, ("T2", "T1"): 1, ("TREE", "T1"): 1}
    assert sum(m.team_changes for m in preview.teams) == 2
    with engine.connect() as conn:
        assert needs_attention(conn).reports_total == 3, "a preview moves nothing"

    with engine.begin() as conn:
        done = reroute_reports(conn, settings=ROUTING, actor="user:1:Admin")
    assert done.changed == 3 and done.teams == preview.teams
    with engine.connect() as conn:
        after = needs_attention(conn)
        actors = conn.execute(
            text("SELECT DISTINCT actor FROM report_events WHERE kind = 'rerouted'")
        ).scalars()
        assert list(actors) == ["user:1:Admin"]
    assert after.reports_total == 0 and after.reports == ()
    assert [t.team.code for t in after.teams] == ["T2"] and after.teams[0].open_reports == 0
