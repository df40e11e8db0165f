"""Chat reporters' own reports: linking, listing only their open ones, rating fixed work."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, text

from geo.access.policy import ANONYMOUS, Principal
from geo.city.geocoding import GazetteerGeocoder
from geo.errors import ConflictError, InvalidInputError, NotFoundError
from geo.reports.intake import Submission, submit_report
from geo.reports.reporters import link_report, open_reports_of, rate_report, report_token
from geo.reports.workflow import change_status
from geo.settings import IntakeSettings, RoutingSettings
from tests.fixtures import load_tiny_city

ADMIN = Principal(role="admin", key_id=1, name="admin")
ALICE = "U" + "a" * 32
BOB = "U" + "b" * 32


def file(conn: Connection, category: str = "road", description: str = "หลุม") -> int:
    result = submit_report(
        conn,
        Submission(category=category, description=description, lat=8.405, lon=100.005),
        principal=ANONYMOUS,
        routing=RoutingSettings(),
        intake=IntakeSettings(),
        geocoder=GazetteerGeocoder([]),
    )
    return result.report.id


@pytest.fixture
def city(engine: Engine) -> Engine:
    with engine.begin() as conn:
        load_tiny_city(conn)
    return engine


def test_only_the_users_own_open_visible_reports_are_listed(city: Engine) -> None:
    with city.begin() as conn:
        mine = [file(conn) for _ in range(3)]
        theirs = file(conn)
        unlinked = file(conn)
        for report_id in mine:
            link_report(conn, report_id=report_id, channel="line", user_id=ALICE)
        link_report(conn, report_id=theirs, channel="line", user_id=BOB)
        # Linking again keeps the first reporter.
        link_report(conn, report_id=theirs, channel="line", user_id=ALICE)
        change_status(conn, mine[0], "resolved", principal=ADMIN)
        conn.execute(
            text("UPDATE reports SET hidden_at = now(), hidden_reason = 'spam' WHERE id = :id"),
            {"id": mine[1]},
        )
    with city.connect() as conn:
        listed = open_reports_of(conn, channel="line", user_id=ALICE)
        assert [r.id for r in listed] == [mine[2]]
        assert listed[0].status == "open" and listed[0].category == "road"
        assert listed[0].token == report_token(conn, mine[2])
        assert [r.id for r in open_reports_of(conn, channel="line", user_id=BOB)] == [theirs]
        assert open_reports_of(conn, channel="line", user_id="U" + "c" * 32) == []
        assert open_reports_of(conn, channel="line", user_id="' OR 1=1 --") == []
        assert report_token(conn, mine[1]) is None  # hidden
        assert report_token(conn, unlinked) is not None


def test_newest_first_and_limited(city: Engine) -> None:
    with city.begin() as conn:
        ids = [file(conn) for _ in range(4)]
        for report_id in ids:
            link_report(conn, report_id=report_id, channel="line", user_id=ALICE)
    with city.connect() as conn:
        listed = open_reports_of(conn, channel="line", user_id=ALICE, limit=2)
    assert [r.id for r in listed] == ids[::-1][:2]


def test_a_reporter_rates_their_fixed_report(city: Engine) -> None:
    with city.begin() as conn:
        report_id = file(conn)
        link_report(conn, report_id=report_id, channel="line", user_id=ALICE)
        change_status(conn, report_id, "resolved", principal=ADMIN)
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with city.begin() as conn:
        rate_report(conn, report_id=report_id, channel="line", user_id=ALICE, rating=4, now=at)
    with city.begin() as conn:
        # Changing one's mind replaces the rating.
        rate_report(conn, report_id=report_id, channel="line", user_id=ALICE, rating=5, now=at)
        row = conn.execute(
            text("SELECT rating, rated_at FROM reports WHERE id = :id"), {"id": report_id}
        ).one()
    assert (row.rating, row.rated_at) == (5, at)


@pytest.mark.parametrize("rating", [0, 6, -1, 10**9, True])
def test_a_rating_out_of_range_names_the_field(city: Engine, rating: int) -> None:
    with city.begin() as conn:
        report_id = file(conn)
        link_report(conn, report_id=report_id, channel="line", user_id=ALICE)
        change_status(conn, report_id, "resolved", principal=ADMIN)
    with city.begin() as conn, pytest.raises(InvalidInputError) as caught:
        rate_report(conn, report_id=report_id, channel="line", user_id=ALICE, rating=rating)
    assert caught.value.field == "rating"
    assert "ให้คะแนน" not in caught.value.message("en")
    assert "1" in caught.value.message("th") and "5" in caught.value.message("th")


def test_nobody_rates_someone_elses_unfixed_or_unknown_report(city: Engine) -> None:
    with city.begin() as conn:
        fixed = file(conn)
        link_report(conn, report_id=fixed, channel="line", user_id=ALICE)
        change_status(conn, fixed, "resolved", principal=ADMIN)
        unfixed = file(conn)
        link_report(conn, report_id=unfixed, channel="line", user_id=ALICE)
        anonymous = file(conn)
        change_status(conn, anonymous, "resolved", principal=ADMIN)
    cases = [
        (fixed, BOB, NotFoundError),  # someone else's
        (anonymous, ALICE, NotFoundError),  # filed on the web
        (10**12, ALICE, NotFoundError),  # unknown
        (unfixed, ALICE, ConflictError),
    ]
    for report_id, user, error in cases:
        with city.begin() as conn, pytest.raises(error) as caught:
            rate_report(conn, report_id=report_id, channel="line", user_id=user, rating=5)
        # Said in Thai, naming the report and nothing about who filed it.
        said = caught.value.message("th")
        assert str(report_id) in said and ALICE not in said and BOB not in said
    with city.connect() as conn:
        rated = conn.execute(text("SELECT count(*) FROM reports WHERE rating IS NOT NULL"))
        assert rated.scalar_one() == 0
