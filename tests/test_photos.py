"""Photo checks and the public copy: built in memory with Pillow, no database needed."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin, TiffImagePlugin
from shapely.geometry import Point

from geo.demo import demo_city_outline
from geo.errors import InvalidInputError
from geo.photos import MAX_PIXELS, ProcessedPhoto, gps_position, process_photo
from geo.settings import IntakeSettings

R = TiffImagePlugin.IFDRational
MAX_BYTES = IntakeSettings().photo_max_bytes

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
    photo = process_photo(data, declared_type="image/jpeg", max_bytes=MAX_BYTES)

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
    photo = process_photo(phone_jpeg(), declared_type=None, max_bytes=MAX_BYTES)

    assert photo.gps is not None
    lat, lon = photo.gps
    assert lat == pytest.approx(LAT, abs=1e-6)
    assert lon == pytest.approx(LON, abs=1e-6)
    assert (lat, lon) == pytest.approx((8.432, 99.9634), abs=1e-6)
    assert demo_city_outline().contains(Point(lon, lat))


def test_orientation_is_applied_before_the_metadata_goes() -> None:
    # Orientation 6: the camera was turned; viewers rotate the stored picture 90° clockwise,
    # which puts its left (red) half on top.
    photo = process_photo(phone_jpeg(orientation=6), declared_type=None, max_bytes=MAX_BYTES)

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

    photo = process_photo(data, declared_type="image/png", max_bytes=MAX_BYTES)

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

    photo = process_photo(data, declared_type="image/png", max_bytes=MAX_BYTES)

    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.mode == "P"
        assert public.info.get("transparency") == 0
    assert set(png_chunks(photo.public_bytes)) <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}


def test_webp_loses_exif_xmp_and_icc() -> None:
    data = encode(
        two_colour(), "WEBP", exif=camera_exif(), xmp=XMP, icc_profile=SRGB_ICC, quality=90
    )
    assert {b"EXIF", b"XMP ", b"ICCP"} <= set(webp_chunks(data))

    photo = process_photo(data, declared_type="image/webp", max_bytes=MAX_BYTES)

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

    photo = process_photo(data, declared_type="image/jpeg", max_bytes=MAX_BYTES)

    assert photo.content_type == "image/jpeg"
    assert photo.gps == pytest.approx((LAT, LON), abs=1e-6)
    assert_no_metadata(photo)
    with Image.open(io.BytesIO(photo.public_bytes)) as public:
        assert public.format == "JPEG"
        assert getattr(public, "n_frames", 1) == 1


def test_cmyk_jpeg_is_served_as_rgb() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")

    photo = process_photo(data, declared_type=None, max_bytes=MAX_BYTES)

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

    photo = process_photo(data, declared_type=None, max_bytes=MAX_BYTES)

    if expected is None:
        assert photo.gps is None
    else:
        assert photo.gps == pytest.approx(expected, abs=1e-6)
    with Image.open(io.BytesIO(data)) as image:
        assert gps_position(image.getexif()) == photo.gps


def test_photo_without_exif_has_no_position() -> None:
    data = encode(Image.new("RGB", (8, 8)), "JPEG")
    assert process_photo(data, declared_type=None, max_bytes=MAX_BYTES).gps is None


@pytest.mark.parametrize(
    "declared", [None, "", "application/octet-stream", "image/jpg", "IMAGE/JPEG; charset=binary"]
)
def test_declared_type_that_agrees_or_says_nothing_is_accepted(declared: str | None) -> None:
    data = encode(Image.new("RGB", (8, 8)), "JPEG")
    assert process_photo(data, declared_type=declared, max_bytes=MAX_BYTES).content_type == (
        "image/jpeg"
    )


@pytest.mark.parametrize(
    ("fmt", "declared"),
    [("JPEG", "image/png"), ("PNG", "image/jpeg"), ("WEBP", "image/png"), ("JPEG", "text/plain")],
)
def test_declared_type_that_contradicts_the_content_is_refused(fmt: str, declared: str) -> None:
    data = encode(Image.new("RGB", (8, 8)), fmt)

    with pytest.raises(InvalidInputError) as refused:
        process_photo(data, declared_type=declared, max_bytes=MAX_BYTES)

    assert refused.value.field == "photo"
    assert f"sent as {declared!r}" in refused.value.problem


def refusal(data: bytes, *, max_bytes: int = MAX_BYTES, **options: Any) -> str:
    with pytest.raises(InvalidInputError) as refused:
        process_photo(data, declared_type=None, max_bytes=max_bytes, **options)
    assert refused.value.field == "photo"
    return refused.value.problem


def test_empty_file_is_refused() -> None:
    assert refusal(b"") == "the file is empty"


def test_file_over_the_limit_is_refused_naming_the_limit_in_mb() -> None:
    data = b"\xff\xd8" + bytes(3 * 1024 * 1024)
    assert "larger than the 2.5 MB limit" in refusal(data, max_bytes=5 * 1024 * 1024 // 2)
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
    assert MAX_PIXELS == 40_000_000
    problem = refusal(png_claiming_size(7000, 7000))
    assert problem == (
        "the image is 7000 × 7000 pixels (49 megapixels); the largest accepted is 40 megapixels"
    )


def test_decompression_bomb_is_refused() -> None:
    problem = refusal(png_claiming_size(100_000, 100_000))
    assert problem == "the image is far too large to process; the largest accepted is 40 megapixels"


def test_pixel_limit_can_be_lowered() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert refusal(data, max_pixels=5_000) == (
        "the image is 100 × 100 pixels (0.01 megapixels); the largest accepted is 0.005 megapixels"
    )
