"""Backups, restores and schema upgrades of an issuemap database, as an operator runs them.

A backup is one archive in pg_dump's custom format (``pg_dump -Fc``) of the whole database.
Photos are rows (``report_photos``, ``chat_uploads``), so the archive holds them too and no
folder beside it needs keeping; ``pg_restore --list FILE`` reads it without issuemap.

PostgreSQL's client programs are taken from the version the server runs
(``/usr/lib/postgresql/<major>/bin`` on Debian), or a newer one: pg_dump refuses a server
newer than itself, and a newer pg_restore writes settings an older server does not know.

A restore runs in one transaction: the database is emptied (``force``) and loaded, or left
as it was. pg_restore writes the archive as SQL and psql runs it; the transaction is
committed only once pg_restore has read the whole archive, so a damaged or cut-off file
changes nothing. A backup made at an older migration is upgraded to this release's schema
afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from geo.db.engine import MIGRATIONS, make_engine, normalise_url, upgrade
from geo.errors import IssuemapError

PG_LIB = Path("/usr/lib/postgresql")
"""Where Debian keeps each PostgreSQL version's programs, as ``<major>/bin/<program>``."""

ARCHIVE_MAGIC = b"PGDMP"
"""The first bytes of a pg_dump archive in custom format."""

ISSUEMAP_TABLES = ("alembic_version", "reports")
"""Tables whose presence in an archive says it is a backup of an issuemap database."""

COUNTED = (("reports", "report"), ("report_photos", "photo"), ("users", "staff account"))
"""What a summary counts, as table and noun."""

# Child programs speak English whatever the operator's locale: their messages are read here.
_C_LOCALE = {"LC_ALL": "C", "LC_MESSAGES": "C"}
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")
_DUMPED_FROM = re.compile(r"^;\s+Dumped from database version: (\d+)", re.MULTILINE)
_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) (\S+) ", re.MULTILINE)
_TOC_SCHEMA = re.compile(r"^\d+; \d+ \d+ SCHEMA - ([a-z_][a-z0-9_]*) ", re.MULTILINE)
_ERROR_LINES = 6

# Everything in schema public that is not part of an extension (PostGIS's spatial_ref_sys,
# its functions and types stay): a restore loads into a database holding none of it.
# Dropping the extensions too would need their owner, often a superuser, not the service.
CLEAR_SQL = """
SET client_min_messages = warning;
DO $clear$
DECLARE
  drops text[];
  statement text;
BEGIN
  SELECT coalesce(array_agg(format('DROP %s IF EXISTS public.%I CASCADE', kind, name)), '{}')
    INTO drops
    FROM (
      SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                            WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                            ELSE 'TABLE' END AS kind,
             c.relname AS name, c.oid AS oid, 'pg_class'::regclass AS catalog
        FROM pg_class c
       WHERE c.relnamespace = 'public'::regnamespace
         AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      UNION ALL
      SELECT 'TYPE', t.typname, t.oid, 'pg_type'::regclass
        FROM pg_type t
       WHERE t.typnamespace = 'public'::regnamespace
         AND t.typtype IN ('e', 'd', 'r', 'c') AND t.typrelid = 0
    ) AS found
   WHERE NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = found.catalog AND d.objid = found.oid
                        AND d.deptype = 'e');
  FOREACH statement IN ARRAY drops LOOP
    EXECUTE statement;
  END LOOP;
  SELECT coalesce(array_agg(format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::regprocedure)),
                  '{}')
    INTO drops
    FROM pg_proc p
   WHERE p.pronamespace = 'public'::regnamespace
     AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                        AND d.deptype = 'e');
  FOREACH statement IN ARRAY drops LOOP
    EXECUTE statement;
  END LOOP;
END
$clear$;
"""


class MaintenanceError(IssuemapError):
    """A backup, restore or upgrade was refused or failed; the database was left as it was."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema migration: its revision id and what it does (its docstring's first paragraph)."""

    revision: str
    title: str


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What an upgrade did: the schema's revision before and after, and what it applied."""

    before: str | None
    after: str
    applied: tuple[Migration, ...]


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """A backup written: where, how large, at which migration, and what it holds."""

    path: Path
    size: int
    revision: str
    server_version: str
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class RestoreSummary:
    """A restore done: the backup's migration, the upgrade after it, and what it held."""

    path: Path
    replaced: tuple[str, ...]
    """Tables that held rows before and were emptied (``force``)."""
    upgrade: Upgrade
    counts: dict[str, int]


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url, pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ migrations


def migrations() -> ScriptDirectory:
    """The Alembic migrations of this release."""
    return ScriptDirectory(str(MIGRATIONS))


def schema_revision(conn: Connection) -> str | None:
    """The migration the database's schema is at, or ``None`` for a database without one."""
    return MigrationContext.configure(conn).get_current_revision()


def _known(revision: str | None) -> bool:
    return revision is None or revision in {
        script.revision for script in migrations().walk_revisions()
    }


def migrations_between(before: str | None, after: str) -> tuple[Migration, ...]:
    """The migrations that take a schema at ``before`` (``None``: none) to ``after``, in order."""
    scripts = reversed(list(migrations().iterate_revisions(after, before)))
    return tuple(
        Migration(script.revision, " ".join((script.doc or "").split())) for script in scripts
    )


def _refuse_unknown(revision: str | None, where: str) -> None:
    if not _known(revision):
        head = migrations().get_current_head()
        raise MaintenanceError(
            f"{where} is at migration {revision}, which this issuemap (newest migration "
            f"{head}) does not know: it was made by a newer release. Use that release, or a "
            "newer one."
        )


def upgrade_database(url: str) -> Upgrade:
    """Apply every pending migration to the database at ``url`` and say which ran."""
    with _engine(url) as engine:
        with engine.connect() as conn:
            before = schema_revision(conn)
        _refuse_unknown(before, "The database")
        upgrade(url)
        with engine.connect() as conn:
            after = schema_revision(conn)
    assert after is not None, "an upgrade always leaves a revision"
    return Upgrade(before=before, after=after, applied=migrations_between(before, after))


# ------------------------------------------------------------------- PostgreSQL programs


def _program_major(program: Path) -> int | None:
    try:
        done = subprocess.run(
            [str(program), "--version"],
            capture_output=True,
            text=True,
            check=False,
            env=os.environ | _C_LOCALE,
        )
    except OSError:
        return None
    found = _VERSION.search(done.stdout)
    return int(found[1]) if found else None


def client_program(name: str, server_major: int, *, search: Path = PG_LIB) -> Path:
    """PostgreSQL's program ``name`` of the server's major version, or else the next newer.

    Looks in ``search`` (Debian's ``/usr/lib/postgresql/<major>/bin``), then on ``PATH``
    (where Debian's ``/usr/bin`` entries are only a wrapper, which is passed over).
    """
    found: dict[int, Path] = {}
    for path in search.glob(f"*/bin/{name}"):
        major = path.parent.parent.name
        if major.isdigit() and os.access(path, os.X_OK):
            found[int(major)] = path
    on_path = shutil.which(name)
    if on_path is not None and Path(on_path).resolve().name != "pg_wrapper":
        major_on_path = _program_major(Path(on_path))
        if major_on_path is not None:
            found.setdefault(major_on_path, Path(on_path))
    usable = sorted(major for major in found if major >= server_major)
    if not usable:
        have = ", ".join(f"{name} {major}" for major in sorted(found)) or f"no {name}"
        raise MaintenanceError(
            f"The database server runs PostgreSQL {server_major}, and this machine has "
            f"{have}: {name} must be version {server_major} or newer. Install "
            f"postgresql-client-{server_major}."
        )
    return found[usable[0]]


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The connection string for libpq's programs, and their environment.

    The password goes in the environment: a command line is visible to every user on the
    machine.
    """
    parsed = make_url(normalise_url(url))
    env = os.environ | _C_LOCALE
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    conninfo = parsed.set(drivername="postgresql", password=None)
    return conninfo.render_as_string(hide_password=False), env


def _tail(text_: str) -> str:
    lines = [line for line in text_.strip().splitlines() if line.strip()]
    return "\n".join(lines[-_ERROR_LINES:])


def _server(conn: Connection) -> tuple[int, str]:
    """The server's major version and its full version string."""
    number, shown = conn.execute(
        text("SELECT current_setting('server_version_num')::int, current_setting('server_version')")
    ).one()
    return int(number) // 10_000, str(shown)


def _counts(conn: Connection) -> dict[str, int]:
    counts = {}
    for table, _ in COUNTED:
        if conn.execute(
            text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"public.{table}"}
        ).scalar_one():
            counts[table] = int(
                conn.execute(text(f"SELECT count(*) FROM public.{table}")).scalar_one()
            )
    return counts


def describe_counts(counts: dict[str, int]) -> str:
    """``12 reports, 3 photos, 1 staff account``: what a summary counts, in words."""
    nouns = dict(COUNTED)
    return ", ".join(
        f"{count:,} {nouns[table]}{'' if count == 1 else 's'}" for table, count in counts.items()
    )


# --------------------------------------------------------------------------------- backup


def backup(url: str, path: Path, *, replace: bool = False) -> BackupSummary:
    """Write the database at ``url``, photos included, to ``path`` in pg_dump's custom format.

    The archive is written beside ``path`` under a temporary name and renamed when complete,
    so ``path`` never holds half a backup; it is readable by its owner only. An existing
    ``path`` is refused unless ``replace``. The schema is saved as it is, never upgraded first.
    """
    target = path.expanduser().absolute()
    if target.is_dir():
        raise MaintenanceError(f"{target} is a folder; give the name of the backup file to write")
    if target.exists() and not replace:
        raise MaintenanceError(
            f"{target} already exists; give a new name, or pass `force` to replace it"
        )
    if not target.parent.is_dir():
        raise MaintenanceError(f"the folder {target.parent} does not exist")
    with _engine(url) as engine, engine.connect() as conn:
        revision = schema_revision(conn)
        if revision is None:
            raise MaintenanceError(
                "The database holds no issuemap schema (no alembic_version table): "
                "nothing to back up"
            )
        major, version = _server(conn)
        counts = _counts(conn)
    pg_dump = client_program("pg_dump", major)
    conninfo, env = _libpq(url)
    try:
        handle, partial = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".partial", dir=target.parent
        )
    except OSError as error:
        raise MaintenanceError(f"cannot write in {target.parent}: {error.strerror}") from error
    os.close(handle)
    try:
        dumped = subprocess.run(
            [
                str(pg_dump),
                "--format=custom",
                "--no-password",
                f"--file={partial}",
                f"--dbname={conninfo}",
            ],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if dumped.returncode != 0:
            raise MaintenanceError(
                f"{pg_dump} failed; nothing was written:\n{_tail(dumped.stderr)}"
            )
        _archive_tables(Path(partial), _listing(client_program("pg_restore", major), Path(partial)))
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return BackupSummary(
        path=target,
        size=target.stat().st_size,
        revision=revision,
        server_version=version,
        counts=counts,
    )


# -------------------------------------------------------------------------------- restore


def _check_file(path: Path) -> None:
    """Refuse a missing or unreadable file, or one that is no pg_dump custom archive."""
    if not path.exists():
        raise MaintenanceError(f"{path} does not exist")
    if not path.is_file():
        raise MaintenanceError(f"{path} is not a file")
    try:
        with path.open("rb") as handle:
            start = handle.read(len(ARCHIVE_MAGIC))
    except OSError as error:
        raise MaintenanceError(f"cannot read {path}: {error.strerror}") from error
    if start != ARCHIVE_MAGIC:
        raise MaintenanceError(
            f"{path} is not an issuemap backup: it is not an archive in pg_dump's custom "
            "format (issuemap db backup writes one)"
        )


def _listing(pg_restore: Path, path: Path) -> str:
    """The archive's table of contents (``pg_restore --list``)."""
    listed = subprocess.run(
        [str(pg_restore), "--list", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | _C_LOCALE,
    )
    if listed.returncode == 0:
        return listed.stdout
    if "unsupported version" in listed.stderr:
        raise MaintenanceError(
            f"{path} was written by a newer pg_dump than {pg_restore} "
            f"(PostgreSQL {_program_major(pg_restore)}) can read. Install the PostgreSQL "
            "client programs of the version that made it, and restore into a server at "
            f"least that new:\n{_tail(listed.stderr)}"
        )
    raise MaintenanceError(f"{path} cannot be read as a backup:\n{_tail(listed.stderr)}")


def _archive_tables(path: Path, listing: str) -> set[str]:
    """The tables in schema public that the archive holds; refuse one that is not ours."""
    tables = {name for schema, name in _TOC_TABLE.findall(listing) if schema == "public"}
    missing = [table for table in ISSUEMAP_TABLES if table not in tables]
    if missing:
        raise MaintenanceError(
            f"{path} is not an issuemap backup: it is a PostgreSQL archive, but holds no "
            f"{' or '.join(missing)} table"
        )
    return tables


def _archive_revision(pg_restore: Path, path: Path) -> str:
    """The migration the backed-up schema was at, read from its ``alembic_version`` data."""
    read = subprocess.run(
        [str(pg_restore), "--data-only", "--table=alembic_version", "--file=-", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | _C_LOCALE,
    )
    rows: list[str] = []
    copying = False
    for line in read.stdout.splitlines():
        if line.startswith("COPY ") and "alembic_version" in line:
            copying = True
        elif copying and line == "\\.":
            break
        elif copying and line:
            rows.append(line)
    if read.returncode != 0 or len(rows) != 1:
        raise MaintenanceError(
            f"{path} is not an issuemap backup: it records no schema migration"
            + (f":\n{_tail(read.stderr)}" if read.returncode != 0 else "")
        )
    return rows[0]


def held_data(conn: Connection) -> dict[str, int]:
    """Tables of schema public (not an extension's) that hold rows, with their row counts."""
    tables = conn.execute(
        text(
            "SELECT c.relname FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
            " AND c.relname <> 'alembic_version'"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
            " AND d.objid = c.oid AND d.deptype = 'e')"
            " ORDER BY c.relname"
        )
    ).scalars()
    held = {}
    for table in tables:
        quoted = conn.dialect.identifier_preparer.quote(table)
        count = conn.execute(text(f"SELECT count(*) FROM public.{quoted}")).scalar_one()
        if count:
            held[str(table)] = int(count)
    return held


def _restore_list(listing: str) -> str:
    """The table of contents to restore: all but what belongs to the extensions' owner.

    The database may have its extensions already, created by a superuser, and only their
    owner may comment on them or write PostGIS's ``spatial_ref_sys`` (whose archived rows
    are only those added to it, and issuemap adds none: its geometries are all EPSG:4326).
    ``CREATE EXTENSION IF NOT EXISTS`` is kept, for a database that has none yet.
    """
    skipped = (" COMMENT - EXTENSION ", " TABLE DATA public spatial_ref_sys ")
    return "\n".join(
        line for line in listing.splitlines() if not any(part in line for part in skipped)
    )


def clear_schemas_sql(listing: str) -> str:
    """SQL dropping the schemas other than public that the archive creates, where they exist.

    The service keeps views in schemas of their own (the OGC collections); the archive
    creates them again, which fails while they exist. A schema an extension owns is kept,
    as the extensions are.
    """
    names = sorted({name for name in _TOC_SCHEMA.findall(listing) if name != "public"})
    if not names:
        return ""
    # ``_TOC_SCHEMA`` reads plain lower-case identifiers only: nothing in them needs quoting.
    wanted = ", ".join(f"'{name}'" for name in names)
    return f"""
DO $schemas$
DECLARE
  name text;
BEGIN
  FOR name IN
    SELECT n.nspname FROM pg_namespace n
     WHERE n.nspname = ANY (ARRAY[{wanted}]::text[])
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
                          AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', name);
  END LOOP;
END
$schemas$;
"""


def _load(*, pg_restore: Path, psql: Path, url: str, path: Path, listing: str) -> None:
    """Empty the database and load the archive into it, in one transaction."""
    conninfo, env = _libpq(url)
    with tempfile.TemporaryDirectory(prefix="issuemap-restore-") as folder:
        toc = Path(folder) / "toc.list"
        toc.write_text(_restore_list(listing))
        read_log, load_log = Path(folder) / "pg_restore.log", Path(folder) / "psql.log"
        with read_log.open("wb") as read_errors, load_log.open("wb") as load_errors:
            loader = subprocess.Popen(
                [str(psql), "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-d", conninfo],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=load_errors,
                env=env,
            )
            reader = subprocess.Popen(
                [
                    str(pg_restore),
                    "--no-owner",
                    "--no-privileges",
                    f"--use-list={toc}",
                    "--file=-",
                    str(path),
                ],
                stdout=subprocess.PIPE,
                stderr=read_errors,
                env=env,
            )
            assert loader.stdin is not None and reader.stdout is not None
            read: int | None = None  # pg_restore's exit status once it read to the end
            try:
                loader.stdin.write(
                    b"BEGIN;\n" + CLEAR_SQL.encode() + clear_schemas_sql(listing).encode()
                )
                shutil.copyfileobj(reader.stdout, loader.stdin, 1 << 20)
                read = reader.wait()
                if read == 0:
                    # Only now: psql ending its input without COMMIT rolls everything back.
                    loader.stdin.write(b"\nCOMMIT;\n")
            except BrokenPipeError:
                pass  # psql stopped at an error; its log says which
            finally:
                with suppress(BrokenPipeError):
                    loader.stdin.close()
                if reader.poll() is None:
                    reader.kill()
                reader.wait()
                loaded = loader.wait() == 0
        if read is not None and read != 0:
            raise MaintenanceError(
                f"{path} could not be read whole; nothing was changed:\n"
                f"{_tail(read_log.read_text(errors='replace'))}"
            )
        if not loaded or read is None:
            raise MaintenanceError(
                f"{path} could not be loaded; nothing was changed:\n"
                f"{_tail(load_log.read_text(errors='replace'))}"
            )


def restore(url: str, path: Path, *, replace: bool = False) -> RestoreSummary:
    """Load the backup at ``path`` into the database at ``url``, then upgrade its schema.

    A database that holds any rows is refused unless ``replace``; then everything in it
    is replaced. Extensions (PostGIS) are kept, or created if the backup has them and the
    database does not.
    """
    source = path.expanduser().absolute()
    _check_file(source)
    with _engine(url) as engine:
        with engine.connect() as conn:
            major, _ = _server(conn)
        pg_restore = client_program("pg_restore", major)
        psql = client_program("psql", major)
        listing = _listing(pg_restore, source)
        _archive_tables(source, listing)
        dumped_from = _DUMPED_FROM.search(listing)
        if dumped_from and int(dumped_from[1]) > major:
            raise MaintenanceError(
                f"{source} is a backup of a PostgreSQL {dumped_from[1]} database; this server "
                f"runs PostgreSQL {major}. Restore it into PostgreSQL {dumped_from[1]} or newer."
            )
        revision = _archive_revision(pg_restore, source)
        _refuse_unknown(revision, f"The backup {source}")
        with engine.connect() as conn:
            held = held_data(conn)
        if held and not replace:
            shown = ", ".join(
                f"{table} ({count:,} row{'' if count == 1 else 's'})"
                for table, count in list(held.items())[:6]
            )
            more = f" and {len(held) - 6} more tables" if len(held) > 6 else ""
            raise MaintenanceError(
                f"The database already holds data: {shown}{more}. Restore into an empty "
                "database, or pass `force` to replace everything in it."
            )
        _load(pg_restore=pg_restore, psql=psql, url=url, path=source, listing=listing)
        upgraded = upgrade_database(url)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # A restore brings no planner statistics; without them PostgreSQL guesses, and
            # point-in-polygon routing misses its GiST index.
            conn.execute(text("ANALYZE"))
            counts = _counts(conn)
    return RestoreSummary(
        path=source,
        replaced=tuple(held),
        upgrade=Upgrade(before=revision, after=upgraded.after, applied=upgraded.applied),
        counts=counts,
    )
