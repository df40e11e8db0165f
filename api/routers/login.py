"""Staff sign-in: ``GET /login`` (the form), ``POST /login`` and ``POST /logout``.

A good sign-in answers 303 to the page the person came for (``next``, a path on this
site only; ``/work`` when none) with the session cookie: HttpOnly, SameSite=Lax, Path=/,
and Secure when the request came over HTTPS (``AccountSettings.session_cookie_secure``).
A wrong one answers the form again with one plain sentence in the person's language.

Every state-changing request that a session cookie authenticates, the sign-in form
included, must carry a CSRF token (``asgi-csrf``: the ``csrftoken`` form field or the
``X-CSRFToken`` header, matching the ``csrftoken`` cookie). Requests with an API key
header, and requests without a session cookie, are not asked for one: no other site can
make a browser send them with the person's authority.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Annotated, Any
from urllib.parse import quote

from asgi_csrf import asgi_csrf  # type: ignore[import-untyped]
from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import AppStateDep, ConnDep
from api.errors import ERROR_BODY_REF, error_responses
from geo.access.sessions import SESSION_COOKIE, end_session, sign_in
from geo.errors import AuthenticationError
from geo.i18n import N_, pick_language, translate
from geo.maps.builders import content_security_policy
from geo.maps.staff import local_path, render_login
from geo.settings import AccountSettings

router = APIRouter(tags=["staff sign-in"], responses=error_responses(422, 503, page=True))

log = logging.getLogger(__name__)

CSRF_COOKIE = "csrftoken"
"""The cookie holding the CSRF token that forms send back as ``csrftoken``."""

PROTECTED_WITHOUT_SESSION = frozenset({"/login", "/logout"})
"""Paths whose POSTs need the CSRF token even from a browser with no session yet."""

RESIDENT_FORMS = re.compile(r"^/(report|r/[^/]+/support)$")
"""The residents' own forms (``api.routers.resident``): public actions, not staff ones."""

FORM_EXPIRED = N_("This form has expired. Open the sign-in page again and sign in.")

CSRF_REFUSED: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "The form's CSRF token (`csrftoken`, or the `X-CSRFToken` header) is "
        "missing or does not match the `csrftoken` cookie; nothing was done.",
        "content": {"application/json": {"schema": {"$ref": ERROR_BODY_REF}}},
    }
}


def _cookie_secure(request: Request, settings: AccountSettings) -> bool:
    """Whether the session cookie gets Secure: ``auto`` follows the request's scheme.

    Behind a TLS proxy listed in ``ISSUEMAP_TRUSTED_PROXIES`` the scheme is the one its
    ``X-Forwarded-Proto`` names (``api.app`` installs the proxy-headers middleware).
    """
    if settings.session_cookie_secure == "auto":
        return request.url.scheme == "https"
    return settings.session_cookie_secure == "always"


def _page(html: str, *, status_code: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": content_security_policy(
                nonce=nonce, tiles=None, frame_ancestors=["'none'"]
            ),
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Robots-Tag": "noindex",
            "Vary": "Accept-Language, Cookie",
        },
    )


def _csrf_token(request: Request) -> str:
    token: str = request.scope["csrftoken"]()
    return token


Lang = Annotated[
    str | None,
    Query(max_length=8, description="Page language, `th` or `en`; else Accept-Language."),
]
AcceptLanguage = Annotated[str | None, Header(include_in_schema=False)]


@router.get("/login", response_class=HTMLResponse, summary="Staff sign-in form")
def login_form(
    request: Request,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
    next_path: Annotated[
        str | None,
        Query(alias="next", max_length=4000, description="Page to open after signing in."),
    ] = None,
) -> HTMLResponse:
    """The sign-in form for staff: e-mail address and password, in Thai or English."""
    return _page(
        render_login(
            lang=pick_language(lang, accept_language),
            csrf_token=_csrf_token(request),
            next_path=local_path(next_path),
        )
    )


_FORM = "application/x-www-form-urlencoded"
_LOGIN_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "description": "The account's e-mail address."},
        "password": {"type": "string", "format": "password"},
        "next": {"type": "string", "description": "A path on this site to go to after."},
        "csrftoken": {"type": "string", "description": "The `csrftoken` cookie's value."},
    },
    "required": ["email", "password", "csrftoken"],
}


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@router.post(
    "/login",
    response_class=HTMLResponse,
    status_code=303,
    summary="Sign in",
    openapi_extra={"requestBody": {"required": True, "content": {_FORM: {"schema": _LOGIN_FORM}}}},
    responses={
        401: {
            "description": "The form again, saying why signing in failed.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **CSRF_REFUSED,
    },
)
async def login(
    request: Request,
    conn: ConnDep,
    state: AppStateDep,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Response:
    """Check the form's `email` and `password`; 303 to `next` with the session cookie.

    A wrong address or password gets the form again (401) with one sentence that never
    says which was wrong. Ten wrong passwords in a row lock the account for a while.
    """
    form = await request.form()
    email, password = _field(form, "email"), _field(form, "password")
    page_lang = pick_language(lang, accept_language)
    target = local_path(_field(form, "next"))
    try:
        # The route runs in the event loop; Argon2 is slow on purpose, so hash in a thread.
        session = await run_in_threadpool(
            sign_in, conn, email, password, now=datetime.now(UTC), settings=state.accounts
        )
    except AuthenticationError as error:
        # Answered, not raised: the count of wrong passwords must commit with the request.
        html = render_login(
            lang=page_lang,
            csrf_token=_csrf_token(request),
            next_path=target,
            email=email,
            message=error.message(page_lang),
        )
        return _page(html, status_code=401)
    answer = RedirectResponse(target, status_code=303)
    answer.headers["Cache-Control"] = "no-store"
    answer.set_cookie(
        SESSION_COOKIE,
        session.token,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(request, state.accounts),
    )
    return answer


@router.post("/logout", status_code=303, summary="Sign out", responses=CSRF_REFUSED)
def logout(request: Request, conn: ConnDep, state: AppStateDep) -> Response:
    """End this browser's staff session and go back to the sign-in form."""
    end_session(conn, request.cookies.get(SESSION_COOKIE))
    answer = RedirectResponse("/login", status_code=303)
    answer.headers["Cache-Control"] = "no-store"
    answer.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(request, state.accounts),
    )
    return answer


# --- sending people to the form -------------------------------------------------------


class SignInRequired(Exception):
    """A browser asked for a staff page without a session or key: send it to ``/login``."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def wants_html(request: Request) -> bool:
    """Whether the client asked for a page (a browser), not JSON."""
    return "text/html" in request.headers.get("accept", "")


def sign_in_redirect(request: Request, error: Exception) -> RedirectResponse:
    """303 to the sign-in form, which comes back to the page asked for."""
    assert isinstance(error, SignInRequired)
    answer = RedirectResponse(
        "/login?next=" + quote(local_path(error.next_path), safe=""), status_code=303
    )
    answer.headers["Cache-Control"] = "no-store"
    return answer


# --- CSRF -----------------------------------------------------------------------------


def _cookies(scope: Scope) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:  # a cookie header we cannot read holds no session
                return SimpleCookie()
    return jar


def _holds_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return (
        b"%00" in query
        or b"\x00" in query
        or "\x00" in scope.get("path", "")
        or any(b"\x00" in value for _, value in scope.get("headers", []))
    )


def _not_session_authenticated(scope: Scope) -> bool:
    """Whether asgi-csrf may let this request through unchecked.

    The sign-in and sign-out forms are always checked. Otherwise only a request that a
    session cookie would authenticate is: a key header wins over the cookie, and without
    the cookie there is nothing another site could borrow.
    """
    if _holds_nul(scope):
        # The app refuses it (``api.params.refuse_nul_characters``, 4xx naming the field)
        # before any route runs, so it can change nothing.
        return True
    if scope["path"] in PROTECTED_WITHOUT_SESSION:
        return False
    if RESIDENT_FORMS.match(scope["path"]):
        # Anyone may file a report or support one, signed in or not; the resident pages
        # carry no token, and the session cookie (SameSite=Lax) never comes with a POST
        # from another site, so nothing is gained by refusing a signed-in resident here.
        return True
    if any(name == b"x-api-key" for name, _ in scope.get("headers", [])):
        return True
    return SESSION_COOKIE not in _cookies(scope)


async def _refuse(scope: Scope, send: Send, message_id: object) -> None:
    """403 with a sentence in the caller's language (asgi-csrf's failure hook)."""
    headers = dict(scope.get("headers", []))
    lang = pick_language(None, headers.get(b"accept-language", b"").decode("latin-1"))
    text = translate(lang, FORM_EXPIRED)
    if b"text/html" in headers.get(b"accept", b""):
        body = (
            f'<!doctype html><html lang="{lang}"><meta charset="utf-8">'
            f'<title>403</title><p>{text}</p><p><a href="/login">/login</a></p></html>'
        ).encode()
        kind = b"text/html; charset=utf-8"
    else:
        body = json.dumps({"detail": text, "error": "CsrfError"}, ensure_ascii=False).encode()
        kind = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


_TOKEN_SEARCH_BYTES = 64 * 1024  # the token leads its form; a body without it is refused


class _TokenFound(Exception):
    pass


async def _multipart_token(scope: Scope, receive: Receive) -> tuple[str | None, Receive]:
    """The ``csrftoken`` field of a multipart form, read before any file, and a replay.

    asgi-csrf's own multipart reader passes python-multipart an argument that its current
    versions no longer take, so every multipart form (a file upload) would be refused.
    Only the start of the body is read: the token must come before the first file.
    """
    content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
    _, options = parse_options_header(content_type)
    read: list[Message] = []

    async def replay() -> Message:
        return read.pop(0) if read else await receive()

    boundary = options.get(b"boundary")
    if not boundary:
        return None, replay
    part: dict[str, Any] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] = part.get("field", b"") + data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] = part.get("value", b"") + data[start:end]

    def on_header_end() -> None:
        if part.pop("field", b"").lower() == b"content-disposition":
            part["disposition"] = parse_options_header(part.get("value", b""))[1]
        part.pop("value", None)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part["data"] = part.get("data", b"") + data[start:end]

    def on_part_end() -> None:
        disposition = part.get("disposition", {})
        if b"filename" in disposition:
            raise _TokenFound(None)  # a file before the token: no token
        if disposition.get(b"name") == b"csrftoken":
            raise _TokenFound(part.get("data", b"").decode("utf-8"))
        part.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    seen = 0
    try:
        while seen <= _TOKEN_SEARCH_BYTES:
            message = await receive()
            read.append(message)
            body = message.get("body", b"")
            seen += len(body)
            parser.write(body)
            if message.get("type") != "http.request" or not message.get("more_body"):
                break
    except _TokenFound as found:
        return found.args[0], replay
    except Exception:  # a body we cannot read holds no token
        return None, replay
    return None, replay


class CsrfMiddleware:
    """asgi-csrf over the app, for requests a session cookie authenticates.

    A body or token asgi-csrf cannot read (not UTF-8, a multipart form without a boundary,
    a token in non-ASCII text) is refused as a missing token is (403), before the app sees
    it, instead of failing as a server error.
    """

    def __init__(self, app: ASGIApp, *, secret: str, secure: str) -> None:
        self._app = app
        self._secure = secure

        async def reached(scope: Scope, receive: Receive, send: Send) -> None:
            scope["issuemap.csrf"]["reached"] = True
            await app(scope, receive, send)

        # One checker per Secure flag of the ``csrftoken`` cookie, which asgi-csrf fixes
        # when it is built; both sign with the same key, so their tokens are the same kind.
        self._checked = {
            flag: asgi_csrf(
                reached,
                cookie_name=CSRF_COOKIE,
                signing_secret=secret,
                skip_if_scope=_not_session_authenticated,
                always_protect=PROTECTED_WITHOUT_SESSION,
                cookie_secure=flag,
                cookie_samesite="Lax",
                send_csrf_failed=_refuse,
            )
            for flag in (False, True)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then hand it on."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        marker = {"reached": False}
        try:
            headers = dict(scope.get("headers", []))
            if (
                b"multipart/form-data" in headers.get(b"content-type", b"")
                and b"x-csrftoken" not in headers
                and scope["method"] not in {"GET", "HEAD", "OPTIONS", "TRACE"}
                and not _not_session_authenticated(scope)
            ):
                # Hand asgi-csrf the form's token as the header, which it checks first.
                token, receive = await _multipart_token(scope, receive)
                if token is not None:
                    scope = {
                        **scope,
                        "headers": [*scope["headers"], (b"x-csrftoken", token.encode("latin-1"))],
                    }
            secure = self._secure == "always" or (
                self._secure == "auto" and scope.get("scheme") == "https"
            )
            await self._checked[secure]({**scope, "issuemap.csrf": marker}, receive, send)
        except (UnicodeDecodeError, IndexError, AssertionError, ValueError, TypeError):
            # TypeError: asgi-csrf compares a token holding non-ASCII text.
            if marker["reached"]:
                raise
            log.info("refused a request whose CSRF token could not be read")
            await _refuse(scope, send, None)


def csrf_secret(settings: AccountSettings) -> str:
    """The key that signs CSRF tokens: the setting, else one drawn for this process."""
    if settings.csrf_secret is not None:
        return settings.csrf_secret.get_secret_value()
    log.warning(
        "ISSUEMAP_CSRF_SECRET is not set: CSRF tokens are signed with a key of this process "
        "only, so with several workers a form may be refused; set it on every worker"
    )
    return secrets.token_urlsafe(32)
