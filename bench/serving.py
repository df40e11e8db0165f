"""What the benchmarks share: a free port, a cluster the service may reach, a running service.

The benchmarks are scripts (``.venv/bin/python bench/<name>.py``), so they import this module
as their sibling, ``serving``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from geo.db.cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
ISSUEMAP = str(Path(sys.executable).parent / "issuemap")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(port: int, workers: int) -> list[str]:
    """``issuemap serve`` as an operator runs it, on ``port``, without an access log."""
    return [ISSUEMAP, "serve", "--port", str(port), "--workers", str(workers), "--no-access-log"]


def uvicorn_command(port: int, workers: int) -> list[str]:
    """The app of this checkout under uvicorn, as ``issuemap serve`` runs it, minus serve's
    switch to an unprivileged user (which would lock it out of a private cluster)."""
    return [
        sys.executable,
        *("-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1"),
        *("--port", str(port), "--workers", str(workers), "--no-access-log"),
    ]


@contextmanager
def cluster(
    prefix: str, *, durable: bool = True, for_serve: bool = False
) -> Iterator[LocalCluster]:
    """A throwaway PostgreSQL cluster, started, and deleted afterwards.

    ``for_serve``: ``issuemap serve`` started as root runs its web workers as the service
    user, so that user's group is let in to the cluster's socket, as serve does for its own.
    """
    found = LocalCluster(Path(tempfile.mkdtemp(prefix=prefix)), durable=durable)
    if for_serve and os.geteuid() == 0:
        from geo.cli.service import service_identity
        from geo.settings import ServerSettings

        found.admit(service_identity(ServerSettings().run_as_user, create=True).gid)
    found.start()
    try:
        yield found
    finally:
        found.destroy()


@contextmanager
def running(
    command: Sequence[str],
    *,
    port: int,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout_s: float = 180.0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``command`` (a service on ``port``) until it answers ``/healthz``; stop it after.

    Yields the base URL and the process. ``uvicorn_command`` imports the app from ``cwd``
    (default: the current directory). When the service does not come up, the end of what
    it printed is in the error.
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    log.seek(0)
                    said = log.read().decode(errors="replace")[-3000:]
                    raise RuntimeError(f"the service did not start:\n{said}")
                time.sleep(0.3)
            yield base, process
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
