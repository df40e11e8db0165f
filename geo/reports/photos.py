"""Uploaded photos: check them, keep the original for staff, make a public copy without metadata.

``process_photo`` takes the bytes of an upload and returns a ``ProcessedPhoto`` ready to be
stored as a ``geo.db.schema.ReportPhoto``. The format is read from the bytes by Pillow; the file
name and the declared content type are never trusted, and a declared type that contradicts
the content is refused. Only JPEG, PNG and WebP are accepted.

The public copy is decoded and encoded again, so nothing of the original file survives in it
but the pixels: no EXIF (GPS position, camera serial number, owner, timestamps), no XMP, no
comments or text chunks, no ICC profile. The EXIF orientation is applied first, so the copy
still shows upright, and pixels described by an ICC profile are converted to sRGB so they
keep their colours without it. The GPS position in the original's EXIF, if any, is returned
separately as a hint for the report's location.

Decoding is where a photo costs memory: up to 4 bytes a pixel, so a PNG of a few kilobytes
that claims 40 megapixels takes hundreds of megabytes. Hence three bounds, all from
``IntakeSettings``: the pixel count is read from the header and refused above
``photo_max_pixels`` before any pixel is decoded; the public copy is at most
``photo_public_max_edge`` pixels on its longer side, and a JPEG is decoded straight at the
smallest scale that still covers it (libjpeg's draft mode); and at most ``photo_workers``
photos are decoded at once in a process, whatever the number of requests. The big buffers
are freed as soon as they are no longer needed, and the C allocator is told to give them
back to the system when they are (see ``_return_big_buffers_to_the_system``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import io
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Real
from typing import Any, Final

from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

from geo.errors import InvalidInputError, Message
from geo.i18n import N_
from geo.settings import IntakeSettings

CONTENT_TYPES: Final[Mapping[str, str]] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
}
"""Pillow format names we accept, and the content type each is stored and served with."""

JPEG_QUALITY: Final = 85
WEBP_QUALITY: Final = 85

_MIB = 1024 * 1024

# Declared types that name each accepted format, including common non-standard spellings.
_DECLARED: Final[Mapping[str, str]] = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/png": "PNG",
    "image/x-png": "PNG",
    "image/webp": "WEBP",
}
# Declared types that say nothing about the content (what a form sends for "a file").
_UNINFORMATIVE: Final = frozenset({"", "application/octet-stream", "binary/octet-stream"})

# Formats Pillow may name in a refusal; only their headers are read, nothing is decoded.
_REFUSED_FORMATS: Final = ("BMP", "GIF", "ICO", "PSD", "TIFF")
_REFUSED_NAMES: Final[Mapping[str, str]] = {"PSD": "Photoshop", "ICO": "icon"}

# PNG info keys that describe pixels rather than the photo's history; everything else goes.
_KEPT_INFO: Final = ("transparency",)

# glibc's mallopt parameter (malloc.h) and the size from which every allocation gets a
# mapping of its own, unmapped when freed. Decoded pixels are far above it: Pillow keeps
# them in blocks of up to 16 MB.
_M_MMAP_THRESHOLD: Final = -3
_MMAP_THRESHOLD: Final = 4 * _MIB


class _WorkGate:
    """Lets at most ``limit`` photos be decoded at once in this process; the others wait.

    One gate for the whole process, because memory is shared by the whole process: every
    request thread of every app in it passes through the same count.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._active = 0

    @contextmanager
    def slot(self, limit: int) -> Iterator[None]:
        """Hold one of ``limit`` places for the duration of the ``with`` block."""
        with self._changed:
            self._changed.wait_for(lambda: self._active < limit)
            self._active += 1
        try:
            yield
        finally:
            with self._changed:
                self._active -= 1
                # Callers may pass different limits; wake them all to let each one re-check.
                self._changed.notify_all()


_IMAGE_WORK: Final = _WorkGate()


@dataclass(frozen=True, slots=True)
class ProcessedPhoto:
    """A checked photo: the original as uploaded and a public copy without metadata.

    Attributes
    ----------
    content_type
        ``image/jpeg``, ``image/png`` or ``image/webp``, read from the bytes; both copies
        have this format.
    width, height
        Size of the public copy in pixels, that is after the EXIF orientation was applied.
    sha256
        Hex SHA-256 of ``original_bytes``, to spot the same file uploaded twice.
    public_bytes
        The photo encoded again without any metadata; the only copy ever shown publicly.
    original_bytes
        The upload exactly as received, kept for staff.
    gps
        ``(lat, lon)`` in decimal degrees from the original's EXIF, or None when it has no
        usable position.
    """

    content_type: str
    width: int
    height: int
    sha256: str
    public_bytes: bytes
    original_bytes: bytes
    gps: tuple[float, float] | None


def process_photo(
    data: bytes, *, declared_type: str | None, intake: IntakeSettings
) -> ProcessedPhoto:
    """Check an uploaded photo and make its public copy.

    Parameters
    ----------
    data
        The uploaded file, whole.
    declared_type
        The content type the client sent, if any. It is only compared with what the bytes
        are: when it names another format the photo is refused.
    intake
        The limits: ``photo_max_bytes``, ``photo_max_pixels`` (checked before any pixel is
        decoded), ``photo_public_max_edge`` and ``photo_workers``.

    Raises
    ------
    InvalidInputError
        With field ``photo`` and a sentence saying why, when the photo is empty, too large,
        not a JPEG, PNG or WebP image, damaged, or of absurd dimensions, or when its
        declared type contradicts its content.
    """
    if not data:
        raise InvalidInputError("photo", N_("the file is empty"))
    if len(data) > intake.photo_max_bytes:
        raise InvalidInputError(
            "photo",
            N_("the file is larger than the {limit} MB limit; please send a smaller photo"),
            limit=_megabytes(intake.photo_max_bytes),
        )
    pillow_format = _identify(data, max_pixels=intake.photo_max_pixels)
    _check_declared_type(declared_type, pillow_format)
    _return_big_buffers_to_the_system()
    with _IMAGE_WORK.slot(intake.photo_workers):
        gps, public_bytes, size = _public_copy(
            data, pillow_format, max_edge=intake.photo_public_max_edge
        )
    return ProcessedPhoto(
        content_type=CONTENT_TYPES[pillow_format],
        width=size[0],
        height=size[1],
        sha256=hashlib.sha256(data).hexdigest(),
        public_bytes=public_bytes,
        original_bytes=data,
        gps=gps,
    )


def _public_copy(
    data: bytes, pillow_format: str, *, max_edge: int
) -> tuple[tuple[float, float] | None, bytes, tuple[int, int]]:
    """The GPS position, and the public copy (encoded) and its size.

    The decoded pixels are scaled down in place before anything else is done with them, so
    only decoding and the scaling itself work at full size; every later step works on the
    small copy.
    """
    image = _open(data)
    try:
        if pillow_format == "JPEG":
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale as cheaply as it would skim the file:
            # the largest reduction that still covers the public size is taken.
            image.draft(image.mode, _fitted(image.size, max_edge))
        try:
            image.load()
        except Exception as error:
            raise InvalidInputError("photo", _damaged()) from error
        gps = gps_position(_exif(image))
        image.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
        public = _public_image(image, pillow_format)
        buffer = io.BytesIO()
        public.save(buffer, format=pillow_format, **_save_options(pillow_format))
        return gps, buffer.getvalue(), public.size
    finally:
        image.close()


def _fitted(size: tuple[int, int], max_edge: int) -> tuple[int, int]:
    """``size`` scaled down, keeping its shape, to fit a ``max_edge`` square (never up)."""
    width, height = size
    scale = min(1.0, max_edge / max(width, height))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


@functools.cache
def _return_big_buffers_to_the_system() -> None:
    """Have glibc unmap every large buffer when it is freed; done once per process.

    By default glibc raises its mmap threshold to the size of each large buffer freed (up
    to 32 MB) and serves later ones from the heap of the thread that asks. Freed, a photo's
    pixels then stay at the top of that thread's heap, where not even ``malloc_trim``
    reaches them, and a worker keeps most of its peak for good. A fixed threshold turns
    that off: buffers of 4 MB or more get a mapping of their own and go back to the system
    as soon as they are freed (bench/photo_memory.py). Elsewhere (musl, macOS) nothing is
    changed.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def _megabytes(n: int) -> str:
    """``n`` bytes in MB (MiB), with at most three significant digits: '10', '2.5', '0.001'."""
    return f"{n / _MIB:.3g}"


def _open(data: bytes) -> Image.Image:
    """Open ``data`` lazily (header only) as one of the accepted formats."""
    # A JPEG holding several pictures (the MPO files many phones write) opens as "MPO".
    return Image.open(io.BytesIO(data), formats=list(CONTENT_TYPES))


def _identify(data: bytes, *, max_pixels: int) -> str:
    """The accepted Pillow format of ``data``; refuse other formats, bombs and damaged files."""
    megapixels = max_pixels / 1e6
    try:
        image = _open(data)
    # The warning is an exception too when warnings are turned into errors (python -W error).
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidInputError(
            "photo",
            N_(
                "the image is far too large to process; "
                "the largest accepted is {megapixels:g} megapixels"
            ),
            megapixels=megapixels,
        ) from error
    except UnidentifiedImageError as error:
        raise InvalidInputError("photo", _unsupported(data)) from error
    except Exception as error:
        # Pillow's header parsers raise many kinds of error on malformed input.
        raise InvalidInputError("photo", _damaged()) from error
    with image:
        pillow_format = "JPEG" if image.format == "MPO" else str(image.format)
        width, height = image.size
        if width < 1 or height < 1 or width * height > max_pixels:
            raise InvalidInputError(
                "photo",
                N_(
                    "the image is {width} × {height} pixels ({size:.3g} megapixels); "
                    "the largest accepted is {megapixels:g} megapixels"
                ),
                width=width,
                height=height,
                size=width * height / 1e6,
                megapixels=megapixels,
            )
        try:
            image.verify()  # checksums and structure, before any pixel is decoded
        except Exception as error:
            raise InvalidInputError("photo", _damaged()) from error
    return pillow_format


def _unsupported(data: bytes) -> Message:
    """Why an upload Pillow cannot open as an accepted format is refused, in one sentence."""
    if data[4:8] == b"ftyp":
        return Message(
            N_(
                "HEIC/HEIF photos are not accepted; please send a JPEG, PNG or WebP image "
                "(most phones can save photos as JPEG)"
            )
        )
    try:
        with Image.open(io.BytesIO(data), formats=list(_REFUSED_FORMATS)) as other:
            name = _REFUSED_NAMES.get(str(other.format), str(other.format))
    except Exception:  # not one of the formats we can name either
        return Message(N_("the file is not a JPEG, PNG or WebP image"))
    return Message(
        N_("{name} images are not accepted; please send a JPEG, PNG or WebP image"),
        {"name": name},
    )


def _damaged() -> Message:
    """The refusal for a file that starts like an accepted image but cannot be decoded."""
    return Message(N_("the image could not be read: the file is damaged or incomplete"))


def _check_declared_type(declared_type: str | None, pillow_format: str) -> None:
    """Refuse when the client's content type names another format than the bytes hold."""
    if declared_type is None:
        return
    declared = declared_type.split(";", 1)[0].strip().lower()
    if declared in _UNINFORMATIVE or _DECLARED.get(declared) == pillow_format:
        return
    actual = CONTENT_TYPES[pillow_format]
    raise InvalidInputError(
        "photo",
        N_(
            "the file was sent as {declared!r} but it is a {actual} image; "
            "please send it again without renaming it"
        ),
        declared=declared,
        actual=actual,
    )


def _exif(image: Image.Image) -> Image.Exif:
    """The image's EXIF, or an empty one when it has none or it cannot be parsed."""
    try:
        return image.getexif()
    except Exception:  # a broken EXIF block must not cost the citizen their photo
        return Image.Exif()


def _public_image(image: Image.Image, pillow_format: str) -> Image.Image:
    """A copy of ``image``, turned upright, in sRGB, with no metadata left on it.

    ``image`` is already scaled down, so the copies made here are small.
    """
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # unreadable orientation: keep the pixels as stored
        upright = image.copy()
    upright = _to_srgb(upright, image.info.get("icc_profile"))
    clean = upright.copy()
    clean.info = {key: upright.info[key] for key in _KEPT_INFO if key in upright.info}
    if pillow_format == "JPEG" and clean.mode not in ("L", "RGB"):
        clean = clean.convert("RGB")
    return clean


def _to_srgb(image: Image.Image, icc_profile: object) -> Image.Image:
    """Convert pixels described by an ICC profile to sRGB, so the profile can be dropped."""
    if image.mode == "CMYK":
        target_mode = "RGB"
    elif image.mode in ("RGB", "RGBA"):
        target_mode = image.mode
    else:
        return image  # grey and palette profiles are rare and change little
    if isinstance(icc_profile, bytes) and icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            converted = ImageCms.profileToProfile(
                image, source, ImageCms.createProfile("sRGB"), outputMode=target_mode
            )
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: fall back to dropping it
        else:
            if converted is not None:
                return converted
    return image if image.mode == target_mode else image.convert(target_mode)


def _save_options(pillow_format: str) -> dict[str, Any]:
    """Encoder options for the public copy: explicit and empty metadata, sensible quality."""
    no_metadata: dict[str, Any] = {"exif": b"", "icc_profile": None}
    if pillow_format == "JPEG":
        return {**no_metadata, "quality": JPEG_QUALITY}
    if pillow_format == "WEBP":
        return {**no_metadata, "quality": WEBP_QUALITY}
    return no_metadata


def gps_position(exif: Image.Exif) -> tuple[float, float] | None:
    """``(lat, lon)`` in decimal degrees from an EXIF GPS block, or None.

    None when there is no GPS block, when latitude, longitude or their N/S/E/W references
    are missing or malformed, when a value is out of range, or at (0, 0), which cameras
    write when they had no fix.
    """
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # a malformed GPS block is common, and the position only a hint
        return None
    lat = _degrees(
        gps.get(ExifTags.GPS.GPSLatitude),
        gps.get(ExifTags.GPS.GPSLatitudeRef),
        hemispheres=("N", "S"),
        limit=90.0,
    )
    lon = _degrees(
        gps.get(ExifTags.GPS.GPSLongitude),
        gps.get(ExifTags.GPS.GPSLongitudeRef),
        hemispheres=("E", "W"),
        limit=180.0,
    )
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
        return None
    return lat, lon


def _degrees(
    value: object, ref: object, *, hemispheres: tuple[str, str], limit: float
) -> float | None:
    """Signed decimal degrees from EXIF degrees, minutes and seconds and a hemisphere letter."""
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    if not isinstance(ref, str):
        return None
    ref = ref.strip("\x00 ").upper()
    if ref not in hemispheres:
        return None
    if isinstance(value, Real):
        values: list[object] = [value]
    elif isinstance(value, tuple | list):
        values = list(value)
    else:
        return None
    try:
        parts = [float(part) for part in values]  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not 1 <= len(parts) <= 3 or not all(math.isfinite(p) and p >= 0.0 for p in parts):
        return None
    parts += [0.0] * (3 - len(parts))
    degrees = parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    if degrees > limit:
        return None
    return -degrees if ref == hemispheres[1] else degrees
