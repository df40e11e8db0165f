"""Service health and the routing lookup."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ConnDep, RoutingDep
from api.errors import error_responses
from api.models import Health, RouteAnswer
from geo.city.coordinates import LAT_MAX, LON_MAX
from geo.city.routing import find_category_id, route_point
from geo.db.engine import postgis_version
from geo.vocabulary import CODE_MAX

router = APIRouter(responses=error_responses(422, 503))


@router.get("/healthz", tags=["service"])
def health(conn: ConnDep) -> Health:
    """Report that the service is up and its database answers."""
    return Health(status="ok", postgis=postgis_version(conn))


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
