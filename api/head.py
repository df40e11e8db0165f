"""``HEAD`` on every ``GET`` route: answered as the ``GET`` would be, without its body.

FastAPI routes answer only the methods they name, and ours name ``GET``; a client that asks
``HEAD`` first (GDAL's ``/vsicurl/`` does, for a file's size before it reads ranges of it)
would get 405. Running the ``GET`` and dropping the body keeps the headers exactly those of
the ``GET``, ``Content-Length`` included, and needs nothing from each route.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
        ended = False

        async def headers_only(message: Message) -> None:
            # Whatever carries the body (``body``, or ``pathsend`` for a file where the
            # server offers it) ends as one empty body.
            nonlocal ended
            if message["type"] in ("http.response.start", "http.response.trailers"):
                await send(message)
            elif not ended:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self._app(as_get, receive, headers_only)
