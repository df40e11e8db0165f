"""The chat conversation core, driven directly against a real PostGIS with the tiny city.

Nothing here knows LINE: the core is handed ``Incoming`` values and answers ``Reply``
values, as any chat platform's adapter would use it.
"""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import Engine, text

from geo.access.policy import ANONYMOUS, DEFAULT_PUBLIC_ROUNDING_M, Principal
from geo.chat import conversation as core
from geo.chat.context import ChatContext
from geo.chat.conversation import handle
from geo.chat.messages import (
    Button,
    ChannelLimits,
    Incoming,
    Pressed,
    Reply,
    SentPhoto,
    SentText,
    SharedLocation,
)
from geo.city.geocoding import GazetteerGeocoder
from geo.i18n import translate
from geo.maps.resident import render_status_page, when
from geo.open311 import get_request
from geo.reports.intake import Submission, submit_report, visible_duplicates
from geo.reports.search import get_report
from geo.reports.tracking import track_report
from geo.reports.workflow import change_status
from geo.settings import ChatSettings, IntakeSettings, RoutingSettings
from geo.vocabulary import DESCRIPTION_MAX
from tests.fixtures import TinyCity, load_tiny_city
from tests.test_intake import jpeg_with_gps

ALICE = "U" + "a" * 32
BOB = "U" + "b" * 32
INSIDE = (8.405, 100.011)  # ward W-B, zone Z1: road goes to T1
NEAR = (8.4052, 100.011)  # about 22 m north: within the duplicate radius
OUTSIDE = (8.5, 100.5)
T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
ADMIN = Principal(role="admin", key_id=1, name="admin")
PUBLIC_URL = "https://city.example"


def context(**overrides: Any) -> ChatContext:
    values: dict[str, Any] = {
        "routing": RoutingSettings(),
        "intake": IntakeSettings(),
        "chat": ChatSettings(idle_minutes=30),
        "geocoder": GazetteerGeocoder([]),
        "public_url": PUBLIC_URL,
        "public_rounding_m": DEFAULT_PUBLIC_ROUNDING_M,
        "limits": ChannelLimits(),
    }
    return ChatContext(**(values | overrides))


def th(message: str, **values: object) -> str:
    thai = translate("th", message, **values)
    assert thai != message.format(**values) if values else thai != message, message
    return thai


def en(message: str, **values: object) -> str:
    return translate("en", message, **values)


class Chat:
    """One resident chatting: each ``say`` is one message, handled and committed."""

    def __init__(
        self,
        engine: Engine,
        user: str = ALICE,
        *,
        language: str | None = "th",
        ctx: ChatContext | None = None,
    ) -> None:
        self.engine = engine
        self.user = user
        self.language = language
        self.asked = 0
        self.ctx = ctx or context()
        self.now = T0

    def _language(self) -> str | None:
        self.asked += 1
        return self.language

    def say(self, incoming: Incoming, *, after: timedelta = timedelta(seconds=10)) -> list[Reply]:
        self.now += after
        with self.engine.begin() as conn:
            replies = handle(
                conn,
                channel="line",
                user_id=self.user,
                incoming=incoming,
                context=self.ctx,
                language=self._language,
                now=self.now,
            )
        limits = self.ctx.limits
        assert 1 <= len(replies) <= limits.max_messages
        for reply in replies:
            assert len(reply.buttons) <= limits.max_buttons
            assert all(len(b.label) <= limits.label_max for b in reply.buttons)
            assert all((b.press is None) != (b.asks is None) for b in reply.buttons)
            assert len(reply.text) <= limits.text_max
        return replies

    def state(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            found = conn.execute(
                text("SELECT state FROM chat_conversations WHERE user_id = :u"), {"u": self.user}
            ).scalar_one_or_none()
        return dict(found or {})

    def uploads(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM chat_uploads WHERE user_id = :u"), {"u": self.user}
                ).scalar_one()
            )


def texts(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)


def buttons(replies: list[Reply]) -> list[Button]:
    return [b for r in replies for b in r.buttons]


def presses(replies: list[Reply]) -> list[Pressed]:
    return [b.press for b in buttons(replies) if b.press is not None]


def asks(replies: list[Reply]) -> set[str]:
    return {b.asks for b in buttons(replies) if b.asks}


def reports(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT r.id, r.token, r.status, r.source, r.language, r.description, "
                    "r.ward_id, r.zone_id, r.team_id, r.due_at, r.created_at, r.supporters, "
                    "r.location_source, r.duplicate_of, r.reporter_name, r.reporter_contact, "
                    "ST_Y(r.geom) AS lat, ST_X(r.geom) AS lon, rc.user_id AS chat_user, "
                    "(SELECT count(*) FROM report_photos AS p WHERE p.report_id = r.id) "
                    "AS photos FROM reports AS r "
                    "LEFT JOIN report_chats AS rc ON rc.report_id = r.id ORDER BY r.id"
                )
            )
        )


@pytest.fixture
def city(engine: Engine) -> TinyCity:
    with engine.begin() as conn:
        return load_tiny_city(conn)


def web_report(engine: Engine, lat_lon: tuple[float, float], *, category: str = "road") -> int:
    with engine.begin() as conn:
        result = submit_report(
            conn,
            Submission(category=category, description="หลุม", lat=lat_lon[0], lon=lat_lon[1]),
            principal=ANONYMOUS,
            routing=RoutingSettings(),
            intake=IntakeSettings(),
            geocoder=GazetteerGeocoder([]),
            now=T0,
        )
    return result.report.id


def route_as_http(engine: Engine, lat_lon: tuple[float, float], category: str, at: datetime) -> Any:
    """Where HTTP intake would send the same report at the same time (then rolled back)."""
    with engine.connect() as conn:
        result = submit_report(
            conn,
            Submission(category=category, description="x", lat=lat_lon[0], lon=lat_lon[1]),
            principal=ANONYMOUS,
            routing=RoutingSettings(),
            intake=IntakeSettings(),
            geocoder=GazetteerGeocoder([]),
            now=at,
        )
        conn.rollback()
    return result.report


# --- whole conversations -----------------------------------------------------------------


def test_location_first_in_thai_to_a_report_routed_like_any_other(
    engine: Engine, city: TinyCity
) -> None:
    chat = Chat(engine)
    replies = chat.say(Pressed("start"))
    assert th(core.GREETING) in texts(replies)
    assert "location" in asks(replies)  # the platform's location picker is offered

    replies = chat.say(SharedLocation(*INSIDE, address="ถนนราชดำเนิน"))
    assert th(core.LOCATION_NOTED) in texts(replies)
    assert th(core.ASK_CATEGORY) in texts(replies)
    labels = [b.label for b in buttons(replies)]
    assert {"ถนน", "น้ำท่วม", "ต้นไม้"} <= set(labels)
    assert Pressed("category", "road") in presses(replies)

    replies = chat.say(Pressed("category", "road"))
    assert th(core.CATEGORY_NOTED, name="ถนน") in texts(replies)
    assert th(core.ASK_DETAILS) in texts(replies)
    assert {"camera", "camera_roll"} <= asks(replies)

    replies = chat.say(SentText("หลุมลึกหน้าบ้านเลขที่ 5"))
    summary = texts(replies)
    assert "ถนน" in summary and "หลุมลึกหน้าบ้านเลขที่ 5" in summary
    assert "ถนนราชดำเนิน" in summary and "T1" in summary
    assert presses(replies)[:2] == [Pressed("confirm"), Pressed("cancel")]
    assert reports(engine) == []  # nothing is stored before the resident confirms

    replies = chat.say(Pressed("confirm"))
    [report] = reports(engine)
    http = route_as_http(engine, INSIDE, "road", chat.now)
    assert (report.ward_id, report.zone_id, report.team_id, report.due_at) == (
        http.ward_id,
        http.zone_id,
        http.team_id,
        http.due_at,
    )
    assert report.team_id == city.teams["T1"] and report.ward_id == city.wards["W-B"]
    assert (report.source, report.language, report.status) == ("line", "th", "open")
    assert report.description == "หลุมลึกหน้าบ้านเลขที่ 5"
    assert (report.lat, report.lon, report.location_source) == (*INSIDE, "coordinates")
    assert report.chat_user == ALICE
    assert report.reporter_name is None and report.reporter_contact is None
    answer = texts(replies)
    assert answer == th(
        core.SENT,
        id=report.id,
        team="T1",
        due=when(report.due_at, "th", zone=chat.ctx.zone),
        url=f"{PUBLIC_URL}/r/{report.token}",
    )
    assert chat.state()["lat"] is None and chat.uploads() == 0

    # The conversation is over: another confirm stores nothing more.
    replies = chat.say(Pressed("confirm"))
    assert th(core.NOT_OFFERED) in texts(replies)
    assert len(reports(engine)) == 1
    assert chat.asked == 1  # the platform was asked the language once


def test_a_photo_with_its_gps_position_first(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine)
    replies = chat.say(SentPhoto(jpeg_with_gps(*INSIDE), declared_type="image/jpeg"))
    assert th(core.PHOTO_PLACE) in texts(replies)
    assert th(core.ASK_CATEGORY) in texts(replies)
    assert chat.uploads() == 1
    # The photo is the description enough: the summary follows the category.
    replies = chat.say(Pressed("category", "road"))
    assert th(core.LABEL_SEND) in [b.label for b in buttons(replies)]
    assert "1" in texts(replies)
    chat.say(Pressed("confirm"))
    [report] = reports(engine)
    assert report.location_source == "photo_exif"
    assert report.photos == 1 and report.description == ""
    assert abs(report.lat - INSIDE[0]) < 1e-4 and abs(report.lon - INSIDE[1]) < 1e-4
    with engine.connect() as conn:
        public = conn.execute(
            text("SELECT public_bytes FROM report_photos WHERE report_id = :id"), {"id": report.id}
        ).scalar_one()
    with Image.open(io.BytesIO(public)) as image:
        assert not image.getexif()  # the public copy carries no GPS position, no camera
    assert chat.uploads() == 0


def test_text_first_then_location_then_category(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine)
    replies = chat.say(SentText("ไฟถนนดับทั้งซอย"))
    assert th(core.GREETING) in texts(replies)
    assert th(core.ASK_LOCATION) in texts(replies)
    assert "location" in asks(replies)
    replies = chat.say(SentText("มืดมากตอนกลางคืน"))
    assert th(core.GREETING) not in texts(replies)
    replies = chat.say(SharedLocation(*INSIDE))
    assert th(core.ASK_CATEGORY) in texts(replies)
    replies = chat.say(Pressed("category", "flood"))
    assert "ไฟถนนดับทั้งซอย\nมืดมากตอนกลางคืน" in texts(replies)
    assert "DRAIN" in texts(replies)
    chat.say(Pressed("confirm"))
    [report] = reports(engine)
    assert report.team_id == city.teams["DRAIN"]
    assert report.description == "ไฟถนนดับทั้งซอย\nมืดมากตอนกลางคืน"


def test_an_english_speaker_hears_english(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine, language="en")
    replies = chat.say(SentText("Broken street light"))
    assert en(core.GREETING) in texts(replies)
    replies = chat.say(SharedLocation(*INSIDE))
    assert "Roads" in [b.label for b in buttons(replies)]
    chat.say(Pressed("category", "road"))
    replies = chat.say(Pressed("confirm"))
    [report] = reports(engine)
    assert report.language == "en"
    assert texts(replies).startswith("Thank you! Your report no.")
    assert chat.asked == 1


def test_no_language_from_the_platform_is_thai(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine, language=None)
    assert th(core.GREETING) in texts(chat.say(Pressed("start")))
    chat.language = "en"
    # The language is kept with the conversation; the platform is not asked again.
    assert th(core.ASK_LOCATION) in texts(chat.say(SentText("สวัสดี")))
    assert chat.asked == 1


def test_a_place_outside_the_city_is_not_kept(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine)
    replies = chat.say(SharedLocation(*OUTSIDE))
    said = texts(replies)
    assert th(core.OTHER_LOCATION) in said
    assert "นอกพื้นที่" in said or "นอกเขต" in said  # a plain Thai sentence
    assert "location" in asks(replies)
    assert chat.state()["lat"] is None
    # A photo taken outside is kept as a photo, but its place is not used.
    replies = chat.say(SentPhoto(jpeg_with_gps(*OUTSIDE)))
    assert th(core.PHOTO_PLACE_OUTSIDE) in texts(replies)
    assert chat.state()["lat"] is None and chat.uploads() == 1
    assert "location" in asks(replies)
    chat.say(SharedLocation(*INSIDE))
    chat.say(Pressed("category", "road"))
    chat.say(Pressed("confirm"))
    [report] = reports(engine)
    # The shared place, not the first photo's, even though intake would look there first.
    assert (report.lat, report.lon) == INSIDE and report.location_source == "coordinates"


def test_cancel_forgets_everything(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine)
    chat.say(SentPhoto(jpeg_with_gps(*INSIDE)))
    chat.say(SentText("ต้นไม้ล้ม"))
    replies = chat.say(Pressed("cancel"))
    assert texts(replies) == th(core.CANCELLED)
    assert chat.uploads() == 0 and chat.state()["description"] == ""
    replies = chat.say(Pressed("category", "tree"))
    assert th(core.ASK_LOCATION) in texts(replies)
    assert reports(engine) == []


def test_an_idle_conversation_starts_over(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine)
    chat.say(SharedLocation(*INSIDE))
    chat.say(SentPhoto(jpeg_with_gps(*INSIDE)))
    replies = chat.say(Pressed("category", "road"), after=timedelta(minutes=29))
    assert th(core.LABEL_SEND) in [b.label for b in buttons(replies)]
    replies = chat.say(Pressed("confirm"), after=timedelta(minutes=31))
    assert th(core.EXPIRED) in texts(replies)
    assert th(core.ASK_LOCATION) in texts(replies)
    assert chat.uploads() == 0 and reports(engine) == []
    # Photos alone are a report started, too.
    chat.say(SentPhoto(jpeg_with_gps(*OUTSIDE)))
    replies = chat.say(SentText("รูปนี้"), after=timedelta(hours=2))
    assert th(core.EXPIRED) in texts(replies) and chat.uploads() == 0


def test_a_second_worker_carries_the_conversation_on(engine: Engine, city: TinyCity) -> None:
    # Every message may be handled by another process: nothing is kept between calls
    # but the database, so two Chat objects over one user are one conversation.
    first, second = Chat(engine), Chat(engine)
    first.say(SharedLocation(*INSIDE))
    second.now = first.now
    second.say(Pressed("category", "road"))
    first.now = second.now
    replies = first.say(SentText("ฝาท่อหาย"))
    assert "ฝาท่อหาย" in texts(replies) and "ถนน" in texts(replies)


# --- likely duplicates -------------------------------------------------------------------


def test_a_likely_duplicate_is_offered_for_support(engine: Engine, city: TinyCity) -> None:
    original = web_report(engine, INSIDE)
    chat = Chat(engine)
    chat.say(SharedLocation(*NEAR))
    chat.say(Pressed("category", "road"))
    replies = chat.say(SentText("หลุมใหญ่"))
    assert th(core.DUPLICATES) in texts(replies)
    assert f"{original}" in texts(replies)
    assert Pressed("support", str(original)) in presses(replies)
    assert Pressed("new_report") in presses(replies)
    # The distance is told as the public sees the other report: never its exact place.
    [public] = visible_duplicates(
        ({"id": original, "lat": INSIDE[0], "lon": INSIDE[1], "distance_m": 22.0},),
        lat=NEAR[0],
        lon=NEAR[1],
        grid_m=DEFAULT_PUBLIC_ROUNDING_M,
    )
    assert f"{public['distance_m']:,.0f}" != "22"
    assert th(
        core.DUPLICATE_LINE,
        id=original,
        distance=f"{public['distance_m']:,.0f}",
        when=when(T0, "th"),
        count=0,
    ) in texts(replies)
    assert len(reports(engine)) == 1  # looking for duplicates stored nothing

    replies = chat.say(Pressed("support", str(original)))
    rows = {r.id: r for r in reports(engine)}
    assert rows[original].supporters == 1
    [mine] = [r for r in rows.values() if r.id != original]
    assert (mine.status, mine.duplicate_of, mine.chat_user) == ("duplicate", original, ALICE)
    assert texts(replies) == th(
        core.SUPPORTED, id=original, count=1, url=f"{PUBLIC_URL}/r/{rows[original].token}"
    )
    assert chat.state()["lat"] is None


def test_a_resident_may_send_a_new_report_anyway(engine: Engine, city: TinyCity) -> None:
    original = web_report(engine, INSIDE)
    chat = Chat(engine)
    chat.say(SharedLocation(*NEAR))
    chat.say(SentText("อีกหลุมหนึ่ง"))
    replies = chat.say(Pressed("category", "road"))
    assert Pressed("support", str(original)) in presses(replies)
    replies = chat.say(Pressed("new_report"))
    assert Pressed("confirm") in presses(replies)
    chat.say(Pressed("confirm"))
    rows = reports(engine)
    assert len(rows) == 2 and rows[1].status == "open" and rows[0].supporters == 0
    # Looking up duplicates and the team for the summary stored nothing, not even an id:
    # report numbers residents see run on without gaps.
    assert rows[1].id == rows[0].id + 1


def test_support_for_a_report_not_offered_or_no_longer_open_changes_nothing(
    engine: Engine, city: TinyCity
) -> None:
    original = web_report(engine, INSIDE)
    far = web_report(engine, (8.409, 100.019))
    other_category = web_report(engine, INSIDE, category="flood")
    chat = Chat(engine)
    chat.say(SharedLocation(*NEAR))
    chat.say(Pressed("category", "road"))
    replies = chat.say(SentText("หลุม"))
    assert Pressed("support", str(far)) not in presses(replies)
    for forged in (str(far), str(other_category), "999999", "abc", "-1", "", "1e3"):
        replies = chat.say(Pressed("support", forged))
        assert th(core.NOT_OFFERED) in texts(replies)
        assert Pressed("support", str(original)) in presses(replies)
    # Staff close the original while the resident reads: the support is refused politely.
    with engine.begin() as conn:
        change_status(conn, original, "resolved", principal=ADMIN)
    replies = chat.say(Pressed("support", str(original)))
    assert th(core.NOT_SENT, problem="").rstrip() in texts(replies)
    assert Pressed("confirm") in presses(replies)  # nothing else nearby: the summary
    rows = {r.id: r for r in reports(engine)}
    assert len(rows) == 3 and all(r.supporters == 0 for r in rows.values())


# --- categories --------------------------------------------------------------------------


def test_every_category_is_reachable_when_there_are_more_than_buttons(
    engine: Engine, city: TinyCity
) -> None:
    with engine.begin() as conn:
        for i in range(25):
            conn.execute(
                text(
                    "INSERT INTO categories (code, name_th, name_en, sla_hours) "
                    "VALUES (:c, :th, :en, 48)"
                ),
                {"c": f"extra{i:02}", "th": f"หมวดพิเศษที่ {i:02}", "en": f"Extra {i:02}"},
            )
        conn.execute(text("UPDATE categories SET active = false WHERE code = 'extra24'"))
    chat = Chat(engine)
    replies = chat.say(SharedLocation(*INSIDE))
    seen: set[str] = set()
    pages = 0
    while True:
        pages += 1
        assert len(buttons(replies)) <= 13
        codes = [p.value for p in presses(replies) if p.action == "category"]
        assert codes and not seen & set(codes)
        seen |= set(codes)
        [more] = [p for p in presses(replies) if p.action == "group"]
        if more.value == "0":
            break
        replies = chat.say(more)
    assert seen == {"road", "flood", "tree"} | {f"extra{i:02}" for i in range(24)}
    assert pages == 3
    # A forged page number shows the first page.
    assert (
        presses(chat.say(Pressed("group", "99")))[0] == presses(chat.say(Pressed("group", "0")))[0]
    )
    chat.say(Pressed("category", "extra17"))
    assert chat.state()["category"] == "extra17"
    # An inactive or unknown category is not taken.
    for code in ("extra24", "nope", "'; DROP TABLE reports; --", "{{7*7}}"):
        replies = chat.say(Pressed("category", code))
        assert th(core.ASK_CATEGORY_AGAIN) in texts(replies)
        assert chat.state()["category"] == "extra17"


def test_few_buttons_still_reach_every_category(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine, ctx=context(limits=ChannelLimits(max_buttons=3)))
    replies = chat.say(SharedLocation(*INSIDE))
    seen: set[str] = set()
    for _ in range(5):
        seen |= {p.value for p in presses(replies) if p.action == "category"}
        [more] = [p for p in presses(replies) if p.action == "group"]
        replies = chat.say(more)
    assert seen == {"road", "flood", "tree"}


# --- attacks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "words", ["{{7*7}}", "{% for x in y %}{{x}}{% endfor %}", "<img src=x onerror=alert(1)>", "{0}"]
)
def test_template_and_html_looking_text_is_kept_as_typed(
    engine: Engine, city: TinyCity, words: str
) -> None:
    chat = Chat(engine)
    chat.say(SharedLocation(*INSIDE))
    chat.say(Pressed("category", "road"))
    replies = chat.say(SentText(words))
    assert words in texts(replies) and "49" not in texts(replies)
    chat.say(Pressed("confirm"))
    [report] = reports(engine)
    assert report.description == words


def test_nul_and_huge_text_are_refused_and_the_conversation_goes_on(
    engine: Engine, city: TinyCity
) -> None:
    chat = Chat(engine)
    chat.say(SentText("ท่อแตก"))
    replies = chat.say(SentText("bad\x00byte"))
    assert th(core.DESCRIPTION_REFUSED, problem=th("must not contain NUL characters")) in texts(
        replies
    )
    replies = chat.say(SentText("ก" * (DESCRIPTION_MAX + 1)))
    assert th(
        core.DESCRIPTION_REFUSED,
        problem=th("must be at most {limit:,} characters", limit=DESCRIPTION_MAX),
    ) in texts(replies)
    assert chat.state()["description"] == "ท่อแตก"
    # Whitespace alone adds nothing.
    chat.say(SentText("   \n\t"))
    assert chat.state()["description"] == "ท่อแตก"


def test_a_bad_photo_is_named_and_the_conversation_goes_on(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine)
    chat.say(SharedLocation(*INSIDE))
    for data, declared in ((b"not an image at all", None), (b"", "image/jpeg")):
        replies = chat.say(SentPhoto(data, declared_type=declared))
        assert texts(replies).startswith(th(core.PHOTO_REFUSED, problem="").split(":")[0])
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="GIF")
    replies = chat.say(SentPhoto(out.getvalue()))
    assert "GIF" in texts(replies)
    assert chat.uploads() == 0 and chat.state()["lat"] == INSIDE[0]


def test_photos_stop_at_the_intake_limit(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine, ctx=context(intake=IntakeSettings(photos_per_report=2)))
    for _ in range(2):
        chat.say(SentPhoto(jpeg_with_gps(*INSIDE)))
    replies = chat.say(SentPhoto(jpeg_with_gps(*INSIDE)))
    assert th(core.PHOTOS_FULL, limit=2) in texts(replies)
    assert chat.uploads() == 2
    replies = chat.say(Pressed("category", "road"))
    assert not asks(replies) & {"camera", "camera_roll"}
    chat.say(Pressed("confirm"))
    assert reports(engine)[0].photos == 2


def test_presses_out_of_place_are_answered_politely(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine)
    for press in (
        Pressed("confirm"),
        Pressed("new_report"),
        Pressed("support", "1"),
        Pressed("rate", "x"),
        Pressed("rate", "1:9"),
        Pressed("rate", ":5"),
        Pressed("group", "-1"),
        Pressed("made_up", "{{7*7}}"),
    ):
        replies = chat.say(press)
        assert replies and "49" not in texts(replies)
    assert reports(engine) == []


# --- rating, my reports ------------------------------------------------------------------


def file_by_chat(engine: Engine, user: str, words: str = "หลุม") -> int:
    chat = Chat(engine, user)
    chat.say(SharedLocation(*INSIDE))
    chat.say(Pressed("category", "tree"))
    chat.say(SentText(words))
    replies = chat.say(Pressed("confirm"))
    if Pressed("new_report") in presses(replies):
        chat.say(Pressed("new_report"))
        chat.say(Pressed("confirm"))
    return int(reports(engine)[-1].id)


def test_a_resident_rates_their_fixed_report_and_only_theirs(
    engine: Engine, city: TinyCity
) -> None:
    mine = file_by_chat(engine, ALICE)
    alice, bob = Chat(engine, ALICE), Chat(engine, BOB)
    replies = alice.say(Pressed("rate", f"{mine}:5"))
    assert th(core.NOT_RATED, problem="").rstrip() in texts(replies)
    with engine.begin() as conn:
        change_status(conn, mine, "resolved", principal=ADMIN)
    replies = bob.say(Pressed("rate", f"{mine}:1"))
    assert th("You have no report {id}.", id=mine) in texts(replies)
    replies = alice.say(Pressed("rate", f"{mine}:4"))
    assert texts(replies) == th(core.RATED, id=mine, stars="★★★★")
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT rating FROM reports WHERE id = :id"), {"id": mine}
            ).scalar_one()
            == 4
        )


def test_my_reports_lists_only_the_users_open_reports(engine: Engine, city: TinyCity) -> None:
    mine = file_by_chat(engine, ALICE, "ของอลิซ")
    theirs = file_by_chat(engine, BOB, "ของบ็อบ")
    web = web_report(engine, (8.401, 100.001))
    alice = Chat(engine, ALICE)
    for ask in (SentText("รายงานของฉัน"), SentText("  My Reports "), Pressed("my_reports")):
        said = texts(alice.say(ask))
        assert th(core.MY_REPORTS) in said
        tokens = {r.id: r.token for r in reports(engine)}
        assert f"#{mine}" in said and f"{PUBLIC_URL}/r/{tokens[mine]}" in said
        assert f"#{theirs}" not in said and tokens[theirs] not in said
        assert f"#{web}" not in said
        assert "ต้นไม้" in said and th("Open") in said
    assert th(core.NO_REPORTS) in texts(Chat(engine, "U" + "c" * 32).say(Pressed("my_reports")))


def test_the_chat_user_id_is_never_public(engine: Engine, city: TinyCity) -> None:
    report_id = file_by_chat(engine, ALICE)
    [row] = reports(engine)
    with engine.connect() as conn:
        tracked = track_report(
            conn,
            row.token,
            public_rounding_m=DEFAULT_PUBLIC_ROUNDING_M,
            duplicate_radius_m=50,
            duplicate_window_days=14,
        )
        outputs = [
            json.dumps(get_report(conn, report_id, ANONYMOUS), default=str),
            json.dumps(get_request(conn, str(report_id), base_url=PUBLIC_URL), default=str),
            repr(tracked),
            render_status_page(tracked, lang="th", nonce="n", zone=context().zone),
            json.dumps(
                {
                    k: v
                    for k, v in conn.execute(
                        text("SELECT * FROM reports WHERE id = :id"), {"id": report_id}
                    )
                    .mappings()
                    .one()
                    .items()
                    if k != "geom"
                },
                default=str,
            ),
        ]
    for output in outputs:
        assert ALICE not in output and ALICE.lower() not in output.lower()


def test_many_users_keep_their_own_conversations(engine: Engine, city: TinyCity) -> None:
    alice, bob = Chat(engine, ALICE), Chat(engine, BOB, language="en")
    alice.say(SharedLocation(*INSIDE))
    bob.say(SentText("Flooded road"))
    alice.say(Pressed("category", "road"))
    replies = bob.say(SharedLocation(*INSIDE))
    assert "Roads" in [b.label for b in buttons(replies)]  # Bob has no category yet
    assert alice.state()["category"] == "road" and bob.state()["category"] is None


def test_two_workers_on_one_conversation_lose_nothing(engine: Engine, city: TinyCity) -> None:
    # Two processes handling one user's messages at once (each its own connection): the
    # conversation row is locked while a message is handled, so no message is lost.
    ctx = context()
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        try:
            start.wait()
            for i in range(5):
                with engine.begin() as conn:
                    handle(
                        conn,
                        channel="line",
                        user_id=ALICE,
                        incoming=SentText(f"{name}{i}"),
                        context=ctx,
                        language=lambda: "th",
                        now=T0,
                    )
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    lines = Chat(engine).state()["description"].split("\n")
    assert sorted(lines) == sorted(f"{n}{i}" for n in "ab" for i in range(5))
    assert [x for x in lines if x.startswith("a")] == [f"a{i}" for i in range(5)]


@pytest.mark.parametrize(
    "lat_lon", [(float("nan"), 100.0), (8.4, float("inf")), (999.0, 100.0), (8.4, -181.0)]
)
def test_an_impossible_location_is_refused(
    engine: Engine, city: TinyCity, lat_lon: tuple[float, float]
) -> None:
    chat = Chat(engine)
    replies = chat.say(SharedLocation(*lat_lon, address="{{7*7}}\x00"))
    assert th(core.OTHER_LOCATION) in texts(replies) and "location" in asks(replies)
    assert chat.state()["lat"] is None and chat.state()["address"] is None


def test_a_shared_address_is_kept_as_plain_text(engine: Engine, city: TinyCity) -> None:
    chat = Chat(engine)
    chat.say(SharedLocation(*INSIDE, address="<b>{{7*7}}</b>\x00 ซอย 5" + "x" * 1000))
    chat.say(Pressed("category", "road"))
    replies = chat.say(SentText("หลุม"))
    assert "<b>{{7*7}}</b> ซอย 5" in texts(replies)
    chat.say(Pressed("confirm"))
    with engine.connect() as conn:
        address = conn.execute(text("SELECT address FROM reports")).scalar_one()
    assert address.startswith("<b>{{7*7}}</b> ซอย 5") and len(address) == 500
