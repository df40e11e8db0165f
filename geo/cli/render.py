"""Rich renderings of what the core returns, for the terminal."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from geo.city.boundary_files import some_plain
from geo.city.boundary_writes import ImportSummary


def render_summary(summary: ImportSummary, *, listed: int = 20) -> Group:
    """The summary as rich tables: the counts, then the ``listed`` largest overlaps and gaps.

    The real files have up to a hundred slivers above a square metre, so the lists are cut
    and say how many more there are; every one is kept in ``boundary_imports.summary``.
    """
    tolerance = f"> {summary.tolerance_m2:g} m²"
    dry = summary.dry_run
    stored = "dry run: nothing stored" if dry else f"import #{summary.import_id}"
    counts = Table(title=f"{escape(summary.source)} → {summary.layer} ({stored})")
    counts.show_header = False
    counts.add_column()
    counts.add_column(justify="right")
    counts.add_row(
        "features to import" if dry else "features imported", f"{summary.feature_count:,}"
    )
    counts.add_row("repaired (invalid as read)", f"{summary.repaired_count:,}")
    counts.add_row(
        "current features to retire" if dry else "previous features retired",
        f"{summary.retired_count:,}",
    )
    if summary.layer == "zones":
        counts.add_row(
            "teams to create" if dry else "teams created", f"{len(summary.teams_created):,}"
        )
    effect = summary.effect
    counts.add_row(
        "area covered: now → new",
        f"{effect.covered_km2:,.2f} km² → {effect.new_covered_km2:,.2f} km²",
    )
    counts.add_row(
        "area no longer covered", f"{effect.lost_km2:,.2f} km² ({effect.lost_share:.1%})"
    )
    counts.add_row("open reports", f"{effect.open_reports:,}")
    counts.add_row(f"  … left outside the new {summary.layer}", f"{effect.outside:,}")
    counts.add_row(
        "  … changing ward / zone / team",
        (f"{effect.ward_changed:,} / {effect.zone_changed:,} / {effect.team_changed:,}"),
    )
    overlap_m2 = sum(o.area_m2 for o in summary.overlaps)
    gap_m2 = sum(g.area_m2 for g in summary.gaps)
    counts.add_row(f"overlaps {tolerance}", f"{len(summary.overlaps):,} ({overlap_m2:,.0f} m²)")
    counts.add_row(f"gaps {tolerance}", f"{len(summary.gaps):,} ({gap_m2:,.0f} m²)")
    counts.add_row("CRS read / measured in", f"{summary.source_crs} / {summary.metric_crs}")
    parts: list[RenderableType] = [counts]
    if summary.needs_force is not None:
        verdict = (
            "[bold red]This replace would be refused without --force:[/] "
            if dry
            else "[bold yellow]Replaced with --force although:[/] "
        )
        parts.append(verdict + escape(summary.needs_force))
    if effect.ward_changed or effect.zone_changed or effect.team_changed:
        parts.append(
            "Stored reports keep their assignment; `issuemap reports reroute --dry-run` "
            "previews applying the new boundaries to them."
        )
    if summary.repaired_ids:
        parts.append("repaired: " + escape(some_plain(list(summary.repaired_ids), listed)))
    findings = {
        "overlaps": [(" / ".join(o.ids), "", o.area_m2) for o in summary.overlaps],
        "gaps": [(", ".join(g.ids), f"{g.lat:.5f}, {g.lon:.5f}", g.area_m2) for g in summary.gaps],
    }
    for kind, rows in findings.items():
        if not rows:
            continue
        detail = Table(title=f"the {listed} largest {kind}" if len(rows) > listed else kind)
        detail.add_column("features")
        if kind == "gaps":
            detail.add_column("a point inside (lat, lon)")
        detail.add_column("m²", justify="right")
        for ids, where, area in rows[:listed]:
            cells = [escape(ids), where] if kind == "gaps" else [escape(ids)]
            detail.add_row(*cells, f"{area:,.1f}")
        parts.append(detail)
        if len(rows) > listed:
            kept = (
                ""
                if dry
                else (f"; all are kept in boundary_imports.summary of import #{summary.import_id}")
            )
            parts.append(f"... and {len(rows) - listed:,} more {kind}{kept}.")
    return Group(*parts)
