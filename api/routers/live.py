"""Server-sent events: reports created or changing status, as they happen."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import AppStateDep, BrowserPrincipalDep, PrivacyDep
from api.errors import error_responses
from geo.reports.live import Event, for_stream, live_audience

router = APIRouter(tags=["maps"], responses=error_responses(401, 422, 503))

KEEP_ALIVE_S = 15.0
QUEUE_LIMIT = 1000


def _offer(queue: asyncio.Queue[Event], event: Event) -> None:
    if queue.full():
        # A client this far behind cannot catch up event by event: tell it to refresh.
        while not queue.empty():
            queue.get_nowait()
        event = {"kind": "resync"}
    queue.put_nowait(event)


@router.get(
    "/api/live",
    summary="Live report events (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live(
    request: Request,
    state: AppStateDep,
    principal: BrowserPrincipalDep,
    privacy: PrivacyDep,
    zone: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this zone.")] = None,
    team: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this team.")] = None,
) -> StreamingResponse:
    """Stream report events: new reports and status changes, without personal data.

    Event types: `report`, `bulk` (after large imports) and `resync` (reload). A `report`
    event's `op` is `insert`, `update`, or `leave` (only `id`): a report forwarded to another
    team, or re-routed, left the zone or team this stream watches. Browsers
    reconnect on their own (`retry: 2000`); a comment every 15 s keeps proxies from
    closing an idle stream. Staff who see the report whole also get its `event_id`: the
    change's audit event, the `event_id` a status change's answer gives, so a client that
    hears of a change both ways can tell which is newer. Without a staff key (`X-API-Key`,
    or the cookie a staff map page sets), report events carry no `team_id`, `zone_id` or
    `event_id`, and `lat`/`lon` on the public grid (`ISSUEMAP_MAP_PUBLIC_ROUNDING_M`
    metres), as every public output does.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=QUEUE_LIMIT)
    audience = await run_in_threadpool(
        live_audience,
        state.engine,
        principal,
        public_rounding_m=privacy.public_rounding_m,
    )

    def deliver(event: Event) -> None:
        sent = for_stream(event, audience, zone_id=zone, team_id=team)
        if sent is not None:
            loop.call_soon_threadsafe(_offer, queue, sent)

    unsubscribe = state.live.subscribe(deliver)

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n: connected\n\n"
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=KEEP_ALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {event.get('kind', 'report')}\ndata: {json.dumps(event)}\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
