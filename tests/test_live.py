"""Live events: PostgreSQL NOTIFY reaches every subscriber, without personal data.

Waits are at most 2 s: the time a map has to show a change.
"""

import queue
import threading
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Engine, text

from geo.access.policy import Principal
from geo.reports.live import LiveHub, matches
from geo.reports.store import create_report, insert_reports
from geo.reports.workflow import change_status
from geo.settings import RoutingSettings
from tests.fixtures import load_tiny_city

ADMIN = Principal(role="admin", key_id=1, name="test")


def collect(hub: LiveHub) -> "queue.Queue[dict]":
    events: queue.Queue[dict] = queue.Queue()
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
            change_status(conn, report.id, "acknowledged", principal=ADMIN)
            conn.execute(text("UPDATE reports SET description = 'no status change'"))
        for inbox in inboxes:
            event = inbox.get(timeout=2)
            assert (event["op"], event["status"]) == ("update", "acknowledged")
        for inbox in inboxes:
            try:
                extra = inbox.get(timeout=0.5)
            except queue.Empty:
                extra = None
            assert extra is None, "a change that leaves the status alone is not announced"
    finally:
        for hub in hubs:
            hub.stop()


def test_batch_inserts_send_one_bulk_event(engine: Engine, db_url: str) -> None:
    with engine.begin() as conn:
        city = load_tiny_city(conn)
    hub = LiveHub(db_url)
    hub.start()
    try:
        inbox = collect(hub)
        rows = pd.DataFrame(
            {
                "lon": [100.005] * 500,
                "lat": [8.405] * 500,
                "category_id": [city.categories["road"]] * 500,
                "created_at": [datetime(2026, 11, 1, tzinfo=UTC)] * 500,
            }
        )
        with engine.begin() as conn:
            insert_reports(conn, rows, settings=RoutingSettings())
        assert inbox.get(timeout=2) == {"kind": "bulk", "count": 500}
        try:
            extra = inbox.get(timeout=0.5)
        except queue.Empty:
            extra = None
        assert extra is None, "no per-row events for a batch"
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
        with engine.begin() as conn:
            create_report(
                conn,
                lon=100.005,
                lat=8.405,
                category="road",
                description="x",
                settings=RoutingSettings(),
            )
        assert inbox.get(timeout=2)["op"] == "insert"
    finally:
        hub.stop()
