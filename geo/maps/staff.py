"""Staff pages outside the maps: the sign-in form (the crew work view is ``geo.maps.work``).

The page is a Jinja2 template rendered with autoescaping on; what a person typed comes back
only as template variables, never as template source. It runs no script at all, and its
words are catalog messages (``geo.i18n``) in the page's language.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined

from geo.i18n import gettext_for
from geo.maps.assets import static_url
from geo.vocabulary import EMAIL_MAX

PAGES = Environment(
    loader=PackageLoader("geo.maps", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
"""The HTML pages' templates (residents' form and status page, sign-in, work view):
autoescaped, strict."""
PAGES.globals["static_url"] = static_url

DEFAULT_NEXT: Final = "/work"
"""Where a staff member lands after signing in when no page asked for it."""

NEXT_MAX: Final = 2000
"""Longest ``next`` address kept; a longer one is replaced by ``DEFAULT_NEXT``."""


def local_path(value: str | None, default: str = DEFAULT_NEXT) -> str:
    """``value`` if it is a path on this site (one leading "/"), else ``default``.

    Only such a path is a safe place to send someone after signing in: "//host",
    "/" and a backslash, "https://host" and "javascript:" would all leave the site.
    """
    if not value or len(value) > NEXT_MAX or not value.startswith("/"):
        return default
    if value.startswith("//") or "\\" in value or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def render_login(
    *,
    lang: str,
    csrf_token: str,
    next_path: str,
    email: str = "",
    message: str | None = None,
) -> str:
    """The sign-in form in ``lang``; ``message`` (already in ``lang``) says what went wrong."""
    gettext = gettext_for(lang)
    return PAGES.get_template("login.html.j2").render(
        _=gettext,
        lang=lang,
        other_lang="en" if lang == "th" else "th",
        csrf_token=csrf_token,
        next_path=local_path(next_path),
        email=email[:EMAIL_MAX],
        message=message,
        email_max=EMAIL_MAX,
    )
