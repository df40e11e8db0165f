"""Finding and exporting reports: a paged GeoJSON collection, or every match as CSV or GPKG."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Generator, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from sqlalchemy import Connection
from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

from api.deps import AppStateDep, ExportSlotsDep, PrincipalDep, PrivacyDep, get_connection
from api.errors import error_responses
from api.models import ReportCollection, inline_schema
from api.params import Page, PageDep, ReportFilterDep
from geo.access.policy import Principal
from geo.reports import export
from geo.reports.search import ReportFilter, stream_reports

router = APIRouter(prefix="/api", tags=["reports"], responses=error_responses(422, 503))

ExportFormat = Literal["geojson", "csv", "gpkg"]

MEDIA_TYPES: dict[ExportFormat, str] = {
    "geojson": "application/geo+json",
    "csv": "text/csv",
    "gpkg": "application/geopackage+sqlite3",
}
FILES: tuple[ExportFormat, ...] = ("csv", "gpkg")
FILENAME = "issuemap-reports"

_log = logging.getLogger(__name__)


def negotiate(requested: ExportFormat | None, accept: str | None) -> ExportFormat:
    """The ``format`` parameter if given, else what ``Accept`` asks for, else GeoJSON."""
    if requested is not None:
        return requested
    accepted = (accept or "").lower()
    for name in FILES:
        if MEDIA_TYPES[name] in accepted:
            return name
    return "geojson"


async def chosen_format(
    fmt: Annotated[
        ExportFormat | None,
        Query(
            alias="format",
            description="`geojson` (a page, the default), or `csv` / `gpkg` (every match, "
            "no paging). Wins over the Accept header.",
        ),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> ExportFormat:
    """The format asked for, by parameter or ``Accept`` header.

    A coroutine, so it runs on the event loop rather than through the thread pool.
    """
    return negotiate(fmt, accept)


FormatDep = Annotated[ExportFormat, Depends(chosen_format)]


def reports_connection(state: AppStateDep, chosen: FormatDep) -> Iterator[Connection]:
    """The request's one connection.

    A page reads on the shared pool. A file takes one of the export places and its
    connection, apart from the shared pool, until the download ends; when every place is
    taken the answer is 503 with Retry-After, before anything is read.
    """
    if chosen in FILES:
        with state.exports.connection() as conn:
            yield conn
    else:
        yield from get_connection(state)


@router.get(
    "/reports",
    summary="Find reports; export them as GeoJSON, CSV or GeoPackage",
    response_class=Response,
    responses={
        200: {
            "description": "A page of reports as GeoJSON, or every match as a file.",
            "content": {media_type: {} for media_type in MEDIA_TYPES.values()}
            | {MEDIA_TYPES["geojson"]: {"schema": inline_schema(ReportCollection)}},
        },
        **error_responses(401, 422),
        503: error_responses(503)[503]
        | {
            "description": "The database is unavailable, or as many exports as allowed "
            "are already running; `Retry-After` says when to try again."
        },
    },
)
def find_or_export(
    request: Request,
    conn: Annotated[Connection, Depends(reports_connection)],
    principal: PrincipalDep,
    privacy: PrivacyDep,
    exports: ExportSlotsDep,
    flt: ReportFilterDep,
    page: PageDep,
    chosen: FormatDep,
) -> Response:
    """Reports matching the filters, as the caller may see them.

    GeoJSON (the default) is one page in id order: follow the `next` link, which keeps
    the filters, until there is none. `numberMatched` counts every match while there are
    at most 10,000; with more it is left out (the `next` links still lead on).
    `format=csv` and `format=gpkg` (or `Accept: text/csv` /
    `application/geopackage+sqlite3`) export every match at once, streamed. The public
    gets public fields only; field teams see the reports of their team and zones;
    planners and admins see every report. Staff exports include the reporter's name and
    contact. Staff get exact locations; everyone else gets them on the public grid, and
    `bbox` selects by that grid.

    A few exports run at once; one more is answered 503 with `Retry-After`. An export
    that fails, or runs longer than allowed, is cut off without its end, so a client
    never takes a part for the whole file.
    """
    rounding = privacy.public_rounding_m
    max_seconds = exports.max_seconds
    if chosen == "csv":
        return _csv(conn, flt, principal, rounding, max_seconds=max_seconds)
    if chosen == "gpkg":
        return _geopackage(conn, flt, principal, rounding, max_seconds=max_seconds)
    return _geojson(request, conn, flt, principal, page, rounding)


def _geojson(
    request: Request,
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    page: Page,
    rounding: float,
) -> GeoJSONResponse:
    rows, has_more = export.report_page(
        conn, flt, principal, limit=page.limit, after_id=page.after, public_rounding_m=rounding
    )
    links = [{"rel": "self", "type": MEDIA_TYPES["geojson"], "href": str(request.url)}]
    if has_more:
        links.append(
            {
                "rel": "next",
                "type": MEDIA_TYPES["geojson"],
                "href": str(request.url.include_query_params(after=rows[-1]["id"])),
            }
        )
    for name in FILES:
        links.append(
            {
                "rel": "alternate",
                "type": MEDIA_TYPES[name],
                "title": f"Every match as {name.upper()}",
                "href": str(
                    request.url.remove_query_params(["after", "limit"]).include_query_params(
                        format=name
                    )
                ),
            }
        )
    body = export.feature_collection(
        rows,
        links=links,
        number_matched=export.count_reports(
            conn, flt, principal, at_most=export.MATCH_COUNT_LIMIT, public_rounding_m=rounding
        ),
    )
    return GeoJSONResponse(body, headers={"Vary": "Accept"})


class GeoJSONResponse(JSONResponse):
    """GeoJSON written as Starlette writes JSON, with report times as ISO 8601 text."""

    media_type = MEDIA_TYPES["geojson"]

    def render(self, content: Any) -> bytes:
        """``content`` as compact UTF-8 JSON; ``export.json_value`` writes the times."""
        return json.dumps(
            content,
            ensure_ascii=False,
            allow_nan=False,
            indent=None,
            separators=(",", ":"),
            default=export.json_value,
        ).encode("utf-8")


def _attachment(extension: str) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{FILENAME}.{extension}"',
        "Vary": "Accept",
    }


async def _within(max_seconds: float, download: Awaitable[None]) -> None:
    # A client that stops reading blocks the send for ever, and would keep its export
    # place and connection with it. Returning with the answer unfinished makes the server
    # close the connection, so the client sees a cut download, not a shorter file.
    with anyio.move_on_after(max_seconds) as deadline:
        await download
    if deadline.cancelled_caught:
        _log.warning("export cut off after %.0f s: the client was not reading it", max_seconds)


class _Download(StreamingResponse):
    """A streamed export that ends within ``max_seconds`` and closes its rows when it ends.

    However it ends (sent, client gone, cut off, failed), the rows are closed here, before
    the request's dependencies hand the connection their cursor is on back to the pool. A
    failure midway is raised on, so the server aborts the answer without its last chunk.
    """

    def __init__(
        self, chunks: Generator[bytes, None, None], *, max_seconds: float, **kwargs: Any
    ) -> None:
        super().__init__(chunks, **kwargs)
        self._chunks = chunks
        self._max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await _within(self._max_seconds, super().__call__(scope, receive, send))
        finally:
            await run_in_threadpool(self._chunks.close)


class _FileDownload(FileResponse):
    """A file sent within ``max_seconds``: its export place is not held for ever either."""

    def __init__(self, path: Path, *, max_seconds: float, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _within(self._max_seconds, super().__call__(scope, receive, send))


def _csv(
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    rounding: float,
    *,
    max_seconds: float,
) -> StreamingResponse:
    # Read before the answer starts, so an unreachable database is a 503, not a cut 200.
    columns = export.report_columns(conn, principal)
    chunks = export.csv_chunks(
        stream_reports(conn, flt, principal, public_rounding_m=rounding), columns=columns
    )
    return _Download(
        chunks,
        max_seconds=max_seconds,
        media_type=MEDIA_TYPES["csv"] + "; charset=utf-8",
        headers=_attachment("csv"),
    )


def _geopackage(
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    rounding: float,
    *,
    max_seconds: float,
) -> FileResponse:
    # A GeoPackage is SQLite: it cannot be written front to back onto the wire, so it is
    # built in a temporary folder (GDAL may add journal files beside it), batch by batch,
    # sent from there, and the folder is removed once the response is done.
    folder = Path(tempfile.mkdtemp(prefix="issuemap-export-"))
    try:
        path = folder / f"{FILENAME}.gpkg"
        export.write_geopackage(
            stream_reports(conn, flt, principal, public_rounding_m=rounding),
            path,
            columns=export.report_columns(conn, principal),
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # The file is whole: end the transaction now instead of keeping it open while it is sent.
    conn.rollback()
    return _FileDownload(
        path,
        max_seconds=max_seconds,
        media_type=MEDIA_TYPES["gpkg"],
        filename=path.name,
        headers={"Vary": "Accept"},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
