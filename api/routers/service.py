"""Service health and the routing lookup."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy.exc
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import AppState, AppStateDep, ConnDep, RoutingDep
from api.errors import (
    DATABASE_UNAVAILABLE,
    RETRY_AFTER_S,
    UNAVAILABLE_DETAIL,
    error_responses,
    request_language,
)
from api.models import Health, ReplicaHealth, RouteAnswer
from geo.city.coordinates import LAT_MAX, LON_MAX
from geo.city.routing import find_category_id, route_point
from geo.db.engine import postgis_version
from geo.i18n import translate
from geo.vocabulary import CODE_MAX

router = APIRouter(responses=error_responses(422, 503))


@router.get(
    "/healthz",
    tags=["service"],
    response_model=Health,
    responses={503: {"model": Health, "description": "The database does not answer."}},
)
def health(request: Request, state: AppStateDep) -> Health | JSONResponse:
    """Report whether the service, its database and its read replicas answer.

    503 (with ``Retry-After``) when the database does not answer: ``database`` is ``down``,
    or ``busy`` when every pooled connection stayed taken for the pool timeout.
    """
    replicas = replica_health(state)
    try:
        with state.engine.connect() as conn:
            version = postgis_version(conn)
    except DATABASE_UNAVAILABLE as error:
        busy = isinstance(error, sqlalchemy.exc.TimeoutError)
        down = Health(
            status="down",
            database="busy" if busy else "down",
            postgis=None,
            replicas=replicas,
            detail=translate(request_language(request), UNAVAILABLE_DETAIL),
        )
        return JSONResponse(
            status_code=503,
            content=down.model_dump(),
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    fit = all(replica.status == "ok" for replica in replicas)
    return Health(
        status="ok" if fit else "degraded", database="ok", postgis=version, replicas=replicas
    )


def replica_health(state: AppState) -> list[ReplicaHealth]:
    """The read replicas as their last check found them (none while none is configured)."""
    if state.reads is None:
        return []
    return [
        ReplicaHealth(
            url=replica.name,
            status="ok"
            if replica.usable
            else "lagging"
            if replica.problem == "lagging"
            else "not a standby"
            if replica.problem == "not a standby"
            else "down",
            lag_s=replica.lag_s,
        )
        for replica in state.reads.replicas.status()
    ]


@router.get("/api/route", tags=["routing"])
def route_lookup(
    conn: ConnDep,
    routing: RoutingDep,
    lat: Annotated[float, Query(ge=-LAT_MAX, le=LAT_MAX, allow_inf_nan=False)],
    lon: Annotated[float, Query(ge=-LON_MAX, le=LON_MAX, allow_inf_nan=False)],
    category: Annotated[str, Query(min_length=1, max_length=CODE_MAX)],
) -> RouteAnswer:
    """Where a report at this point and of this category would be sent; nothing is stored."""
    category_id = find_category_id(conn, category)
    route = route_point(
        conn,
        lon=lon,
        lat=lat,
        category_id=category_id,
        created_at=datetime.now(UTC),
        settings=routing,
    )
    return RouteAnswer(**asdict(route))
