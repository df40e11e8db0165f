"""The production examples in deploy/ are sound: systemd units, their settings, the nginx site.

systemd is not running here (nor in CI), and needs not be: ``systemd-analyze verify`` reads
the units from a throwaway root holding them, Debian's own units they depend on, and a
stand-in for each program they start; ``systemd-analyze security`` scores their sandbox.
``nginx -t`` reads the site with a self-signed certificate made for the test, and then nginx
serves it in front of the app: HTTP moves to HTTPS, and the app takes the proxy's word that
the request came over HTTPS, so the staff pages' cookies are Secure.
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer.main

from geo.cli.main import app as cli_app
from geo.settings import BoundarySettings, IntakeSettings
from tests.browser import free_port, running

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = sorted(p for p in DEPLOY.iterdir() if p.suffix in {".service", ".timer"})
SERVICES = [p for p in UNITS if p.suffix == ".service"]
SITE = DEPLOY / "nginx" / "issuemap.conf"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
NGINX = Path("/usr/sbin/nginx")
SERVER_NAME = "issuemap.example.org"


def tool(name: str) -> str:
    """A program ``make setup`` installs; missing, it fails the test (CI allows no skip)."""
    found = shutil.which(name) or (str(NGINX) if name == "nginx" and NGINX.exists() else None)
    if found is None:
        pytest.fail(f"{name} is missing: run `make setup`, which installs it from Debian")
    return found


def directives(unit: Path) -> dict[str, list[str]]:
    """Each ``Key=value`` of a unit file, in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def programs(unit: Path) -> list[str]:
    """The programs a unit starts (``Exec*=``), without systemd's prefixes."""
    return [
        shlex.split(value)[0].lstrip("-@:+!")
        for key, values in directives(unit).items()
        if key.startswith("Exec")
        for value in values
    ]


@pytest.fixture(scope="module")
def system_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file system root holding our units, Debian's, and a stand-in for each program."""
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, units / unit.name)
        for program in programs(unit):
            stand_in = root / program.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    names = [f"/etc/systemd/system/{unit.name}" for unit in UNITS]
    return subprocess.run(
        [tool("systemd-analyze"), *args, f"--root={root}", *names],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_units_parse(system_root: Path) -> None:
    assert {unit.name for unit in UNITS} >= {
        "issuemap.service",
        "issuemap-backup.service",
        "issuemap-backup.timer",
    }
    verified = analyze(system_root, "verify", "--man=no", "--generators=no")
    # systemd only warns about an unknown key or a bad value: any word from it is a fault.
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr
    assert not verified.stdout.strip(), verified.stdout


def test_the_services_run_in_a_tight_sandbox(system_root: Path) -> None:
    for service in SERVICES:
        unit = directives(service)
        assert unit["User"] == ["issuemap"] and unit["Group"] == ["issuemap"], service.name
        assert unit["EnvironmentFile"] == ["/etc/issuemap/issuemap.env"], service.name
        for key, value in {
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "CapabilityBoundingSet": "",
            "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        }.items():
            assert unit[key] == [value], f"{service.name}: {key}"
        assert unit["SystemCallFilter"][0] == "@system-service", service.name
    # Photos are rows in PostgreSQL: the service writes no file of its own, the backup
    # writes only into its folder.
    assert "ReadWritePaths" not in directives(DEPLOY / "issuemap.service")
    assert directives(DEPLOY / "issuemap-backup.service")["ReadWritePaths"] == [
        "/var/backups/issuemap"
    ]
    # systemd's own score, out of 10 (lower is safer): at most 2.0, "OK".
    for service in SERVICES:
        scored = subprocess.run(
            [
                tool("systemd-analyze"),
                "security",
                "--offline=yes",
                f"--root={system_root}",
                "--threshold=20",
                f"/etc/systemd/system/{service.name}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr


def parse_command_line(args: list[str]) -> None:
    """Parse ``issuemap ARGS`` as the command line would, running nothing."""
    command = typer.main.get_command(cli_app)
    name = "issuemap"
    while hasattr(command, "get_command"):  # a group: find the named command in it
        found = command.get_command(command.context_class(command), args[0])
        assert found is not None, f"issuemap has no command {args[0]!r}"
        name, command, args = args[0], found, args[1:]
    command.make_context(name, args)  # an unknown option or a missing argument raises here


def test_the_units_run_command_lines_issuemap_takes() -> None:
    seen = []
    for unit in SERVICES:
        for value in (v for values in directives(unit).values() for v in values):
            for words in re.findall(r"/opt/issuemap/venv/bin/issuemap ([^'\n]+)", value):
                args = shlex.split(words)
                parse_command_line(args)
                seen.append(" ".join(args[:2]))
    assert sorted(seen) == ["db backup", "serve --workers"]
    with pytest.raises(Exception, match="No such option: --wokers"):
        parse_command_line(["serve", "--wokers", "3"])
    with pytest.raises(Exception, match="Missing parameter: file"):
        parse_command_line(["db", "backup"])


def settings_variables() -> set[str]:
    """Every ``ISSUEMAP_*`` variable that geo's settings classes read."""
    from pydantic_settings import BaseSettings

    import geo.settings

    names = set()
    for value in vars(geo.settings).values():
        if (
            isinstance(value, type)
            and issubclass(value, BaseSettings)
            and value is not BaseSettings
        ):
            prefix = str(value.model_config.get("env_prefix", ""))
            names |= {f"{prefix}{field}".upper() for field in value.model_fields}
    return names


def test_the_settings_file_names_only_real_settings() -> None:
    known = settings_variables()
    assert "ISSUEMAP_DATABASE_URL" in known and "ISSUEMAP_TRUSTED_PROXIES" in known
    env = DEPLOY / "issuemap.env"
    set_here: dict[str, str] = {}
    for line in env.read_text().splitlines():
        text = line.lstrip("#").strip()
        if re.fullmatch(r"ISSUEMAP_[A-Z0-9_]+=.*", text):
            name, _, value = text.partition("=")
            assert name in known, f"{env.name}: {name} is no setting of issuemap"
            if not line.startswith("#"):
                set_here[name] = value
    named = set(re.findall(r"ISSUEMAP_[A-Z0-9_]+", "".join(p.read_text() for p in UNITS)))
    named |= set(re.findall(r"ISSUEMAP_[A-Z0-9_]+", SITE.read_text()))
    assert named <= known, named - known
    # What production needs: a database of its own, no demo city, the proxy believed.
    assert set_here["ISSUEMAP_LOAD_DEMO"] == "false"
    assert set_here["ISSUEMAP_HOST"] == "127.0.0.1" and set_here["ISSUEMAP_PORT"] == "8000"
    assert set_here["ISSUEMAP_TRUSTED_PROXIES"] == "127.0.0.1,::1"
    assert set_here["ISSUEMAP_SESSION_COOKIE_SECURE"] == "always"
    assert set_here["ISSUEMAP_DATABASE_URL"].startswith("postgresql://")


# --------------------------------------------------------------------------------- nginx


def body_limits() -> dict[str, int]:
    """``client_max_body_size`` of the site, in bytes: ``"/"`` for the server, else by location."""
    text = SITE.read_text()
    limits = {}
    for match in re.finditer(r"(?:location ([^{]+)\{[^}]*?)?client_max_body_size (\d+)m;", text):
        limits[(match[1] or "/").strip()] = int(match[2]) * 1024 * 1024
    return limits


def test_the_proxy_takes_the_uploads_the_service_takes() -> None:
    limits = body_limits()
    intake, boundaries = IntakeSettings(), BoundarySettings()
    photos = intake.photos_per_report * intake.photo_max_bytes
    assert photos < limits["/"] <= photos + 2 * 1024 * 1024
    upload = limits["~ ^/(api/)?admin/boundaries$"]
    assert boundaries.upload_max_bytes < upload <= boundaries.upload_max_bytes + 2 * 1024 * 1024


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key for the test's server name."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            tool("openssl"),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={SERVER_NAME}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def nginx_root(
    folder: Path, certificate: tuple[Path, Path], *, ports: dict[str, int] | None = None
) -> Path:
    """A throwaway nginx configuration whose http block holds the site, as Debian's would.

    The certificate paths become the test's; with ``ports``, so do the ports it listens on
    (``http``, ``https``) and the service's (``app``).
    """
    cert, key = certificate
    site = SITE.read_text()
    site = site.replace(f"/etc/letsencrypt/live/{SERVER_NAME}/fullchain.pem", str(cert))
    site = site.replace(f"/etc/letsencrypt/live/{SERVER_NAME}/privkey.pem", str(key))
    assert str(cert) in site and str(key) in site
    if ports is not None:
        site = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", site)  # the test host may lack IPv6
        site = site.replace("listen 80;", f"listen 127.0.0.1:{ports['http']};")
        site = site.replace("listen 443 ssl", f"listen 127.0.0.1:{ports['https']} ssl")
        site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{ports['app']};")
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / name).mkdir(exist_ok=True)
    (folder / "site.conf").write_text(site)
    conf = folder / "nginx.conf"
    conf.write_text(
        f"pid {folder}/nginx.pid;\n"
        "error_log stderr;\n"
        "events {}\n"
        "http {\n"
        "    access_log off;\n"
        + "".join(
            f"    {name}_temp_path {folder}/{name};\n"
            for name in ("proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"    client_body_temp_path {folder}/body;\n"
        f"    include {folder}/site.conf;\n"
        "}\n"
    )
    return conf


def test_the_site_passes_nginx_t(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    conf = nginx_root(tmp_path, certificate)
    tested = subprocess.run(
        [tool("nginx"), "-e", "stderr", "-p", str(tmp_path), "-c", str(conf), "-t"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stderr
    assert "test is successful" in tested.stderr
    assert "[warn]" not in tested.stderr and "[emerg]" not in tested.stderr, tested.stderr


@pytest.fixture
def proxied(
    tmp_path: Path, certificate: tuple[Path, Path], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The app behind nginx on loopback ports: the URLs of both of nginx's sides and the app's."""
    from api.app import AppSettings, create_app
    from geo.settings import DatabaseSettings, ProxySettings

    # `issuemap serve` turns uvicorn's own proxy-headers middleware off; here it is told to
    # believe only an address nobody has (TEST-NET-1), so the app's settings alone decide.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.1")

    settings = AppSettings(
        database=DatabaseSettings(database_url=db_url),
        proxies=ProxySettings(trusted_proxies=["127.0.0.1"]),
    )
    with running(create_app(settings)) as app_url:
        ports = {"http": free_port(), "https": free_port(), "app": int(app_url.rsplit(":", 1)[1])}
        conf = nginx_root(tmp_path, certificate, ports=ports)
        server = subprocess.Popen(
            [
                tool("nginx"),
                "-e",
                "stderr",
                "-p",
                str(tmp_path),
                "-c",
                str(conf),
                "-g",
                "daemon off; master_process off;",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", ports["https"]), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(
                            f"nginx did not start: {server.communicate()[1]}"
                        ) from None
                    time.sleep(0.05)
            yield {
                "http": f"http://127.0.0.1:{ports['http']}",
                "https": f"https://127.0.0.1:{ports['https']}",
                "app": app_url,
            }
        finally:
            server.send_signal(signal.SIGQUIT)
            server.communicate(timeout=30)


def test_behind_nginx_http_moves_to_https_and_the_app_knows_it_came_over_tls(
    proxied: dict[str, str],
) -> None:
    headers = {"Host": SERVER_NAME}
    with httpx.Client(verify=False, headers=headers) as client:
        moved = client.get(f"{proxied['http']}/login?next=/work")
        assert moved.status_code == 301
        assert moved.headers["location"] == f"https://{SERVER_NAME}/login?next=/work"

        page = client.get(f"{proxied['https']}/login")
        assert page.status_code == 200, page.text
        assert page.headers["strict-transport-security"].startswith("max-age=")
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("csrftoken=") and "secure" in cookie.lower(), cookie
        # The metrics are not served through the proxy, even to a caller on this machine.
        assert client.get(f"{proxied['https']}/metrics").status_code == 403
    # Straight to the app, over plain HTTP, the same page's cookie is not Secure: the flag
    # above came from nginx's X-Forwarded-Proto, which the app believed.
    direct = httpx.get(f"{proxied['app']}/login")
    assert "secure" not in direct.headers["set-cookie"].lower(), direct.headers["set-cookie"]
