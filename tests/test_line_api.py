"""The LINE API client against the local fake: messages as LINE expects them, retries, failures."""

from __future__ import annotations

import uuid

import pytest

from geo.chat.line_api import LineApiError, LineClient, line_messages
from geo.chat.messages import Button, Pressed, Reply
from tests.fake_line import FakeLine

pytest_plugins = ("tests.fake_line",)


def test_replies_carry_text_images_and_quick_replies_under_the_last_message(
    fake_line: FakeLine,
) -> None:
    client = LineClient(fake_line.settings())
    buttons = tuple(
        Button(label=f"หมวดที่ {n} ที่มีชื่อยาวมากเกินกว่ายี่สิบตัวอักษร", press=Pressed("category", f"c{n}"))
        for n in range(20)
    )
    client.reply(
        "replytoken1",
        [
            Reply(text="ก่อน", image_url="https://example.org/p.jpg"),
            Reply(text="เลือกหมวด", buttons=(Button("ส่งตำแหน่ง", asks="location"), *buttons)),
        ],
    )
    (call,) = fake_line.made("reply")
    messages = call["body"]["messages"]
    assert [m["type"] for m in messages] == ["image", "text", "text"]
    items = messages[-1]["quickReply"]["items"]
    assert len(items) == 13  # LINE's limit
    assert items[0]["action"]["type"] == "location"
    assert all(len(i["action"]["label"]) <= 20 for i in items)
    assert items[1]["action"]["data"] == "action=category&value=c0"
    assert "quickReply" not in messages[1]


def test_a_push_retried_with_its_key_is_sent_once(fake_line: FakeLine) -> None:
    client = LineClient(fake_line.settings())
    key = uuid.uuid4()
    fake_line.fail_pushes = 1
    with pytest.raises(LineApiError) as failed:
        client.push("Uresident", [Reply(text="สถานะ")], retry_key=key)
    assert failed.value.status == 500 and not failed.value.permanent
    client.push("Uresident", [Reply(text="สถานะ")], retry_key=key)
    client.push("Uresident", [Reply(text="สถานะ")], retry_key=key)  # LINE answers 409
    assert fake_line.texts("push", to="Uresident") == ["สถานะ"]


def test_profile_language_and_photo_content(fake_line: FakeLine) -> None:
    client = LineClient(fake_line.settings())
    fake_line.profiles["Uen"] = {"language": "en"}
    fake_line.profiles["Uja"] = {"language": "ja"}
    fake_line.contents["m1"] = (b"\xff\xd8bytes", "image/jpeg")
    assert client.language("Uen") == "en"
    assert client.language("Uja") is None
    assert client.content("m1") == b"\xff\xd8bytes"
    with pytest.raises(LineApiError) as missing:
        client.content("nope")
    assert missing.value.permanent


def test_a_wrong_token_and_an_unreachable_line_are_errors(fake_line: FakeLine) -> None:
    with pytest.raises(LineApiError) as refused:
        LineClient(fake_line.settings(channel_access_token="wrong")).reply("t", [Reply(text="x")])
    assert refused.value.status == 401
    gone = LineClient(fake_line.settings(api_url="http://127.0.0.1:9", timeout_s=2.0))
    with pytest.raises(LineApiError) as unreachable:
        gone.push("U1", [Reply(text="x")], retry_key=uuid.uuid4())
    assert unreachable.value.status == 0 and not unreachable.value.permanent


def test_a_button_without_an_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="neither"):
        line_messages([Reply(text="x", buttons=(Button("?"),))])
