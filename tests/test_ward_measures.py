"""The ward dashboard's measures, kept by the database (migration 0016), equal a count from
the reports whatever the service does to them: intake, imports, status changes and undos,
merges, forwards, re-routes, hiding, ratings, boundary replaces, in random order.
"""

from __future__ import annotations

import contextlib
import math
import random
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box
from sqlalchemy import Connection, Engine, text

from geo.access.policy import Principal
from geo.city.boundary_writes import import_boundaries, rebuild_ward_measures
from geo.city.routing import WARD_OF_POINT
from geo.errors import (
    ConflictError,
    InvalidInputError,
    OutsideServiceAreaError,
)
from geo.maps.pages import PageFilters, wards_page_measures
from geo.reports.forwarding import forward_report
from geo.reports.moderation import hide_report, unhide_report
from geo.reports.reporters import link_report, rate_report
from geo.reports.search import ReportFilter
from geo.reports.stats import (
    hours_bucket_edges,
    maintained_ward_measures,
    ward_report_measures,
    whole_days,
    window_parts,
)
from geo.reports.store import create_report, insert_reports, reroute_reports
from geo.reports.workflow import TRANSITIONS, change_status, merge_duplicate, undo_status_change
from geo.settings import RoutingSettings
from tests.fixtures import Keys, TinyCity, load_tiny_city

ADMIN = Principal(role="admin", key_id=1, name="measures test")
ROUTING = RoutingSettings()
TODAY = datetime.now(UTC).date()
DAY_MEASURES = ["reports", "resolved", "within_sla", "rated", "rating_sum", "resolve_seconds"]
COUNTS = ["reports", "resolved", "within_sla", "rated"]


# ---- a count from the reports, written apart from the triggers -----------------------------


def counted_days(conn: Connection) -> pd.DataFrame:
    """``ward_day_measures`` as a GROUP BY over the reports gives it, with numpy's buckets."""
    rows = pd.DataFrame(
        conn.execute(
            text(
                "SELECT cw.id AS ward_id, r.category_id, "
                "CAST(r.created_at AT TIME ZONE 'UTC' AS date) AS day, "
                "extract(epoch FROM r.resolved_at - r.created_at) AS seconds, "
                "r.resolved_at <= r.due_at AS within_sla, r.rating "
                f"FROM reports AS r {WARD_OF_POINT.format(point='r.geom')} "
                "LEFT JOIN wards AS cw ON cw.code = here.code AND cw.retired_at IS NULL "
                "WHERE r.hidden_at IS NULL"
            )
        ).all(),
        columns=["ward_id", "category_id", "day", "seconds", "within_sla", "rating"],
    )
    seconds = rows["seconds"].astype("float64")
    lower, _ = hours_bucket_edges()
    bucket = np.searchsorted(lower, (seconds / 3600).fillna(0).clip(lower=0), side="right") - 1
    rows["hours_bucket"] = pd.Series(bucket, index=rows.index).where(seconds.notna())
    rows["reports"] = 1
    rows["resolved"] = seconds.notna().astype(int)
    rows["within_sla"] = rows["within_sla"].fillna(False).astype(bool).astype(int)
    rows["rated"] = rows["rating"].notna().astype(int)
    rows["rating_sum"] = rows["rating"].fillna(0).astype(int)
    rows["resolve_seconds"] = seconds.round().fillna(0).astype("int64")
    key = ["day", "ward_id", "category_id", "hours_bucket"]
    return _tidy(rows.groupby(key, dropna=False)[DAY_MEASURES].sum().reset_index(), key)


def _tidy(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    frame = frame.astype({c: "Int64" for c in key if c not in ("day", "period", "first_day")})
    frame = frame.astype({c: "int64" for c in frame.columns if c not in key})
    return frame.sort_values(key, na_position="last").reset_index(drop=True)


def kept_days(conn: Connection) -> pd.DataFrame:
    frame = pd.read_sql(text("SELECT * FROM ward_day_measures"), conn)
    return _tidy(frame, ["day", "ward_id", "category_id", "hours_bucket"])


def periods_of(days: pd.DataFrame) -> pd.DataFrame:
    """``ward_period_measures`` as the day rows sum into ISO weeks and calendar months."""
    parts = []
    for period, first in (
        ("week", lambda d: d - timedelta(days=d.isoweekday() - 1)),
        ("month", lambda d: d.replace(day=1)),
    ):
        frame = days.assign(period=period, first_day=days["day"].map(first))
        parts.append(
            frame.groupby(["period", "first_day", "ward_id"], dropna=False)[[*COUNTS, "rating_sum"]]
            .sum()
            .reset_index()
        )
    frame = pd.concat(parts)
    return _tidy(frame[frame["reports"] != 0], ["period", "first_day", "ward_id"])


def kept_periods(conn: Connection) -> pd.DataFrame:
    frame = pd.read_sql(text("SELECT * FROM ward_period_measures"), conn)
    return _tidy(frame, ["period", "first_day", "ward_id"])


def assert_kept_right(engine: Engine, windows: list[tuple[date | None, date | None]]) -> None:
    """The kept tables equal the count from the reports, and so do the dashboard's measures."""
    with engine.connect() as conn:
        expected = counted_days(conn)
        pd.testing.assert_frame_equal(kept_days(conn), expected)
        pd.testing.assert_frame_equal(kept_periods(conn), periods_of(expected))
        for first, last in windows:
            exact = ward_report_measures(
                conn,
                ReportFilter(
                    created_from=None if first is None else datetime.combine(first, time.min, UTC),
                    created_to=None if last is None else datetime.combine(last, time.max, UTC),
                ),
                simplify_m=None,
            )
            kept = maintained_ward_measures(conn, first, last, simplify_m=None)
            assert_same_measures(kept, exact)


def assert_same_measures(kept: pd.DataFrame, exact: pd.DataFrame) -> None:
    """Counts equal, shares and means equal to rounding, medians within their bucket."""
    assert list(kept["code"]) == list(exact["code"])
    assert kept.attrs["outside"] == exact.attrs["outside"]
    pd.testing.assert_frame_equal(kept[COUNTS], exact[COUNTS])
    for column in ("within_sla_share", "mean_rating"):
        np.testing.assert_allclose(kept[column], exact[column], rtol=1e-12)
    median, truth = kept["median_hours_to_resolve"], exact["median_hours_to_resolve"]
    assert list(median.isna()) == list(truth.isna())
    # A bucket spans a factor of 2 ** (1/4); whole seconds are kept.
    np.testing.assert_allclose(median, truth, rtol=2 ** (1 / 4) - 1, atol=1e-3)


# ---- the random life of a small city -------------------------------------------------------


class Life:
    """Random operations on the tiny city, each through the service's own function."""

    def __init__(self, engine: Engine, city: TinyCity, seed: int, folder: Path) -> None:
        self.engine, self.city, self.folder = engine, city, folder
        self.rng = random.Random(seed)
        self.undoable: list[int] = []
        self.imported = 0

    def ids(self, conn: Connection, where: str = "true") -> list[int]:
        return list(
            conn.execute(text(f"SELECT id FROM reports WHERE {where} ORDER BY id")).scalars()
        )

    def point(self) -> tuple[float, float]:
        # The wards span 100.00..100.02 x 8.40..8.41; a little beyond is snapped or refused.
        return self.rng.uniform(99.998, 100.022), self.rng.uniform(8.3985, 8.4115)

    def when(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self.rng.uniform(0, 120 * 86400))

    def intake(self, conn: Connection) -> None:
        lon, lat = self.point()
        with contextlib.suppress(OutsideServiceAreaError):
            create_report(
                conn,
                lon=lon,
                lat=lat,
                category=self.rng.choice(["road", "flood", "tree"]),
                description="measured",
                settings=ROUTING,
                created_at=self.when(),
            )

    def bulk_import(self, conn: Connection) -> None:
        rows = []
        for _ in range(self.rng.randint(1, 25)):
            lon, lat = self.point()
            created = self.when()
            status = self.rng.choice(["open", "in_progress", "resolved", "closed", "rejected"])
            done = status in ("resolved", "closed")
            self.imported += 1
            rows.append(
                {
                    "lon": lon,
                    "lat": lat,
                    "category_id": self.rng.choice(list(self.city.categories.values())),
                    "created_at": created,
                    "status": status,
                    "resolved_at": (
                        created + timedelta(seconds=self.rng.uniform(0, 400 * 3600))
                        if done
                        else None
                    ),
                    "external_id": f"x{self.imported}",
                }
            )
        insert_reports(conn, pd.DataFrame(rows), settings=ROUTING)

    def status(self, conn: Connection) -> None:
        ids = self.ids(conn)
        if not ids:
            return
        report = self.rng.choice(ids)
        now = conn.execute(text("SELECT status FROM reports WHERE id = :id"), {"id": report})
        allowed = sorted(TRANSITIONS[now.scalar_one()])
        change = change_status(conn, report, self.rng.choice(allowed), principal=ADMIN)
        self.undoable.append(change.event_id)

    def undo(self, conn: Connection) -> None:
        if self.undoable:
            with contextlib.suppress(ConflictError):
                undo_status_change(conn, self.undoable.pop(), principal=ADMIN)

    def merge(self, conn: Connection) -> None:
        ids = self.ids(conn)
        if len(ids) >= 2:
            duplicate, original = self.rng.sample(ids, 2)
            with contextlib.suppress(ConflictError, InvalidInputError):
                merge_duplicate(conn, duplicate, original, principal=ADMIN)

    def forward(self, conn: Connection) -> None:
        ids = self.ids(conn)
        if ids:
            with contextlib.suppress(ConflictError, InvalidInputError):
                forward_report(
                    conn,
                    self.rng.choice(ids),
                    to_team=self.rng.choice(list(self.city.teams)),
                    reason="their street",
                    principal=ADMIN,
                    notify=None,
                )

    def reroute(self, conn: Connection) -> None:
        reroute_reports(conn, settings=ROUTING)

    def hide(self, conn: Connection) -> None:
        ids = self.ids(conn)
        if ids:
            report = self.rng.choice(ids)
            hidden = conn.execute(
                text("SELECT hidden_at IS NOT NULL FROM reports WHERE id = :id"), {"id": report}
            ).scalar_one()
            if hidden:
                unhide_report(conn, report, principal=ADMIN)
            else:
                hide_report(conn, report, principal=ADMIN, reason="a name in the text")

    def rate(self, conn: Connection) -> None:
        ids = self.ids(conn, "status IN ('resolved', 'closed') AND hidden_at IS NULL")
        if ids:
            report = self.rng.choice(ids)
            link_report(conn, report_id=report, channel="line", user_id=f"U{report}")
            rate_report(
                conn,
                report_id=report,
                channel="line",
                user_id=f"U{report}",
                rating=self.rng.randint(1, 5),
            )

    def several_at_once(self, conn: Connection) -> None:
        # One statement over many rows: moved in time and category, one grouped upsert.
        conn.execute(
            text(
                "UPDATE reports SET created_at = created_at - interval '1 day', "
                "category_id = :category WHERE id % 3 = :r"
            ),
            {
                "category": self.rng.choice(list(self.city.categories.values())),
                "r": self.rng.randint(0, 2),
            },
        )

    def delete(self, conn: Connection) -> None:
        ids = self.ids(
            conn, "NOT EXISTS (SELECT FROM reports AS d WHERE d.duplicate_of = reports.id)"
        )
        if ids:
            conn.execute(text("DELETE FROM reports WHERE id = :id"), {"id": self.rng.choice(ids)})

    def replace_wards(self) -> None:
        """A new ward file: the line between the two wards moved, maybe new codes, maybe
        the east edge pulled in so some reports lie outside every ward."""
        line = self.rng.uniform(100.004, 100.016)
        east = self.rng.choice([100.02, 100.018])
        codes = self.rng.choice([["W-A", "W-B"], ["N-A", "N-B"], ["W-B", "W-A"]])
        wards = gpd.GeoDataFrame(
            {"code": codes, "name": codes},
            geometry=[box(100.0, 8.40, line, 8.41), box(line, 8.40, east, 8.41)],
            crs=4326,
        )
        path = self.folder / f"wards-{self.rng.random()}.geojson"
        wards.to_file(path, driver="GeoJSON", engine="pyogrio")
        import_boundaries(
            self.engine, path, layer="wards", id_field="code", name_field="name", force=True
        )

    def step(self) -> str:
        name = self.rng.choices(
            [
                "intake",
                "bulk_import",
                "status",
                "undo",
                "merge",
                "forward",
                "reroute",
                "hide",
                "rate",
                "several_at_once",
                "delete",
                "replace_wards",
            ],
            weights=[8, 3, 8, 3, 2, 2, 1, 2, 2, 1, 1, 1],
        )[0]
        if name == "replace_wards":
            self.replace_wards()
        else:
            with self.engine.begin() as conn:
                getattr(self, name)(conn)
        return name


def random_windows(rng: random.Random) -> list[tuple[date | None, date | None]]:
    windows: list[tuple[date | None, date | None]] = [(None, None), (TODAY - timedelta(89), TODAY)]
    for _ in range(3):
        first = TODAY - timedelta(days=rng.randint(0, 130))
        windows.append((first, first + timedelta(days=rng.randint(0, 100))))
    windows.append((None, TODAY - timedelta(days=rng.randint(0, 60))))
    windows.append((TODAY - timedelta(days=rng.randint(0, 60)), None))
    return windows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kept_measures_equal_a_count_from_the_reports(
    engine: Engine, tmp_path: Path, seed: int
) -> None:
    with engine.begin() as conn:
        city = load_tiny_city(conn)
    life = Life(engine, city, seed, tmp_path)
    done = [life.step() for _ in range(70)]
    # Every kind of change happened, so each is checked.
    assert {"intake", "bulk_import", "status", "replace_wards", "hide", "rate"} <= set(done)
    assert_kept_right(engine, random_windows(life.rng))
    for _ in range(30):
        life.step()
    assert_kept_right(engine, random_windows(life.rng))


def test_without_the_triggers_the_measures_go_wrong(engine: Engine, tmp_path: Path) -> None:
    """The check above sees a change the tables missed: here, writes with the triggers off."""
    with engine.begin() as conn:
        city = load_tiny_city(conn)
    life = Life(engine, city, 4, tmp_path)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE reports DISABLE TRIGGER USER"))
        for _ in range(5):
            life.bulk_import(conn)
        conn.execute(text("ALTER TABLE reports ENABLE TRIGGER USER"))
    with pytest.raises(AssertionError):
        assert_kept_right(engine, [])
    with engine.begin() as conn:
        rebuild_ward_measures(conn)
    assert_kept_right(engine, [(None, None)])


# ---- how a window is read ------------------------------------------------------------------


def test_a_window_is_read_as_whole_months_then_weeks_then_days() -> None:
    parts = window_parts(date(2026, 9, 4), date(2026, 12, 2))
    assert parts.months == (date(2026, 10, 1), date(2026, 11, 1))
    # 7 September 2026 is a Monday; the weeks to the 27th fit before October.
    assert parts.weeks == (date(2026, 9, 7), date(2026, 9, 14), date(2026, 9, 21))
    assert parts.days == (
        date(2026, 9, 4),
        date(2026, 9, 5),
        date(2026, 9, 6),
        date(2026, 9, 28),
        date(2026, 9, 29),
        date(2026, 9, 30),
        date(2026, 12, 1),
        date(2026, 12, 2),
    )
    for first in (date(2025, 12, 20), date(2026, 2, 27), date(2026, 3, 1)):
        for length in (0, 1, 6, 7, 13, 31, 45, 90, 400):
            last = first + timedelta(days=length)
            p = window_parts(first, last)
            covered = (
                [
                    m + timedelta(d)
                    for m in p.months
                    for d in range(31)
                    if (m + timedelta(d)).month == m.month
                ]
                + [w + timedelta(d) for w in p.weeks for d in range(7)]
                + list(p.days)
            )
            assert sorted(covered) == [first + timedelta(d) for d in range(length + 1)]


def test_only_windows_of_whole_utc_days_are_read_from_the_kept_measures() -> None:
    midnight = datetime(2026, 3, 1, tzinfo=UTC)
    end = datetime.combine(date(2026, 3, 31), time.max, UTC)
    assert whole_days(midnight, end) == (date(2026, 3, 1), date(2026, 3, 31))
    assert whole_days(None, None) == (None, None)
    assert whole_days(midnight, None) == (date(2026, 3, 1), None)
    assert whole_days(midnight + timedelta(hours=1), end) is None
    assert whole_days(midnight, end - timedelta(seconds=1)) is None
    assert whole_days(midnight.replace(tzinfo=None), None) is None
    bangkok = midnight.astimezone(datetime.now().astimezone().tzinfo)  # same instant
    assert whole_days(bangkok, None) == (date(2026, 3, 1), None)


def test_the_median_is_exact_when_middle_values_are_alone_or_alike_in_their_bucket(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        start = datetime.combine(TODAY - timedelta(days=3), time(6), UTC)
        hours = {100.005: [2, 2, 10, 25], 100.015: [0.5, 138.9, 138.9]}  # W-A, W-B
        insert_reports(
            conn,
            pd.DataFrame(
                [
                    {
                        "lon": lon,
                        "lat": 8.405,
                        "category_id": city.categories["road"],
                        "created_at": start,
                        "status": "resolved",
                        "resolved_at": start + timedelta(hours=h),
                    }
                    for lon, spans in hours.items()
                    for h in spans
                ]
            ),
            settings=ROUTING,
        )
        kept = maintained_ward_measures(conn, simplify_m=None).set_index("code")
        exact = ward_report_measures(conn, simplify_m=None).set_index("code")
    assert list(kept["median_hours_to_resolve"]) == pytest.approx([6.0, 138.9])
    assert list(exact["median_hours_to_resolve"]) == pytest.approx([6.0, 138.9])
    lower, upper = hours_bucket_edges()
    assert lower[0] == 0 and math.isinf(upper[-1])
    assert np.allclose(upper[:-1], lower[1:]) and np.allclose(upper[1:-1] / lower[1:-1], 2**0.25)


# ---- the dashboard shows what it showed --------------------------------------------------


def test_the_dashboard_shows_the_same_numbers_from_the_kept_measures(
    city_app: tuple[TestClient, TinyCity, Keys], engine: Engine, tmp_path: Path
) -> None:
    client, city, keys = city_app
    life = Life(engine, city, 5, tmp_path)
    for _ in range(40):
        life.step()
    start = datetime.combine(TODAY - timedelta(days=89), time.min, UTC)
    # The same window, but not ending on a whole day, is counted from the reports.
    from_reports = PageFilters(lang="en", created_from=start, created_to=start + timedelta(91))
    shown = {}
    with engine.connect() as conn:
        for measure in ("count", "sla"):
            shown[measure] = wards_page_measures(
                conn, ADMIN, PageFilters(lang="en"), measure=measure
            )
            assert shown[measure] == wards_page_measures(conn, ADMIN, from_reports, measure=measure)
    answer = client.get(
        "/maps/wards/measures", params={"measure": "count"}, headers={"X-API-Key": keys.planner}
    )
    assert answer.status_code == 200 and answer.json() == shown["count"]
