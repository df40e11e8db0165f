"""Domain exceptions. ``api.errors`` maps each one to an HTTP status and a readable body.

An error's message is a catalog message: an English ``msgid`` with ``{placeholders}`` and
the values that fill them, marked with ``N_`` so ``make messages`` extracts it::

    raise InvalidInputError(
        "description", N_("must be at most {limit:,} characters"), limit=DESCRIPTION_MAX
    )

``str(error)`` is the English sentence (logs, the command line); ``error.message(lang)`` is
the sentence in ``lang``, which ``api.errors`` picks from the caller's Accept-Language. Only
the ``msgid``'s own placeholders are filled, once: a value (often the caller's own input)
is never read as a template. A message given without values is used as it is, so a sentence
built beforehand still works; it reads in English.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from geo.i18n import N_, translate


def _fill(msgid: str, values: Mapping[str, object]) -> str:
    return msgid.format(**values) if values else msgid


def translated(lang: str, msgid: str, values: Mapping[str, object]) -> str:
    """``msgid`` in ``lang`` with its placeholders filled from ``values``.

    A value that is itself a ``Message`` (a word such as a layer's name, a list that ends
    "and 3 more") is put in the same language. A translation whose placeholders do not
    match its ``msgid`` would fail to fill; the English sentence is better than an error
    answer, so that is what it gives.
    """
    values = {k: v.text(lang) if isinstance(v, Message) else v for k, v in values.items()}
    try:
        return translate(lang, msgid, **values)
    except (KeyError, IndexError, ValueError, AttributeError):
        return _fill(msgid, values)


@dataclass(frozen=True, slots=True)
class Message:
    """A catalog message and the values of its placeholders, translated when it is read."""

    msgid: str
    values: Mapping[str, object] = field(default_factory=dict)

    def text(self, lang: str = "en") -> str:
        """The message in ``lang``."""
        return translated(lang, self.msgid, self.values)

    def __str__(self) -> str:
        return _fill(self.msgid, self.values)


class IssuemapError(Exception):
    """Base of every error issuemap raises on purpose; its message is meant for people.

    ``msgid`` is the English catalog message and ``values`` fill its placeholders; a
    ``Message`` may stand for both.
    """

    def __init__(self, msgid: str | Message = "", /, **values: object) -> None:
        if isinstance(msgid, Message):
            values = {**msgid.values, **values}
            msgid = msgid.msgid
        super().__init__(_fill(msgid, values))
        self.msgid: str = msgid
        self.values: Mapping[str, object] = values

    def message(self, lang: str) -> str:
        """The message for people in ``lang`` (``geo.i18n.LANGUAGES``)."""
        return translated(lang, self.msgid, self.values)


class LocalDatabaseError(IssuemapError):
    """The private PostgreSQL cluster could not be created, started or reached."""


class NotFoundError(IssuemapError):
    """A named thing (category, team, report) does not exist."""


class InvalidInputError(IssuemapError):
    """Input that names a field and says what is wrong with it.

    ``field`` is the parameter's own name (a form or query field, a function argument),
    never a command-line flag: HTTP users read these messages too. A message that mentions
    another parameter writes its name in backticks (`force`); ``geo.cli`` shows both as flags.
    ``problem`` is the catalog message of what is wrong (``msgid``, filled by ``values``);
    the field's name is a contract and is never translated.
    """

    def __init__(self, field: str, problem: str | Message, /, **values: object) -> None:
        super().__init__(problem, **values)
        self.field = field
        self.problem = _fill(self.msgid, self.values)
        """What is wrong, in English."""
        self.args = (f"{field}: {self.problem}",)

    def message(self, lang: str) -> str:
        """``field: problem`` with the problem in ``lang``."""
        return f"{self.field}: {super().message(lang)}"


class OutsideServiceAreaError(IssuemapError):
    """A location lies outside every ward, farther than the snapping distance."""

    def __init__(self, lat: float, lon: float, distance_m: float | None) -> None:
        if distance_m is None:
            super().__init__(
                N_(
                    "The location ({lat:.6f}, {lon:.6f}) is outside the area this city "
                    "serves. No city wards have been loaded yet."
                ),
                lat=lat,
                lon=lon,
            )
        else:
            super().__init__(
                N_(
                    "The location ({lat:.6f}, {lon:.6f}) is outside the area this city "
                    "serves. The nearest ward is about {distance:,.0f} m away. Please check "
                    "the location, or report it to the authority responsible there."
                ),
                lat=lat,
                lon=lon,
                distance=round(distance_m, -1),
            )
        self.lat = lat
        self.lon = lon
        self.distance_m = distance_m


class BoundaryImportError(IssuemapError):
    """A boundary file was refused; nothing was changed.

    ``problems`` lists what is wrong, one line each (text, or a ``Message``).
    """

    def __init__(
        self,
        message: str | Message,
        problems: Sequence[str | Message] | None = None,
        /,
        **values: object,
    ) -> None:
        super().__init__(message, **values)
        self.problems = list(problems or [])
        self.args = (self.message("en"),)

    def message(self, lang: str) -> str:
        """The sentence and the problems, one a line, in ``lang``."""
        head = super().message(lang)
        lines = [p.text(lang) if isinstance(p, Message) else p for p in self.problems]
        return head if not lines else head + "\n" + "\n".join(f"  - {p}" for p in lines)


class BoundaryReplaceRefusedError(BoundaryImportError):
    """A replace would leave open reports or much of the covered area outside the new layer.

    ``parameter`` names the option that confirms it anyway.
    """

    parameter = "force"


class DatabaseNotEmptyError(IssuemapError):
    """The demo city was refused because the database already holds a city."""


class AuthenticationError(IssuemapError):
    """An API key was required, or the one given is unknown or revoked."""


class PermissionDeniedError(IssuemapError):
    """The caller's role may not do this."""


class ConflictError(IssuemapError):
    """The request clashes with the current state (a reused idempotency key, a bad transition)."""


class ServiceAccountError(IssuemapError):
    """The unprivileged account for the web workers is unusable, or cannot reach its files."""


class RateLimitedError(IssuemapError):
    """A caller filed more reports than its limit allows just now (``geo.access.ratelimit``).

    ``retry_after_s`` is how long until its window resets; ``message(lang)`` says so in the
    caller's language.
    """

    MESSAGE = N_(
        "Too many reports have been sent from here in a short time. "
        "Please wait {seconds} seconds and try again."
    )

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = max(int(retry_after_s), 1)
        super().__init__(self.MESSAGE, seconds=self.retry_after_s)
