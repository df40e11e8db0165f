"""LINE's webhook: the city's LINE Official Account sends residents' messages here.

The route checks the signature and stores the events (``geo.chat.line.LineChannel.accept``),
answers 200 at once as LINE requires, and handles them after the response: photos are
downloaded, the conversation moves on and the resident gets the answer in the chat. The
work after the response takes every pending event, so events a stopped process left are
handled with the next call (LINE sends an event again when it got no answer), or by the
delivery worker (``issuemap serve`` runs it), which looks for them every round.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import AppStateDep, LineChannelDep
from api.errors import error_responses
from geo.chat.line import (
    BODY_NOT_LINE,
    SIGNATURE_MISSING,
    WEBHOOK_BODY_MAX,
    LineWebhookError,
    LineWebhookTooLargeError,
)

router = APIRouter(tags=["LINE"])


NOT_CONNECTED: dict[str, Any] = {
    "description": "The city has not connected LINE: the answer is that of an unknown path.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        }
    },
}


class WebhookAnswer(BaseModel):
    """What the webhook answers LINE (LINE reads only the status)."""

    stored: int = Field(description="Events stored by this call that were not stored before.")


async def _body(request: Request) -> str:
    """The raw body as text, refused once it grows past ``WEBHOOK_BODY_MAX``."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > WEBHOOK_BODY_MAX:
        raise LineWebhookTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > WEBHOOK_BODY_MAX:
            raise LineWebhookTooLargeError
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise LineWebhookError("body", BODY_NOT_LINE) from None


@router.post(
    "/line/webhook",
    response_model=WebhookAnswer,
    summary="LINE's webhook (the city's LINE Official Account)",
    responses=error_responses(400, 413, 422, 503) | {404: NOT_CONNECTED},
)
async def line_webhook(
    request: Request,
    background: BackgroundTasks,
    state: AppStateDep,
    channel: LineChannelDep,
    x_line_signature: Annotated[
        str | None,
        Header(description="Base64 HMAC-SHA256 of the raw body with the channel secret."),
    ] = None,
) -> WebhookAnswer:
    """Take the events LINE sends for the city's Official Account.

    Answers 400 (and stores nothing) when `X-Line-Signature` is missing or does not match
    the body, 404 while the city has not connected LINE (`ISSUEMAP_LINE_CHANNEL_SECRET`
    unset), 413 for a body larger than LINE ever sends. Events are stored and answered at
    once; residents get their replies in the chat a moment later. An event LINE sends again
    is not handled twice.
    """
    if not x_line_signature:
        raise LineWebhookError("X-Line-Signature", SIGNATURE_MISSING)
    body = await _body(request)
    stored = await run_in_threadpool(channel.accept, state.engine, body, x_line_signature)
    # Also when nothing was new: LINE sends an event again when it got no answer, and the
    # first call may have stored it and then stopped before handling it. Starlette runs a
    # plain function given to a background task in its thread pool.
    background.add_task(channel.process_pending, state.engine)
    return WebhookAnswer(stored=stored)
