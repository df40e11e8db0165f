"""LINE webhook benchmark: how fast LINE gets its 200, and how fast residents get their answers.

Run with ``.venv/bin/python bench/line_webhook.py``. It starts a throwaway PostgreSQL
cluster, a stand-in for LINE's Messaging and data APIs on loopback (its photo downloads
take ``--photo-delay`` seconds, as a slow mobile upload to LINE would), and
``issuemap serve`` with the LINE channel pointed at it and the demo city loaded. Then
``--residents`` residents report at once, ``--clients`` at a time, each in six webhook
calls (follow, location, photo, description, category, confirm), signed as LINE signs them.

It prints, from one run:

* the answer time of ``POST /line/webhook`` (p50, p99) beside that of ``GET /healthz`` under
  the same load: the ceiling, a route that does no work at all. LINE wants its 200 at once;
  the ratio says how much the webhook adds to a bare round trip, and its p99 against the
  photo delay shows that no download holds an answer;
* how long until every resident's report was stored and answered in the chat, as reports
  per second, beside the photo delay every report waited for.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import itertools
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import serving
from PIL import Image
from sqlalchemy import text

from geo.db.engine import make_engine, upgrade

SECRET = "bench-channel-secret-0123456789ab"
TOKEN = "bench-channel-access-token"


def photo() -> bytes:
    """A phone-sized JPEG."""
    out = io.BytesIO()
    Image.new("RGB", (1600, 1200), (90, 120, 60)).save(out, "JPEG", quality=85)
    return out.getvalue()


class FakeLine:
    """LINE's reply, push, profile and content endpoints, counting what they are sent."""

    def __init__(self, photo_delay_s: float) -> None:
        self.replies = 0
        self.lock = threading.Lock()
        image = photo()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path.endswith("/reply"):
                    with owner.lock:
                        owner.replies += 1
                self._answer(200, b'{"sentMessages": [{"id": "1", "quoteToken": "q"}]}')

            def do_GET(self) -> None:
                if "/content" in self.path:
                    time.sleep(photo_delay_s)
                    self._answer(200, image, "image/jpeg")
                else:
                    self._answer(200, b'{"userId": "U", "displayName": "r", "language": "th"}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


_ids = itertools.count(1)


def webhook_body(user: str, event: dict[str, Any]) -> bytes:
    n = next(_ids)
    event = event | {
        "webhookEventId": f"01BENCH{n:019d}",
        "deliveryContext": {"isRedelivery": False},
        "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": user},
        "replyToken": f"benchreply{n:022d}",
        "mode": "active",
    }
    return json.dumps({"destination": "Ubench", "events": [event]}).encode()


def conversation(user: str, lat: float, lon: float, category: str) -> list[dict[str, Any]]:
    """One resident's report, as the events LINE would send."""
    n = next(_ids)
    return [
        {"type": "follow"},
        {
            "type": "message",
            "message": {"id": f"l{n}", "type": "location", "latitude": lat, "longitude": lon},
        },
        {
            "type": "message",
            "message": {
                "id": f"p{n}",
                "type": "image",
                "quoteToken": "q",
                "contentProvider": {"type": "line"},
            },
        },
        {"type": "message", "message": {"id": f"t{n}", "type": "text", "text": "ท่อแตก"}},
        {"type": "postback", "postback": {"data": f"action=category&value={category}"}},
        {"type": "postback", "postback": {"data": "action=confirm&value="}},
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--photo-delay", type=float, default=1.0)
    args = parser.parse_args()

    line = FakeLine(args.photo_delay)
    with serving.cluster("issuemap-line-", for_serve=True) as cluster:
        cluster.ensure_database("line")
        url = cluster.url("line")
        upgrade(url)
        port = serving.free_port()
        env = {
            "ISSUEMAP_DATABASE_URL": url,
            "ISSUEMAP_LOAD_DEMO": "true",
            "ISSUEMAP_LINE_CHANNEL_SECRET": SECRET,
            "ISSUEMAP_LINE_CHANNEL_ACCESS_TOKEN": TOKEN,
            "ISSUEMAP_LINE_API_URL": line.url,
            "ISSUEMAP_LINE_DATA_API_URL": line.url,
            # Residents here report at random spots: no offer to support a report nearby
            # (the radius must be above zero: one centimetre).
            "ISSUEMAP_DUPLICATE_RADIUS_M": "0.01",
        }
        command = serving.serve_command(port, args.workers)
        try:
            with serving.running(command, port=port, env=env) as (base, _):
                measure(base, url, line, args)
        finally:
            line.server.shutdown()


def measure(base: str, url: str, line: FakeLine, args: argparse.Namespace) -> None:
    """Send the residents' conversations and print what LINE and the residents saw."""
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
        category = conn.execute(
            text("SELECT code FROM categories WHERE active ORDER BY code LIMIT 1")
        ).scalar_one()
        points = conn.execute(
            text(
                "SELECT ST_Y(p.geom) AS lat, ST_X(p.geom) AS lon FROM ("
                "SELECT (ST_Dump(ST_GeneratePoints(ST_Union(geom), :n, 7))).geom "
                "FROM wards WHERE retired_at IS NULL) AS p"
            ),
            {"n": args.residents},
        ).all()

    webhook: list[float] = []
    ceiling: list[float] = []
    lock = threading.Lock()

    def resident(i: int) -> None:
        user = f"U{i:032x}"
        lat, lon = points[i]
        with httpx.Client(base_url=base, timeout=30) as client:
            for event in conversation(user, lat, lon, category):
                body = webhook_body(user, event)
                signature = base64.b64encode(
                    hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
                ).decode()
                started = time.perf_counter()
                answer = client.post(
                    "/line/webhook",
                    content=body,
                    headers={"X-Line-Signature": signature},
                )
                took = time.perf_counter() - started
                if answer.status_code != 200:
                    raise RuntimeError(f"webhook answered {answer.status_code}")
                started = time.perf_counter()
                client.get("/healthz")
                bare = time.perf_counter() - started
                with lock:
                    webhook.append(took)
                    ceiling.append(bare)

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(resident, range(args.residents)))
    sent = time.perf_counter() - started
    expected = before + args.residents
    deadline = time.monotonic() + 600
    while True:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM reports")).scalar_one()
        if stored >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    done = time.perf_counter() - started
    engine.dispose()

    p50, p99 = percentile(webhook, 0.5), percentile(webhook, 0.99)
    c50, c99 = percentile(ceiling, 0.5), percentile(ceiling, 0.99)
    print(
        f"POST /line/webhook, {len(webhook)} calls from {args.clients} clients, "
        f"{args.workers} workers: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"mean {statistics.fmean(webhook) * 1000:.1f} ms"
    )
    print(
        f"ceiling GET /healthz, same load: p50 {c50 * 1000:.1f} ms, "
        f"p99 {c99 * 1000:.1f} ms; webhook/ceiling p50 {p50 / c50:.1f}x, "
        f"p99 {p99 / c99:.1f}x; webhook p99 / photo delay "
        f"{p99 / args.photo_delay:.2f}"
    )
    print(
        f"{stored - before} of {args.residents} reports stored, {line.replies} replies "
        f"sent, all calls sent in {sent:.1f} s, all reports in {done:.1f} s: "
        f"{(stored - before) / done:.1f} reports/s, each with a "
        f"{args.photo_delay:.1f} s photo download"
    )


if __name__ == "__main__":
    main()
