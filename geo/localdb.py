"""A private PostgreSQL + PostGIS cluster for development, the demo and the tests.

PostgreSQL refuses to run as root, so when we are root the cluster belongs to the
``postgres`` system user and every server command runs through ``runuser``. The cluster
listens only on a unix socket inside its own folder: there is no port to collide with
another PostgreSQL on the machine, and the folder's permissions decide who may connect.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from geo.errors import LocalDatabaseError

_SERVICE_USER = "postgres"


def _find_bindir() -> Path:
    """Return the newest installed PostgreSQL server bin folder."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise LocalDatabaseError(
            "PostgreSQL server programs were not found; install postgresql-15 and "
            "postgresql-15-postgis-3 (the set-up command does this)."
        )
    return candidates[-1].parent


class LocalCluster:
    """A PostgreSQL cluster kept in ``data_dir`` and reached through a unix socket there.

    Parameters
    ----------
    data_dir
        Folder holding ``pgdata/`` (the cluster), ``run/`` (the socket) and ``server.log``.
    durable
        ``False`` turns off fsync for throwaway test clusters; the service keeps it on.
    """

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "run"
        self.log_file = self.data_dir / "server.log"
        self.durable = durable
        self._bindir = _find_bindir()
        self._as_service_user = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self._bindir / args[0]), *args[1:]]
        if self._as_service_user:
            cmd = ["runuser", "-u", _SERVICE_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    def _prepare_folder(self) -> None:
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
        if self._as_service_user:
            entry = pwd.getpwnam(_SERVICE_USER)
            for folder in (self.data_dir, self.socket_dir):
                os.chown(folder, entry.pw_uid, entry.pw_gid)
            reachable = subprocess.run(
                ["runuser", "-u", _SERVICE_USER, "--", "test", "-w", str(self.data_dir)],
                check=False,
            )
            if reachable.returncode != 0:
                raise LocalDatabaseError(
                    f"the {_SERVICE_USER} user cannot reach {self.data_dir} (a parent folder "
                    "is private); set ISSUEMAP_DATA_DIR to a folder under /var/lib or /srv"
                )

    def initialise(self) -> bool:
        """Create the cluster if the folder holds none; return whether one was created."""
        self._prepare_folder()
        if (self.pgdata / "PG_VERSION").exists():
            return False
        done = self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            _SERVICE_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        if done.returncode != 0:
            raise LocalDatabaseError(f"initdb failed in {self.pgdata}: {done.stderr.strip()}")
        return True

    def is_running(self) -> bool:
        """Whether a server is running on this cluster's folder."""
        return (
            self.pgdata.exists()
            and self._run("pg_ctl", "status", "-D", str(self.pgdata)).returncode == 0
        )

    def start(self) -> bool:
        """Start the server unless it already runs; return whether this call started it."""
        self.initialise()
        if self.is_running():
            return False
        options = [
            "-c listen_addresses=''",
            f"-c unix_socket_directories='{self.socket_dir}'",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        done = self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-o",
            " ".join(options),
        )
        if done.returncode != 0:
            tail = (
                self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            )
            raise LocalDatabaseError(f"PostgreSQL did not start: {done.stderr.strip()}\n{tail}")
        return True

    def stop(self) -> None:
        """Stop the server with a fast shutdown (open sessions are ended, data is safe)."""
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))

    def destroy(self) -> None:
        """Stop the server and delete the whole folder (throwaway test clusters only)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def host(self) -> str:
        """The libpq ``host`` value: the socket folder."""
        return str(self.socket_dir)

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of database ``dbname`` in this cluster."""
        return f"postgresql+psycopg://{_SERVICE_USER}@/{dbname}?host={self.socket_dir}"

    def ensure_database(self, dbname: str) -> bool:
        """Create database ``dbname`` unless it exists; return whether it was created."""
        with psycopg.connect(
            host=self.host, user=_SERVICE_USER, dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            return True
