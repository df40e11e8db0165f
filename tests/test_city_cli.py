"""Setting an empty city up from the command line: categories, teams and routes, add and list.

Each command runs as a person would type it (through the Typer app) against a fresh database;
the checks are the catalogue's own, so what the admin pages refuse is refused here too.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from geo.cli.main import app
from tests.fixtures import load_tiny_city


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose commands use the test's database."""
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    return CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, list(args))


def flat(output: str) -> str:
    """The output in one line: rich wraps long lines and table cells."""
    return " ".join(output.split())


def rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_an_empty_city_is_set_up_and_listed_from_the_command_line(
    cli: CliRunner, engine: Engine
) -> None:
    assert "ยังไม่มีประเภทปัญหา" in run(cli, "categories", "list").output
    assert "No teams yet" in run(cli, "teams", "list", "--lang", "en").output

    added = run(cli, "categories", "add", "ROAD", "--name-th", "ถนนชำรุด", "--sla-hours", "72")
    assert added.exit_code == 0, added.output
    assert "เพิ่มประเภท ROAD แล้ว" in flat(added.output)
    english_only = run(
        cli, "categories", "add", "LIGHT", "--name-en", "Street light", "--lang", "en"
    )
    assert english_only.exit_code == 0, english_only.output
    assert "Category LIGHT added" in flat(english_only.output)
    team = run(cli, "teams", "add", "ROADS", "--name-th", "ทีมถนน", "--name-en", "Road team")
    assert team.exit_code == 0, team.output
    route = run(cli, "routes", "add", "--category", "ROAD", "--team", "ROADS", "--lang", "en")
    assert route.exit_code == 0, route.output
    assert "ROAD goes to team ROADS in (everywhere)" in flat(route.output)

    assert rows(
        engine, "SELECT code, name_th, name_en, sla_hours FROM categories ORDER BY code"
    ) == [
        ("LIGHT", "Street light", "Street light", 48),
        ("ROAD", "ถนนชำรุด", "ถนนชำรุด", 72),
    ]
    assert rows(engine, "SELECT code, name, name_th, name_en FROM teams") == [
        ("ROADS", "ทีมถนน", "ทีมถนน", "Road team")
    ]
    listed = flat(run(cli, "categories", "list").output)
    assert "ชื่อภาษาไทย" in listed and "ถนนชำรุด" in listed and "72" in listed
    listed = flat(run(cli, "teams", "list", "--lang", "en").output)
    assert "English name" in listed and "Road team" in listed
    listed = flat(run(cli, "routes", "list").output)
    assert "ROAD" in listed and "ROADS" in listed and "(ทุกพื้นที่)" in listed


def test_a_duplicate_code_is_refused_and_nothing_changes(cli: CliRunner, engine: Engine) -> None:
    assert run(cli, "categories", "add", "ROAD", "--name-en", "Roads").exit_code == 0
    assert run(cli, "teams", "add", "T1", "--name-en", "One").exit_code == 0

    again = run(cli, "categories", "add", "ROAD", "--name-en", "Other", "--lang", "en")
    team_again = run(cli, "teams", "add", " T1 ", "--name-th", "สอง")

    assert again.exit_code == 2
    assert "error: CODE: is taken already" in flat(again.output)
    assert team_again.exit_code == 2
    assert "ข้อผิดพลาด: CODE: มีผู้ใช้แล้ว" in flat(team_again.output)
    assert rows(engine, "SELECT name_en FROM categories") == [("Roads",)]
    assert rows(engine, "SELECT name FROM teams") == [("One",)]


def test_a_category_or_team_needs_a_name_in_one_language(cli: CliRunner, engine: Engine) -> None:
    category = run(cli, "categories", "add", "ROAD", "--lang", "en")
    team = run(cli, "teams", "add", "T1", "--name-th", "  ")

    assert category.exit_code == 2
    assert "--name-th: give a Thai name, an English name (--name-en), or both" in flat(
        category.output
    )
    assert team.exit_code == 2 and "--name-th: ต้องระบุชื่อภาษาไทย" in flat(team.output)
    assert rows(engine, "SELECT count(*) FROM categories UNION ALL SELECT count(*) FROM teams") == [
        (0,),
        (0,),
    ]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["categories", "add", "ROAD", "--name-en", "x" * 10_000],
            "--name-en: must be at most 200",
        ),
        (["categories", "add", "ROAD", "--name-th", "a\x00b"], "--name-th: must not contain NUL"),
        (["categories", "add", "{{7*7}}", "--name-en", "x"], "CODE: may hold only letters"),
        (["categories", "add", "C" * 10_000, "--name-en", "x"], "CODE: must be at most 64"),
        (["categories", "add", "ROAD", "--name-en", "x", "--sla-hours", "0"], "--sla-hours:"),
        (["teams", "add", "<b>T</b>", "--name-en", "x"], "CODE: may hold only letters"),
        (["teams", "add", "T9", "--name", "n\x00"], "--name: must not contain NUL"),
        (["routes", "add", "--category", "a\x00", "--team", "T"], "--category: must not contain"),
        (["routes", "add", "--category", "R", "--team", "T" * 10_000], "--team: must be at most"),
        (["teams", "list", "--lang", "fr"], "--lang: ต้องเป็นค่าใดค่าหนึ่งต่อไปนี้: th, en"),
    ],
    ids=lambda v: "" if isinstance(v, str) else "-".join(a[:12] for a in v[:3]),
)
def test_hostile_input_is_refused_with_a_message_naming_the_field(
    cli: CliRunner, engine: Engine, args: list[str], said: str
) -> None:
    result = run(cli, *args, *([] if "--lang" in args else ["--lang", "en"]))

    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert said in flat(result.output)
    assert len(result.output) < 1_000  # a 10,000-character value is not echoed back
    assert rows(engine, "SELECT count(*) FROM categories UNION ALL SELECT count(*) FROM teams") == [
        (0,),
        (0,),
    ]


def test_template_and_markup_in_names_are_stored_and_shown_as_written(
    cli: CliRunner, engine: Engine
) -> None:
    name = "{{7*7}} <img src=x onerror=alert(1)> [bold red]x[/]"
    assert run(cli, "categories", "add", "ODD", "--name-en", name).exit_code == 0
    assert run(cli, "teams", "add", "ODD", "--name-th", name).exit_code == 0

    assert rows(engine, "SELECT name_en FROM categories") == [(name,)]
    assert rows(engine, "SELECT name_th FROM teams") == [(name,)]
    for group in ("categories", "teams"):
        shown = run(cli, group, "list", "--lang", "en").output
        # Neither evaluated (49) nor read as rich markup (the table may wrap the cell).
        for part in name.split():
            assert part in shown
        assert "49" not in shown


def test_a_route_names_the_option_of_an_unknown_or_retired_zone(
    cli: CliRunner, engine: Engine
) -> None:
    with engine.begin() as conn:
        load_tiny_city(conn)
        zones = sorted(conn.execute(text("SELECT code FROM zones")).scalars())
        conn.execute(text("UPDATE zones SET retired_at = now() WHERE code = :z"), {"z": zones[1]})
        category = conn.execute(text("SELECT code FROM categories LIMIT 1")).scalar_one_or_none()
    if category is None:
        assert run(cli, "categories", "add", "ROAD", "--name-en", "Roads").exit_code == 0
        category = "ROAD"
    base = ["routes", "add", "--category", category, "--team", "T1", "--lang", "en"]
    before = rows(engine, "SELECT count(*) FROM category_routes")

    retired = run(cli, *base, "--zone", zones[1])
    unknown = run(cli, *base, "--zone", "NOWHERE")
    no_team = run(cli, "routes", "add", "--category", category, "--team", "NOBODY")
    no_category = run(cli, "routes", "add", "--category", "NOTHING", "--team", "T1", "--lang", "en")
    done = run(cli, *base, "--zone", zones[0])
    twice = run(cli, *base, "--zone", zones[0])

    assert retired.exit_code == 2
    assert f"error: --zone: There is no current zone '{zones[1]}'." in flat(retired.output)
    assert "--zone: There is no current zone 'NOWHERE'." in flat(unknown.output)
    assert "--team: ไม่มีทีม 'NOBODY'" in flat(no_team.output)
    assert "--category: There is no category 'NOTHING'." in flat(no_category.output)
    assert done.exit_code == 0, done.output
    assert twice.exit_code == 2 and "--zone: That route exists already." in flat(twice.output)
    after = rows(engine, "SELECT count(*) FROM category_routes")
    assert after == [(int(str(before[0][0])) + 1,)]
    listed = flat(run(cli, "routes", "list", "--lang", "en").output)
    assert zones[0] in listed and "T1" in listed
