"""Administration: boundaries, categories, category routes and API keys (admin keys only)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from api.deps import ConnDep, PrincipalDep
from api.errors import error_responses
from api.params import Text
from geo.access.keys import Principal, create_api_key, revoke_api_key
from geo.city.boundaries import ImportSummary, import_boundaries
from geo.errors import (
    AuthenticationError,
    BoundaryImportError,
    BoundaryReplaceRefusedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from geo.settings import BoundarySettings
from geo.vocabulary import ROLES

router = APIRouter(prefix="/api", tags=["admin"], responses=error_responses(422, 503))

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


def require_admin(principal: Principal) -> None:
    """Refuse anyone but an administrator."""
    if principal.key_id is None:
        raise AuthenticationError("This needs an administrator's API key.")
    if principal.role != "admin":
        raise PermissionDeniedError("Only administrators may do this.")


@router.get("/categories", tags=["reports"], summary="Report categories")
def list_categories(conn: ConnDep) -> list[dict[str, Any]]:
    """Every active category, with Thai and English names and its SLA in hours."""
    rows = conn.execute(
        text("SELECT code, name_th, name_en, sla_hours FROM categories WHERE active ORDER BY code")
    ).mappings()
    return [dict(r) for r in rows]


class CategoryIn(BaseModel):
    """A category to create or replace."""

    model_config = ConfigDict(extra="forbid")

    code: Code
    name_th: Text = Field(min_length=1, max_length=200)
    name_en: Text = Field(min_length=1, max_length=200)
    sla_hours: int = Field(default=48, ge=1, le=24 * 365)
    active: bool = True


@router.put(
    "/admin/categories/{code}",
    summary="Create or update a category",
    responses=error_responses(401, 403, 409),
)
def put_category(
    code: Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
    category: CategoryIn,
    conn: ConnDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Create a category, or change its names, SLA or whether it is offered.

    A new SLA applies to reports filed from now on; stored due times do not change.
    """
    require_admin(principal)
    if category.code != code:
        raise ConflictError("The code in the path and in the body differ.")
    row = conn.execute(
        text(
            "INSERT INTO categories (code, name_th, name_en, sla_hours, active) "
            "VALUES (:code, :name_th, :name_en, :sla_hours, :active) "
            "ON CONFLICT (code) DO UPDATE SET name_th = EXCLUDED.name_th, "
            "name_en = EXCLUDED.name_en, sla_hours = EXCLUDED.sla_hours, "
            "active = EXCLUDED.active RETURNING code, name_th, name_en, sla_hours, active"
        ),
        category.model_dump(),
    ).mappings()
    return dict(row.one())


class RouteIn(BaseModel):
    """Send ``category`` to ``team``, everywhere or only inside zone ``zone``."""

    model_config = ConfigDict(extra="forbid")

    category: Code
    team: Code
    zone: Code | None = None


@router.get("/admin/routes", summary="Category routes", responses=error_responses(401, 403))
def list_routes(conn: ConnDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    """Every category route."""
    require_admin(principal)
    rows = conn.execute(
        text(
            "SELECT cr.id, c.code AS category, t.code AS team, cr.zone_code AS zone "
            "FROM category_routes AS cr JOIN categories AS c ON c.id = cr.category_id "
            "JOIN teams AS t ON t.id = cr.team_id ORDER BY c.code, t.code, cr.zone_code"
        )
    ).mappings()
    return [dict(r) for r in rows]


@router.post(
    "/admin/routes",
    status_code=201,
    summary="Add a category route",
    responses=error_responses(401, 403, 404, 409),
)
def add_route(route: RouteIn, conn: ConnDep, principal: PrincipalDep) -> dict[str, Any]:
    """Route a category to a team; new reports use it, stored ones keep their team."""
    require_admin(principal)
    ids = conn.execute(
        text(
            "SELECT (SELECT id FROM categories WHERE code = :category) AS category_id, "
            "(SELECT id FROM teams WHERE code = :team) AS team_id, "
            "(CAST(:zone AS varchar) IS NULL OR EXISTS (SELECT 1 FROM zones WHERE code = :zone "
            "AND retired_at IS NULL)) AS zone_ok"
        ),
        route.model_dump(),
    ).one()
    if ids.category_id is None:
        raise NotFoundError(f"There is no category {route.category!r}.")
    if ids.team_id is None:
        raise NotFoundError(f"There is no team {route.team!r}.")
    if not ids.zone_ok:
        raise NotFoundError(f"There is no current zone {route.zone!r}.")
    new_id = conn.execute(
        text(
            "INSERT INTO category_routes (category_id, team_id, zone_code) "
            "VALUES (:c, :t, :z) ON CONFLICT DO NOTHING RETURNING id"
        ),
        {"c": ids.category_id, "t": ids.team_id, "z": route.zone},
    ).scalar_one_or_none()
    if new_id is None:
        raise ConflictError("That route exists already.")
    return {"id": new_id, **route.model_dump()}


@router.delete(
    "/admin/routes/{route_id}",
    status_code=204,
    summary="Remove a category route",
    responses=error_responses(401, 403, 404),
)
def delete_route(
    route_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], conn: ConnDep, principal: PrincipalDep
) -> None:
    """Stop routing by this rule; stored reports keep their team."""
    require_admin(principal)
    done = conn.execute(
        text("DELETE FROM category_routes WHERE id = :id"), {"id": route_id}
    ).rowcount
    if not done:
        raise NotFoundError(f"There is no category route {route_id}.")


class KeyIn(BaseModel):
    """A new API key."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    role: str = Field(pattern="^(" + "|".join(ROLES) + ")$")
    team: Code | None = None


@router.post(
    "/admin/keys",
    status_code=201,
    summary="Create an API key",
    responses=error_responses(401, 403, 404),
)
def add_key(key: KeyIn, conn: ConnDep, principal: PrincipalDep) -> dict[str, Any]:
    """Create a key; the secret is in this answer only and is stored as a hash."""
    require_admin(principal)
    new = create_api_key(conn, name=key.name, role=key.role, team_code=key.team)
    return {"id": new.id, "key": new.secret, "role": new.role, "team_id": new.team_id}


@router.delete(
    "/admin/keys/{key_id}",
    status_code=204,
    summary="Revoke an API key",
    responses=error_responses(401, 403, 404),
)
def delete_key(
    key_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], conn: ConnDep, principal: PrincipalDep
) -> None:
    """Revoke a key at once."""
    require_admin(principal)
    revoke_api_key(conn, key_id)


_BOUNDARY_SUFFIXES = (".zip", ".geojson", ".json", ".topojson", ".gpkg")
_CHUNK_BYTES = 1024 * 1024
_NAME_MAX_BYTES = 200


@router.post(
    "/admin/boundaries",
    status_code=201,
    summary="Import a ward or zone file",
    responses={
        200: {"description": "Dry run: what the import would do; nothing stored."},
        **error_responses(401, 403, 409),
    },
)
async def import_boundary_file(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="Zipped shapefile, (Topo)GeoJSON or GPKG.")],
    layer: Annotated[str, Form(pattern="^(wards|zones)$")],
    id_field: Annotated[str, Form(min_length=1, max_length=100)],
    name_field: Annotated[str, Form(min_length=1, max_length=100)],
    team_field: Annotated[str | None, Form(max_length=100)] = None,
    crs: Annotated[str | None, Form(max_length=40)] = None,
    force: Annotated[
        bool,
        Form(
            description="Replace the layer even if open reports, or more than the allowed "
            "share of the area covered now, would lie outside it (ask the user first)."
        ),
    ] = False,
    dry_run: Annotated[
        bool, Form(description="Check the file and measure the replace; store nothing.")
    ] = False,
) -> dict[str, Any]:
    """Replace the ward or zone layer with an uploaded file, as `issuemap boundaries import`.

    The file is checked and repaired first; a refused file changes nothing. A replace that
    would leave open reports, or more than `ISSUEMAP_BOUNDARY_MAX_AREA_LOSS` of the area
    covered now, outside the new layer is refused (422, `field` `force`, with the numbers)
    until it is sent again with `force=true`. `dry_run=true` answers 200 with the findings
    and the `effect` and stores nothing. Stored reports keep their ward and zone; re-route
    them explicitly with `issuemap reports reroute`.
    """
    require_admin(principal)
    name = Path(file.filename or "upload").name or "upload"
    suffix = Path(name).suffix.lower()
    if suffix not in _BOUNDARY_SUFFIXES:
        raise InvalidInputError("file", f"must be one of {', '.join(_BOUNDARY_SUFFIXES)}")
    if len(name.encode()) > _NAME_MAX_BYTES or not name.isprintable():
        # The name becomes a file name on our disk and the import's source: keep it usable.
        name = "upload" + suffix
    settings: BoundarySettings = request.app.state.boundaries
    summary = await run_in_threadpool(
        _import_upload,
        request,
        file.file,
        name,
        settings=settings,
        layer=layer,
        id_field=id_field,
        name_field=name_field,
        team_field=team_field or None,
        crs=crs or None,
        force=force,
        dry_run=dry_run,
    )
    if dry_run:
        response.status_code = 200
    return {"import_id": summary.import_id, "layer": layer, **summary.to_json()}


def _copy_upload(source: BinaryIO, target: Path, *, max_bytes: int) -> None:
    """Copy the upload to ``target`` a chunk at a time, refusing it past ``max_bytes``."""
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(_CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                limit = f"{max_bytes:,} bytes"
                if max_bytes >= 2**20:
                    limit += f" ({max_bytes / 2**20:,.0f} MB)"
                raise InvalidInputError("file", f"must be at most {limit}")
            out.write(chunk)


def _import_upload(
    request: Request,
    upload: BinaryIO,
    name: str,
    *,
    settings: BoundarySettings,
    layer: str,
    id_field: str,
    name_field: str,
    team_field: str | None,
    crs: str | None,
    force: bool,
    dry_run: bool,
) -> ImportSummary:
    with tempfile.TemporaryDirectory(prefix="issuemap-upload-") as folder:
        # Keep the uploaded name: the file type is read from its suffix.
        path = Path(folder) / name
        _copy_upload(upload, path, max_bytes=settings.upload_max_bytes)
        try:
            return import_boundaries(
                request.app.state.engine,
                path,
                layer=layer,
                id_field=id_field,
                name_field=name_field,
                team_field=team_field,
                crs=crs,
                settings=settings,
                routing=request.app.state.routing,
                force=force,
                dry_run=dry_run,
            )
        except BoundaryReplaceRefusedError as error:
            raise InvalidInputError(error.parameter, str(error)) from error
        except BoundaryImportError as error:
            if folder in str(error):  # the server's temporary folder is nobody's business
                raise BoundaryImportError(str(error).replace(folder + "/", "")) from error
            raise
