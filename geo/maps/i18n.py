"""The labels of the map pages, as catalog messages (``geo/locale``), and the ones a page gets."""

from __future__ import annotations

from geo.i18n import N_, gettext_for, pick_language
from geo.vocabulary import STATUS_NAMES

__all__ = ["LABELS", "labels", "pick_language", "status_labels"]

LABELS: dict[str, str] = {
    "public_title": N_("Reported issues"),
    "zone_title": N_("Zone {zone}: open reports"),
    "wards_title": N_("Wards: {measure}"),
    "overview_title": N_("City overview"),
    "category": N_("Category"),
    "status": N_("Status"),
    "all": N_("All"),
    "from": N_("From"),
    "to": N_("To"),
    "apply": N_("Show"),
    "measure": N_("Measure"),
    "legend": N_("Legend"),
    "heat": N_("Open reports (heat)"),
    "reports": N_("Reports"),
    "wards": N_("Wards"),
    "ward": N_("Ward"),
    "name": N_("Name"),
    "zone": N_("Zone"),
    "zones": N_("Team zones"),
    "team": N_("Team"),
    "overdue": N_("Overdue"),
    "due": N_("Due"),
    "age": N_("Age"),
    "move": N_("Move to"),
    "moved": N_("Moved to"),
    "failed": N_("Could not change the status"),
    "overdue_count": N_("{overdue} of {open} open reports are overdue."),
    "confirm_move": N_("Move this report to “{status}”? The reporter is told."),
    "shown": N_("Showing {shown} of {total} reports."),
    "hidden": N_("{hidden} more not shown: zoom in and search this area, or see the next page."),
    "shown_more": N_("Showing {shown} of more than {total} reports."),
    "hidden_more": N_(
        "More than {hidden} not shown: zoom in and search this area, or see the next page."
    ),
    "search_area": N_("Search this area"),
    "next_page": N_("Next page"),
    "no_data": N_("No data"),
    "count": N_("Number of reports"),
    "sla": N_("Resolved within SLA"),
    "median_hours": N_("Median hours to resolve"),
    "classes": N_("Classes"),
    "class_count": N_("Number of classes"),
    "quantiles": N_("Quantiles (equal numbers of wards)"),
    "fisher_jenks": N_("Natural breaks (Fisher–Jenks)"),
    "range": N_("Range"),
    "resolved": N_("Resolved"),
    "too_few": N_("Too few reports (fewer than {n} resolved)"),
    "counted_here": N_(
        "Reports are counted in the current ward that contains their location, so a "
        "boundary change never drops them."
    ),
    "outside": N_("Reports outside every current ward: {n}"),
    "window": N_("Reports created from {start} to {end}."),
    "days": N_("d"),
    "hours": N_("h"),
    "fixed_work": N_("Fixed work"),
    "fixed_none": N_("Not shown"),
    "last_days": N_("Last {days} days"),
    "fixed_in": N_("Fixed in"),
    "latest_update": N_("Latest update"),
    "status_page": N_("Report status page"),
    "report_problem": N_("Report a problem"),
    "fewer": N_("Fewer"),
    "more": N_("More"),
    "map_view": N_("Map"),
    "list_view": N_("List"),
    "views": N_("Views"),
    "number": N_("No."),
    "reported": N_("Reported"),
    "previous_page": N_("Previous page"),
    "pages": N_("Pages"),
    "no_reports": N_("No reports match these choices."),
    "live_stale": N_(
        "Reports on this map have changed. Reload the map to see them as they are now."
    ),
    "live_reload": N_("Reload the map"),
}
"""Every label a map page shows, by key, as its English message id."""


def labels(lang: str) -> dict[str, str]:
    """The map labels in ``lang``."""
    gettext = gettext_for(lang)
    return {key: gettext(message) for key, message in LABELS.items()}


def status_labels(lang: str) -> dict[str, str]:
    """Every report status in words, in ``lang``."""
    gettext = gettext_for(lang)
    return {status: gettext(message) for status, message in STATUS_NAMES.items()}
