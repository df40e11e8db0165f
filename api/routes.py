"""HTTP routes. Each parses input, calls ``geo`` and shapes the answer."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import ConnDep

router = APIRouter()


@router.get("/healthz", tags=["service"])
def health(conn: ConnDep) -> dict[str, str]:
    """Report that the service is up and its database answers."""
    version = conn.execute(text("SELECT postgis_lib_version()")).scalar_one()
    return {"status": "ok", "postgis": str(version)}
