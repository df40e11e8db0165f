"""Domain exceptions. ``api.errors`` maps each one to an HTTP status and a readable body."""

from __future__ import annotations


class IssuemapError(Exception):
    """Base of every error issuemap raises on purpose; its message is meant for people."""


class LocalDatabaseError(IssuemapError):
    """The private PostgreSQL cluster could not be created, started or reached."""


class NotFoundError(IssuemapError):
    """A named thing (category, team, report) does not exist."""


class InvalidInputError(IssuemapError):
    """Input that names a field and says what is wrong with it.

    ``field`` is the parameter's own name (a form or query field, a function argument),
    never a command-line flag: HTTP users read these messages too. A message that mentions
    another parameter writes its name in backticks (`force`); ``geo.cli`` shows both as flags.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class OutsideServiceAreaError(IssuemapError):
    """A location lies outside every ward, farther than the snapping distance."""

    def __init__(self, lat: float, lon: float, distance_m: float | None) -> None:
        if distance_m is None:
            detail = "No city wards have been loaded yet."
        else:
            detail = (
                f"The nearest ward is about {round(distance_m, -1):,.0f} m away. "
                "Please check the location, or report it to the authority responsible there."
            )
        super().__init__(
            f"The location ({lat:.6f}, {lon:.6f}) is outside the area this city serves. {detail}"
        )
        self.lat = lat
        self.lon = lon
        self.distance_m = distance_m


class BoundaryImportError(IssuemapError):
    """A boundary file was refused; nothing was changed."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        full = (
            message
            if not self.problems
            else message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        )
        super().__init__(full)


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
