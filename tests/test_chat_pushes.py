"""Hearing back in LINE: a report filed by chat gets each public status change pushed to the
chat it came from, through the outbox, against a local fake LINE API (real HTTP) and the real
PostGIS; pushes survive LINE's outages and are never shown twice."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from api.deps import app_state, replace_app_state
from geo.analysis import team_performance, ward_stats
from geo.chat import conversation
from geo.chat.context import ChatContext
from geo.chat.line_api import LINE_LIMITS, LineClient
from geo.chat.messages import Pressed, decode_press
from geo.chat.updates import line_sender, push_retry_key, status_update
from geo.city.geocoding import GazetteerGeocoder
from geo.i18n import translate
from geo.reports.notifications import DeliveryRound, deliver_due, email_text, load_event
from geo.reports.reporters import link_report
from geo.settings import ChatSettings, IntakeSettings, NotificationSettings, RoutingSettings
from tests.browser import running
from tests.fake_line import FakeLine, _app
from tests.test_notifications import (
    NOTE,
    PUBLIC_URL,
    STAFF_NOTE,
    Receiver,
    file_report,
    key,
    make_due,
    move,
    outbox,
    png,
    register,
    token_of,
)
from tests.test_privacy import public_answers

pytest_plugins = ("tests.fake_line",)

USER = "U4af4980629ac5e1f0b8c4b5d0e9a7c31"
"""A LINE user id as LINE writes them: U and 32 hex digits; personal data."""


@pytest.fixture
def line(city_app) -> Iterator[FakeLine]:
    """A fake LINE API that can also refuse the next pushes for good (``state.refuse``).

    The service's notification settings name the public address pushes link to; no mail
    server is configured, so only chat messages and webhook calls are queued.
    """
    state = FakeLine()
    refuse = {"next": 0}
    app = _app(state)

    @app.middleware("http")
    async def refusing(request: Request, call_next: Any) -> Response:
        if request.url.path == "/v2/bot/message/push" and refuse["next"] > 0:
            refuse["next"] -= 1
            return JSONResponse({"message": "Failed to send messages"}, status_code=400)
        response: Response = await call_next(request)
        return response

    replace_app_state(city_app[0].app, notifications=NotificationSettings(public_url=PUBLIC_URL))
    with running(app) as url:
        state.url = url
        state.refuse = refuse  # type: ignore[attr-defined]
        yield state


def chat_report(client, keys, engine: Engine, user: str = USER, **fields: Any) -> int:
    """A report filed by ``user`` in LINE (linked as the chat intake links it)."""
    report = file_report(client, keys, contact=None, reporter_name=None, **fields)
    with engine.begin() as conn:
        link_report(conn, report_id=report, channel="line", user_id=user)
    return report


def chat_context() -> ChatContext:
    """What the conversation core reads besides the database, as the service sets it."""
    return ChatContext(
        routing=RoutingSettings(),
        intake=IntakeSettings(),
        chat=ChatSettings(),
        geocoder=GazetteerGeocoder([]),
        public_url=PUBLIC_URL,
        public_rounding_m=100.0,
        limits=LINE_LIMITS,
    )


@contextmanager
def kept_logging() -> Iterator[None]:
    """Put back the logging set-up a command replaces (``issuemap deliver`` configures it)."""
    loggers = [logging.getLogger(name) for name in ("", "geo", "uvicorn", "uvicorn.error")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        for logger, handlers, level, propagate, disabled in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


def deliver(engine: Engine, line: FakeLine | None, **line_settings: Any) -> tuple[int, int, int]:
    """One delivery round as the worker runs it; ``line=None``: LINE is not configured."""
    settings = NotificationSettings(public_url=PUBLIC_URL)
    senders = {}
    client = None
    if line is not None:
        client = LineClient(line.settings(**line_settings))
        senders["line"] = line_sender(client, public_url=PUBLIC_URL)
    try:
        done: DeliveryRound = deliver_due(
            engine, settings, public_rounding_m=100.0, chat_senders=senders
        )
    finally:
        if client is not None:
            client.close()
    return done.delivered, done.retrying, done.failed


def pushes(line: FakeLine, user: str = USER) -> list[list[dict[str, Any]]]:
    """The messages of each push to ``user``, in order."""
    return [c["body"]["messages"] for c in line.made("push") if c["body"]["to"] == user]


def texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m["text"] for m in messages if m["type"] == "text")


def resolve_with_photo(client, keys, report: int, public_note: str) -> int:
    resolved = client.post(
        f"/api/reports/{report}/status",
        data={"status": "resolved", "public_note": public_note, "note": STAFF_NOTE},
        files={"photo": ("after.png", png(), "image/png")},
        headers=key(keys.t1),
    )
    assert resolved.status_code == 200, resolved.text
    [photo] = resolved.json()["photo_ids"]
    # As if the minute in which resolving may be undone had passed: then it is announced.
    make_due(app_state(client.app).engine)
    return int(photo)


def test_a_line_reporter_hears_each_change_in_thai(city_app, engine, line) -> None:
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    link = f"{PUBLIC_URL}/r/{token_of(engine, report)}"
    move(client, keys, report, "acknowledged", public_note=NOTE, note=STAFF_NOTE)
    assert [(r["kind"], r["target"]) for r in outbox(engine, report)] == [("line", USER)]
    assert deliver(engine, line) == (1, 0, 0)
    assert deliver(engine, line) == (0, 0, 0), "a delivered push is not sent again"
    [first] = pushes(line)
    said = texts(first)
    status = translate("th", "Acknowledged")
    assert status != "Acknowledged" and f"#{report} (ถนน)" in said and status in said
    # The note arrives as staff typed it: nothing in it is a template or markup. The link's
    # random token may itself hold "49"; the rest of the message may not.
    assert NOTE in said and "49" not in said.replace(link, "")
    assert link in said
    assert STAFF_NOTE not in json.dumps(first, ensure_ascii=False)
    assert "quickReply" not in first[-1], "no rating before the work is fixed"

    move(client, keys, report, "in_progress", public_note="ทีมกำลังซ่อม")
    photo = resolve_with_photo(client, keys, report, "ซ่อมเสร็จแล้ว")
    assert deliver(engine, line) == (2, 0, 0)
    _, doing, done = pushes(line)
    assert translate("th", "In progress") in texts(doing) and "ทีมกำลังซ่อม" in texts(doing)
    # The after-photo as an image, then the words, then the question with its buttons.
    assert [m["type"] for m in done] == ["image", "text", "text"]
    photo_url = f"{PUBLIC_URL}/api/photos/{photo}"
    assert done[0]["originalContentUrl"] == done[0]["previewImageUrl"] == photo_url
    served = client.get(photo_url.removeprefix(PUBLIC_URL))
    with engine.connect() as conn:
        public = conn.execute(
            text("SELECT public_bytes FROM report_photos WHERE id = :id"), {"id": photo}
        ).scalar_one()
    assert served.status_code == 200 and served.content == bytes(public), "the public copy"
    assert translate("th", "Resolved") in done[1]["text"] and "ซ่อมเสร็จแล้ว" in done[1]["text"]
    assert link in done[1]["text"] and STAFF_NOTE not in json.dumps(done, ensure_ascii=False)
    question = done[2]
    assert question["text"].startswith("งานแก้ไขเป็นอย่างไรบ้าง")
    items = question["quickReply"]["items"]
    assert [i["action"]["data"] for i in items] == [
        f"action=rate&value={report}%3A{n}" for n in range(1, 6)
    ]
    assert [i["action"]["label"] for i in items][-1] == "5 ★★★★★"
    assert len(line.made("push")) == 3, "one push per change"


def test_an_english_reporter_reads_english(city_app, engine, line) -> None:
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE reports SET language = 'en' WHERE id = :id"), {"id": report})
    resolve_with_photo(client, keys, report, "Fixed <b>today</b>")
    assert deliver(engine, line) == (1, 0, 0)
    [messages] = pushes(line)
    said = texts(messages)
    assert f"Your report #{report} (Roads) is now: Resolved." in said
    assert "Message from the city:\nFixed <b>today</b>" in said
    assert "How well was it fixed?" in said
    assert "เรื่อง" not in said and "ถนน" not in said


def test_pushes_wait_out_a_line_outage_and_arrive_once(city_app, engine, line) -> None:
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    line.fail_pushes = 2
    move(client, keys, report, "acknowledged", public_note="รับเรื่องแล้ว")
    assert client.get(f"/api/reports/{report}").json()["status"] == "acknowledged"
    assert deliver(engine, line) == (0, 1, 0)
    [row] = outbox(engine, report)
    assert row["attempts"] == 1 and "LINE answered 500" in row["last_error"]
    assert deliver(engine, line) == (0, 0, 0), "not tried again before its backoff has passed"
    make_due(engine)
    assert deliver(engine, line) == (0, 1, 0)
    make_due(engine)
    assert deliver(engine, line) == (1, 0, 0)
    make_due(engine)
    assert deliver(engine, line) == (0, 0, 0)
    assert line.texts("push", to=USER) == [texts(pushes(line)[0])]
    assert "รับเรื่องแล้ว" in line.texts("push", to=USER)[0]
    [row] = outbox(engine, report)
    assert row["delivered_at"] is not None and row["attempts"] == 3 and row["last_error"] is None


def test_a_push_line_took_before_its_answer_was_lost_is_not_shown_twice(
    city_app, engine, line
) -> None:
    """LINE accepted a try but the worker never heard back: the retry carries the same key."""
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    move(client, keys, report, "in_progress", public_note="กำลังดำเนินการ")
    with engine.connect() as conn:
        outbox_id, event_id = conn.execute(
            text("SELECT id, (payload ->> 'event_id')::bigint FROM outbox WHERE report_id = :r"),
            {"r": report},
        ).one()
        event = load_event(conn, event="report.status_changed", event_id=event_id)
    assert event is not None
    # The earlier try, as LINE received it.
    replies = status_update(event, language="th", public_url=PUBLIC_URL, photos=[])
    LineClient(line.settings()).push(USER, replies, retry_key=push_retry_key(outbox_id))
    assert deliver(engine, line) == (1, 0, 0), "LINE's 409 for a known key counts as sent"
    assert len(line.texts("push", to=USER)) == 1
    keys_sent = {c["headers"]["x-line-retry-key"] for c in line.made("push")}
    assert keys_sent == {str(push_retry_key(outbox_id))}


def test_a_push_line_refuses_for_good_fails_at_once(city_app, engine, line) -> None:
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    line.refuse["next"] = 1
    move(client, keys, report, "acknowledged")
    assert deliver(engine, line) == (0, 0, 1)
    [row] = outbox(engine, report)
    assert row["failed_at"] is not None and row["attempts"] == 1
    assert "LINE answered 400" in row["last_error"]
    make_due(engine)
    assert deliver(engine, line) == (0, 0, 0) and line.made("push") == []


def test_a_refused_token_waits_for_the_setting_to_be_fixed(city_app, engine, line) -> None:
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    move(client, keys, report, "acknowledged")
    assert deliver(engine, line, channel_access_token="revoked") == (0, 1, 0)
    assert "401" in outbox(engine, report)[0]["last_error"]
    make_due(engine)
    assert deliver(engine, line) == (1, 0, 0)
    assert len(pushes(line)) == 1


def test_without_line_configured_pushes_wait_until_it_is(city_app, engine, line) -> None:
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    move(client, keys, report, "acknowledged", public_note="รอ")
    assert deliver(engine, None) == (0, 1, 0)
    [row] = outbox(engine, report)
    assert "ISSUEMAP_LINE_CHANNEL_SECRET" in row["last_error"]
    assert row["failed_at"] is None and row["delivered_at"] is None
    make_due(engine)
    assert deliver(engine, line) == (1, 0, 0)
    assert "รอ" in texts(pushes(line)[0])


def test_only_reports_filed_by_chat_and_only_staff_changes_are_pushed(
    city_app, engine, line
) -> None:
    client, _, keys = city_app
    by_form = file_report(client, keys, contact=None)
    move(client, keys, by_form, "acknowledged")
    assert outbox(engine, by_form) == []
    # Staff merge a chat report into another: the reporter hears where it went.
    original = file_report(client, keys, contact=None)
    mine = chat_report(client, keys, engine)
    merged = client.post(
        f"/api/reports/{mine}/merge",
        json={"original_id": original, "public_note": "รวมกับเรื่องเดิม", "note": STAFF_NOTE},
        headers=key(keys.t1),
    )
    assert merged.status_code == 200, merged.text
    assert deliver(engine, line) == (1, 0, 0)
    said = texts(pushes(line)[0])
    assert translate("th", "Duplicate") in said and f"#{original}" in said
    assert "รวมกับเรื่องเดิม" in said and STAFF_NOTE not in said
    assert "quickReply" not in pushes(line)[0][-1]
    # A chat reporter who joins a report nearby themselves needs no message about it.
    own = chat_report(client, keys, engine, lat=8.4054, lon=100.0047)
    joined = client.post(
        f"/r/{token_of(engine, own)}/support?lang=en",
        data={"report_id": str(original)},
        follow_redirects=False,
    )
    assert joined.status_code == 303, joined.text
    assert [r["kind"] for r in outbox(engine, own)] == []


def test_a_hidden_report_still_reaches_its_reporter_without_its_photos(
    city_app, engine, line
) -> None:
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET hidden_at = now(), hidden_reason = 'abuse' WHERE id = :id"),
            {"id": report},
        )
    photo = resolve_with_photo(client, keys, report, "เก็บกวาดแล้ว")
    assert deliver(engine, line) == (1, 0, 0)
    [messages] = pushes(line)
    assert "เก็บกวาดแล้ว" in texts(messages)
    # LINE fetches images as the public, and the public may not see this report's photos;
    # nor can a hidden report be rated.
    assert [m["type"] for m in messages] == ["text"]
    assert f"/api/photos/{photo}" not in json.dumps(messages)
    # Nor its status page, which answers "not found" while the report is hidden; a mail
    # about it, written from the same lines, leaves out both links too.
    assert token_of(engine, report) not in json.dumps(messages)
    with engine.connect() as conn:
        event_id = conn.execute(
            text("SELECT (payload ->> 'event_id')::bigint FROM outbox WHERE report_id = :r"),
            {"r": report},
        ).scalar_one()
        event = load_event(conn, event="report.status_changed", event_id=event_id)
    assert event is not None and event.hidden
    mail = email_text(event, public_url=PUBLIC_URL).body
    assert "เก็บกวาดแล้ว" in mail
    assert token_of(engine, report) not in mail and "/api/photos/" not in mail


def test_a_rating_pressed_under_the_push_reaches_the_planners_statistics(
    city_app, engine, line
) -> None:
    client, _, keys = city_app
    users = [f"U{n:032x}" for n in range(1, 4)]
    rated = [chat_report(client, keys, engine, user=user) for user in users]
    unrated = chat_report(client, keys, engine)
    for report in (*rated, unrated):
        move(client, keys, report, "resolved")
    make_due(engine)  # as if the undo window had passed
    assert deliver(engine, line) == (4, 0, 0)
    # Each reporter presses a button under their own push, 2, 4 and 5 stars, and the
    # conversation core takes the press as it comes back from LINE.
    chat = chat_context()
    for user, report, stars in zip(users, rated, (2, 4, 5), strict=True):
        [messages] = pushes(line, user)
        press = decode_press(messages[-1]["quickReply"]["items"][stars - 1]["action"]["data"])
        assert press == Pressed("rate", f"{report}:{stars}")
        with engine.begin() as conn:
            answer = conversation.handle(
                conn,
                channel="line",
                user_id=user,
                incoming=press,
                context=chat,
                language=lambda: "th",
            )
        assert answer[0].text == translate(
            "th", "Thank you for rating report no. {id}: {stars}", id=report, stars="★" * stars
        )
    # Someone else's press for a report is not theirs to rate.
    with engine.begin() as conn:
        conversation.handle(
            conn,
            channel="line",
            user_id=USER,
            incoming=Pressed("rate", f"{rated[0]}:1"),
            context=chat,
            language=lambda: "th",
        )
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                text("SELECT id, rating FROM reports WHERE id = ANY(:ids)"),
                {"ids": [*rated, unrated]},
            ).all()
        )
    assert stored == {rated[0]: 2, rated[1]: 4, rated[2]: 5, unrated: None}
    ward = ward_stats(engine).set_index("code").loc["W-A"]
    assert (ward.rated, ward.mean_rating) == (3, pytest.approx(11 / 3))
    team = team_performance(engine).set_index("team_code").loc["T1"]
    assert (team.rated, team.mean_rating) == (3, pytest.approx(11 / 3))
    # Once rated, a later change does not ask again; the one not yet rated is asked.
    for report in (rated[0], unrated):
        move(client, keys, report, "closed")
    assert deliver(engine, line) == (2, 0, 0)
    closed = pushes(line, users[0])[-1]
    assert "quickReply" not in closed[-1]
    assert translate("th", "Closed") in texts(closed)
    assert "quickReply" in pushes(line)[-1][-1]


def test_photos_are_links_when_line_cannot_fetch_them(city_app, engine, line) -> None:
    """LINE shows images only from https addresses; otherwise the photo is a link."""
    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    photo = resolve_with_photo(client, keys, report, "done")
    client_ = LineClient(line.settings())
    try:
        done = deliver_due(
            engine,
            NotificationSettings(public_url="http://city.local"),
            public_rounding_m=100.0,
            chat_senders={"line": line_sender(client_, public_url="http://city.local")},
        )
    finally:
        client_.close()
    assert done.delivered == 1
    [messages] = pushes(line)
    assert [m["type"] for m in messages] == ["text", "text"]
    assert f"http://city.local/api/photos/{photo}" in messages[0]["text"]


def test_the_line_user_id_is_in_no_public_output(city_app, engine, line) -> None:
    client, city, keys = city_app
    receiver = Receiver()
    try:
        register(client, keys, url=receiver.url("/hook"))
        report = chat_report(client, keys, engine)
        move(client, keys, report, "acknowledged", public_note="รับเรื่อง")
        photo = resolve_with_photo(client, keys, report, "เสร็จ")
        assert deliver(engine, line) == (5, 0, 0)  # 3 webhook calls, 2 pushes
        assert len(receiver.calls) == 3
        for _path, _headers, body in receiver.calls:
            assert USER.encode() not in body
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    assert len(pushes(line)) == 2, "the pushes themselves went to the user"
    values = {
        "token": token_of(engine, report),
        "report_id": str(report),
        "photo_id": str(photo),
        "team_id": str(city.teams["T1"]),
        "service_request_id": str(report),
        "service_code": "road",
        "fmt": "json",
        "format": "json",
    }
    checked = 0
    for variant, answer in public_answers(client, values, keys.app):
        checked += 1
        assert USER.encode() not in answer.content, variant
        assert USER[1:].encode() not in answer.content, variant
    assert checked >= 10


def test_issuemap_deliver_once_pushes_with_line_configured(
    city_app, engine, line, db_url, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    client, _, keys = city_app
    report = chat_report(client, keys, engine)
    move(client, keys, report, "acknowledged", public_note="ผ่านคำสั่ง")
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    monkeypatch.setenv("ISSUEMAP_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.delenv("ISSUEMAP_SMTP_URL", raising=False)
    with kept_logging():
        without = CliRunner().invoke(app, ["deliver", "--once"])
        assert without.exit_code == 0, without.output
        assert "ISSUEMAP_LINE_CHANNEL_SECRET is not set" in without.output
        assert "delivered 0, will retry 1, gave up on 0" in without.output
        make_due(engine)
        line_environment(monkeypatch, line)
        result = CliRunner().invoke(app, ["deliver", "--once"])
    assert result.exit_code == 0, result.output
    assert "delivered 1, will retry 0, gave up on 0" in result.output
    assert "ผ่านคำสั่ง" in texts(pushes(line)[0])


def line_environment(monkeypatch: pytest.MonkeyPatch, line: FakeLine) -> None:
    """LINE's settings in the environment, which the delivery worker's process reads."""
    settings = line.settings()
    assert settings.channel_secret is not None and settings.channel_access_token is not None
    monkeypatch.setenv("ISSUEMAP_LINE_CHANNEL_SECRET", settings.channel_secret.get_secret_value())
    monkeypatch.setenv(
        "ISSUEMAP_LINE_CHANNEL_ACCESS_TOKEN", settings.channel_access_token.get_secret_value()
    )
    monkeypatch.setenv("ISSUEMAP_LINE_API_URL", settings.api_url)
    monkeypatch.setenv("ISSUEMAP_LINE_DATA_API_URL", settings.data_api_url)


def test_the_service_delivery_worker_pushes_to_line(
    city_app, engine, line, db_url, monkeypatch
) -> None:
    """The worker ``issuemap serve`` starts pushes each change as it comes, LINE on."""
    from geo.cli.service import DeliveryWorker
    from tests.test_notifications import wait_for

    client, _, keys = city_app
    line_environment(monkeypatch, line)
    monkeypatch.setenv("ISSUEMAP_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.delenv("ISSUEMAP_SMTP_URL", raising=False)
    monkeypatch.setenv("ISSUEMAP_OUTBOX_POLL_S", "0.2")
    report = chat_report(client, keys, engine)
    move(client, keys, report, "acknowledged", public_note="หนึ่ง")
    worker = DeliveryWorker(db_url, configure_logging=False)
    with worker:
        assert wait_for(lambda: len(pushes(line)) == 1)
        move(client, keys, report, "in_progress", public_note="สอง")
        assert wait_for(lambda: len(pushes(line)) == 2)
    assert worker.process is not None and worker.process.returncode == 0
    assert ["หนึ่ง" in texts(p) for p in pushes(line)] == [True, False]
    assert "สอง" in texts(pushes(line)[1])


def test_issuemap_deliver_answers_chat_messages_left_unanswered(
    city_app, engine, line, db_url, monkeypatch, tmp_path
) -> None:
    """A message stored by the webhook whose answering was cut short is answered by the
    delivery worker's round (``LineChannel.process_pending``)."""
    from typer.testing import CliRunner

    from geo.chat.line import LineChannel
    from geo.cli.main import app
    from tests.fake_line import body, sign
    from tests.fake_line import text as line_text

    chat = chat_context()
    channel = LineChannel(line.settings(), chat)
    try:
        raw = body(line_text(USER, "สวัสดี {{7*7}}"))
        assert channel.accept(engine, raw.decode(), sign(raw)) == 1
    finally:
        channel.close()
    assert line.made("reply") == [], "stored only: the webhook's own processing never ran"
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    monkeypatch.setenv("ISSUEMAP_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.delenv("ISSUEMAP_SMTP_URL", raising=False)
    line_environment(monkeypatch, line)
    with kept_logging():
        result = CliRunner().invoke(app, ["deliver", "--once"])
    assert result.exit_code == 0, result.output
    [reply] = line.made("reply")
    assert reply["body"]["messages"], "the resident got an answer"
    with engine.connect() as conn:
        pending = conn.execute(
            text("SELECT count(*) FROM chat_inbox WHERE processed_at IS NULL")
        ).scalar_one()
    assert pending == 0
