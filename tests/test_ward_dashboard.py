"""The ward dashboard tells the truth: classes, palettes, legend counts, the date range, and
reports counted in the current ward covering them, through a boundary re-import.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from fastapi.testclient import TestClient
from matplotlib import colormaps
from matplotlib.colors import to_hex, to_rgb
from shapely.geometry import box
from sqlalchemy import Engine, text

from geo import analysis
from geo.city.boundary_writes import import_boundaries
from geo.maps.builders import render_page, ward_dashboard_map
from geo.maps.choropleth import (
    MIN_RESOLVED,
    SLA_SHARE_CMAP,
    TOO_FEW_COLOUR,
    class_bins,
    classify,
)
from geo.maps.pagedata import ward_measures
from geo.maps.pages import DASHBOARD_DAYS, dashboard_window
from geo.reports.stats import ward_measures_sql
from tests.fixtures import Keys, TinyCity

NOW = datetime.now(UTC)


def legend_rows(page: str) -> list[tuple[str, list[str]]]:
    """Each legend row's swatch colour and its cells' text."""
    rows = re.findall(r'<tr class="(?:im-class|im-too-few)" data-fill="([^"]+)">(.*?)</tr>', page)
    return [
        (fill, [html.unescape(c) for c in re.findall(r"<td>([^<]*)</td>", cells)])
        for fill, cells in rows
    ]


# ---- classes, palettes and legend data, without a database --------------------------------


@pytest.mark.parametrize("method", ["quantiles", "fisher_jenks"])
@pytest.mark.parametrize("measure", ["count", "sla", "median_hours"])
def test_each_wards_colour_is_its_legend_class_colour(method: str, measure: str) -> None:
    values: list[float | None] = (
        [0.05, 0.2, 0.35, 0.5, 0.62, 0.8, 0.9, 1.0, None, 0.4]
        if measure == "sla"
        else [1, 3, 8, 13, 21, 34, 55, 89, None, 2]
    )
    reports = [20] * 10
    resolved = [10, 10, 10, 10, 10, 10, 10, 10, 0, 2]
    got = classify(measure, values, reports, resolved, method=method, k=4)
    usable = [
        v is not None and (measure == "count" or n >= MIN_RESOLVED)
        for v, n in zip(values, resolved, strict=True)
    ]
    for value, colour, ok in zip(values, got.colours, usable, strict=True):
        if not ok:
            assert colour is None  # too few: not coloured as if its value meant something
            continue
        assert value is not None
        (cls,) = [c for c in got.classes if c.low <= value <= c.high and c.colour == colour]
        assert cls.colour == colour
    assert sum(c.wards for c in got.classes) + got.too_few_wards == len(values)
    assert sum(c.reports for c in got.classes) + got.too_few_reports == sum(reports)
    assert sum(c.resolved for c in got.classes) + got.too_few_resolved == sum(resolved)
    assert len({c.colour for c in got.classes}) == len(got.classes) <= 4


def test_a_good_share_is_green_and_a_bad_one_magenta_on_the_notebooks_ramp() -> None:
    got = classify("sla", [0.05, 0.1, 0.9, 0.95], [10] * 4, [10] * 4, k=2)
    low, high = got.classes
    red, green, _ = to_rgb(high.colour)
    assert green > red  # the well-kept wards are green
    red, green, _ = to_rgb(low.colour)
    assert red > green  # the late ones are not
    # The notebook draws the same ramp over 0..1: a class takes its middle's colour.
    assert high.colour == to_hex(colormaps[SLA_SHARE_CMAP]((high.low + high.high) / 2))
    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "03_sla_performance.ipynb"
    assert "cmap=SLA_SHARE_CMAP" in notebook.read_text(encoding="utf-8")


def test_few_distinct_values_make_fewer_classes_and_none_make_none() -> None:
    for method in ("quantiles", "fisher_jenks"):
        assert class_bins([3.0, 3.0, 3.0], method=method, k=5) == ([3.0], [0, 0, 0])
        edges, members = class_bins([1.0, 1.0, 2.0, 2.0, 2.0], method=method, k=5)
        assert (edges, members) == ([1.0, 2.0], [0, 0, 1, 1, 1])
        edges, members = class_bins([float(v) for v in range(20)], method=method, k=4)
        assert len(edges) == 4 and edges[-1] == 19.0 and len(set(members)) == 4
        assert class_bins([], method=method, k=5) == ([], [])
    nothing = classify("sla", [None, None], [0, 0], [0, 0])
    assert nothing.classes == [] and nothing.colours == [None, None]
    assert nothing.too_few_wards == 2
    with pytest.raises(ValueError, match="method"):
        class_bins([1.0], method="evil", k=3)
    with pytest.raises(ValueError, match="k"):
        class_bins([1.0], method="quantiles", k=0)


def test_the_legend_lists_counts_and_marks_wards_with_too_few_reports() -> None:
    wards = gpd.GeoDataFrame(
        {
            "code": ["A", "B", "C"],
            "name": ["A", "<img src=x onerror=alert(1)>", "{{7*7}}"],
            "sla": [0.9, 0.2, 1.0],
            "count": [30, 20, 3],
            "median_hours": [10.0, 80.0, 5.0],
            "reports": [30, 20, 3],
            "resolved": [20, 10, 2],
        },
        geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1)],
        crs=4326,
    )
    page = render_page(
        ward_dashboard_map(
            wards=wards, measure="sla", window=(date(2026, 1, 1), date(2026, 3, 31)), outside=4
        )
    )
    rows = legend_rows(page)
    assert [cells[1:] for _, cells in rows] == [
        ["1", "20", "10"],
        ["1", "30", "20"],
        ["1", "3", "2"],
    ]
    assert [cells[0] for _, cells in rows[:2]] == ["20%", "20% – 90%"]  # one value: no range
    assert rows[-1] == (TOO_FEW_COLOUR, ["Too few reports (fewer than 5 resolved)", "1", "3", "2"])
    assert "Reports outside every current ward: 4" in page
    assert "current ward that contains their location" in page
    assert 'name="created_from" type="date" value="2026-01-01"' in page
    assert 'name="created_to" type="date" value="2026-03-31"' in page
    assert "<img src=x" not in page


# ---- the page, over the database ----------------------------------------------------------


def _report(conn: Any, city: TinyCity, lon: float, lat: float, days_ago: float, **kw: Any) -> None:
    created = NOW - timedelta(days=days_ago)
    conn.execute(
        text(
            "INSERT INTO reports (category_id, status, created_at, resolved_at, due_at, geom) "
            "VALUES (:cat, :status, :created, :resolved, :due, "
            "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
        ),
        {
            "cat": city.categories["road"],
            "status": "resolved" if kw.get("resolved") else "open",
            "created": created,
            "resolved": created + timedelta(hours=10) if kw.get("resolved") else None,
            "due": created + timedelta(hours=48),
            "lon": lon,
            "lat": lat,
        },
    )


def dashboard(client: TestClient, keys: Keys, **params: Any) -> str:
    answer = client.get("/maps/wards", params=params, headers={"X-API-Key": keys.planner})
    assert answer.status_code == 200, answer.text
    return answer.text


def totals(page: str) -> tuple[int, int]:
    """Reports in the legend's rows, and reports outside every ward, as the page says."""
    inside = sum(int(cells[2].replace(",", "")) for _, cells in legend_rows(page))
    found = re.search(r"Reports outside every current ward: ([0-9,]+)", page)
    assert found
    return inside, int(found.group(1).replace(",", ""))


def test_history_stays_on_the_dashboard_after_a_boundary_reimport(
    city_app: tuple[TestClient, TinyCity, Keys], engine: Engine, tmp_path: Path
) -> None:
    client, city, keys = city_app
    with engine.begin() as conn:
        for _ in range(3):
            _report(conn, city, 100.005, 8.405, 3, resolved=True)  # W-A
        _report(conn, city, 100.015, 8.405, 3, resolved=True)  # W-B
        _report(conn, city, 100.019, 8.409, 3)  # W-B, near its east edge
    before = dashboard(client, keys, lang="en")
    assert totals(before) == (5, 0)

    # New codes; the new N-B stops short of the old W-B's east edge.
    new = gpd.GeoDataFrame(
        {"code": ["N-A", "N-B"], "name": ["North A", "North B"]},
        geometry=[box(100.0, 8.40, 100.01, 8.41), box(100.01, 8.40, 100.018, 8.41)],
        crs=4326,
    )
    path = tmp_path / "wards.geojson"
    new.to_file(path, driver="GeoJSON", engine="pyogrio")
    summary = import_boundaries(
        engine, path, layer="wards", id_field="code", name_field="name", force=True
    )
    assert summary.retired_count == 2

    after = dashboard(client, keys, lang="en")
    assert totals(after) == (4, 1)  # nothing silently dropped: one is told as outside
    with engine.connect() as conn:
        frame = ward_measures(conn, created_from=NOW - timedelta(days=30))
    assert dict(zip(frame["code"], frame["count"], strict=True)) == {"N-A": 3, "N-B": 1}
    assert frame.attrs["outside"]["reports"] == 1
    notebook = analysis.ward_stats(engine)
    assert list(notebook["reports"]) == [3, 1] and notebook.attrs["outside"]["reports"] == 1


def test_a_point_on_a_shared_edge_counts_where_routing_put_it(
    city_app: tuple[TestClient, TinyCity, Keys], engine: Engine
) -> None:
    client, _, _ = city_app
    answer = client.post(
        "/api/reports",
        json={"category": "road", "description": "edge", "lat": 8.405, "lon": 100.01},
    )
    assert answer.status_code == 201, answer.text
    with engine.connect() as conn:
        routed = conn.execute(
            text("SELECT w.code FROM reports r JOIN wards w ON w.id = r.ward_id")
        ).scalar_one()
        frame = ward_measures(conn)
    assert dict(zip(frame["code"], frame["count"], strict=True))[routed] == 1


def test_the_date_range_is_chosen_on_the_page(
    city_app: tuple[TestClient, TinyCity, Keys], engine: Engine
) -> None:
    client, city, keys = city_app
    with engine.begin() as conn:
        _report(conn, city, 100.005, 8.405, 10)
        _report(conn, city, 100.005, 8.405, DASHBOARD_DAYS + 30)
    assert totals(dashboard(client, keys, lang="en")) == (1, 0)  # the last 90 days
    old = (NOW - timedelta(days=DASHBOARD_DAYS + 60)).date().isoformat()
    page = dashboard(client, keys, lang="en", created_from=old)
    assert totals(page) == (2, 0)
    assert f'name="created_from" type="date" value="{old}"' in page
    to = (NOW - timedelta(days=DASHBOARD_DAYS)).date().isoformat()
    assert totals(dashboard(client, keys, lang="en", created_from=old, created_to=to)) == (1, 0)
    start, end = dashboard_window(None, None, today=date(2026, 3, 31))
    assert (start.date(), end.date()) == (date(2026, 1, 1), date(2026, 3, 31))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"k": "0"}, "k"),
        ({"k": "999"}, "k"),
        ({"k": "{{7*7}}"}, "k"),
        ({"method": "evil"}, "method"),
        ({"method": "quantiles\x00"}, "method"),
        ({"created_from": "{{7*7}}"}, "created_from"),
        ({"created_from": "2026-05-02", "created_to": "2026-05-01"}, "created_to"),
        ({"created_from": "2999-01-01"}, "created_from"),
        ({"created_to": "<img src=x onerror=alert(1)>"}, "created_to"),
        ({"measure": "' OR 1=1 --"}, "measure"),
    ],
)
def test_bad_parameters_are_refused_by_name(
    city_app: tuple[TestClient, TinyCity, Keys], params: dict[str, str], field: str
) -> None:
    client, _, keys = city_app
    answer = client.get("/maps/wards", params=params, headers={"X-API-Key": keys.planner})
    assert answer.status_code in (400, 422), answer.text
    assert field in answer.text
    assert "<img src=x" not in answer.text
    thai = client.get(
        "/maps/wards", params=params | {"lang": "th"}, headers={"X-API-Key": keys.planner}
    )
    assert thai.status_code == answer.status_code and field in thai.text


def test_the_measure_query_probes_the_ward_index(engine: Engine, city_app: Any) -> None:
    """A city of 400 wards and 20,000 reports: each report finds its ward through GiST."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE wards SET retired_at = now()"))
        conn.execute(
            text(
                "INSERT INTO wards (code, name, import_id, geom) "
                "SELECT 'G' || i || '-' || j, 'G', (SELECT min(id) FROM boundary_imports), "
                "ST_Multi(ST_MakeEnvelope(100 + i * 0.001, 8.4 + j * 0.0005, "
                "100 + (i + 1) * 0.001, 8.4 + (j + 1) * 0.0005, 4326)) "
                "FROM generate_series(0, 19) AS i, generate_series(0, 19) AS j"
            )
        )
        conn.execute(
            text(
                "INSERT INTO reports (category_id, status, created_at, due_at, geom) "
                "SELECT (SELECT min(id) FROM categories), 'open', now() - interval '1 day', "
                "now(), ST_SetSRID(ST_MakePoint(100 + 0.02 * random(), "
                "8.4 + 0.01 * random()), 4326) FROM generate_series(1, 20000)"
            )
        )
        conn.execute(text("ANALYZE wards"))
        conn.execute(text("ANALYZE reports"))
        sql = ward_measures_sql(
            "SELECT r.geom, r.created_at, r.resolved_at, r.due_at, r.rating FROM reports AS r"
        )
        plan = "\n".join(
            conn.execute(
                text("EXPLAIN " + sql),
                {"target_hours": None, "population_field": "", "tol": 0.0},
            ).scalars()
        )
    assert "ix_wards_geom" in plan, plan
