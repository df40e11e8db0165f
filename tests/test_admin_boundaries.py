"""Boundary upload in the admin pages: check first, replace on confirm, then what needs attention.

The tiny city (``tests.fixtures``) has zones Z1 (team T1) and Z2 (team T2) and a route of
``tree`` to TREE inside Z2. The new zone file here makes one zone over the whole city for
T1: T2 is left with no zone, the tree route points at a retired zone, and open reports in
Z2 keep their retired zone until they are re-routed.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
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
from tests.test_admin_ui import add_user, sign_in

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


# --- the pages ---------------------------------------------------------------------------


def ring(x0: float, x1: float) -> list[list[float]]:
    return [[x0, 8.40], [x1, 8.40], [x1, 8.41], [x0, 8.41], [x0, 8.40]]


HOLE = [[100.015, 8.404], [100.016, 8.404], [100.016, 8.405], [100.015, 8.405], [100.015, 8.404]]
BOWTIE = [[100.0, 8.400], [100.002, 8.401], [100.002, 8.400], [100.0, 8.401], [100.0, 8.400]]
HOSTILE_ID = '<img src=x onerror="alert(1)">'


def hostile_zones() -> bytes:
    """Two zones over the city for T1, overlapping, one with a hole (a gap), one bow tie
    (repaired), with names and ids an attacker would choose."""
    features = [
        ({"ZONE": HOSTILE_ID, "NAME": "{% raw %}x", "TEAM": "T1"}, [ring(100.0, 100.011)]),
        ({"ZONE": "{{7*7}}", "NAME": "Zone B", "TEAM": "T1"}, [ring(100.010, 100.02), HOLE]),
        ({"ZONE": "ZC", "NAME": "a\u0000b", "TEAM": "T1", "NOTE": "p\u0000q"}, [BOWTIE]),
    ]
    return json.dumps(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": p,
                    "geometry": {"type": "Polygon", "coordinates": r},
                }
                for p, r in features
            ],
        }
    ).encode()


def upload(client: Any, data: bytes, name: str = "zones.geojson", **fields: str) -> Any:
    """The upload form as a browser sends it: the CSRF token first, then the file."""
    form = {
        "csrftoken": client.cookies["csrftoken"],
        "step": "check",
        "layer": "zones",
        "id_field": "ZONE",
        "name_field": "NAME",
        "team_field": "TEAM",
        **fields,
    }
    parts: list[tuple[str, Any]] = [(k, (None, v)) for k, v in form.items()]
    parts.append(("file", (name, data, "application/geo+json")))
    return client.post("/admin/boundaries", files=parts, follow_redirects=False)


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden field {name}"
    return html.unescape(found.group(1))


def confirm_form(client: Any, page: str, lang: str = "en", **changes: str) -> Any:
    form = {
        "csrftoken": client.cookies["csrftoken"],
        "step": "confirm",
        "token": hidden(page, "token"),
        "sha256": hidden(page, "sha256"),
    } | changes
    return client.post(
        "/admin/boundaries",
        data=form,
        headers={"Accept-Language": lang},
        follow_redirects=False,
    )


@pytest.fixture
def pages_app(city_app: Any) -> Any:
    client, _city, _keys = city_app
    return client


@pytest.fixture
def admin_client(pages_app: Any, engine: Engine) -> Any:
    client = pages_app
    add_user(engine, "admin@city.example", "admin")
    sign_in(client, "admin@city.example")
    return client


def stages(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM boundary_stages")).scalar_one())


def test_upload_shows_the_check_report_and_replaces_only_on_confirm(
    admin_client: Any, engine: Engine
) -> None:
    client = admin_client
    form = client.get("/admin/boundaries", headers={"Accept-Language": "en"})
    assert form.status_code == 200
    # The CSRF check reads a multipart form only up to the first file: the token leads.
    assert form.text.index('name="csrftoken"') < form.text.index('type="file"')

    checked = upload(client, hostile_zones())

    assert checked.status_code == 200, checked.text
    page = checked.text
    assert 'id="nothing-yet"' in page and current_zones(engine) == ["Z1", "Z2"]
    assert '<td id="source-crs">EPSG:4326</td>' in page
    assert '<li class="repaired">ZC</li>' in page
    assert page.count('class="overlap"') == 2 and page.count('class="gap"') == 1
    assert "100.015500, 8.404500" in page
    assert "<img src=x" not in page and str(escape(HOSTILE_ID)) in page
    assert "{{7*7}} · " in page or " · {{7*7}}" in page, "an id is shown as it is, never run"
    assert "\x00" not in page
    assert stages(engine) == 1

    done = confirm_form(client, page)

    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith("/admin/attention?replaced=")
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT code, name FROM zones WHERE retired_at IS NULL ORDER BY code")
        ).all()
        sha = conn.execute(text("SELECT sha256 FROM boundary_imports ORDER BY id DESC")).first()
    # GDAL reads text up to a NUL byte: "a\x00b" is stored as "a", never with the NUL.
    assert [tuple(r) for r in stored] == [
        (HOSTILE_ID, "{% raw %}x"),
        ("ZC", "a"),
        ("{{7*7}}", "Zone B"),
    ]
    assert sha is not None
    assert sha.sha256 == hidden(page, "sha256") == hashlib.sha256(hostile_zones()).hexdigest()
    assert stages(engine) == 0


def test_an_upload_without_its_csrf_token_first_is_refused(
    admin_client: Any, engine: Engine
) -> None:
    client = admin_client
    good = client.cookies["csrftoken"]
    file_part = ("file", ("zones.geojson", ONE_ZONE, "application/geo+json"))
    fields = [("step", (None, "check")), ("layer", (None, "zones")), ("id_field", (None, "ZONE"))]
    for parts in (
        [*fields, file_part],  # no token
        [("csrftoken", (None, "forged")), *fields, file_part],
        [*fields, file_part, ("csrftoken", (None, good))],  # the token after the file
    ):
        refused = client.post("/admin/boundaries", files=parts, follow_redirects=False)
        assert refused.status_code == 403, refused.text
    assert stages(engine) == 0
    assert upload(client, ONE_ZONE).status_code == 200
    assert stages(engine) == 1


def test_a_forged_or_stale_confirm_is_refused_and_changes_nothing(
    admin_client: Any, engine: Engine
) -> None:
    client = admin_client
    page = upload(client, ONE_ZONE).text
    english = {"Accept-Language": "en"}

    forged_sha = confirm_form(client, page, sha256="0" * 64)
    assert forged_sha.status_code == 409 and "not the file that was checked" in forged_sha.text
    forged_token = confirm_form(client, page, token="x" * 43)
    assert forged_token.status_code == 404
    no_csrf = client.post(
        "/admin/boundaries",
        data={"step": "confirm", "token": hidden(page, "token"), "sha256": hidden(page, "sha256")},
        follow_redirects=False,
    )
    assert no_csrf.status_code == 403
    assert current_zones(engine) == ["Z1", "Z2"]

    # Another admin replaces the zones meanwhile: the first check no longer says what a
    # replace would do.
    newer = upload(client, zone_file(("ZB", "Other", "T2", WHOLE_CITY))).text
    assert confirm_form(client, newer).status_code == 303
    stale = client.post(
        "/admin/boundaries",
        data={
            "csrftoken": client.cookies["csrftoken"],
            "step": "confirm",
            "token": hidden(page, "token"),
            "sha256": hidden(page, "sha256"),
        },
        headers=english,
        follow_redirects=False,
    )
    assert stale.status_code == 409
    assert "replaced by another import after this file was checked" in stale.text
    assert current_zones(engine) == ["ZB"]

    add_user(engine, "other@city.example", "admin")
    mine = upload(client, ONE_ZONE).text
    sign_in(client, "other@city.example")
    assert confirm_form(client, mine).status_code == 404, "a check is its admin's own"
    assert current_zones(engine) == ["ZB"]


def test_a_replace_needing_force_asks_for_it(admin_client: Any, engine: Engine) -> None:
    client = admin_client
    with engine.begin() as conn:
        create_report(
            conn, lon=100.015, lat=8.405, category="road", description="", settings=ROUTING
        )
    far = [[101.0, 9.0], [101.01, 9.0], [101.01, 9.01], [101.0, 9.01], [101.0, 9.0]]
    page = upload(client, zone_file(("ZF", "Far", "T1", far))).text
    assert 'id="problem"' in page and 'name="force"' in page

    unforced = confirm_form(client, page)
    assert unforced.status_code == 422 and current_zones(engine) == ["Z1", "Z2"]
    assert confirm_form(client, page, force="yes").status_code == 303
    assert current_zones(engine) == ["ZF"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"layer": "roads"}, "layer"),
        ({"id_field": ""}, "id_field"),
        ({"name_field": "NAME\x00"}, "name_field"),
        ({"crs": "x" * 101}, "crs"),
        ({"crs": "{{7*7}}"}, None),
    ],
)
def test_bad_fields_come_back_on_the_form(
    admin_client: Any, engine: Engine, fields: dict[str, str], field: str | None
) -> None:
    answer = upload(admin_client, ONE_ZONE, **fields)
    assert answer.status_code == 422, answer.text
    assert 'id="upload-error"' in answer.text
    if field == "layer":
        assert 'class="form-select is-invalid" name="layer"' in answer.text
    elif field is not None:
        assert f'is-invalid" type="text" name="{field}"' in answer.text
    else:  # the value is quoted back as it is, never run
        assert "{{7*7}}" in answer.text
    assert stages(engine) == 0 and current_zones(engine) == ["Z1", "Z2"]


def test_a_file_over_the_limit_or_of_an_unknown_type_is_refused_naming_the_field(
    admin_client: Any, engine: Engine
) -> None:
    from api.deps import replace_app_state

    client = admin_client
    replace_app_state(client.app, boundaries=BoundarySettings(upload_max_bytes=4096))
    too_big = client.post(
        "/admin/boundaries",
        files=[
            ("csrftoken", (None, client.cookies["csrftoken"])),
            ("step", (None, "check")),
            ("layer", (None, "zones")),
            ("id_field", (None, "ZONE")),
            ("name_field", (None, "NAME")),
            ("file", ("zones.geojson", ONE_ZONE + b" " * 5000, "application/geo+json")),
        ],
        headers={"Accept-Language": "en"},
    )
    assert too_big.status_code == 422
    assert "file: must be at most 4,096 bytes" in too_big.text
    assert 'is-invalid" type="file"' in too_big.text
    # Far past the limit, the request is refused by its length before its body is read.
    huge = client.post(
        "/admin/boundaries",
        files=[
            ("csrftoken", (None, client.cookies["csrftoken"])),
            ("file", ("zones.geojson", b" " * 200_000, "application/geo+json")),
        ],
        headers={"Accept-Language": "en"},
    )
    assert huge.status_code == 413 and "file: must be at most 4,096 bytes" in huge.text
    wrong = upload(client, ONE_ZONE, name="zones.exe")
    assert wrong.status_code == 422 and ".geojson" in wrong.text
    assert stages(engine) == 0 and current_zones(engine) == ["Z1", "Z2"]


def test_after_a_replace_the_page_lists_what_needs_attention_and_reroutes_as_previewed(
    admin_client: Any, engine: Engine
) -> None:
    client = admin_client
    west, east, tree = file_reports(engine, (100.005, "road"), (100.015, "road"), (100.015, "tree"))
    calm = client.get("/admin/attention", headers={"Accept-Language": "en"})
    assert calm.status_code == 200 and 'id="all-clear"' in calm.text
    assert 'id="reroute-none"' in calm.text

    page = upload(client, zone_file(("ZA", "<b>{{7*7}}</b>", "T1", WHOLE_CITY))).text
    done = confirm_form(client, page)
    listed = client.get(done.headers["location"], headers={"Accept-Language": "en"})

    assert listed.status_code == 200
    text_ = listed.text
    assert 'id="replaced"' in text_
    assert re.findall(r'class="bare-team" data-code="([^"]*)"', text_) == ["T2"]
    assert re.findall(r'class="stranded-route" data-zone="([^"]*)"', text_) == ["Z2"]
    shown = {int(i) for i in re.findall(r'class="stranded-report" data-id="(\d+)"', text_)}
    assert shown == {west, east, tree}
    moves = dict(
        ((a, b), int(n))
        for a, b, n in re.findall(
            r'class="move" data-from="([^"]*)" data-to="([^"]*)">.*?<td class="count">(\d+)</td>',
            text_,
            re.S,
        )
    )
    assert moves == {("T1", "T1"): 1, ("T2", "T1"): 1, ("TREE", "T1"): 1}
    assert "Re-route 3 reports" in text_
    digest = hidden(text_, "preview")

    # A report closed after the preview changes what the button would move: refused.
    with engine.begin() as conn:
        conn.execute(text("UPDATE reports SET status = 'closed' WHERE id = :id"), {"id": tree})
    changed = client.post(
        "/admin/attention",
        data={"csrftoken": client.cookies["csrftoken"], "preview": digest},
        headers={"Accept-Language": "en"},
        follow_redirects=False,
    )
    assert changed.status_code == 409 and "changed since its preview" in changed.text
    with engine.connect() as conn:
        moved = conn.execute(text("SELECT count(*) FROM report_events WHERE kind = 'rerouted'"))
        assert moved.scalar_one() == 0
    assert "Re-route 2 reports" in changed.text

    assert (
        client.post(
            "/admin/attention", data={"preview": hidden(changed.text, "preview")}
        ).status_code
        == 403
    ), "the button needs the CSRF token"
    rerouted = client.post(
        "/admin/attention",
        data={"csrftoken": client.cookies["csrftoken"], "preview": hidden(changed.text, "preview")},
        follow_redirects=False,
    )
    assert rerouted.status_code == 303 and rerouted.headers["location"].endswith("rerouted=2")
    with engine.connect() as conn:
        actors = conn.execute(
            text("SELECT actor, count(*) FROM report_events WHERE kind = 'rerouted' GROUP BY 1")
        ).all()
        teams = conn.execute(
            text(
                "SELECT DISTINCT t.code FROM reports r JOIN teams t ON t.id = r.team_id "
                "WHERE r.status = 'open'"
            )
        ).scalars()
        assert list(teams) == ["T1"]
    admin_id = actors[0].actor.split(":")[1]
    assert [tuple(a) for a in actors] == [(f"user:{admin_id}:Admin Ploy", 2)]
    after = client.get(rerouted.headers["location"])
    assert 'id="rerouted"' in after.text and 'class="stranded-report"' not in after.text
    assert "<b>{{7*7}}</b>" not in after.text


@pytest.mark.parametrize("role", ["planner", "field_team"])
def test_staff_who_are_not_admins_cannot_upload_confirm_or_reroute(
    pages_app: Any, engine: Engine, role: str
) -> None:
    client = pages_app
    add_user(engine, "admin@city.example", "admin")
    sign_in(client, "admin@city.example")
    page = upload(client, ONE_ZONE).text
    add_user(engine, "staff@city.example", role, "T1" if role == "field_team" else None)
    sign_in(client, "staff@city.example")
    assert client.get("/admin/boundaries").status_code == 403
    assert client.get("/admin/attention").status_code == 403
    assert upload(client, ONE_ZONE).status_code == 403
    assert confirm_form(client, page).status_code == 403
    reroute = client.post(
        "/admin/attention", data={"csrftoken": client.cookies["csrftoken"], "preview": "x"}
    )
    assert reroute.status_code == 403
    assert stages(engine) == 1 and current_zones(engine) == ["Z1", "Z2"]
    client.cookies.clear()
    assert client.get("/admin/attention", follow_redirects=False).status_code == 303


def test_the_pages_speak_thai_by_default(admin_client: Any) -> None:
    form = admin_client.get("/admin/boundaries")
    assert "ตรวจไฟล์" in form.text
    report = upload(admin_client, ONE_ZONE).text
    assert "ยังไม่มีการเปลี่ยนแปลง" in report
    assert "ต้องการความสนใจ" in admin_client.get("/admin/attention").text


def test_an_admin_key_cannot_stage_a_file_that_no_person_would_confirm(
    city_app: Any, engine: Engine
) -> None:
    client, _city, keys = city_app
    answer = client.post(
        "/admin/boundaries",
        headers={"X-API-Key": keys.admin, "Accept-Language": "en"},
        files=[
            ("step", (None, "check")),
            ("layer", (None, "zones")),
            ("id_field", (None, "ZONE")),
            ("name_field", (None, "NAME")),
            ("file", ("zones.geojson", ONE_ZONE, "application/geo+json")),
        ],
    )
    assert answer.status_code == 403
    assert "Sign in with your own account" in answer.text
    assert stages(engine) == 0 and current_zones(engine) == ["Z1", "Z2"]


def test_names_from_a_file_are_shown_as_text_on_the_attention_page(
    admin_client: Any, engine: Engine
) -> None:
    client = admin_client
    file_reports(engine, (100.015, "road"))
    hostile_team = "<b>{{7*7}}</b>"
    page = upload(client, zone_file(("ZA", "{% raw %}", hostile_team, WHOLE_CITY))).text
    assert str(escape(hostile_team)) in page and hostile_team not in page  # teams created
    assert confirm_form(client, page).status_code == 303
    listed = client.get("/admin/attention").text
    assert str(escape(hostile_team)) in listed and hostile_team not in listed
    assert "<b>49</b>" not in listed


def test_typed_values_come_back_without_control_characters(admin_client: Any) -> None:
    answer = upload(admin_client, ONE_ZONE, name_field="NA\x00ME", team_field="<i>{{7*7}}")
    assert answer.status_code == 422
    assert "\x00" not in answer.text and "<i>{{7*7}}" not in answer.text
    assert 'value="&lt;i&gt;{{7*7}}"' in answer.text
