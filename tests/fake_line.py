"""A local stand-in for LINE's Messaging API and data API, speaking LINE's HTTP protocol.

Tests start it with the ``fake_line`` fixture (``pytest_plugins = ("tests.fake_line",)``) and
point ``ISSUEMAP_LINE_API_URL`` and ``ISSUEMAP_LINE_DATA_API_URL`` at it. It records every
reply, push, profile and content call; serves the profiles and image bytes a test gives it;
honours ``X-Line-Retry-Key`` as LINE does (a repeated key is answered 409); and can be made
to fail pushes for a while, as LINE does when it is unreachable or overloaded. The helpers
below build webhook bodies shaped as LINE sends them and sign them with the channel secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from geo.settings import LineSettings
from tests.browser import running

SECRET = "0123456789abcdef0123456789abcdef"
TOKEN = "test-channel-access-token"
BOT_ID = "Ubot0000000000000000000000000000"


@dataclass
class FakeLine:
    """What the fake LINE server received, and how it behaves next."""

    url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    fail_pushes: int = 0
    """The next this many pushes are answered 500 (LINE is having trouble)."""
    retry_keys: set[str] = field(default_factory=set)
    reply_tokens: set[str] = field(default_factory=set)
    """Reply tokens used so far: LINE takes each once, and answers 400 to a second use."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settings(self, **overrides: Any) -> LineSettings:
        """``LineSettings`` for a channel whose API is this fake."""
        values: dict[str, Any] = {
            "channel_secret": SECRET,
            "channel_access_token": TOKEN,
            "api_url": self.url,
            "data_api_url": self.url + "/data",
            "timeout_s": 5.0,
        }
        return LineSettings(**(values | overrides))

    def made(self, kind: str) -> list[dict[str, Any]]:
        """The recorded calls of ``kind``: ``reply``, ``push``, ``profile`` or ``content``."""
        with self.lock:
            return [c for c in self.calls if c["kind"] == kind]

    def texts(self, kind: str = "reply", *, to: str | None = None) -> list[str]:
        """Every text message sent by replies (or pushes), in order."""
        out = []
        for call in self.made(kind):
            if to is not None and call["body"].get("to") != to:
                continue
            out += [m["text"] for m in call["body"]["messages"] if m["type"] == "text"]
        return out

    def wait_for(self, kind: str, count: int, *, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` calls of ``kind`` arrived; return them (fewer on timeout)."""
        deadline = time.monotonic() + timeout_s
        while len(self.made(kind)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.made(kind)


def _app(state: FakeLine) -> FastAPI:
    app = FastAPI()

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    def record(kind: str, request: Request, body: Any) -> None:
        with state.lock:
            state.calls.append({"kind": kind, "headers": dict(request.headers), "body": body})

    @app.post("/v2/bot/message/reply")
    async def reply(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"message": "Authentication failed"}, status_code=401)
        body = await request.json()
        if not body.get("replyToken") or not 1 <= len(body.get("messages", [])) <= 5:
            return JSONResponse({"message": "The request body has 1 error(s)"}, status_code=400)
        with state.lock:
            if body["replyToken"] in state.reply_tokens:
                return JSONResponse({"message": "Invalid reply token"}, status_code=400)
            state.reply_tokens.add(body["replyToken"])
        record("reply", request, body)
        return JSONResponse({"sentMessages": [{"id": "1", "quoteToken": "q"}]})

    @app.post("/v2/bot/message/push")
    async def push(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"message": "Authentication failed"}, status_code=401)
        body = await request.json()
        key = request.headers.get("x-line-retry-key")
        with state.lock:
            if state.fail_pushes > 0:
                state.fail_pushes -= 1
                return JSONResponse({"message": "Internal server error"}, status_code=500)
            if key is not None and key in state.retry_keys:
                return JSONResponse(
                    {"message": "The retry key is already accepted"},
                    status_code=409,
                    headers={"x-line-accepted-request-id": "accepted"},
                )
            if key is not None:
                state.retry_keys.add(key)
        record("push", request, body)
        return JSONResponse({"sentMessages": [{"id": "2", "quoteToken": "q"}]})

    @app.get("/v2/bot/profile/{user_id}")
    async def profile(user_id: str, request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"message": "Authentication failed"}, status_code=401)
        record("profile", request, {"user_id": user_id})
        found = state.profiles.get(user_id)
        if found is None:
            return JSONResponse({"message": "Not found"}, status_code=404)
        return JSONResponse({"userId": user_id, "displayName": "resident"} | found)

    @app.get("/data/v2/bot/message/{message_id}/content")
    async def content(message_id: str, request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"message": "Authentication failed"}, status_code=401)
        record("content", request, {"message_id": message_id})
        found = state.contents.get(message_id)
        if found is None:
            return JSONResponse({"message": "Not found"}, status_code=404)
        return Response(found[0], media_type=found[1])

    return app


@pytest.fixture
def fake_line() -> Iterator[FakeLine]:
    """A fake LINE API on a free loopback port, for one test."""
    state = FakeLine()
    with running(_app(state)) as url:
        state.url = url
        yield state


# --- webhook bodies, as LINE sends them -----------------------------------------------------

_ids = itertools.count(1)


def sign(body: bytes, secret: str = SECRET) -> str:
    """``X-Line-Signature``: base64 of the HMAC-SHA256 of the body with the channel secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def event(
    user_id: str,
    message: dict[str, Any] | None = None,
    *,
    postback: str | None = None,
    event_id: str | None = None,
    redelivery: bool = False,
) -> dict[str, Any]:
    """One webhook event from ``user_id``: a message, or a postback with ``postback`` data."""
    n = next(_ids)
    common: dict[str, Any] = {
        "webhookEventId": event_id or f"01HTESTEVENT{n:014d}",
        "deliveryContext": {"isRedelivery": redelivery},
        "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": user_id},
        "replyToken": f"replytoken{n:022d}",
        "mode": "active",
    }
    if postback is not None:
        return common | {"type": "postback", "postback": {"data": postback}}
    return common | {"type": "message", "message": (message or {}) | {"id": str(n)}}


def text(user_id: str, words: str, **kw: Any) -> dict[str, Any]:
    """A text message event."""
    return event(user_id, {"type": "text", "text": words, "quoteToken": "q"}, **kw)


def location(user_id: str, lat: float, lon: float, **kw: Any) -> dict[str, Any]:
    """A location message event (a pin shared from LINE's map)."""
    message = {"type": "location", "title": "", "address": "", "latitude": lat, "longitude": lon}
    return event(user_id, message, **kw)


def image(user_id: str, message_id: str, **kw: Any) -> dict[str, Any]:
    """An image message event; its bytes are served by the fake's data API as ``message_id``."""
    message = {"type": "image", "contentProvider": {"type": "line"}, "quoteToken": "q"}
    found = event(user_id, message, **kw)
    found["message"]["id"] = message_id
    return found


def body(*events: dict[str, Any]) -> bytes:
    """A webhook request body holding ``events``."""
    return json.dumps({"destination": BOT_ID, "events": list(events)}).encode()
