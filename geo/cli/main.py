"""The ``issuemap`` command line: run the service, load boundaries, manage reports."""

from __future__ import annotations

import copy
import logging
import logging.config
import os
import re
import secrets
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine

from geo.cli.city import categories_app, routes_app, teams_app
from geo.db.engine import database, make_engine
from geo.errors import InvalidInputError, IssuemapError, translated
from geo.i18n import N_, translate
from geo.settings import DatabaseSettings, ServerSettings

if TYPE_CHECKING:
    from geo.db.backup import Upgrade

app = typer.Typer(
    help="issuemap: report routing and maps for city governments.", no_args_is_help=True
)
boundaries_app = typer.Typer(help="Load ward and field-team zone boundaries.", no_args_is_help=True)
reports_app = typer.Typer(help="Work with stored reports.", no_args_is_help=True)
demo_app = typer.Typer(help="The generated demo city.", no_args_is_help=True)
db_app = typer.Typer(help="The database and its schema.", no_args_is_help=True)
app.add_typer(boundaries_app, name="boundaries")
app.add_typer(reports_app, name="reports")
app.add_typer(demo_app, name="demo")
keys_app = typer.Typer(help="API keys for apps, teams, planners, admins.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(categories_app, name="categories")
app.add_typer(teams_app, name="teams")
app.add_typer(routes_app, name="routes")

console = Console()
err_console = Console(stderr=True)


@contextmanager
def open_engine() -> Iterator[Engine]:
    """Engine on the configured database, or on the local cluster started for this command."""
    settings = DatabaseSettings()
    with database(settings) as url:
        engine = make_engine(
            url, pool_size=2, prepared_statements=settings.database_prepared_statements
        )
        try:
            yield engine
        finally:
            engine.dispose()


FLAGS: dict[str, str] = {
    "category_map": "--category-map",
    "category_separator": "--category-separator",
    "coords_pattern": "--coords-pattern",
    "column_map": "--map",
    "crs": "--crs",
    "default_category": "--default-category",
    "dry_run": "--dry-run",
    "email": "--email",
    "encoding": "--encoding",
    "file_format": "--format",
    "force": "--force",
    "id_field": "--id-field",
    "lang": "--lang",
    "max_reject_share": "--max-reject-share",
    "name": "--name",
    "name_field": "--name-field",
    "name_en_field": "--name-en-field",
    "name_th_field": "--name-th-field",
    "owner": "--owner",
    "rejects_path": "--rejects",
    "role": "--role",
    "source": "--source",
    "status_map": "--status-map",
    "team": "--team",
    "team_field": "--team-field",
    "timezone": "--timezone",
    "tolerance_m2": "--tolerance-m2",
}
"""The flag of each parameter a domain error may name (geo names parameters, not flags)."""

_NAMED_PARAMETER = re.compile(r"`([a-z_][a-z0-9_]*)`")


def error_text(error: IssuemapError, *, lang: str = "en", flags: Mapping[str, str] = FLAGS) -> str:
    """A domain error's message as the command line says it: its parameters as ``flags``."""

    def named(text: str) -> str:
        return _NAMED_PARAMETER.sub(lambda m: flags.get(m[1], m[0]), text)

    if isinstance(error, InvalidInputError):
        problem = error.problem if lang == "en" else translated(lang, error.msgid, error.values)
        return f"{flags.get(error.field, error.field)}: {named(problem)}"
    return named(str(error) if lang == "en" else error.message(lang))


def fail(error: IssuemapError, *, lang: str = "en", flags: Mapping[str, str] = FLAGS) -> typer.Exit:
    """Print a domain error for people, in ``lang``, and return the exit to raise."""
    # Messages quote user input (file names, ids): escape it so rich never reads it as markup.
    said = escape(error_text(error, lang=lang, flags=flags))
    label = translate(lang, N_("error:"))
    err_console.print(f"[bold red]{escape(label)}[/] {said}", highlight=False)
    return typer.Exit(code=2)


@contextmanager
def schema_as_it_is(status: str) -> Iterator[str]:
    """The database URL, schema not migrated, while ``status`` shows; errors end the command."""
    try:
        with database(DatabaseSettings(), migrate=False) as url, console.status(status):
            yield url
    except IssuemapError as error:
        raise fail(error) from error


def upgrade_text(done: Upgrade) -> str:
    """What ``issuemap db upgrade`` (or a restore) did to the schema, for people."""
    if not done.applied:
        return f"the schema is up to date: it is at {done.after}, the newest migration"
    start = f"from {done.before}" if done.before else "from nothing"
    count = len(done.applied)
    lines = [
        f"upgraded the schema {start} to {done.after}: "
        f"{count} migration{'' if count == 1 else 's'} applied"
    ]
    lines += [f"  {migration.revision}  {migration.title}" for migration in done.applied]
    return escape("\n".join(lines))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database if needed and apply every pending schema migration.

    Says which migrations it applied. Back the database up first (`issuemap db backup`)
    and stop the service while it runs.
    """
    from geo.db.backup import upgrade_database

    with schema_as_it_is("Upgrading the schema ...") as url:
        done = upgrade_database(url)
    console.print(upgrade_text(done), highlight=False, soft_wrap=True)


BACKUP_FILE = typer.Argument(
    help="The backup: one file in pg_dump's custom format.", show_default=False
)


@db_app.command("backup")
def db_backup(
    file: Annotated[Path, BACKUP_FILE],
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
) -> None:
    """Back the whole database up into FILE, photos included (pg_dump's custom format).

    The schema is saved as it is: back up before `issuemap db upgrade`, not after. The file
    is readable by its owner only; `pg_restore --list FILE` shows what it holds.
    """
    from geo.db.backup import backup, describe_counts

    with schema_as_it_is("Backing up the database ...") as url:
        done = backup(url, file, replace=force)
    console.print(
        escape(
            f"wrote {done.path} ({done.size:,} bytes): schema {done.revision}, "
            f"{describe_counts(done.counts)}, from PostgreSQL {done.server_version}"
        ),
        highlight=False,
        soft_wrap=True,
    )


@db_app.command("restore")
def db_restore(
    file: Annotated[Path, BACKUP_FILE],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace everything the database holds. Without it, a database holding "
            "any rows is refused.",
        ),
    ] = False,
) -> None:
    """Restore a backup made by `issuemap db backup`, then upgrade its schema to this release.

    Stop the service first. It runs as one transaction: after any error the database is as
    it was. PostGIS is created if the database lacks it (which needs a role allowed to).
    """
    from geo.db.backup import describe_counts, restore

    with schema_as_it_is("Restoring the database ...") as url:
        done = restore(url, file, replace=force)
    tables = len(done.replaced)
    replaced = f" (it replaced the rows of {tables} table{'' if tables == 1 else 's'})"
    console.print(
        escape(f"restored {done.path}: {describe_counts(done.counts)}{replaced if tables else ''}"),
        highlight=False,
        soft_wrap=True,
    )
    console.print(upgrade_text(done.upgrade), highlight=False, soft_wrap=True)


@boundaries_app.command("import")
def boundaries_import(
    file: Annotated[
        str,
        typer.Argument(
            help="GeoJSON, TopoJSON, Shapefile (.shp or zipped .zip) or GeoPackage.",
            show_default=False,
        ),
    ],
    layer: Annotated[
        str, typer.Option(metavar="wards|zones", help="Which layer the file replaces.")
    ],
    id_field: Annotated[str, typer.Option(help="Attribute holding each feature's unique id.")],
    name_field: Annotated[str, typer.Option(help="Attribute holding each feature's name.")],
    team_field: Annotated[
        str | None,
        typer.Option(
            help="Zones only: attribute naming each zone's team (created if new). "
            "Without it every zone gets a team of its own."
        ),
    ] = None,
    name_th_field: Annotated[
        str | None, typer.Option(help="Attribute holding each feature's Thai name, if any.")
    ] = None,
    name_en_field: Annotated[
        str | None, typer.Option(help="Attribute holding each feature's English name, if any.")
    ] = None,
    crs: Annotated[
        str | None,
        typer.Option(
            metavar="EPSG:N",
            help="CRS of the coordinates; required when the file does not declare one.",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="Shapefiles only: encoding of the attribute text, e.g. utf-8 or cp874. "
            "Without it the .cpg decides; with no .cpg, UTF-8 when valid, else cp874 (TIS-620).",
        ),
    ] = None,
    tolerance_m2: Annotated[
        float,
        typer.Option(
            "--tolerance-m2",
            min=0.0,
            help="Overlaps and gaps of at most this many m² are not reported.",
        ),
    ] = 1.0,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace the layer even if open reports, or more than "
            "ISSUEMAP_BOUNDARY_MAX_AREA_LOSS of the area covered now, would lie outside it.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check the file and show what replacing the layer would do; store nothing.",
        ),
    ] = False,
) -> None:
    """Check a ward or zone boundary file and make it the layer's current boundaries.

    The old boundaries are retired, not deleted: stored reports keep their ward and zone.
    A file that fails any check is refused and nothing changes. So is a replace that would
    leave open reports, or much of the area covered now, outside the new layer, unless
    --force is given; --dry-run shows those numbers without storing anything.
    """
    from geo.city.boundary_files import check_boundaries
    from geo.city.boundary_writes import write_boundaries
    from geo.cli.render import render_summary
    from geo.errors import BoundaryReplaceRefusedError
    from geo.settings import BoundarySettings, RoutingSettings

    settings = BoundarySettings()
    try:
        with console.status(f"Reading and checking {escape(file)} ..."):
            checked = check_boundaries(
                file,
                layer=layer,
                id_field=id_field,
                name_field=name_field,
                team_field=team_field,
                name_th_field=name_th_field,
                name_en_field=name_en_field,
                crs=crs,
                tolerance_m2=tolerance_m2,
                settings=settings,
                encoding=encoding,
            )
        doing = "Measuring what replacing" if dry_run else "Storing"
        with open_engine() as engine, console.status(f"{doing} the {layer} ..."):
            summary = write_boundaries(
                engine,
                checked,
                settings=settings,
                routing=RoutingSettings(),
                force=force,
                dry_run=dry_run,
            )
    except BoundaryReplaceRefusedError as error:
        refused = fail(error)
        err_console.print(
            f"To replace the {escape(layer)} anyway, run the same command with "
            f"{FLAGS[error.parameter]}; --dry-run shows the effect without storing anything.",
            highlight=False,
        )
        raise refused from error
    except IssuemapError as error:
        raise fail(error) from error
    console.print(render_summary(summary))


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve_log_config(*, requests: bool = True) -> dict[str, Any]:
    """Uvicorn's logging set-up writing JSON lines with secrets hidden, for every logger.

    ``requests``: one line per HTTP request (logger ``issuemap.requests``, written by
    ``api.metrics``), in place of uvicorn's access log.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"] = {
        "default": {"()": "geo.cli.service.json_formatter"},
        "access": {"()": "geo.cli.service.json_formatter"},
    }
    config["loggers"]["geo"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["issuemap.requests"] = {
        "handlers": ["access"],
        "level": "INFO" if requests else "WARNING",
        "propagate": False,
    }
    # Everything else that warns (api.errors, libraries) is written the same redacted way.
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


_APPLICATION: dict[str, str] = {}
"""What ``serve`` runs, as uvicorn's import strings: set by ``serve_application``."""


def _import_string(function: Callable[..., Any]) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def serve_application(factory: Callable[[], Any], *, worker: Callable[[], Any]) -> None:
    """Tell ``serve`` which web application to run.

    geo never imports the web adapter: ``api.cli`` hands its app factory in, and a
    ``worker`` factory that builds the app and then gives up root (``worker_app``).
    uvicorn's worker processes import them again by name, so the names are taken from the
    functions themselves.
    """
    _APPLICATION["factory"] = _import_string(factory)
    _APPLICATION["worker"] = _import_string(worker)


def worker_app(factory: Callable[[], Any]) -> Any:
    """The application of one web worker of ``serve`` started as root.

    It is built while still root, then the worker switches to ISSUEMAP_RUN_AS_USER for good,
    before the lifespan opens a connection or any request is read.
    """
    from geo.cli.service import drop_privileges, service_identity

    application = factory()
    if os.geteuid() == 0:
        drop_privileges(service_identity(ServerSettings().run_as_user, create=False))
    return application


WORKER_HEALTHCHECK_S = 60
"""How long a web worker may take to answer uvicorn's health check before it is replaced.

A starting worker answers once it has imported the application; uvicorn's 5 seconds is
less than that takes on a busy two-core server, where workers were killed and restarted
in a loop and the service never came up.
"""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port to listen on.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes.")] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (a JSON line: route, status, duration).")
    ] = True,
) -> None:
    """Run the web service; without ISSUEMAP_DATABASE_URL it runs its own PostGIS.

    The local PostgreSQL is restarted if it dies. Started as root, the web workers run as
    ISSUEMAP_RUN_AS_USER; only the process that watches them and PostgreSQL stays root.
    A delivery worker (as `issuemap deliver` runs) sends the queued e-mails and webhook calls.
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from geo.cli.service import (
        DeliveryWorker,
        PostgresSupervisor,
        check_reachable,
        service_identity,
        shared_metrics_folder,
    )
    from geo.db.cluster import LocalCluster
    from geo.db.engine import is_empty

    if not _APPLICATION:
        raise typer.BadParameter("no web application to serve: run the `issuemap` command")
    server = ServerSettings()
    settings = DatabaseSettings()
    log_config = serve_log_config(requests=access_log)
    logging.config.dictConfig(log_config)
    try:
        identity = service_identity(server.run_as_user, create=True) if os.geteuid() == 0 else None
        with database(settings) as url, ExitStack() as stack:
            engine = make_engine(
                url, pool_size=2, prepared_statements=settings.database_prepared_statements
            )
            try:
                if server.load_demo and is_empty(engine):
                    from geo.demo.city import load_demo_city

                    console.print("empty database: loading the demo city (generated data)")
                    summary = load_demo_city(engine)
                    console.print(summary)
            finally:
                engine.dispose()
            # Worker processes find the database the same way an operator would tell them.
            os.environ["ISSUEMAP_DATABASE_URL"] = url
            # Every worker must sign CSRF tokens with one key, or a form one worker served
            # is refused by another; without a configured key, this run draws one for all.
            os.environ.setdefault("ISSUEMAP_CSRF_SECRET", secrets.token_urlsafe(32))
            if settings.database_url is None:
                cluster = LocalCluster(settings.data_dir)
                if identity is not None:
                    cluster.admit(identity.gid)
                    check_reachable(cluster.socket_dir, identity)
                stack.enter_context(PostgresSupervisor(cluster))
            # E-mails and webhook calls queued by the web workers go out from here.
            stack.enter_context(
                DeliveryWorker(url, run_as=identity.name if identity is not None else None)
            )
            bind_host, bind_port = host or server.host, port or server.port
            if workers > 1 or identity is not None:
                # Worker processes of their own: /metrics, answered by any one of them,
                # must count the requests of all.
                stack.enter_context(shared_metrics_folder(identity))
            if identity is None:
                # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into
                # SystemExit lets the blocks above stop the supervisor and our PostgreSQL.
                signal.signal(signal.SIGTERM, _exit_on_signal)
                uvicorn.run(
                    _APPLICATION["factory"],
                    factory=True,
                    host=bind_host,
                    port=bind_port,
                    workers=workers,
                    # Each request is logged once, as JSON, by the application.
                    access_log=False,
                    log_config=log_config,
                    # The app reads X-Forwarded-For itself, from ISSUEMAP_TRUSTED_PROXIES
                    # only; uvicorn's default would trust any request from 127.0.0.1.
                    proxy_headers=False,
                    timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
                )
                return
            # Root stays only in this process, which serves nothing: the workers (even a
            # single one) are processes of their own that drop root as they start.
            config = uvicorn.Config(
                _APPLICATION["worker"],
                factory=True,
                host=bind_host,
                port=bind_port,
                workers=workers,
                access_log=False,
                log_config=log_config,
                proxy_headers=False,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            )
            web = Multiprocess(config, sockets=[config.bind_socket()])
            web.run()
            if any(process.exitcode == STARTUP_FAILURE for process in web.processes):
                raise typer.Exit(code=STARTUP_FAILURE)
    except IssuemapError as error:
        raise fail(error) from error


@reports_app.command("reroute")
def reports_reroute(
    all_statuses: Annotated[
        bool, typer.Option("--all-statuses", help="Also re-route resolved and closed reports.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; write nothing.")
    ] = False,
    actor: Annotated[str, typer.Option(help="Who is re-routing, for the audit trail.")] = "cli",
) -> None:
    """Route stored reports again against the current boundaries, logging every change."""
    from geo.reports.store import reroute_reports
    from geo.settings import RoutingSettings
    from geo.vocabulary import OPEN_STATUSES, REPORT_STATUSES

    statuses = REPORT_STATUSES if all_statuses else OPEN_STATUSES
    try:
        with open_engine() as engine, engine.begin() as conn:
            result = reroute_reports(
                conn,
                settings=RoutingSettings(),
                statuses=statuses,
                actor=actor,
                dry_run=dry_run,
            )
    except IssuemapError as error:
        raise fail(error) from error
    verb = "would change" if dry_run else "changed"
    console.print(
        f"examined {result.examined:,} reports; {verb} {result.changed:,}; "
        f"{result.outside:,} now lie outside every ward and were left as they were"
    )


@reports_app.command("import")
def reports_import(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="The CSV file to import.", show_default=False)
    ],
    file_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="traffy|socrata|csv",
            help="traffy: a Traffy Fondue export; socrata: a Socrata 311 export (e.g. "
            "Chicago's); csv: any CSV, described with --map.",
        ),
    ],
    column_map: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="FIELD=COLUMN",
            help="--format csv: which column holds a field; repeat for each. Fields: lat, lon "
            "(or coords), external_id (required), category, description, created_at, "
            "updated_at, resolved_at, status, reporter_name, reporter_contact, address, "
            "media_url.",
        ),
    ] = None,
    category_map: Annotated[
        str | None,
        typer.Option(
            "--category-map",
            metavar="FILE",
            help="CSV of value,code rows (or a JSON object): a file's category value (Traffy "
            "type, Socrata sr_type, ...) to one of our category codes.",
        ),
    ] = None,
    status_map: Annotated[
        str | None,
        typer.Option(
            "--status-map",
            metavar="FILE",
            help="CSV of value,status rows (or a JSON object): a file's status value to one "
            "of our statuses; it adds to the format's own.",
        ),
    ] = None,
    category_separator: Annotated[
        str | None,
        typer.Option(
            metavar="SEP",
            help="Splits a category cell holding several values; the first known one wins.",
        ),
    ] = None,
    coords_pattern: Annotated[
        str | None,
        typer.Option(
            metavar="REGEX",
            help="--format csv with --map coords=COLUMN: how that column reads, a regular "
            "expression with the groups (?P<lon>...) and (?P<lat>...). Default: lon,lat.",
        ),
    ] = None,
    default_category: Annotated[
        str | None,
        typer.Option(
            metavar="CODE", help="Category for rows whose own matches none; else they are rejected."
        ),
    ] = None,
    create_categories: Annotated[
        bool,
        typer.Option(
            "--create-categories",
            help="Add the source's own categories the city lacks, with Thai and English names.",
        ),
    ] = False,
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Reports already stored take the file's status and times when its row is "
            "newer, each change in the audit trail.",
        ),
    ] = False,
    max_reject_share: Annotated[
        str,
        typer.Option(
            metavar="SHARE",
            help="Exit non-zero when more than this share of the rows is rejected: 50% or 0.5.",
        ),
    ] = "50%",
    source: Annotated[
        str | None,
        typer.Option(
            help="Source name stored on the reports; with the external id, the re-import key. "
            "Default: the format's name."
        ),
    ] = None,
    timezone: Annotated[
        str, typer.Option(help="Time zone of times written without a UTC offset.")
    ] = "UTC",
    encoding: Annotated[str, typer.Option(help="Text encoding of the file.")] = "utf-8",
    rejects: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="Where rejected rows go, with line numbers and reasons. "
            "Default: FILE's name with .rejects.csv, in the current folder (none for a dry run).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Check and route every row, show the summary, then store nothing."
        ),
    ] = False,
    actor: Annotated[str, typer.Option(help="Who is importing, for the audit trail.")] = "import",
    lang: Annotated[
        str,
        typer.Option(
            "--lang", metavar="th|en", help="Language of the summary and errors: th or en."
        ),
    ] = "th",
) -> None:
    """Import reports from a CSV file, routed to wards and teams, in one transaction.

    Every row is stored or written to the rejects file with its line number and the reason.
    Rows whose external id is already stored are skipped (or, with --update, updated), so
    importing a file again adds nothing twice. A file that cannot be read is refused and
    nothing changes. Exits 1 when no row is stored or more than --max-reject-share of
    the rows is rejected, 2 when the file or an option is refused.
    """
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from geo.errors import Message
    from geo.i18n import LANGUAGES
    from geo.reports.imports import (
        PHASES,
        ImportProgress,
        import_outcome,
        import_reports,
        parse_column_map,
        parse_share,
        read_category_map,
        read_status_map,
        render_import_summary,
    )

    spoken = lang.strip().lower()
    lang = spoken if spoken in LANGUAGES else "th"  # a refused --lang is said in Thai
    try:
        if spoken not in LANGUAGES:
            raise InvalidInputError(
                "lang", N_("must be one of: {choices}"), choices=", ".join(LANGUAGES)
            )
        share = parse_share(max_reject_share)
        mapping = parse_column_map(column_map or [])
        categories = read_category_map(category_map, encoding=encoding) if category_map else None
        statuses = read_status_map(status_map, encoding=encoding) if status_map else None
        bar = Progress(
            TextColumn("{task.description:<34}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
        )
        tasks: dict[str, TaskID] = {}

        def show(step: ImportProgress) -> None:
            # The bars start with the first rows, so a refused file shows only the error.
            if not tasks:
                bar.start()
                tasks.update({phase: bar.add_task(phase) for phase in PHASES})
            bar.update(
                tasks[step.phase],
                completed=step.done_bytes,
                total=step.total_bytes,
                description=f"{step.phase} ({step.rows:,} rows)",
            )

        with open_engine() as engine:
            try:
                summary = import_reports(
                    engine,
                    file,
                    file_format=file_format,
                    column_map=mapping,
                    category_map=categories,
                    status_map=statuses,
                    default_category=default_category,
                    create_categories=create_categories,
                    category_separator=category_separator,
                    coords_pattern=coords_pattern,
                    update=update,
                    source=source,
                    timezone=timezone,
                    encoding=encoding,
                    rejects_path=rejects,
                    actor=actor,
                    dry_run=dry_run,
                    progress=show,
                )
            finally:
                if tasks:
                    bar.stop()
    except IssuemapError as error:
        raise fail(error, lang=lang) from error
    console.print(escape(render_import_summary(summary, lang)), highlight=False)
    problem: Message | None = import_outcome(summary, max_reject_share=share)
    if problem is not None:
        label = translate(lang, N_("error:"))
        err_console.print(
            f"[bold red]{escape(label)}[/] {escape(problem.text(lang))}", highlight=False
        )
        raise typer.Exit(code=1)


@demo_app.command("load")
def demo_load(
    seed: Annotated[
        int, typer.Option(help="Seed of the generator: the same seed draws the same city.")
    ] = 2026,
) -> None:
    """Generate the demo city and load it into an empty database (labelled as demo data)."""
    from geo.demo.city import load_demo_city

    try:
        with open_engine() as engine, console.status("Generating and loading the demo city ..."):
            summary = load_demo_city(engine, seed=seed)
    except IssuemapError as error:
        raise fail(error) from error
    console.print(summary)


keys_app = typer.Typer(
    help="API keys for apps, field teams, planners and admins.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    role: Annotated[str, typer.Option(help="public, field_team, planner or admin.")],
    team: Annotated[str | None, typer.Option(help="Team code (field_team keys only).")] = None,
    owner: Annotated[
        str | None, typer.Option(help="E-mail address of the staff account responsible for it.")
    ] = None,
    expires_days: Annotated[
        int | None,
        typer.Option(min=1, max=3650, help="Days until the key stops working (default: never)."),
    ] = None,
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    from datetime import UTC, datetime, timedelta

    from geo.access.keys import create_api_key

    expires_at = (
        datetime.now(UTC) + timedelta(days=expires_days) if expires_days is not None else None
    )
    try:
        with open_engine() as engine, engine.begin() as conn:
            new = create_api_key(
                conn,
                name=name,
                role=role,
                team_code=team,
                owner_email=owner,
                expires_at=expires_at,
            )
    except IssuemapError as error:
        raise fail(error) from error
    console.print(f"key {new.id} ({new.role}) created. It will not be shown again:")
    print(new.secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys: name, prefix, role, owner, expiry, last use; never their secrets."""
    from geo.access.keys import list_api_keys

    with open_engine() as engine, engine.connect() as conn:
        keys = list_api_keys(conn)

    def when(value: object) -> str:
        return "" if value is None else f"{value:%Y-%m-%d %H:%M}"

    # One line per key, tab-separated: readable, and as easy for scripts to cut.
    print("\t".join(("id", "name", "prefix", "role", "team", "owner", "expires", "last used")))
    for key in keys:
        print(
            "\t".join(
                (
                    str(key.id),
                    key.name + (" (revoked)" if key.revoked_at else ""),
                    key.prefix,
                    key.role,
                    "" if key.team_id is None else str(key.team_id),
                    key.owner_email or "",
                    when(key.expires_at),
                    when(key.last_used_at),
                )
            )
        )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id.")]) -> None:
    """Revoke an API key at once."""
    from geo.access.keys import revoke_api_key

    try:
        with open_engine() as engine, engine.begin() as conn:
            revoke_api_key(conn, key_id)
    except IssuemapError as error:
        raise fail(error) from error
    console.print(f"key {key_id} revoked")


users_app = typer.Typer(help="Staff accounts: people who sign in at /login.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The person's e-mail address; they sign in with it.")],
    name: Annotated[str, typer.Option(help="The person's name, as the audit trail shows it.")],
    role: Annotated[str, typer.Option(help="field_team, planner or admin.")],
    team: Annotated[str | None, typer.Option(help="Team code (field_team accounts only).")] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from standard input (its first line) instead of asking.",
        ),
    ] = False,
) -> None:
    """Create a staff account; the password is asked twice, or read from standard input."""
    import sys

    from geo.access.accounts import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with open_engine() as engine, engine.begin() as conn:
            user = create_user(
                conn, email=email, name=name, role=role, password=password, team_code=team
            )
    except InvalidInputError as error:
        if error.field == "password":
            where = "--password-stdin" if password_stdin else "password"
            err_console.print(f"[bold red]error:[/] {escape(where)}: {escape(error.problem)}")
            raise typer.Exit(code=2) from error
        raise fail(error) from error
    except IssuemapError as error:
        raise fail(error) from error
    console.print(f"account {user.id} ({user.role}) created for {escape(user.email)}")


@users_app.command("list")
def users_list() -> None:
    """List staff accounts: e-mail, name, role, team and whether disabled."""
    from rich.table import Table

    from geo.access.accounts import list_users

    with open_engine() as engine, engine.connect() as conn:
        users = list_users(conn)
    table = Table("id", "email", "name", "role", "team id", "disabled")
    for user in users:
        table.add_row(
            str(user.id),
            escape(user.email),
            escape(user.name),
            user.role,
            "" if user.team_id is None else str(user.team_id),
            "yes" if user.disabled else "",
        )
    console.print(table)


@users_app.command("disable")
def users_disable(
    email: Annotated[str, typer.Option(help="The account's e-mail address.")],
) -> None:
    """Disable a staff account: it can no longer sign in, and its sessions end at once."""
    from geo.access.accounts import disable_user

    try:
        with open_engine() as engine, engine.begin() as conn:
            user = disable_user(conn, email)
    except IssuemapError as error:
        raise fail(error) from error
    console.print(f"account {user.id} ({escape(user.email)}) disabled")


@app.command()
def deliver(
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit.")
    ] = False,
) -> None:
    """Send queued e-mails (ISSUEMAP_SMTP_URL), LINE pushes and webhook calls, retrying failures.

    With LINE connected (ISSUEMAP_LINE_CHANNEL_SECRET) it also answers LINE messages whose
    answer the webhook did not finish.

    `issuemap serve` runs this worker itself; run it alone beside a service started another
    way. Several may run at once: each message goes out through one of them. Stop it with
    Ctrl-C; the message in hand is finished first.
    """
    import threading

    from pydantic import ValidationError

    from geo.cli.service import ChatWorkerSettings, chat_delivery
    from geo.reports.notifications import deliver_due, run_worker, settings_problems
    from geo.settings import NotificationSettings, PrivacySettings

    logging.config.dictConfig(serve_log_config())
    try:
        settings, privacy = NotificationSettings(), PrivacySettings()
        chat_settings = ChatWorkerSettings.from_environment()
    except ValidationError as error:
        problems = escape(settings_problems(error))
        err_console.print(f"[bold red]error:[/] {problems}", highlight=False)
        raise typer.Exit(code=2) from error
    if not settings.email_enabled:
        console.print("ISSUEMAP_SMTP_URL is not set: e-mail is off; webhook calls still go out")
    if not chat_settings.line.enabled:
        console.print("ISSUEMAP_LINE_CHANNEL_SECRET is not set: LINE pushes wait until it is")
    try:
        with (
            open_engine() as engine,
            chat_delivery(
                engine, settings, chat_settings, public_rounding_m=privacy.public_rounding_m
            ) as chat,
        ):
            if once:
                delivered = retrying = failed = 0
                # Messages residents sent that are still unanswered, then what is due.
                for chore in chat.each_round:
                    chore()
                while True:
                    done = deliver_due(
                        engine,
                        settings,
                        public_rounding_m=privacy.public_rounding_m,
                        chat_senders=chat.senders,
                    )
                    delivered += done.delivered
                    retrying += done.retrying
                    failed += done.failed
                    if done.tried == 0:
                        break
                console.print(f"delivered {delivered}, will retry {retrying}, gave up on {failed}")
                return
            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                # Set from another thread: the handler runs in the thread that waits on it.
                signal.signal(signum, lambda *_: threading.Thread(target=stop.set).start())
            console.print("delivering; Ctrl-C stops")
            run_worker(
                engine,
                settings,
                public_rounding_m=privacy.public_rounding_m,
                stop=stop,
                chat_senders=chat.senders,
                each_round=chat.each_round,
            )
    except IssuemapError as error:
        raise fail(error) from error
