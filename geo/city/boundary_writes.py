"""Boundary writes: make a checked file a layer's boundaries, in one transaction.

``write_boundaries`` retires the layer's current rows and inserts the new ones, with a
``boundary_imports`` row describing the file. In that transaction it measures the replace's
``ReplaceEffect`` (area no longer covered, open reports that would fall outside or change
ward, zone or team) and refuses a replace that would leave open reports, or more than
``BoundarySettings.max_area_loss`` of the covered area, outside the new layer, unless forced;
a dry run measures and writes nothing. ``import_boundaries`` reads, checks and writes a file.
Every check runs before anything is committed, so a refused file changes nothing. Old rows
are retired, never deleted, and stored reports keep the ward and zone they were routed to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import Connection, Engine, text

from geo.city.boundary_files import (
    DEFAULT_TOLERANCE_M2,
    CheckedBoundaries,
    Gap,
    JsonValue,
    Overlap,
    check_boundaries,
)
from geo.city.routing import _ROUTE_SELECT
from geo.db.engine import analyze_routing_tables
from geo.errors import BoundaryImportError, BoundaryReplaceRefusedError, ConflictError, Message
from geo.i18n import N_
from geo.settings import BoundarySettings, RoutingSettings
from geo.vocabulary import BOUNDARY_LAYERS, OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class ReplaceEffect:
    """What making a file the layer's boundaries does to the city, measured before commit.

    Areas are geodesic, in km². The report counts are over stored reports still being
    worked (``OPEN_STATUSES``), each routed against the current and against the new
    boundaries with the routing rules of ``geo.city.routing``: ``outside`` lay inside the current
    layer (for wards: within the snapping distance, as intake accepts) and would lie outside
    the new one; ``ward_changed``, ``zone_changed`` and ``team_changed`` (by code) are what
    ``issuemap reports reroute`` would then change.
    """

    current_count: int
    covered_km2: float
    new_covered_km2: float
    lost_km2: float
    open_reports: int
    outside: int
    ward_changed: int
    zone_changed: int
    team_changed: int

    @property
    def lost_share(self) -> float:
        """Share of the area covered now that the new layer leaves uncovered (0 to 1)."""
        return self.lost_km2 / self.covered_km2 if self.covered_km2 > 0 else 0.0

    def to_json(self) -> dict[str, JsonValue]:
        """The effect as stored in ``boundary_imports.summary`` and sent by the API."""
        return {
            "current_count": self.current_count,
            "covered_km2": round(self.covered_km2, 4),
            "new_covered_km2": round(self.new_covered_km2, 4),
            "lost_km2": round(self.lost_km2, 4),
            "lost_share": round(self.lost_share, 4),
            "open_reports": self.open_reports,
            "outside": self.outside,
            "ward_changed": self.ward_changed,
            "zone_changed": self.zone_changed,
            "team_changed": self.team_changed,
        }


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import stored (or, on a dry run, would store) and what it found.

    Also kept as JSON on the import. ``import_id`` is None on a dry run. ``needs_force``
    says why the replace needed confirmation (None when it did not); an import that needed
    it and was stored was forced.
    """

    import_id: int | None
    layer: str
    source: str
    sha256: str
    source_crs: str
    feature_count: int
    repaired_ids: tuple[str, ...]
    retired_count: int
    teams_created: tuple[str, ...]
    overlaps: tuple[Overlap, ...]
    gaps: tuple[Gap, ...]
    tolerance_m2: float
    metric_crs: str
    effect: ReplaceEffect
    needs_force: str | None
    dry_run: bool

    @property
    def repaired_count(self) -> int:
        """How many features were invalid as read and were repaired."""
        return len(self.repaired_ids)

    def to_json(self) -> dict[str, JsonValue]:
        """The findings as stored in ``boundary_imports.summary``."""
        return {
            "source_crs": self.source_crs,
            "metric_crs": self.metric_crs,
            "tolerance_m2": self.tolerance_m2,
            "repaired_ids": list(self.repaired_ids),
            "retired_count": self.retired_count,
            "teams_created": list(self.teams_created),
            "overlap_count": len(self.overlaps),
            "overlap_total_m2": round(sum(o.area_m2 for o in self.overlaps), 2),
            "overlaps": [
                {"ids": list(o.ids), "area_m2": round(o.area_m2, 2)} for o in self.overlaps
            ],
            "gap_count": len(self.gaps),
            "gap_total_m2": round(sum(g.area_m2 for g in self.gaps), 2),
            "gaps": [
                {
                    "ids": list(g.ids),
                    "area_m2": round(g.area_m2, 2),
                    "lon": round(g.lon, 7),
                    "lat": round(g.lat, 7),
                }
                for g in self.gaps
            ],
            "effect": self.effect.to_json(),
            "needs_force": self.needs_force,
            "forced": self.needs_force is not None and not self.dry_run,
            "dry_run": self.dry_run,
        }


# --------------------------------------------------------------------------- reading


_RETIRE = {
    "wards": "UPDATE wards SET retired_at = now() WHERE retired_at IS NULL RETURNING id",
    "zones": "UPDATE zones SET retired_at = now() WHERE retired_at IS NULL RETURNING id",
}
_INSERT_IMPORT = """
INSERT INTO boundary_imports (layer, source, sha256, feature_count, repaired_count, summary)
VALUES (:layer, :source, :sha256, :feature_count, :repaired_count, CAST(:summary AS jsonb))
RETURNING id
"""
_FEATURES = """
unnest(CAST(:codes AS text[]), CAST(:names AS text[]), CAST(:names_th AS text[]),
       CAST(:names_en AS text[]), CAST(:teams AS text[]), CAST(:properties AS text[]),
       CAST(:wkbs AS bytea[]))
    WITH ORDINALITY AS f(code, name, name_th, name_en, team_code, properties, wkb, n)
"""
_INSERT_FEATURES = {
    "wards": f"""
        INSERT INTO wards (code, name, name_th, name_en, properties, import_id, geom)
        SELECT f.code, f.name, f.name_th, f.name_en, CAST(f.properties AS jsonb), :import_id,
               ST_Multi(ST_GeomFromWKB(f.wkb, 4326))
        FROM {_FEATURES}
        ORDER BY f.n
    """,
    "zones": f"""
        INSERT INTO zones (code, name, name_th, name_en, team_id, properties, import_id, geom)
        SELECT f.code, f.name, f.name_th, f.name_en, t.id, CAST(f.properties AS jsonb),
               :import_id,
               ST_Multi(ST_GeomFromWKB(f.wkb, 4326))
        FROM {_FEATURES}
        JOIN teams AS t ON t.code = f.team_code
        ORDER BY f.n
    """,
}
_CREATE_TEAMS = """
INSERT INTO teams (code, name, name_th, name_en)
SELECT DISTINCT ON (t.code) t.code, t.name, t.name_th, t.name_en
FROM unnest(CAST(:codes AS text[]), CAST(:names AS text[]), CAST(:names_th AS text[]),
            CAST(:names_en AS text[])) WITH ORDINALITY AS t(code, name, name_th, name_en, n)
ORDER BY t.code, t.n
ON CONFLICT (code) DO NOTHING
RETURNING code
"""


def _optional_texts(features: gpd.GeoDataFrame, column: str) -> list[str | None]:
    """A column of optional names as text, None where missing (or no such column)."""
    if column not in features:
        return [None] * len(features)
    return [None if v is None or v != v else str(v) for v in features[column]]


def _create_teams(conn: Connection, checked: CheckedBoundaries) -> tuple[str, ...]:
    """Create the zones' teams that do not exist yet; return their codes."""
    features = checked.features
    codes = [str(c) for c in features["team_code"]]
    # A team named in a team field is called by that value; otherwise it is the zone's team,
    # with the zone's names in each language.
    names_th: list[str | None] = [None] * len(codes)
    names_en: list[str | None] = [None] * len(codes)
    if checked.teams_from_field:
        names = codes
    else:
        names = [str(n) for n in features["name"]]
        names_th, names_en = (
            _optional_texts(features, "name_th"),
            _optional_texts(features, "name_en"),
        )
    created = conn.execute(
        text(_CREATE_TEAMS),
        {"codes": codes, "names": names, "names_th": names_th, "names_en": names_en},
    ).scalars()
    return tuple(sorted(created))


# Each open report routed against the layers as they stand in the transaction: its ward and
# zone codes, its team, and whether it lies inside the layer being replaced. For wards that
# is what intake accepts (covered, or within the snapping distance); a point outside every
# zone is still served, so for zones it is plain coverage.
_IN_LAYER = {
    "wards": "x.ward_id IS NOT NULL",
    "zones": "EXISTS (SELECT FROM zones AS c WHERE c.retired_at IS NULL "
    "AND ST_Covers(c.geom, r.geom))",
}
_ROUTED_OPEN = """
SELECT x.idx, w.code AS ward_code, z.code AS zone_code, x.team_id, {in_layer} AS in_layer
FROM ({route}) AS x
JOIN reports AS r ON r.id = x.idx
LEFT JOIN wards AS w ON w.id = x.ward_id
LEFT JOIN zones AS z ON z.id = x.zone_id
"""
_OPEN_REPORTS = (
    "(SELECT id AS idx, geom, category_id, created_at FROM reports "
    "WHERE status = ANY(CAST(:statuses AS text[])))"
)


def _routed_open(layer: str) -> str:
    return _ROUTED_OPEN.format(
        in_layer=_IN_LAYER[layer], route=_ROUTE_SELECT.format(source=_OPEN_REPORTS)
    )


_BEFORE_TABLE = "boundary_replace_before"
_EFFECT = """
WITH after AS ({routed})
SELECT count(*) AS open_reports,
       count(*) FILTER (WHERE b.in_layer AND NOT a.in_layer) AS outside,
       count(*) FILTER (WHERE a.ward_code IS NOT NULL
                          AND a.ward_code IS DISTINCT FROM b.ward_code) AS ward_changed,
       count(*) FILTER (WHERE a.ward_code IS NOT NULL
                          AND a.zone_code IS DISTINCT FROM b.zone_code) AS zone_changed,
       count(*) FILTER (WHERE a.ward_code IS NOT NULL
                          AND a.team_id IS DISTINCT FROM b.team_id) AS team_changed
FROM after AS a JOIN {before} AS b USING (idx)
"""
_AREAS = {
    layer: f"""
        WITH old AS (SELECT ST_Union(geom) AS g FROM {layer} WHERE id = ANY(:old_ids)),
             new AS (SELECT ST_Union(geom) AS g FROM {layer} WHERE import_id = :import_id)
        SELECT COALESCE(ST_Area(old.g::geography), 0) AS covered_m2,
               COALESCE(ST_Area(new.g::geography), 0) AS new_covered_m2,
               COALESCE(ST_Area(ST_Difference(old.g, new.g)::geography), 0) AS lost_m2
        FROM old, new
    """
    for layer in BOUNDARY_LAYERS
}


def _route_open_before(conn: Connection, layer: str, snap_m: float) -> None:
    """Route the open reports against the current layers into a table that ends with us."""
    conn.execute(
        text(f"CREATE TEMPORARY TABLE {_BEFORE_TABLE} ON COMMIT DROP AS {_routed_open(layer)}"),
        {"statuses": list(OPEN_STATUSES), "snap_m": snap_m},
    )


def _measure_effect(
    conn: Connection, layer: str, *, old_ids: list[int], import_id: int, snap_m: float
) -> ReplaceEffect:
    """Compare the open reports' routing and the covered area before and after the replace."""
    counts = conn.execute(
        text(_EFFECT.format(routed=_routed_open(layer), before=_BEFORE_TABLE)),
        {"statuses": list(OPEN_STATUSES), "snap_m": snap_m},
    ).one()
    areas = conn.execute(text(_AREAS[layer]), {"old_ids": old_ids, "import_id": import_id}).one()
    return ReplaceEffect(
        current_count=len(old_ids),
        covered_km2=float(areas.covered_m2) / 1e6,
        new_covered_km2=float(areas.new_covered_m2) / 1e6,
        lost_km2=float(areas.lost_m2) / 1e6,
        open_reports=int(counts.open_reports),
        outside=int(counts.outside),
        ward_changed=int(counts.ward_changed),
        zone_changed=int(counts.zone_changed),
        team_changed=int(counts.team_changed),
    )


# The layers by name, as a message says them.
_LAYER_WORDS = {"wards": N_("wards"), "zones": N_("zones")}


def replace_problem_message(
    effect: ReplaceEffect, *, layer: str, max_area_loss: float
) -> Message | None:
    """Why replacing the layer needs confirmation, with the numbers; None when it does not.

    It does when open reports inside the current layer would lie outside the new one, or
    when more than ``max_area_loss`` of the area covered now would no longer be covered.
    """
    if effect.outside == 0 and effect.lost_share <= max_area_loss:
        return None
    return Message(
        N_(
            "Replacing the {current:,} current {layer} would leave {outside:,} of the "
            "{open:,} open reports outside the new {layer} and uncover {lost:,.2f} km² of "
            "the {covered:,.2f} km² they cover now ({share:.1%}; more than {max_loss:.0%} "
            "needs confirmation). The new {layer} cover {new_covered:,.2f} km². Check the "
            "file (are longitude and latitude swapped? is it the whole city?)."
        ),
        {
            "current": effect.current_count,
            "layer": Message(_LAYER_WORDS.get(layer, layer)),
            "outside": effect.outside,
            "open": effect.open_reports,
            "lost": effect.lost_km2,
            "covered": effect.covered_km2,
            "share": effect.lost_share,
            "max_loss": max_area_loss,
            "new_covered": effect.new_covered_km2,
        },
    )


def replace_problem(effect: ReplaceEffect, *, layer: str, max_area_loss: float) -> str | None:
    """``replace_problem_message`` in English, as the import's summary keeps it."""
    problem = replace_problem_message(effect, layer=layer, max_area_loss=max_area_loss)
    return None if problem is None else str(problem)


def latest_import(conn: Connection, layer: str) -> int:
    """The id of the layer's latest import, 0 when it has none: what a check was made against."""
    return int(
        conn.execute(
            text("SELECT COALESCE(max(id), 0) FROM boundary_imports WHERE layer = :layer"),
            {"layer": layer},
        ).scalar_one()
    )


def rebuild_ward_measures(conn: Connection) -> None:
    """Recount the ward dashboard's measures from every report, in ``conn``'s transaction.

    Migration 0016 keeps them and ``geo.reports.stats`` reads them. Replacing the wards
    changes which current ward covers each report. Writers of reports wait until the
    caller commits (the measures are truncated), then count theirs under the new wards.
    """
    conn.execute(text("SELECT ward_measures_rebuild()"))


def write_boundaries(
    engine: Engine,
    checked: CheckedBoundaries,
    *,
    settings: BoundarySettings | None = None,
    routing: RoutingSettings | None = None,
    force: bool = False,
    dry_run: bool = False,
    based_on: int | None = None,
) -> ImportSummary:
    """Replace the layer's current boundaries with ``checked``, in one transaction.

    The current rows get ``retired_at = now()`` (never deleted, so stored reports keep their
    ward and zone), the new rows are inserted as MultiPolygons with SRID 4326, and a
    ``boundary_imports`` row records the file, the findings and the ``ReplaceEffect``.
    Imports of the same layer are serialised by an advisory lock; reads and report intake
    carry on meanwhile and see the old layer until the commit.

    A replace that would leave open reports, or more than ``settings.max_area_loss`` of the
    covered area, outside the new layer raises ``BoundaryReplaceRefusedError`` (with the
    numbers) unless ``force``. With ``dry_run`` the effect is measured and everything is
    rolled back; the summary has no import id. Settings default to the environment.

    ``based_on`` is the layer's ``latest_import`` when the caller showed its check to
    someone; if another import has replaced the layer since, the replace is refused with
    ``ConflictError``, since what they confirmed is no longer what it would do.
    """
    settings = settings if settings is not None else BoundarySettings()
    snap_m = (routing if routing is not None else RoutingSettings()).snap_distance_m
    layer = checked.layer
    if layer not in BOUNDARY_LAYERS:
        raise BoundaryImportError(N_("Unknown layer {layer!r}."), layer=layer)
    features = checked.features
    geoms = np.asarray(features.geometry.array)
    params: dict[str, Any] = {
        "codes": [str(c) for c in features["code"]],
        "names": [str(n) for n in features["name"]],
        "names_th": _optional_texts(features, "name_th"),
        "names_en": _optional_texts(features, "name_en"),
        "teams": (
            [str(t) for t in features["team_code"]] if layer == "zones" else [None] * len(features)
        ),
        "properties": [
            json.dumps(p, ensure_ascii=False, allow_nan=False) for p in features["properties"]
        ],
        "wkbs": [bytes(b) for b in shapely.to_wkb(geoms, output_dimension=2)],
    }
    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"issuemap.boundaries.{layer}"},
        )
        if based_on is not None and latest_import(conn, layer) != based_on:
            raise ConflictError(
                N_(
                    "The {layer} were replaced by another import after this file was checked; "
                    "nothing was changed. Check the file again."
                ),
                layer=Message(_LAYER_WORDS.get(layer, layer)),
            )
        _route_open_before(conn, layer, snap_m)
        teams_created = _create_teams(conn, checked) if layer == "zones" else ()
        old_ids = [int(i) for i in conn.execute(text(_RETIRE[layer])).scalars()]
        import_id = int(
            conn.execute(
                text(_INSERT_IMPORT),
                {
                    "layer": layer,
                    "source": checked.source,
                    "sha256": checked.sha256,
                    "feature_count": len(features),
                    "repaired_count": len(checked.repaired_ids),
                    "summary": "{}",
                },
            ).scalar_one()
        )
        inserted = conn.execute(
            text(_INSERT_FEATURES[layer]), params | {"import_id": import_id}
        ).rowcount
        if inserted != len(features):  # a zone whose team is missing; cannot happen
            raise BoundaryImportError(
                N_("Only {stored} of {count} features could be stored; nothing changed."),
                stored=inserted,
                count=len(features),
            )
        analyze_routing_tables(conn)
        effect = _measure_effect(conn, layer, old_ids=old_ids, import_id=import_id, snap_m=snap_m)
        problem = replace_problem_message(effect, layer=layer, max_area_loss=settings.max_area_loss)
        if problem is not None and not (force or dry_run):
            raise BoundaryReplaceRefusedError(
                N_(
                    "{source} was refused. {problem} Nothing was changed. If the new {layer} "
                    "are right, confirm the replace with `force`."
                ),
                source=checked.source,
                problem=problem,
                layer=Message(_LAYER_WORDS.get(layer, layer)),
            )
        summary = ImportSummary(
            import_id=None if dry_run else import_id,
            layer=layer,
            source=checked.source,
            sha256=checked.sha256,
            source_crs=checked.source_crs,
            feature_count=len(features),
            repaired_ids=checked.repaired_ids,
            retired_count=len(old_ids),
            teams_created=teams_created,
            overlaps=checked.overlaps,
            gaps=checked.gaps,
            tolerance_m2=checked.tolerance_m2,
            metric_crs=checked.metric_crs,
            effect=effect,
            needs_force=None if problem is None else str(problem),
            dry_run=dry_run,
        )
        if dry_run:
            transaction.rollback()
            return summary
        if layer == "wards":
            rebuild_ward_measures(conn)
        conn.execute(
            text("UPDATE boundary_imports SET summary = CAST(:summary AS jsonb) WHERE id = :id"),
            {
                "id": import_id,
                "summary": json.dumps(summary.to_json(), ensure_ascii=False, allow_nan=False),
            },
        )
    return summary


def import_boundaries(
    engine: Engine,
    path: Path | str,
    *,
    layer: str,
    id_field: str,
    name_field: str,
    team_field: str | None = None,
    name_th_field: str | None = None,
    name_en_field: str | None = None,
    crs: str | None = None,
    tolerance_m2: float = DEFAULT_TOLERANCE_M2,
    settings: BoundarySettings | None = None,
    routing: RoutingSettings | None = None,
    force: bool = False,
    dry_run: bool = False,
    based_on: int | None = None,
    encoding: str | None = None,
) -> ImportSummary:
    """Check a boundary file and, if it passes, make it the layer's current boundaries.

    Parameters
    ----------
    engine
        The issuemap database.
    path
        GeoJSON, TopoJSON, Shapefile (``.shp`` or zipped ``.zip``) or GeoPackage.
    layer
        ``"wards"`` or ``"zones"``.
    id_field, name_field
        The attribute holding each feature's unique code, and its display name.
    team_field
        Zones only: the attribute naming each zone's team; teams that do not exist yet are
        created with that value as code and name. Without it every zone gets a team of its
        own, with the zone's code and names.
    name_th_field, name_en_field
        Optional attributes holding each feature's Thai and English names, stored apart
        from the name as given and shown to readers of each language.
    crs
        The CRS of the coordinates, required when the file declares none.
    tolerance_m2
        Overlaps and gaps of at most this area are not reported.
    settings
        The vertex limit and the share of the covered area a replace may lose without
        ``force``; by default from the environment (``ISSUEMAP_BOUNDARY_*``).
    routing
        The snapping distance, which decides whether an open report is still served.
    force
        Replace the layer even when open reports or much of the covered area would lie
        outside the new one.
    dry_run
        Check the file and measure the replace's effect, then store nothing.
    based_on
        The layer's ``latest_import`` when the check was shown; a later import refuses it.
    encoding
        Shapefiles only: the encoding of the attribute text (see ``read_boundaries``).

    Raises
    ------
    BoundaryImportError
        The file was refused, with the reasons; the database is unchanged.
    BoundaryReplaceRefusedError
        The replace needs ``force``; the message gives the numbers. Nothing changed.
    ConflictError
        Another import replaced the layer after ``based_on``. Nothing changed.
    """
    checked = check_boundaries(
        path,
        layer=layer,
        id_field=id_field,
        name_field=name_field,
        team_field=team_field,
        name_th_field=name_th_field,
        name_en_field=name_en_field,
        crs=crs,
        tolerance_m2=tolerance_m2,
        settings=settings,
        encoding=encoding,
    )
    return write_boundaries(
        engine,
        checked,
        settings=settings,
        routing=routing,
        force=force,
        dry_run=dry_run,
        based_on=based_on,
    )
