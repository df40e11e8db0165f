"""The ``issuemap`` command: geo's command line, serving this package's application."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from geo.cli.main import app, serve_application, worker_app


def web_app() -> FastAPI:
    """One web worker's application: built as root, then running as the service user."""
    application: FastAPI = worker_app(create_app)
    return application


def main() -> None:
    """Run ``issuemap``: every geo command, with ``serve`` running ``create_app``."""
    serve_application(create_app, worker=web_app)
    app()
