"""Who may open ``/admin``: administrators, by their staff session or an admin API key.

The pages have no sign-in form of their own: a browser without a session goes to
``/login?next=/admin...`` and comes back signed in, so passwords live in one place
(``geo.access.accounts``). A signed-in person who is not an administrator gets a 403 page
in their language (Thai unless they ask for English).

``AdminRequest`` is what one request of the admin pages knows about itself (the person,
the language, the CSRF token); ``current()`` reads it anywhere below the request, e.g.
in a form built by SQLAdmin, which never passes the request on.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi.concurrency import run_in_threadpool
from markupsafe import escape
from sqladmin.authentication import AuthenticationBackend
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import AppState, app_state, authenticate_key, authenticate_session
from geo.access.policy import ANONYMOUS, Principal, is_admin
from geo.access.sessions import SESSION_COOKIE
from geo.errors import AuthenticationError
from geo.i18n import N_, pick_language, translate

ADMIN_PATH = "/admin"
"""Where the admin pages are mounted."""

ONLY_ADMINS = N_("Only administrators may open the admin pages.")
SIGN_IN_AS_ADMIN = N_("Sign in as an administrator")
SIGN_OUT = N_("Sign out")
SIGN_OUT_QUESTION = N_("Sign out of issuemap?")


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """One admin request: the administrator, the page language and the form token."""

    principal: Principal
    lang: str
    csrf_token: str
    request: Request


_current: ContextVar[AdminRequest | None] = ContextVar("issuemap_admin_request", default=None)


def current() -> AdminRequest:
    """The admin request being answered (set once the caller is known to be an admin)."""
    found = _current.get()
    if found is None:
        raise RuntimeError("no admin request is being answered")
    return found


def page_language() -> str:
    """The language of the admin page being answered; Thai outside a request."""
    found = _current.get()
    return "th" if found is None else found.lang


class Label(str):
    """A message id that reads in the language of each page that shows it.

    SQLAdmin keeps labels (a view's name, a column's) on the view classes, made once;
    this one is translated whenever a page renders it (``str``, formatting, Jinja's
    ``__html__``), so each request reads its own language. It is the English ``msgid``
    where SQLAdmin uses it as plain text (a search box's placeholder, dict keys).
    """

    __slots__ = ()

    def __str__(self) -> str:
        return translate(page_language(), str.__str__(self))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __html__(self) -> str:
        """The label escaped for HTML (Jinja and WTForms ask for this)."""
        return str(escape(str(self)))


def label(msgid: str) -> Any:
    """``msgid`` as a ``Label`` (typed Any: SQLAdmin and WTForms annotate labels as str)."""
    return Label(msgid)


def main_state(request: Request) -> AppState:
    """The issuemap application's state, from a request to the mounted admin app."""
    main = request.app.state.issuemap_main
    return app_state(main)


def _language(request: Request) -> str:
    return pick_language(request.query_params.get("lang"), request.headers.get("accept-language"))


def _csrf_token(request: Request) -> str:
    token: str = request.scope["csrftoken"]()
    return token


def _api_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization", "")
    if not key and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    return key or None


async def admin_principal(request: Request) -> Principal:
    """The caller: an API key header first, else the staff session cookie, else the public.

    A key that is not valid is the public too: its holder is sent to sign in.
    """
    state = main_state(request)
    key = _api_key(request)
    if key:
        try:
            return await run_in_threadpool(authenticate_key, state.engine, key)
        except AuthenticationError:
            return ANONYMOUS
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        return await run_in_threadpool(authenticate_session, state, token)
    return ANONYMOUS


def sign_in_redirect(request: Request) -> RedirectResponse:
    """303 to ``/login``, which comes back to the admin page asked for."""
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    answer = RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
    answer.headers["Cache-Control"] = "no-store"
    return answer


def _small_page(lang: str, title: str, body: str, *, status_code: int) -> HTMLResponse:
    """A page of our own words only (escaped here), for the answers outside SQLAdmin."""
    return HTMLResponse(
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main>{body}</main></body></html>",
        status_code=status_code,
    )


def forbidden_page(lang: str) -> HTMLResponse:
    """403 for a signed-in person who is not an administrator, in ``lang``."""
    words = html.escape(translate(lang, ONLY_ADMINS))
    link = html.escape(translate(lang, SIGN_IN_AS_ADMIN))
    return _small_page(
        lang,
        "403",
        f'<h1>403</h1><p id="problem">{words}</p>'
        f'<p><a href="/login?next={quote(ADMIN_PATH + "/", safe="")}">{link}</a></p>',
        status_code=403,
    )


def sign_out_page(lang: str, csrf_token: str) -> HTMLResponse:
    """A one-button form that signs out through ``POST /logout`` (never a GET link)."""
    question = html.escape(translate(lang, SIGN_OUT_QUESTION))
    button = html.escape(translate(lang, SIGN_OUT))
    return _small_page(
        lang,
        button,
        f"<h1>{question}</h1>"
        '<form method="post" action="/logout">'
        f'<input type="hidden" name="csrftoken" value="{html.escape(csrf_token)}">'
        f'<button type="submit">{button}</button></form>',
        status_code=200,
    )


class AdminAuth(AuthenticationBackend):
    """SQLAdmin's authentication through issuemap's own sessions and keys.

    No session middleware of SQLAdmin's: the admin pages keep no state of their own.
    """

    def __init__(self) -> None:
        # Not the base class's __init__, which would add a second, cookie-signed session.
        self.middlewares = []

    async def authenticate(self, request: Request) -> Response | bool:
        """True for an administrator; else the way to ``/login`` or the 403 page."""
        lang = _language(request)
        principal = await admin_principal(request)
        if not principal.identified:
            return sign_in_redirect(request)
        if not is_admin(principal):
            return forbidden_page(lang)
        _current.set(AdminRequest(principal, lang, _csrf_token(request), request))
        return True

    async def get_user_id(self, request: Request) -> Any:
        """The administrator's audit name (``user:<id>:<name>`` or the key's)."""
        return current().principal.actor

    async def login(self, request: Request) -> Response | bool:
        """SQLAdmin's own form is not used: staff sign in at ``/login``."""
        return RedirectResponse("/login?next=" + quote(ADMIN_PATH + "/", safe=""), status_code=303)

    async def logout(self, request: Request) -> Response | bool:
        """The sign-out form (a POST with the CSRF token), not a sign-out by GET."""
        return sign_out_page(_language(request), _csrf_token(request))


ADMIN_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "script-src-attr 'none'",
        # SQLAdmin's Tabler theme and select2 position elements with inline styles.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""The admin pages' Content-Security-Policy: scripts from this site only, none inline."""

_HEADERS = [
    (b"content-security-policy", ADMIN_CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-robots-tag", b"noindex"),
    (b"x-frame-options", b"DENY"),
]


def _holds_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return b"%00" in query or b"\x00" in query or "\x00" in scope.get("path", "")


class AdminHeaders:
    """ASGI middleware of the admin app: security headers, and no NUL in the address.

    The admin app is mounted, so the main app's own checks of query parameters never run
    for it; a NUL would otherwise reach a search's SQL and fail there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a NUL with 422; add the headers to every other answer."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if _holds_nul(scope):
            lang = pick_language(None, _header(scope, b"accept-language"))
            words = html.escape(translate(lang, N_("must not contain NUL characters")))
            page = _small_page(lang, "422", f"<h1>422</h1><p>{words}</p>", status_code=422)
            await page(scope, receive, _with_headers(send, cache=False))
            return
        static = scope.get("path", "").startswith(ADMIN_PATH + "/statics/")
        await self._app(scope, receive, _with_headers(send, cache=static))


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _with_headers(send: Send, *, cache: bool) -> Callable[[Message], Any]:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), *_HEADERS]
            if not cache:
                # Admin pages hold secrets shown once and private lists: never cached.
                headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                headers.append((b"cache-control", b"no-store"))
            message = {**message, "headers": headers}
        await send(message)

    return sending
