"""Uploaded boundary files: saved privately, checked, and kept until someone confirms them.

An upload is copied into a private temporary folder (``saved_upload``), refused past the
size limit, and errors raised while it is read name the file only, never the folder.

The admin pages check a file first and replace the layer only when the admin confirms
(``stage_boundary_file`` then ``confirm_staged``). Between the two the file waits in the
database (``boundary_stages``, its bytes in ``boundary_stage_parts``), so any web worker
can take the confirm. The confirm form carries a random token (only its SHA-256 is
stored) and the file's SHA-256: the confirm replaces exactly the file that was checked,
only for the admin who checked it, before the stage expires, and only while the layer is
still the one the check was measured against.
"""

from __future__ import annotations

import hmac
import json
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Engine, text

from geo.access.keys import hash_secret
from geo.city.boundary_files import file_sha256
from geo.city.boundary_writes import ImportSummary, import_boundaries, latest_import
from geo.errors import BoundaryImportError, ConflictError, InvalidInputError, Message, NotFoundError
from geo.i18n import N_
from geo.settings import BoundarySettings, RoutingSettings
from geo.vocabulary import BOUNDARY_LAYERS

UPLOAD_SUFFIXES = (".zip", ".geojson", ".json", ".topojson", ".gpkg")
"""File types an upload may have: zipped shapefile, (Topo)GeoJSON, GeoPackage."""

STAGE_LIFETIME = timedelta(hours=1)
"""How long a checked file waits for its confirm."""

FIELD_MAX = 100
"""Longest attribute name (or CRS) an upload's options may give."""

_CHUNK_BYTES = 1024 * 1024
_PART_BYTES = 8 * 1024 * 1024  # a stored part; no row holds a whole large file
_NAME_MAX_BYTES = 200


@dataclass(frozen=True, slots=True)
class BoundaryOptions:
    """How to read an uploaded boundary file: the arguments of ``import_boundaries``."""

    layer: str
    id_field: str
    name_field: str
    team_field: str | None = None
    name_th_field: str | None = None
    name_en_field: str | None = None
    crs: str | None = None
    encoding: str | None = None

    def __post_init__(self) -> None:
        if self.layer not in BOUNDARY_LAYERS:
            raise InvalidInputError(
                "layer", N_("must be one of {choices}"), choices=", ".join(BOUNDARY_LAYERS)
            )
        for name, value in asdict(self).items():
            if value is None:
                continue
            if not value.strip() and name in ("id_field", "name_field"):
                raise InvalidInputError(name, N_("must not be empty"))
            if len(value) > FIELD_MAX:
                raise InvalidInputError(
                    name, N_("must be at most {limit:,} characters"), limit=FIELD_MAX
                )
            if not value.isprintable():
                raise InvalidInputError(name, N_("must not contain control characters"))

    @classmethod
    def from_form(cls, form: Mapping[str, object]) -> BoundaryOptions:
        """The options from a form's text fields; blank optional fields are absent."""
        values = {name: _form_text(form.get(name)) for name in cls.__slots__}
        return cls(
            layer=values["layer"],
            id_field=values["id_field"],
            name_field=values["name_field"],
            team_field=values["team_field"] or None,
            name_th_field=values["name_th_field"] or None,
            name_en_field=values["name_en_field"] or None,
            crs=values["crs"] or None,
            encoding=values["encoding"] or None,
        )


def _form_text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def upload_name(filename: str | None) -> str:
    """The name to save an upload under: its own if usable, with a suffix we can read.

    The suffix decides how the file is read, so it must be one of ``UPLOAD_SUFFIXES``.
    A name that is too long or holds control characters becomes ``upload.<suffix>``.
    """
    name = Path(filename or "upload").name or "upload"
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise InvalidInputError(
            "file", N_("must be one of {choices}"), choices=", ".join(UPLOAD_SUFFIXES)
        )
    if len(name.encode()) > _NAME_MAX_BYTES or not name.isprintable():
        # The name becomes a file name on our disk and the import's source: keep it usable.
        name = "upload" + suffix
    return name


def too_large(max_bytes: int) -> InvalidInputError:
    """The refusal of an upload larger than ``max_bytes``, naming the ``file`` field."""
    return InvalidInputError(
        "file",
        N_("must be at most {limit:,} bytes ({megabytes:,.0f} MB)")
        if max_bytes >= 2**20
        else N_("must be at most {limit:,} bytes"),
        limit=max_bytes,
        megabytes=max_bytes / 2**20,
    )


def _copy_upload(source: BinaryIO, target: Path, *, max_bytes: int) -> None:
    """Copy the upload to ``target`` a chunk at a time, refusing it past ``max_bytes``."""
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(_CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise too_large(max_bytes)
            out.write(chunk)
    if written == 0:
        raise InvalidInputError("file", N_("must not be empty"))


@contextmanager
def saved_upload(source: BinaryIO, name: str, *, max_bytes: int) -> Iterator[Path]:
    """The upload saved as ``name`` in a private temporary folder, removed afterwards.

    A ``BoundaryImportError`` raised inside the block is raised again without the folder
    in its text: the server's temporary folder is nobody's business.
    """
    with tempfile.TemporaryDirectory(prefix="issuemap-upload-") as folder:
        # Keep the uploaded name: the file type is read from its suffix.
        path = Path(folder) / name
        _copy_upload(source, path, max_bytes=max_bytes)
        try:
            yield path
        except BoundaryImportError as error:
            if folder not in str(error):
                raise
            values = {
                k: v.replace(folder + "/", "") if isinstance(v, str) else v
                for k, v in error.values.items()
            }
            raise type(error)(
                Message(error.msgid.replace(folder + "/", ""), values), error.problems
            ) from error


@dataclass(frozen=True, slots=True)
class StagedCheck:
    """A checked file waiting for its confirm: the token and SHA-256 the confirm must send."""

    token: str
    sha256: str
    expires_at: datetime
    summary: ImportSummary


def stage_boundary_file(
    engine: Engine,
    path: Path,
    options: BoundaryOptions,
    *,
    user_id: int,
    settings: BoundarySettings,
    routing: RoutingSettings,
) -> StagedCheck:
    """Check ``path`` and measure its replace (a dry run), then keep it for the confirm.

    A refused file raises ``BoundaryImportError`` and nothing is kept. Stages past their
    expiry are removed here, so they never pile up.
    """
    with engine.connect() as conn:
        # Read before the check: an import between the two makes the stage stale, never
        # lets a check measured against older boundaries through.
        based_on = latest_import(conn, options.layer)
    summary = import_boundaries(
        engine, path, **asdict(options), settings=settings, routing=routing, dry_run=True
    )
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM boundary_stages WHERE expires_at <= now()"))
        stage = conn.execute(
            text(
                "INSERT INTO boundary_stages (token_hash, user_id, layer, source, options, "
                "sha256, size_bytes, based_on, expires_at) VALUES (:token_hash, :user_id, "
                ":layer, :source, CAST(:options AS jsonb), :sha256, :size, :based_on, "
                "now() + :lifetime) RETURNING id, expires_at"
            ),
            {
                "token_hash": hash_secret(token),
                "user_id": user_id,
                "layer": options.layer,
                "source": path.name,
                "options": _options_json(options),
                "sha256": summary.sha256,
                "size": path.stat().st_size,
                "based_on": based_on,
                "lifetime": STAGE_LIFETIME,
            },
        ).one()
        with path.open("rb") as handle:
            for seq, data in enumerate(iter(lambda: handle.read(_PART_BYTES), b"")):
                conn.execute(
                    text(
                        "INSERT INTO boundary_stage_parts (stage_id, seq, data) "
                        "VALUES (:id, :seq, :data)"
                    ),
                    {"id": stage.id, "seq": seq, "data": data},
                )
    return StagedCheck(
        token=token, sha256=summary.sha256, expires_at=stage.expires_at, summary=summary
    )


def _options_json(options: BoundaryOptions) -> str:
    return json.dumps(asdict(options), ensure_ascii=False)


_GONE = N_("This check is unknown or has expired; nothing was changed. Upload the file again.")


def confirm_staged(
    engine: Engine,
    token: str,
    *,
    sha256: str,
    user_id: int,
    force: bool,
    settings: BoundarySettings,
    routing: RoutingSettings,
) -> ImportSummary:
    """Replace the layer with the staged file that ``token`` names, as it was checked.

    Refused, changing nothing: an unknown or expired token, or one another admin checked
    (``NotFoundError``); a ``sha256`` that is not the checked file's (``ConflictError``);
    a layer another import replaced since the check (``ConflictError``, from
    ``write_boundaries``); a replace needing ``force`` without it
    (``BoundaryReplaceRefusedError``). The stage is removed once the replace is stored.
    """
    with tempfile.TemporaryDirectory(prefix="issuemap-stage-") as folder:
        with engine.connect() as conn:
            stage = conn.execute(
                text(
                    "SELECT id, source, options, sha256, based_on FROM boundary_stages "
                    "WHERE token_hash = :hash AND user_id = :user_id AND expires_at > now()"
                ),
                {"hash": hash_secret(token), "user_id": user_id},
            ).one_or_none()
            if stage is None:
                raise NotFoundError(_GONE)
            if not hmac.compare_digest(stage.sha256.encode(), sha256.encode("utf-8", "replace")):
                raise ConflictError(
                    N_(
                        "The file to confirm is not the file that was checked; nothing was "
                        "changed. Upload the file again."
                    )
                )
            path = Path(folder) / stage.source
            with path.open("wb") as out:
                parts = conn.execute(
                    text(
                        "SELECT data FROM boundary_stage_parts WHERE stage_id = :id ORDER BY seq"
                    ).execution_options(yield_per=1),
                    {"id": stage.id},
                )
                for (data,) in parts:
                    out.write(data)
        # The connection is back in the pool before the import takes its own.
        if file_sha256(path) != stage.sha256:  # the stored parts are not what was checked
            raise ConflictError(_GONE)
        summary = import_boundaries(
            engine,
            path,
            **asdict(BoundaryOptions(**stage.options)),
            settings=settings,
            routing=routing,
            force=force,
            based_on=stage.based_on,
        )
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM boundary_stages WHERE id = :id"), {"id": stage.id})
    return summary
