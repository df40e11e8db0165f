"""``HEAD`` on every ``GET`` route: answered as the ``GET`` would be, without its body.

FastAPI routes answer only the methods they name, and ours name ``GET``; a client that asks
``HEAD`` first (GDAL's ``/vsicurl/`` does, for a file's size before it reads ranges of it)
would get 405. Running the ``GET`` and dropping the body keeps the headers exactly those of
the ``GET``, ``Content-Length`` included, and needs nothing from each route.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_GONE: Message = {"type": "http.disconnect"}


class HeadAsGet:
    """ASGI middleware: a ``HEAD`` request runs as ``GET`` and its answer is sent bodiless."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request on; a ``HEAD`` as a ``GET`` whose body is not sent."""
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self._app(scope, receive, send)
            return
        # A copy: the server keeps reading its own scope, and must still know the request
        # was a HEAD (it sends no body, and no chunked encoding, for one).
        as_get = dict(scope, method="GET")
        answered = anyio.Event()

        async def headers_only(message: Message) -> None:
            # Whatever carries the body (``body``, or ``pathsend`` for a file where the
            # server offers it) ends as one empty body.
            if message["type"] in ("http.response.start", "http.response.trailers"):
                await send(message)
            elif not answered.is_set():
                answered.set()
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def gone_once_answered() -> Message:
            # Once the headers are out the answer is whole: a stream (the live feed, a CSV
            # export) that waits to hear the client leave is told so then, and stops rather
            # than run on unread for as long as the connection stays open.
            if answered.is_set():
                return _GONE
            received: Message = _GONE
            async with anyio.create_task_group() as group:

                async def read() -> None:
                    nonlocal received
                    received = await receive()
                    group.cancel_scope.cancel()

                async def wait_answered() -> None:
                    await answered.wait()
                    group.cancel_scope.cancel()

                group.start_soon(read)
                group.start_soon(wait_answered)
            return received

        await self._app(as_get, gone_once_answered, headers_only)
