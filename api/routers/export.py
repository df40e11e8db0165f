"""Finding and exporting reports: a paged GeoJSON collection, or every match as CSV or GPKG."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from sqlalchemy import Connection, Engine
from starlette.background import BackgroundTask

from api.deps import ConnDep, PrincipalDep
from api.params import Page, PageDep, ReportFilterDep
from geo import export
from geo.auth import Principal
from geo.search import ReportFilter, report_query, stream_reports

router = APIRouter(prefix="/api", tags=["reports"])

ExportFormat = Literal["geojson", "csv", "gpkg"]

MEDIA_TYPES: dict[ExportFormat, str] = {
    "geojson": "application/geo+json",
    "csv": "text/csv",
    "gpkg": "application/geopackage+sqlite3",
}
FILES: tuple[ExportFormat, ...] = ("csv", "gpkg")
FILENAME = "issuemap-reports"


def negotiate(requested: ExportFormat | None, accept: str | None) -> ExportFormat:
    """The ``format`` parameter if given, else what ``Accept`` asks for, else GeoJSON."""
    if requested is not None:
        return requested
    accepted = (accept or "").lower()
    for name in FILES:
        if MEDIA_TYPES[name] in accepted:
            return name
    return "geojson"


@router.get(
    "/reports",
    summary="Find reports; export them as GeoJSON, CSV or GeoPackage",
    response_class=Response,
    responses={
        200: {
            "description": "A page of reports as GeoJSON, or every match as a file.",
            "content": {media_type: {} for media_type in MEDIA_TYPES.values()},
        },
        422: {"description": "A parameter is wrong; the answer names it."},
    },
)
def find_or_export(
    request: Request,
    conn: ConnDep,
    principal: PrincipalDep,
    flt: ReportFilterDep,
    page: PageDep,
    fmt: Annotated[
        ExportFormat | None,
        Query(
            alias="format",
            description="`geojson` (a page, the default), or `csv` / `gpkg` (every match, "
            "no paging). Wins over the Accept header.",
        ),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Reports matching the filters, as the caller may see them.

    GeoJSON (the default) is one page in id order: follow the `next` link, which keeps
    the filters, until there is none. `numberMatched` counts every match. `format=csv` and
    `format=gpkg` (or `Accept: text/csv` / `application/geopackage+sqlite3`) export every
    match at once, streamed. The public gets public fields only; field teams see the
    reports of their team and zones; planners and admins see every report. Staff exports
    include the reporter's name and contact.
    """
    chosen = negotiate(fmt, accept)
    if chosen == "csv":
        columns = export.report_columns(conn, principal)
        return _csv(request.app.state.engine, flt, principal, columns)
    if chosen == "gpkg":
        return _geopackage(conn, flt, principal)
    return _geojson(request, conn, flt, principal, page)


def _geojson(
    request: Request, conn: Connection, flt: ReportFilter, principal: Principal, page: Page
) -> JSONResponse:
    # One row more than asked says whether there is a next page, so the last page has no
    # `next` link leading to an empty one.
    query, params = report_query(flt, principal, limit=page.limit + 1, after_id=page.after)
    rows = [dict(row) for row in conn.execute(query, params).mappings()]
    has_more = len(rows) > page.limit
    rows = rows[: page.limit]
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
        rows, links=links, number_matched=export.count_reports(conn, flt, principal)
    )
    return JSONResponse(body, media_type=MEDIA_TYPES["geojson"], headers={"Vary": "Accept"})


def _attachment(extension: str) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{FILENAME}.{extension}"',
        "Vary": "Accept",
    }


def _csv(
    engine: Engine, flt: ReportFilter, principal: Principal, columns: list[str]
) -> StreamingResponse:
    def body() -> Iterator[bytes]:
        # The stream owns its own connection, opened when the first chunk is asked for and
        # closed when the last is sent (or the client goes away), so the server-side cursor
        # lives exactly as long as the download whatever FastAPI does with ConnDep.
        with engine.connect() as stream_conn:
            yield from export.csv_chunks(
                stream_reports(stream_conn, flt, principal), columns=columns
            )

    return StreamingResponse(
        body(), media_type=MEDIA_TYPES["csv"] + "; charset=utf-8", headers=_attachment("csv")
    )


def _geopackage(conn: Connection, flt: ReportFilter, principal: Principal) -> FileResponse:
    # A GeoPackage is SQLite: it cannot be written front to back onto the wire, so it is
    # built in a temporary folder (GDAL may add journal files beside it), batch by batch,
    # sent from there, and the folder is removed once the response is done.
    folder = Path(tempfile.mkdtemp(prefix="issuemap-export-"))
    try:
        path = folder / f"{FILENAME}.gpkg"
        export.write_geopackage(
            stream_reports(conn, flt, principal),
            path,
            columns=export.report_columns(conn, principal),
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path,
        media_type=MEDIA_TYPES["gpkg"],
        filename=path.name,
        headers={"Vary": "Accept"},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
