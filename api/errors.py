"""One table mapping domain errors to HTTP statuses, and handlers that use it."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from geo.errors import (
    BoundaryImportError,
    DatabaseNotEmptyError,
    InvalidInputError,
    IssuemapError,
    NotFoundError,
    OutsideServiceAreaError,
)

STATUS_BY_ERROR: dict[type[IssuemapError], int] = {
    InvalidInputError: 422,
    OutsideServiceAreaError: 422,
    BoundaryImportError: 422,
    NotFoundError: 404,
    DatabaseNotEmptyError: 409,
}


def status_for(error: IssuemapError) -> int:
    """HTTP status of a domain error: the closest mapped ancestor, else 500."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


async def _handle(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, IssuemapError)
    body: dict[str, object] = {"detail": str(error), "error": type(error).__name__}
    if isinstance(error, InvalidInputError):
        body["field"] = error.field
    return JSONResponse(status_code=status_for(error), content=body)


def install(app: FastAPI) -> None:
    """Register the domain-error handler on ``app``."""
    app.add_exception_handler(IssuemapError, _handle)
