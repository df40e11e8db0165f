"""Admin pages for boundary files and what a replace leaves behind.

``BoundariesView`` (``/admin/boundaries``): the upload form; a file sent with it is
checked and its replace measured (a dry run), and the check report (repairs, overlaps,
gaps, CRS, the effect on open reports) is shown with a confirm button. Nothing changes
until the confirm, which replaces the layer with exactly the file that was checked
(``geo.city.boundary_stages``).

``AttentionView`` (``/admin/attention``): teams left with no zone, routes to retired
zones and open reports whose ward or zone is retired (``geo.city.attention``), and the
re-route's preview, from which team to which, with the one button that does it.

Everything shown that came from a file or the database is data in an autoescaped
template, never template source. Both pages speak the admin's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqladmin import BaseView, expose
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.admin_ui.auth import ADMIN_PATH, current, label, main_state
from api.deps import AppState
from geo.city.attention import Attention, needs_attention
from geo.city.boundary_stages import (
    BoundaryOptions,
    StagedCheck,
    confirm_staged,
    saved_upload,
    stage_boundary_file,
    too_large,
    upload_name,
)
from geo.city.boundary_writes import ImportSummary, replace_problem_message
from geo.errors import (
    BoundaryImportError,
    ConflictError,
    InvalidInputError,
    IssuemapError,
    NotFoundError,
)
from geo.i18n import N_, translate
from geo.maps.i18n import status_labels
from geo.reports.store import RerouteResult, reroute_as_previewed, reroute_preview

LISTED = 100
"""Overlaps, gaps and repaired features listed on a check report; the rest are counted."""

_FORM_BYTES = 64 * 1024  # the form's other fields, beside the file

WORDS: Mapping[str, str] = {
    "boundaries": N_("Boundaries"),
    "upload_title": N_("Upload ward or zone boundaries"),
    "upload_help": N_(
        "The file is checked first and nothing changes until you confirm the replace."
    ),
    "layer": N_("Layer"),
    "wards": N_("Wards"),
    "zones": N_("Zones"),
    "file": N_("File (zipped shapefile, GeoJSON, TopoJSON or GeoPackage)"),
    "id_field": N_("Attribute holding each feature's code"),
    "name_field": N_("Attribute holding each feature's name"),
    "team_field": N_("Zones: attribute naming each zone's team (optional)"),
    "name_th_field": N_("Attribute holding the Thai names (optional)"),
    "name_en_field": N_("Attribute holding the English names (optional)"),
    "crs": N_("CRS, when the file declares none (e.g. EPSG:32647)"),
    "encoding": N_("Shapefiles: text encoding, if not UTF-8 or the .cpg (e.g. cp874; optional)"),
    "check": N_("Check the file"),
    "refused": N_("The file was refused; nothing was changed."),
    "report_title": N_("Check report"),
    "nothing_yet": N_("Nothing has been changed yet."),
    "source": N_("File"),
    "sha256": N_("SHA-256"),
    "features": N_("Features"),
    "source_crs": N_("CRS of the file"),
    "metric_crs": N_("CRS used for areas"),
    "repairs": N_("Repaired features"),
    "overlaps": N_("Overlaps"),
    "gaps": N_("Gaps"),
    "none": N_("None."),
    "more": N_("and {count:,} more"),
    "ids": N_("Features"),
    "area_m2": N_("Area (m²)"),
    "where": N_("Point inside (lon, lat)"),
    "teams_created": N_("Teams that will be created"),
    "effect": N_("Effect of the replace"),
    "current_count": N_("Current features"),
    "covered_km2": N_("Area covered now (km²)"),
    "new_covered_km2": N_("Area the new file covers (km²)"),
    "lost_km2": N_("Area no longer covered (km²)"),
    "open_reports": N_("Open reports"),
    "outside": N_("Open reports that would lie outside"),
    "ward_changed": N_("Open reports whose ward would change"),
    "zone_changed": N_("Open reports whose zone would change"),
    "team_changed": N_("Open reports whose team would change"),
    "force": N_("I have checked these numbers: replace anyway."),
    "confirm": N_("Replace the boundaries with this file"),
    "cancel": N_("Upload another file"),
    "confirm_refused": N_("The replace was refused; nothing was changed."),
    "attention": N_("Needs attention"),
    "attention_title": N_("What needs attention after a boundary replace"),
    "replaced": N_("Boundaries replaced: import {id}."),
    "bare_teams": N_("Teams left with no zone"),
    "team": N_("Team"),
    "code": N_("Code"),
    "stranded_routes": N_("Category routes to retired zones"),
    "category": N_("Category"),
    "zone": N_("Zone"),
    "ward": N_("Ward"),
    "stranded_reports": N_("Open reports whose ward or zone is retired"),
    "showing": N_("Showing {shown:,} of {total:,}."),
    "report": N_("Report"),
    "status": N_("Status"),
    "created": N_("Filed"),
    "retired": N_("retired"),
    "reroute": N_("Re-route"),
    "preview": N_("Re-routing would move these open reports:"),
    "from_to": N_("From → to"),
    "reports": N_("Reports"),
    "no_team": N_("no team"),
    "same_team": N_("same team, new ward or zone"),
    "reroute_none": N_("Every open report is routed by the current boundaries."),
    "outside_kept": N_("{count:,} open reports lie outside every ward and keep their assignment."),
    "reroute_button": N_("Re-route {count:,} reports"),
    "rerouted": N_("Re-routed {count:,} reports."),
    "all_clear": N_("Nothing needs attention."),
}
"""The pages' own words, translated per request (``words``)."""

NEEDS_ACCOUNT = N_("Sign in with your own account to replace boundaries.")


def words(lang: str) -> dict[str, str]:
    """``WORDS`` in ``lang``; those with placeholders are filled in the template."""
    return {key: translate(lang, message) for key, message in WORDS.items()}


async def _render(
    view: BaseView,
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> Response:
    admin = current()
    shown = words(admin.lang)
    return await view.templates.TemplateResponse(
        request,
        template,
        {
            "w": shown,
            "lang": admin.lang,
            "csrf_token": admin.csrf_token,
            "title": shown[context.pop("title_key")],
            "subtitle": "",
            **context,
        },
        status_code=status_code,
    )


def _listed(items: tuple[Any, ...]) -> dict[str, Any]:
    return {"shown": items[:LISTED], "more": max(0, len(items) - LISTED)}


def check_report(summary: ImportSummary, *, lang: str, max_area_loss: float) -> dict[str, Any]:
    """What the check report shows of a dry run's summary."""
    problem = replace_problem_message(
        summary.effect, layer=summary.layer, max_area_loss=max_area_loss
    )
    return {
        "summary": summary,
        "effect": summary.effect,
        "repairs": _listed(summary.repaired_ids),
        "overlaps": _listed(summary.overlaps),
        "gaps": _listed(summary.gaps),
        "overlap_m2": sum(o.area_m2 for o in summary.overlaps),
        "gap_m2": sum(g.area_m2 for g in summary.gaps),
        "problem": None if problem is None else problem.text(lang),
    }


def _form_values(form: Mapping[str, Any]) -> dict[str, str]:
    """What was typed, to fill the form again; a value with control characters is not."""
    return {
        name: value
        for name in BoundaryOptions.__slots__
        if isinstance(value := form.get(name), str) and value.isprintable()
    }


def _error_text(error: IssuemapError, lang: str) -> tuple[str | None, list[str]]:
    """The field an error names (if any) and its lines, in ``lang``."""
    field = error.field if isinstance(error, InvalidInputError) else None
    return field, error.message(lang).splitlines()


def _check_upload(
    state: AppState, user_id: int, upload: UploadFile, options: BoundaryOptions
) -> StagedCheck:
    with saved_upload(
        upload.file, upload_name(upload.filename), max_bytes=state.boundaries.upload_max_bytes
    ) as path:
        return stage_boundary_file(
            state.engine,
            path,
            options,
            user_id=user_id,
            settings=state.boundaries,
            routing=state.routing,
        )


class BoundariesView(BaseView):
    """Upload a ward or zone file, read its check report, confirm the replace."""

    name = label(WORDS["boundaries"])
    icon = "fa-solid fa-draw-polygon"

    @expose("/boundaries", methods=["GET", "POST"], identity="boundaries")
    async def boundaries(self, request: Request) -> Response:
        """GET: the form. POST ``step=check``: the check report. POST ``step=confirm``: replace."""
        if request.method == "GET":
            return await self._form(request, {}, None)
        state, admin = main_state(request), current()
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > state.boundaries.upload_max_bytes + _FORM_BYTES:
            # Refused before the body is read: a file past the limit never reaches the disk.
            refused = too_large(state.boundaries.upload_max_bytes)
            return await self._form(request, {}, refused, status_code=413)
        async with request.form(max_files=1, max_fields=20) as form:
            step = form.get("step")
            if admin.principal.user_id is None:
                error = IssuemapError(NEEDS_ACCOUNT)
                return await self._form(request, _form_values(form), error, status_code=403)
            if step == "confirm":
                return await self._confirm(request, state, admin.principal.user_id, form)
            return await self._check(request, state, admin.principal.user_id, form)

    async def _form(
        self,
        request: Request,
        values: dict[str, str],
        error: IssuemapError | None,
        *,
        status_code: int = 200,
    ) -> Response:
        field, lines = (None, []) if error is None else _error_text(error, current().lang)
        return await _render(
            self,
            request,
            "boundaries.html",
            {
                "title_key": "upload_title",
                "values": values,
                "error_field": field,
                "error_lines": lines,
            },
            status_code=status_code,
        )

    async def _check(
        self, request: Request, state: AppState, user_id: int, form: Mapping[str, Any]
    ) -> Response:
        values = _form_values(form)
        upload = form.get("file")
        try:
            options = BoundaryOptions.from_form(form)
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise InvalidInputError("file", N_("must not be empty"))
            staged = await run_in_threadpool(_check_upload, state, user_id, upload, options)
        except (InvalidInputError, BoundaryImportError) as error:
            return await self._form(request, values, error, status_code=422)
        lang = current().lang
        return await _render(
            self,
            request,
            "boundaries_check.html",
            {
                "title_key": "report_title",
                "staged": staged,
                **check_report(
                    staged.summary, lang=lang, max_area_loss=state.boundaries.max_area_loss
                ),
            },
        )

    async def _confirm(
        self, request: Request, state: AppState, user_id: int, form: Mapping[str, Any]
    ) -> Response:
        token, sha256 = form.get("token"), form.get("sha256")
        try:
            if not isinstance(token, str) or not isinstance(sha256, str):
                raise NotFoundError(N_("Upload the file again."))
            done = await run_in_threadpool(
                lambda: confirm_staged(
                    state.engine,
                    token,
                    sha256=sha256,
                    user_id=user_id,
                    force=form.get("force") == "yes",
                    settings=state.boundaries,
                    routing=state.routing,
                )
            )
        except (NotFoundError, ConflictError, BoundaryImportError) as error:
            status = 404 if isinstance(error, NotFoundError) else 409
            return await _render(
                self,
                request,
                "boundaries_refused.html",
                {
                    "title_key": "confirm_refused",
                    "error_lines": error.message(current().lang).splitlines(),
                },
                status_code=422 if isinstance(error, BoundaryImportError) else status,
            )
        answer = RedirectResponse(
            f"{ADMIN_PATH}/attention?replaced={done.import_id}", status_code=303
        )
        answer.headers["Cache-Control"] = "no-store"
        return answer


def _preview(state: AppState) -> tuple[Attention, RerouteResult]:
    with state.engine.connect() as conn:
        found = needs_attention(conn)
    return found, reroute_preview(state.engine, settings=state.routing)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and len(value) < 10 else None


class AttentionView(BaseView):
    """What a boundary replace left needing attention, and the re-route that settles it."""

    name = label(WORDS["attention"])
    icon = "fa-solid fa-triangle-exclamation"

    @expose("/attention", methods=["GET", "POST"], identity="attention")
    async def attention(self, request: Request) -> Response:
        """GET: the lists and the re-route preview. POST: re-route, as previewed."""
        state, admin = main_state(request), current()
        error_lines: list[str] = []
        if request.method == "POST":
            async with request.form(max_files=0, max_fields=5) as form:
                digest = form.get("preview")
            try:
                done = await run_in_threadpool(
                    lambda: reroute_as_previewed(
                        state.engine,
                        settings=state.routing,
                        actor=admin.principal.actor,
                        digest=digest if isinstance(digest, str) else "",
                    )
                )
            except ConflictError as error:
                error_lines = [error.message(admin.lang)]
            else:
                answer = RedirectResponse(
                    f"{ADMIN_PATH}/attention?rerouted={done.changed}", status_code=303
                )
                answer.headers["Cache-Control"] = "no-store"
                return answer
        found, preview = await run_in_threadpool(_preview, state)
        return await _render(
            self,
            request,
            "attention.html",
            {
                "title_key": "attention_title",
                "found": found,
                "preview": preview,
                "digest": preview.digest,
                "statuses": status_labels(admin.lang),
                "replaced": _int(request.query_params.get("replaced")),
                "rerouted": _int(request.query_params.get("rerouted")),
                "error_lines": error_lines,
            },
            status_code=409 if error_lines else 200,
        )
