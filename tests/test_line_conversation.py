"""Residents report through LINE: signed webhook calls from the fake LINE, a real PostGIS, the
conversation core behind the LINE adapter, and the answers LINE receives."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy import Engine

from api.app import create_app
from api.deps import app_state
from geo.chat import conversation as core
from geo.chat.line import (
    NOT_UNDERSTOOD,
    OLD_BUTTON,
    PHOTO_FAILED,
    PHOTO_TOO_LARGE,
    RETRY_NAMESPACE,
)
from geo.chat.line_api import PHOTO_MAX_BYTES
from geo.i18n import translate
from geo.maps.resident import when
from tests.browser import running
from tests.fake_line import SECRET, TOKEN, FakeLine, body, event, image, location, sign, text
from tests.fixtures import TINY_GAZETTEER
from tests.line_app import (
    INSIDE,
    OUTSIDE,
    PUBLIC_URL,
    LineApp,
    app_settings,
    follow,
    press,
    tiny_city,
)
from tests.test_intake import jpeg_with_gps
from tests.test_privacy import public_answers

pytestmark = pytest.mark.long_running

pytest_plugins = ("tests.fake_line", "tests.line_app")

USER = "U" + "a" * 32
CHECKOUT = Path(__file__).resolve().parent.parent
ATTACK = "{{7*7}} {% raw %} <img src=x onerror=alert(1)> '; DROP TABLE reports; --"


def th(message: str, **values: object) -> str:
    return translate("th", message, **values)


def new_texts(fake: FakeLine, before: int, kind: str = "reply") -> list[str]:
    """The texts LINE was asked to show since ``before`` texts had been sent."""
    return fake.texts(kind)[before:]


def say(line: LineApp, *events: dict[str, Any]) -> list[str]:
    """Send ``events`` through the webhook; return the texts of the replies they got."""
    before = len(line.fake.texts("reply"))
    answer = line.send(*events)
    assert answer.status_code == 200, answer.text
    return new_texts(line.fake, before)


def uploads(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM chat_uploads")).scalar_one())


# --- a whole report, in Thai -------------------------------------------------------------------


def test_a_whole_report_in_thai_through_line(line_app: LineApp) -> None:
    fake = line_app.fake
    fake.profiles[USER] = {"language": "th"}
    fake.contents["photo-1"] = (jpeg_with_gps(*INSIDE), "image/jpeg")

    greeting = say(line_app, follow(USER))
    assert greeting[0] == th(core.GREETING)
    assert th(core.ASK_LOCATION) in greeting
    (asked,) = fake.made("reply")[-1:]
    items = asked["body"]["messages"][-1]["quickReply"]["items"]
    assert items[0]["action"]["type"] == "location", "LINE's location picker is offered"

    assert th(core.LOCATION_NOTED) in say(line_app, location(USER, *INSIDE))
    photo = say(line_app, image(USER, "photo-1"))
    assert th(core.PHOTO_NOTED, count=1, limit=5) in photo
    assert fake.made("content")[-1]["body"] == {"message_id": "photo-1"}
    assert th(core.DESCRIPTION_NOTED) in say(line_app, text(USER, f"หลุมลึกกลางถนน {ATTACK}"))

    menu = fake.made("reply")[-1]["body"]["messages"][-1]["quickReply"]["items"]
    labels = {i["action"]["label"]: i["action"]["data"] for i in menu if "data" in i["action"]}
    assert labels["ถนน"] == "action=category&value=road", "categories are named in Thai"
    summary = say(line_app, press(USER, "category", "road"))[-1]
    assert "ถนน" in summary and "T1" in summary and ATTACK in summary
    assert "49" not in summary, "the resident's words are never a template"
    assert line_app.reports() == [], "nothing is sent before the resident confirms"

    (sent,) = say(line_app, press(USER, "confirm"))
    (report,) = line_app.reports()
    assert report["category"] == "road" and report["team"] == "T1"
    assert report["language"] == "th" and report["chat_user"] == USER
    with line_app.engine.connect() as conn:
        due_at = conn.execute(
            sa.text("SELECT due_at FROM reports WHERE id = :id"), {"id": report["id"]}
        ).scalar_one()
    status_url = f"{PUBLIC_URL}/r/{report['token']}"
    assert sent == th(
        core.SENT,
        id=report["id"],
        team="T1",
        due=when(due_at, "th"),
        url=status_url,
    )
    # Every answer went back with its event's own reply token, none as a push.
    tokens = [c["body"]["replyToken"] for c in fake.made("reply")]
    assert len(tokens) == len(set(tokens)) == 6
    assert fake.made("push") == []
    assert all(row["processed_at"] is not None for row in line_app.inbox())
    assert line_app.metric("issuemap_intake_reports_total", channel="line") == 1

    client = line_app.client
    shown = client.get(f"/api/reports/{report['id']}").json()
    assert shown["description"] == f"หลุมลึกกลางถนน {ATTACK}"
    (photo_id,) = shown["photo_ids"]
    public = client.get(f"/api/photos/{photo_id}")
    assert public.status_code == 200
    assert not Image.open(io.BytesIO(public.content)).getexif(), "no EXIF on the public copy"
    assert b"PhoneMaker" not in public.content
    page = client.get(f"/r/{report['token']}")
    assert page.status_code == 200 and "หลุมลึกกลางถนน" in page.text

    # The LINE user id is personal data: no public answer carries it.
    values = {
        "token": report["token"],
        "report_id": str(report["id"]),
        "photo_id": str(photo_id),
        "team_id": str(line_app.city.teams["T1"]),
        "service_request_id": str(report["id"]),
        "service_code": "road",
        "fmt": "json",
        "format": "json",
    }
    checked = 0
    for variant, answer in public_answers(client, values, line_app.keys.app):
        checked += 1
        assert USER.encode() not in answer.content, variant
    assert checked >= 10


def test_english_speakers_are_answered_in_english(line_app: LineApp) -> None:
    line_app.fake.profiles[USER] = {"language": "en"}
    answered = say(line_app, follow(USER))
    assert answered[0] == translate("en", core.GREETING)
    # Asked once: the conversation keeps the language.
    say(line_app, text(USER, "hello"))
    assert len(line_app.fake.made("profile")) == 1


def test_a_place_outside_the_city_gets_a_plain_thai_sentence(line_app: LineApp) -> None:
    (answer,) = say(line_app, location(USER, *OUTSIDE))
    assert "อยู่นอกพื้นที่ที่เมืองนี้ให้บริการ" in answer
    assert answer.endswith(th(core.OTHER_LOCATION))
    items = line_app.fake.made("reply")[-1]["body"]["messages"][-1]["quickReply"]["items"]
    assert items[0]["action"]["type"] == "location", "and is asked for another place"
    assert line_app.reports() == []
    refused = {"channel": "line", "reason": "outside_service_area"}
    assert line_app.metric("issuemap_routing_failures_total", **refused) == 1


# --- LINE sending again, tokens LINE refuses ----------------------------------------------------


def test_a_redelivered_confirm_files_one_report_and_answers_once(line_app: LineApp) -> None:
    say(line_app, location(USER, *INSIDE), text(USER, "ท่อแตก"), press(USER, "category", "road"))
    confirm = press(USER, "confirm")
    say(line_app, confirm)
    replies = len(line_app.fake.made("reply"))
    again = line_app.send(dict(confirm, deliveryContext={"isRedelivery": True}))
    assert again.status_code == 200 and again.json() == {"stored": 0}
    assert len(line_app.reports()) == 1
    assert len(line_app.fake.made("reply")) == replies
    assert line_app.fake.made("push") == []


def test_an_event_stored_but_never_handled_is_handled_when_line_sends_it_again(
    line_app: LineApp,
) -> None:
    shared = location(USER, *INSIDE)
    raw = body(shared)
    # As if the process had stopped after storing the event, before answering LINE.
    channel = app_state(line_app.client.app).line
    assert channel is not None
    assert channel.accept(line_app.engine, raw.decode(), sign(raw)) == 1
    assert line_app.fake.made("reply") == []
    answered = say(line_app, dict(shared, deliveryContext={"isRedelivery": True}))
    assert th(core.LOCATION_NOTED) in answered
    assert len(line_app.inbox()) == 1


def test_a_refused_reply_token_is_answered_by_a_push_sent_once(line_app: LineApp) -> None:
    first = text(USER, "ท่อแตก")
    reused = location(USER, *INSIDE)
    reused["replyToken"] = first["replyToken"]  # LINE takes a reply token once
    say(line_app, first, reused)
    (pushed,) = line_app.fake.made("push")
    assert pushed["body"]["to"] == USER
    assert th(core.LOCATION_NOTED) in [m.get("text") for m in pushed["body"]["messages"]]
    stored = line_app.inbox()[1]
    with line_app.engine.connect() as conn:
        row_id = conn.execute(
            sa.text("SELECT id FROM chat_inbox WHERE event_id = :e"), {"e": stored["event_id"]}
        ).scalar_one()
    assert pushed["headers"]["x-line-retry-key"] == str(
        uuid.uuid5(RETRY_NAMESPACE, f"inbox:{row_id}")
    )


# --- what LINE may send that the service cannot take ---------------------------------------------


def test_a_photo_line_will_not_give_is_answered_and_changes_nothing(line_app: LineApp) -> None:
    say(line_app, location(USER, *INSIDE))
    answered = say(line_app, image(USER, "gone"))
    assert answered[0] == th(PHOTO_FAILED)
    assert th(core.ASK_CATEGORY) in answered, "and the next question follows"
    line_app.fake.contents["big"] = (b"\xff\xd8" + b"0" * PHOTO_MAX_BYTES, "image/jpeg")
    too_large = say(line_app, image(USER, "big"))
    assert too_large[0] == th(PHOTO_TOO_LARGE, limit="10")
    assert uploads(line_app.engine) == 0
    line_app.fake.contents["junk"] = (b"<img src=x onerror=alert(1)>", "image/jpeg")
    not_a_photo = say(line_app, image(USER, "junk"))
    assert any("รูป" in t for t in not_a_photo)
    assert uploads(line_app.engine) == 0


@pytest.mark.parametrize(
    "message",
    [
        {
            "type": "sticker",
            "packageId": "446",
            "stickerId": "1988",
            "stickerResourceType": "STATIC",
        },
        {"type": "video", "duration": 1000, "contentProvider": {"type": "line"}},
        {"type": "audio", "duration": 1000, "contentProvider": {"type": "line"}},
        {"type": "file", "fileName": "{{7*7}}.pdf", "fileSize": 10},
        {"type": "hologram", "shape": "<img src=x onerror=alert(1)>"},
    ],
    ids=["sticker", "video", "audio", "file", "a kind LINE adds later"],
)
def test_other_messages_get_told_what_the_bot_reads(
    line_app: LineApp, message: dict[str, Any]
) -> None:
    answered = say(line_app, event(USER, message | {"quoteToken": "q"}))
    assert answered[0] == th(NOT_UNDERSTOOD)
    assert th(core.ASK_LOCATION) in answered
    assert line_app.reports() == [] and uploads(line_app.engine) == 0
    assert all(row["processed_at"] is not None for row in line_app.inbox())


@pytest.mark.parametrize(
    "data",
    [
        "{{7*7}}",
        "{%",
        "<img src=x onerror=alert(1)>",
        "action=drop_table&value=1",
        "action=confirm&value=" + "9" * 300,
        "action=category&value=<img src=x onerror=alert(1)>",
        "action=rate&value=1:{{7*7}}",
        "action=support&value=-1",
        "action=group&value=99999999999999999999",
        "action=confirm\u0001",
        "",
    ],
)
def test_bogus_button_data_gets_a_polite_answer(line_app: LineApp, data: str) -> None:
    say(line_app, location(USER, *INSIDE))
    answered = say(line_app, event(USER, postback=data))
    assert answered, "always an answer"
    assert "49" not in " ".join(answered)
    assert line_app.reports() == []
    with line_app.engine.connect() as conn:
        failed = conn.execute(
            sa.text("SELECT count(*) FROM chat_inbox WHERE last_error IS NOT NULL")
        )
        assert failed.scalar_one() == 0, "no event failed"
    if not data.startswith("action=") or "drop_table" in data or "\u0001" in data:
        assert answered[0] == th(OLD_BUTTON)


@pytest.mark.parametrize("lat_lon", [(91.0, 100.0), (8.4, -181.0), (-90.0, 180.0)])
def test_impossible_places_are_refused_not_an_error(
    line_app: LineApp, lat_lon: tuple[float, float]
) -> None:
    answered = say(line_app, location(USER, *lat_lon))
    assert answered and th(core.LOCATION_NOTED) not in answered
    assert line_app.reports() == []
    with line_app.engine.connect() as conn:
        failed = "SELECT count(*) FROM chat_inbox WHERE last_error IS NOT NULL"
        assert conn.execute(sa.text(failed)).scalar_one() == 0, "no event failed"


def test_huge_and_hostile_text_is_refused_or_kept_as_text(line_app: LineApp) -> None:
    huge = say(line_app, text(USER, "ก" * 20_000))
    assert any(th(core.DESCRIPTION_REFUSED, problem="")[:10] in t for t in huge)
    say(line_app, location(USER, *INSIDE), text(USER, f"{ATTACK}\u0000x"))
    say(line_app, press(USER, "category", "road"))
    say(line_app, press(USER, "confirm"))
    (report,) = line_app.reports()
    shown = line_app.client.get(f"/api/reports/{report['id']}").json()
    assert shown["description"] == f"{ATTACK}x"


# --- LINE waits for nobody: the webhook answers before the slow work ---------------------------


class Blackhole:
    """A TCP port that takes connections and answers nothing until ``release``d."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.released = threading.Event()
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        held = []
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                break
            self.connected.set()
            if self.released.is_set():
                conn.close()
            else:
                held.append(conn)
                if self.released.wait(0):
                    break
        for conn in held:
            conn.close()

    def release(self) -> None:
        self.released.set()
        self.sock.close()


def test_the_webhook_answers_while_a_photo_is_still_downloading(
    db_url: str, engine: Engine, tmp_path: Path, fake_line: FakeLine
) -> None:
    _, _, gazetteer = tiny_city(engine, tmp_path)
    hole = Blackhole()
    settings = app_settings(db_url, gazetteer, fake_line.settings(data_api_url=hole.url))
    try:
        with running(create_app(settings)) as url:
            raw = body(image(USER, "slow"))
            answer = httpx.post(
                f"{url}/line/webhook", content=raw, headers={"X-Line-Signature": sign(raw)}
            )
            assert answer.status_code == 200 and answer.json() == {"stored": 1}
            assert hole.connected.wait(30), "the download started after the answer"
            assert fake_line.made("reply") == [], "the answer did not wait for the photo"
            hole.release()
            (reply,) = fake_line.wait_for("reply", 1)
            texts = [m["text"] for m in reply["body"]["messages"] if m["type"] == "text"]
            assert texts[0] == th(PHOTO_FAILED)
    finally:
        hole.release()


# --- two servers, one conversation ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def two_servers(
    db_url: str, engine: Engine, tmp_path: Path, fake_line: FakeLine
) -> Iterator[list[str]]:
    """Two separate server processes, each with its own engine, on one database and LINE."""
    tiny_city(engine, tmp_path)
    gazetteer = tmp_path / "gazetteer.csv"
    gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUEMAP_")}
    env |= {
        "ISSUEMAP_DATABASE_URL": db_url,
        "ISSUEMAP_GAZETTEER_PATH": str(gazetteer),
        "ISSUEMAP_PUBLIC_URL": PUBLIC_URL,
        "ISSUEMAP_LINE_CHANNEL_SECRET": SECRET,
        "ISSUEMAP_LINE_CHANNEL_ACCESS_TOKEN": TOKEN,
        "ISSUEMAP_LINE_API_URL": fake_line.url,
        "ISSUEMAP_LINE_DATA_API_URL": fake_line.url + "/data",
    }
    processes: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for _ in range(2):
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app"]
            command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            processes.append(subprocess.Popen(command, cwd=CHECKOUT, env=env))
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, "a server exited early"
                assert time.monotonic() < deadline, f"{url} did not start"
                try:
                    if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def post(url: str, *events: dict[str, Any]) -> None:
    raw = body(*events)
    answer = httpx.post(
        f"{url}/line/webhook", content=raw, headers={"X-Line-Signature": sign(raw)}, timeout=30
    )
    assert answer.status_code == 200, answer.text


def test_two_servers_carry_one_conversation_on_in_turn(
    two_servers: list[str], fake_line: FakeLine, engine: Engine
) -> None:
    fake_line.profiles[USER] = {"language": "th"}
    steps = [
        follow(USER),
        location(USER, *INSIDE),
        text(USER, "ไฟถนนดับ"),
        press(USER, "category", "road"),
        press(USER, "confirm"),
    ]
    for n, step in enumerate(steps, start=1):
        post(two_servers[n % 2], step)
        # The resident reads each answer before writing again.
        assert len(fake_line.wait_for("reply", n)) == n
    texts = fake_line.texts("reply")
    assert texts[0] == th(core.GREETING)
    assert th(core.LOCATION_NOTED) in texts
    assert "ไฟถนนดับ" in texts[-2], "the summary on one server holds what the other took"
    assert texts[-1].startswith("ขอบคุณค่ะ ส่งเรื่องหมายเลข")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM reports")).scalar_one() == 1
    assert len(fake_line.made("profile")) == 1, "the language was asked once, then kept"


def test_two_servers_taking_one_conversation_at_once_keep_its_order(
    two_servers: list[str], fake_line: FakeLine, engine: Engine
) -> None:
    steps = [
        location(USER, *INSIDE),
        text(USER, "ทางเท้าพัง"),
        press(USER, "category", "road"),
        press(USER, "confirm"),
    ]
    # LINE sends one user's events one call after another; here without waiting for the
    # answers, alternately to either server, so both work on the conversation at once.
    for n, step in enumerate(steps):
        post(two_servers[n % 2], step)
    assert len(fake_line.wait_for("reply", len(steps))) == len(steps)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT description FROM reports")).scalars().all()
    assert rows == ["ทางเท้าพัง"]


# --- the rest of a resident's life in LINE --------------------------------------------------------


def file_by_line(line: LineApp, user: str, words: str) -> dict[str, Any]:
    """A report filed through LINE by ``user`` at ``INSIDE``, category road."""
    say(line, location(user, *INSIDE), text(user, words), press(user, "category", "road"))
    say(line, press(user, "confirm"))
    return next(r for r in reversed(line.reports()) if r["chat_user"] == user)


def test_a_photo_s_gps_position_is_the_place_when_none_was_shared(line_app: LineApp) -> None:
    line_app.fake.contents["gps"] = (jpeg_with_gps(*INSIDE), "image/jpeg")
    assert th(core.PHOTO_PLACE) in say(line_app, image(USER, "gps"))
    say(line_app, press(USER, "category", "road"))
    say(line_app, press(USER, "confirm"))
    (report,) = line_app.reports()
    with line_app.engine.connect() as conn:
        source = conn.execute(
            sa.text("SELECT location_source FROM reports WHERE id = :id"), {"id": report["id"]}
        ).scalar_one()
    assert source == "photo_exif" and report["team"] == "T1"


def test_a_likely_duplicate_is_offered_for_support_instead(line_app: LineApp) -> None:
    first = file_by_line(line_app, "U" + "b" * 32, "หลุมใหญ่")
    say(line_app, location(USER, *INSIDE), text(USER, "หลุมเดิม"))
    offer = say(line_app, press(USER, "category", "road"))[-1]
    assert th(core.DUPLICATES) in offer
    items = line_app.fake.made("reply")[-1]["body"]["messages"][-1]["quickReply"]["items"]
    support = f"action=support&value={first['id']}"
    assert support in [i["action"].get("data") for i in items]
    (supported,) = say(line_app, event(USER, postback=support))
    assert f"{PUBLIC_URL}/r/{first['token']}" in supported
    shown = line_app.client.get(f"/api/reports/{first['id']}").json()
    assert shown["supporters"] == 1


def test_a_fixed_report_is_rated_from_its_button(line_app: LineApp) -> None:
    report = file_by_line(line_app, USER, "ไฟดับ")
    moved = line_app.client.post(
        f"/api/reports/{report['id']}/status",
        json={"status": "resolved", "public_note": "เปลี่ยนหลอดแล้ว"},
        headers={"X-API-Key": line_app.keys.t1},
    )
    assert moved.status_code == 200, moved.text
    (rated,) = say(line_app, press(USER, "rate", f"{report['id']}:5"))
    assert rated == th(core.RATED, id=report["id"], stars="★★★★★")
    # Another LINE user pressing the same button changes nothing.
    say(line_app, press("U" + "c" * 32, "rate", f"{report['id']}:1"))
    with line_app.engine.connect() as conn:
        rating = conn.execute(
            sa.text("SELECT rating FROM reports WHERE id = :id"), {"id": report["id"]}
        ).scalar_one()
    assert rating == 5


def test_my_reports_from_the_rich_menu_or_the_keyword(line_app: LineApp) -> None:
    report = file_by_line(line_app, USER, "ท่อตัน")
    status_url = f"{PUBLIC_URL}/r/{report['token']}"
    from_menu = say(line_app, press(USER, "my_reports"))
    typed = say(line_app, text(USER, "  รายงานของฉัน "))
    assert from_menu == typed
    assert th(core.MY_REPORTS) in from_menu[0] and status_url in from_menu[0]
    assert say(line_app, press("U" + "d" * 32, "my_reports")) == [th(core.NO_REPORTS)]
