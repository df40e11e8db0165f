"""Open311 GeoReport v2 over HTTP, checked against JSON Schemas written from the spec."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from sqlalchemy import Engine, text

from api.app import AppSettings, create_app
from api.deps import replace_app_state
from geo.access.keys import create_api_key, revoke_api_key
from geo.access.policy import DEFAULT_PUBLIC_ROUNDING_M, snap_point
from geo.city.geocoding import GeocodeResult
from geo.reports.store import store_photo
from geo.settings import DatabaseSettings
from tests.fixtures import TinyCity, load_tiny_city

SCHEMAS = Path(__file__).parent / "schemas" / "open311"
BASE = "/open311/v2"
REQUEST_FIELDS = (
    "service_request_id",
    "status",
    "service_name",
    "service_code",
    "description",
    "requested_datetime",
    "updated_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
)


@dataclass(frozen=True)
class Open311:
    client: TestClient
    city: TinyCity
    key: str  # a public-role key: any valid key may post
    planner_key: str
    revoked_key: str


class StubGeocoder:
    """Finds one address, so address_string can be tested without a gazetteer file."""

    def geocode(self, address: str) -> GeocodeResult | None:
        if "ตลาดทดสอบ" in address:
            return GeocodeResult(lat=8.405, lon=100.015, name="ตลาดทดสอบ", source="stub")
        return None


@pytest.fixture
def o311(db_url: str, engine: Engine) -> Iterator[Open311]:
    with engine.begin() as conn:
        city = load_tiny_city(conn)
        key = create_api_key(conn, name="city app", role="public").secret
        planner = create_api_key(conn, name="planner", role="planner").secret
        old = create_api_key(conn, name="old app", role="public")
        revoke_api_key(conn, old.id)
    app = create_app(AppSettings(database=DatabaseSettings(database_url=db_url)))
    with TestClient(app) as client:
        replace_app_state(app, geocoder=StubGeocoder())
        yield Open311(client, city, key, planner, old.secret)


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def valid_json(answer: httpx.Response, schema: str, status: int = 200) -> Any:
    """The body of a JSON answer, after checking its status, type and schema."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    body = json.loads(answer.content.decode("utf-8"))
    errors = sorted(validator(schema).iter_errors(body), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    return body


def valid_xml(answer: httpx.Response, root: str, status: int = 200) -> ET.Element:
    """The root of an XML answer: well-formed UTF-8 with the declaration and ``root``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "text/xml; charset=utf-8"
    assert answer.content.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    element = ET.fromstring(answer.content)
    assert element.tag == root
    return element


def spec_error(answer: httpx.Response, status: int, fmt: str = "json") -> str:
    """The description of a spec-format error answer, checking its code too."""
    if fmt == "xml":
        root = valid_xml(answer, "errors", status)
        errors = root.findall("error")
        assert len(errors) == 1
        assert errors[0].findtext("code") == str(status)
        description = errors[0].findtext("description")
        assert description
        return description
    body = valid_json(answer, "errors", status)
    assert body[0]["code"] == status
    return str(body[0]["description"])


def post(o311: Open311, fmt: str = "json", **fields: str) -> httpx.Response:
    form = {
        "api_key": o311.key,
        "service_code": "road",
        "lat": "8.405",
        "long": "100.011",
        "description": "หลุมบนถนน",
    }
    form |= fields
    return o311.client.post(f"{BASE}/requests.{fmt}", data={k: v for k, v in form.items() if v})


def created_id(o311: Open311, **fields: str) -> int:
    return int(valid_json(post(o311, **fields), "post_response")[0]["service_request_id"])


def requests_json(o311: Open311, **params: str) -> list[dict[str, Any]]:
    body = valid_json(o311.client.get(f"{BASE}/requests.json", params=params), "requests")
    assert isinstance(body, list)
    return body


def ids(records: list[dict[str, Any]]) -> set[int]:
    return {int(r["service_request_id"]) for r in records}


# --- discovery and services --------------------------------------------------------------


def test_discovery_names_the_georeport_v2_endpoint_in_both_formats(o311: Open311) -> None:
    body = valid_json(o311.client.get(f"{BASE}/discovery.json"), "discovery")
    (endpoint,) = body["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == "http://testserver/open311/v2"
    assert endpoint["type"] == "production"
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}

    root = valid_xml(o311.client.get(f"{BASE}/discovery.xml"), "discovery")
    for name in ("changeset", "contact", "key_service"):
        assert root.findtext(name)
    endpoint_xml = root.find("endpoints/endpoint")
    assert endpoint_xml is not None
    assert endpoint_xml.findtext("specification") == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint_xml.findtext("url") == endpoint["url"]
    assert endpoint_xml.findtext("type") == "production"
    assert {f.text for f in endpoint_xml.findall("formats/format")} == set(endpoint["formats"])


def test_services_are_our_categories_with_english_names_and_thai_descriptions(
    o311: Open311,
) -> None:
    body = valid_json(o311.client.get(f"{BASE}/services.json"), "services")
    assert [s["service_code"] for s in body] == ["flood", "road", "tree"]
    road = body[1]
    assert road["service_name"] == "Roads"
    assert road["description"] == "ถนน"
    assert road["metadata"] is False
    assert road["type"] == "realtime"
    assert "ถนน" in road["keywords"] and "Roads" in road["keywords"]

    root = valid_xml(o311.client.get(f"{BASE}/services.xml"), "services")
    services = root.findall("service")
    assert [s.findtext("service_code") for s in services] == ["flood", "road", "tree"]
    for service in services:
        for name in ("service_code", "service_name", "metadata", "type", "keywords", "group"):
            assert service.find(name) is not None, name
        assert service.findtext("metadata") == "false"
        assert service.findtext("type") == "realtime"
    assert services[1].findtext("description") == "ถนน"


def test_service_definition_has_no_attributes_and_unknown_code_is_404(o311: Open311) -> None:
    body = valid_json(o311.client.get(f"{BASE}/services/road.json"), "service_definition")
    assert body == {"service_code": "road", "attributes": []}
    root = valid_xml(o311.client.get(f"{BASE}/services/road.xml"), "service_definition")
    assert root.findtext("service_code") == "road"
    attributes = root.find("attributes")
    assert attributes is not None and list(attributes) == []

    for fmt in ("json", "xml"):
        answer = o311.client.get(f"{BASE}/services/potholes.{fmt}")
        assert "potholes" in spec_error(answer, 404, fmt)


# --- POST Service Request ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_posting_needs_a_valid_unrevoked_api_key(o311: Open311, engine: Engine, fmt: str) -> None:
    for key in ("", "xyz", "im_not_a_real_key", o311.revoked_key):
        answer = post(o311, fmt, api_key=key)
        description = spec_error(answer, 403, fmt)
        assert "api_key" in description or "API key" in description
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reports")).scalar_one() == 0


def test_post_creates_a_routed_report_through_intake(o311: Open311, engine: Engine) -> None:
    answer = post(
        o311,
        first_name="Somchai",
        last_name="Jaidee",
        email="somchai@example.org",
        phone="081-234-5678",
        media_url="https://photos.example.org/pothole.jpg",
        device_id="device-1",
        account_id="acct-9",
        **{"attribute[WHATEVER]": "ignored"},
    )
    (record,) = valid_json(answer, "post_response")
    assert "T1" in record["service_notice"]
    assert record["account_id"] is None
    report_id = int(record["service_request_id"])
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT source, reporter_name, reporter_contact, media_url, t.code AS team "
                "FROM reports JOIN teams AS t ON t.id = team_id WHERE reports.id = :id"
            ),
            {"id": report_id},
        ).one()
    assert row.source == "open311"
    assert row.reporter_name == "Somchai Jaidee"
    assert "somchai@example.org" in row.reporter_contact and "081-234-5678" in row.reporter_contact
    assert row.media_url == "https://photos.example.org/pothole.jpg"
    assert row.team == "T1"

    (one,) = valid_json(o311.client.get(f"{BASE}/requests/{report_id}.json"), "requests")
    assert one["service_request_id"] == str(report_id)
    assert one["status"] == "open"
    assert one["service_code"] == "road" and one["service_name"] == "Roads"
    assert one["agency_responsible"] == "T1"
    assert (one["lat"], one["long"]) == snap_point(8.405, 100.011, DEFAULT_PUBLIC_ROUNDING_M)
    assert one["media_url"] == "https://photos.example.org/pothole.jpg"
    requested = datetime.fromisoformat(one["requested_datetime"])
    assert datetime.fromisoformat(one["expected_datetime"]) - requested == timedelta(hours=48)


def test_any_valid_key_may_post(o311: Open311) -> None:
    valid_json(post(o311, api_key=o311.planner_key), "post_response")
    answer = o311.client.post(
        f"{BASE}/requests.json",
        params={"api_key": o311.key},
        data={"service_code": "road", "lat": "8.405", "long": "100.011", "description": "x"},
    )
    valid_json(answer, "post_response")


def test_post_answers_in_xml_too(o311: Open311) -> None:
    root = valid_xml(post(o311, "xml"), "service_requests")
    (request,) = root.findall("request")
    assert (request.findtext("service_request_id") or "").isdigit()
    assert "T1" in (request.findtext("service_notice") or "")
    account = request.find("account_id")
    assert account is not None and account.text is None


TEAM_TH = "ทีมถนน {{7*7}} <img src=x onerror=alert(1)>"
TEAM_EN = "Road crew {% if 1 %}x{% endif %} <b>"


def test_team_name_and_notice_follow_the_callers_language(o311: Open311, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE teams SET name_th = :th, name_en = :en WHERE code = 'T1'"),
            {"th": TEAM_TH, "en": TEAM_EN},
        )
    # An Open311 client that names no language gets English, as the spec's clients expect.
    (posted,) = valid_json(post(o311), "post_response")
    assert posted["service_notice"].startswith(f"It has been sent to {TEAM_EN} and is due")
    report_id = posted["service_request_id"]
    (thai,) = valid_json(
        o311.client.post(
            f"{BASE}/requests.json",
            headers={"Accept-Language": "th-TH,th;q=0.9"},
            data={
                "api_key": o311.key,
                "service_code": "road",
                "lat": "8.405",
                "long": "100.011",
                "description": "x",
            },
        ),
        "post_response",
    )
    assert thai["service_notice"].startswith(f"ส่งเรื่องให้ {TEAM_TH} แล้ว")
    due = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", thai["service_notice"])
    assert due, "the due time keeps the spec's W3C form in Thai too"

    english = o311.client.get(f"{BASE}/requests/{report_id}.json")
    (one,) = valid_json(english, "requests")
    assert one["agency_responsible"] == TEAM_EN
    assert TEAM_EN in one["service_notice"]
    for asked in ({"params": {"lang": "th"}}, {"headers": {"Accept-Language": "th"}}):
        (one,) = valid_json(
            o311.client.get(f"{BASE}/requests/{report_id}.json", **asked), "requests"
        )
        assert one["agency_responsible"] == TEAM_TH
        assert one["service_notice"].startswith(f"ส่งเรื่องให้ {TEAM_TH} แล้ว")
        assert one["expected_datetime"] in one["service_notice"]
        listed = valid_json(o311.client.get(f"{BASE}/requests.json", **asked), "requests")
        assert {r["agency_responsible"] for r in listed} == {TEAM_TH}
    # The same text in XML: escaped by the document, field names unchanged.
    root = valid_xml(
        o311.client.get(f"{BASE}/requests.xml", params={"lang": "th"}), "service_requests"
    )
    assert {r.findtext("agency_responsible") for r in root.findall("request")} == {TEAM_TH}
    assert "<img" not in o311.client.get(f"{BASE}/requests.xml", params={"lang": "th"}).text
    # A language we do not speak falls back to English; the spec's fields stay as they are.
    (other,) = valid_json(
        o311.client.get(f"{BASE}/requests/{report_id}.json", params={"lang": "fr"}), "requests"
    )
    assert other["agency_responsible"] == TEAM_EN
    assert set(REQUEST_FIELDS) <= set(other)


def test_a_team_without_names_in_either_language_keeps_its_name(o311: Open311) -> None:
    (posted,) = valid_json(
        o311.client.post(
            f"{BASE}/requests.json",
            params={"lang": "th"},
            data={
                "api_key": o311.key,
                "service_code": "road",
                "lat": "8.405",
                "long": "100.011",
                "description": "x",
            },
        ),
        "post_response",
    )
    assert posted["service_notice"].startswith("ส่งเรื่องให้ T1 แล้ว")
    (one,) = requests_json(o311, service_request_id=posted["service_request_id"], lang="th")
    assert one["agency_responsible"] == "T1"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_the_token_of_a_posted_request_opens_its_status_page(o311: Open311, fmt: str) -> None:
    answer = post(o311, fmt, first_name="Somchai", email="somchai@example.org")
    if fmt == "json":
        (record,) = valid_json(answer, "post_response")
        token, report_id = record["token"], record["service_request_id"]
    else:
        (request,) = valid_xml(answer, "service_requests").findall("request")
        token, report_id = request.findtext("token"), request.findtext("service_request_id")
    assert token and re.fullmatch(r"[A-Za-z0-9_-]{24}", token) and token != report_id
    page = o311.client.get(f"/r/{token}?lang=en")
    assert page.status_code == 200 and f"<dd>{report_id}</dd>" in page.text
    assert "Somchai" not in page.text and "somchai@" not in page.text


def test_a_token_names_its_request_until_staff_hide_it(o311: Open311) -> None:
    (posted,) = valid_json(post(o311), "post_response")
    token, report_id = posted["token"], posted["service_request_id"]
    (found,) = valid_json(o311.client.get(f"{BASE}/tokens/{token}.json"), "tokens")
    assert found == {"service_request_id": report_id, "token": token}
    root = valid_xml(o311.client.get(f"{BASE}/tokens/{token}.xml"), "service_requests")
    (request,) = root.findall("request")
    assert request.findtext("service_request_id") == report_id
    assert request.findtext("token") == token

    hidden = o311.client.post(
        f"/api/reports/{report_id}/hide",
        headers={"X-API-Key": o311.planner_key},
        json={"reason": "x"},
    )
    assert hidden.status_code == 200, hidden.text
    for unknown in (token, "A" * 24, "short", "{{7*7}}", "x" * 64):
        for fmt in ("json", "xml"):
            spec_error(o311.client.get(f"{BASE}/tokens/{unknown}.{fmt}"), 404, fmt)
    assert "token" in spec_error(o311.client.get(f"{BASE}/tokens/{'x' * 65}.json"), 400)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_place_outside_the_city_is_a_400_with_the_plain_sentence(o311: Open311, fmt: str) -> None:
    description = spec_error(post(o311, fmt, lat="8.6", long="100.015"), 400, fmt)
    assert description.startswith("The location (8.600000, 100.015000) is outside the area")


@pytest.mark.parametrize(
    ("fields", "status", "named"),
    [
        ({"service_code": ""}, 400, "service_code"),
        ({"service_code": "potholes"}, 404, "potholes"),
        ({"long": ""}, 400, "long"),
        ({"lat": "north"}, 400, "lat"),
        ({"lat": "91"}, 400, "lat"),
        ({"long": "nan"}, 400, "long"),
        ({"lat": "", "long": "", "address_id": "545483"}, 400, "address_id"),
        ({"lat": "", "long": ""}, 400, "address_string"),
        ({"description": ""}, 400, "description"),
        ({"description": "x" * 4001}, 400, "description"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
        ({"jurisdiction_id": "elsewhere.gov"}, 404, "elsewhere.gov"),
    ],
)
def test_bad_posts_are_refused_naming_the_field(
    o311: Open311, engine: Engine, fields: dict[str, str], status: int, named: str
) -> None:
    assert named in spec_error(post(o311, **fields), status)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reports")).scalar_one() == 0


def test_address_string_is_geocoded(o311: Open311) -> None:
    report_id = created_id(o311, lat="", long="", address_string="หน้าตลาดทดสอบ")
    (one,) = requests_json(o311, service_request_id=str(report_id))
    assert (one["lat"], one["long"]) == snap_point(8.405, 100.015, DEFAULT_PUBLIC_ROUNDING_M)
    assert one["address"] == "หน้าตลาดทดสอบ"
    missing = spec_error(post(o311, lat="", long="", address_string="Nowhere Lane"), 400)
    assert missing.startswith("address: we could not find")


def test_a_repeated_media_url_is_accepted_and_the_first_kept(o311: Open311) -> None:
    urls = [f"https://fms.example.org/photo/{n}.jpeg" for n in (1, 2, 3)]
    form = {
        "api_key": o311.key,
        "service_code": "road",
        "lat": "8.405",
        "long": "100.011",
        "description": "x",
        "media_url": urls,
    }
    (posted,) = valid_json(o311.client.post(f"{BASE}/requests.json", data=form), "post_response")
    (one,) = requests_json(o311, service_request_id=posted["service_request_id"])
    assert one["media_url"] == urls[0]
    form |= {"description": ["x", "y"]}
    answer = o311.client.post(f"{BASE}/requests.json", data=form)
    assert spec_error(answer, 400) == "description: given more than once"


def test_a_multipart_post_with_a_file_answers_in_the_spec_format(o311: Open311) -> None:
    form = {"api_key": o311.key, "service_code": "road", "description": "x"}
    for fmt in ("json", "xml"):
        answer = o311.client.post(
            f"{BASE}/requests.{fmt}",
            data=form,
            files={"media": ("pothole.jpg", b"\xff\xd8\xff" + b"x" * 100, "image/jpeg")},
        )
        assert spec_error(answer, 400, fmt) == "media: files are not accepted; send a media_url"
        thai = o311.client.post(
            f"{BASE}/requests.{fmt}",
            params={"lang": "th"},
            data=form,
            files={"media": ("pothole.jpg", b"x" * 70_000, "image/jpeg")},
        )
        assert spec_error(thai, 400, fmt) == "body: คำขอมีขนาดเกิน 64 KB กรุณาส่งรูปเป็น media_url แทน"


def test_post_must_be_form_encoded(o311: Open311) -> None:
    answer = o311.client.post(
        f"{BASE}/requests.json", params={"api_key": o311.key}, json={"service_code": "road"}
    )
    assert "Content-Type" in spec_error(answer, 400)


def test_thai_description_round_trips_in_json_and_xml(o311: Open311) -> None:
    thai = "น้ำท่วมขังหน้าซอย ๑๒ รถสัญจรไม่ได้ 🚗 — สูง ๓๐ ซม. & <ลึก>"
    report_id = created_id(o311, description=thai)
    (one,) = valid_json(o311.client.get(f"{BASE}/requests/{report_id}.json"), "requests")
    assert one["description"] == thai
    root = valid_xml(o311.client.get(f"{BASE}/requests/{report_id}.xml"), "service_requests")
    assert root.findtext("request/description") == thai


def test_xml_stays_well_formed_with_control_characters(o311: Open311) -> None:
    report_id = created_id(o311, description="line one\x0bline\x1btwo")
    root = valid_xml(o311.client.get(f"{BASE}/requests/{report_id}.xml"), "service_requests")
    assert root.findtext("request/description") == "line one\ufffdline\ufffdtwo"


# --- reading service requests ------------------------------------------------------------


def test_reporter_details_never_appear_in_any_get(o311: Open311) -> None:
    secrets = {
        "first_name": "Wichai",
        "last_name": "Saengthong",
        "email": "wichai.private@example.org",
        "phone": "089-765-4321",
    }
    report_id = created_id(o311, **secrets)
    paths = [
        f"requests.{{fmt}}?service_request_id={report_id}",
        "requests.{fmt}",
        f"requests/{report_id}.{{fmt}}",
        "services.{fmt}",
        "services/road.{fmt}",
        "discovery.{fmt}",
    ]
    for path in paths:
        for fmt in ("json", "xml"):
            answer = o311.client.get(f"{BASE}/{path.format(fmt=fmt)}")
            assert answer.status_code == 200, answer.text
            raw = answer.content.decode("utf-8")
            for value in secrets.values():
                assert value not in raw, (path, fmt, value)
    # Staff still see who reported it through the native API.
    staff = o311.client.get(f"/api/reports/{report_id}", headers={"X-API-Key": o311.planner_key})
    assert staff.json()["reporter_name"] == "Wichai Saengthong"


def test_every_request_in_xml_has_the_required_elements(o311: Open311) -> None:
    created_id(o311)
    created_id(o311, service_code="flood", lat="8.405", long="100.015")
    root = valid_xml(o311.client.get(f"{BASE}/requests.xml"), "service_requests")
    requests = root.findall("request")
    assert len(requests) == 2
    for request in requests:
        for name in REQUEST_FIELDS:
            assert request.find(name) is not None, name
        assert request.findtext("status") in {"open", "closed"}


@pytest.fixture
def worked(o311: Open311, engine: Engine) -> dict[str, int]:
    """Reports in several of our statuses: name -> id."""
    made = {
        "open": created_id(o311),
        "acknowledged": created_id(o311),
        "resolved": created_id(o311),
        "rejected": created_id(o311),
        "flood": created_id(o311, service_code="flood", lat="8.405", long="100.015"),
        "tree": created_id(o311, service_code="tree", lat="8.405", long="100.015"),
    }
    # Plain SQL, as geo.reports.workflow records it, so these tests do not depend on its rules.
    moves = [
        ("acknowledged", "open", "acknowledged", "ผู้แจ้งโทร 081-555-0199", None),
        ("resolved", "open", "in_progress", None, "กำลังซ่อม"),
        ("resolved", "in_progress", "resolved", "ใช้ยางมะตอย 2 ถุง", "ซ่อมเสร็จแล้ว"),
        ("rejected", "open", "rejected", None, None),
    ]
    with engine.begin() as conn:
        for step, (name, before, after, note, public) in enumerate(moves, start=1):
            values = {
                "id": made[name],
                "before": before,
                "after": after,
                "note": note,
                "public": public,
            }
            conn.execute(
                text("UPDATE reports SET status = :after, updated_at = now() WHERE id = :id"),
                values,
            )
            conn.execute(
                text(
                    "INSERT INTO report_events (report_id, at, kind, actor, from_status, "
                    "to_status, note, public_note) VALUES (:id, now() + make_interval(secs "
                    "=> :step), 'status', 'admin:tester', :before, :after, :note, :public)"
                ),
                values | {"step": step},
            )
        # Internal bookkeeping notes are not status notes.
        conn.execute(
            text(
                "INSERT INTO report_events (report_id, at, kind, actor, note) VALUES "
                "(:id, now() + interval '1 hour', 'rerouted', 'cli', 'moved by boundary import')"
            ),
            {"id": made["resolved"]},
        )
    return made


def test_status_filter_folds_our_statuses_into_open_and_closed(
    o311: Open311, worked: dict[str, int]
) -> None:
    open_ids = {worked[k] for k in ("open", "acknowledged", "flood", "tree")}
    closed_ids = {worked["resolved"], worked["rejected"]}
    assert ids(requests_json(o311, status="open")) == open_ids
    assert ids(requests_json(o311, status="closed")) == closed_ids
    assert ids(requests_json(o311, status="open,closed")) == open_ids | closed_ids
    assert ids(requests_json(o311)) == open_ids | closed_ids
    by_id = {int(r["service_request_id"]): r for r in requests_json(o311)}
    assert by_id[worked["acknowledged"]]["status"] == "open"
    assert by_id[worked["rejected"]]["status"] == "closed"
    assert "pending" in spec_error(
        o311.client.get(f"{BASE}/requests.json", params={"status": "pending"}), 400
    )
    assert spec_error(
        o311.client.get(f"{BASE}/requests.json", params={"status": "open,pending"}), 400
    ).startswith("status:")


def test_status_notes_is_the_latest_public_note(o311: Open311, worked: dict[str, int]) -> None:
    by_id = {int(r["service_request_id"]): r for r in requests_json(o311)}
    resolved = by_id[worked["resolved"]]
    assert resolved["status_notes"] == "ซ่อมเสร็จแล้ว"
    assert resolved["service_notice"] is None
    assert by_id[worked["open"]]["status_notes"] is None
    # Staff's own notes never appear, not even when no public note was written.
    assert by_id[worked["acknowledged"]]["status_notes"] is None
    assert "0199" not in o311.client.get(f"{BASE}/requests.xml").text
    root = valid_xml(
        o311.client.get(f"{BASE}/requests/{worked['resolved']}.xml"), "service_requests"
    )
    assert root.findtext("request/status_notes") == "ซ่อมเสร็จแล้ว"
    assert root.findtext("request/status") == "closed"


def test_service_code_filter_takes_a_comma_separated_list(
    o311: Open311, worked: dict[str, int]
) -> None:
    assert ids(requests_json(o311, service_code="flood")) == {worked["flood"]}
    assert ids(requests_json(o311, service_code="flood,tree")) == {worked["flood"], worked["tree"]}
    assert requests_json(o311, service_code="potholes") == []
    answer = o311.client.get(
        f"{BASE}/requests.json", params=[("service_code", "flood"), ("service_code", "tree")]
    )
    assert ids(valid_json(answer, "requests")) == {worked["flood"], worked["tree"]}


def test_service_request_ids_override_every_other_filter(
    o311: Open311, worked: dict[str, int]
) -> None:
    wanted = f"{worked['open']},{worked['resolved']}"
    found = requests_json(
        o311,
        service_request_id=wanted,
        status="closed",
        service_code="tree",
        start_date="2001-01-01T00:00:00Z",
        end_date="2001-02-01T00:00:00Z",
    )
    assert ids(found) == {worked["open"], worked["resolved"]}
    assert "service_request_id" in spec_error(
        o311.client.get(f"{BASE}/requests.json", params={"service_request_id": "1,abc"}), 400
    )
    huge = {"service_request_id": "9" * 5000}
    assert "service_request_id" in spec_error(
        o311.client.get(f"{BASE}/requests.json", params=huge), 400
    )


def test_dates_default_to_the_last_90_days_and_bound_the_search(
    o311: Open311, engine: Engine
) -> None:
    recent = created_id(o311)
    old = created_id(o311)
    long_ago = datetime.now(UTC) - timedelta(days=120)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reports SET created_at = :at, updated_at = :at WHERE id = :id"),
            {"at": long_ago, "id": old},
        )
    assert ids(requests_json(o311)) == {recent}

    day = timedelta(days=1)
    w3c = "%Y-%m-%dT%H:%M:%SZ"
    around_old = {
        "start_date": (long_ago - day).strftime(w3c),
        "end_date": (long_ago + day).strftime(w3c),
    }
    assert ids(requests_json(o311, **around_old)) == {old}
    # Only a start: 90 days from it, which reaches the old report but not the recent one.
    assert ids(requests_json(o311, start_date=around_old["start_date"])) == {old}
    # Only an end: the 90 days before it.
    assert ids(requests_json(o311, end_date=around_old["end_date"])) == {old}
    assert ids(requests_json(o311, end_date=datetime.now(UTC).strftime("%Y-%m-%d"))) == set()
    # W3C forms with offsets and fractions are understood.
    bangkok = timezone(timedelta(hours=7))
    offset = (long_ago - day).astimezone(bangkok).strftime("%Y-%m-%dT%H:%M:%S.123456+07:00")
    assert ids(requests_json(o311, start_date=offset, end_date=around_old["end_date"])) == {old}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"start_date": "2024-01-01T00:00:00Z", "end_date": "2024-04-01T00:00:01Z"}, "90 days"),
        ({"start_date": "2024-02-01T00:00:00Z", "end_date": "2024-01-01T00:00:00Z"}, "end_date"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"start_date": "2024-02-30T00:00:00Z"}, "start_date"),
        ({"start_date": "2024-01-01T10:00:00"}, "start_date"),  # a time needs its zone
        ({"end_date": "2024-01-01 10:00:00Z"}, "end_date"),
        ({"start_date": "2" * 100}, "start_date"),
    ],
)
def test_bad_date_windows_are_400s_naming_the_parameter(
    o311: Open311, params: dict[str, str], named: str
) -> None:
    for fmt in ("json", "xml"):
        answer = o311.client.get(f"{BASE}/requests.{fmt}", params=params)
        assert named in spec_error(answer, 400, fmt)


def test_dates_at_the_ends_of_the_calendar_do_not_break(o311: Open311) -> None:
    assert requests_json(o311, start_date="9999-12-01T00:00:00Z") == []
    assert requests_json(o311, end_date="0001-01-02T00:00:00Z") == []


def test_unknown_request_is_404_in_both_formats(o311: Open311) -> None:
    for path in ("requests/999999", "requests/abc", "requests/0"):
        for fmt in ("json", "xml"):
            spec_error(o311.client.get(f"{BASE}/{path}.{fmt}"), 404, fmt)


def test_media_url_falls_back_to_our_first_public_photo(o311: Open311, engine: Engine) -> None:
    report_id = created_id(o311)
    with engine.begin() as conn:
        photo_id = store_photo(
            conn,
            report_id=report_id,
            content_type="image/jpeg",
            width=1,
            height=1,
            sha256="0" * 64,
            public_bytes=b"public",
            original_bytes=b"original",
        )
    (one,) = requests_json(o311, service_request_id=str(report_id))
    assert one["media_url"] == f"http://testserver/api/photos/{photo_id}"
    assert o311.client.get(one["media_url"]).content == b"public"


def test_jurisdiction_id_may_be_ours_or_absent(o311: Open311) -> None:
    valid_json(
        o311.client.get(f"{BASE}/services.json", params={"jurisdiction_id": "issuemap.demo"}),
        "services",
    )
    answer = o311.client.get(f"{BASE}/requests.xml", params={"jurisdiction_id": "sfgov.org"})
    assert "sfgov.org" in spec_error(answer, 404, "xml")


# --- errors in the spec's format ---------------------------------------------------------


def test_framework_errors_on_open311_paths_take_the_spec_format(o311: Open311) -> None:
    assert "format" in spec_error(o311.client.get(f"{BASE}/services.csv"), 400)
    spec_error(o311.client.get(f"{BASE}/no-such-thing.json"), 404)
    spec_error(o311.client.get(f"{BASE}/no-such-thing.xml"), 404, "xml")
    spec_error(o311.client.get(f"{BASE}/services/road/extra.xml"), 404, "xml")


def test_native_api_errors_keep_their_own_format(o311: Open311) -> None:
    answer = o311.client.get("/api/reports/999999")
    assert answer.status_code == 404
    assert answer.json()["error"] == "NotFoundError"
