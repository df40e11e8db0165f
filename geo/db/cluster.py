"""A private PostgreSQL + PostGIS cluster for development, the demo and the tests.

PostgreSQL refuses to run as root, so when we are root the cluster belongs to the
``postgres`` system user and every server command runs through ``runuser``. The cluster
listens only on a unix socket inside its own folder: there is no port to collide with
another PostgreSQL on the machine, and the folder's permissions decide who may connect
(the owner only, or also one group admitted with :meth:`LocalCluster.admit`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from geo.errors import LocalDatabaseError

SERVICE_USER = "postgres"
"""The system user that owns the cluster when issuemap runs as root."""

ClusterState = Literal["running", "stopped", "crashed"]
"""``crashed``: the server died without shutting down (its ``postmaster.pid`` outlived it)."""


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
        program = self._bindir / args[0]
        if not program.exists():
            # pg_ctl found on PATH may be a link beside which the other programs are not.
            program = (self._bindir / "pg_ctl").resolve().parent / args[0]
        cmd = [str(program), *args[1:]]
        if self._as_service_user:
            cmd = ["runuser", "-u", SERVICE_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    def _prepare_folder(self) -> None:
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if self._as_service_user:
            entry = pwd.getpwnam(SERVICE_USER)
            for folder in (self.data_dir, self.socket_dir):
                # A group admitted by admit() keeps its access: the web workers of a running
                # service reconnect through it after any other command prepared the folder.
                current = folder.stat()
                admitted = (current.st_mode & 0o777) == 0o710 and current.st_gid != entry.pw_gid
                os.chown(folder, entry.pw_uid, current.st_gid if admitted else entry.pw_gid)
                folder.chmod(0o710 if admitted else 0o700)
            reachable = subprocess.run(
                ["runuser", "-u", SERVICE_USER, "--", "test", "-w", str(self.data_dir)],
                check=False,
            )
            if reachable.returncode != 0:
                raise LocalDatabaseError(
                    f"the {SERVICE_USER} user cannot reach {self.data_dir} (a parent folder "
                    "is private); set ISSUEMAP_DATA_DIR to a folder under /var/lib or /srv"
                )
        else:
            for folder in (self.data_dir, self.socket_dir):
                folder.chmod(0o700)

    def admit(self, group_id: int) -> None:
        """Let members of group ``group_id`` connect to the server (root's clusters only).

        They may enter the folder and reach the socket, but neither list the folder nor read
        the cluster's files.
        """
        self._prepare_folder()
        if not self._as_service_user:
            raise LocalDatabaseError("only a cluster run by root for postgres admits a group")
        for folder in (self.data_dir, self.socket_dir):
            os.chown(folder, -1, group_id)
            folder.chmod(0o710)

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
            SERVICE_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        if done.returncode != 0:
            raise LocalDatabaseError(f"initdb failed in {self.pgdata}: {done.stderr.strip()}")
        return True

    def replicate(self, primary: LocalCluster) -> None:
        """Make this folder a streaming replica of ``primary`` (``pg_basebackup -R``).

        The copy is taken over ``primary``'s socket, which its default ``pg_hba.conf`` opens
        to local replication; ``-R`` leaves ``standby.signal`` and the ``primary_conninfo``
        that make :meth:`start` run it as a hot standby, replaying the primary's WAL as it
        streams in. Refused if this folder already holds a cluster.
        """
        self._prepare_folder()
        if (self.pgdata / "PG_VERSION").exists():
            raise LocalDatabaseError(f"{self.pgdata} already holds a cluster")
        done = self._run(
            "pg_basebackup",
            "-D",
            str(self.pgdata),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-h",
            primary.host,
            "-U",
            SERVICE_USER,
        )
        if done.returncode != 0:
            raise LocalDatabaseError(f"pg_basebackup failed: {done.stderr.strip()}")

    def is_running(self) -> bool:
        """Whether a server is running on this cluster's folder."""
        # Not `pg_ctl status`: it takes a killed server's unreaped zombie for a live one.
        return self.state() == "running"

    def postmaster_pid(self) -> int | None:
        """The pid recorded in ``postmaster.pid``, or ``None`` when the file is absent."""
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        return int(first) if first.strip().isdigit() else None

    def state(self) -> ClusterState:
        """Whether the server runs, was stopped (cleanly, or never started), or died.

        A clean shutdown removes ``postmaster.pid``; a killed server leaves it behind, naming a
        process that is gone, a zombie, or (after pid reuse) not a PostgreSQL server.
        """
        pid = self.postmaster_pid()
        if pid is None:
            return "stopped"
        try:
            status = Path(f"/proc/{pid}/stat").read_text()
            program = Path(os.readlink(f"/proc/{pid}/exe")).name
        except OSError:
            return "crashed"
        # The state letter follows the parenthesised command name, which may hold spaces.
        alive = status.rpartition(")")[2].split()[0] not in {"Z", "X"}
        return "running" if alive and program.startswith("postgres") else "crashed"

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
        return f"postgresql+psycopg://{SERVICE_USER}@/{dbname}?host={self.socket_dir}"

    def ensure_database(self, dbname: str) -> bool:
        """Create database ``dbname`` unless it exists; return whether it was created."""
        with psycopg.connect(
            host=self.host, user=SERVICE_USER, dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            return True
