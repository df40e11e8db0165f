"""Helpers for the browser tests: a real server in a thread and Debian's Chromium.

Playwright drives /usr/bin/chromium (installed by the set-up command from Debian); no
browser is downloaded. Pages are served by a real uvicorn server, because a browser needs
a real origin for server-sent events and static assets.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a free loopback port for the duration of the block."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class PageWatch:
    """What a page did that a test must check: console errors and off-site requests."""

    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)


def watch(page: Any, origin: str) -> PageWatch:
    """Record console errors, uncaught exceptions and requests leaving ``origin``."""
    seen = PageWatch()
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.errors.append(str(e)))

    def route(route: Any) -> None:
        if route.request.url.startswith(origin) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            seen.external.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    return seen


def wait_until(page: Any, expression: str, *, timeout: int = 30_000) -> None:
    """Poll ``expression`` in the page until it is true.

    Playwright's ``wait_for_function`` compiles its predicate with ``new Function``, which
    the pages' Content-Security-Policy rightly forbids; ``evaluate`` is not bound by it.
    """
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot as a test artifact and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
