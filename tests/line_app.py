"""The service with its LINE channel connected to the fake LINE API, for the LINE tests.

``line_app`` is ``city_app`` (the tiny city, its keys) with ``ISSUEMAP_LINE_*`` pointing at
the ``fake_line`` server; ``LineApp.send`` signs webhook bodies as LINE does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from api.metrics import Metrics
from geo.chat.messages import Pressed, encode_press
from geo.settings import DatabaseSettings, GeocoderSettings, LineSettings, NotificationSettings
from tests.fake_line import FakeLine, body, event, sign
from tests.fixtures import TINY_GAZETTEER, Keys, TinyCity, load_tiny_city, make_keys

PUBLIC_URL = "https://city.example"
INSIDE = (8.40537, 100.00463)
"""A point in ward W-A, zone Z1 (team T1)."""
OUTSIDE = (13.7563, 100.5018)
"""Bangkok: far outside the tiny city."""


def follow(user_id: str, **kw: Any) -> dict[str, Any]:
    """A follow event (the resident added the city's account as a friend)."""
    found = event(user_id, postback="", **kw)
    found.pop("postback")
    return found | {"type": "follow", "follow": {"isUnblocked": False}}


def press(user_id: str, action: str, value: str = "", **kw: Any) -> dict[str, Any]:
    """A postback event: the resident pressed a button the service offered."""
    return event(user_id, postback=encode_press(Pressed(action, value)), **kw)


def app_settings(db_url: str, gazetteer: Path, line: LineSettings) -> AppSettings:
    """The service's settings with ``line`` as its LINE channel."""
    return AppSettings(
        database=DatabaseSettings(database_url=db_url),
        geocoder=GeocoderSettings(gazetteer_path=gazetteer),
        notifications=NotificationSettings(public_url=PUBLIC_URL),
        line=line,
    )


@dataclass
class LineApp:
    """The running service, its database and the fake LINE it talks to."""

    client: TestClient
    fake: FakeLine
    engine: Engine
    city: TinyCity
    keys: Keys

    def send(self, *events: dict[str, Any], signature: str | None = None) -> httpx.Response:
        """POST ``events`` to the webhook, signed with the channel secret unless told."""
        raw = body(*events)
        return self.post(raw, sign(raw) if signature is None else signature)

    def post(self, raw: bytes, signature: str | bytes | None) -> httpx.Response:
        """POST ``raw`` to the webhook with ``signature`` (None: no signature header)."""
        headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Line-Signature"] = signature
        return self.client.post("/line/webhook", content=raw, headers=headers)

    def metric(self, name: str, **labels: str) -> float:
        """The value the service's ``/metrics`` would show for ``name`` with ``labels``."""
        metrics: Metrics = self.client.app.state.metrics  # type: ignore[attr-defined]
        return metrics.registry.get_sample_value(name, labels) or 0.0

    def inbox(self) -> list[dict[str, Any]]:
        """Every stored LINE event, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event_id, user_id, payload, processed_at FROM chat_inbox ORDER BY id")
            ).mappings()
            return [dict(r) for r in rows]

    def reports(self) -> list[dict[str, Any]]:
        """Every report, oldest first, with its team's code and its chat reporter."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT r.id, r.token, r.status, r.language, c.code AS category, "
                    "t.code AS team, rc.user_id AS chat_user "
                    "FROM reports r JOIN categories c ON c.id = r.category_id "
                    "LEFT JOIN teams t ON t.id = r.team_id "
                    "LEFT JOIN report_chats rc ON rc.report_id = r.id ORDER BY r.id"
                )
            ).mappings()
            return [dict(r) for r in rows]


def tiny_city(engine: Engine, tmp_path: Path) -> tuple[TinyCity, Keys, Path]:
    """Load the tiny city and its keys; write its gazetteer."""
    gazetteer = tmp_path / "gazetteer.csv"
    gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        keys = make_keys(conn)
    return city, keys, gazetteer


@pytest.fixture
def line_app(db_url: str, engine: Engine, tmp_path: Path, fake_line: FakeLine) -> Iterator[LineApp]:
    """The service over the tiny city with its LINE channel connected to ``fake_line``."""
    city, keys, gazetteer = tiny_city(engine, tmp_path)
    settings = app_settings(db_url, gazetteer, fake_line.settings())
    with TestClient(create_app(settings)) as client:
        yield LineApp(client, fake_line, engine, city, keys)
