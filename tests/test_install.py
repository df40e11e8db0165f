"""A non-editable install needs nothing from the source checkout.

``pip install .`` puts issuemap into a fresh virtualenv; its third-party dependencies come
from this interpreter's site-packages, added behind the new environment's own (a ``.pth``
file), so the installed ``geo`` and ``api`` are the ones imported and the checkout is never
on the path. Run from another folder on an empty database, ``issuemap serve`` applies the
shipped migrations, loads the demo city, answers ``/healthz``, geocodes an address with the
shipped demo gazetteer, and serves map pages whose vendored scripts and stylesheets all load.

The project is copied first (what a source distribution holds, plus the vendored assets,
which ``scripts/vendor_assets.sh`` fetched), so the build never writes into the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import create_engine, text

from geo.db.cluster import LocalCluster
from geo.db.engine import alembic_config, normalise_url

pytestmark = pytest.mark.long_running

CHECKOUT = Path(__file__).resolve().parent.parent
VENDOR = CHECKOUT / "api" / "static" / "vendor"


@dataclass(frozen=True)
class Installed:
    """A virtualenv holding issuemap installed from a copy of the checkout."""

    root: Path
    venv: Path
    workdir: Path

    @property
    def issuemap(self) -> str:
        return str(self.venv / "bin" / "issuemap")

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a command: nothing of ours but what ``extra`` sets."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("ISSUEMAP_") and k not in {"PYTHONPATH", "VIRTUAL_ENV"}
        }
        return env | {"PATH": f"{self.venv / 'bin'}:{env.get('PATH', '')}"} | extra


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    if not (VENDOR / "leaflet" / "dist" / "leaflet.js").is_file():
        pytest.fail(f"{VENDOR} is empty: run scripts/vendor_assets.sh (make setup does)")
    # Not tmp_path: the web workers of a service started as root read the install as the
    # unprivileged service user.
    root = Path(tempfile.mkdtemp(prefix="issuemap-install-"))
    root.chmod(0o755)
    try:
        source = root / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(CHECKOUT / name, source / name)
        junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache")
        for package in ("geo", "api"):
            shutil.copytree(CHECKOUT / package, source / package, ignore=junk)
        venv = root / "venv"
        run([sys.executable, "-m", "venv", str(venv)], cwd=root)
        run([str(venv / "bin" / "pip"), "install", "--no-deps", "--quiet", "."], cwd=source)
        shutil.rmtree(source)
        # Third-party packages from this interpreter, behind the new environment's own: a .pth
        # line is appended to sys.path after the folder holding it, and the paths it adds are
        # not site folders, so this interpreter's editable-install hook is never read.
        [site] = (venv / "lib").glob("python3*/site-packages")
        dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (site / "zz_test_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
        workdir = root / "elsewhere"
        workdir.mkdir()
        yield Installed(root=root, venv=venv, workdir=workdir)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def empty_db(pg_cluster: LocalCluster) -> Iterator[str]:
    """An empty database (no PostGIS, no schema) that the service's user may reach."""
    if os.geteuid() == 0:
        from geo.cli.service import service_identity

        # Started as root, `issuemap serve` runs its web workers as this user.
        pg_cluster.admit(service_identity("issuemap", create=True).gid)
    name = f"install_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(user="postgres", host=pg_cluster.host, port=5432, dbname=name)
    janitor.init()
    try:
        yield pg_cluster.url(name)
    finally:
        janitor.drop()


def test_the_installed_package_is_imported_not_the_checkout(installed: Installed) -> None:
    code = "import api, geo, json, sys; print(json.dumps([geo.__file__, api.__file__, sys.path]))"
    out = run([str(installed.venv / "bin" / "python"), "-c", code], cwd=installed.workdir)
    geo_file, api_file, path = json.loads(out)
    assert Path(geo_file).is_relative_to(installed.venv), geo_file
    assert Path(api_file).is_relative_to(installed.venv), api_file
    assert str(CHECKOUT) not in path, path  # "" is the working folder, not the checkout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_installed_issuemap_serves_an_empty_database_maps_and_assets(
    installed: Installed, empty_db: str
) -> None:
    env = installed.env(ISSUEMAP_DATABASE_URL=empty_db)
    port = free_port()
    log = installed.root / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [installed.issuemap, "serve", "--port", str(port), "--no-access-log"],
            cwd=installed.workdir,
            env=env | {"ISSUEMAP_LOAD_DEMO": "true"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        # Generous: each Python process imports the whole stack, and CI machines are shared.
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, "issuemap serve exited:\n" + log.read_text()
            assert time.monotonic() < deadline, "no /healthz:\n" + log.read_text()
            try:
                health = httpx.get(base + "/healthz", timeout=5.0)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert health.status_code == 200, health.text
        # serve migrated the empty database with the migrations shipped inside geo.
        expected = ScriptDirectory.from_config(alembic_config(empty_db)).get_current_head()
        engine = create_engine(normalise_url(empty_db))
        try:
            with engine.connect() as conn:
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            assert version == expected
        finally:
            engine.dispose()

        # The shipped demo gazetteer places an address (the geocoder reads it at start-up).
        filed = httpx.post(
            base + "/api/reports",
            json={"category": "road", "description": "pothole", "address": "ตลาดหัวอิฐ"},
            timeout=30.0,
        )
        assert filed.status_code == 201, filed.text
        assert filed.json()["location"]["source"] == "address"

        for page_path in ("/", "/maps/public"):
            page = httpx.get(base + page_path, timeout=30.0)
            assert page.status_code == 200, (page_path, page.text[:500])
            # The element templates rendered: the JSON document and its reader are there.
            assert 'id="im-data"' in page.text and "function issuemapData" in page.text
            assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
            # Content-hashed names, which the installed package carries (api/static_dist).
            assert any(re.search(r"/leaflet\.[0-9a-f]{12}\.js$", a) for a in assets), assets
            for asset in assets:
                answer = httpx.get(base + asset, timeout=30.0)
                assert answer.status_code == 200, (page_path, asset, answer.status_code)
                assert answer.content, asset
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_settings_default_to_the_working_folder_and_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geo.settings import DatabaseSettings, GeocoderSettings

    monkeypatch.delenv("ISSUEMAP_DATA_DIR", raising=False)
    monkeypatch.delenv("ISSUEMAP_GAZETTEER_PATH", raising=False)
    inner = tmp_path / "notebooks" / "deeper"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    assert DatabaseSettings().data_dir == inner / ".data" / "postgres"
    # `make run` made one at the top: a notebook's kernel below it finds that one.
    (tmp_path / ".data" / "postgres").mkdir(parents=True)
    assert DatabaseSettings().data_dir == tmp_path / ".data" / "postgres"
    import geo

    gazetteer = GeocoderSettings().gazetteer_path
    assert gazetteer.is_file() and gazetteer.is_relative_to(Path(geo.__file__).parent)


def locked_pins() -> dict[str, tuple[str, int]]:
    """{canonical name: (pinned version, number of hashes)} of ``requirements.lock``."""
    from packaging.utils import canonicalize_name

    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (CHECKOUT / "requirements.lock").read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", line):
            name = canonicalize_name(match.group(1))
            pins[name] = (match.group(2), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def test_the_lock_pins_every_dependency_and_extra_with_hashes() -> None:
    """A dependency added to pyproject.toml without `make lock` fails here."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
    declared = [
        *project["dependencies"],
        *(dep for deps in project["optional-dependencies"].values() for dep in deps),
    ]
    pins = locked_pins()
    assert all(hashes for _, hashes in pins.values()), "every pin carries its hashes"
    for text_ in declared:
        wanted = Requirement(text_)
        name = canonicalize_name(wanted.name)
        assert name in pins, f"{wanted.name} is not in requirements.lock: run make lock"
        assert wanted.specifier.contains(pins[name][0], prereleases=True), (text_, pins[name])
        # What each extra asked for (psycopg[binary], uvicorn[standard], ...) is locked too.
        try:
            needs = [Requirement(r) for r in requires(wanted.name) or []]
        except PackageNotFoundError:
            pytest.fail(f"{wanted.name} is not installed: run make setup")
        for extra in wanted.extras:
            for need in needs:
                marker = need.marker
                if marker is None or not marker.evaluate({"extra": extra}):
                    continue
                if marker.evaluate({"extra": ""}):
                    continue  # needed without the extra: the package's own dependency
                assert canonicalize_name(need.name) in pins, f"{text_} needs {need.name}"
