"""Where the pages' scripts and stylesheets come from: our own copies, never a CDN.

folium's element classes name their assets as CDN URLs (``default_js``, ``default_css``).
``vendor_path`` reads the npm package, version and file out of each such URL, so the
mapping to the copies ``scripts/vendor_assets.sh`` puts under ``vendor/`` follows folium's
own definitions: a folium release that moves to another version of a package fails loudly
here (and in ``tests/test_assets.py``) instead of loading a file we do not have.

Every static file is served under a content-hashed name (``leaflet.<hash>.js``) with a
long-lived immutable cache header, and precompressed: ``build_static`` writes those copies,
with gzip and brotli variants, and returns the ``StaticAssets`` manifest the pages take their
URLs from. The API registers the manifest it serves with ``use_static_assets``; the page
templates call ``static_url``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import folium
from servestatic.compress import Compressor  # type: ignore[import-untyped]


class VendorFile(NamedTuple):
    """One file of an npm package (or of folium itself), as a CDN URL names it."""

    package: str
    version: str | None
    path: str

    @property
    def local(self) -> str:
        """The file's path in the static folder: ``vendor/<package>/<path>``."""
        return f"vendor/{self.package}/{self.path}"


_NPM_CDN = re.compile(
    r"https://(?:cdn\.jsdelivr\.net/npm|unpkg\.com)/"
    r"(?P<package>(?:@[^/@]+/)?[^/@]+)@(?P<version>[^/]+)/(?P<path>.+)"
)
# cdnjs names a library as its project does and serves the npm package's dist/ folder.
_CDNJS = re.compile(
    r"https://cdnjs\.cloudflare\.com/ajax/libs/(?P<package>[^/]+)/(?P<version>[^/]+)/(?P<path>.+)"
)
# folium's own scripts (the heat layer's) are package files of the installed folium.
_FOLIUM = re.compile(
    r"https://cdn\.jsdelivr\.net/gh/python-visualization/folium(?:@[^/]+)?/folium/"
    r"(?P<path>templates/.+)"
)


def vendor_path(url: str) -> VendorFile:
    """The npm package, version and file a CDN ``url`` of folium's stands for.

    Raises ``ValueError`` for a URL of no CDN we know.
    """
    if match := _NPM_CDN.fullmatch(url):
        return VendorFile(match["package"], match["version"], match["path"])
    if match := _CDNJS.fullmatch(url):
        return VendorFile(match["package"].lower(), match["version"], "dist/" + match["path"])
    if match := _FOLIUM.fullmatch(url):
        return VendorFile("folium", version("folium"), match["path"])
    raise ValueError(f"{url}: no rule says which npm package file this is (geo.maps.assets)")


LEAFLET_ONLY = frozenset({"leaflet", "leaflet_css"})
"""What a page needs of ``folium.Map``'s own assets. The rest (jQuery, Bootstrap, Font
Awesome, awesome-markers) serve ``folium.Icon`` and Bootstrap-styled popups; our markers are
Leaflet ``divIcon``s and our panels carry their own styles, so pages leave them out."""

_HASHED = re.compile(r"\.[0-9a-f]{12}\.[A-Za-z0-9]+$")
"""A content-hashed name, ``<stem>.<12 hex digits>.<ext>``: such a file never changes."""


def is_hashed(name: str) -> bool:
    """Whether ``name`` is a content-hashed file name (served as immutable)."""
    return _HASHED.search(name) is not None


@dataclass(frozen=True)
class StaticAssets:
    """The URLs of the static files: each file's content-hashed name under ``prefix``.

    ``hashed`` maps a file's path in the static folder to its hashed path; ``versions`` is
    the version of each vendored package. Without a manifest (``hashed`` empty) URLs are the
    plain paths, as for a page rendered outside the service.
    """

    prefix: str = "/static"
    hashed: Mapping[str, str] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        """The URL of the static file at ``path`` (``"vendor/leaflet/dist/leaflet.js"``)."""
        if not self.hashed:
            return f"{self.prefix}/{path}"
        try:
            return f"{self.prefix}/{self.hashed[path]}"
        except KeyError:
            raise ValueError(
                f"{path} is not a static file; scripts/vendor_assets.sh vendors what pages use"
            ) from None

    def vendored(self, url: str) -> str:
        """The URL of our copy of folium's CDN asset ``url``."""
        file = vendor_path(url)
        have = self.versions.get(file.package)
        if self.hashed and have != file.version:
            raise ValueError(
                f"folium asks for {file.package} {file.version} ({url}), but "
                f"{have or 'no version'} is vendored: update package.json (npm) to match"
            )
        return self.url(file.local)


_current = StaticAssets()


def use_static_assets(assets: StaticAssets) -> None:
    """Make ``assets`` the manifest pages take their URLs from (the service's, at start-up).

    Module-wide, like the page templates it serves: every app of a process serves the same
    package folder, so they share one manifest.
    """
    global _current
    _current = assets


def static_url(path: str) -> str:
    """The URL of the static file at ``path``, content-hashed when the service serves it."""
    return _current.url(path)


def walk(element: Any) -> Iterable[Any]:
    """``element`` and every element below it, depth first."""
    yield element
    for child in list(getattr(element, "_children", {}).values()):
        yield from walk(child)


def localise_assets(fmap: folium.Map, assets: StaticAssets | None = None) -> folium.Map:
    """Point every script and stylesheet of ``fmap``'s page at our copies, and drop the unused.

    Call it once everything is added, before rendering. An asset we have not vendored is
    an error rather than a silent CDN request.
    """
    assets = assets or _current
    for element in walk(fmap.get_root()):
        for attribute in ("default_js", "default_css"):
            declared = getattr(element, attribute, None)
            if not declared:
                continue
            if isinstance(element, folium.Map):
                declared = [(name, url) for name, url in declared if name in LEAFLET_ONLY]
            local = [
                (name, assets.vendored(url) if url.startswith(("http://", "https://")) else url)
                for name, url in declared
            ]
            # An instance attribute shadows the class-wide list, so other maps are untouched.
            setattr(element, attribute, local)
    return fmap


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _hashed_name(path: str, digest: str) -> str:
    stem, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        return f"{path}.{digest}"
    return f"{stem}.{digest}.{ext}"


def _same(path: Path, data: bytes) -> bool:
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def _install(files: Mapping[str, Path], dest: Path, *, stale: Iterable[Path] = ()) -> None:
    """Move ``files`` (name -> built file) into place: variants first, the file itself last.

    Each move is atomic, so a server starting meanwhile never reads half a file; the file
    itself comes last, so once it is there its compressed variants are too.
    """
    for old in stale:
        old.unlink(missing_ok=True)
    for suffix in (".br", ".gz", ""):
        for name, built in files.items():
            if name.endswith(suffix) and (suffix or not name.endswith((".br", ".gz"))):
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(built, target)


def build_static(source: Path, dest: Path, *, prefix: str = "/static") -> StaticAssets:
    """Copy every file under ``source`` to ``dest`` under its own and its hashed name.

    Each text file gets gzip and brotli variants (``servestatic``'s compressor), which the
    server sends to a browser that accepts them. Only what changed since the last build is
    written, so a second call costs a read of the files.
    """
    compressor = Compressor(use_zstd=False, quiet=True)
    hashed: dict[str, str] = {}
    versions: dict[str, str] = {}
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = file.relative_to(source).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # stamps and editor files
        data = file.read_bytes()
        name = _hashed_name(rel, _digest(data))
        hashed[rel] = name
        if rel.startswith("vendor/") and rel.endswith("/package.json") and rel.count("/") == 2:
            versions[rel.split("/")[1]] = json.loads(data)["version"]
        if (dest / name).is_file() and _same(dest / rel, data):
            continue
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest, prefix=".build-") as work:
            built = Path(work) / "file"
            built.write_bytes(data)
            variants = compressor.compress(built) if compressor.should_compress(rel) else []
            files: dict[str, Path] = {}
            for target in (name, rel):
                copy = Path(work) / f"{len(files)}"
                shutil.copyfile(built, copy)
                files[target] = copy
                for variant in variants:
                    suffix = variant[len(str(built)) :]
                    copy = Path(work) / f"{len(files)}"
                    shutil.copyfile(variant, copy)
                    files[target + suffix] = copy
            stale = [dest / (rel + s) for s in (".br", ".gz") if rel + s not in files]
            _install(files, dest, stale=stale)
    return StaticAssets(prefix=prefix, hashed=hashed, versions=versions)


if __name__ == "__main__":
    # scripts/vendor_assets.sh: python -m geo.maps.assets SOURCE DEST
    built = build_static(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"static: {len(built.hashed)} files in {sys.argv[2]}", file=sys.stderr)
