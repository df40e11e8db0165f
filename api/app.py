"""Application factory. The engine is owned by the lifespan and kept on ``app.state``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, routes
from geo.db import make_engine
from geo.settings import DatabaseSettings, RoutingSettings


def create_app(
    database: DatabaseSettings | None = None, routing: RoutingSettings | None = None
) -> FastAPI:
    """Build the issuemap application; settings default to the ``ISSUEMAP_*`` environment."""
    database = database or DatabaseSettings()
    if database.database_url is None:
        raise RuntimeError(
            "ISSUEMAP_DATABASE_URL is not set: start the service with `issuemap serve`, "
            "which provides a local database when none is configured."
        )
    url = str(database.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_engine(url, pool_size=database.pool_size)
        app.state.routing = routing or RoutingSettings()
        try:
            yield
        finally:
            app.state.engine.dispose()

    app = FastAPI(
        title="issuemap",
        summary="Citizen issue reports, routed by PostGIS to the field team that fixes them.",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(routes.router)
    return app
