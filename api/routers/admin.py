"""Administration: boundaries, categories, routes, API keys and webhooks (admin keys only).

Every route of ``router`` takes ``AdminDep``; ``catalogue`` holds the public category list.
"""

from __future__ import annotations

from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AppState, AppStateDep, ConnDep, require_admin
from api.errors import error_responses
from api.models import (
    BoundaryImport,
    Category,
    CategoryRoute,
    NewKey,
    NewWebhook,
    StoredCategory,
    Webhook,
)
from api.params import Text
from geo.access.keys import create_api_key, revoke_api_key
from geo.city import catalogue
from geo.city.boundary_stages import saved_upload, upload_name
from geo.city.boundary_writes import ImportSummary, import_boundaries
from geo.errors import (
    BoundaryReplaceRefusedError,
    ConflictError,
    InvalidInputError,
    Message,
)
from geo.i18n import N_
from geo.reports import notifications
from geo.vocabulary import CODE_MAX, NAME_MAX, ROLES, URL_MAX

catalogue_router = APIRouter(prefix="/api", tags=["reports"], responses=error_responses(422, 503))
router = APIRouter(
    prefix="/api",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(401, 403, 422, 503),
)

Code = Annotated[str, Field(min_length=1, max_length=CODE_MAX, pattern=r"^[A-Za-z0-9_.-]+$")]


@catalogue_router.get("/categories", summary="Report categories")
def list_categories(conn: ConnDep) -> list[Category]:
    """Every active category, with Thai and English names and its SLA in hours."""
    return [Category(**row) for row in catalogue.list_categories(conn)]


class CategoryIn(BaseModel):
    """A category to create or replace."""

    model_config = ConfigDict(extra="forbid")

    code: Code
    name_th: Text = Field(min_length=1, max_length=NAME_MAX)
    name_en: Text = Field(min_length=1, max_length=NAME_MAX)
    sla_hours: int = Field(default=48, ge=1, le=24 * 365)
    active: bool = True


@router.put(
    "/admin/categories/{code}",
    summary="Create or update a category",
    responses=error_responses(409),
)
def put_category(
    code: Annotated[
        str, PathParam(min_length=1, max_length=CODE_MAX, pattern=r"^[A-Za-z0-9_.-]+$")
    ],
    category: CategoryIn,
    conn: ConnDep,
) -> StoredCategory:
    """Create a category, or change its names, SLA or whether it is offered.

    A new SLA applies to reports filed from now on; stored due times do not change.
    """
    if category.code != code:
        raise ConflictError(N_("The code in the path and in the body differ."))
    return StoredCategory(**catalogue.put_category(conn, **category.model_dump()))


class RouteIn(BaseModel):
    """Send ``category`` to ``team``, everywhere or only inside zone ``zone``."""

    model_config = ConfigDict(extra="forbid")

    category: Code
    team: Code
    zone: Code | None = None


@router.get("/admin/routes", summary="Category routes")
def list_routes(conn: ConnDep) -> list[CategoryRoute]:
    """Every category route."""
    return [CategoryRoute(**row) for row in catalogue.list_category_routes(conn)]


@router.post(
    "/admin/routes",
    status_code=201,
    summary="Add a category route",
    responses=error_responses(404, 409),
)
def add_route(route: RouteIn, conn: ConnDep) -> CategoryRoute:
    """Route a category to a team; new reports use it, stored ones keep their team."""
    new_id = catalogue.add_category_route(
        conn, category=route.category, team=route.team, zone=route.zone
    )
    return CategoryRoute(id=new_id, **route.model_dump())


@router.delete(
    "/admin/routes/{route_id}",
    status_code=204,
    summary="Remove a category route",
    responses=error_responses(404),
)
def delete_route(route_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], conn: ConnDep) -> None:
    """Stop routing by this rule; stored reports keep their team."""
    catalogue.delete_category_route(conn, route_id)


class KeyIn(BaseModel):
    """A new API key."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=NAME_MAX)
    role: str = Field(pattern="^(" + "|".join(ROLES) + ")$")
    team: Code | None = None


@router.post(
    "/admin/keys",
    status_code=201,
    summary="Create an API key",
    responses=error_responses(404),
)
def add_key(key: KeyIn, conn: ConnDep) -> NewKey:
    """Create a key; the secret is in this answer only and is stored as a hash."""
    new = create_api_key(conn, name=key.name, role=key.role, team_code=key.team)
    return NewKey(id=new.id, key=new.secret, role=new.role, team_id=new.team_id)


@router.delete(
    "/admin/keys/{key_id}",
    status_code=204,
    summary="Revoke an API key",
    responses=error_responses(404),
)
def delete_key(key_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], conn: ConnDep) -> None:
    """Revoke a key at once."""
    revoke_api_key(conn, key_id)


class WebhookIn(BaseModel):
    """An address to call when reports are created, change status or are merged."""

    model_config = ConfigDict(extra="forbid")

    url: Text = Field(
        min_length=1,
        max_length=URL_MAX,
        description="An http:// or https:// address, without a user name or password.",
    )
    events: list[Annotated[str, Field(max_length=CODE_MAX)]] | None = Field(
        default=None,
        max_length=len(notifications.WEBHOOK_EVENTS),
        description="Any of " + ", ".join(notifications.WEBHOOK_EVENTS) + " (default: all).",
    )
    description: Text = Field(default="", max_length=NAME_MAX)


@router.post(
    "/admin/webhooks",
    status_code=201,
    summary="Register a webhook",
)
def add_webhook(webhook: WebhookIn, conn: ConnDep) -> NewWebhook:
    """Register an address for report events; the signing secret is in this answer only.

    Each call is a JSON POST signed with HMAC-SHA256 of its raw body, keyed with the secret,
    in ``X-Issuemap-Signature: sha256=<hex>``; ``X-Issuemap-Event``, ``X-Issuemap-Event-Id``
    and ``X-Issuemap-Timestamp`` say which event, which occurrence (the same on every
    retry) and when it was sent. Failed calls are retried with growing waits. Calls carry
    what the public may see: the location on the public grid, no reporter name or contact,
    no staff notes; reports hidden from the public are not announced.
    """
    new = notifications.create_webhook(
        conn, url=webhook.url, events=webhook.events, description=webhook.description
    )
    return NewWebhook(
        id=new.id,
        url=new.url,
        events=new.events,
        description=new.description,
        created_at=new.created_at,
        secret=new.secret,
    )


@router.get("/admin/webhooks", summary="Registered webhooks")
def list_webhooks(conn: ConnDep) -> list[Webhook]:
    """Every active webhook, with its calls waiting and given up on (never its secret)."""
    return [Webhook(**row) for row in notifications.list_webhooks(conn)]


@router.delete(
    "/admin/webhooks/{webhook_id}",
    status_code=204,
    summary="Revoke a webhook",
    responses=error_responses(404),
)
def delete_webhook(
    webhook_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], conn: ConnDep
) -> None:
    """Stop calling a webhook at once; calls still queued for it are dropped."""
    notifications.revoke_webhook(conn, webhook_id)


@router.post(
    "/admin/boundaries",
    status_code=201,
    summary="Import a ward or zone file",
    responses={
        200: {
            "model": BoundaryImport,
            "description": "Dry run: what the import would do; nothing stored.",
        },
        **error_responses(409),
    },
)
async def import_boundary_file(
    response: Response,
    state: AppStateDep,
    file: Annotated[UploadFile, File(description="Zipped shapefile, (Topo)GeoJSON or GPKG.")],
    layer: Annotated[str, Form(pattern="^(wards|zones)$")],
    id_field: Annotated[str, Form(min_length=1, max_length=100)],
    name_field: Annotated[str, Form(min_length=1, max_length=100)],
    team_field: Annotated[str | None, Form(max_length=100)] = None,
    name_th_field: Annotated[
        str | None, Form(max_length=100, description="Attribute holding the Thai names.")
    ] = None,
    name_en_field: Annotated[
        str | None, Form(max_length=100, description="Attribute holding the English names.")
    ] = None,
    crs: Annotated[str | None, Form(max_length=40)] = None,
    encoding: Annotated[
        str | None,
        Form(
            max_length=40,
            description="Shapefiles only: the text encoding (e.g. cp874), overriding the .cpg; "
            "without a .cpg the text is read as UTF-8 when valid, else as cp874 (TIS-620).",
        ),
    ] = None,
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
) -> BoundaryImport:
    """Replace the ward or zone layer with an uploaded file, as `issuemap boundaries import`.

    The file is checked and repaired first; a refused file changes nothing. A replace that
    would leave open reports, or more than `ISSUEMAP_BOUNDARY_MAX_AREA_LOSS` of the area
    covered now, outside the new layer is refused (422, `field` `force`, with the numbers)
    until it is sent again with `force=true`. `dry_run=true` answers 200 with the findings
    and the `effect` and stores nothing. Stored reports keep their ward and zone; re-route
    them explicitly with `issuemap reports reroute`.
    """
    name = upload_name(file.filename)
    summary = await run_in_threadpool(
        _import_upload,
        state,
        file.file,
        name,
        layer=layer,
        id_field=id_field,
        name_field=name_field,
        team_field=team_field or None,
        name_th_field=name_th_field or None,
        name_en_field=name_en_field or None,
        crs=crs or None,
        encoding=encoding or None,
        force=force,
        dry_run=dry_run,
    )
    if dry_run:
        response.status_code = 200
    return BoundaryImport.model_validate(
        {"import_id": summary.import_id, "layer": layer, **summary.to_json()}
    )


def _import_upload(
    state: AppState,
    upload: BinaryIO,
    name: str,
    *,
    layer: str,
    id_field: str,
    name_field: str,
    team_field: str | None,
    name_th_field: str | None,
    name_en_field: str | None,
    crs: str | None,
    encoding: str | None,
    force: bool,
    dry_run: bool,
) -> ImportSummary:
    with saved_upload(upload, name, max_bytes=state.boundaries.upload_max_bytes) as path:
        try:
            return import_boundaries(
                state.engine,
                path,
                layer=layer,
                id_field=id_field,
                name_field=name_field,
                team_field=team_field,
                name_th_field=name_th_field,
                name_en_field=name_en_field,
                crs=crs,
                encoding=encoding,
                settings=state.boundaries,
                routing=state.routing,
                force=force,
                dry_run=dry_run,
            )
        except BoundaryReplaceRefusedError as error:
            raise InvalidInputError(error.parameter, Message(error.msgid, error.values)) from error
