"""Backups restore, upgrades migrate: ``issuemap db backup``, ``db restore`` and ``db upgrade``.

A city's database goes through a backup file into a fresh database (not even PostGIS in it)
and comes out the same: reports, their events, photos, boundaries, keys and staff accounts,
which the app then serves. A database built at the previous migration, with data in it, is
upgraded to this release and still read. Whatever is not a backup, or cannot be restored
here, is refused with a sentence that names the problem, and leaves the database as it was.
"""

from __future__ import annotations

import io
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from PIL import Image
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from geo.cli.main import app
from geo.db.backup import MaintenanceError, client_program, migrations
from geo.db.cluster import LocalCluster
from geo.db.engine import alembic_config, make_engine
from tests.fixtures import load_tiny_city

COMPARED = (
    "reports",
    "report_events",
    "report_photos",
    "wards",
    "zones",
    "boundary_imports",
    "teams",
    "categories",
    "category_routes",
    "api_keys",
    "users",
)
PASSWORD = "correct horse battery staple"


def flat(output: str) -> str:
    """The output without line breaks or spaces: rich wraps long lines, paths included."""
    return "".join(output.split())


def says(output: str, *sentences: str) -> bool:
    """Whether ``output`` (``flat``) holds each sentence, whatever wrapped it."""
    return all(flat(sentence) in output for sentence in sentences)


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


def cli(url: str, *args: str) -> tuple[int, str]:
    """Run ``issuemap ARGS`` against the database at ``url``: exit code and output."""
    result = CliRunner().invoke(app, list(args), env={"ISSUEMAP_DATABASE_URL": url})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, flat(result.output)


def contents(url: str, tables: tuple[str, ...] = COMPARED) -> dict[str, tuple[int, str]]:
    """Each table's row count and a digest of all its rows (every column, as text)."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return {
                table: tuple(
                    conn.execute(
                        text(
                            "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' "
                            f"ORDER BY t::text), '')) FROM {table} AS t"
                        )
                    ).one()
                )
                for table in tables
            }
    finally:
        engine.dispose()


def query(url: str, sql: str) -> object:
    """The one value ``sql`` selects in the database at ``url``."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def server_major(url: str) -> int:
    return int(str(query(url, "SHOW server_version_num"))) // 10_000


@contextmanager
def created_database(cluster: LocalCluster, template: str | None = None) -> Iterator[str]:
    """URL of a database made for the block (a copy of ``template``, else empty), then dropped."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user="postgres", host=cluster.host, port=5432, dbname=name, template_dbname=template
    )
    janitor.init()
    try:
        yield cluster.url(name)
    finally:
        janitor.drop()


@pytest.fixture
def new_database(pg_cluster: LocalCluster) -> Iterator[str]:
    """URL of a database just created: no PostGIS, no schema."""
    with created_database(pg_cluster) as url:
        yield url


@pytest.fixture
def other_db(pg_cluster: LocalCluster, template_db: str) -> Iterator[str]:
    """URL of a second migrated, empty database."""
    with created_database(pg_cluster, template_db) as url:
        yield url


def app_client(url: str, tmp_path: Path):
    from fastapi.testclient import TestClient

    from api.app import AppSettings, create_app
    from geo.settings import DatabaseSettings, GeocoderSettings
    from tests.fixtures import TINY_GAZETTEER

    gazetteer = tmp_path / "gazetteer.csv"
    gazetteer.write_text(TINY_GAZETTEER, encoding="utf-8")
    settings = AppSettings(
        database=DatabaseSettings(database_url=url),
        geocoder=GeocoderSettings(gazetteer_path=gazetteer),
    )
    return TestClient(create_app(settings))


# ------------------------------------------------------------------------ the round trip


def test_a_city_goes_through_a_backup_into_a_fresh_database_whole(
    city_app, db_url: str, engine: Engine, new_database: str, tmp_path: Path
) -> None:
    from geo.access.accounts import create_user, verify_login
    from geo.settings import AccountSettings

    client, _city, keys = city_app
    staff = {"X-API-Key": keys.t1}
    plain = client.post(
        "/api/reports",
        json={"category": "road", "description": "หลุม", "lat": 8.405, "lon": 100.011},
    )
    assert plain.status_code == 201, plain.text
    shown = client.post(
        "/api/reports",
        data={"category": "road", "description": "ถนนทรุด", "lat": "8.405", "lon": "100.005"},
        files={"photo": ("hole.png", png((200, 30, 30)), "image/png")},
    )
    assert shown.status_code == 201, shown.text
    report, (photo,) = shown.json()["id"], shown.json()["photo_ids"]
    for status in ("acknowledged", "in_progress"):
        moved = client.post(f"/api/reports/{report}/status", json={"status": status}, headers=staff)
        assert moved.status_code == 200, moved.text
    fixed = client.post(
        f"/api/reports/{report}/status",
        data={"status": "resolved", "public_note": "ซ่อมเสร็จ"},
        files={"photo": ("after.png", png((30, 200, 30)), "image/png")},
        headers=staff,
    )
    assert fixed.status_code == 200, fixed.text
    with engine.begin() as conn:
        create_user(conn, email="planner@city.example", name="P", role="planner", password=PASSWORD)
    photo_bytes = client.get(f"/api/photos/{photo}").content
    before = contents(db_url)
    assert all(count for count, _ in before.values()), before
    archive = tmp_path / "city.dump"

    code, said = cli(db_url, "db", "backup", str(archive))

    assert code == 0, said
    assert says(said, f"wrote {archive}", "2 reports, 2 photos, 1 staff account")
    assert archive.read_bytes().startswith(b"PGDMP")
    assert archive.stat().st_mode & 0o077 == 0  # personal data: readable by its owner only

    code, said = cli(new_database, "db", "restore", str(archive))

    assert code == 0, said
    assert says(said, f"restored {archive}: 2 reports, 2 photos, 1 staff account")
    assert says(said, "the schema is up to date")
    assert contents(new_database) == before
    with app_client(new_database, tmp_path) as restored:
        assert restored.get(f"/api/reports/{report}").json()["status"] == "resolved"
        events = restored.get(f"/api/reports/{report}/events", headers={"X-API-Key": keys.planner})
        assert [e["to_status"] for e in events.json()] == [
            "open",
            "acknowledged",
            "in_progress",
            "resolved",
        ]
        assert restored.get(f"/api/photos/{photo}").content == photo_bytes
        # The same key works: only its hash was stored, and the hash came along.
        queue = restored.get(f"/api/teams/{_city.teams['T1']}/queue", headers=staff)
        assert queue.status_code == 200, queue.text
    restored_engine = make_engine(new_database, pool_size=1)
    try:
        with restored_engine.begin() as conn:
            user = verify_login(
                conn,
                "planner@city.example",
                PASSWORD,
                now=datetime.now(UTC),
                settings=AccountSettings(),
            )
        assert user.role == "planner"
    finally:
        restored_engine.dispose()


# -------------------------------------------------------------------------------- refusals


def test_what_is_not_an_issuemap_backup_is_refused_by_name(
    db_url: str, new_database: str, pg_cluster: LocalCluster, tmp_path: Path
) -> None:
    missing = tmp_path / "nothing.dump"
    code, said = cli(db_url, "db", "restore", str(missing))
    assert code == 2 and says(said, f"error: {missing} does not exist")
    code, said = cli(db_url, "db", "restore", str(tmp_path))
    assert code == 2 and says(said, f"error: {tmp_path} is not a file")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a backup\n")
    code, said = cli(db_url, "db", "restore", str(notes))
    assert code == 2
    assert says(said, f"{notes} is not an issuemap backup: it is not an archive in pg_dump's")
    # A real pg_dump archive, of some other database.
    other = tmp_path / "other.dump"
    name = make_url(new_database).database
    assert name is not None
    pg_dump = client_program("pg_dump", server_major(db_url))
    subprocess.run(
        [str(pg_dump), "-Fc", "-f", str(other), "-h", pg_cluster.host, "-U", "postgres", name],
        check=True,
    )
    code, said = cli(db_url, "db", "restore", str(other))
    assert code == 2
    assert says(said, "is not an issuemap backup: it is a PostgreSQL archive, but holds no")
    assert says(said, "alembic_version or reports table")
    # An archive from a pg_dump newer than ours: its header says so.
    ours = tmp_path / "ours.dump"
    assert cli(db_url, "db", "backup", str(ours))[0] == 0
    newer = tmp_path / "newer.dump"
    header = bytearray(ours.read_bytes())
    header[6] = 99  # the archive format's minor version, just after "PGDMP" and the major
    newer.write_bytes(bytes(header))
    code, said = cli(db_url, "db", "restore", str(newer))
    assert code == 2
    assert says(said, f"{newer} was written by a newer pg_dump than")
    assert says(said, "Install the PostgreSQL client programs of the version that made it")


def test_a_backup_from_a_newer_release_is_refused(
    db_url: str, engine: Engine, new_database: str, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    archive = tmp_path / "newer.dump"
    assert cli(db_url, "db", "backup", str(archive))[0] == 0

    code, said = cli(new_database, "db", "restore", str(archive))
    assert code == 2
    assert says(said, f"The backup {archive} is at migration 9999, which this issuemap")
    assert says(said, "it was made by a newer release")
    code, said = cli(db_url, "db", "upgrade")
    assert code == 2 and says(said, "The database is at migration 9999, which this issuemap")
    assert query(new_database, "SELECT to_regclass('public.reports')") is None


def test_a_database_holding_data_is_replaced_only_with_force_and_whole_or_not_at_all(
    db_url: str, engine: Engine, other_db: str, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        # A photo of random bytes: the archive is mostly its data, which a damage below hits.
        seed_city_in_sql(conn, os.urandom(200_000))
    archive = tmp_path / "city.dump"
    assert cli(db_url, "db", "backup", str(archive))[0] == 0
    source = contents(db_url)
    # Another city's database: other rows in the same tables.
    other = make_engine(other_db, pool_size=1)
    try:
        with other.begin() as conn:
            conn.execute(text("INSERT INTO teams (code, name) VALUES ('OTHER', 'other city')"))
    finally:
        other.dispose()
    held = contents(other_db)

    code, said = cli(other_db, "db", "restore", str(archive))
    assert code == 2
    assert says(said, "error: The database already holds data: teams (1 row).")
    assert says(said, "Restore into an empty database, or pass --force to replace everything")
    assert contents(other_db) == held

    whole = archive.read_bytes()
    cut = tmp_path / "cut.dump"
    cut.write_bytes(whole[: len(whole) * 4 // 5])
    # Cut short, or damaged, inside the photo's data: that is read only once the database
    # was emptied and the tables before it loaded, in a transaction that is never committed.
    code, said = cli(other_db, "db", "restore", str(cut), "--force")
    assert code == 2 and says(said, f"{cut} could not be read whole; nothing was changed")
    assert says(said, "end of file")
    assert contents(other_db) == held
    damaged = tmp_path / "damaged.dump"
    at = len(whole) * 4 // 5
    damaged.write_bytes(whole[:at] + b"\xff" * 2000 + whole[at + 2000 :])
    code, said = cli(other_db, "db", "restore", str(damaged), "--force")
    assert code == 2 and says(said, f"{damaged} could not be read whole; nothing was changed")
    assert contents(other_db) == held

    code, said = cli(other_db, "db", "restore", str(archive), "--force")
    assert code == 0, said
    assert says(said, "(it replaced the rows of 1 table)")
    assert contents(other_db) == source
    # The QGIS layers (views in schemas of their own) come back with the restored reports.
    assert query(other_db, "SELECT count(*) FROM ogc_public.reports") == query(
        db_url, "SELECT count(*) FROM ogc_public.reports"
    )
    assert query(other_db, "SELECT count(*) FROM ogc_staff.reports") == query(
        other_db, "SELECT count(*) FROM reports"
    )


def test_the_services_own_role_restores_where_a_superuser_created_postgis(
    db_url: str, engine: Engine, pg_cluster: LocalCluster, tmp_path: Path
) -> None:
    """As in production: the database belongs to issuemap's role, which is no superuser."""
    with engine.begin() as conn:
        load_tiny_city(conn)
    archive = tmp_path / "city.dump"
    assert cli(db_url, "db", "backup", str(archive))[0] == 0
    role, name = f"r_{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(pg_cluster.url("postgres"), pool_size=1)
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"CREATE ROLE {role} LOGIN"))
            conn.execute(text(f"CREATE DATABASE {name} OWNER {role}"))
        assert query(pg_cluster.url(name), "SELECT 1") == 1
        superuser = make_engine(pg_cluster.url(name), pool_size=1)
        with superuser.begin() as conn:
            conn.execute(text("CREATE EXTENSION postgis"))
        superuser.dispose()
        as_role = pg_cluster.url(name).replace("postgres@", f"{role}@", 1)

        code, said = cli(as_role, "db", "restore", str(archive))

        assert code == 0, said
        assert contents(as_role) == contents(db_url)
        owners = query(
            as_role,
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'spatial_ref_sys'",
        )
        assert owners == role
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def test_backup_refuses_to_overwrite_or_to_write_nowhere(db_url: str, tmp_path: Path) -> None:
    archive = tmp_path / "city.dump"
    archive.write_text("yesterday's backup")
    code, said = cli(db_url, "db", "backup", str(archive))
    assert code == 2 and says(
        said, "already exists; give a new name, or pass --force to replace it"
    )
    assert archive.read_text() == "yesterday's backup"
    assert cli(db_url, "db", "backup", str(archive), "--force")[0] == 0
    assert archive.read_bytes().startswith(b"PGDMP")
    code, said = cli(db_url, "db", "backup", str(tmp_path / "no" / "city.dump"))
    assert code == 2 and says(said, f"the folder {tmp_path / 'no'} does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["city.dump"]  # no partial file left


def test_client_programs_older_than_the_server_are_refused(tmp_path: Path) -> None:
    for major in (14, 15):
        folder = tmp_path / str(major) / "bin"
        folder.mkdir(parents=True)
        (folder / "pg_dump").touch(mode=0o755)
    assert client_program("pg_dump", 15, search=tmp_path) == tmp_path / "15/bin/pg_dump"
    assert client_program("pg_dump", 13, search=tmp_path) == tmp_path / "14/bin/pg_dump"
    with pytest.raises(MaintenanceError) as refused:
        client_program("pg_dump", 16, search=tmp_path)
    message = str(refused.value)
    assert "The database server runs PostgreSQL 16" in message
    assert "pg_dump 14, pg_dump 15" in message and "Install postgresql-client-16." in message


# -------------------------------------------------------------------------------- upgrades


def previous_head() -> tuple[str, str]:
    """This release's newest migration and the one before it, from the migrations themselves."""
    scripts = migrations()
    head = scripts.get_current_head()
    assert head is not None
    down = scripts.get_revision(head).down_revision
    assert isinstance(down, str), f"migration {head} merges branches: {down!r}"
    return head, down


def seed_city_in_sql(conn: Connection, photo: bytes) -> dict[str, int | str]:
    """A city, a report with its event and photo, and a key, in plain SQL.

    Only columns that every schema since the photos' migration has are named, so the rows
    fit the previous release's schema whichever migration is the newest.
    """
    from geo.access.keys import hash_secret

    city = load_tiny_city(conn)
    report = conn.execute(
        text(
            "INSERT INTO reports (category_id, description, status, ward_id, zone_id, team_id,"
            " due_at, geom) VALUES (:category, 'น้ำท่วมขัง', 'open', :ward, :zone, :team,"
            " :due, ST_SetSRID(ST_MakePoint(100.005, 8.405), 4326)) RETURNING id"
        ),
        {
            "category": city.categories["road"],
            "ward": city.wards["W-A"],
            "zone": city.zones["Z1"],
            "team": city.teams["T1"],
            "due": datetime.now(UTC) + timedelta(hours=48),
        },
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO report_events (report_id, kind, actor, to_status)"
            " VALUES (:r, 'created', 'api', 'open')"
        ),
        {"r": report},
    )
    photo_id = conn.execute(
        text(
            "INSERT INTO report_photos (report_id, content_type, width, height, sha256,"
            " public_bytes, original_bytes) VALUES (:r, 'image/png', 8, 8, 'x', :b, :b)"
            " RETURNING id"
        ),
        {"r": report, "b": photo},
    ).scalar_one()
    secret = "im_" + uuid.uuid4().hex
    conn.execute(
        text(
            "INSERT INTO api_keys (name, role, key_hash, prefix)"
            " VALUES ('planner', 'planner', :hash, :prefix)"
        ),
        {"hash": hash_secret(secret), "prefix": secret[:8]},
    )
    return {"report": report, "photo": photo_id, "key": secret}


def test_a_database_of_the_previous_release_is_upgraded_and_still_read(
    new_database: str, pg_cluster: LocalCluster, tmp_path: Path
) -> None:
    head, previous = previous_head()
    command.upgrade(alembic_config(new_database), previous)
    photo = png((10, 20, 200))
    engine = make_engine(new_database, pool_size=1)
    try:
        with engine.begin() as conn:
            seeded = seed_city_in_sql(conn, photo)
    finally:
        engine.dispose()
    stable = ("reports", "report_events", "report_photos", "wards", "zones", "api_keys")
    before = contents(new_database, stable)
    archive = tmp_path / "previous.dump"
    assert cli(new_database, "db", "backup", str(archive))[0] == 0

    code, said = cli(new_database, "db", "upgrade")

    assert code == 0, said
    assert says(said, f"upgraded the schema from {previous} to {head}: 1 migration applied")
    title = migrations().get_revision(head).doc
    assert says(said, f"{head} {title}")
    assert contents(new_database, stable) == before
    with app_client(new_database, tmp_path) as client:
        shown = client.get(f"/api/reports/{seeded['report']}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["description"] == "น้ำท่วมขัง"
        assert client.get(f"/api/photos/{seeded['photo']}").content == photo
        events = client.get(
            f"/api/reports/{seeded['report']}/events", headers={"X-API-Key": str(seeded["key"])}
        )
        assert [e["kind"] for e in events.json()] == ["created"], events.text
    code, said = cli(new_database, "db", "upgrade")
    assert code == 0 and says(said, f"the schema is up to date: it is at {head}")

    # The previous release's backup, restored by this one, is upgraded the same way.
    with created_database(pg_cluster) as fresh:
        code, said = cli(fresh, "db", "restore", str(archive))
        assert code == 0, said
        assert says(said, f"upgraded the schema from {previous} to {head}")
        assert contents(fresh, stable) == before
