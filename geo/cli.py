"""The ``issuemap`` command line: run the service, load boundaries, manage reports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine

from geo.db import database, make_engine
from geo.errors import IssuemapError
from geo.settings import DatabaseSettings, ServerSettings

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
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)


@contextmanager
def open_engine() -> Iterator[Engine]:
    """Engine on the configured database, or on the local cluster started for this command."""
    with database(DatabaseSettings()) as url:
        engine = make_engine(url, pool_size=2)
        try:
            yield engine
        finally:
            engine.dispose()


def fail(error: IssuemapError) -> typer.Exit:
    """Print a domain error for people and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
    return typer.Exit(code=2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database if needed and apply all schema migrations."""
    with open_engine():
        console.print("database is up to date")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port to listen on.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes.")] = 1,
) -> None:
    """Run the web service; without ISSUEMAP_DATABASE_URL it runs its own PostGIS."""
    import uvicorn

    from geo.db import is_empty

    server = ServerSettings()
    try:
        with database(DatabaseSettings()) as url:
            engine = make_engine(url, pool_size=2)
            try:
                if server.load_demo and is_empty(engine):
                    from geo.demo import load_demo_city

                    console.print("empty database: loading the demo city (generated data)")
                    summary = load_demo_city(engine)
                    console.print(summary)
            finally:
                engine.dispose()
            # Worker processes find the database the same way an operator would tell them.
            os.environ["ISSUEMAP_DATABASE_URL"] = url
            uvicorn.run(
                "api.app:create_app",
                factory=True,
                host=host or server.host,
                port=port or server.port,
                workers=workers,
            )
    except IssuemapError as error:
        raise fail(error) from error
