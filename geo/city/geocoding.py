"""Turn an address a citizen typed into a point: an offline gazetteer, or Nominatim via geopy.

Both geocoders follow the ``Geocoder`` protocol, and ``make_geocoder`` builds the one the
settings name. The default, ``GazetteerGeocoder``, needs no network: it matches the address
against a CSV of named streets, landmarks and places in Thai and English (see
``geo/demo/gazetteer.csv``, documented in ``boundaries/README.md``, and ``load_gazetteer`` for
its columns).

Matching normalises both sides the same way: Unicode NFKC, case folding, Thai digits as
ASCII, punctuation as spaces, no spaces inside Thai text, and common abbreviations spelled
out ("Rd" is "road", "ถ." is "ถนน"). Each name also matches without the word that says what
it is (ถนน, ซอย, ตลาด, วัด, ชุมชน …; road, soi, market, wat …) and, in English, with that
word in front or behind ("Thanon Ratchadamnoen", "Ratchadamnoen Road"). An address matches,
best first:

1. a name exactly;
2. a name without its kind word exactly ("ราชดำเนิน" is ถนนราชดำเนิน);
3. the longest name contained in it, so house numbers and extra words do not matter
   ("12 Ratchadamnoen Road, Nai Mueang" is Ratchadamnoen Road);
4. the longest name without its kind word contained in it.

Ties go to landmarks, then streets, places and wards, then to the name that sorts first, so
the same address always gives the same point.
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, runtime_checkable
from urllib.parse import urlsplit

from geopy.exc import GeopyError
from geopy.geocoders import Nominatim

from geo.errors import InvalidInputError, IssuemapError
from geo.i18n import N_
from geo.settings import GeocoderSettings

KINDS: Final = ("landmark", "street", "place", "ward")
"""Kinds of gazetteer entry, in the order ties between them are settled."""

GAZETTEER_COLUMNS: Final = ("name", "name_th", "alt_names", "kind", "lat", "lon")
"""Columns of a gazetteer CSV; ``name_th`` and ``alt_names`` may be left empty, or out."""

_REQUIRED_COLUMNS: Final = ("name", "kind", "lat", "lon")

MIN_CONTAINED_CHARS: Final = 4
"""Shorter names only match an address exactly, never as a part of it."""

Bounds = tuple[float, float, float, float]
"""A box as (min lon, min lat, max lon, max lat), like ``geo.demo.city.DEMO_BOUNDS``."""


@dataclass(frozen=True, slots=True)
class GeocodeResult:
    """Where an address was found: a point, the name it matched and who found it.

    ``name`` is the gazetteer's Thai name when the address matched Thai text, its English
    name otherwise; from Nominatim it is the place's full display name.
    """

    lat: float
    lon: float
    name: str
    source: str


@runtime_checkable
class Geocoder(Protocol):
    """Anything that finds an address: ``geocode`` returns a point, or None if not found."""

    def geocode(self, address: str) -> GeocodeResult | None:
        """The point ``address`` names, or None when nothing matches."""
        ...


class GeocodingUnavailableError(InvalidInputError):
    """The address service could not be reached; the citizen can retry or send coordinates.

    It is an ``InvalidInputError`` on the field ``address`` so that it reaches the citizen
    as a readable sentence; ``api.errors`` may map it to 503 of its own.
    """

    def __init__(self) -> None:
        super().__init__(
            "address",
            N_("the address service is unavailable, try again or send coordinates"),
        )


class GazetteerError(IssuemapError):
    """A gazetteer file was refused; every problem found is listed with its line."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(
            f"The gazetteer {path} cannot be used:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True, slots=True)
class GazetteerEntry:
    """One named street, landmark, place or ward of a gazetteer, at a point (EPSG:4326)."""

    name: str
    name_th: str
    alt_names: tuple[str, ...]
    kind: str
    lat: float
    lon: float
    line: int = 0
    """Line of the CSV the entry came from (0 when built in code)."""


# --- normalisation -----------------------------------------------------------------------

_THAI = "\u0e00-\u0e7f"
_THAI_RUN_SPACES = re.compile(rf"(?<=[{_THAI}])\s+(?=[{_THAI}])")
_THAI_CHAR = re.compile(rf"[{_THAI}]")
_THAI_DIGITS = str.maketrans("๐๑๒๓๔๕๖๗๘๙", "0123456789")

# English abbreviations, as normalised tokens, and the word they stand for.
_ABBREVIATIONS: Final = {
    "rd": "road",
    "thn": "thanon",
    "mkt": "market",
    "stn": "station",
    "hosp": "hospital",
    "sch": "school",
    "comm": "community",
}

# English words that say what a place is, each with the other words meaning the same.
_ENGLISH_KIND_WORDS: Final = (
    ("road", "thanon"),
    ("soi", "lane"),
    ("market", "talat"),
    ("wat", "temple"),
    ("community", "chumchon"),
)

# Thai words written in front of a name to say what it is, and their abbreviations (as they
# are once normalised: "ถ." becomes "ถ", "รพ." becomes "รพ").
_THAI_PREFIXES: Final = (
    ("ถนน", ("ถ",)),
    ("ซอย", ("ซ",)),
    ("ตลาด", ()),
    ("วัด", ()),
    ("ชุมชน", ()),
    ("หมู่บ้าน", ("มบ",)),
    ("โรงเรียน", ("รร",)),
    ("โรงพยาบาล", ("รพ",)),
)


def normalise(text: str) -> str:
    """``text`` in the form addresses and names are compared in.

    Examples
    --------
    >>> normalise("12/3 Ratchadamnoen Rd.")
    '12 3 ratchadamnoen road'
    >>> normalise("ถ. ราช ดำเนิน")
    'ถราชดำเนิน'
    """
    text = unicodedata.normalize("NFKC", text).casefold().translate(_THAI_DIGITS)
    # Punctuation, symbols and control characters separate words; Thai vowel and tone marks
    # (categories Mn and Mc) are part of them.
    text = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in text)
    text = _THAI_RUN_SPACES.sub("", text)
    return " ".join(_ABBREVIATIONS.get(token, token) for token in text.split())


_NORMAL_THAI_PREFIXES: Final = tuple(
    (normalise(prefix), tuple(normalise(short) for short in shorts))
    for prefix, shorts in _THAI_PREFIXES
)


def _has_thai(text: str) -> bool:
    return _THAI_CHAR.search(text) is not None


def _forms(name: str) -> tuple[set[str], set[str]]:
    """The normalised forms of ``name``: whole, and bare (without its kind word).

    Whole forms have the kind word in each of its spellings, in front of the name and after
    it; Thai kind words also in their abbreviated forms.
    """
    key = normalise(name)
    if not key:
        return set(), set()
    whole, bare = {key}, set()
    tokens = key.split()
    for words in _ENGLISH_KIND_WORDS:
        for edge, rest in ((tokens[0], tokens[1:]), (tokens[-1], tokens[:-1])):
            if edge in words and rest:
                core = " ".join(rest)
                bare.add(core)
                whole.update(f"{word} {core}" for word in words)
                whole.update(f"{core} {word}" for word in words)
    for prefix, abbreviations in _NORMAL_THAI_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            core = key[len(prefix) :].strip()
            bare.add(core)
            whole.update(f"{short}{core}" for short in abbreviations)
    return whole, bare - whole


# --- the gazetteer -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    """One normalised form of one entry's name, ready to look for in an address."""

    text: str
    bare: bool
    entry: GazetteerEntry
    pattern: re.Pattern[str]


def _pattern(key: str) -> re.Pattern[str]:
    """A pattern finding ``key`` in an address.

    At a Latin end the key must end a word; at a Thai end it may touch other letters, since
    Thai is written without spaces between words.
    """
    left = "" if _has_thai(key[0]) else r"(?<!\w)"
    right = "" if _has_thai(key[-1]) else r"(?!\w)"
    return re.compile(left + re.escape(key) + right)


class GazetteerGeocoder:
    """The offline geocoder: finds addresses by the names in a gazetteer."""

    source: Final = "gazetteer"

    def __init__(self, entries: Iterable[GazetteerEntry]) -> None:
        self.entries = tuple(entries)
        unknown = sorted({e.kind for e in self.entries} - set(KINDS))
        if unknown:
            raise ValueError(f"unknown gazetteer kinds {unknown}; expected one of {KINDS}")
        keys: list[_Key] = []
        for entry in self.entries:
            whole: set[str] = set()
            bare: set[str] = set()
            for name in (entry.name, entry.name_th, *entry.alt_names):
                name_whole, name_bare = _forms(name)
                whole |= name_whole
                bare |= name_bare
            for text in sorted(whole):
                keys.append(_Key(text, False, entry, _pattern(text)))
            for text in sorted(bare - whole):
                keys.append(_Key(text, True, entry, _pattern(text)))
        self._keys = tuple(keys)
        self._exact: dict[str, list[_Key]] = {}
        for key in keys:
            self._exact.setdefault(key.text, []).append(key)

    @classmethod
    def from_csv(cls, path: Path) -> GazetteerGeocoder:
        """A geocoder over the gazetteer in ``path`` (see ``load_gazetteer``)."""
        return cls(load_gazetteer(path))

    def geocode(self, address: str) -> GeocodeResult | None:
        """The entry ``address`` names best (see the module's docstring), or None."""
        query = normalise(address)
        if not query:
            return None
        candidates = [(int(k.bare), 0, k) for k in self._exact.get(query, [])]
        if not candidates:
            candidates = [
                (2 + int(k.bare), -len(k.text), k)
                for k in self._keys
                if len(k.text) >= MIN_CONTAINED_CHARS and k.pattern.search(query)
            ]
        if not candidates:
            return None
        _, _, best = min(
            candidates,
            key=lambda c: (c[0], c[1], KINDS.index(c[2].entry.kind), c[2].entry.name, c[2].text),
        )
        entry = best.entry
        name = entry.name_th if _has_thai(best.text) and entry.name_th else entry.name
        return GeocodeResult(lat=entry.lat, lon=entry.lon, name=name, source=self.source)


def load_gazetteer(path: Path) -> list[GazetteerEntry]:
    """Read and check a gazetteer CSV (UTF-8, with a header row).

    Columns: ``name`` (unique, the id field; English in the demo gazetteer), ``name_th``
    (the Thai name), ``alt_names`` (other spellings and abbreviations, separated by ``|``),
    ``kind`` (one of ``KINDS``), ``lat`` and ``lon`` (WGS84 degrees, EPSG:4326). The
    ``name_th`` and ``alt_names`` columns may be empty or absent; other columns are ignored.

    Raises
    ------
    GazetteerError
        Listing every bad row by its line number, or saying why the file cannot be read.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(file)
            header = [column.strip() for column in reader.fieldnames or ()]
            missing = [c for c in _REQUIRED_COLUMNS if c not in header]
            if missing:
                raise GazetteerError(
                    path, [f"line 1: the header lacks the column(s) {', '.join(missing)}"]
                )
            reader.fieldnames = header
            problems: list[str] = []
            entries: list[GazetteerEntry] = []
            seen: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                entry = _entry(row, line, width=len(header), problems=problems)
                if entry is None:
                    continue
                key = normalise(entry.name)
                if key in seen:
                    problems.append(
                        f"line {line}: the name {entry.name!r} is already used on line {seen[key]}"
                    )
                    continue
                seen[key] = line
                entries.append(entry)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise GazetteerError(path, [f"the file cannot be read: {error}"]) from error
    if not entries and not problems:
        problems.append("the file has no entries")
    if problems:
        raise GazetteerError(path, problems)
    return entries


def _entry(
    row: dict[str | None, str | None], line: int, *, width: int, problems: list[str]
) -> GazetteerEntry | None:
    """The entry on one CSV row, or None after adding what is wrong with it to ``problems``."""
    # DictReader files surplus cells under None and fills missing ones with None.
    if None in row or any(value is None for value in row.values()):
        problems.append(f"line {line}: expected {width} columns")
        return None
    cell = {c: (row.get(c) or "").strip() for c in GAZETTEER_COLUMNS}
    found = len(problems)
    if not normalise(cell["name"]):
        problems.append(f"line {line}: the name is empty")
    if cell["kind"] not in KINDS:
        problems.append(f"line {line}: kind {cell['kind']!r} is not one of {', '.join(KINDS)}")
    lat = _degrees(cell["lat"], "lat", 90.0, line, problems)
    lon = _degrees(cell["lon"], "lon", 180.0, line, problems)
    if len(problems) > found or lat is None or lon is None:
        return None
    alt_names = tuple(name.strip() for name in cell["alt_names"].split("|") if name.strip())
    return GazetteerEntry(
        name=cell["name"],
        name_th=cell["name_th"],
        alt_names=alt_names,
        kind=cell["kind"],
        lat=lat,
        lon=lon,
        line=line,
    )


def _degrees(text: str, column: str, limit: float, line: int, problems: list[str]) -> float | None:
    """A latitude or longitude cell as a float, or None after noting the problem."""
    try:
        value = float(text)
    except ValueError:
        problems.append(f"line {line}: {column} {text!r} is not a number")
        return None
    if not math.isfinite(value) or abs(value) > limit:
        problems.append(f"line {line}: {column} {text} is not between -{limit:g} and {limit:g}")
        return None
    return value


# --- Nominatim ---------------------------------------------------------------------------


class NominatimGeocoder:
    """Geocoding by a Nominatim server through geopy (the public one, or a city's own).

    Mind the public server's usage policy (at most one request a second, a real user
    agent); a city with many reports should run its own and set ``nominatim_url``.
    """

    source: Final = "nominatim"

    def __init__(
        self,
        *,
        url: str,
        user_agent: str,
        timeout_s: float,
        viewbox: Bounds | None = None,
        country_codes: Sequence[str] = (),
    ) -> None:
        """Set up the client; nothing is sent until ``geocode`` is called.

        Parameters
        ----------
        url
            Base URL of the Nominatim server, e.g. ``https://nominatim.openstreetmap.org``.
        user_agent, timeout_s
            Sent with, and allowed for, each request.
        viewbox
            Only places inside this box are returned (``bounded=1``).
        country_codes
            Only places in these countries (ISO 3166-1 alpha-2, e.g. ``("th",)``).
        """
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInputError("nominatim_url", N_("{url!r} is not an http(s) URL"), url=url)
        self.viewbox = viewbox
        self.country_codes = tuple(code.lower() for code in country_codes)
        self._geolocator = Nominatim(
            user_agent=user_agent,
            timeout=timeout_s,
            domain=parts.netloc + parts.path.rstrip("/"),
            scheme=parts.scheme,
        )

    def geocode(self, address: str) -> GeocodeResult | None:
        """Ask the server for ``address``; its first answer, or None.

        Raises
        ------
        GeocodingUnavailableError
            When the server cannot be reached, times out, refuses or answers nonsense.
        """
        query = " ".join(address.split())
        if not query:
            return None
        viewbox = None
        if self.viewbox is not None:
            min_lon, min_lat, max_lon, max_lat = self.viewbox
            viewbox = [(min_lat, min_lon), (max_lat, max_lon)]
        try:
            location = self._geolocator.geocode(
                query,
                exactly_one=True,
                viewbox=viewbox,
                bounded=viewbox is not None,
                country_codes=list(self.country_codes) or None,
            )
        except GeopyError as error:
            raise GeocodingUnavailableError() from error
        if location is None:
            return None
        try:
            lat, lon = float(location.latitude), float(location.longitude)
        except (AttributeError, TypeError, ValueError) as error:
            raise GeocodingUnavailableError() from error
        if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
            raise GeocodingUnavailableError()
        return GeocodeResult(lat=lat, lon=lon, name=str(location.address), source=self.source)


def make_geocoder(
    settings: GeocoderSettings,
    *,
    viewbox: Bounds | None = None,
    country_codes: Sequence[str] = (),
) -> Geocoder:
    """The geocoder ``settings.geocoder`` names.

    The gazetteer is read and checked here, so a bad file stops the service at start-up
    rather than at the first report. ``viewbox`` and ``country_codes`` restrict Nominatim
    (the gazetteer holds only the city's own names).
    """
    if settings.geocoder == "nominatim":
        return NominatimGeocoder(
            url=settings.nominatim_url,
            user_agent=settings.nominatim_user_agent,
            timeout_s=settings.nominatim_timeout_s,
            viewbox=viewbox,
            country_codes=country_codes,
        )
    return GazetteerGeocoder.from_csv(settings.gazetteer_path)
