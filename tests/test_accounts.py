"""Staff accounts: creating them (core and `issuemap users`), Argon2 hashes, sign-in and lock."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from geo.access.accounts import (
    AccountLockedError,
    create_user,
    disable_user,
    verify_login,
)
from geo.errors import AuthenticationError, InvalidInputError, NotFoundError
from geo.settings import AccountSettings
from tests.conftest import CHECKOUT
from tests.fixtures import load_tiny_city

PASSWORD = "correct horse battery"
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SETTINGS = AccountSettings()


@pytest.fixture
def city(engine: Engine) -> Engine:
    with engine.begin() as conn:
        load_tiny_city(conn)
    return engine


def _create(engine: Engine, **overrides: object) -> int:
    values: dict[str, object] = {
        "email": "Crew.One@City.example",
        "name": "Somchai",
        "role": "field_team",
        "password": PASSWORD,
        "team_code": "T1",
    } | overrides
    with engine.begin() as conn:
        return create_user(conn, **values).id  # type: ignore[arg-type]


def test_an_account_stores_a_lower_case_address_and_an_argon2id_hash(city: Engine) -> None:
    user_id = _create(city)
    with city.connect() as conn:
        row = conn.execute(
            text("SELECT email, password_hash, team_id FROM users WHERE id = :id"),
            {"id": user_id},
        ).one()
    assert row.email == "crew.one@city.example"
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    assert row.team_id is not None


def test_the_service_hashes_at_argon2s_recommended_cost() -> None:
    """The suite hashes cheaply (``tests/conftest.py``); the service, run on its own, does not."""
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from geo.access.accounts import hash_password; "
            "print(hash_password(sys.argv[1]))",
            PASSWORD,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=CHECKOUT,
    )
    stored = made.stdout.strip()
    # RFC 9106's second recommended option, argon2-cffi's defaults: 64 MiB, 3 passes, 4 lanes.
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), stored
    assert PasswordHasher().verify(stored, PASSWORD)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"email": "a@b.example\x00"}, "email"),
        ({"email": "<img src=x onerror=alert(1)>@x.example"}, "email"),
        ({"email": "a" * 300 + "@x.example"}, "email"),
        ({"name": "  "}, "name"),
        ({"name": "Som\x00chai"}, "name"),
        ({"name": "x" * 5000}, "name"),
        ({"role": "public"}, "role"),
        ({"role": "{{7*7}}"}, "role"),
        ({"team_code": None}, "team"),
        ({"role": "planner", "team_code": "T1"}, "team"),
        ({"password": "short"}, "password"),
        ({"password": "a" * 20}, "password"),
        ({"password": "x" * 1025}, "password"),
        ({"password": "good password\x00!"}, "password"),
    ],
)
def test_bad_account_input_is_refused_naming_the_field(
    city: Engine, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        _create(city, **overrides)
    assert refused.value.field == field
    with city.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


def test_an_unknown_team_and_a_taken_address_are_refused(city: Engine) -> None:
    with pytest.raises(NotFoundError):
        _create(city, team_code="{%")
    _create(city)
    with pytest.raises(InvalidInputError) as taken:
        _create(city, email="crew.one@city.EXAMPLE")
    assert taken.value.field == "email"


def test_template_looking_text_is_kept_as_written(city: Engine) -> None:
    user_id = _create(city, name="{{7*7}} {% if %} <img src=x onerror=alert(1)>")
    with city.connect() as conn:
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id})
        assert name.scalar_one() == "{{7*7}} {% if %} <img src=x onerror=alert(1)>"


def _login(engine: Engine, email: str, password: str, now: datetime = NOW) -> object:
    with engine.begin() as conn:
        try:
            return verify_login(conn, email, password, now=now, settings=SETTINGS)
        except AuthenticationError as error:
            return error


def test_sign_in_answers_the_same_for_unknown_address_wrong_password_and_disabled(
    city: Engine,
) -> None:
    _create(city)
    _create(city, email="gone@city.example", name="Gone")
    with city.begin() as conn:
        disable_user(conn, "gone@city.example")
    unknown = _login(city, "nobody@city.example", PASSWORD)
    wrong = _login(city, "crew.one@city.example", "wrong password here")
    disabled = _login(city, "gone@city.example", PASSWORD)
    for error in (unknown, wrong, disabled):
        assert type(error) is AuthenticationError
    assert str(unknown) == str(wrong) == str(disabled)
    assert unknown.message("th") == wrong.message("th")  # type: ignore[union-attr]


def test_a_good_sign_in_returns_the_person_and_notes_the_time(city: Engine) -> None:
    user_id = _create(city)
    user = _login(city, "  CREW.one@city.example ", PASSWORD)
    assert getattr(user, "id", None) == user_id
    assert getattr(user, "name", None) == "Somchai"
    with city.connect() as conn:
        seen = conn.execute(text("SELECT last_login_at FROM users")).scalar_one()
    assert seen == NOW


def test_ten_wrong_passwords_lock_the_account_until_the_lock_ends(city: Engine) -> None:
    _create(city)
    for attempt in range(9):
        error = _login(city, "crew.one@city.example", f"wrong password {attempt}")
        assert type(error) is AuthenticationError
    tenth = _login(city, "crew.one@city.example", "wrong password 10")
    assert isinstance(tenth, AccountLockedError)
    # Even the right password is refused while the lock lasts ...
    during = _login(city, "crew.one@city.example", PASSWORD, NOW + timedelta(minutes=14))
    assert isinstance(during, AccountLockedError)
    assert "locked" in str(during)
    # ... and works once it has ended, clearing the count.
    after = _login(city, "crew.one@city.example", PASSWORD, NOW + timedelta(minutes=16))
    assert not isinstance(after, Exception)
    with city.connect() as conn:
        row = conn.execute(text("SELECT failed_logins, locked_until FROM users")).one()
    assert row.failed_logins == 0 and row.locked_until is None


def test_a_good_sign_in_resets_the_count_of_wrong_ones(city: Engine) -> None:
    _create(city)
    for attempt in range(9):
        _login(city, "crew.one@city.example", f"wrong password {attempt}")
    assert not isinstance(_login(city, "crew.one@city.example", PASSWORD), Exception)
    for attempt in range(9):
        error = _login(city, "crew.one@city.example", f"wrong password {attempt}")
        assert type(error) is AuthenticationError


def test_huge_and_odd_sign_in_input_is_just_a_failed_sign_in(city: Engine) -> None:
    _create(city)
    for email, password in (
        ("crew.one@city.example", "x" * 100_000),
        ("x" * 100_000, PASSWORD),
        ("{{7*7}}", "{%"),
        ("crew.one@city.example\x00", PASSWORD),
        ("' OR 1=1 --", "' OR 1=1 --"),
    ):
        assert type(_login(city, email, password)) is AuthenticationError


# --- the command line ------------------------------------------------------------------


def _cli(db_url: str, monkeypatch: pytest.MonkeyPatch, args: list[str], stdin: str = ""):  # type: ignore[no-untyped-def]
    from geo.cli.main import app

    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    return CliRunner().invoke(app, ["users", *args], input=stdin)


def test_users_create_reads_the_password_from_stdin(
    city: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _cli(
        db_url,
        monkeypatch,
        [
            "create",
            "--email",
            "Plan@City.example",
            "--name",
            "Malee",
            "--role",
            "planner",
            "--password-stdin",
        ],
        PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "plan@city.example" in result.output
    assert PASSWORD not in result.output
    assert not isinstance(_login(city, "plan@city.example", PASSWORD), Exception)
    listed = _cli(db_url, monkeypatch, ["list"])
    assert "plan@city.example" in listed.output and "planner" in listed.output


def test_users_create_asks_for_the_password_twice(
    city: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["create", "--email", "a@city.example", "--name", "A", "--role", "admin"]
    result = _cli(db_url, monkeypatch, args, f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert not isinstance(_login(city, "a@city.example", PASSWORD), Exception)


@pytest.mark.parametrize(
    ("args", "stdin", "flag"),
    [
        (["--email", "nope", "--name", "A", "--role", "admin"], PASSWORD, "--email"),
        (["--email", "a@city.example", "--name", " ", "--role", "admin"], PASSWORD, "--name"),
        (["--email", "a@city.example", "--name", "A", "--role", "boss"], PASSWORD, "--role"),
        (["--email", "a@city.example", "--name", "A", "--role", "field_team"], PASSWORD, "--team"),
        (
            ["--email", "a@city.example", "--name", "A", "--role", "admin"],
            "short",
            "--password-stdin",
        ),
        (
            ["--email", "a@city.example", "--name", "{{7*7}}" * 100, "--role", "admin"],
            PASSWORD,
            "--name",
        ),
    ],
)
def test_users_create_refusals_name_the_flag(
    city: Engine,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    stdin: str,
    flag: str,
) -> None:
    result = _cli(db_url, monkeypatch, ["create", *args, "--password-stdin"], stdin + "\n")
    assert result.exit_code == 2
    assert flag in result.output
    with city.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


def test_users_disable_stops_sign_in(
    city: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create(city)
    result = _cli(db_url, monkeypatch, ["disable", "--email", "crew.one@city.example"])
    assert result.exit_code == 0, result.output
    assert type(_login(city, "crew.one@city.example", PASSWORD)) is AuthenticationError
    missing = _cli(db_url, monkeypatch, ["disable", "--email", "who@city.example"])
    assert missing.exit_code == 2


def test_a_disabled_account_never_says_it_is_locked(city: Engine) -> None:
    _create(city)
    with city.begin() as conn:
        disable_user(conn, "crew.one@city.example")
    answers = [_login(city, "crew.one@city.example", f"wrong {n:>14}") for n in range(12)]
    answers.append(_login(city, "crew.one@city.example", PASSWORD))
    assert all(type(answer) is AuthenticationError for answer in answers)


def test_keys_have_an_owner_an_expiry_and_a_list(
    city: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geo.cli.main import app

    _create(city, email="plan@city.example", role="planner", team_code=None)
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", db_url)
    made = CliRunner().invoke(
        app,
        [
            "keys",
            "create",
            "--name",
            "nightly export",
            "--role",
            "planner",
            "--owner",
            "Plan@City.example",
            "--expires-days",
            "30",
        ],
    )
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    listed = CliRunner().invoke(app, ["keys", "list"])
    assert listed.exit_code == 0, listed.output
    assert "nightly export" in listed.output and "plan@city.example" in listed.output
    assert secret not in listed.output and secret[:9] in listed.output
    unknown = CliRunner().invoke(
        app, ["keys", "create", "--name", "x", "--role", "planner", "--owner", "who@x.example"]
    )
    assert unknown.exit_code == 2 and "--owner" in unknown.output
