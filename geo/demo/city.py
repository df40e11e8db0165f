"""The generated demo city: wards, field-team zones, categories and reports.

The city lies around the real centre of Nakhon Si Thammarat, but every line and report in it
is invented. It is labelled as such wherever it is stored: both boundary imports carry
``is_demo = true`` and the source ``"demo city (generated)"``, and every report carries
``is_demo = true`` and the source ``"demo"``.

``generate_demo_city`` is a pure function of a seed and a clock time, so a demo, a test and a
benchmark can rebuild exactly the same city. ``load_demo_city`` writes it to an empty
database in one transaction; the reports go through ``geo.reports.store.insert_reports``, so they
are routed and audited exactly like any other batch.

The city is built in a local plane of metres east and north of ``DEMO_CENTRE`` and turned
into longitude and latitude at the end; over 10 km the plane is accurate to a few metres.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final, TypeVar

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, Engine, text

from geo.db.engine import analyze_routing_tables
from geo.errors import DatabaseNotEmptyError, InvalidInputError
from geo.reports.store import insert_reports
from geo.settings import RoutingSettings
from geo.vocabulary import OPEN_STATUSES

FloatArray = npt.NDArray[np.float64]
_G = TypeVar("_G", bound=BaseGeometry)

DEMO_CENTRE: Final = (99.96, 8.43)
"""Longitude and latitude of the demo city's centre (the old town of Nakhon Si Thammarat)."""

DEMO_BOUNDS: Final = (99.925, 8.383, 99.997, 8.472)
"""A box (min lon, min lat, max lon, max lat) that holds the whole demo city."""

DEMO_BOUNDARY_SOURCE: Final = "demo city (generated)"
"""``boundary_imports.source`` of the demo wards and zones."""

DEMO_REPORT_SOURCE: Final = "demo"
"""``reports.source`` of the demo reports."""

DEMO_DAYS: Final = 60
"""The demo reports were created during this many days before ``now``."""

WARD_COUNT: Final = 36
REPORT_COUNT: Final = 3_000

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(DEMO_CENTRE[1]))
_HALF_WIDTH_M = 3_900.0  # the outline is about 8 km east to west
_HALF_HEIGHT_M = 4_800.0  # and about 10 km north to south, like the real city
_LOCAL_UTC_OFFSET_H = 7  # Indochina Time: people report by day in local time

# Names of the kind found in Mueang Nakhon Si Thammarat (some real tambon and community
# names, some made up); the areas drawn for them are invented.
_WARD_NAMES: Final = (
    ("หัวอิฐ", "Hua It"),
    ("ท่าวัง", "Tha Wang"),
    ("ท่าช้าง", "Tha Chang"),
    ("ประตูชัย", "Pratu Chai"),
    ("ศาลามีชัย", "Sala Mi Chai"),
    ("บ่อนนก", "Bon Nok"),
    ("ท่าโพธิ์", "Tha Pho"),
    ("ป่าขอม", "Pa Khom"),
    ("นาวง", "Na Wong"),
    ("ท่าดี", "Tha Di"),
    ("คลองป่าเหล้า", "Khlong Pa Lao"),
    ("หน้าวัดพระธาตุ", "Na Wat Phra That"),
    ("ไชยมนตรี", "Chai Montri"),
    ("ท่าม้า", "Tha Ma"),
    ("บ้านตก", "Ban Tok"),
    ("ตลาดยาว", "Talat Yao"),
    ("สะพานยาว", "Saphan Yao"),
    ("ท่าแพ", "Tha Phae"),
    ("มะขามชุม", "Makham Chum"),
    ("สวนหลวง", "Suan Luang"),
    ("โพธิ์เสด็จ", "Pho Sadet"),
    ("ท่าชี", "Tha Chi"),
    ("หน้าเมือง", "Na Mueang"),
    ("ประตูลอด", "Pratu Lot"),
    ("หลังสถานี", "Lang Sathani"),
    ("คูขวาง", "Khu Khwang"),
    ("ทุ่งจีน", "Thung Chin"),
    ("ศรีธรรมโศก", "Si Thammasok"),
    ("ราชดำเนิน", "Ratchadamnoen"),
    ("ท่าใหม่", "Tha Mai"),
    ("บางจาก", "Bang Chak"),
    ("นาเคียน", "Na Khian"),
    ("ป่าโล่ง", "Pa Long"),
    ("คลองท่า", "Khlong Tha"),
    ("มุมป้อม", "Mum Pom"),
    ("ท่าซัก", "Tha Sak"),
)

# Zone code, owning team code, English and Thai name, and the compass angle (degrees,
# counter-clockwise from east) the sector faces; the old town is a core, not a sector.
_ZONES: Final = (
    ("Z-OLD", "field-oldtown", "Old town", "เมืองเก่า", None),
    ("Z-SW", "field-southwest", "South-west", "ตะวันตกเฉียงใต้", -126.0),
    ("Z-SE", "field-southeast", "South-east", "ตะวันออกเฉียงใต้", -54.0),
    ("Z-E", "field-east", "East", "ตะวันออก", 18.0),
    ("Z-N", "field-north", "North", "เหนือ", 90.0),
    ("Z-W", "field-west", "West", "ตะวันตก", 162.0),
)

# Teams with no zone of their own, reached only through category routes.
_SPECIALIST_TEAMS: Final = (
    ("drainage", "หน่วยระบายน้ำและป้องกันน้ำท่วม", "Drainage and flood unit"),
    ("electrical", "หน่วยไฟฟ้าและไฟส่องสว่าง", "Street lighting and electrical unit"),
    ("trees", "หน่วยดูแลต้นไม้และสวนสาธารณะ", "Tree and park unit"),
    ("animals", "หน่วยควบคุมสัตว์จรจัด", "Stray animal unit"),
)

# Modelled on Traffy Fondue's types: code, Thai, English, SLA hours, share of background
# reports, and how slowly the work goes (1 = as the SLA expects).
_CATEGORIES: Final = (
    ("road", "ถนน", "Roads", 48, 0.20, 1.3),
    ("sidewalk", "ทางเท้า", "Sidewalks and footpaths", 48, 0.08, 1.1),
    ("flooding", "น้ำท่วม", "Flooding", 24, 0.04, 1.0),
    ("drainage", "ท่อระบายน้ำ", "Drainage and sewers", 48, 0.08, 1.0),
    ("lighting", "แสงสว่าง", "Street lighting", 48, 0.09, 0.8),
    ("cleanliness", "ความสะอาด", "Waste and cleanliness", 48, 0.10, 0.7),
    ("trees", "ต้นไม้", "Trees", 72, 0.05, 1.2),
    ("obstruction", "กีดขวาง", "Obstruction", 48, 0.06, 0.9),
    ("noise", "เสียงรบกวน", "Noise", 48, 0.04, 0.8),
    ("stray_animals", "สัตว์จรจัด", "Stray animals", 72, 0.04, 1.1),
    ("electrical_wires", "สายไฟ", "Electrical wires", 48, 0.04, 1.2),
    ("traffic", "ป้ายและสัญญาณจราจร", "Traffic signs and signals", 48, 0.05, 0.9),
    ("safety", "ความปลอดภัย", "Safety", 24, 0.05, 1.0),
    ("toilets", "ห้องน้ำสาธารณะ", "Public toilets", 48, 0.01, 1.0),
    ("canal", "คลอง", "Canals and waterways", 72, 0.02, 1.4),
)

# Category, team, zone: city-wide routes (precedence b) for the drainage, electrical and
# animal units; zone-limited routes (precedence a) for the tree unit, which works only the
# old town and the north. Every other category, and trees elsewhere, falls to the team
# owning the zone (precedence c).
_ROUTES: Final = (
    ("flooding", "drainage", None),
    ("drainage", "drainage", None),
    ("canal", "drainage", None),
    ("lighting", "electrical", None),
    ("electrical_wires", "electrical", None),
    ("stray_animals", "animals", None),
    ("trees", "trees", "Z-OLD"),
    ("trees", "trees", "Z-N"),
)

# Two templates per category, in Thai and in English; {place} says where.
_TEMPLATES: Final[dict[str, tuple[tuple[str, str], tuple[str, str]]]] = {
    "road": (
        (
            "ถนนเป็นหลุมเป็นบ่อ {place} รถจักรยานยนต์ล้มบ่อย",
            "Deep potholes {place}, motorbikes keep falling",
        ),
        ("ผิวถนนทรุดตัวเป็นแอ่ง {place}", "The road surface has sunk {place}"),
    ),
    "sidewalk": (
        ("ทางเท้าชำรุด กระเบื้องหลุด {place}", "Broken footpath, loose tiles {place}"),
        ("ร้านค้าวางของบนทางเท้า เดินไม่ได้ {place}", "Shops block the footpath {place}"),
    ),
    "flooding": (
        ("น้ำท่วมขังสูงประมาณ {depth} ซม. {place}", "Water about {depth} cm deep {place}"),
        ("น้ำท่วมถนน รถเล็กผ่านไม่ได้ {place}", "Flooded road, small cars cannot pass {place}"),
    ),
    "drainage": (
        ("ท่อระบายน้ำอุดตัน น้ำเสียส่งกลิ่นเหม็น {place}", "Blocked drain, sewage smell {place}"),
        ("ฝาท่อระบายน้ำหาย อันตรายมาก {place}", "Drain cover missing, dangerous {place}"),
    ),
    "lighting": (
        ("ไฟฟ้าส่องสว่างดับ {lamps} ดวง {place}", "{lamps} street lights out {place}"),
        ("ไฟทางกะพริบทั้งคืน {place}", "Street light flickering all night {place}"),
    ),
    "cleanliness": (
        ("ขยะล้นถัง ไม่มีคนมาเก็บหลายวัน {place}", "Bins overflowing, not collected for days {place}"),
        ("มีคนลักลอบทิ้งขยะ {place}", "Illegal dumping of rubbish {place}"),
    ),
    "trees": (
        ("กิ่งไม้หักพาดสายไฟ {place}", "Broken branch hanging on the wires {place}"),
        ("ต้นไม้ล้มขวางถนน {place}", "Fallen tree blocking the road {place}"),
    ),
    "obstruction": (
        ("รถจอดกีดขวางทางเข้าออก {place}", "Cars parked across the entrance {place}"),
        ("แผงลอยตั้งขวางช่องทางจราจร {place}", "Stalls set up in the traffic lane {place}"),
    ),
    "noise": (
        ("เสียงเพลงดังจากร้านเหล้ากลางดึก {place}", "Loud music from a bar late at night {place}"),
        ("ก่อสร้างเสียงดังหลังสี่ทุ่ม {place}", "Construction noise after 10 pm {place}"),
    ),
    "stray_animals": (
        ("สุนัขจรจัดหลายตัวไล่กัดคน {place}", "A pack of stray dogs chasing people {place}"),
        ("แมวจรจัดจำนวนมาก {place}", "Many stray cats {place}"),
    ),
    "electrical_wires": (
        ("สายไฟระโยงระยาง ห้อยต่ำ {place}", "Tangled wires hanging low {place}"),
        ("สายสื่อสารขาดพาดถนน {place}", "A cut cable lying across the road {place}"),
    ),
    "traffic": (
        ("สัญญาณไฟจราจรเสีย {place}", "Traffic light not working {place}"),
        ("ป้ายจราจรล้ม {place}", "Road sign knocked down {place}"),
    ),
    "safety": (
        (
            "จุดนี้มืดและเปลี่ยว เกรงจะเกิดอาชญากรรม {place}",
            "Dark, deserted spot, unsafe at night {place}",
        ),
        ("ราวกันตกชำรุด อันตราย {place}", "Broken railing, dangerous {place}"),
    ),
    "toilets": (
        ("ห้องน้ำสาธารณะสกปรก น้ำไม่ไหล {place}", "Public toilet dirty, no water {place}"),
        ("ห้องน้ำสาธารณะปิดล็อกตลอด {place}", "Public toilet always locked {place}"),
    ),
    "canal": (
        ("ผักตบชวาเต็มคลอง น้ำไม่ไหล {place}", "Water hyacinth choking the canal {place}"),
        ("มีคนทิ้งขยะลงคลอง {place}", "People dumping rubbish in the canal {place}"),
    ),
}

_ROADS: Final = (
    ("ราชดำเนิน", "Ratchadamnoen"),
    ("ศรีปราชญ์", "Si Prat"),
    ("กะโรม", "Karom"),
    ("ปากนคร", "Pak Nakhon"),
    ("พัฒนาการคูขวาง", "Phatthanakan Khu Khwang"),
    ("ยมราช", "Yommarat"),
    ("ท่าช้าง", "Tha Chang"),
    ("ศรีธรรมโศก", "Si Thammasok"),
)

# Relative chance of a report in each local hour of the day, from midnight.
_HOUR_WEIGHTS: Final = (
    0.15, 0.10, 0.08, 0.08, 0.10, 0.25, 0.50, 0.80, 1.00, 1.00, 0.95, 0.90,
    0.85, 0.85, 0.90, 0.90, 0.95, 1.00, 1.00, 0.95, 0.85, 0.70, 0.45, 0.25,
)  # fmt: skip

# Two heavy rain nights, as hours before ``now``: flood reports cluster after them.
_STORMS_H: Final = (9 * 24 + 5, 38 * 24 + 14)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Hotspot:
    """A gaussian cluster of reports around a place, with its own mix of categories."""

    key: str
    place_th: str
    place_en: str
    centre_m: tuple[float, float]
    sigma_m: float
    count: int
    categories: tuple[tuple[str, float], ...]
    storms: bool = False


_HOTSPOTS: Final = (
    _Hotspot(
        key="tha_wang_market",
        place_th="ตลาดท่าวังริมคลอง",
        place_en="Tha Wang market by the canal",
        centre_m=(600.0, 400.0),
        sigma_m=300.0,
        count=330,
        categories=(("flooding", 0.45), ("drainage", 0.30), ("cleanliness", 0.15), ("canal", 0.10)),
        storms=True,
    ),
    _Hotspot(
        key="hua_it_market",
        place_th="ตลาดหัวอิฐ",
        place_en="Hua It market",
        centre_m=(300.0, 2300.0),
        sigma_m=280.0,
        count=300,
        categories=(
            ("cleanliness", 0.50),
            ("obstruction", 0.20),
            ("stray_animals", 0.15),
            ("drainage", 0.10),
            ("noise", 0.05),
        ),
    ),
    _Hotspot(
        key="old_city",
        place_th="วัดพระมหาธาตุ",
        place_en="Wat Phra Mahathat",
        centre_m=(700.0, -2600.0),
        sigma_m=450.0,
        count=220,
        categories=(
            ("sidewalk", 0.35),
            ("traffic", 0.25),
            ("lighting", 0.20),
            ("toilets", 0.10),
            ("cleanliness", 0.10),
        ),
    ),
    _Hotspot(
        key="east_fields",
        place_th="ทุ่งนาฝั่งตะวันออก",
        place_en="the eastern rice fields",
        centre_m=(2800.0, -600.0),
        sigma_m=600.0,
        count=200,
        categories=(("flooding", 0.70), ("drainage", 0.20), ("road", 0.10)),
        storms=True,
    ),
    _Hotspot(
        key="station",
        place_th="หน้าสถานีรถไฟ",
        place_en="the railway station",
        centre_m=(-200.0, 900.0),
        sigma_m=250.0,
        count=150,
        categories=(("noise", 0.40), ("safety", 0.30), ("lighting", 0.20), ("obstruction", 0.10)),
    ),
)
_EDGE_COUNT = 15  # reports a few metres outside the outline, which routing snaps to a ward


@dataclass(frozen=True, slots=True, eq=False)
class DemoCity:
    """Everything the demo city holds, as frames ready to load.

    Attributes
    ----------
    wards, zones
        GeoDataFrames in EPSG:4326 with MultiPolygon geometries. Wards have ``code``,
        ``name``, ``name_th`` and ``name_en``; zones have ``code``, ``name``, ``team`` (a
        team code), ``name_th`` and ``name_en``.
    teams
        ``code``, ``name`` (the Thai name, as the city calls the team), ``name_th`` and
        ``name_en``; the zone teams first, then the specialist units.
    categories
        ``code``, ``name_th``, ``name_en`` and ``sla_hours``.
    category_routes
        ``category`` and ``team`` (codes) and ``zone_code`` (missing for a city-wide route).
    reports
        ``external_id``, ``lon``, ``lat``, ``category`` (a code), ``description``,
        ``status``, ``created_at``, ``updated_at``, ``resolved_at`` (UTC) and ``cluster``
        (the hotspot a report was drawn from, ``background`` or ``edge``), oldest first.
    """

    seed: int
    now: datetime
    wards: gpd.GeoDataFrame
    teams: pd.DataFrame
    zones: gpd.GeoDataFrame
    categories: pd.DataFrame
    category_routes: pd.DataFrame
    reports: pd.DataFrame


def _metres_to_lonlat(xy: FloatArray) -> FloatArray:
    """Longitude and latitude of points given in metres east and north of the centre."""
    lonlat: FloatArray = xy / np.array([_M_PER_DEG_LON, _M_PER_DEG_LAT]) + np.array(DEMO_CENTRE)
    return lonlat


def _to_lonlat(geom: _G) -> _G:
    """Move a geometry from the local metre plane to longitude and latitude."""
    return shapely.transform(geom, _metres_to_lonlat)


@cache
def _outline_m() -> Polygon:
    """The city outline in local metres: an ellipse with a few gentle bulges."""
    theta = np.linspace(0.0, 2.0 * np.pi, 144, endpoint=False)
    wobble = (
        1.0
        + 0.05 * np.sin(3 * theta + 0.6)
        + 0.035 * np.cos(5 * theta + 1.9)
        + 0.015 * np.sin(9 * theta + 0.3)
    )
    return Polygon(
        np.column_stack(
            [_HALF_WIDTH_M * np.cos(theta) * wobble, _HALF_HEIGHT_M * np.sin(theta) * wobble]
        )
    )


def demo_city_outline() -> Polygon:
    """The demo city's outline in EPSG:4326: the union of its wards, and of its zones."""
    return _to_lonlat(_outline_m())


def _multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """The polygonal parts of ``geom`` as one MultiPolygon (dropping stray lines and points)."""
    parts = [
        part
        for part in shapely.get_parts(geom)
        if isinstance(part, Polygon | MultiPolygon) and not part.is_empty
    ]
    polygons: list[Polygon] = []
    for part in parts:
        polygons.extend(part.geoms if isinstance(part, MultiPolygon) else [part])
    return MultiPolygon(polygons)


def _voronoi_cells(seeds: FloatArray, outline: Polygon) -> list[MultiPolygon]:
    """Voronoi cells of ``seeds``, in seed order, clipped to ``outline``."""
    frame = shapely.box(*outline.buffer(5_000.0).bounds)
    cells = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=frame, ordered=True)
    return [_multipolygon(cell.intersection(outline)) for cell in shapely.get_parts(cells)]


def _ward_seeds(rng: np.random.Generator, *, outline: Polygon, n: int) -> FloatArray:
    """``n`` jittered points inside ``outline``, kept apart so wards have similar sizes."""
    minx, miny, maxx, maxy = outline.bounds
    spacing = 0.8 * math.sqrt(outline.area / n)
    seeds: list[FloatArray] = []
    misses = 0
    while len(seeds) < n:
        candidate = rng.uniform((minx, miny), (maxx, maxy))
        if not shapely.contains_xy(outline, candidate[0], candidate[1]):
            continue
        if seeds and np.hypot(*(np.array(seeds) - candidate).T).min() < spacing:
            misses += 1
            if misses > 200:  # too crowded for this spacing: relax it a little
                spacing *= 0.97
                misses = 0
            continue
        seeds.append(candidate)
    return np.array(seeds)


def _wards(rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Voronoi wards of relaxed random seeds, coded from north-west to south-east."""
    outline = _outline_m()
    seeds = _ward_seeds(rng, outline=outline, n=WARD_COUNT)
    for _ in range(2):  # Lloyd relaxation: rounder, more even wards
        cells = _voronoi_cells(seeds, outline)
        seeds = np.array([[c.centroid.x, c.centroid.y] for c in cells])
    cells = _voronoi_cells(seeds, outline)
    centroids = np.array([[c.centroid.x, c.centroid.y] for c in cells])
    rows = np.floor((outline.bounds[3] - centroids[:, 1]) / (2 * _HALF_HEIGHT_M / 6))
    order = np.lexsort((centroids[:, 0], rows))
    records = []
    for number, index in enumerate(order, start=1):
        name_th, name_en = _WARD_NAMES[number - 1]
        records.append(
            {
                "code": f"W{number:02d}",
                "name": f"ชุมชน{name_th}",
                "name_th": f"ชุมชน{name_th}",
                "name_en": name_en,
                "geometry": _to_lonlat(cells[index]),
            }
        )
    return gpd.GeoDataFrame(records, geometry="geometry", crs="EPSG:4326")


def _sector(origin: FloatArray, *, start_deg: float, end_deg: float) -> Polygon:
    """A wedge from ``origin`` between two compass angles, far longer than the city."""
    angles = np.radians(np.linspace(start_deg, end_deg, 24))
    arc = origin + 20_000.0 * np.column_stack([np.cos(angles), np.sin(angles)])
    return Polygon(np.vstack([origin, arc]))


def _zones(rng: np.random.Generator) -> gpd.GeoDataFrame:
    """An old-town core and five wedges around it, drawn without regard to the wards."""
    outline = _outline_m()
    origin = np.array([200.0, -250.0]) + rng.normal(0.0, 150.0, 2)
    angles = np.radians(np.arange(14) * 360.0 / 14 + rng.uniform(-5.0, 5.0, 14))
    radii = 1_650.0 * (1.0 + rng.uniform(-0.12, 0.12, 14))
    ring = origin + radii[:, None] * np.column_stack([np.cos(angles), np.sin(angles)])
    core = Polygon(ring).intersection(outline)
    sectors = [angle for *_, angle in _ZONES if angle is not None]
    edges = np.array(sectors) - 36.0 + rng.uniform(-6.0, 6.0) + rng.uniform(-7.0, 7.0, 5)
    geoms: list[BaseGeometry] = [core]
    for i in range(len(sectors)):
        end = edges[i + 1] if i + 1 < len(edges) else edges[0] + 360.0
        geoms.append(
            _sector(origin, start_deg=edges[i], end_deg=end).intersection(outline).difference(core)
        )
    records = [
        {
            "code": code,
            "name": f"โซน{name_th}",
            "team": team,
            "name_th": f"โซน{name_th}",
            "name_en": f"{name_en} zone",
            "geometry": _to_lonlat(_multipolygon(geom)),
        }
        for (code, team, name_en, name_th, _), geom in zip(_ZONES, geoms, strict=True)
    ]
    return gpd.GeoDataFrame(records, geometry="geometry", crs="EPSG:4326")


def _teams() -> pd.DataFrame:
    """The six zone teams, then the specialist units."""
    rows = [
        (team, f"ทีมภาคสนามโซน{name_th}", f"{name_en} field team")
        for _, team, name_en, name_th, _ in _ZONES
    ]
    rows += list(_SPECIALIST_TEAMS)
    # The city's own name for a team is its Thai one; the English one is kept beside it.
    return pd.DataFrame(
        [(code, th, th, en) for code, th, en in rows],
        columns=["code", "name", "name_th", "name_en"],
    )


def _categories() -> pd.DataFrame:
    """The bilingual categories and their SLA hours."""
    return pd.DataFrame(
        [row[:4] for row in _CATEGORIES], columns=["code", "name_th", "name_en", "sla_hours"]
    )


def _category_routes() -> pd.DataFrame:
    """Category routes by code; ``zone_code`` is missing for a city-wide route."""
    return pd.DataFrame(list(_ROUTES), columns=["category", "team", "zone_code"], dtype=object)


def _draw_inside(n: int, draw: Callable[[int], FloatArray]) -> FloatArray:
    """Draw points with ``draw`` until ``n`` of them lie inside the outline."""
    outline = _outline_m()
    kept = np.empty((0, 2))
    for _ in range(1_000):
        if len(kept) >= n:
            return kept[:n]
        batch = draw(2 * (n - len(kept)) + 8)
        kept = np.vstack([kept, batch[shapely.contains_xy(outline, batch[:, 0], batch[:, 1])]])
    raise AssertionError("a demo cluster lies outside the city outline")


def _gaussian(
    rng: np.random.Generator, *, centre: tuple[float, float], sigma: float
) -> Callable[[int], FloatArray]:
    """A drawer of ``k`` points in a round gaussian cluster."""
    return lambda k: rng.normal(centre, sigma, (k, 2))


def _edge_points(rng: np.random.Generator, n: int) -> FloatArray:
    """Points 10-60 m outside the outline, as a phone's location often is near a boundary."""
    outline = _outline_m()
    kept = np.empty((0, 2))
    while len(kept) < n:
        theta = rng.uniform(0.0, 2.0 * np.pi, n)
        ray = np.column_stack([np.cos(theta), np.sin(theta)])
        far = ray * 20_000.0
        lines = shapely.linestrings(np.stack([np.zeros_like(far), far], axis=1))
        # The outline is star-shaped around the origin, so each ray crosses it once.
        on_edge = shapely.get_coordinates(shapely.intersection(lines, outline.exterior))
        assert on_edge.shape == ray.shape
        batch = on_edge + ray * rng.uniform(10.0, 60.0, n)[:, None]
        outside = ~shapely.contains_xy(outline, batch[:, 0], batch[:, 1])
        kept = np.vstack([kept, batch[outside]])
    return kept[:n]


def _created_ages_h(rng: np.random.Generator, n: int, *, now: datetime, storms: bool) -> FloatArray:
    """Hours before ``now`` at which reports were made: by day, a little more lately.

    With ``storms`` three quarters of them follow one of the two rain nights.
    """
    span_h = DEMO_DAYS * 24.0
    weights = np.array(_HOUR_WEIGHTS)
    now_h = now.timestamp() / 3600.0
    kept = np.empty(0)
    while len(kept) < n:
        size = 3 * (n - len(kept)) + 8
        ages = rng.uniform(0.0, span_h, size)
        if storms:
            storm = rng.choice(np.array(_STORMS_H, dtype=float), size)
            after = storm - np.abs(rng.normal(0.0, 14.0, size))
            ages = np.where(rng.random(size) < 0.75, after, ages)
        hour = np.floor(now_h - ages + _LOCAL_UTC_OFFSET_H).astype(np.int64) % 24
        chance = weights[hour] * (0.75 + 0.25 * (1.0 - ages / span_h))
        accept = (rng.random(size) < chance) & (ages > 0.0) & (ages < span_h)
        kept = np.concatenate([kept, ages[accept]])
    return kept[:n]


@dataclass(frozen=True, slots=True)
class _Work:
    """How far each report's work had got by ``now``; times are hours before ``now``."""

    status: npt.NDArray[np.str_]
    updated_age_h: FloatArray
    resolved_age_h: FloatArray  # NaN when not resolved


def _simulate_work(
    rng: np.random.Generator,
    *,
    age_h: FloatArray,
    sla_h: FloatArray,
    slowness: FloatArray,
    duplicate_share: FloatArray,
) -> _Work:
    """Play each report's life forward from its creation until ``now``.

    Triage takes a few hours; a report is then refused (duplicate or rejected) or worked,
    taking its SLA times a lognormal factor, so about two in three finish on time. Some
    resolved reports are closed a day or two later, a few are reopened, and a few are
    forgotten and stay open far past their due time.
    """
    n = len(age_h)
    forgotten = rng.random(n) < 0.12
    neglect = np.where(forgotten, rng.uniform(15.0, 60.0, n), 1.0)
    triage = rng.lognormal(math.log(6.0), 1.1, n) * np.sqrt(neglect)
    outcome = rng.random(n)
    fix = sla_h * slowness * neglect * rng.lognormal(math.log(0.55), 0.8, n)
    fix = np.maximum(fix, triage + 0.5)
    start = triage + (fix - triage) * rng.uniform(0.2, 0.6, n)
    close_after = rng.lognormal(math.log(30.0), 0.6, n)
    closes = rng.random(n) < 0.65
    reopen_after = np.where(rng.random(n) < 0.025, rng.uniform(12.0, 96.0, n), np.inf)

    refused = outcome < duplicate_share + 0.03
    status = np.full(n, "open", dtype="<U12")
    updated = age_h.copy()
    resolved = np.full(n, np.nan)

    def happened(after_h: FloatArray) -> npt.NDArray[np.bool_]:
        return after_h <= age_h

    worked = ~refused
    stages: Sequence[tuple[str, npt.NDArray[np.bool_], FloatArray]] = (
        ("acknowledged", worked & happened(triage), triage),
        ("in_progress", worked & happened(start), start),
        ("resolved", worked & happened(fix), fix),
        ("closed", worked & closes & happened(fix + close_after), fix + close_after),
        ("reopened", worked & happened(fix + reopen_after), fix + reopen_after),
        ("duplicate", refused & (outcome < duplicate_share) & happened(triage), triage),
        ("rejected", refused & (outcome >= duplicate_share) & happened(triage), triage),
    )
    for name, mask, after_h in stages:  # later stages overwrite earlier ones
        status[mask] = name
        updated[mask] = (age_h - after_h)[mask]
    is_resolved = np.isin(status, ("resolved", "closed"))
    resolved[is_resolved] = (age_h - fix)[is_resolved]
    return _Work(status=status, updated_age_h=updated, resolved_age_h=resolved)


def _descriptions(
    rng: np.random.Generator,
    *,
    categories: npt.NDArray[np.str_],
    place_th: Sequence[str | None],
    place_en: Sequence[str | None],
) -> list[str]:
    """Short citizen-style descriptions, seven in ten in Thai; a missing place gets a soi."""
    n = len(categories)
    thai = rng.random(n) < 0.7
    variant = rng.integers(0, 2, n)
    soi = rng.integers(1, 40, n)
    road = rng.integers(0, len(_ROADS), n)
    depth = rng.integers(2, 8, n) * 10
    lamps = rng.integers(1, 6, n)
    texts = []
    for i in range(n):
        template_th, template_en = _TEMPLATES[str(categories[i])][int(variant[i])]
        road_th, road_en = _ROADS[int(road[i])]
        if thai[i]:
            landmark = place_th[i]
            place = f"บริเวณ{landmark}" if landmark else f"ซอย {soi[i]} ถนน{road_th}"
            template = template_th
        else:
            landmark = place_en[i]
            place = f"near {landmark}" if landmark else f"on Soi {soi[i]}, {road_en} Road"
            template = template_en
        texts.append(template.format(place=place, depth=depth[i], lamps=lamps[i]))
    return texts


def _reports(rng: np.random.Generator, *, seed: int, now: datetime) -> pd.DataFrame:
    """Hotspot clusters, a background denser towards the centre, and a few edge reports."""
    codes = [row[0] for row in _CATEGORIES]
    background_weights = np.array([row[4] for row in _CATEGORIES])
    background_weights /= background_weights.sum()
    sla = {row[0]: float(row[3]) for row in _CATEGORIES}
    pace = {row[0]: float(row[5]) for row in _CATEGORIES}

    xy: list[FloatArray] = []
    category: list[npt.NDArray[np.str_]] = []
    ages: list[FloatArray] = []
    cluster: list[str] = []
    place_th: list[str | None] = []
    place_en: list[str | None] = []
    duplicate_share: list[FloatArray] = []
    for spot in _HOTSPOTS:
        xy.append(
            _draw_inside(spot.count, _gaussian(rng, centre=spot.centre_m, sigma=spot.sigma_m))
        )
        names = [c for c, _ in spot.categories]
        shares = np.array([s for _, s in spot.categories])
        category.append(rng.choice(names, spot.count, p=shares / shares.sum()))
        ages.append(_created_ages_h(rng, spot.count, now=now, storms=spot.storms))
        cluster += [spot.key] * spot.count
        place_th += [spot.place_th] * spot.count
        place_en += [spot.place_en] * spot.count
        duplicate_share.append(np.full(spot.count, 0.12 if spot.storms else 0.06))

    n_background = REPORT_COUNT - sum(s.count for s in _HOTSPOTS) - _EDGE_COUNT
    half = np.array([_HALF_WIDTH_M, _HALF_HEIGHT_M]) * 1.1

    def background(k: int) -> FloatArray:
        uniform = rng.uniform(-half, half, (k, 2))
        central = rng.normal(0.0, 1_800.0, (k, 2))
        return np.where(rng.random((k, 1)) < 0.6, uniform, central)

    xy.append(_draw_inside(n_background, background))
    xy.append(_edge_points(rng, _EDGE_COUNT))
    for label, count in (("background", n_background), ("edge", _EDGE_COUNT)):
        category.append(rng.choice(codes, count, p=background_weights))
        ages.append(_created_ages_h(rng, count, now=now, storms=False))
        cluster += [label] * count
        place_th += [None] * count
        place_en += [None] * count
        duplicate_share.append(np.full(count, 0.02))

    points = np.vstack(xy)
    cats = np.concatenate(category)
    age_h = np.concatenate(ages)
    # The east side's team is short-handed: its backlog shows up on the maps.
    slowness = np.array([pace[c] for c in cats]) * np.where(points[:, 0] > 2_000.0, 1.5, 1.0)
    work = _simulate_work(
        rng,
        age_h=age_h,
        sla_h=np.array([sla[c] for c in cats]),
        slowness=slowness,
        duplicate_share=np.concatenate(duplicate_share),
    )
    descriptions = _descriptions(rng, categories=cats, place_th=place_th, place_en=place_en)

    now_s = now.timestamp()

    def stamp(age: FloatArray) -> pd.Series:
        # Whole seconds, floored: monotone, so updated_at >= created_at survives rounding.
        return pd.to_datetime(np.floor(now_s - age * 3600.0), unit="s", utc=True)

    lonlat = _metres_to_lonlat(points)
    frame = pd.DataFrame(
        {
            "lon": lonlat[:, 0],
            "lat": lonlat[:, 1],
            "category": cats.astype(object),
            "description": descriptions,
            "status": work.status.astype(object),
            "created_at": stamp(age_h),
            "updated_at": stamp(work.updated_age_h),
            "resolved_at": stamp(work.resolved_age_h),
            "cluster": cluster,
        }
    )
    frame = frame.sort_values("created_at", kind="stable", ignore_index=True)
    frame.insert(0, "external_id", [f"demo-{seed}-{i:05d}" for i in range(1, len(frame) + 1)])
    return frame


def generate_demo_city(*, seed: int = 2026, now: datetime) -> DemoCity:
    """Generate the demo city; the same ``seed`` and ``now`` always give the same city.

    Parameters
    ----------
    seed
        Seed of ``numpy.random.default_rng``; it moves the ward and zone lines and every
        report, but not the outline, the names, the categories or the routes.
    now
        Timezone-aware time the city is generated for: reports are created during the
        ``DEMO_DAYS`` before it and their statuses are as of it.
    """
    if now.tzinfo is None:
        raise InvalidInputError("now", "must be a timezone-aware time")
    now = now.astimezone(UTC)
    rng = np.random.default_rng(seed)
    wards = _wards(rng)
    zones = _zones(rng)
    reports = _reports(rng, seed=seed, now=now)
    return DemoCity(
        seed=seed,
        now=now,
        wards=wards,
        teams=_teams(),
        zones=zones,
        categories=_categories(),
        category_routes=_category_routes(),
        reports=reports,
    )


# Tables the demo writes, with how to name one row and several in a message.
_DEMO_TABLES: Final = (
    ("wards", "ward", "wards"),
    ("zones", "zone", "zones"),
    ("teams", "team", "teams"),
    ("categories", "category", "categories"),
    ("reports", "report", "reports"),
)


def _refuse_unless_empty(conn: Connection) -> None:
    """Raise ``DatabaseNotEmptyError`` if any table the demo writes already holds rows."""
    counts = conn.execute(
        text(
            "SELECT " + ", ".join(f"(SELECT count(*) FROM {table})" for table, _, _ in _DEMO_TABLES)
        )
    ).one()
    held = [
        f"{count:,} {one if count == 1 else many}"
        for (_, one, many), count in zip(_DEMO_TABLES, counts, strict=True)
        if count
    ]
    if held:
        raise DatabaseNotEmptyError(
            "The demo city can only be loaded into an empty database, and this one already "
            f"holds {', '.join(held)}. Nothing was changed."
        )


def _insert_layer(
    conn: Connection, frame: gpd.GeoDataFrame, *, layer: str, seed: int, now: datetime
) -> int:
    """Record a demo boundary import for ``layer`` and return its id."""
    digest = hashlib.sha256()
    for code, geom in zip(frame["code"], frame.geometry, strict=True):
        digest.update(code.encode() + shapely.to_wkb(geom))
    return int(
        conn.execute(
            text(
                "INSERT INTO boundary_imports "
                "(layer, source, sha256, feature_count, repaired_count, is_demo, summary) "
                "VALUES (:layer, :source, :sha256, :count, 0, true, CAST(:summary AS jsonb)) "
                "RETURNING id"
            ),
            {
                "layer": layer,
                "source": DEMO_BOUNDARY_SOURCE,
                "sha256": digest.hexdigest(),
                "count": len(frame),
                "summary": json.dumps(
                    {"generator": "geo.demo.city", "seed": seed, "now": now.isoformat()}
                ),
            },
        ).scalar_one()
    )


def _boundary_rows(frame: gpd.GeoDataFrame, import_id: int) -> list[dict[str, Any]]:
    """Bound parameters for inserting a ward or zone frame."""
    return [
        {
            "code": row.code,
            "name": row.name,
            "name_th": row.name_th,
            "name_en": row.name_en,
            "import_id": import_id,
            "wkb": shapely.to_wkb(row.geometry),
            "team": getattr(row, "team", None),
        }
        for row in frame.itertuples(index=False)
    ]


def _code_ids(conn: Connection, table: str) -> dict[str, int]:
    """Map code to id for ``table`` (one of our own table names, never user input)."""
    return {code: id_ for code, id_ in conn.execute(text(f"SELECT code, id FROM {table}"))}


def _write(conn: Connection, city: DemoCity, *, settings: RoutingSettings) -> int:
    """Insert the whole city on ``conn``; return how many reports lay outside every ward."""
    conn.execute(
        text(
            "INSERT INTO teams (code, name, name_th, name_en) "
            "VALUES (:code, :name, :name_th, :name_en)"
        ),
        city.teams.to_dict("records"),
    )
    conn.execute(
        text(
            "INSERT INTO categories (code, name_th, name_en, sla_hours) "
            "VALUES (:code, :name_th, :name_en, :sla_hours)"
        ),
        [{**row, "sla_hours": int(row["sla_hours"])} for row in city.categories.to_dict("records")],
    )
    team_ids = _code_ids(conn, "teams")
    category_ids = _code_ids(conn, "categories")

    ward_import = _insert_layer(conn, city.wards, layer="wards", seed=city.seed, now=city.now)
    conn.execute(
        text(
            "INSERT INTO wards (code, name, name_th, name_en, import_id, geom) "
            "VALUES (:code, :name, :name_th, :name_en, :import_id, "
            "ST_Multi(ST_GeomFromWKB(:wkb, 4326)))"
        ),
        _boundary_rows(city.wards, ward_import),
    )
    zone_import = _insert_layer(conn, city.zones, layer="zones", seed=city.seed, now=city.now)
    conn.execute(
        text(
            "INSERT INTO zones (code, name, name_th, name_en, team_id, import_id, geom) "
            "VALUES (:code, :name, :name_th, :name_en, :team_id, :import_id, "
            "ST_Multi(ST_GeomFromWKB(:wkb, 4326)))"
        ),
        [
            {**row, "team_id": team_ids[row["team"]]}
            for row in _boundary_rows(city.zones, zone_import)
        ],
    )
    conn.execute(
        text(
            "INSERT INTO category_routes (category_id, team_id, zone_code) "
            "VALUES (:category_id, :team_id, :zone_code)"
        ),
        [
            {
                "category_id": category_ids[route.category],
                "team_id": team_ids[route.team],
                "zone_code": None if pd.isna(route.zone_code) else route.zone_code,
            }
            for route in city.category_routes.itertuples(index=False)
        ],
    )
    rows = city.reports.assign(
        category_id=city.reports["category"].map(category_ids),
        source=DEMO_REPORT_SOURCE,
        is_demo=True,
    )
    analyze_routing_tables(conn)
    result = insert_reports(
        conn,
        rows[
            [
                "lon",
                "lat",
                "category_id",
                "created_at",
                "description",
                "status",
                "updated_at",
                "resolved_at",
                "source",
                "external_id",
                "is_demo",
            ]
        ],
        settings=settings,
        actor="demo",
    )
    return len(result.rejected)


def _summary(conn: Connection, city: DemoCity, *, outside: int) -> str:
    """One line on what was loaded, counted from the database itself."""
    row = conn.execute(
        text(
            "SELECT count(*) AS reports,"
            " count(*) FILTER (WHERE team_id IS NOT NULL) AS with_team,"
            " count(*) FILTER (WHERE status = ANY(:open)) AS open,"
            " count(*) FILTER (WHERE status = ANY(:open) AND due_at < :now) AS overdue"
            " FROM reports WHERE is_demo"
        ),
        {"open": list(OPEN_STATUSES), "now": city.now},
    ).one()
    skipped = f", {outside} outside every ward skipped" if outside else ""
    return (
        f"Loaded the demo city (generated data, seed {city.seed}): {len(city.wards)} wards, "
        f"{len(city.zones)} zones, {len(city.teams)} teams, {len(city.categories)} categories, "
        f"{row.reports:,} reports ({row.open:,} open, {row.overdue:,} of them overdue; "
        f"{row.with_team / max(row.reports, 1):.1%} assigned to a team{skipped})."
    )


def load_demo_city(
    engine: Engine,
    *,
    seed: int = 2026,
    now: datetime | None = None,
    settings: RoutingSettings | None = None,
) -> str:
    """Load the demo city into an empty database and return a one-line summary.

    Everything is written in one transaction. A database that already holds wards, zones,
    teams, categories or reports is refused with ``DatabaseNotEmptyError`` and left as it
    was. ``now`` defaults to the current hour (UTC), so report ages look live; ``settings``
    default to the ``ISSUEMAP_*`` routing settings.
    """
    if now is None:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    city = generate_demo_city(seed=seed, now=now)
    with engine.begin() as conn:
        # Two services starting at once on one empty database: the second waits, then refuses.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('issuemap demo city'))"))
        _refuse_unless_empty(conn)
        outside = _write(conn, city, settings=settings or RoutingSettings())
        return _summary(conn, city, outside=outside)
