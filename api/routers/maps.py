"""Map pages."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.deps import ConnDep
from geo.maps import city_overview_map
from geo.queries import current_wards, current_zones, open_report_heat

router = APIRouter(tags=["maps"])


@router.get("/", response_class=HTMLResponse)
def city_map(conn: ConnDep) -> HTMLResponse:
    """City overview map: wards, field-team zones and a heat layer of open reports."""
    fmap = city_overview_map(
        wards=current_wards(conn), zones=current_zones(conn), heat=open_report_heat(conn)
    )
    return HTMLResponse(fmap.get_root().render())
