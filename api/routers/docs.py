"""The API docs, ``/docs`` (Swagger UI) and ``/redoc``, with their assets from our own origin.

FastAPI's own pages load Swagger UI and ReDoc from jsdelivr (and a favicon and fonts from
elsewhere), so offline, or behind a firewall that only lets the service through, they are
blank. These are the same pages, built by FastAPI's own functions, pointing at the copies
``scripts/vendor_assets.sh`` puts in ``/static/vendor``, under a Content-Security-Policy:
Swagger UI starts from an inline script, which runs by the response's nonce.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

from geo.maps.assets import static_url
from geo.maps.builders import content_security_policy

SWAGGER = "vendor/swagger-ui-dist"
REDOC = "vendor/redoc/bundles"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    """The path the service is mounted under behind a proxy (``--root-path``), or ``""``."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def asset(root: str, path: str) -> str:
    """The URL of the static file ``path`` under ``root``, by its content-hashed name.

    Browsers keep hashed files for good, so a release that updates Swagger UI or ReDoc
    must change their URLs.
    """
    return root + static_url(path)


def _with_nonce(page: HTMLResponse, *, blob_workers: bool = False) -> HTMLResponse:
    """``page`` with a nonce on each script and the CSP that lets only those run.

    ``blob_workers``: the page's own script may start a worker from a ``blob:`` URL, as
    ReDoc's standalone bundle does for its search index.
    """
    nonce = secrets.token_urlsafe(18)
    html = bytes(page.body).decode().replace("<script", f'<script nonce="{nonce}"')
    # No tiles, never framed: otherwise the map pages' policy, inline styles and all
    # (Swagger UI's and ReDoc's components set them).
    policy = content_security_policy(nonce=nonce, tiles=None, frame_ancestors=["'none'"])
    if blob_workers:
        policy += "; worker-src blob:"
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": policy,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over the service's OpenAPI document."""
    root = _root(request)
    return _with_nonce(
        get_swagger_ui_html(
            openapi_url=root + (request.app.openapi_url or ""),
            title=f"{request.app.title} - Swagger UI",
            swagger_js_url=asset(root, f"{SWAGGER}/swagger-ui-bundle.js"),
            swagger_css_url=asset(root, f"{SWAGGER}/swagger-ui.css"),
            swagger_favicon_url=asset(root, f"{SWAGGER}/favicon-32x32.png"),
            oauth2_redirect_url=root + OAUTH2_REDIRECT,
        )
    )


@router.get(OAUTH2_REDIRECT)
def swagger_ui_oauth2_redirect() -> HTMLResponse:
    """Where an OAuth2 sign-in started in Swagger UI comes back to, as in FastAPI's default."""
    return _with_nonce(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the service's OpenAPI document, without Google's fonts.

    Its sidebar always shows Redocly's logo from cdn.redoc.ly; the CSP refuses it and the
    image hides itself, as it does offline.
    """
    root = _root(request)
    return _with_nonce(
        get_redoc_html(
            openapi_url=root + (request.app.openapi_url or ""),
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=asset(root, f"{REDOC}/redoc.standalone.js"),
            redoc_favicon_url=asset(root, f"{SWAGGER}/favicon-32x32.png"),
            with_google_fonts=False,
        ),
        blob_workers=True,
    )
