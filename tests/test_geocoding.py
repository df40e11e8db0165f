"""Geocoding: the demo gazetteer, its matching rules, and the Nominatim wrapper (no network)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import geopy.geocoders
import pytest
from geopy.adapters import BaseSyncAdapter
from geopy.exc import GeocoderTimedOut, GeocoderUnavailable
from shapely.geometry import Point

from geo.city.geocoding import (
    KINDS,
    GazetteerEntry,
    GazetteerError,
    GazetteerGeocoder,
    Geocoder,
    GeocodeResult,
    GeocodingUnavailableError,
    NominatimGeocoder,
    load_gazetteer,
    make_geocoder,
    normalise,
)
from geo.demo.city import DEMO_BOUNDS, demo_city_outline
from geo.errors import InvalidInputError
from geo.settings import GeocoderSettings

DEMO_GAZETTEER = GeocoderSettings().gazetteer_path
HEADER = "name,name_th,alt_names,kind,lat,lon\n"


class NoNetwork(BaseSyncAdapter):
    """geopy's HTTP layer for tests: any request fails the test."""

    def get_json(self, url: str, *, timeout: float, headers: dict[str, str]) -> Any:
        raise AssertionError(f"a test tried to reach {url}")

    def get_text(self, url: str, *, timeout: float, headers: dict[str, str]) -> str:
        raise AssertionError(f"a test tried to reach {url}")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geopy.geocoders.options, "default_adapter_factory", NoNetwork)


@pytest.fixture(scope="module")
def entries() -> list[GazetteerEntry]:
    return load_gazetteer(DEMO_GAZETTEER)


@pytest.fixture(scope="module")
def gazetteer(entries: list[GazetteerEntry]) -> GazetteerGeocoder:
    return GazetteerGeocoder(entries)


# --- the demo gazetteer --------------------------------------------------------------------


def test_demo_gazetteer_is_a_fair_size_and_bilingual(entries: list[GazetteerEntry]) -> None:
    assert 40 <= len(entries) <= 80
    assert {e.kind for e in entries} <= set(KINDS)
    assert {"street", "landmark", "place"} <= {e.kind for e in entries}
    assert all(e.name.isascii() and e.name_th and not e.name_th.isascii() for e in entries)


def test_every_demo_gazetteer_point_lies_inside_the_demo_city(
    entries: list[GazetteerEntry],
) -> None:
    outline = demo_city_outline()
    outside = [e.name for e in entries if not outline.contains(Point(e.lon, e.lat))]
    assert outside == []


def test_every_name_in_the_demo_gazetteer_finds_its_own_entry(
    gazetteer: GazetteerGeocoder, entries: list[GazetteerEntry]
) -> None:
    wrong = {}
    for entry in entries:
        for name in (entry.name, entry.name_th, *entry.alt_names):
            found = gazetteer.geocode(name)
            if found is None or (found.lat, found.lon) != (entry.lat, entry.lon):
                wrong[name] = found and found.name
    assert wrong == {}


# --- matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Ratchadamnoen Road", "Ratchadamnoen Road"),
        ("12 Ratchadamnoen Road", "Ratchadamnoen Road"),
        ("12/3 ratchadamnoen rd., Nai Mueang", "Ratchadamnoen Road"),
        ("Thanon Ratchadamnoen", "Ratchadamnoen Road"),
        ("RATCHADAMNOEN", "Ratchadamnoen Road"),
        ("ถนนราชดำเนิน", "ถนนราชดำเนิน"),
        ("ถ.ราชดำเนิน", "ถนนราชดำเนิน"),
        ("  ถนน ราชดำเนิน ", "ถนนราชดำเนิน"),
        ("ราชดำเนิน", "ถนนราชดำเนิน"),
        ("๑๒/๓ ถ.ราชดำเนิน ต.ในเมือง อ.เมือง จ.นครศรีธรรมราช", "ถนนราชดำเนิน"),
        ("ซอย 5 ถนนพัฒนาการคูขวาง", "ถนนพัฒนาการคูขวาง"),
        ("on Soi 12, Pak Nakhon Road", "Pak Nakhon Road"),
        ("Phatthanakan-Khu Khwang Rd", "Phatthanakan Khu Khwang Road"),
        ("ตลาดหัวอิฐ", "ตลาดหัวอิฐ"),
        ("บริเวณตลาดหัวอิฐ", "ตลาดหัวอิฐ"),
        ("Talat Hua It", "Hua It Market"),
        ("hua it mkt", "Hua It Market"),
        ("หัวอิฐ", "หัวอิฐ"),
        ("ชุมชนหัวอิฐ", "หัวอิฐ"),
        ("วัดพระธาตุ", "วัดพระมหาธาตุวรมหาวิหาร"),
        ("Wat Phra Mahathat", "Wat Phra Mahathat Woramahawihan"),
        ("Phra Mahathat temple", "Wat Phra Mahathat Woramahawihan"),
        ("Wat Na Phra That", "Wat Na Phra Borommathat"),
        ("near the railway station", "Nakhon Si Thammarat Railway Station"),
        ("บริเวณหน้าสถานีรถไฟ", "สถานีรถไฟนครศรีธรรมราช"),
        ("near Tha Wang market by the canal", "Tha Wang Market"),
        ("ท่าวัง", "ท่าวัง"),
        ("รพ.มหาราช", "โรงพยาบาลมหาราชนครศรีธรรมราช"),
        ("SANAM NA-MUEANG!", "Sanam Na Mueang"),
    ],
)
def test_addresses_people_write_find_the_place(
    gazetteer: GazetteerGeocoder, address: str, expected: str
) -> None:
    found = gazetteer.geocode(address)
    assert found is not None, address
    assert found.name == expected
    assert found.source == "gazetteer"


@pytest.mark.parametrize(
    "address",
    ["", "   ", "!!!", "road", "ถนน", "Sukhumvit Road, Bangkok", "ถนนสุขุมวิท กรุงเทพ", "Soi 5"],
)
def test_unknown_addresses_find_nothing(gazetteer: GazetteerGeocoder, address: str) -> None:
    assert gazetteer.geocode(address) is None


def test_the_result_is_the_entrys_point(gazetteer: GazetteerGeocoder) -> None:
    assert gazetteer.geocode("12 Ratchadamnoen Road") == GeocodeResult(
        lat=8.4262, lon=99.9652, name="Ratchadamnoen Road", source="gazetteer"
    )


def test_normalise_folds_case_punctuation_thai_spaces_digits_and_abbreviations() -> None:
    assert normalise("12/3  Ratchadamnoen Rd.") == "12 3 ratchadamnoen road"
    assert normalise("ถ. ราช ดำเนิน") == normalise("ถราชดำเนิน")
    assert normalise("๑๒") == "12"
    # Thai vowels and tone marks stay; the precomposed and decomposed SARA AM are one.
    assert normalise("ดำ") == normalise("ด\u0e4d\u0e32")
    assert normalise("ท่าวัง") != normalise("ทาวง")


def entry(name: str, kind: str, *, alt: tuple[str, ...] = (), lat: float = 8.43) -> GazetteerEntry:
    return GazetteerEntry(name=name, name_th="", alt_names=alt, kind=kind, lat=lat, lon=99.96)


def test_exact_beats_contained_and_longest_contained_wins() -> None:
    geocoder = GazetteerGeocoder(
        [
            entry("Khlong Tha", "place", lat=8.41),
            entry("Khlong Tha Market", "landmark", lat=8.42),
            entry("Tha", "place", lat=8.43),
        ]
    )
    assert geocoder.geocode("Khlong Tha") == GeocodeResult(8.41, 99.96, "Khlong Tha", "gazetteer")
    found = geocoder.geocode("behind Khlong Tha Market, soi 2")
    assert found is not None and found.name == "Khlong Tha Market"
    found = geocoder.geocode("beside khlong tha canal")
    assert found is not None and found.name == "Khlong Tha"
    # A name shorter than four characters is only ever matched whole.
    assert geocoder.geocode("Tha") is not None
    assert geocoder.geocode("Tha Sala") is None


def test_ties_are_settled_the_same_way_whatever_the_file_order() -> None:
    rows = [
        entry("Pratu Chai Road", "street", alt=("Pratu Chai",), lat=8.41),
        entry("Pratu Chai", "place", lat=8.42),
        entry("Pratu Chai Gate", "landmark", alt=("Pratu Chai",), lat=8.43),
        entry("Pratu Chai Ward", "ward", alt=("Pratu Chai",), lat=8.44),
    ]
    shuffler = random.Random(7)
    answers = set()
    for _ in range(10):
        shuffler.shuffle(rows)
        found = GazetteerGeocoder(rows).geocode("pratu chai")
        assert found is not None
        answers.add(found.name)
    assert answers == {"Pratu Chai Gate"}  # landmarks first, then streets, places, wards


# --- loading and checking a gazetteer --------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gazetteer.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_loads_with_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeff" + HEADER + "Karom Road,ถนนกะโรม, Karome Road | ,street,8.4178,99.9548\n\n"
        "Hua It,หัวอิฐ,,place,8.4468,99.9588\n",
    )
    first, second = load_gazetteer(path)
    assert first == GazetteerEntry(
        "Karom Road", "ถนนกะโรม", ("Karome Road",), "street", 8.4178, 99.9548, line=2
    )
    assert (second.name, second.alt_names, second.line) == ("Hua It", (), 4)


def test_thai_names_and_alt_names_columns_are_optional(tmp_path: Path) -> None:
    path = write(tmp_path, "name,kind,lat,lon,note\nถนนทดสอบ,street,8.405,100.005,ignored\n")
    [only] = load_gazetteer(path)
    assert (only.name, only.name_th, only.alt_names) == ("ถนนทดสอบ", "", ())
    found = GazetteerGeocoder([only]).geocode("12 ถ.ทดสอบ")
    assert found == GeocodeResult(8.405, 100.005, "ถนนทดสอบ", "gazetteer")


def test_bad_rows_are_refused_naming_each_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "Karom Road,ถนนกะโรม,,street,8.4178,99.9548\n"
        + "Si Prat Road,ถนนศรีปราชญ์,,street,north,99.96\n"
        + "Tha Di Canal,คลองท่าดี,,river,8.42,99.96\n"
        + "Karom  road,,,street,8.41,99.95\n"
        + ",,,place,8.41,99.95\n"
        + "Far Away,,,place,95,200\n"
        + "Short,,place,8.4\n"
        + "Long,,,place,8.4,99.9,extra\n",
    )
    with pytest.raises(GazetteerError) as refused:
        load_gazetteer(path)
    assert refused.value.problems == [
        "line 3: lat 'north' is not a number",
        "line 4: kind 'river' is not one of landmark, street, place, ward",
        "line 5: the name 'Karom  road' is already used on line 2",
        "line 6: the name is empty",
        "line 7: lat 95 is not between -90 and 90",
        "line 7: lon 200 is not between -180 and 180",
        "line 8: expected 6 columns",
        "line 9: expected 6 columns",
    ]
    assert str(path) in str(refused.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name,kind,lat\nX,place,8.4\n", "line 1: the header lacks the column(s) lon"),
        (HEADER, "the file has no entries"),
        ("", "line 1: the header lacks the column(s) name, kind, lat, lon"),
    ],
)
def test_unusable_files_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(GazetteerError) as refused:
        load_gazetteer(write(tmp_path, text))
    assert refused.value.problems[0].startswith(problem)


def test_a_missing_or_binary_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GazetteerError, match="cannot be read"):
        load_gazetteer(tmp_path / "nowhere.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81 not utf-8")
    with pytest.raises(GazetteerError, match="cannot be read"):
        load_gazetteer(binary)


# --- Nominatim, with geopy's HTTP layer replaced ---------------------------------------------


@dataclass
class FakeNominatim:
    """Stands in for the server behind geopy's adapter and records what was asked."""

    answer: Any = field(default_factory=list)
    error: Exception | None = None
    calls: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)

    def adapter(self, *, proxies: Any, ssl_context: Any) -> BaseSyncAdapter:
        server = self

        class Adapter(NoNetwork):
            def get_json(self, url: str, *, timeout: float, headers: dict[str, str]) -> Any:
                server.calls.append((url, timeout, headers))
                if server.error is not None:
                    raise server.error
                return server.answer

        return Adapter(proxies=proxies, ssl_context=ssl_context)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeNominatim:
    fake = FakeNominatim()
    monkeypatch.setattr(geopy.geocoders.options, "default_adapter_factory", fake.adapter)
    return fake


def nominatim(**options: Any) -> NominatimGeocoder:
    settings = GeocoderSettings(
        geocoder="nominatim",
        nominatim_url="https://geo.city.example/nominatim/",
        nominatim_user_agent="issuemap-test",
        nominatim_timeout_s=3.5,
    )
    geocoder = make_geocoder(settings, **options)
    assert isinstance(geocoder, NominatimGeocoder)
    return geocoder


def test_nominatim_asks_the_configured_server_within_the_city(server: FakeNominatim) -> None:
    server.answer = [
        {
            "lat": "8.4335",
            "lon": "99.9630",
            "display_name": "สถานีรถไฟนครศรีธรรมราช, ถนนยมราช, ท่าวัง, นครศรีธรรมราช, 80000, ประเทศไทย",
        }
    ]
    geocoder = nominatim(viewbox=DEMO_BOUNDS, country_codes=("TH",))

    found = geocoder.geocode("  สถานีรถไฟ   นครศรีธรรมราช ")

    assert found == GeocodeResult(
        lat=8.4335,
        lon=99.963,
        name="สถานีรถไฟนครศรีธรรมราช, ถนนยมราช, ท่าวัง, นครศรีธรรมราช, 80000, ประเทศไทย",
        source="nominatim",
    )
    [(url, timeout, headers)] = server.calls
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "geo.city.example",
        "/nominatim/search",
    )
    assert parse_qs(parts.query) == {
        "q": ["สถานีรถไฟ นครศรีธรรมราช"],
        "format": ["json"],
        "limit": ["1"],
        "viewbox": ["99.925,8.383,99.997,8.472"],
        "bounded": ["1"],
        "countrycodes": ["th"],
    }
    assert timeout == 3.5
    assert headers["User-Agent"] == "issuemap-test"


def test_nominatim_without_restrictions_sends_none(server: FakeNominatim) -> None:
    nominatim().geocode("Ratchadamnoen Road")
    [(url, _, _)] = server.calls
    assert set(parse_qs(urlsplit(url).query)) == {"q", "format", "limit"}


def test_nominatim_finding_nothing_is_none(server: FakeNominatim) -> None:
    assert nominatim().geocode("nowhere at all") is None
    assert nominatim().geocode("   ") is None
    assert len(server.calls) == 1  # a blank address is never sent


@pytest.mark.parametrize(
    "error", [GeocoderUnavailable("connection refused"), GeocoderTimedOut("timed out")]
)
def test_nominatim_failures_become_a_readable_domain_error(
    server: FakeNominatim, error: Exception
) -> None:
    server.error = error
    with pytest.raises(GeocodingUnavailableError) as refused:
        nominatim().geocode("Ratchadamnoen Road")
    assert isinstance(refused.value, InvalidInputError)
    assert refused.value.field == "address"
    assert str(refused.value) == (
        "address: the address service is unavailable, try again or send coordinates"
    )
    assert refused.value.__cause__ is error


def test_nominatim_geolocator_can_be_stubbed_with_a_location(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geopy.location import Location

    geocoder = nominatim()
    asked: dict[str, Any] = {}

    def geocode(query: str, **options: Any) -> Location:
        asked.update(options, query=query)
        return Location("Wat Phra Mahathat", (8.4116, 99.9668), {})

    monkeypatch.setattr(geocoder._geolocator, "geocode", geocode)
    assert geocoder.geocode("Wat Phra That") == GeocodeResult(
        8.4116, 99.9668, "Wat Phra Mahathat", "nominatim"
    )
    assert asked["query"] == "Wat Phra That"
    assert asked["exactly_one"] is True


def test_nominatim_needs_an_http_url() -> None:
    with pytest.raises(InvalidInputError, match="nominatim_url"):
        NominatimGeocoder(url="nominatim.openstreetmap.org", user_agent="x", timeout_s=1)


# --- the factory ---------------------------------------------------------------------------


def test_the_default_geocoder_is_the_offline_demo_gazetteer() -> None:
    geocoder = make_geocoder(GeocoderSettings())
    assert isinstance(geocoder, GazetteerGeocoder)
    assert isinstance(geocoder, Geocoder)
    found = geocoder.geocode("ตลาดหัวอิฐ")
    assert found is not None and found.source == "gazetteer"


def test_a_bad_gazetteer_stops_the_factory(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "X,,,street,abc,99.9\n")
    with pytest.raises(GazetteerError, match="line 2"):
        make_geocoder(GeocoderSettings(gazetteer_path=path))


def test_entries_of_an_unknown_kind_are_refused() -> None:
    with pytest.raises(ValueError, match="river"):
        GazetteerGeocoder([entry("Tha Di Canal", "river")])
