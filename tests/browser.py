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

import pytest
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


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, for the whole session (import it into a test module)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (the set-up command installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


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


AXE = (
    Path(__file__).resolve().parent.parent / "api" / "static" / "vendor" / "axe-core" / "axe.min.js"
)
"""axe-core, vendored by ``scripts/vendor_assets.sh`` for these tests only; no page loads it."""

SERIOUS = ("serious", "critical")


def axe_violations(page: Any, *, impacts: tuple[str, ...] = SERIOUS) -> list[dict[str, Any]]:
    """Run axe-core in ``page`` and return its violations of the given impacts.

    The pages' nonce CSP refuses an added ``<script>`` without the nonce, so the source is
    evaluated through the DevTools protocol (``evaluate``), which the CSP does not govern.
    Each violation is trimmed to its rule, impact, help and the first few offending nodes.
    """
    if not AXE.is_file():
        raise AssertionError(f"{AXE} is missing: run scripts/vendor_assets.sh")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        """() => axe.run(document, {
            runOnly: {type: 'tag',
                      values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
            resultTypes: ['violations'],
        })"""
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [
                {"target": n["target"], "summary": n.get("failureSummary", "")}
                for n in v["nodes"][:5]
            ],
        }
        for v in result["violations"]
        if v["impact"] in impacts
    ]
