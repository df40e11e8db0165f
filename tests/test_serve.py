"""`issuemap serve` end to end: its own PostGIS starts with the service, is restarted if it dies,
and stops with it; the web workers do not run as root; query secrets never reach the log.

The tests share one running service and follow its life in order: they are written to run as
a module, top to bottom (as pytest runs them).
"""

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from geo.cli.service import PostgresSupervisor, redact_text, redact_url, service_identity
from geo.db.cluster import LocalCluster
from geo.errors import ServiceAccountError

pytestmark = pytest.mark.long_running

WORKERS = 2
SECRETS = ("S3cretKeyOne", "S3cretKeyTwo", "S3cretToken", "S3cretPassword", "S3cretOpen311")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited early"
        try:
            return httpx.get(url, timeout=2.0)
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop_service(process: subprocess.Popen[bytes]) -> None:
    """Stop a service started in a session of its own, and whatever it left running.

    A supervisor killed outright leaves its web workers behind, holding their port and
    connections; they would outlive the test run.
    """
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    base: str
    cluster: LocalCluster
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert time.monotonic() < deadline, f"{text!r} never appeared in the log"
            assert self.process.poll() is None, "the service exited early"
            time.sleep(0.2)

    def statuses_until(self, wanted: int, url: str, timeout: float = 120.0) -> list[int]:
        """GET ``url`` until it answers ``wanted``; return every status seen on the way."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout
        while not seen or seen[-1] != wanted:
            assert time.monotonic() < deadline, f"never {wanted}; saw {sorted(set(seen))}"
            seen.append(httpx.get(self.base + url, timeout=30.0).status_code)
            time.sleep(0.05)
        return seen


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    data_dir = Path(tempfile.mkdtemp(prefix="issuemap-serve-"))
    log = data_dir.parent / f"{data_dir.name}.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ISSUEMAP_DATABASE_URL"}
    env |= {"ISSUEMAP_DATA_DIR": str(data_dir), "ISSUEMAP_LOAD_DEMO": "true"}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "issuemap"),
                "serve",
                "--port",
                str(port),
                "--workers",
                str(WORKERS),
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster = LocalCluster(data_dir)
    try:
        health = wait_for(f"http://127.0.0.1:{port}/healthz", process)
        assert health.status_code == 200, health.text
        running = Service(process, f"http://127.0.0.1:{port}", cluster, log)
        deadline = time.monotonic() + 120
        while running.output().count("Application startup complete") < WORKERS:
            assert time.monotonic() < deadline, "the workers did not all start"
            time.sleep(0.2)
        yield running
    finally:
        stop_service(process)
        cluster.destroy()
        log.unlink(missing_ok=True)


def test_serve_runs_its_own_postgis(service: Service) -> None:
    assert service.cluster.is_running()
    page = httpx.get(service.base + "/", timeout=30.0)
    assert page.status_code == 200
    assert "W01" in page.text, "the demo city's wards are on the map"
    assert "demo city" in service.output()


def process_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def web_workers(parent: int) -> list[int]:
    """The uvicorn worker processes started by ``parent``."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(process_status(int(entry.name))["PPid"]) != parent:
                continue
            command = (entry / "cmdline").read_bytes()
        except (OSError, KeyError):
            continue
        if b"spawn_main" in command:
            workers.append(int(entry.name))
    return workers


def test_web_workers_do_not_run_as_root(service: Service) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a service started as root drops privileges")
    workers = web_workers(service.process.pid)
    assert len(workers) == WORKERS, workers
    service_user = pwd.getpwnam("issuemap")
    for pid in workers:
        status = process_status(pid)
        uids = {int(uid) for uid in status["Uid"].split()}  # real, effective, saved, fs
        gids = {int(gid) for gid in status["Gid"].split()}
        assert uids == {service_user.pw_uid}, (pid, status["Uid"])
        assert 0 not in uids and 0 not in gids, (pid, status["Uid"], status["Gid"])
        assert "0" not in status["Groups"].split(), (pid, status["Groups"])
        assert uids != {pwd.getpwnam("postgres").pw_uid}, "not the owner of the database files"
    # The workers still reach the database, the code and the static files as that user.
    assert httpx.get(service.base + "/api/reports?limit=1", timeout=30.0).status_code == 200
    assert httpx.get(service.base + "/maps/public", timeout=30.0).status_code == 200
    assert "runs as issuemap" in service.output()


def secret_requests(service: Service) -> list[int]:
    """Requests carrying each kind of query secret, as a browser link or an app would."""
    one, two, token, password, open311 = SECRETS
    urls = [
        f"/maps/zone?zone=Z01&key={one}",
        f"/maps/zone?zone=Z01&k%65y={two}&lang=en",
        f"/api/reports?limit=1&access_token={token}&Password={password}",
        f"/open311/v2/requests.json?api_key={open311}",
    ]
    return [httpx.get(service.base + url, timeout=30.0).status_code for url in urls]


def test_query_secrets_never_reach_the_log(service: Service) -> None:
    assert all(status < 500 for status in secret_requests(service))
    service.wait_for_log("/open311/v2/requests.json?api_key=")
    output = service.output()
    assert "/maps/zone?zone=Z01&key=" in output, "the request itself is still logged"
    assert "&lang=en" in output
    for secret in SECRETS:
        assert secret not in output


def test_a_killed_postmaster_is_restarted_and_meanwhile_requests_get_503(
    service: Service,
) -> None:
    killed = service.cluster.postmaster_pid()
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    during = service.statuses_until(503, "/api/reports?limit=1")
    answer = httpx.get(service.base + "/api/reports?limit=1", timeout=30.0)
    if answer.status_code == 503:
        assert answer.headers["Retry-After"] == "30"
        assert "try again" in answer.json()["detail"]
    # Requests made during the outage, with secrets, are not written out either.
    assert all(status < 500 or status == 503 for status in secret_requests(service))
    after = service.statuses_until(200, "/api/reports?limit=1")
    assert set(during + after) <= {200, 503}, "only answers or fast refusals, never a 500"
    restarted = service.cluster.postmaster_pid()
    assert restarted is not None and restarted != killed
    # Requests may succeed before pg_ctl has finished waiting and the restart is logged.
    service.wait_for_log("restarted PostgreSQL")
    output = service.output()
    assert "died; restarting it" in output
    for secret in SECRETS:
        assert secret not in output
    assert httpx.get(service.base + "/", timeout=30.0).status_code == 200


def test_a_deliberate_stop_is_not_undone(service: Service) -> None:
    service.cluster.stop()
    service.wait_for_log("was stopped on purpose; not restarting it")
    # Give the supervisor several more looks: it leaves the server stopped.
    time.sleep(PostgresSupervisor(service.cluster).interval_s * 3)
    assert not service.cluster.is_running()
    assert httpx.get(service.base + "/api/reports?limit=1", timeout=30.0).status_code == 503
    service.cluster.start()
    service.statuses_until(200, "/api/reports?limit=1")
    assert service.output().count("restarted PostgreSQL") == 1, "only the crash was restarted"


def test_serve_stops_its_postgis_on_shutdown(service: Service) -> None:
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=60) == 0
    assert not service.cluster.is_running(), "the local cluster must stop with the service"
    assert "restarting it" not in service.output().rpartition("SIGTERM")[2]


def test_redaction_hides_every_spelling_of_a_secret_parameter() -> None:
    target = "/maps/zone?zone=Z01&key=a%26b&API_KEY=c&k%65y=d&my+token=e&client_secret=&lang=th"
    assert redact_url(target) == (
        "/maps/zone?zone=Z01&key=[redacted]&API_KEY=[redacted]&k%65y=[redacted]"
        "&my+token=[redacted]&client_secret=[redacted]&lang=th"
    )
    assert redact_url("/healthz") == "/healthz"
    line = 'GET /api/reports?limit=1&password=hunter2 failed; see "/x?auth_token=t0k&a=1"'
    assert redact_text(line) == (
        'GET /api/reports?limit=1&password=[redacted] failed; see "/x?auth_token=[redacted]&a=1"'
    )


@pytest.mark.parametrize("name", ["root", "postgres"])
def test_the_workers_never_run_as_root_or_as_the_database_owner(name: str) -> None:
    with pytest.raises(ServiceAccountError, match=name):
        service_identity(name, create=False)


DROP = r"""
import os, sys
from geo.cli.service import drop_privileges, service_identity

later = ["xml.dom.minidom", "encodings.cp874", "mailbox", "_sqlite3"]
assert not any(name in sys.modules for name in later)
drop_privileges(service_identity("issuemap", create=True))
# Imported only now, as the service user, as a request would: the interpreter may live in a
# folder that user cannot enter (pyenv under /root), and keeps working all the same.
import xml.dom.minidom, mailbox, _sqlite3
assert "\u0e01".encode("cp874") == b"\xa1"
try:
    os.setuid(0)
except PermissionError:
    print(os.getuid(), os.getgid(), sorted(os.getgroups()), "for good")
"""


def test_a_worker_that_dropped_root_keeps_working_and_cannot_get_root_back() -> None:
    if os.geteuid() != 0:
        pytest.skip("only root drops privileges")
    done = subprocess.run(
        [sys.executable, "-c", DROP], capture_output=True, text=True, check=False, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    user = pwd.getpwnam("issuemap")
    uid, gid, groups, _ = done.stdout.split(maxsplit=3)
    assert (int(uid), int(gid)) == (user.pw_uid, user.pw_gid)
    assert "0" not in groups.strip("[]").split(", ")
    assert done.stdout.strip().endswith("for good")
