"""Photo memory benchmark: 8 concurrent reports of 5 worst-case photos each, against one worker.

Run with ``.venv/bin/python bench/photo_memory.py``. It starts a throwaway PostgreSQL
cluster, loads the demo city, and for each kind of photo starts a fresh web server (one
uvicorn process, the app as ``issuemap serve`` builds it), files one small report with a
photo to warm it up, then sends 8 reports at once, each with 5 copies of the photo, over
loopback. It prints the answers by status and the server process's memory from
``/proc/PID/status``: resident size before, peak during (VmHWM, reset after the warm-up)
and after, with the peak's growth over the 1 GB ceiling the service must stay under.

The photos are the costliest to decode per byte sent: a single colour compresses to
almost nothing, yet every pixel costs up to 4 bytes once decoded.

* ``png-40mp``: the reported attack, a 40-megapixel PNG of about 125 KB;
* ``png-rgba-limit``: an RGBA PNG just under the pixel limit (``ISSUEMAP_PHOTO_MAX_PIXELS``),
  the largest one accepted;
* ``jpeg-limit``: a JPEG just under the pixel limit;
* ``jpeg-noise-limit``: the same size of JPEG made of noise, as large in bytes as
  ``ISSUEMAP_PHOTO_MAX_BYTES`` lets it be, where the uploads themselves weigh most.

``--photo-workers`` and ``--max-pixels`` set ``ISSUEMAP_PHOTO_WORKERS`` and
``ISSUEMAP_PHOTO_MAX_PIXELS`` for the server; without them it uses its defaults. The server
imports the app from the current directory, so running the script from another checkout
(with ``PYTHONPATH`` set to it) measures that code instead; code that predates these
settings ignores them.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import serving
from PIL import Image

from geo.db.engine import make_engine, upgrade
from geo.demo.city import load_demo_city
from geo.settings import IntakeSettings

Case = tuple[str, bytes, str]
CEILING_MB = 1024.0
REPORTS = 8
PHOTOS_PER_REPORT = 5
# Inside the demo city, by its railway station.
FORM = {"category": "road", "description": "photo memory bench", "lat": "8.432", "lon": "99.9634"}


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak resident size) of a process, in MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current resident size (Linux 4.0 and later)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def flat_png(size: tuple[int, int], mode: str) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "grey").save(out, format="PNG")
    return out.getvalue()


def flat_jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "grey").save(out, format="JPEG", quality=85)
    return out.getvalue()


def noisy_jpeg(size: tuple[int, int], max_bytes: int) -> bytes:
    """A JPEG of noise, at the best quality that stays within ``max_bytes``."""
    noise = Image.merge("RGB", [Image.effect_noise(size, 64) for _ in range(3)])
    for quality in range(95, 0, -5):
        out = io.BytesIO()
        noise.save(out, format="JPEG", quality=quality)
        if out.tell() <= max_bytes:
            return out.getvalue()
    raise ValueError("no quality makes this noise small enough")


def just_under(pixels: int) -> tuple[int, int]:
    """A 4:3 size of at most ``pixels`` pixels, as close to it as a 4:3 size gets."""
    unit = math.isqrt(pixels // 12)
    return 4 * unit, 3 * unit


def photos(max_pixels: int, max_bytes: int, names: list[str] | None) -> Iterator[Case]:
    """Each worst case asked for: its name, the file and its content type."""
    limit = just_under(max_pixels)
    cases: dict[str, Callable[[], tuple[bytes, str]]] = {
        "png-40mp": lambda: (flat_png((7745, 5164), "RGB"), "image/png"),
        "png-rgba-limit": lambda: (flat_png(limit, "RGBA"), "image/png"),
        "jpeg-limit": lambda: (flat_jpeg(limit), "image/jpeg"),
        "jpeg-noise-limit": lambda: (noisy_jpeg(limit, max_bytes), "image/jpeg"),
    }
    for name, make in cases.items():
        if not names or name in names:
            yield name, *make()


@contextmanager
def server(url: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """One uvicorn process serving the app on a free port: (base URL, its pid)."""
    port = serving.free_port()
    # Many photos from one address: a report limit they never reach.
    env = env | {"ISSUEMAP_DATABASE_URL": url, "ISSUEMAP_RATE_LIMIT_ANONYMOUS": "1000000000/minute"}
    with serving.running(serving.uvicorn_command(port, 1), port=port, env=env) as (base, process):
        yield base, process.pid


def post_report(base: str, files: list[tuple[str, tuple[str, bytes, str]]]) -> int:
    answer = httpx.post(f"{base}/api/reports", data=FORM, files=files, timeout=600)
    return answer.status_code


def run_case(url: str, env: dict[str, str], name: str, photo: bytes, content_type: str) -> None:
    """Measure one kind of photo on a fresh server and print the figures."""
    suffix = "png" if content_type == "image/png" else "jpg"
    files = [("photo", (f"p{i}.{suffix}", photo, content_type)) for i in range(PHOTOS_PER_REPORT)]
    warm_up = [("photo", ("warm-up.jpg", flat_jpeg((64, 48)), "image/jpeg"))]
    with server(url, env) as (base, pid):
        if post_report(base, warm_up) != 201:
            raise RuntimeError("the warm-up report was refused")
        time.sleep(0.5)
        before = memory_mb(pid)["VmRSS"]
        reset_peak(pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=REPORTS) as pool:
            statuses = Counter(pool.map(lambda _: post_report(base, files), range(REPORTS)))
        seconds = time.perf_counter() - started
        peak = memory_mb(pid)["VmHWM"]
        time.sleep(2.0)  # the answers are sent; give the worker a moment to settle
        after = memory_mb(pid)["VmRSS"]
    answers = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
    print(
        f"{name:16} {len(photo) / 1024:6.0f} KB: {answers:8} in {seconds:5.1f} s; "
        f"RSS {before:4.0f} MB -> peak {peak:5.0f} MB -> after {after:5.0f} MB; "
        f"peak = {peak / CEILING_MB:.2f} of the {CEILING_MB:.0f} MB ceiling "
        f"(growth {(peak - before) / CEILING_MB:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo-workers", type=int, default=None)
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--cases", nargs="*", default=None, help="Names of the cases to run.")
    args = parser.parse_args()
    env: dict[str, str] = {"ISSUEMAP_LOAD_DEMO": "false"}
    if args.photo_workers is not None:
        env["ISSUEMAP_PHOTO_WORKERS"] = str(args.photo_workers)
    if args.max_pixels is not None:
        env["ISSUEMAP_PHOTO_MAX_PIXELS"] = str(args.max_pixels)
    intake = IntakeSettings()
    max_pixels = args.max_pixels or getattr(intake, "photo_max_pixels", 40_000_000)

    with serving.cluster("issuemap-photos-", durable=False) as cluster:
        cluster.ensure_database("photos")
        url = cluster.url("photos")
        upgrade(url)
        engine = make_engine(url, pool_size=1)
        load_demo_city(engine)
        engine.dispose()
        print(
            f"{REPORTS} concurrent reports x {PHOTOS_PER_REPORT} photos, one server process; "
            f"pixel limit {max_pixels / 1e6:g} MP, photo workers "
            f"{env.get('ISSUEMAP_PHOTO_WORKERS', 'default')}"
        )
        for name, photo, content_type in photos(max_pixels, intake.photo_max_bytes, args.cases):
            run_case(url, env, name, photo, content_type)


if __name__ == "__main__":
    main()
