"""Teams and their work queues."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ConnDep, StaffDep
from api.errors import error_responses
from api.models import QueuedReport, Team, TeamQueue
from geo.access.policy import may_see_team_queue
from geo.city import catalogue
from geo.errors import NotFoundError
from geo.i18n import N_
from geo.reports.search import MAX_PAGE, team_queue

router = APIRouter(prefix="/api/teams", tags=["teams"], responses=error_responses(422, 503))


@router.get("", summary="Field teams")
def list_teams(conn: ConnDep) -> list[Team]:
    """Every team, with the codes of its current zones."""
    return [Team(**row) for row in catalogue.list_teams(conn)]


@router.get(
    "/{team_id}/queue",
    summary="A team's open work, soonest due first",
    responses=error_responses(401, 404),
)
def queue(
    team_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    conn: ConnDep,
    principal: StaffDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> TeamQueue:
    """Open, acknowledged, in-progress and reopened reports of the team, by due time.

    A field team sees only its own queue; planners and admins see every team's.
    """
    if not may_see_team_queue(principal, team_id):
        raise NotFoundError(N_("There is no team {id}."), id=team_id)
    catalogue.require_team(conn, team_id)
    items = team_queue(conn, team_id, principal, limit=limit)
    return TeamQueue(
        team_id=team_id,
        count=len(items),
        overdue=sum(1 for r in items if r["overdue"]),
        reports=[QueuedReport(**r) for r in items],
    )
