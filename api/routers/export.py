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

from api.deps import (
    AppStateDep,
    ExportSlotsDep,
    PrincipalDep,
    PrivacyDep,
    get_read_connection,
    reads_primary,
)
from api.errors import error_responses, request_language
from api.models import ReportCollection, inline_schema
from api.params import Page, PageDep, ReportFilterDep
from geo.access.policy import Principal
from geo.i18n import N_, translate
from geo.reports import export
from geo.reports.search import ReportFilter, stream_reports

router = APIRouter(prefix="/api", tags=["reports"], responses=error_responses(422, 503))

ExportFormat = Literal["geojson", "csv", "gpkg"]
Answer = Literal["page", "geojson", "csv", "gpkg"]
"""A page of GeoJSON, or every match as a file of one of the export formats."""

MEDIA_TYPES: dict[ExportFormat, str] = {
    "geojson": "application/geo+json",
    "csv": "text/csv",
    "gpkg": "application/geopackage+sqlite3",
}
FILES: tuple[ExportFormat, ...] = ("geojson", "csv", "gpkg")
# An Accept header naming GeoJSON asks for the page, as it always has; the others are files.
_ACCEPTED_FILES: tuple[ExportFormat, ...] = ("csv", "gpkg")
FILENAME = "issuemap-reports"

PAGE_DESCRIPTION = N_(
    "One page of {returned} reports; more match. Next page: {next} . Every match at once: "
    "{every} . GIS clients can also page through the OGC API at /ogc."
)
"""The page says so where a GIS client shows it (GDAL: the layer's DESCRIPTION)."""

_log = logging.getLogger(__name__)


def negotiate(requested: ExportFormat | None, accept: str | None) -> Answer:
    """The ``format`` parameter if given, else a file ``Accept`` asks for, else a page."""
    if requested is not None:
        return requested
    accepted = (accept or "").lower()
    for name in _ACCEPTED_FILES:
        if MEDIA_TYPES[name] in accepted:
            return name
    return "page"


async def chosen_format(
    fmt: Annotated[
        ExportFormat | None,
        Query(
            alias="format",
            description="Without it, a page of GeoJSON; `geojson`, `csv` or `gpkg`: every "
            "match as a file, no paging. Wins over the Accept header.",
        ),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Answer:
    """The answer asked for, by parameter or ``Accept`` header.

    A coroutine, so it runs on the event loop rather than through the thread pool.
    """
    return negotiate(fmt, accept)


FormatDep = Annotated[Answer, Depends(chosen_format)]


def reports_connection(
    request: Request, state: AppStateDep, chosen: FormatDep
) -> Iterator[Connection]:
    """The request's one connection.

    A page reads on the shared pool. A file takes one of the export places and its
    connection, apart from the shared pool, until the download ends; when every place is
    taken the answer is 503 with Retry-After, before anything is read. Both read from a
    replica when one is fit (``api.deps.get_read_connection``).
    """
    if chosen in FILES:
        with state.exports.connection(primary=reads_primary(request, state)) as conn:
            yield conn
    else:
        yield from get_read_connection(request, state)


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
    filters: ReportFilterDep,
    page: PageDep,
    chosen: FormatDep,
    bom: Annotated[
        bool,
        Query(
            description="`format=csv`: start with the UTF-8 byte order mark, which Excel on "
            "Windows needs to read Thai text; `false` leaves it out."
        ),
    ] = True,
) -> Response:
    """Reports matching the filters, as the caller may see them.

    Without `format` the answer is one page of GeoJSON in id order: follow the `next`
    link, which keeps the filters, until there is none; a page with more after it also
    says so in its `description`, which GIS clients show. `numberMatched` counts every
    match while there are at most 10,000; with more it is left out (the `next` links still
    lead on). `format=geojson`, `format=csv` and `format=gpkg` (or `Accept: text/csv` /
    `application/geopackage+sqlite3`) export every match at once, streamed; the CSV starts
    with a UTF-8 byte order mark unless `bom=false`, and the GeoPackage holds the current
    `wards` and `zones` beside the `reports`. The public
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
    flt = export.with_areas(conn, filters.filter, wards=filters.wards, zones=filters.zones)
    if chosen == "csv":
        return _csv(conn, flt, principal, rounding, max_seconds=max_seconds, bom=bom)
    if chosen == "geojson":
        return _every_feature(request, conn, flt, principal, rounding, max_seconds=max_seconds)
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
                "href": _every_url(request, name),
            }
        )
    body = export.feature_collection(
        rows,
        links=links,
        number_matched=export.count_reports(
            conn, flt, principal, at_most=export.MATCH_COUNT_LIMIT, public_rounding_m=rounding
        ),
    )
    if has_more:
        # GDAL's GeoJSON driver follows no link: without this a GIS user would take the
        # first page for every report, as nothing else in what it shows says otherwise.
        body = {
            "type": body.pop("type"),
            "name": "reports",
            "description": translate(
                request_language(request),
                PAGE_DESCRIPTION,
                returned=len(rows),
                next=links[1]["href"],
                every=_every_url(request, "geojson"),
            ),
        } | body
    return GeoJSONResponse(body, headers={"Vary": "Accept"})


def _every_url(request: Request, name: ExportFormat) -> str:
    """The request's URL as the export of every match in ``name``."""
    return str(
        request.url.remove_query_params(["after", "limit"]).include_query_params(format=name)
    )


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
    bom: bool,
) -> StreamingResponse:
    # Read before the answer starts, so an unreachable database is a 503, not a cut 200.
    columns = export.report_columns(conn, principal)
    chunks = export.csv_chunks(
        stream_reports(conn, flt, principal, public_rounding_m=rounding), columns=columns, bom=bom
    )
    return _Download(
        chunks,
        max_seconds=max_seconds,
        media_type=MEDIA_TYPES["csv"] + "; charset=utf-8",
        headers=_attachment("csv"),
    )


def _every_feature(
    request: Request,
    conn: Connection,
    flt: ReportFilter,
    principal: Principal,
    rounding: float,
    *,
    max_seconds: float,
) -> StreamingResponse:
    # Read before the answer starts, so an unreachable database is a 503, not a cut 200.
    export.report_columns(conn, principal)
    return _Download(
        export.geojson_chunks(
            stream_reports(conn, flt, principal, public_rounding_m=rounding),
            links=[{"rel": "self", "type": MEDIA_TYPES["geojson"], "href": str(request.url)}],
        ),
        max_seconds=max_seconds,
        media_type=MEDIA_TYPES["geojson"],
        headers=_attachment("geojson"),
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
        export.write_boundaries(conn, path)
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
