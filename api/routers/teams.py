"""Teams and their work queues."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import text

from api.deps import ConnDep, PrincipalDep
from api.errors import error_responses
from geo.errors import AuthenticationError, NotFoundError
from geo.reports.search import MAX_PAGE, team_queue

router = APIRouter(prefix="/api/teams", tags=["teams"], responses=error_responses(422, 503))


@router.get("", summary="Field teams")
def list_teams(conn: ConnDep) -> list[dict[str, Any]]:
    """Every team, with the codes of its current zones."""
    rows = conn.execute(
        text(
            "SELECT t.id, t.code, t.name, COALESCE(array_agg(z.code ORDER BY z.code) "
            "FILTER (WHERE z.id IS NOT NULL), '{}') AS zones FROM teams AS t "
            "LEFT JOIN zones AS z ON z.team_id = t.id AND z.retired_at IS NULL "
            "GROUP BY t.id ORDER BY t.code"
        )
    ).mappings()
    return [dict(r) for r in rows]


@router.get(
    "/{team_id}/queue",
    summary="A team's open work, soonest due first",
    responses=error_responses(401, 404),
)
def queue(
    team_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    conn: ConnDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, Any]:
    """Open, acknowledged, in-progress and reopened reports of the team, by due time.

    A field team sees only its own queue; planners and admins see every team's.
    """
    if not principal.is_staff:
        raise AuthenticationError("A team's queue needs a field-team, planner or admin key.")
    if principal.role == "field_team" and principal.team_id != team_id:
        raise NotFoundError(f"There is no team {team_id}.")
    exists = conn.execute(text("SELECT 1 FROM teams WHERE id = :id"), {"id": team_id}).first()
    if exists is None:
        raise NotFoundError(f"There is no team {team_id}.")
    items = team_queue(conn, team_id, principal, limit=limit)
    return {
        "team_id": team_id,
        "count": len(items),
        "overdue": sum(1 for r in items if r["overdue"]),
        "reports": items,
    }
