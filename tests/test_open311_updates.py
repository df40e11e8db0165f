"""FixMyStreet's Open311 update extension, tokens, and posting as FixMyStreet's client does.

The poll tests follow FixMyStreet's client (``perllib/Open311.pm``): it asks
``servicerequestupdates.xml`` for ``start_date`` .. ``end_date`` windows with its ``api_key``
and ``jurisdiction_id``, reads ``request_update`` elements, and keeps the ones whose
``updated_datetime`` falls in the window it asked for. The tests share one database; each
looks only at the reports it made, and at windows only its own events fall in.
"""

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine
from geo.settings import DatabaseSettings
from tests.fixtures import Keys, load_tiny_city, make_keys
from tests.test_open311 import BASE, spec_error, valid_json, valid_xml
from tests.test_workflow import png

UPDATE_FIELDS = (
    "update_id",
    "service_request_id",
    "status",
    "updated_datetime",
    "description",
    "media_url",
)
W3C = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Feed:
    client: TestClient
    engine: Engine
    keys: Keys


@pytest.fixture(scope="module")
def feed(pg_cluster: LocalCluster, template_db: str) -> Iterator[Feed]:
    """One database and app for this module's tests, which keep to their own reports."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user="postgres",
        host=pg_cluster.host,
        port=5432,
        dbname=name,
        template_dbname=template_db,
    )
    janitor.init()
    url = pg_cluster.url(name)
    engine = make_engine(url, pool_size=2)
    try:
        with engine.begin() as conn:
            load_tiny_city(conn)
            keys = make_keys(conn)
        app = create_app(AppSettings(database=DatabaseSettings(database_url=url)))
        with TestClient(app) as client:
            yield Feed(client, engine, keys)
    finally:
        engine.dispose()
        janitor.drop()


def clock(feed: Feed) -> datetime:
    """The database's clock now: a window boundary between two changes."""
    with feed.engine.connect() as conn:
        moment: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    return moment


def file_request(feed: Feed, **fields: str) -> int:
    form = {
        "api_key": feed.keys.app,
        "service_code": "road",
        "lat": "8.405",
        "long": "100.011",
        "description": "หลุมบนถนน",
    } | fields
    answer = feed.client.post(f"{BASE}/requests.json", data=form)
    return int(valid_json(answer, "post_response")[0]["service_request_id"])


def move(feed: Feed, report_id: int, status: str, **extra: Any) -> dict[str, Any]:
    """A crew's status change through the native API (``photo`` makes it multipart)."""
    photo = extra.pop("photo", None)
    url = f"/api/reports/{report_id}/status"
    headers = {"X-API-Key": feed.keys.t1}
    if photo is None:
        answer = feed.client.post(url, headers=headers, json={"status": status, **extra})
    else:
        answer = feed.client.post(
            url,
            headers=headers,
            data={"status": status, **extra},
            files={"photo": ("after.png", photo, "image/png")},
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def w3c(moment: datetime) -> str:
    """A window boundary as a client may send it: W3C with microseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def poll(feed: Feed, start: str, end: str, fmt: str = "json") -> list[dict[str, str]]:
    """One poll as FixMyStreet sends it; the updates, checked against the schema or elements."""
    params = {
        "start_date": start,
        "end_date": end,
        "api_key": feed.keys.app,
        "jurisdiction_id": "issuemap.demo",
    }
    answer = feed.client.get(f"{BASE}/servicerequestupdates.{fmt}", params=params)
    if fmt == "json":
        body = valid_json(answer, "updates")
        assert isinstance(body, list)
        return body
    root = valid_xml(answer, "service_request_updates")
    updates = []
    for element in root:
        assert element.tag == "request_update"
        assert [child.tag for child in element] == list(UPDATE_FIELDS)
        updates.append({child.tag: child.text or "" for child in element})
    return updates


def mine(updates: list[dict[str, str]], *report_ids: int) -> list[dict[str, str]]:
    wanted = {str(i) for i in report_ids}
    return [u for u in updates if u["service_request_id"] in wanted]


def post_update(feed: Feed, fmt: str = "json", **fields: str) -> httpx.Response:
    """POST Service Request Update with the fields FixMyStreet's client sends.

    Those it sends for some councils only, or sent in older versions, come too: they are
    accepted and not read.
    """
    form = {
        "api_key": feed.keys.app,
        "jurisdiction_id": "issuemap.demo",
        "updated_datetime": datetime.now(UTC).strftime(W3C),
        "status": "OPEN",
        "description": "ยังไม่ได้ซ่อม",
        "first_name": "Somchai",
        "last_name": "Jaidee",
        "email": "somchai@example.org",
        "title": "MR",
        "email_alerts_requested": "FALSE",
        "public_anonymity_required": "TRUE",
        "update_id_ext": "77",
        "service_request_id_ext": "55",
    } | fields
    return feed.client.post(
        f"{BASE}/servicerequestupdates.{fmt}", data={k: v for k, v in form.items() if v}
    )


def posted_id(answer: httpx.Response) -> str:
    (record,) = valid_json(answer, "post_update_response")
    return str(record["update_id"])


def status_of(feed: Feed, report_id: int) -> str:
    with feed.engine.connect() as conn:
        status: str = conn.execute(
            text("SELECT status FROM reports WHERE id = :id"), {"id": report_id}
        ).scalar_one()
    return status


# --- GET Service Request Updates ---------------------------------------------------------


def test_a_fixmystreet_poll_follows_each_change_once_window_by_window(feed: Feed) -> None:
    report = file_request(feed)
    bounds = [clock(feed)]
    move(feed, report, "acknowledged", public_note="รับเรื่องแล้ว {{7*7}} <b>")
    bounds.append(clock(feed))
    move(feed, report, "in_progress", note="ผู้แจ้งโทร 081-555-0199")
    bounds.append(clock(feed))
    resolved = move(feed, report, "resolved", public_note="ซ่อมเสร็จแล้ว", photo=png())
    bounds.append(clock(feed))
    # The resident reopens it on FixMyStreet, which posts it as its client does, in XML.
    answer = post_update(
        feed, "xml", service_request_id=str(report), status="REOPEN", description="ยังเป็นหลุมอยู่"
    )
    (reopen,) = valid_xml(answer, "service_request_updates").findall("request_update")
    reopen_id = reopen.findtext("update_id")
    assert reopen_id and reopen_id.isdigit()
    bounds.append(clock(feed))

    windows = [
        [mine(poll(feed, w3c(a), w3c(b), fmt), report) for a, b in itertools.pairwise(bounds)]
        for fmt in ("json", "xml")
    ]
    assert windows[0] == windows[1], "JSON and XML say the same"
    acknowledged, in_progress, fixed, reopened = windows[0]
    assert [u["status"] for u in acknowledged] == ["investigating"]
    assert acknowledged[0]["description"] == "รับเรื่องแล้ว {{7*7}} <b>"
    assert [(u["status"], u["description"]) for u in in_progress] == [("in_progress", "")]
    assert [u["status"] for u in fixed] == ["fixed"]
    assert fixed[0]["update_id"] == str(resolved["event_id"])
    assert fixed[0]["description"] == "ซ่อมเสร็จแล้ว"
    assert fixed[0]["media_url"] == f"http://testserver/api/photos/{resolved['photo_ids'][0]}"
    assert feed.client.get(fixed[0]["media_url"]).status_code == 200
    # The reopen posted through the updates endpoint is in the next poll, under the id its
    # POST answered (FixMyStreet skips an update_id it already has).
    assert reopened == [
        {
            "update_id": reopen_id,
            "service_request_id": str(report),
            "status": "open",
            "updated_datetime": reopened[0]["updated_datetime"],
            "description": "",
            "media_url": "",
        }
    ]
    assert status_of(feed, report) == "reopened"
    # One window over the lot holds the same updates, each once, oldest first.
    whole = mine(poll(feed, w3c(bounds[0]), w3c(bounds[-1])), report)
    assert whole == [u for window in windows[0] for u in window]
    assert len({u["update_id"] for u in whole}) == 4
    for update in whole:
        moment = datetime.strptime(update["updated_datetime"], W3C).replace(tzinfo=UTC)
        assert bounds[0] - timedelta(seconds=1) < moment <= bounds[-1]
    # Staff's own note and the resident's words and contact are never in it.
    raw = feed.client.get(
        f"{BASE}/servicerequestupdates.xml",
        params={"start_date": w3c(bounds[0]), "end_date": w3c(bounds[-1])},
    ).text
    for private in ("0199", "ยังเป็นหลุมอยู่", "Somchai", "somchai@"):
        assert private not in raw


def test_adjacent_whole_second_windows_share_no_update(feed: Feed) -> None:
    """FixMyStreet asks in whole seconds and keeps updates in [start, end] of its own."""
    report = file_request(feed)
    for status in ("acknowledged", "in_progress", "resolved", "closed"):
        move(feed, report, status)
    noon = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)
    moments = [
        noon - timedelta(seconds=1),
        noon - timedelta(microseconds=1),
        noon,  # on the boundary between the two windows
        noon + timedelta(milliseconds=500),
    ]
    with feed.engine.begin() as conn:
        events = (
            conn.execute(
                text(
                    "SELECT id FROM report_events "
                    "WHERE report_id = :id AND kind = 'status' ORDER BY id"
                ),
                {"id": report},
            )
            .scalars()
            .all()
        )
        for event, moment in zip(events, moments, strict=True):
            conn.execute(
                text("UPDATE report_events SET at = :at WHERE id = :id"),
                {"at": moment, "id": event},
            )
    hour = timedelta(hours=1)
    seen: list[str] = []
    for start, end in ((noon - hour, noon), (noon, noon + hour)):
        for update in mine(poll(feed, start.strftime(W3C), end.strftime(W3C), "xml"), report):
            # The client's own check: the update's time, in UTC, within what it asked for.
            assert start.strftime(W3C) <= update["updated_datetime"] <= end.strftime(W3C)
            seen.append(update["update_id"])
    assert seen == [str(e) for e in events]
    first, second = (
        mine(poll(feed, a.strftime(W3C), b.strftime(W3C)), report)
        for a, b in ((noon - hour, noon), (noon, noon + hour))
    )
    assert [u["status"] for u in first] == ["investigating", "in_progress"]
    # Closed after resolved is still fixed to FixMyStreet.
    assert [u["status"] for u in second] == ["fixed", "fixed"]
    assert [u["updated_datetime"] for u in second] == ["2020-03-01T12:00:00Z"] * 2


def test_hidden_reports_comments_and_private_notes_never_appear(feed: Feed) -> None:
    start = clock(feed)
    shown, hidden = file_request(feed), file_request(feed)
    for report in (shown, hidden):
        move(feed, report, "acknowledged", note="ผู้แจ้งโทร 081-555-0199", public_note="รับแล้ว")
    answer = feed.client.post(
        f"/api/reports/{hidden}/hide",
        headers={"X-API-Key": feed.keys.planner},
        json={"reason": "ข้อมูลส่วนตัว"},
    )
    assert answer.status_code == 200, answer.text
    # A resident's comment is kept for staff, not published.
    comment = posted_id(post_update(feed, service_request_id=str(shown)))
    forwarded = feed.client.post(
        f"/api/reports/{shown}/forward",
        headers={"X-API-Key": feed.keys.t1},
        json={"team": "T2", "reason": "ไม่ใช่เขตเรา", "public_note": "ส่งต่อให้ทีม T2"},
    )
    assert forwarded.status_code == 200, forwarded.text
    end = clock(feed)
    for fmt in ("json", "xml"):
        updates = poll(feed, w3c(start), w3c(end), fmt)
        assert mine(updates, hidden) == []
        assert comment not in {u["update_id"] for u in updates}
        ours = mine(updates, shown)
        assert [(u["status"], u["description"]) for u in ours] == [
            ("investigating", "รับแล้ว"),
            ("investigating", "ส่งต่อให้ทีม T2"),
        ]
        raw = json.dumps(updates, ensure_ascii=False)
        for private in ("0199", "ข้อมูลส่วนตัว", "ไม่ใช่เขตเรา", "ยังไม่ได้ซ่อม", "Somchai"):
            assert private not in raw
    # Staff read the comment, as it was sent, in the audit trail.
    trail = feed.client.get(
        f"/api/reports/{shown}/events", headers={"X-API-Key": feed.keys.planner}
    ).json()
    (kept,) = [e for e in trail if e["kind"] == "comment"]
    assert str(kept["id"]) == comment and kept["note"] == "ยังไม่ได้ซ่อม"
    assert kept["data"]["by"] == {"name": "Somchai Jaidee", "contact": "somchai@example.org"}


def test_an_undone_change_is_left_out_and_its_undo_restores_the_status(feed: Feed) -> None:
    report = file_request(feed)
    start = clock(feed)
    move(feed, report, "acknowledged")
    slip = move(feed, report, "resolved", public_note="ผิดเรื่อง")
    middle = clock(feed)
    # A client that polled just now read the slip.
    assert [u["status"] for u in mine(poll(feed, w3c(start), w3c(middle)), report)] == [
        "investigating",
        "fixed",
    ]
    undo = feed.client.post(
        f"/api/reports/{report}/status/{slip['event_id']}/undo",
        headers={"X-API-Key": feed.keys.t1},
    )
    assert undo.status_code == 200, undo.text
    end = clock(feed)
    updates = mine(poll(feed, w3c(start), w3c(end)), report)
    assert str(slip["event_id"]) not in {u["update_id"] for u in updates}
    assert [(u["status"], u["description"]) for u in updates] == [
        ("investigating", ""),
        ("investigating", ""),  # the undo, which puts that client right
    ]
    assert "ผิดเรื่อง" not in json.dumps(updates, ensure_ascii=False)


def test_more_updates_than_one_answer_holds_is_refused_naming_where_to_end(
    feed: Feed,
) -> None:
    report = file_request(feed)
    first = datetime(2019, 6, 1, tzinfo=UTC)
    with feed.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO report_events (report_id, at, kind, actor, from_status, to_status) "
                "SELECT :id, :first + make_interval(secs => n), 'status', 'test', 'open', "
                "'acknowledged' FROM generate_series(0, 1000) AS n"
            ),
            {"id": report, "first": first},
        )
    start, end = first.strftime(W3C), (first + timedelta(days=1)).strftime(W3C)
    for fmt in ("json", "xml"):
        answer = feed.client.get(
            f"{BASE}/servicerequestupdates.{fmt}", params={"start_date": start, "end_date": end}
        )
        assert spec_error(answer, 400, fmt) == (
            "end_date: more than 1,000 updates fall in this window; end it at "
            "2019-06-01T00:16:40Z and ask for the rest from there"
        )
    head = poll(feed, start, "2019-06-01T00:16:40Z")
    tail = poll(feed, "2019-06-01T00:16:40Z", end)
    assert (len(head), len(tail)) == (1000, 1)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"start_date": "2024-01-01T00:00:00Z", "end_date": "2024-05-01T00:00:00Z"}, "90 days"),
        ({"start_date": "2024-02-01T00:00:00Z", "end_date": "2024-01-01T00:00:00Z"}, "end_date"),
        ({"start_date": "{{7*7}}"}, "start_date"),
        ({"end_date": "2024-01-01T10:00:00"}, "end_date"),
        ({"jurisdiction_id": "sfgov.org"}, "sfgov.org"),
    ],
)
def test_bad_update_windows_are_400s_naming_the_parameter(
    feed: Feed, params: dict[str, str], named: str
) -> None:
    for fmt in ("json", "xml"):
        answer = feed.client.get(f"{BASE}/servicerequestupdates.{fmt}", params=params)
        status = 404 if named == "sfgov.org" else 400
        assert named in spec_error(answer, status, fmt)


# --- POST Service Request Update ---------------------------------------------------------


def test_an_update_reopens_a_finished_report_only_if_written_after_it_finished(
    feed: Feed,
) -> None:
    report = file_request(feed)
    before = datetime.now(UTC) - timedelta(minutes=5)
    move(feed, report, "resolved", public_note="ซ่อมแล้ว")
    # FixMyStreet still thought it open when the resident commented: a comment, not a reopen.
    stale = posted_id(
        post_update(feed, service_request_id=str(report), updated_datetime=before.strftime(W3C))
    )
    assert status_of(feed, report) == "resolved"
    # A resident who says it is fixed is heard by staff; only staff close a report.
    fixed = posted_id(post_update(feed, service_request_id=str(report), status="FIXED"))
    assert status_of(feed, report) == "resolved"
    reopened = posted_id(
        post_update(feed, service_request_id=str(report), update_id="fms-1", status="open")
    )
    assert status_of(feed, report) == "reopened"
    # FixMyStreet retrying a post it sent already gets the same update back.
    again = posted_id(
        post_update(feed, service_request_id=str(report), update_id="fms-1", status="open")
    )
    assert again == reopened
    # On an open report, "open" is a comment.
    comment = posted_id(
        post_update(feed, service_request_id=str(report), description="{{7*7}} {% x %}")
    )
    assert status_of(feed, report) == "reopened"
    with feed.engine.connect() as conn:
        kinds = dict(
            conn.execute(
                text(
                    "SELECT CAST(id AS text), kind || ':' || coalesce(note, '') || ':' || "
                    "coalesce(data ->> 'client_status', '') FROM report_events "
                    "WHERE report_id = :id AND kind IN ('comment', 'status')"
                ),
                {"id": report},
            ).all()
        )
    assert kinds[stale] == "comment:ยังไม่ได้ซ่อม:open"
    assert kinds[fixed] == "comment:ยังไม่ได้ซ่อม:fixed"
    assert kinds[reopened] == "status:ยังไม่ได้ซ่อม:open"
    assert kinds[comment] == "comment:{{7*7}} {% x %}:open"


@pytest.mark.parametrize(
    ("fields", "status", "named"),
    [
        ({"api_key": ""}, 403, "api_key"),
        ({"api_key": "im_not_a_key"}, 403, "API key"),
        ({"jurisdiction_id": "elsewhere.gov"}, 404, "elsewhere.gov"),
        ({"service_request_id": ""}, 400, "service_request_id"),
        ({"service_request_id": "999999"}, 404, "999999"),
        ({"service_request_id": "abc"}, 404, "abc"),
        ({"status": "PENDING"}, 400, "status: unknown status 'PENDING'"),
        ({"status": "{{7*7}}"}, 400, "status"),
        ({"status": "CLOSED", "description": ""}, 400, "description"),
        ({"description": "x" * 4001}, 400, "description"),
        ({"description": "a\x00b"}, 400, "description"),
        ({"updated_datetime": "yesterday"}, 400, "updated_datetime"),
        ({"update_id": "9" * 201}, 400, "update_id"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
        ({"first_name": "x" * 150, "last_name": "y" * 100}, 400, "first_name"),
    ],
)
def test_bad_updates_are_refused_naming_the_field(
    feed: Feed, fields: dict[str, str], status: int, named: str
) -> None:
    report = file_request(feed)
    fields.setdefault("service_request_id", str(report))
    for fmt in ("json", "xml"):
        assert named in spec_error(post_update(feed, fmt, **fields), status, fmt)
    with feed.engine.connect() as conn:
        kinds = conn.execute(
            text("SELECT kind FROM report_events WHERE report_id = :id"), {"id": report}
        ).scalars()
        assert list(kinds) == ["created"]


def test_update_errors_answer_in_the_callers_language(feed: Feed) -> None:
    report = file_request(feed)
    answer = feed.client.post(
        f"{BASE}/servicerequestupdates.xml",
        headers={"Accept-Language": "th"},
        data={"api_key": feed.keys.app, "service_request_id": str(report), "status": "x"},
    )
    described = spec_error(answer, 400, "xml")
    assert described.startswith("status: ") and "unknown status" not in described
    answer = feed.client.post(
        f"{BASE}/servicerequestupdates.json",
        params={"lang": "th"},
        data={"api_key": feed.keys.app, "service_request_id": str(report)},
    )
    described = spec_error(answer, 400)
    assert described.startswith("description: ") and "is required" not in described


def test_a_repeated_media_url_in_an_update_is_accepted_and_the_first_kept(feed: Feed) -> None:
    report = file_request(feed)
    urls = [f"https://fms.example.org/photo/{n}.jpeg" for n in (1, 2, 3)]
    answer = feed.client.post(
        f"{BASE}/servicerequestupdates.json",
        data={"api_key": feed.keys.app, "service_request_id": str(report), "media_url": urls},
    )
    update = posted_id(answer)
    with feed.engine.connect() as conn:
        kept = conn.execute(
            text("SELECT data ->> 'media_url' FROM report_events WHERE id = :id"),
            {"id": int(update)},
        ).scalar_one()
    assert kept == urls[0]
    # Other fields once only, as before.
    answer = feed.client.post(
        f"{BASE}/servicerequestupdates.json",
        data={"api_key": feed.keys.app, "service_request_id": [str(report)] * 2},
    )
    assert spec_error(answer, 400) == "service_request_id: given more than once"


def test_a_multipart_update_with_a_file_answers_in_the_spec_format(feed: Feed) -> None:
    report = file_request(feed)
    form = {"api_key": feed.keys.app, "service_request_id": str(report), "description": "x"}
    for fmt in ("json", "xml"):
        answer = feed.client.post(
            f"{BASE}/servicerequestupdates.{fmt}",
            data=form,
            files={"media": ("pothole.jpg", b"\xff\xd8\xff" + b"x" * 100, "image/jpeg")},
        )
        assert spec_error(answer, 400, fmt) == "media: files are not accepted; send a media_url"
