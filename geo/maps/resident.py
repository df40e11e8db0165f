"""The resident pages: the report form (``/report``), the status page (``/r/{token}``), their 404.

Each page is a Jinja2 template (``templates/*.html.j2``) rendered with autoescaping on, and
everything anyone typed (descriptions, notes, names) reaches it as a variable, never as
template source. Every word a resident reads is a catalog message (``geo.i18n``) in the
page's language; the templates call ``_`` for it. The pages run no inline script: the
form's map and "use my location" live in ``/static/report.js``, and the form works without
it (a plain multipart POST).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from sqlalchemy import Connection

from geo.city.catalogue import Category, active_categories, display_name
from geo.city.layers import city_bounds
from geo.errors import InvalidInputError, translated
from geo.i18n import LANGUAGES, N_, gettext_for, translate
from geo.maps.staff import PAGES
from geo.reports.tracking import TrackedReport
from geo.settings import DEFAULT_CITY_TIMEZONE, MapSettings
from geo.vocabulary import ADDRESS_MAX, DESCRIPTION_MAX, NAME_MAX, STATUS_NAMES

FORM_FIELDS = (
    "category",
    "description",
    "photo",
    "lat",
    "lon",
    "address",
    "reporter_name",
    "reporter_contact",
)
"""The form's fields, by the JSON API's names; a problem with any other is the whole form's."""

FIELD_HINTS: dict[str, str] = {
    "category": N_("Choose what kind of problem this is."),
    "description": N_("Describe the problem, or add a photo."),
    "photo": N_("This photo could not be used. Send a JPEG, PNG or WebP photo."),
    "lat": N_("Enter the latitude as a number of degrees, such as 8.4051."),
    "lon": N_("Enter the longitude as a number of degrees, such as 100.0052."),
    "address": N_(
        "We could not find this place. Name a nearby street or landmark, or put a pin on the map."
    ),
    "location": N_("Put a pin on the map, use your location, or type an address."),
    "reporter_name": N_("Check your name: it is too long or holds characters we cannot store."),
    "reporter_contact": N_(
        "Check your phone or e-mail: it is too long or holds characters we cannot store."
    ),
    "form": N_("The report could not be sent. Please check it and send it again."),
}
"""What the page says next to a field when the intake's own message has no translation."""

OUTSIDE_AREA = N_(
    "This place is outside the area the city serves. Please check the location, "
    "or report it to the authority responsible there."
)
ALREADY_SENT = N_(
    "This form was already sent with different details. Check the form below and "
    "send it again to file it as a new report."
)
GEOCODER_DOWN = N_(
    "We cannot look up places just now. Put a pin on the map, use your location, "
    "or try again in a minute."
)


_DEFAULT_ZONE = ZoneInfo(DEFAULT_CITY_TIMEZONE)


def when(moment: datetime | None, lang: str, *, zone: tzinfo = _DEFAULT_ZONE) -> str:
    """``moment`` as a resident reads it: day, month, year and time, in the city's zone.

    ``zone`` is ``CitySettings.zone`` (``ISSUEMAP_CITY_TIMEZONE``), whatever the server's
    clock says; the service always passes it, and the default is that setting's default.
    """
    if moment is None:
        return ""
    return format_datetime(moment, "d MMM y, HH:mm", tzinfo=zone, locale=lang)


def field_message(lang: str, error: InvalidInputError) -> tuple[str, str]:
    """Where a form shows ``error`` (a field of the form, or ``form``) and what it says there.

    The intake's message is shown in ``lang`` when the catalog has it; otherwise the field's
    own hint is, so a resident never reads a sentence in a language they did not choose.
    """
    name = error.field if error.field in FORM_FIELDS else "form"
    if error.field == "location":
        name = "location"
    if lang == "en" or gettext_for(lang)(error.msgid) != error.msgid:
        text = translated(lang, error.msgid, error.values)
        return name, text[:1].upper() + text[1:]
    return name, translate(lang, FIELD_HINTS[name])


@dataclass(frozen=True, slots=True)
class FormValues:
    """What the resident typed, to show again when the form comes back with a problem."""

    category: str = ""
    description: str = ""
    lat: str = ""
    lon: str = ""
    address: str = ""
    reporter_name: str = ""
    reporter_contact: str = ""


@dataclass(frozen=True, slots=True)
class FormPage:
    """Everything the report form shows."""

    lang: str
    form_key: str
    categories: Sequence[Category]
    photos_per_report: int
    values: FormValues = field(default_factory=FormValues)
    errors: Mapping[str, str] = field(default_factory=dict)
    """Field (or ``location`` or ``form``) to the message shown next to it, in ``lang``."""
    tiles: str | None = None
    tiles_attribution: str = ""
    bounds: tuple[float, float, float, float] | None = None


def report_form_page(
    conn: Connection,
    *,
    lang: str,
    form_key: str,
    photos_per_report: int,
    maps: MapSettings,
    values: FormValues | None = None,
    errors: Mapping[str, str] | None = None,
) -> FormPage:
    """The form's page: the active categories, the map's tiles and the city's extent."""
    return FormPage(
        lang=lang,
        form_key=form_key,
        categories=active_categories(conn),
        photos_per_report=photos_per_report,
        values=values or FormValues(),
        errors=dict(errors or {}),
        tiles=maps.tiles,
        tiles_attribution=maps.tiles_attribution,
        bounds=city_bounds(conn),
    )


def _other(lang: str) -> str:
    return next(other for other in LANGUAGES if other != lang)


def _common(lang: str, nonce: str, zone: tzinfo = _DEFAULT_ZONE) -> dict[str, Any]:
    gettext = gettext_for(lang)

    def _(message: str, **values: object) -> str:
        said = gettext(message)
        return said.format(**values) if values else said

    return {
        "_": _,
        "lang": lang,
        "other_lang": _other(lang),
        "nonce": nonce,
        "when": functools.partial(when, lang=lang, zone=zone),
    }


def category_label(category: Category, lang: str) -> str:
    """A category as the picker shows it: its name in ``lang``, the other name after it."""
    own = category.name(lang)
    other = category.name(_other(lang))
    return own if not other or other == own else f"{own} ({other})"


def render_report_form(page: FormPage, *, nonce: str) -> str:
    """The report form, with the resident's input and a message next to each problem."""
    return PAGES.get_template("report_form.html.j2").render(
        **_common(page.lang, nonce),
        page=page,
        values=page.values,
        errors=page.errors,
        choices=[(c.code, category_label(c, page.lang)) for c in page.categories],
        limits={"description": DESCRIPTION_MAX, "address": ADDRESS_MAX, "name": NAME_MAX},
        extra_photos=max(page.photos_per_report - 1, 0),
        bounds=",".join(f"{v:.6f}" for v in page.bounds) if page.bounds else "",
    )


def status_words(lang: str) -> Callable[[str | None], str]:
    """A status code in words (``geo.vocabulary.STATUS_NAMES``), in ``lang``."""
    gettext = gettext_for(lang)

    def words(status: str | None) -> str:
        return gettext(STATUS_NAMES[status]) if status in STATUS_NAMES else ""

    return words


def render_status_page(
    report: TrackedReport,
    *,
    lang: str,
    nonce: str,
    new: bool = False,
    message: str | None = None,
    public_rounding_m: float = 0.0,
    zone: tzinfo,
) -> str:
    """A report's status page: where it is, who has it, and what has happened so far.

    ``new`` thanks the resident who has just filed it; ``message`` is a problem with the
    last thing they asked (a support that could not be added), in ``lang``. Times are told
    in ``zone``, the city's (``CitySettings.zone``).
    """
    category = display_name(
        lang, name=report.category, name_th=report.category_name_th, name_en=report.category_name_en
    )
    team = display_name(
        lang, name=report.team_name, name_th=report.team_name_th, name_en=report.team_name_en
    )
    return PAGES.get_template("status_page.html.j2").render(
        **_common(lang, nonce, zone),
        report=report,
        category=category,
        team=team,
        status=status_words(lang),
        new=new,
        message=message,
        rounding_m=round(public_rounding_m),
    )


def render_not_found(*, lang: str, nonce: str) -> str:
    """The page for a status address that names no report the public may see."""
    return PAGES.get_template("not_found.html.j2").render(**_common(lang, nonce))
