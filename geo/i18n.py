"""Resident-facing text in Thai and English: the message catalogs, and which language a caller gets.

Every string a resident reads is an English ``msgid`` marked for extraction (``_`` where it
is translated on the spot, ``N_`` where it is only marked and translated later), with its
Thai translation in ``geo/locale/th/LC_MESSAGES/issuemap.po``. ``make setup`` compiles the
catalogs; ``make messages`` re-extracts the ids after a change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from babel.support import Translations

LANGUAGES = ("th", "en")
"""Languages we speak; Thai first, as the city's residents do."""

DOMAIN = "issuemap"


def locale_dir() -> Path:
    """The folder of compiled catalogs, shipped as package data of ``geo``."""
    return Path(str(resources.files("geo") / "locale"))


def N_(message: str) -> str:
    """Mark ``message`` for extraction without translating it yet (a label table, say)."""
    return message


@functools.cache
def translations(lang: str) -> Translations:
    """The compiled catalog of ``lang``; a missing Thai catalog is an install error, not English."""
    if lang not in LANGUAGES:
        raise ValueError(f"no catalog for {lang!r}; we speak {', '.join(LANGUAGES)}")
    compiled = locale_dir() / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
    if not compiled.is_file():
        # English needs no catalog (the ids are English); Thai without one would silently
        # show English to every Thai reader, so refuse loudly instead.
        if lang == "en":
            return Translations()
        raise RuntimeError(f"{compiled} is missing: run `make setup` to compile the catalogs")
    with compiled.open("rb") as handle:
        return Translations(handle, domain=DOMAIN)


def gettext_for(lang: str) -> Callable[[str], str]:
    """The ``gettext`` function of ``lang``."""
    return translations(lang).gettext


def translate(lang: str, message: str, **values: object) -> str:
    """``message`` in ``lang``, with ``{name}`` placeholders filled from ``values``."""
    text = translations(lang).gettext(message)
    return text.format(**values) if values else text


def pick_language(
    lang: str | None, accept_language: str | None = None, *, default: str = "th"
) -> str:
    """``lang`` if we speak it, else the best match in ``Accept-Language``, else ``default``.

    Pages default to Thai (the city's language); the JSON API passes ``default="en"`` so a
    client that names no language keeps the English messages it was written against.
    """
    if lang and lang.strip().lower()[:2] in LANGUAGES:
        return lang.strip().lower()[:2]
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        code = tag.strip().lower()[:2]
        if code in LANGUAGES and quality > 0:
            ranked.append((-quality, index, code))
    return min(ranked)[2] if ranked else default
