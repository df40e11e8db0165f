"""Photo checks, the public copy and the bounds on memory: photos built in memory with Pillow.

The attacks on memory (a few kilobytes of PNG claiming 40 megapixels, a huge JPEG, many
photos at once) are also made over HTTP, against a real database.
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, PngImagePlugin, TiffImagePlugin
from shapely.geometry import Point
from sqlalchemy import Engine, text

from api.deps import app_state
from geo.demo.city import demo_city_outline
from geo.errors import InvalidInputError
from geo.reports.photos import ProcessedPhoto, gps_position, process_photo
from geo.settings import IntakeSettings

R = TiffImagePlugin.IFDRational
INTAKE = IntakeSettings()
MAX_BYTES = INTAKE.photo_max_bytes

# 8°25'55.2"N 99°57'48.24"E: by the railway station of the demo city.
LAT_DMS = (R(8), R(25), R(5520, 100))
LON_DMS = (R(99), R(57), R(4824, 100))
LAT = 8 + 25 / 60 + 55.2 / 3600
LON = 99 + 57 / 60 + 48.24 / 3600

SERIAL = "SN-4417-0092"
OWNER = "Somchai Jaidee"
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
    b'22-rdf-syntax-ns#"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    b'xmp:CreatorTool="SecretCam"/></rdf:RDF></x:xmpmeta>'
)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def camera_exif(
    *,
    gps: dict[int, Any] | None = None,
    orientation: int | None = None,
) -> Image.Exif:
    """EXIF like a phone writes: camera, owner, serial, times and (by default) a GPS fix."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Acme"
    exif[ExifTags.Base.Model] = "Phone 9"
    exif[ExifTags.Base.Artist] = OWNER
    exif[ExifTags.Base.DateTime] = "2026:11:01 09:00:00"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.Exif] = {
        ExifTags.Base.BodySerialNumber: SERIAL,
        ExifTags.Base.CameraOwnerName: OWNER,
        ExifTags.Base.DateTimeOriginal: "2026:11:01 09:00:00",
    }
    if gps is None:
        gps = {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: LAT_DMS,
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: LON_DMS,
        }
    if gps:
        exif[ExifTags.IFD.GPSInfo] = gps
    return exif


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def two_colour(size: tuple[int, int] = (40, 20), mode: str = "RGB") -> Image.Image:
    """Red on the left half, blue on the right: shows which way a photo was turned."""
    image = Image.new(mode, size, "blue")
    image.paste("red", (0, 0, size[0] // 2, size[1]))
    return image


def phone_jpeg(**exif_options: Any) -> bytes:
    return encode(
        two_colour(),
        "JPEG",
        exif=camera_exif(**exif_options),
        xmp=XMP,
        icc_profile=SRGB_ICC,
        comment=f"owner {OWNER}",
        quality=95,
    )


def jpeg_segments(data: bytes) -> list[int]:
    """The marker of every JPEG segment before the image data (0xE1 is APP1, EXIF and XMP)."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return markers


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return chunks


def webp_chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, pos = [], 12
    while pos < len(data):
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        chunks.append(data[pos : pos + 4])
        pos += 8 + length + (length & 1)
    return chunks


def assert_no_metadata(photo: ProcessedPhoto) -> None:
    public = photo.public_bytes
    with Image.open(io.BytesIO(public)) as image:
        assert not image.getexif()
        assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert not {"exif", "xmp", "icc_profile", "comment", "XML:com.adobe.xmp"} & set(image.info)
    for secret in (b"Exif", SERIAL.encode(), OWNER.encode(), b"Acme", b"SecretCam", b"2026:11"):
        assert secret not in public


def test_jpeg_public_copy_has_no_metadata_and_original_keeps_it() -> None:
    data = phone_jpeg()
    photo = process_photo(data, declared_type="image/jpeg", intake=INTAKE)

    assert photo.content_type == "image/jpeg"
    assert (photo.width, photo.height) == (40, 20)
    assert photo.original_bytes == data
    assert photo.sha256 == hashlib.sha256(data).hexdigest()
    assert_no_metadata(photo)
    # Only JFIF (APP0), quantisation and Huffman tables, frame and scan: no APP1 (EXIF, XMP),
    # no APP2 (ICC), no COM.
    assert set(jpeg_segments(photo.public_bytes)) <= {0xE0, 0xDB, 0xC4, 0xC0, 0xDA}
    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.format == "JPEG"
        assert public.getpixel((5, 10))[0] > 200  # still red on the left

    with Image.open(io.BytesIO(photo.original_bytes)) as original:
        exif = original.getexif()
        assert exif.get_ifd(ExifTags.IFD.GPSInfo)
        assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.BodySerialNumber] == SERIAL
    assert {0xE1, 0xE2, 0xFE} <= set(jpeg_segments(photo.original_bytes))


def test_gps_from_exif_is_decimal_degrees_inside_the_demo_city() -> None:
    photo = process_photo(phone_jpeg(), declared_type=None, intake=INTAKE)

    assert photo.gps is not None
    lat, lon = photo.gps
    assert lat == pytest.approx(LAT, abs=1e-6)
    assert lon == pytest.approx(LON, abs=1e-6)
    assert (lat, lon) == pytest.approx((8.432, 99.9634), abs=1e-6)
    assert demo_city_outline().contains(Point(lon, lat))


def test_orientation_is_applied_before_the_metadata_goes() -> None:
    # Orientation 6: the camera was turned; viewers rotate the stored picture 90° clockwise,
    # which puts its left (red) half on top.
    photo = process_photo(phone_jpeg(orientation=6), declared_type=None, intake=INTAKE)

    assert (photo.width, photo.height) == (20, 40)
    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.size == (20, 40)
        assert not public.getexif()  # no orientation left to apply twice
        top, bottom = public.getpixel((10, 5)), public.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_png_loses_text_exif_xmp_and_icc_but_keeps_transparency() -> None:
    image = two_colour(mode="RGBA")
    image.putpixel((0, 0), (0, 0, 0, 0))
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", OWNER)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    data = encode(image, "PNG", pnginfo=info, exif=camera_exif(), icc_profile=SRGB_ICC)
    assert {b"tEXt", b"iTXt", b"eXIf", b"iCCP"} <= set(png_chunks(data))

    photo = process_photo(data, declared_type="image/png", intake=INTAKE)

    assert photo.content_type == "image/png"
    assert photo.gps == pytest.approx((LAT, LON), abs=1e-6)
    assert_no_metadata(photo)
    assert set(png_chunks(photo.public_bytes)) == {b"IHDR", b"IDAT", b"IEND"}
    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.mode == "RGBA"
        assert public.getpixel((0, 0))[3] == 0
        assert public.getpixel((39, 19)) == (0, 0, 255, 255)


def test_palette_png_keeps_its_transparent_colour() -> None:
    image = two_colour().convert("P")
    data = encode(image, "PNG", transparency=0)

    photo = process_photo(data, declared_type="image/png", intake=INTAKE)

    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.mode == "P"
        assert public.info.get("transparency") == 0
    assert set(png_chunks(photo.public_bytes)) <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}


def test_webp_loses_exif_xmp_and_icc() -> None:
    data = encode(
        two_colour(), "WEBP", exif=camera_exif(), xmp=XMP, icc_profile=SRGB_ICC, quality=90
    )
    assert {b"EXIF", b"XMP ", b"ICCP"} <= set(webp_chunks(data))

    photo = process_photo(data, declared_type="image/webp", intake=INTAKE)

    assert photo.content_type == "image/webp"
    assert photo.gps == pytest.approx((LAT, LON), abs=1e-6)
    assert_no_metadata(photo)
    assert not {b"EXIF", b"XMP ", b"ICCP"} & set(webp_chunks(photo.public_bytes))
    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.format == "WEBP"


def test_multi_picture_jpeg_from_a_phone_becomes_a_plain_jpeg() -> None:
    first, second = two_colour(), Image.new("RGB", (40, 20), "green")
    data = encode(first, "MPO", save_all=True, append_images=[second], exif=camera_exif())
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.format == "MPO"

    photo = process_photo(data, declared_type="image/jpeg", intake=INTAKE)

    assert photo.content_type == "image/jpeg"
    assert photo.gps == pytest.approx((LAT, LON), abs=1e-6)
    assert_no_metadata(photo)
    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.format == "JPEG"
        assert getattr(public, "n_frames", 1) == 1


def test_cmyk_jpeg_is_served_as_rgb() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")

    photo = process_photo(data, declared_type=None, intake=INTAKE)

    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.mode == "RGB"
        red, green, blue = public.getpixel((8, 8))
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize(
    ("gps", "expected"),
    [
        pytest.param({1: "S", 2: LAT_DMS, 3: "W", 4: LON_DMS}, (-LAT, -LON), id="southern-western"),
        pytest.param(
            {1: "N", 2: (R(8432, 1000),), 3: "E", 4: (R(999634, 10000),)},
            (8.432, 99.9634),
            id="decimal-degrees-only",
        ),
        pytest.param({}, None, id="no-gps"),
        pytest.param({1: "N", 2: (R(0),), 3: "E", 4: (R(0),)}, None, id="zero-zero"),
        pytest.param({1: "N", 2: (R(95), R(0), R(0)), 3: "E", 4: LON_DMS}, None, id="lat-95"),
        pytest.param({1: "N", 2: LAT_DMS, 3: "E", 4: (R(181), R(0), R(0))}, None, id="lon-181"),
        pytest.param({2: LAT_DMS, 3: "E", 4: LON_DMS}, None, id="no-lat-ref"),
        pytest.param({1: "Q", 2: LAT_DMS, 3: "E", 4: LON_DMS}, None, id="bad-ref"),
        pytest.param({1: "N", 3: "E", 4: LON_DMS}, None, id="no-lat"),
        pytest.param({1: "N", 2: (R(8), R(1, 0), R(0)), 3: "E", 4: LON_DMS}, None, id="zero-den"),
    ],
)
def test_gps_position_handles_hemispheres_and_refuses_nonsense(
    gps: dict[int, Any], expected: tuple[float, float] | None
) -> None:
    data = encode(Image.new("RGB", (8, 8)), "JPEG", exif=camera_exif(gps=gps))

    photo = process_photo(data, declared_type=None, intake=INTAKE)

    if expected is None:
        assert photo.gps is None
    else:
        assert photo.gps == pytest.approx(expected, abs=1e-6)
    with Image.open(io.BytesIO(data)) as image:
        assert gps_position(image.getexif()) == photo.gps


def test_photo_without_exif_has_no_position() -> None:
    data = encode(Image.new("RGB", (8, 8)), "JPEG")
    assert process_photo(data, declared_type=None, intake=INTAKE).gps is None


@pytest.mark.parametrize(
    "declared", [None, "", "application/octet-stream", "image/jpg", "IMAGE/JPEG; charset=binary"]
)
def test_declared_type_that_agrees_or_says_nothing_is_accepted(declared: str | None) -> None:
    data = encode(Image.new("RGB", (8, 8)), "JPEG")
    assert process_photo(data, declared_type=declared, intake=INTAKE).content_type == ("image/jpeg")


@pytest.mark.parametrize(
    ("fmt", "declared"),
    [("JPEG", "image/png"), ("PNG", "image/jpeg"), ("WEBP", "image/png"), ("JPEG", "text/plain")],
)
def test_declared_type_that_contradicts_the_content_is_refused(fmt: str, declared: str) -> None:
    data = encode(Image.new("RGB", (8, 8)), fmt)

    with pytest.raises(InvalidInputError) as refused:
        process_photo(data, declared_type=declared, intake=INTAKE)

    assert refused.value.field == "photo"
    assert f"sent as {declared!r}" in refused.value.problem


def refusal(data: bytes, **limits: Any) -> str:
    with pytest.raises(InvalidInputError) as refused:
        process_photo(data, declared_type=None, intake=IntakeSettings(**limits))
    assert refused.value.field == "photo"
    return refused.value.problem


def test_empty_file_is_refused() -> None:
    assert refusal(b"") == "the file is empty"


def test_file_over_the_limit_is_refused_naming_the_limit_in_mb() -> None:
    data = b"\xff\xd8" + bytes(3 * 1024 * 1024)
    assert "larger than the 2.5 MB limit" in refusal(data, photo_max_bytes=5 * 1024 * 1024 // 2)
    assert "larger than the 10 MB limit" in refusal(bytes(MAX_BYTES + 1))


def test_not_an_image_is_refused() -> None:
    problem = refusal(b"Dear council, the lamp on my soi is broken.")
    assert problem == "the file is not a JPEG, PNG or WebP image"


@pytest.mark.parametrize(("fmt", "name"), [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_other_image_formats_are_refused_saying_what_is_accepted(fmt: str, name: str) -> None:
    problem = refusal(encode(Image.new("RGB", (8, 8)), fmt))
    assert problem == f"{name} images are not accepted; please send a JPEG, PNG or WebP image"


def test_heic_is_refused_with_a_hint() -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    problem = refusal(heic)
    assert problem.startswith("HEIC/HEIF photos are not accepted")
    assert "JPEG" in problem


def test_truncated_jpeg_is_refused() -> None:
    noise = Image.effect_noise((64, 64), 60).convert("RGB")
    data = encode(noise, "JPEG", quality=95)
    assert refusal(data[: len(data) // 2]) == (
        "the image could not be read: the file is damaged or incomplete"
    )


def test_corrupt_png_is_refused() -> None:
    data = bytearray(encode(Image.effect_noise((64, 64), 60), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 40] ^= 0xFF  # the chunk's checksum no longer matches
    assert "damaged or incomplete" in refusal(bytes(data))


def test_jpeg_header_alone_is_refused() -> None:
    data = encode(Image.new("RGB", (8, 8)), "JPEG")
    assert "damaged or incomplete" in refusal(data[:200])


def png_claiming_size(width: int, height: int) -> bytes:
    """A 1×1 PNG whose header (with a valid checksum) claims another size."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_absurd_dimensions_are_refused_before_decoding() -> None:
    problem = refusal(png_claiming_size(7000, 7000))
    assert problem == (
        "the image is 7000 × 7000 pixels (49 megapixels); the largest accepted is 25 megapixels"
    )


def test_decompression_bomb_is_refused() -> None:
    problem = refusal(png_claiming_size(100_000, 100_000))
    assert problem == "the image is far too large to process; the largest accepted is 25 megapixels"


def test_pixel_limit_can_be_lowered() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert refusal(data, photo_max_pixels=5_000) == (
        "the image is 100 × 100 pixels (0.01 megapixels); the largest accepted is 0.005 megapixels"
    )


def test_pillow_bomb_warning_turned_into_an_error_is_a_refusal_too() -> None:
    # Past 89 megapixels Pillow warns; under `python -W error` the warning is raised instead.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        problem = refusal(png_claiming_size(10_000, 10_000))
    assert problem == "the image is far too large to process; the largest accepted is 25 megapixels"


# The attacks on memory. Decoding is counted by wrapping Pillow's real ImageFile.load: every
# photo below is decoded by Pillow itself, the wrapper only watches.


@dataclass
class Decodes:
    """Decodes seen in this test: the size each ran at, and how many ran at once at most."""

    sizes: list[tuple[int, int]] = field(default_factory=list)
    active: int = 0
    peak: int = 0
    # A decode waits (at most `hold` seconds) for more than this many to be running, so
    # that whatever overlap the code allows does happen, however fast the machine.
    overlap_wanted: int = 0
    hold: float = 0.0
    changed: threading.Condition = field(default_factory=threading.Condition)
    # Called as each decode starts, to look at the rest of the process at that moment.
    on_decode: Callable[[], None] | None = None


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Decodes:
    seen = Decodes()
    real_load = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> Any:
        if not self.tile:  # already decoded: only the pixel access object is returned
            return real_load(self)
        if seen.on_decode is not None:
            seen.on_decode()
        with seen.changed:
            seen.sizes.append(self.size)
            seen.active += 1
            seen.peak = max(seen.peak, seen.active)
            seen.changed.notify_all()
            seen.changed.wait_for(lambda: seen.active > seen.overlap_wanted, timeout=seen.hold)
        try:
            return real_load(self)
        finally:
            with seen.changed:
                seen.active -= 1
                seen.changed.notify_all()

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


FORTY_MEGAPIXELS = (7745, 5164)  # 39,995,180 pixels


@pytest.fixture(scope="module")
def forty_megapixel_png() -> bytes:
    """The attack: a photo of one colour, 40 megapixels in about 125 KB of PNG."""
    return encode(Image.new("RGB", FORTY_MEGAPIXELS, (120, 120, 120)), "PNG")


def test_forty_megapixel_png_of_kilobytes_is_refused_before_any_decoding(
    forty_megapixel_png: bytes, decodes: Decodes
) -> None:
    assert len(forty_megapixel_png) < 200_000

    problem = refusal(forty_megapixel_png)

    assert problem == (
        "the image is 7745 × 5164 pixels (40 megapixels); the largest accepted is 25 megapixels"
    )
    assert decodes.sizes == []


def test_huge_jpeg_is_refused_from_its_header(decodes: Decodes) -> None:
    data = encode(Image.new("RGB", (6400, 4800), (90, 140, 60)), "JPEG")

    problem = refusal(data)

    assert problem == (
        "the image is 6400 × 4800 pixels (30.7 megapixels); the largest accepted is 25 megapixels"
    )
    assert decodes.sizes == []


def test_pixel_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("RGB", (1200, 1000)), "JPEG")
    assert process_photo(data, declared_type=None, intake=IntakeSettings()).width == 1200

    monkeypatch.setenv("ISSUEMAP_PHOTO_MAX_PIXELS", "1000000")

    assert refusal(data) == (
        "the image is 1200 × 1000 pixels (1.2 megapixels); the largest accepted is 1 megapixels"
    )


def test_phone_jpeg_is_decoded_at_half_scale_for_its_public_copy(decodes: Decodes) -> None:
    # An iPhone's default 24 megapixels (within the default limit), taken sideways: stored
    # landscape, shown portrait (orientation 6).
    data = encode(two_colour((5712, 4284)), "JPEG", exif=camera_exif(orientation=6))

    photo = process_photo(data, declared_type="image/jpeg", intake=INTAKE)

    assert decodes.sizes == [(2856, 2142)]  # libjpeg's 1/2 scale, still above 2048 px
    assert (photo.width, photo.height) == (1536, 2048)
    assert photo.original_bytes == data
    assert photo.gps == pytest.approx((LAT, LON), abs=1e-6)
    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.size == (1536, 2048)
        top, bottom = public.getpixel((768, 100)), public.getpixel((768, 1948))
    assert top[0] > 200 and top[2] < 60  # the red half is on top, as the phone showed it
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_public_copy_of_a_large_png_is_scaled_down(mode: str) -> None:
    image = two_colour((1000, 500), mode="RGB").convert(mode)
    data = encode(image, "PNG", **({"transparency": 0} if mode == "P" else {}))

    photo = process_photo(
        data, declared_type=None, intake=IntakeSettings(photo_public_max_edge=256)
    )

    assert (photo.width, photo.height) == (256, 128)
    assert photo.original_bytes == data
    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.mode == mode
        assert public.size == (256, 128)


def test_photos_are_decoded_at_most_photo_workers_at_a_time(
    monkeypatch: pytest.MonkeyPatch, decodes: Decodes
) -> None:
    monkeypatch.setenv("ISSUEMAP_PHOTO_WORKERS", "3")
    intake = IntakeSettings()
    photos = [encode(Image.new("RGB", (800, 600), (i, 0, 0)), "JPEG") for i in range(8)]
    decodes.overlap_wanted, decodes.hold = intake.photo_workers, 0.2

    with ThreadPoolExecutor(max_workers=len(photos)) as pool:
        done = list(pool.map(lambda d: process_photo(d, declared_type=None, intake=intake), photos))

    assert [p.sha256 for p in done] == [hashlib.sha256(d).hexdigest() for d in photos]
    assert len(decodes.sizes) == len(photos)
    assert decodes.peak == 3


def test_report_with_a_forty_megapixel_photo_is_refused_and_nothing_is_stored(
    city_app: Any, engine: Engine, forty_megapixel_png: bytes
) -> None:
    client, _, _ = city_app
    fine = encode(Image.new("RGB", (64, 48), (200, 30, 30)), "JPEG")

    answer = client.post(
        "/api/reports",
        data={"category": "road", "description": "flat grey", "lat": "8.405", "lon": "100.011"},
        files=[
            ("photo", ("fine.jpg", fine, "image/jpeg")),
            ("photo", ("grey.png", forty_megapixel_png, "image/png")),
        ],
    )

    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "photo"
    assert "7745 × 5164 pixels" in answer.json()["detail"]
    assert "the largest accepted is 25 megapixels" in answer.json()["detail"]
    assert count_rows(engine, "reports") == 0
    assert count_rows(engine, "report_photos") == 0


def test_after_photo_of_forty_megapixels_is_refused_and_the_status_stays(
    city_app: Any, engine: Engine, forty_megapixel_png: bytes
) -> None:
    client, _, keys = city_app
    report = client.post(
        "/api/reports",
        json={"category": "road", "description": "hole", "lat": 8.405, "lon": 100.011},
    ).json()["id"]

    answer = client.post(
        f"/api/reports/{report}/status",
        data={"status": "acknowledged"},
        files={"photo": ("after.png", forty_megapixel_png, "image/png")},
        headers={"X-API-Key": keys.t1},
    )

    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "photo"
    assert "the largest accepted is 25 megapixels" in answer.json()["detail"]
    assert client.get(f"/api/reports/{report}").json()["status"] == "open"
    assert count_rows(engine, "report_photos") == 0


def count_rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.mark.parametrize("idempotency_key", [None, "photo-report-1"])
def test_no_database_connection_is_held_while_photos_are_decoded(
    city_app: Any, decodes: Decodes, idempotency_key: str | None
) -> None:
    # Photos may wait their turn to be decoded; a connection held meanwhile is one that
    # intake and health checks cannot have.
    client, _, _ = city_app
    pool = app_state(client.app).engine.pool
    before = pool.checkedout()
    held: list[int] = []
    decodes.on_decode = lambda: held.append(pool.checkedout())
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}

    answer = client.post(
        "/api/reports",
        data={"category": "road", "description": "hole", "lat": "8.405", "lon": "100.011"},
        files=[("photo", (f"p{i}.jpg", phone_jpeg(), "image/jpeg")) for i in range(3)],
        headers=headers,
    )

    assert answer.status_code == 201, answer.text
    assert held == [before] * 3


def test_idempotency_key_still_tells_photo_reports_apart(city_app: Any, engine: Engine) -> None:
    # Photos are hashed as they are read instead of being copied into one fingerprint.
    client, _, _ = city_app
    form = {"category": "road", "description": "hole", "lat": "8.405", "lon": "100.011"}
    red, blue = (encode(Image.new("RGB", (64, 48), c), "JPEG") for c in ("red", "blue"))

    def post(photo: bytes) -> Any:
        return client.post(
            "/api/reports",
            data=form,
            files={"photo": ("p.jpg", photo, "image/jpeg")},
            headers={"Idempotency-Key": "photo-retry"},
        )

    first, retry, other = post(red), post(red), post(blue)

    assert first.status_code == retry.status_code == 201
    assert retry.json()["id"] == first.json()["id"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409
    assert count_rows(engine, "report_photos") == 1
