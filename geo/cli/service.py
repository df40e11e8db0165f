"""The service's process tree: who runs the web code, who keeps PostgreSQL up, what logs say.

``issuemap serve`` started as root keeps one small privileged parent, which owns the local
PostgreSQL cluster and restarts it if it dies (:class:`PostgresSupervisor`), and web workers
that give up root before they serve anything (:func:`drop_privileges`), so a hole in the web
code is not root on the machine. The outbox's delivery worker (:class:`DeliveryWorker`)
runs beside them as a process of its own, also without root. Log lines pass through
:func:`redact_text`, so keys sent as query parameters (``?key=``, Open311's ``api_key``)
never reach a log file.
"""

from __future__ import annotations

import importlib
import logging
import logging.config
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote_plus

from pydantic import ValidationError
from sqlalchemy import Engine

from geo.db.cluster import SERVICE_USER, ClusterState, LocalCluster
from geo.db.engine import make_engine
from geo.errors import LocalDatabaseError, ServiceAccountError
from geo.reports.notifications import ChatSender, run_worker, settings_problems
from geo.settings import (
    ChatSettings,
    CitySettings,
    DatabaseSettings,
    GeocoderSettings,
    IntakeSettings,
    LineSettings,
    NotificationSettings,
    PrivacySettings,
    RoutingSettings,
)

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
SECRET_NAME_PARTS = ("key", "token", "secret", "password")
"""A query parameter whose name contains one of these is a secret in every log line."""

# A name=value pair inside free text (an error message quoting a URL); the value ends where a
# URL would end in prose. Access-log request lines are redacted exactly by redact_url instead.
_PAIR = re.compile(r"(?<=[?&])([^=&\s#\"'<>]+)=([^&\s#\"'<>]*)")


def is_secret_name(name: str) -> bool:
    """Whether query parameter ``name`` (as sent, percent-encoded or not) holds a secret."""
    decoded = unquote_plus(name).lower()
    return any(part in decoded for part in SECRET_NAME_PARTS)


def redact_url(target: str) -> str:
    """Return a request target (path and query) with the value of every secret parameter hidden.

    The query is split the way the application reads it (on ``&``, names percent-decoded), so
    a key the application would accept is a key the log hides, however it was spelled.
    """
    path, mark, query = target.partition("?")
    if not mark:
        return target
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if equals and is_secret_name(name) else part)
    return f"{path}?{'&'.join(parts)}"


def redact_text(text: str) -> str:
    """Return ``text`` with the value of every secret ``name=value`` query pair hidden."""
    return _PAIR.sub(
        lambda m: f"{m.group(1)}={REDACTED}" if is_secret_name(m.group(1)) else m.group(0), text
    )


def json_formatter(**options: Any) -> logging.Formatter:
    """Log lines as JSON objects (python-json-logger), secret query values hidden in each.

    Every line has ``time``, ``level``, ``logger`` and ``message``, and whatever fields the
    caller added (a request's ``method``, ``route``, ``status``...); every text in it passes
    through ``redact_text``. ``options`` are python-json-logger's.
    """
    from pythonjsonlogger.json import JsonFormatter

    class RedactingJsonFormatter(JsonFormatter):
        def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
            return {
                name: redact_text(value) if isinstance(value, str) else value
                for name, value in super().process_log_record(log_data).items()
                # uvicorn's copy of its message with terminal colours.
                if name != "color_message"
            }

    options.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
    options.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
    return RedactingJsonFormatter(**options)


MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus_client's multiprocess mode keeps each web worker's counts."""


@contextmanager
def shared_metrics_folder(identity: Identity | None) -> Iterator[Path]:
    """A fresh folder in which the web workers keep their metrics, for the block's length.

    It is named in ``PROMETHEUS_MULTIPROC_DIR`` for the workers started inside the block
    (their ``/metrics`` then adds up every worker's counts), owned by ``identity`` when the
    workers run as that user, and removed at the end: counts must not outlive the run.
    """
    folder = Path(tempfile.mkdtemp(prefix="issuemap-metrics-"))
    if identity is not None:
        os.chown(folder, identity.uid, identity.gid)
    before = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    os.environ[MULTIPROCESS_DIR_VARIABLE] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(MULTIPROCESS_DIR_VARIABLE, None)
        else:
            os.environ[MULTIPROCESS_DIR_VARIABLE] = before
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Identity:
    """The unprivileged account the web workers run as."""

    name: str
    uid: int
    gid: int
    home: str


def service_identity(name: str, *, create: bool) -> Identity:
    """Return the account ``name`` for the web workers, creating it as a system user if asked.

    Root and the account that owns the database files are refused: a hole in the web code
    must give neither the machine nor the raw data.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if not create:
            raise ServiceAccountError(
                f"the user {name!r} (ISSUEMAP_RUN_AS_USER) does not exist"
            ) from None
        done = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "issuemap web service",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceAccountError(
                f"could not create the system user {name!r} for the web workers: "
                f"{done.stderr.strip()}; create it, or set ISSUEMAP_RUN_AS_USER to an existing "
                "unprivileged user (such as nobody)"
            ) from None
        log.info("created the system user %s for the web workers", name)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise ServiceAccountError(
            f"ISSUEMAP_RUN_AS_USER={name!r} is root or in root's group; the web workers "
            "must run as an unprivileged user"
        )
    if name == SERVICE_USER:
        raise ServiceAccountError(
            f"ISSUEMAP_RUN_AS_USER={name!r} owns the database files; choose another user"
        )
    return Identity(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)


def _can_enter(folder: os.stat_result, identity: Identity, groups: set[int]) -> bool:
    if folder.st_uid == identity.uid:
        return bool(folder.st_mode & stat.S_IXUSR)
    if folder.st_gid in groups:
        return bool(folder.st_mode & stat.S_IXGRP)
    return bool(folder.st_mode & stat.S_IXOTH)


def _first_closed_ancestor(path: Path, identity: Identity, groups: set[int]) -> Path | None:
    """The folder just below the first ancestor of ``path`` that ``identity`` cannot enter."""
    parts = path.parts
    for depth in range(1, len(parts)):
        folder = Path(*parts[:depth])
        try:
            if not _can_enter(folder.stat(), identity, groups):
                return Path(*parts[: depth + 1])
        except OSError:
            return None
    return None


def check_reachable(path: Path, identity: Identity) -> None:
    """Refuse to go on when ``identity`` could not enter ``path`` (say, the database socket)."""
    groups = set(os.getgrouplist(identity.name, identity.gid))
    closed = _first_closed_ancestor(path.resolve() / "_", identity, groups)
    if closed is not None:
        raise ServiceAccountError(
            f"the web workers' user {identity.name} cannot enter {closed.parent}, on the way "
            f"to {path}; set ISSUEMAP_DATA_DIR to a folder under /var/lib or /srv"
        )


def _keep_code_reachable(identity: Identity, groups: set[int]) -> None:
    """Keep reading our own interpreter and libraries after the switch to ``identity``.

    Python may live where the new user cannot enter (pyenv under a private ``/root``), and
    modules are still imported on demand after the switch. Such a folder is opened now, as
    root, and the import paths are pointed at ``/proc/self/fd/N``: the process keeps reading
    the code it was started with and gains nothing else (the folders above stay closed).
    """
    opened: dict[str, str] = {}
    roots = [Path(p) for p in sys.path if p and os.path.isdir(p)]
    for root in roots:
        top = _first_closed_ancestor(root.resolve(), identity, groups)
        if top is not None and str(top) not in opened:
            descriptor = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
            opened[str(top)] = f"/proc/self/fd/{descriptor}"
    if not opened:
        return

    def reachable(path: str) -> str:
        resolved = os.path.realpath(path)
        for top, handle in opened.items():
            if resolved == top or resolved.startswith(top + os.sep):
                return handle + resolved[len(top) :]
        return path

    sys.path[:] = [reachable(p) for p in sys.path]
    for module in list(sys.modules.values()):
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [reachable(p) for p in search]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()


def drop_privileges(identity: Identity) -> None:
    """Switch this process, for good, from root to ``identity`` (and its groups)."""
    if os.geteuid() != 0:
        return
    os.initgroups(identity.name, identity.gid)
    groups = set(os.getgrouplist(identity.name, identity.gid))
    _keep_code_reachable(identity, groups)
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - setuid(2) semantics make this unreachable
        raise RuntimeError("root privileges could be regained after dropping them")
    os.environ.update(HOME=identity.home, USER=identity.name, LOGNAME=identity.name)
    log.info("web worker %d runs as %s (uid %d)", os.getpid(), identity.name, identity.uid)


class PostgresSupervisor:
    """A thread that restarts the local PostgreSQL server when it dies, with backoff.

    Only a server that died (its ``postmaster.pid`` outlived it: killed, out of memory) is
    restarted. A server stopped on purpose (``pg_ctl stop``, or the service shutting down)
    removes that file and is left stopped. Use as a context manager around the serving.
    """

    def __init__(
        self,
        cluster: LocalCluster,
        *,
        interval_s: float = 1.0,
        max_backoff_s: float = 60.0,
        stable_s: float = 60.0,
    ) -> None:
        self.cluster = cluster
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="postgres-supervisor", daemon=True)

    def __enter__(self) -> PostgresSupervisor:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop watching (waits for a restart in progress to finish)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        backoff = self.interval_s
        running_for = 0.0
        last: ClusterState = "running"
        while not self._stop.wait(self.interval_s):
            state = self.cluster.state()
            if state == "running":
                if last == "stopped":
                    log.info("PostgreSQL in %s is running again", self.cluster.data_dir)
                running_for += self.interval_s
                if running_for >= self.stable_s:
                    backoff = self.interval_s
            elif state == "stopped":
                if last != "stopped":
                    log.warning(
                        "PostgreSQL in %s was stopped on purpose; not restarting it",
                        self.cluster.data_dir,
                    )
            else:
                running_for = 0.0
                self._restart()
                # A server that keeps dying is retried less and less often.
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)
            last = state

    def _await_reaping(self) -> None:
        # A killed server is a zombie until its parent (init, since pg_ctl has exited) reaps
        # it, and PostgreSQL refuses to start while the pid in postmaster.pid still exists.
        pid = self.cluster.postmaster_pid()
        deadline = time.monotonic() + self.max_backoff_s
        while pid is not None and time.monotonic() < deadline:
            try:
                status = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return
            if status.rpartition(")")[2].split()[0] != "Z" or self._stop.wait(0.1):
                return

    def _restart(self) -> None:
        log.error("PostgreSQL in %s died; restarting it", self.cluster.data_dir)
        self._await_reaping()
        try:
            started = self.cluster.start()
        except LocalDatabaseError as error:
            lines = str(error).splitlines()
            reasons = [line for line in lines if "FATAL" in line or "PANIC" in line]
            log.error("PostgreSQL could not be restarted: %s", "; ".join(reasons or lines[:1]))
            return
        if not started:
            log.info("PostgreSQL in %s was restarted by someone else", self.cluster.data_dir)
            return
        self.restarts += 1
        log.warning(
            "restarted PostgreSQL in %s (restart %d since the service started)",
            self.cluster.data_dir,
            self.restarts,
        )


@dataclass(frozen=True)
class ChatWorkerSettings:
    """What the delivery worker reads for chat channels, besides the notification settings.

    A conversation left unanswered (its webhook's own processing was cut short) is taken up
    by the worker with the same rules as the web workers: routing, intake, the geocoder and
    the city's time zone.
    """

    line: LineSettings
    chat: ChatSettings
    routing: RoutingSettings
    intake: IntakeSettings
    geocoder: GeocoderSettings
    city: CitySettings

    @classmethod
    def from_environment(cls) -> ChatWorkerSettings:
        """Each from its ``ISSUEMAP_*`` variables; a bad value raises ``ValidationError``."""
        return cls(
            line=LineSettings(),
            chat=ChatSettings(),
            routing=RoutingSettings(),
            intake=IntakeSettings(),
            geocoder=GeocoderSettings(),
            city=CitySettings(),
        )


@dataclass
class ChatDelivery:
    """What the delivery worker needs for chat channels: a sender per channel, chores."""

    senders: dict[str, ChatSender] = field(default_factory=dict)
    each_round: list[Callable[[], object]] = field(default_factory=list)


@contextmanager
def chat_delivery(
    engine: Engine,
    notifications: NotificationSettings,
    settings: ChatWorkerSettings,
    *,
    public_rounding_m: float,
) -> Iterator[ChatDelivery]:
    """The chat senders and chores of the channels that are configured, for ``run_worker``.

    LINE is on when ``ISSUEMAP_LINE_CHANNEL_SECRET`` is set: status changes of reports filed
    in LINE are pushed there (``geo.chat.updates.line_sender``), and each round the
    messages residents sent that are still unanswered are answered
    (``LineChannel.process_pending``). Connections are closed on leaving.
    """
    delivery = ChatDelivery()
    if not settings.line.enabled:
        yield delivery
        return
    from geo.chat.context import ChatContext
    from geo.chat.line import LineChannel
    from geo.chat.line_api import LINE_LIMITS, LineClient
    from geo.chat.updates import line_sender
    from geo.city.geocoding import make_geocoder

    context = ChatContext(
        routing=settings.routing,
        intake=settings.intake,
        chat=settings.chat,
        geocoder=make_geocoder(settings.geocoder),
        public_url=notifications.public_url,
        public_rounding_m=public_rounding_m,
        limits=LINE_LIMITS,
        zone=settings.city.zone,
    )
    with ExitStack() as stack:
        client = LineClient(settings.line)
        stack.callback(client.close)
        channel = LineChannel(settings.line, context)
        stack.callback(channel.close)
        delivery.senders["line"] = line_sender(client, public_url=notifications.public_url)
        delivery.each_round.append(lambda: channel.process_pending(engine))
        yield delivery


def deliver_main(run_as: str | None = None, *, configure_logging: bool = True) -> None:
    """The delivery worker's process (``DeliveryWorker``): deliver until told to stop.

    It stops when its standard input closes: the service closes it to stop the worker, and
    the system closes it if the service dies, so the worker never outlives it. SIGTERM
    stops it too; Ctrl-C, which reaches the whole process group, is left to the service.
    Started as root it first becomes ``run_as``, like a web worker: it talks to mail
    servers and to whatever addresses admins registered as webhooks.
    """
    from geo.cli.main import serve_log_config

    stop = threading.Event()

    def stop_soon(signum: int, frame: object) -> None:
        # Another thread sets it: a signal handler runs inside the main thread, which may
        # be holding the event's lock in wait().
        threading.Thread(target=stop.set).start()

    def stop_at_end_of_input() -> None:
        sys.stdin.buffer.read()
        stop.set()

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop_soon)
    threading.Thread(target=stop_at_end_of_input, name="delivery-stdin", daemon=True).start()
    if configure_logging:
        logging.config.dictConfig(serve_log_config())
    if run_as is not None and os.geteuid() == 0:
        drop_privileges(service_identity(run_as, create=False))
    db = DatabaseSettings()
    database_url = db.database_url
    if database_url is None:
        raise LocalDatabaseError("the delivery worker needs ISSUEMAP_DATABASE_URL")
    try:
        settings, privacy = NotificationSettings(), PrivacySettings()
        chat_settings = ChatWorkerSettings.from_environment()
    except ValidationError as error:
        # Said without the values: an SMTP URL holds a password.
        log.error("delivery worker not started: %s", settings_problems(error))
        return
    engine = make_engine(
        database_url, pool_size=1, prepared_statements=db.database_prepared_statements
    )
    try:
        with chat_delivery(
            engine, settings, chat_settings, public_rounding_m=privacy.public_rounding_m
        ) as chat:
            run_worker(
                engine,
                settings,
                public_rounding_m=privacy.public_rounding_m,
                stop=stop,
                chat_senders=chat.senders,
                each_round=chat.each_round,
            )
    finally:
        engine.dispose()


class DeliveryWorker:
    """The outbox delivery worker, as a process of its own beside the web workers.

    Use as a context manager around the serving: leaving it asks the worker to stop after
    the message in hand and waits for it (then, past ``stop_timeout_s``, ends it).
    """

    def __init__(
        self,
        database_url: str,
        *,
        run_as: str | None = None,
        configure_logging: bool = True,
        stop_timeout_s: float = 60.0,
    ) -> None:
        self.stop_timeout_s = stop_timeout_s
        # A fresh interpreter (not a fork of this process, which has threads of its own),
        # finding issuemap where this process found it. It runs at a lower priority, from
        # before its first import: starting web workers must answer uvicorn's health check
        # within seconds, and mail can wait a moment.
        call = f"deliver_main({run_as!r}, configure_logging={configure_logging!r})"
        self.command = [
            sys.executable,
            "-c",
            f"import os; os.nice(10); from geo.cli.service import deliver_main; {call}",
        ]
        self.env = os.environ | {
            "ISSUEMAP_DATABASE_URL": database_url,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DeliveryWorker:
        self.process = subprocess.Popen(self.command, env=self.env, stdin=subprocess.PIPE)
        log.info("delivery worker started (pid %s)", self.process.pid)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the worker and wait for it (a send in progress finishes or times out first)."""
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("delivery worker did not stop in time; ending it")
            self.process.kill()
            self.process.wait()
