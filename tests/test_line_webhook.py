"""LINE's webhook against a real PostGIS and the fake LINE API: who may call it, what it
stores, and that nothing a caller sends turns into an error page or a second effect."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from geo.chat.line import WEBHOOK_BODY_MAX
from geo.settings import LineSettings
from tests.fake_line import FakeLine, body, location, sign, text
from tests.line_app import INSIDE, LineApp, app_settings, follow, tiny_city

pytest_plugins = ("tests.fake_line", "tests.line_app")

USER = "U" + "1" * 32


def refused(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert answer.json()["error"] == "LineWebhookError"


# --- who may call it ------------------------------------------------------------------------


def test_an_unsigned_call_is_refused_and_stores_nothing(line_app: LineApp) -> None:
    answer = line_app.send(text(USER, "หลุมบนถนน"), signature="")
    refused(answer, "X-Line-Signature")
    refused(line_app.post(body(text(USER, "หลุมบนถนน")), None), "X-Line-Signature")
    assert "X-Line-Signature" in answer.json()["detail"]
    assert line_app.inbox() == []
    assert line_app.fake.calls == []


def test_a_tampered_body_is_refused_and_changes_nothing(line_app: LineApp) -> None:
    signed = body(text(USER, "หลุมบนถนน"))
    tampered = body(text(USER, "{{7*7}} something else"))
    refused(line_app.post(tampered, sign(signed)), "X-Line-Signature")
    # Signed with another channel's secret, or a signature that is not even base64.
    refused(line_app.post(signed, sign(signed, secret="another-secret")), "X-Line-Signature")
    refused(line_app.post(signed, "<img src=x onerror=alert(1)>"), "X-Line-Signature")
    refused(line_app.post(signed, ("é" * 100).encode("latin-1")), "X-Line-Signature")
    assert line_app.inbox() == []
    assert line_app.reports() == []
    assert line_app.fake.calls == []


def test_without_a_secret_the_webhook_is_not_there(
    db_url: str, engine: Engine, tmp_path: Path, fake_line: FakeLine
) -> None:
    _, _, gazetteer = tiny_city(engine, tmp_path)
    settings = app_settings(db_url, gazetteer, LineSettings(channel_secret=None))
    with TestClient(create_app(settings)) as client:
        raw = body(text(USER, "หลุมบนถนน"))
        answer = client.post("/line/webhook", content=raw, headers={"X-Line-Signature": sign(raw)})
        unknown = client.post("/line/nowhere", content=raw, headers={"X-Line-Signature": sign(raw)})
    assert answer.status_code == unknown.status_code == 404
    assert answer.json() == unknown.json()
    assert fake_line.calls == []


def test_line_verify_button_gets_200(line_app: LineApp) -> None:
    answer = line_app.send()
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 0}
    assert line_app.fake.calls == []


# --- what it takes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{{7*7}}",
        b"{%",
        b'{"events": 5}',
        b'{"destination": "U"}',
        b"[]",
        b'"events"',
        b'{"events": [5]}',
        b'{"events": [{"no": "type"}]}',
        body(location("U1", 8.4, 100.0)).replace(b"8.4", b"NaN"),
        body(location("U1", 8.4, 100.0)).replace(b"100.0", b"-Infinity"),
        b"\xff\xfe not utf-8",
        b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        body(text("U1", "x") | {"deep": json.loads("[" * 900 + "]" * 900)}),
    ],
)
def test_a_signed_body_that_is_not_line_s_is_refused(line_app: LineApp, raw: bytes) -> None:
    refused(line_app.post(raw, sign(raw)), "body")
    assert line_app.inbox() == []


def test_a_giant_body_is_refused_unread(line_app: LineApp) -> None:
    giant = body(text(USER, "ก" * (WEBHOOK_BODY_MAX // 2)))
    answer = line_app.post(giant, sign(giant))
    assert answer.status_code == 413, answer.text
    assert answer.json()["field"] == "body"
    # Sent in chunks, without a Content-Length to refuse it by.
    chunks = (giant[i : i + 65536] for i in range(0, len(giant), 65536))
    streamed = line_app.client.post(
        "/line/webhook", content=chunks, headers={"X-Line-Signature": sign(giant)}
    )
    assert streamed.status_code == 413, streamed.text
    assert "content-length" not in streamed.request.headers
    assert line_app.inbox() == []


def test_only_one_to_one_chats_are_stored(line_app: LineApp) -> None:
    in_group = text(USER, "หลุมบนถนน")
    in_group["source"] = {"type": "group", "groupId": "C" + "2" * 32, "userId": USER}
    in_room = text(USER, "หลุมบนถนน")
    in_room["source"] = {"type": "room", "roomId": "R" + "3" * 32, "userId": USER}
    unfollow = {k: v for k, v in follow(USER).items() if k not in ("follow", "replyToken")}
    unfollow["type"] = "unfollow"
    standby = text(USER, "หลุมบนถนน") | {"mode": "standby"}  # another module answers it
    standby.pop("replyToken")
    no_user = text(USER, "หลุมบนถนน")
    no_user["source"] = {"type": "user"}
    answer = line_app.send(in_group, in_room, unfollow, standby, no_user)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 0}
    assert line_app.inbox() == []
    assert line_app.fake.calls == []


def test_events_are_stored_once_whatever_line_sends_again(line_app: LineApp) -> None:
    shared = location(USER, *INSIDE)
    first = line_app.send(shared)
    again = dict(shared, deliveryContext={"isRedelivery": True})
    second = line_app.send(again)
    assert first.json() == {"stored": 1}
    assert second.status_code == 200 and second.json() == {"stored": 0}
    (stored,) = line_app.inbox()
    assert stored["event_id"] == shared["webhookEventId"]
    assert stored["user_id"] == USER


def test_nul_characters_in_a_message_are_dropped_not_an_error(line_app: LineApp) -> None:
    raw = json.dumps(
        {"destination": "U", "events": [text(USER, "หลุม\u0000บนถนน {{7*7}} {% x")]}
    ).encode()
    assert b"\\u0000" in raw
    answer = line_app.post(raw, sign(raw))
    assert answer.status_code == 200, answer.text
    (stored,) = line_app.inbox()
    assert stored["payload"]["message"]["text"] == "หลุมบนถนน {{7*7}} {% x"


def test_half_a_utf16_pair_in_a_message_is_not_an_error(line_app: LineApp) -> None:
    raw = body(text(USER, "x")).replace(b'"text": "x"', b'"text": "\\ud800 \\udfff ok"')
    answer = line_app.post(raw, sign(raw))
    assert answer.status_code == 200, answer.text
    (stored,) = line_app.inbox()
    assert stored["payload"]["message"]["text"] == "\ufffd \ufffd ok"
