"""Request dependencies: a database connection per request, taken from the app's engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection

from geo.settings import RoutingSettings


def get_connection(request: Request) -> Iterator[Connection]:
    """A connection inside a transaction that commits when the request succeeds."""
    with request.app.state.engine.begin() as conn:
        yield conn


def get_routing(request: Request) -> RoutingSettings:
    """The routing settings the app was started with."""
    settings: RoutingSettings = request.app.state.routing
    return settings


ConnDep = Annotated[Connection, Depends(get_connection)]
RoutingDep = Annotated[RoutingSettings, Depends(get_routing)]
