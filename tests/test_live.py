"""Live events: PostgreSQL NOTIFY reaches every subscriber, without personal data.

Waits are at most 2 s: the time a map has to show a change.
"""

import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from geo.access.policy import Principal
from geo.reports.live import LiveHub, matches
from geo.reports.store import (
    create_report,
    insert_reports,
    reroute_as_previewed,
    reroute_preview,
)
from geo.reports.workflow import change_status
from geo.settings import RoutingSettings
from tests.fixtures import TinyCity, load_tiny_city

ADMIN = Principal(role="admin", key_id=1, name="test")
ROUTING = RoutingSettings()


def collect(hub: LiveHub) -> "queue.Queue[dict[str, Any]]":
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    hub.subscribe(lambda event: events.put(event) if event.get("kind") != "resync" else None)
    return events


def test_new_report_and_status_change_reach_every_process_in_time(
    engine: Engine, db_url: str
) -> None:
    with engine.begin() as conn:
        city = load_tiny_city(conn)
    hubs = [LiveHub(db_url), LiveHub(db_url)]  # as in two server processes
    try:
        for hub in hubs:
            hub.start()
        inboxes = [collect(hub) for hub in hubs]
        with engine.begin() as conn:
            report = create_report(
                conn,
                lon=100.015,
                lat=8.405,
                category="road",
                description="x",
                settings=RoutingSettings(),
                reporter_contact="0812345678",
            )
        for inbox in inboxes:
            event = inbox.get(timeout=2)
            assert (event["kind"], event["op"], event["id"]) == ("report", "insert", report.id)
            assert event["zone_id"] == city.zones["Z2"] and event["status"] == "open"
            assert "0812345678" not in str(event)
        with engine.begin() as conn:
            changed = change_status(conn, report.id, "acknowledged", principal=ADMIN)
            conn.execute(text("UPDATE reports SET description = 'no status change'"))
        for inbox in inboxes:
            event = inbox.get(timeout=2)
            assert (event["op"], event["status"]) == ("update", "acknowledged")
            # The change's own id, as its API answer gives it: a page hearing of it both
            # ways tells which is newer.
            assert event["event_id"] == changed.event_id
        for inbox in inboxes:
            try:
                extra = inbox.get(timeout=0.5)
            except queue.Empty:
                extra = None
            assert extra is None, "a change that leaves the status alone is not announced"
    finally:
        for hub in hubs:
            hub.stop()


def road_reports(city: TinyCity, count: int) -> pd.DataFrame:
    """``count`` road reports in zone Z1, for ``insert_reports``."""
    return pd.DataFrame(
        {
            "lon": [100.005] * count,
            "lat": [8.405] * count,
            "category_id": [city.categories["road"]] * count,
            "created_at": [datetime(2026, 11, 1, tzinfo=UTC)] * count,
        }
    )


def next_is_one_filed_now(inbox: "queue.Queue[dict[str, Any]]", engine: Engine) -> None:
    """A report filed now is the inbox's next event: nothing else came before it."""
    with engine.begin() as conn:
        report = create_report(
            conn, lon=100.005, lat=8.405, category="road", description="x", settings=ROUTING
        )
    event = inbox.get(timeout=2)
    assert (event["kind"], event["op"], event["id"]) == ("report", "insert", report.id)


# The real read size, and one shorter than the batch: a national import or re-route is
# longer than a read, and read on batch by batch it would hold later events back and send
# a bulk event per batch.
@pytest.mark.parametrize("read_rows", [None, 100])
def test_a_batch_and_its_reroute_are_one_bulk_event_each(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, read_rows: int | None
) -> None:
    if read_rows is not None:
        monkeypatch.setattr("geo.reports.live._READ_ROWS", read_rows)
        monkeypatch.setattr("geo.reports.live._LOOKBACK_IDS", 10)
    with engine.begin() as conn:
        city = load_tiny_city(conn)
    hub = LiveHub(db_url)
    hub.start()
    try:
        inbox = collect(hub)
        with engine.begin() as conn:
            insert_reports(conn, road_reports(city, 450), settings=ROUTING)
        assert inbox.get(timeout=2) == {"kind": "bulk", "count": 450}
        next_is_one_filed_now(inbox, engine)  # no per-row events, then one by one again
        # Left with T2 in Z2 by an old boundary, then re-routed with the admin's button.
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE reports SET team_id = :t2, zone_id = :z2"),
                {"t2": city.teams["T2"], "z2": city.zones["Z2"]},
            )
        preview = reroute_preview(engine, settings=ROUTING)
        assert preview.changed == 451
        reroute_as_previewed(engine, settings=ROUTING, actor="user:1:Admin", digest=preview.digest)
        assert inbox.get(timeout=2) == {"kind": "bulk", "count": 451}
        next_is_one_filed_now(inbox, engine)  # no per-report events
    finally:
        hub.stop()


def test_clients_watching_a_zone_get_only_its_events() -> None:
    event = {"kind": "report", "zone_id": 3, "team_id": 7}
    assert matches(event, zone_id=3, team_id=None)
    assert not matches(event, zone_id=4, team_id=None)
    assert not matches(event, zone_id=None, team_id=8)
    assert matches({"kind": "bulk"}, zone_id=4, team_id=8)


def test_hub_recovers_after_its_connection_is_killed(engine: Engine, db_url: str) -> None:
    with engine.begin() as conn:
        load_tiny_city(conn)
    hub = LiveHub(db_url, retry_s=0.2)
    resynced = threading.Event()
    hub.subscribe(lambda event: resynced.set() if event.get("kind") == "resync" else None)
    hub.start()
    try:
        inbox = collect(hub)
        resynced.clear()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'issuemap-live' AND datname = current_database()"
                )
            )
        assert resynced.wait(5), "the hub reconnected and told clients to refresh"
        next_is_one_filed_now(inbox, engine)
    finally:
        hub.stop()


def test_a_stopped_hub_lets_go_of_its_connection_without_waiting_for_its_poll(
    engine: Engine, db_url: str
) -> None:
    """A server that shuts down ends its listener then, not at the listener's next poll."""
    listening = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'issuemap-live' AND datname = current_database()"
    )

    def listeners() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(listening)).scalar_one())

    hub = LiveHub(db_url, poll_s=60)
    hub.start()
    assert listeners() == 1
    hub.stop()  # it waits at most five seconds for the listener to end
    # The server ends its side a moment after the listener closed the connection; a listener
    # left waiting for its poll would hold it for most of a minute yet.
    for _ in range(60):
        if not listeners():
            break
        time.sleep(0.05)
    assert listeners() == 0
    hub.stop()  # a second stop is harmless


def _moved_back(engine: Engine, report: int, team: int, zone: int) -> None:
    """As if the boundaries had changed under ``report``: its row says ``team`` and ``zone``."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET team_id = :team, zone_id = :zone WHERE id = :id"),
            {"team": team, "zone": zone, "id": report},
        )


def _next_about(inbox: "queue.Queue[Any]", report: int) -> dict[str, Any]:
    """The next report event of a stream about ``report`` (after its creation's, if sent)."""
    while True:
        kind, data = inbox.get(timeout=10)
        if kind == "report" and data["id"] == report and data["op"] != "insert":
            return dict(data)


def test_a_reroute_moves_reports_between_live_streams(
    city_app: Any, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app
    from tests.test_login import report_in
    from tests.test_moderation import _listen, _until_report

    client, city, keys = city_app
    t1, t2, z1, z2 = city.teams["T1"], city.teams["T2"], city.zones["Z1"], city.zones["Z2"]
    streams = {  # who watches what: the crews by team, the maps by zone
        "crew one": ({"X-API-Key": keys.t1}, f"team={t1}"),
        "crew two": ({"X-API-Key": keys.t2}, f"team={t2}"),
        "public Z2": ({}, f"zone={z2}"),
        "admin Z1": ({"X-API-Key": keys.admin}, f"zone={z1}"),
    }
    inboxes: dict[str, queue.Queue[Any]] = {who: queue.Queue() for who in streams}
    for who, (headers, query) in streams.items():
        threading.Thread(
            target=_listen,
            args=(client, headers, inboxes[who], f"/api/live?{query}"),
            daemon=True,
        ).start()
        assert inboxes[who].get(timeout=10) == ("connected", None)
    report = report_in(client)  # in Z1, T1's zone
    _until_report(inboxes["crew one"], report)  # its creation has gone out
    _moved_back(engine, report, t2, z2)  # left with T2 in Z2 by an old boundary
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    done = CliRunner().invoke(app, ["reports", "reroute", "--actor", "ops"])
    assert done.exit_code == 0 and "changed 1" in done.output, done.output
    leave = {"kind": "report", "op": "leave", "id": report}
    assert _next_about(inboxes["crew two"], report) == leave
    assert _next_about(inboxes["public Z2"], report) == leave
    for who in ("crew one", "admin Z1"):
        event = _next_about(inboxes[who], report)
        assert (event["op"], event["team_id"], event["zone_id"]) == ("update", t1, z1), who
        assert (event["from_team_id"], event["from_zone_id"]) == (t2, z2), who
