"""Hearing back: a real SMTP server (aiosmtpd) receives the reporter's mails, a real HTTP
receiver checks signed webhook calls, and the outbox keeps everything through outages."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from PIL import Image
from sqlalchemy import Engine, text

from api.deps import app_state, replace_app_state
from geo.access.policy import snap_point
from geo.i18n import translate
from geo.reports.notifications import deliver_due
from geo.settings import NotificationSettings

PUBLIC_URL = "https://city.example"
NOTE = "ทีมจะเข้าไปดูพรุ่งนี้ {{7*7}} {% raw %} <img src=x onerror=alert(1)> {0} {id}"
STAFF_NOTE = "staff only: call the owner on 081-555-1234"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """What a real SMTP server on 127.0.0.1 received; it can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self._controller: Controller | None = None

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def settings(self) -> NotificationSettings:
        """Notification settings that name this server as the mail server."""
        return NotificationSettings(smtp_url=self.url, public_url=PUBLIC_URL, mail_from=MAIL_FROM)

    def environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The same, in the environment, which commands outside the app read."""
        monkeypatch.setenv("ISSUEMAP_SMTP_URL", self.url)
        monkeypatch.setenv("ISSUEMAP_PUBLIC_URL", PUBLIC_URL)
        monkeypatch.setenv("ISSUEMAP_MAIL_FROM", MAIL_FROM)


MAIL_FROM = "City of Test <noreply@city.example>"


@pytest.fixture
def mailbox(city_app) -> Iterator[Mailbox]:
    """A running SMTP server, configured as the running service's mail server."""
    box = Mailbox()
    box.start()
    replace_app_state(city_app[0].app, notifications=box.settings())
    try:
        yield box
    finally:
        box.stop()


def key(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 128, 0)).save(out, format="PNG")
    return out.getvalue()


def deliver(client, engine: Engine, **overrides: Any) -> tuple[int, int, int]:
    """One delivery round with the settings the running app has, as ``issuemap serve``'s
    delivery worker reads the same settings as its web workers."""
    settings = app_state(client.app).notifications.model_copy(update=overrides)
    done = deliver_due(engine, settings, public_rounding_m=100.0)
    return done.delivered, done.retrying, done.failed


def file_report(client, keys, contact: str | None = "resident@example.com", **fields: Any) -> int:
    body = {
        "category": "road",
        "description": "หลุมบนถนน",
        "lat": 8.40537,
        "lon": 100.00463,
        "reporter_name": "Somchai Private",
        "reporter_contact": contact,
        **fields,
    }
    # An app's key: the anonymous rate limit is for one resident, not for a test run.
    answer = client.post("/api/reports", json=body, headers=key(keys.app))
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def move(client, keys, report: int, status: str, **notes: str) -> None:
    answer = client.post(
        f"/api/reports/{report}/status", json={"status": status, **notes}, headers=key(keys.t1)
    )
    assert answer.status_code == 200, answer.text


def token_of(engine: Engine, report: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(text("SELECT token FROM reports WHERE id = :id"), {"id": report}).scalar()
        )


def outbox(engine: Engine, report: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT kind, target, attempts, delivered_at, failed_at, last_error, payload "
                "FROM outbox WHERE report_id = :id ORDER BY id"
            ),
            {"id": report},
        ).mappings()
        return [dict(r) for r in rows]


def make_due(engine: Engine) -> None:
    """As if every retry's wait had passed."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET available_at = now() WHERE delivered_at IS NULL"))


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


# --- e-mail ------------------------------------------------------------------------------


def test_a_reporter_gets_one_thai_mail_per_status_change(city_app, engine, mailbox) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    move(client, keys, report, "acknowledged", public_note=NOTE, note=STAFF_NOTE)
    assert deliver(client, engine) == (1, 0, 0)
    assert deliver(client, engine) == (0, 0, 0), "a delivered mail is not sent again"
    [mail] = mailbox.messages
    assert mailbox.recipients == [["resident@example.com"]]
    assert mail["To"] == "resident@example.com"
    assert "noreply@city.example" in mail["From"]
    status = translate("th", "Acknowledged")
    assert status != "Acknowledged" and status in mail["Subject"]
    assert f"#{report}" in mail["Subject"]
    body = body_of(mail)
    assert "เรื่องที่คุณแจ้ง" in body and status in body
    assert f"#{report} (ถนน)" in body and "Roads" not in body
    # The note arrives exactly as staff wrote it: nothing in it is a template. The link's
    # random token may itself hold "49"; the rest of the mail may not.
    link = f"{PUBLIC_URL}/r/{token_of(engine, report)}"
    assert NOTE in body and "49" not in body.replace(link, "")
    assert link in body
    assert STAFF_NOTE not in body and "081-555-1234" not in body
    assert "Somchai" not in body
    assert "8.405" not in body and "100.004" not in body, "no location in the mail"
    # Plain text only: no HTML part in which markup from a note could act.
    assert [p.get_content_type() for p in mail.walk()] == ["text/plain"]

    resolved = client.post(
        f"/api/reports/{report}/status",
        data={"status": "resolved", "public_note": "ซ่อมเสร็จแล้ว", "note": STAFF_NOTE},
        files={"photo": ("after.png", png(), "image/png")},
        headers=key(keys.t1),
    )
    assert resolved.status_code == 200, resolved.text
    [photo] = resolved.json()["photo_ids"]
    assert deliver(client, engine) == (0, 0, 0), "resolving may be undone for a minute"
    make_due(engine)  # as if the undo window had passed
    assert deliver(client, engine) == (1, 0, 0)
    assert len(mailbox.messages) == 2
    fixed = mailbox.messages[1]
    assert translate("th", "Resolved") in fixed["Subject"]
    body = body_of(fixed)
    assert "ซ่อมเสร็จแล้ว" in body and STAFF_NOTE not in body
    # The after-photo: linked, and attached as the public copy anyone may see.
    assert f"{PUBLIC_URL}/api/photos/{photo}" in body
    [attached] = list(fixed.iter_attachments())
    assert attached.get_content_type() == "image/png"
    assert attached.get_content() == client.get(f"/api/photos/{photo}").content
    assert "text/html" not in [p.get_content_type() for p in fixed.walk()]


def test_a_reporter_who_reported_in_english_reads_english(city_app, engine, mailbox) -> None:
    client, _, keys = city_app
    report = file_report(client, keys, contact="  visitor@example.org ")
    with engine.begin() as conn:
        conn.execute(text("UPDATE reports SET language = 'en' WHERE id = :id"), {"id": report})
    move(client, keys, report, "in_progress", public_note="Crew on the way <b>today</b>")
    assert deliver(client, engine) == (1, 0, 0)
    [mail] = mailbox.messages
    assert mail["To"] == "visitor@example.org"
    assert mail["Subject"] == f"Your report #{report}: In progress"
    body = body_of(mail)
    assert f"Your report #{report} (Roads) is now: In progress." in body
    assert "Crew on the way <b>today</b>" in body
    assert "Message from the city:" in body
    assert f"{PUBLIC_URL}/r/{token_of(engine, report)}" in body
    assert "เรื่อง" not in body


def test_no_mail_without_an_address_or_without_a_mail_server(city_app, engine, mailbox) -> None:
    client, _, keys = city_app
    phone = file_report(client, keys, contact="081-555-1234")
    nothing = file_report(client, keys, contact=None)
    odd = file_report(client, keys, contact="someone@localhost\nBcc: victim@example.com")
    for report in (phone, nothing, odd):
        move(client, keys, report, "acknowledged")
        assert outbox(engine, report) == []
    replace_app_state(client.app, notifications=NotificationSettings(smtp_url=None))
    unset = file_report(client, keys)
    move(client, keys, unset, "acknowledged", public_note="x")
    assert outbox(engine, unset) == [], "mail switched off: nothing is queued"
    assert deliver(client, engine) == (0, 0, 0)
    assert mailbox.messages == []


def test_a_mail_server_outage_loses_nothing_and_sends_once(city_app, engine, mailbox) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    mailbox.stop()
    move(client, keys, report, "acknowledged", public_note="เราได้รับเรื่องแล้ว")
    # The status change committed although no mail could go out.
    assert client.get(f"/api/reports/{report}").json()["status"] == "acknowledged"
    assert deliver(client, engine) == (0, 1, 0)
    [row] = outbox(engine, report)
    assert row["attempts"] == 1 and row["delivered_at"] is None and row["failed_at"] is None
    assert "mail server" in row["last_error"]
    assert deliver(client, engine) == (0, 0, 0), "not tried again before its backoff has passed"
    make_due(engine)
    assert deliver(client, engine) == (0, 1, 0)
    assert outbox(engine, report)[0]["attempts"] == 2

    mailbox.start()
    make_due(engine)
    assert deliver(client, engine) == (1, 0, 0)
    make_due(engine)
    assert deliver(client, engine) == (0, 0, 0)
    assert len(mailbox.messages) == 1
    assert "เราได้รับเรื่องแล้ว" in body_of(mailbox.messages[0])
    [row] = outbox(engine, report)
    assert row["delivered_at"] is not None and row["attempts"] == 3
    assert row["last_error"] is None


def test_retries_end_after_the_last_attempt(city_app, engine, mailbox) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    mailbox.stop()
    move(client, keys, report, "acknowledged")
    assert deliver(client, engine, outbox_max_attempts=2) == (0, 1, 0)
    make_due(engine)
    assert deliver(client, engine, outbox_max_attempts=2) == (0, 0, 1)
    [row] = outbox(engine, report)
    assert row["failed_at"] is not None and row["attempts"] == 2
    mailbox.start()
    make_due(engine)
    assert deliver(client, engine) == (0, 0, 0), "a message given up on stays given up"


def test_a_mailbox_refused_for_good_fails_at_once(city_app, engine, mailbox) -> None:
    client, _, keys = city_app
    report = file_report(client, keys, contact="nobody@example.com")
    move(client, keys, report, "acknowledged")
    assert deliver(client, engine) == (0, 0, 1)
    [row] = outbox(engine, report)
    assert row["attempts"] == 1 and row["failed_at"] is not None
    assert "550" in row["last_error"]


def test_the_backoff_doubles_up_to_its_cap() -> None:
    from geo.reports.notifications import retry_delay_s

    settings = NotificationSettings(outbox_retry_s=30, outbox_retry_max_s=300)
    assert [retry_delay_s(n, settings) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]
    assert retry_delay_s(1000, settings) == 300


def test_two_workers_never_send_one_mail_twice(city_app, engine, mailbox) -> None:
    client, _, keys = city_app
    reports = [file_report(client, keys, contact=f"r{n}@example.com") for n in range(12)]
    for report in reports:
        move(client, keys, report, "acknowledged")
    results: list[tuple[int, int, int]] = []
    workers = [
        threading.Thread(target=lambda: results.append(deliver(client, engine))) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(r[0] for r in results) == 12
    assert sorted(r[0] for r in mailbox.recipients) == sorted(
        f"r{n}@example.com" for n in range(12)
    )


def test_a_merged_duplicate_tells_its_reporter(city_app, engine, mailbox) -> None:
    client, _, keys = city_app
    original = file_report(client, keys, contact=None)
    copy = file_report(client, keys)
    merged = client.post(
        f"/api/reports/{copy}/merge",
        json={"original_id": original, "public_note": "รวมกับเรื่องเดิม", "note": STAFF_NOTE},
        headers=key(keys.t1),
    )
    assert merged.status_code == 200, merged.text
    assert deliver(client, engine) == (1, 0, 0)
    [mail] = mailbox.messages
    body = body_of(mail)
    assert translate("th", "Duplicate") in mail["Subject"]
    assert f"#{original}" in body and "รวมกับเรื่องเดิม" in body
    assert STAFF_NOTE not in body


def test_a_refused_status_change_queues_nothing(city_app, engine, mailbox) -> None:
    client, _, keys = city_app
    report = file_report(client, keys)
    refused = client.post(
        f"/api/reports/{report}/status", json={"status": "closed"}, headers=key(keys.t1)
    )
    assert refused.status_code == 409
    assert outbox(engine, report) == []


# --- the worker: `issuemap deliver` and the process `issuemap serve` runs ---------------------


def wait_for(condition, *, timeout_s: float = 60.0) -> bool:
    """Whether ``condition()`` came true within ``timeout_s`` (a guard against hanging)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """Put back the logging set-up a command replaces (``issuemap deliver`` configures it)."""
    import logging

    loggers = [logging.getLogger(name) for name in ("", "geo", "uvicorn", "uvicorn.error")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    yield
    for logger, handlers, level, propagate, disabled in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, disabled


def test_issuemap_deliver_once_sends_what_is_due(
    city_app, engine, mailbox, db_url, monkeypatch, keep_logging
) -> None:
    from typer.testing import CliRunner

    from geo.cli.main import app

    client, _, keys = city_app
    report = file_report(client, keys)
    move(client, keys, report, "resolved", public_note="เรียบร้อย")
    make_due(engine)  # as if the undo window had passed
    mailbox.environment(monkeypatch)
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["deliver", "--once"])
    assert result.exit_code == 0, result.output
    assert "delivered 1, will retry 0, gave up on 0" in result.output
    assert len(mailbox.messages) == 1
    again = CliRunner().invoke(app, ["deliver", "--once"])
    assert "delivered 0" in again.output and len(mailbox.messages) == 1


def test_the_service_delivery_worker_sends_and_stops_cleanly(
    city_app, engine, mailbox, db_url, monkeypatch
) -> None:
    from geo.cli.service import DeliveryWorker

    client, _, keys = city_app
    mailbox.environment(monkeypatch)
    monkeypatch.setenv("ISSUEMAP_OUTBOX_POLL_S", "0.2")
    report = file_report(client, keys)
    move(client, keys, report, "acknowledged", public_note="first")
    worker = DeliveryWorker(db_url, configure_logging=False)
    with worker:
        assert wait_for(lambda: len(mailbox.messages) == 1)
        # The worker keeps watching: a later change goes out without being asked.
        move(client, keys, report, "in_progress", public_note="second")
        assert wait_for(lambda: len(mailbox.messages) == 2)
    assert worker.process is not None
    assert worker.process.returncode == 0, "stopped when asked, not killed"
    assert ["first" in body_of(m) for m in mailbox.messages] == [True, False]
    assert [row["delivered_at"] is not None for row in outbox(engine, report)] == [True, True]


# --- webhooks ------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server that records each call; ``answers`` are the statuses it gives first."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((self.path, dict(self.headers.items()), body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def events(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(body) for p, _, body in self.calls if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()
    try:
        yield box
    finally:
        box.server.shutdown()
        box.server.server_close()


def register(client, keys, **body: Any) -> dict[str, Any]:
    answer = client.post("/api/admin/webhooks", json=body, headers=key(keys.admin))
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Issuemap-Signature"], expected)


def test_webhooks_get_each_event_signed_and_public_only(city_app, engine, receiver) -> None:
    client, _, keys = city_app
    every = register(client, keys, url=receiver.url("/all"), description="city dashboard")
    assert every["events"] == [
        "report.created",
        "report.status_changed",
        "report.merged",
        "report.forwarded",
    ]
    merges = register(client, keys, url=receiver.url("/merges"), events=["report.merged"])
    listed = client.get("/api/admin/webhooks", headers=key(keys.admin))
    assert listed.status_code == 200
    assert [w["id"] for w in listed.json()] == [every["id"], merges["id"]]
    assert every["secret"] not in listed.text and "secret" not in listed.json()[0]

    original = file_report(client, keys)
    copy = file_report(client, keys)
    move(client, keys, original, "acknowledged", public_note="ทีมรับเรื่องแล้ว", note=STAFF_NOTE)
    merged = client.post(
        f"/api/reports/{copy}/merge",
        json={"original_id": original, "note": STAFF_NOTE},
        headers=key(keys.t1),
    )
    assert merged.status_code == 200, merged.text
    assert deliver(client, engine, public_url=PUBLIC_URL) == (5, 0, 0)

    kinds = [(e["event"], e["report"]["id"]) for e in receiver.events("/all")]
    assert kinds == [
        ("report.created", original),
        ("report.created", copy),
        ("report.status_changed", original),
        ("report.merged", copy),
    ]
    assert [e["event"] for e in receiver.events("/merges")] == ["report.merged"]
    for path, headers, body in receiver.calls:
        secret = every["secret"] if path == "/all" else merges["secret"]
        assert verify(secret, headers, body), "signed with the webhook's own secret"
        assert not verify("another secret", headers, body)
        document = json.loads(body)
        assert headers["X-Issuemap-Event"] == document["event"]
        assert headers["X-Issuemap-Event-Id"] == str(document["event_id"])
        assert headers["X-Issuemap-Timestamp"].isdigit()
        text_sent = body.decode()
        assert "Somchai" not in text_sent and "resident@example.com" not in text_sent
        assert STAFF_NOTE not in text_sent and "081-555" not in text_sent
        report = document["report"]
        assert (report["lat"], report["lon"]) == pytest.approx(snap_point(8.40537, 100.00463, 100))
        assert report["lat"] != pytest.approx(8.40537, abs=1e-6)
        assert report["status_url"] == f"{PUBLIC_URL}/r/{token_of(engine, report['id'])}"
    changed = receiver.events("/all")[2]["report"]
    assert changed["status"] == "acknowledged" and changed["from_status"] == "open"
    assert changed["public_note"] == "ทีมรับเรื่องแล้ว"
    assert changed["photo_urls"] == []
    assert receiver.events("/merges")[0]["report"]["duplicate_of"] == original


def test_a_failing_receiver_is_tried_again(city_app, engine, receiver) -> None:
    client, _, keys = city_app
    hook = register(client, keys, url=receiver.url("/hook"), events=["report.status_changed"])
    report = file_report(client, keys)
    receiver.answers = [500]
    move(client, keys, report, "in_progress")
    assert deliver(client, engine) == (0, 1, 0)
    [row] = outbox(engine, report)
    assert row["attempts"] == 1 and row["last_error"] == "webhook answered 500"
    [listed] = client.get("/api/admin/webhooks", headers=key(keys.admin)).json()
    assert listed["pending"] == 1 and listed["last_error"] == "webhook answered 500"
    make_due(engine)
    assert deliver(client, engine) == (1, 0, 0)
    first, second = receiver.calls
    assert first[2] == second[2], "a retry sends the same event"
    assert first[1]["X-Issuemap-Event-Id"] == second[1]["X-Issuemap-Event-Id"]
    assert verify(hook["secret"], second[1], second[2])
    [listed] = client.get("/api/admin/webhooks", headers=key(keys.admin)).json()
    assert listed["pending"] == 0 and listed["failed"] == 0


def test_a_revoked_webhook_is_called_no_more(city_app, engine, receiver) -> None:
    client, _, keys = city_app
    hook = register(client, keys, url=receiver.url("/hook"))
    report = file_report(client, keys)
    assert (
        client.delete(f"/api/admin/webhooks/{hook['id']}", headers=key(keys.admin)).status_code
        == 204
    )
    move(client, keys, report, "acknowledged")
    assert [r["kind"] for r in outbox(engine, report)] == ["webhook"], "only the earlier event"
    assert deliver(client, engine) == (0, 0, 1)
    assert receiver.calls == []
    assert client.get("/api/admin/webhooks", headers=key(keys.admin)).json() == []
    again = client.delete(f"/api/admin/webhooks/{hook['id']}", headers=key(keys.admin))
    assert again.status_code == 404


def test_hidden_reports_reach_their_reporter_but_no_webhook(
    city_app, engine, receiver, mailbox
) -> None:
    client, _, keys = city_app
    register(client, keys, url=receiver.url("/hook"))
    report = file_report(client, keys)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET hidden_at = now(), hidden_reason = 'abuse' WHERE id = :id"),
            {"id": report},
        )
    move(client, keys, report, "rejected", public_note="ไม่ใช่เรื่องของเมือง")
    make_due(engine)  # as if the undo window had passed
    assert [r["kind"] for r in outbox(engine, report)] == ["webhook", "email"]
    assert deliver(client, engine) == (1, 0, 1), "the created call was queued before it was hidden"
    assert receiver.calls == [] and len(mailbox.messages) == 1


def test_a_resident_joining_a_report_nearby_is_a_merge_for_webhooks(
    city_app, engine, receiver, mailbox
) -> None:
    client, _, keys = city_app
    merges = register(client, keys, url=receiver.url("/merges"), events=["report.merged"])
    original = file_report(client, keys)
    mine = file_report(client, keys, lat=8.4054, lon=100.0047)
    joined = client.post(
        f"/r/{token_of(engine, mine)}/support?lang=en",
        data={"report_id": str(original)},
        follow_redirects=False,
    )
    assert joined.status_code == 303, joined.text
    assert [r["kind"] for r in outbox(engine, mine)] == ["webhook"], "no mail about own press"
    assert deliver(client, engine, public_url=PUBLIC_URL) == (1, 0, 0)
    ((_path, headers, body),) = receiver.calls
    assert verify(merges["secret"], headers, body)
    document = json.loads(body)
    assert document["event"] == "report.merged"
    assert (document["report"]["id"], document["report"]["duplicate_of"]) == (mine, original)
    assert "resident@example.com" not in body.decode() and mailbox.messages == []


BAD_WEBHOOKS = [
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "ftp://files.example/x"}, "url"),
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "http://user:secret@hooks.example/x"}, "url"),
    ({"url": "http://hooks.example/x\x00y"}, "url"),
    ({"url": "http://hooks.example/a b"}, "url"),
    ({"url": "http://hooks.example/\r\nX-Injected: 1"}, "url"),
    ({"url": "http:///no-host"}, "url"),
    ({"url": "http://hooks.example:99999/"}, "url"),
    ({"url": "{{7*7}}"}, "url"),
    ({"url": "https://hooks.example/" + "a" * 5000}, "url"),
    ({"url": ""}, "url"),
    ({"url": "https://hooks.example/x", "events": ["report.deleted"]}, "events"),
    ({"url": "https://hooks.example/x", "events": []}, "events"),
    ({"url": "https://hooks.example/x", "events": ["{% raw %}"]}, "events"),
    ({"url": "https://hooks.example/x", "description": "x" * 1000}, "description"),
    ({"url": "https://hooks.example/x", "description": "a\x00b"}, "description"),
    ({"url": "https://hooks.example/x", "secret": "mine"}, "secret"),
]


@pytest.mark.parametrize(("body", "field"), BAD_WEBHOOKS)
def test_bad_webhooks_are_refused_naming_the_field(city_app, engine, body, field) -> None:
    client, _, keys = city_app
    answer = client.post("/api/admin/webhooks", json=body, headers=key(keys.admin))
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhooks")).scalar() == 0


def test_only_admins_manage_webhooks(city_app, receiver) -> None:
    client, _, keys = city_app
    body = {"url": receiver.url("/hook"), "description": "{{7*7}} <img src=x onerror=alert(1)>"}
    for secret in (keys.planner, keys.t1, keys.app):
        assert client.post("/api/admin/webhooks", json=body, headers=key(secret)).status_code == 403
        assert client.get("/api/admin/webhooks", headers=key(secret)).status_code == 403
        assert client.delete("/api/admin/webhooks/1", headers=key(secret)).status_code == 403
    assert client.post("/api/admin/webhooks", json=body).status_code == 401
    assert client.get("/api/admin/webhooks").status_code == 401
    made = register(client, keys, **body)
    assert made["description"] == "{{7*7}} <img src=x onerror=alert(1)>"
    [listed] = client.get("/api/admin/webhooks", headers=key(keys.admin)).json()
    assert listed["description"] == body["description"] and listed["url"] == body["url"]


@pytest.mark.parametrize(
    "smtp_url",
    ["http://not-a-mail-server.example", "smtp://city:hunter2@mail.example:99999"],
)
def test_a_broken_mail_setting_stops_the_service_at_start(
    db_url, monkeypatch, smtp_url: str
) -> None:
    """Refused before anything is served, saying which setting and why, not its value."""
    from api.app import create_app

    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    monkeypatch.setenv("ISSUEMAP_SMTP_URL", smtp_url)
    with pytest.raises(RuntimeError, match="ISSUEMAP_SMTP_URL") as refused:
        create_app()
    told = str(refused.value)
    assert told.startswith("invalid settings: ISSUEMAP_SMTP_URL:")
    assert "hunter2" not in told and "not-a-mail-server" not in told
    # Nothing printed with it (the traceback's chained errors) repeats the value either.
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_mail_settings_given_to_the_app_queue_and_deliver_mail(
    city_app, engine, db_url, monkeypatch
) -> None:
    """An app built with mail settings sends mail, with none in the environment."""
    from fastapi.testclient import TestClient

    from api.app import AppSettings, create_app
    from geo.settings import DatabaseSettings

    _, _, keys = city_app
    for name in ("ISSUEMAP_SMTP_URL", "ISSUEMAP_PUBLIC_URL", "ISSUEMAP_MAIL_FROM"):
        monkeypatch.delenv(name, raising=False)
    assert not NotificationSettings().email_enabled
    box = Mailbox()
    box.start()
    try:
        settings = AppSettings(
            database=DatabaseSettings(database_url=db_url), notifications=box.settings()
        )
        with TestClient(create_app(settings)) as client:
            report = file_report(client, keys)
            move(client, keys, report, "acknowledged", public_note="รับเรื่องแล้ว")
            assert [row["kind"] for row in outbox(engine, report)] == ["email"]
            assert deliver(client, engine) == (1, 0, 0)
    finally:
        box.stop()
    [mail] = box.messages
    assert box.recipients == [["resident@example.com"]]
    assert "noreply@city.example" in mail["From"]
    body = body_of(mail)
    assert "รับเรื่องแล้ว" in body
    assert f"{PUBLIC_URL}/r/{token_of(engine, report)}" in body


def test_settings_problems_are_told_without_the_secret_values() -> None:
    from pydantic import ValidationError

    from geo.settings import settings_problems

    with pytest.raises(ValidationError) as refused:
        NotificationSettings(smtp_url="smtp://city:hunter2@mail.example:99999")
    told = settings_problems(refused.value)
    assert told.startswith("ISSUEMAP_SMTP_URL:") and "port" in told
    assert "hunter2" not in told


def test_delivered_messages_are_pruned_after_the_keeping_time(city_app, engine, mailbox) -> None:
    from geo.reports.notifications import prune_delivered

    client, _, keys = city_app
    report = file_report(client, keys)
    for status in ("acknowledged", "in_progress"):
        move(client, keys, report, status)
    assert deliver(client, engine) == (2, 0, 0)
    mailbox.stop()
    move(client, keys, report, "resolved")
    make_due(engine)  # as if the undo window had passed
    assert deliver(client, engine) == (0, 1, 0)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE outbox SET delivered_at = now() - interval '31 days' WHERE id = "
                "(SELECT min(id) FROM outbox WHERE report_id = :id)"
            ),
            {"id": report},
        )
    assert prune_delivered(engine, keep_days=30) == 1
    left = outbox(engine, report)
    assert [r["delivered_at"] is not None for r in left] == [True, False], "pending ones stay"
