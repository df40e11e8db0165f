"""Vector tiles of the current wards and zones, for map pages whose layers are too big to inline.

Tiles are public, as the city overview that draws them is. Each answer carries an ETag of
the boundary version it was made from; a tile asked for with that version (``v``, as the
pages ask) may be cached for a day, since a boundary replace changes the version and so
the URL pages ask for; without it, a cache must check back (and gets a 304 unbuilt).
"""

from __future__ import annotations

import gzip
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response

from api.deps import ReadConnDep
from api.errors import error_responses
from geo.i18n import pick_language
from geo.maps.tiles import MAX_ZOOM, MEDIA_TYPE, TILE_LAYERS, boundary_tile, boundary_version

router = APIRouter(tags=["maps"], responses=error_responses(422, 503))

Coordinate = Annotated[int, Path(ge=0, le=2**MAX_ZOOM - 1, description="Tile column or row.")]


@router.get(
    "/tiles/{layer}/{z}/{x}/{y}.pbf",
    response_class=Response,
    summary="Vector tile of the current wards or zones",
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "The tile (empty: no features)."},
        304: {"description": "The tile has not changed since the ETag sent."},
    },
)
def boundary_tile_route(
    layer: Annotated[
        str, Path(pattern="^(" + "|".join(TILE_LAYERS) + ")$", description="wards or zones.")
    ],
    z: Annotated[int, Path(ge=0, le=MAX_ZOOM, description="Zoom level.")],
    x: Coordinate,
    y: Coordinate,
    conn: ReadConnDep,
    lang: Annotated[
        str | None, Query(max_length=8, description="Language of the names, `th` or `en`.")
    ] = None,
    v: Annotated[
        str | None, Query(max_length=64, description="Boundary version the page was made with.")
    ] = None,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
    accept_encoding: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """A Mapbox Vector Tile of the current `layer`, outlines simplified for zoom `z`.

    Each feature has its `code` and `name` (zones also `team`), names in `lang`. The tile is
    empty below the zoom at which the layer can be read.
    """
    language = pick_language(lang, None)
    version = boundary_version(conn, layer)
    # Tiles are protobuf, which gzip shrinks by half or more; each encoding has its own ETag.
    zipped = "gzip" in (accept_encoding or "").lower()
    etag = f'"{layer}-{version}-{language}{"-gz" if zipped else ""}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=86400" if v == version else "public, no-cache",
        "Vary": "Accept-Encoding",
    }
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    tile = boundary_tile(conn, layer, z, x, y, lang=language)
    if zipped and tile:
        tile = gzip.compress(tile, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return Response(tile, media_type=MEDIA_TYPE, headers=headers)
