"""The admin pages of the catalogue and of access: SQLAdmin views over the ORM models.

SQLAdmin reads the tables and draws the lists, details and forms; every write goes
through the geo function that owns it (``create_user`` with Argon2, ``create_api_key``,
``create_webhook`` with its URL checks, ``put_category``, ``add_category_route``), never
through SQLAdmin's own inserts. A refused value comes back on the form, next to its
field, in the page's language. Secrets (a key, a webhook's signing secret) are shown once,
right after they are made; password hashes, key hashes and signing secrets never.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from fastapi.concurrency import run_in_threadpool
from sqladmin import ModelView, expose
from sqladmin.secret import Secret
from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import (
    BooleanField,
    Form,
    HiddenField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
)

from api.admin_ui.auth import current, label, main_state, page_language
from geo.access.accounts import create_user, disable_user, list_users
from geo.access.keys import create_api_key, revoke_api_key
from geo.city import catalogue
from geo.db.schema import ApiKey, Category, CategoryRoute, Team, User, Webhook
from geo.errors import InvalidInputError, IssuemapError, NotFoundError, translated
from geo.i18n import N_, translate
from geo.reports.notifications import WEBHOOK_EVENTS, create_webhook, revoke_webhook
from geo.vocabulary import ROLES, STAFF_ROLES

log = logging.getLogger("issuemap.admin")

T = TypeVar("T")

NUL_REFUSED = N_("must not contain NUL characters")
WHOLE_NUMBER = N_("must be a whole number")
CANNOT_CHANGE = N_("cannot be changed")
SHOWN_ONCE = N_("Copy it now: it is shown only this once.")

KEY_DAYS_MAX = 3650
"""Longest life a key made here may have (as ``issuemap keys create --expires-days``)."""


class FieldRefusedError(Exception):
    """A write the geo layer refused; the message is already on the form (or at its top)."""


_form: ContextVar[AdminForm | None] = ContextVar("issuemap_admin_form", default=None)


class AdminForm(Form):
    """A form of the admin pages: it carries the CSRF token, and refuses NUL characters.

    SQLAdmin builds forms without the request; the token comes from the admin request
    being answered (``auth.current``), and the form notes itself so that a refusal from
    the geo layer can be written next to its field (``refuse``).
    """

    csrftoken = HiddenField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.csrftoken.data = current().csrf_token
        _form.set(self)

    def validate(self, extra_validators: Mapping[str, Sequence[Any]] | None = None) -> bool:
        """WTForms' checks, and no NUL in any text (PostgreSQL could not store it)."""
        valid = super().validate(extra_validators)
        for field in self:
            values = field.data if isinstance(field.data, list) else [field.data]
            if any(isinstance(v, str) and "\x00" in v for v in values):
                field.errors = [*field.errors, translate(page_language(), NUL_REFUSED)]
                valid = False
        return valid


def refuse(error: IssuemapError, field: str | None = None) -> FieldRefusedError:
    """Put ``error`` on the form next to ``field`` (the error's own field by default).

    Returns the exception to raise: SQLAdmin then shows the form again (400) with it.
    """
    lang = page_language()
    name = field or (error.field if isinstance(error, InvalidInputError) else None)
    message = translated(lang, error.msgid, error.values)
    form = _form.get()
    if form is not None and name is not None and name in form:
        form[name].errors = [*form[name].errors, message]
        return FieldRefusedError(f"{name}: {message}")
    return FieldRefusedError(error.message(lang))


class _QuietRefusals(logging.Filter):
    """SQLAdmin logs every failed write with its traceback; a refused value is no fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], FieldRefusedError))


logging.getLogger("sqladmin.application").addFilter(_QuietRefusals())


def whole_number(field: str, value: str | None, *, required: bool = True) -> int | None:
    """``value`` as an int; ``InvalidInputError`` on ``field`` if it is not one."""
    cleaned = (value or "").strip()
    if not cleaned and not required:
        return None
    try:
        return int(cleaned)
    except ValueError:
        raise InvalidInputError(field, WHOLE_NUMBER) from None


def choices(values: Sequence[str], *, blank: str | None = None) -> list[tuple[str, str]]:
    """Select options: each value as itself, after an empty option labelled ``blank``."""
    head = [] if blank is None else [("", blank)]
    return head + [(v, v) for v in values]


def text_field(msgid: str, **kwargs: Any) -> Any:
    """A text input labelled ``msgid``, in the admin theme's style."""
    return StringField(label(msgid), render_kw={"class": "form-control"}, **kwargs)


def select_field(msgid: str, options: list[tuple[str, str]], **kwargs: Any) -> Any:
    """A drop-down labelled ``msgid``; the geo function, not the form, judges the value."""
    return SelectField(
        label(msgid),
        choices=options,
        validate_choice=False,
        render_kw={"class": "form-select"},
        **kwargs,
    )


def no_team() -> str:
    """The empty choice of a team drop-down, in the page's language."""
    return translate(page_language(), N_("(no team)"))


class IssuemapView(ModelView):
    """What every view here shares: writes through geo, names looked up once per page.

    No export (it would list every column, hashes among them) and no CSV import (it
    would write past the geo checks).
    """

    can_export = False
    can_import = False
    details_template = "admin_details.html"
    can_edit = False
    can_delete = False
    page_size = 50
    form_base_class = AdminForm

    refused_fields: ClassVar[Mapping[str, str]] = {}
    """Which form field a geo ``NotFoundError`` message is about (by its msgid)."""

    ended_label: ClassVar[str | None] = None
    """The button that revokes or disables a row on its details page (None: no button)."""

    async def write(self, request: Request, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction on the app's engine; refusals go on the form."""
        engine = main_state(request).engine

        def run() -> T:
            with engine.begin() as conn:
                return work(conn)

        try:
            return await run_in_threadpool(run)
        except InvalidInputError as error:
            raise refuse(error) from error
        except IssuemapError as error:
            raise refuse(error, self.refused_fields.get(error.msgid)) from error

    async def read(self, request: Request, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a connection of the app's engine (a read)."""
        engine = main_state(request).engine

        def run() -> T:
            with engine.connect() as conn:
                return work(conn)

        return await run_in_threadpool(run)

    async def stored(self, pk: int) -> Any:
        """The row ``pk`` as SQLAdmin shows it, after a write made it."""
        return await self.get_object_for_delete(str(pk))

    async def created(self, pk: int) -> Any:
        """Log the new row ``pk`` under the admin's name; the row as SQLAdmin shows it."""
        self.audit("created", pk)
        return await self.stored(pk)

    async def created_with_secret(self, request: Request, pk: int, secret: str, title: str) -> Any:
        """``created``, with ``secret`` shown on this answer only (SQLAdmin's one-time dialog)."""
        lang = page_language()
        Secret.reveal_once(
            request, secret, title=translate(lang, title), label=translate(lang, SHOWN_ONCE)
        )
        return await self.created(pk)

    def audit(self, what: str, pk: object) -> None:
        """Log who did what: the admin's audit name and the row."""
        log.info("%s %s %s %s", current().principal.actor, what, self.identity, pk)

    async def lookups(self, request: Request) -> Mapping[str, Mapping[Any, Any]]:
        """Names the list and details pages show for ids (team codes, owners' addresses)."""
        return {}

    async def _with_lookups(self, request: Request) -> dict[str, Any]:
        request.state.admin_lookups = await self.lookups(request)
        return {"ended_label": self.ended_label}

    async def list_context(self, request: Request) -> dict[str, Any]:
        """Load the names the list shows, once for the page."""
        return await self._with_lookups(request)

    async def details_context(self, request: Request) -> dict[str, Any]:
        """Load the names the details page shows, and its revoke or disable button."""
        return await self._with_lookups(request)

    async def end(self, request: Request, pk: int) -> None:
        """Revoke or disable row ``pk`` (views with an ``ended_label``)."""
        raise NotImplementedError

    def still_active(self, model: Any) -> bool:
        """Whether row ``model`` is not yet revoked or disabled (its button shows)."""
        return getattr(model, "revoked_at", None) is None and (
            getattr(model, "disabled_at", None) is None
        )

    @expose("/end/{pk:int}", methods=["POST"])
    async def end_row(self, request: Request) -> Response:
        """POST (with the CSRF token): revoke or disable the row, then back to its details."""
        if self.ended_label is None:
            return Response(status_code=404)
        pk = int(request.path_params["pk"])
        try:
            await self.end(request, pk)
        except (NotFoundError, FieldRefusedError):
            # No such row, or it was revoked or disabled already.
            return Response(status_code=404)
        self.audit("ended", pk)
        return RedirectResponse(
            request.url_for("admin:details", identity=self.identity, pk=pk), status_code=303
        )


def looked_up(table: str) -> Callable[[Any, str, Request], Any]:
    """A column formatter showing the name ``lookups`` found for the column's id."""

    def show(model: Any, attribute: str, request: Request) -> Any:
        value = getattr(model, attribute)
        return request.state.admin_lookups.get(table, {}).get(value, value)

    return show


async def team_codes(view: IssuemapView, request: Request) -> dict[int, str]:
    """Every team's code, by id."""
    teams = await view.read(request, catalogue.list_teams)
    return {int(t["id"]): str(t["code"]) for t in teams}


# --- teams --------------------------------------------------------------------------


class TeamForm(AdminForm):
    """A team: its code (fixed once made) and names."""

    code = text_field("Code")
    name = text_field("Name")
    name_th = text_field("Thai name")
    name_en = text_field("English name")


class TeamView(IssuemapView, model=Team):
    """Field teams: made here or by a zone file's team column."""

    name = label("Team")
    name_plural = label("Teams")
    icon = "fa-solid fa-people-group"
    can_edit = True
    form = TeamForm
    form_columns: ClassVar[list[Any]] = [Team.code, Team.name, Team.name_th, Team.name_en]
    column_list: ClassVar[list[Any]] = [Team.id, Team.code, Team.name, Team.name_th, Team.name_en]
    column_labels: ClassVar[dict[Any, str]] = {
        Team.code: label("Code"),
        Team.name: label("Name"),
        Team.name_th: label("Thai name"),
        Team.name_en: label("English name"),
    }
    column_searchable_list: ClassVar[list[Any]] = [Team.code, Team.name]
    column_sortable_list: ClassVar[list[Any]] = [Team.code, Team.name]
    column_default_sort: ClassVar[Any] = [(Team.code, False)]

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        """Create the team through ``catalogue.create_team``."""
        team_id = await self.write(
            request,
            lambda conn: catalogue.create_team(
                conn,
                code=data["code"] or "",
                name=data["name"] or "",
                name_th=data["name_th"],
                name_en=data["name_en"],
            ),
        )
        return await self.created(team_id)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        """Rename the team; its code stays."""
        team = await self.stored(int(pk))
        if (data["code"] or "").strip() != team.code:
            raise refuse(InvalidInputError("code", CANNOT_CHANGE))
        await self.write(
            request,
            lambda conn: catalogue.rename_team(
                conn,
                team.id,
                name=data["name"] or "",
                name_th=data["name_th"],
                name_en=data["name_en"],
            ),
        )
        self.audit("renamed", team.id)
        return await self.stored(team.id)


# --- staff accounts -----------------------------------------------------------------


def user_form(teams: Sequence[str]) -> type[AdminForm]:
    """A new staff account's form, offering ``teams``; the password is never shown again."""

    class UserForm(AdminForm):
        email = text_field("E-mail address")
        name = text_field("Name")
        role = select_field("Role", choices(STAFF_ROLES))
        team = select_field("Team", choices(teams, blank=no_team()))
        password = PasswordField(label("Password"), render_kw={"class": "form-control"})

    return UserForm


class UserView(IssuemapView, model=User):
    """Staff accounts: create (with a password) and disable; never the password's hash."""

    name = label("Staff account")
    name_plural = label("Staff accounts")
    icon = "fa-solid fa-user"
    ended_label = label("Disable this account")
    column_list: ClassVar[list[Any]] = [
        User.id,
        User.email,
        User.name,
        User.role,
        User.team_id,
        User.last_login_at,
        User.disabled_at,
    ]
    column_details_list: ClassVar[list[Any]] = [
        *column_list,
        User.created_at,
        User.locked_until,
    ]
    column_labels: ClassVar[dict[Any, str]] = {
        User.email: label("E-mail address"),
        User.name: label("Name"),
        User.role: label("Role"),
        User.team_id: label("Team"),
        User.last_login_at: label("Last sign-in"),
        User.disabled_at: label("Disabled"),
        User.created_at: label("Created"),
        User.locked_until: label("Locked until"),
    }
    column_formatters: ClassVar[dict[Any, Any]] = {User.team_id: looked_up("teams")}
    column_formatters_detail: ClassVar[dict[Any, Any]] = column_formatters
    column_searchable_list: ClassVar[list[Any]] = [User.email, User.name]
    column_sortable_list: ClassVar[list[Any]] = [User.email, User.name, User.role]
    column_default_sort: ClassVar[Any] = [(User.email, False)]

    async def lookups(self, request: Request) -> Mapping[str, Mapping[Any, Any]]:
        """Team codes for the team column."""
        return {"teams": await team_codes(self, request)}

    async def scaffold_form(self, rules: list[str] | None = None) -> type[Form]:
        """The form, with today's teams to choose from."""
        return user_form(sorted((await team_codes(self, current().request)).values()))

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        """Create the account through ``create_user`` (checks, then an Argon2 hash)."""
        user = await self.write(
            request,
            lambda conn: create_user(
                conn,
                email=data["email"] or "",
                name=data["name"] or "",
                role=data["role"] or "",
                password=data["password"] or "",
                team_code=data["team"] or None,
            ),
        )
        return await self.created(user.id)

    async def end(self, request: Request, pk: int) -> None:
        """Disable the account: it cannot sign in, and its sessions end."""
        user = await self.stored(pk)
        if user is None:
            raise NotFoundError(N_("There is no account {id}."), id=pk)
        await self.write(request, lambda conn: disable_user(conn, user.email))


# --- API keys -----------------------------------------------------------------------


def key_form(teams: Sequence[str], owners: Sequence[str]) -> type[AdminForm]:
    """A new API key's form, offering ``teams`` and staff ``owners`` (e-mail addresses)."""
    nobody = translate(page_language(), N_("(no owner)"))

    class KeyForm(AdminForm):
        name = text_field("Name")
        role = select_field("Role", choices(ROLES))
        team = select_field("Team", choices(teams, blank=no_team()))
        owner = select_field("Owner", choices(owners, blank=nobody))
        expires_days = text_field("Expires after (days)")

    return KeyForm


class KeyView(IssuemapView, model=ApiKey):
    """API keys: name, owner, role, team, expiry and last use; the secret shown once."""

    name = label("API key")
    name_plural = label("API keys")
    icon = "fa-solid fa-key"
    ended_label = label("Revoke this key")
    column_list: ClassVar[list[Any]] = [
        ApiKey.id,
        ApiKey.name,
        ApiKey.prefix,
        ApiKey.owner_id,
        ApiKey.role,
        ApiKey.team_id,
        ApiKey.expires_at,
        ApiKey.last_used_at,
        ApiKey.revoked_at,
    ]
    column_details_list: ClassVar[list[Any]] = [*column_list, ApiKey.created_at]
    column_labels: ClassVar[dict[Any, str]] = {
        ApiKey.name: label("Name"),
        ApiKey.prefix: label("Begins with"),
        ApiKey.owner_id: label("Owner"),
        ApiKey.role: label("Role"),
        ApiKey.team_id: label("Team"),
        ApiKey.expires_at: label("Expires"),
        ApiKey.last_used_at: label("Last used"),
        ApiKey.revoked_at: label("Revoked"),
        ApiKey.created_at: label("Created"),
    }
    column_formatters: ClassVar[dict[Any, Any]] = {
        ApiKey.team_id: looked_up("teams"),
        ApiKey.owner_id: looked_up("owners"),
    }
    column_formatters_detail: ClassVar[dict[Any, Any]] = column_formatters
    column_searchable_list: ClassVar[list[Any]] = [ApiKey.name, ApiKey.prefix]
    column_default_sort: ClassVar[Any] = [(ApiKey.id, True)]

    async def lookups(self, request: Request) -> Mapping[str, Mapping[Any, Any]]:
        """Team codes and the owners' e-mail addresses."""
        users = await self.read(request, list_users)
        return {
            "teams": await team_codes(self, request),
            "owners": {u.id: u.email for u in users},
        }

    async def scaffold_form(self, rules: list[str] | None = None) -> type[Form]:
        """The form, with today's teams and staff accounts to choose from."""
        request = current().request
        codes = sorted((await team_codes(self, request)).values())
        emails = [u.email for u in await self.read(request, list_users) if not u.disabled]
        return key_form(codes, emails)

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        """Create the key through ``create_api_key``; its secret is shown on this answer only."""

        def make(conn: Connection) -> Any:
            days = whole_number("expires_days", data["expires_days"], required=False)
            if days is not None and not 1 <= days <= KEY_DAYS_MAX:
                raise InvalidInputError(
                    "expires_days", N_("must be from {low} to {high}"), low=1, high=KEY_DAYS_MAX
                )
            return create_api_key(
                conn,
                name=data["name"] or "",
                role=data["role"] or "",
                team_code=data["team"] or None,
                owner_email=data["owner"] or None,
                expires_at=None if days is None else datetime.now(UTC) + timedelta(days=days),
            )

        new = await self.write(request, make)
        return await self.created_with_secret(request, new.id, new.secret, N_("The new API key"))

    async def end(self, request: Request, pk: int) -> None:
        """Revoke the key at once."""
        await self.write(request, lambda conn: revoke_api_key(conn, pk))


# --- webhooks -----------------------------------------------------------------------


class WebhookForm(AdminForm):
    """An address to call on report events, checked as the API checks it."""

    url = text_field("Address (URL)")
    events = SelectMultipleField(
        label("Events"),
        choices=choices(WEBHOOK_EVENTS),
        default=list(WEBHOOK_EVENTS),
        validate_choice=False,
        render_kw={"class": "form-select"},
    )
    description = text_field("Description")


class WebhookView(IssuemapView, model=Webhook):
    """Webhooks: register (the signing secret shown once), list, revoke."""

    name = label("Webhook")
    name_plural = label("Webhooks")
    icon = "fa-solid fa-satellite-dish"
    ended_label = label("Revoke this webhook")
    form = WebhookForm
    column_list: ClassVar[list[Any]] = [
        Webhook.id,
        Webhook.url,
        Webhook.events,
        Webhook.description,
        Webhook.created_at,
        Webhook.revoked_at,
    ]
    column_details_list: ClassVar[list[Any]] = column_list
    column_labels: ClassVar[dict[Any, str]] = {
        Webhook.url: label("Address (URL)"),
        Webhook.events: label("Events"),
        Webhook.description: label("Description"),
        Webhook.created_at: label("Created"),
        Webhook.revoked_at: label("Revoked"),
    }
    column_default_sort: ClassVar[Any] = [(Webhook.id, True)]

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        """Register through ``create_webhook`` (its URL checks); the secret shown once."""
        new = await self.write(
            request,
            lambda conn: create_webhook(
                conn,
                url=data["url"] or "",
                events=data["events"] or [],
                description=data["description"] or "",
            ),
        )
        return await self.created_with_secret(
            request, new.id, new.secret, N_("The webhook's signing secret")
        )

    async def end(self, request: Request, pk: int) -> None:
        """Stop calling the webhook."""
        await self.write(request, lambda conn: revoke_webhook(conn, pk))


# --- categories and their routes ----------------------------------------------------


class CategoryForm(AdminForm):
    """A report category: code, Thai and English names, SLA hours, offered or not."""

    code = text_field("Code")
    name_th = text_field("Thai name")
    name_en = text_field("English name")
    sla_hours = text_field("SLA (hours)", default="48")
    active = BooleanField(
        label("Offered to residents"), default=True, render_kw={"class": "form-check-input"}
    )


class CategoryView(IssuemapView, model=Category):
    """Categories, through ``catalogue.put_category``; a new SLA applies to new reports."""

    name = label("Category")
    name_plural = label("Categories")
    icon = "fa-solid fa-tags"
    can_edit = True
    form = CategoryForm
    form_columns: ClassVar[list[Any]] = [
        Category.code,
        Category.name_th,
        Category.name_en,
        Category.sla_hours,
        Category.active,
    ]
    column_list: ClassVar[list[Any]] = [Category.id, *form_columns]
    column_labels: ClassVar[dict[Any, str]] = {
        Category.code: label("Code"),
        Category.name_th: label("Thai name"),
        Category.name_en: label("English name"),
        Category.sla_hours: label("SLA (hours)"),
        Category.active: label("Offered to residents"),
    }
    column_searchable_list: ClassVar[list[Any]] = [Category.code, Category.name_en]
    column_default_sort: ClassVar[Any] = [(Category.code, False)]

    async def _put(self, request: Request, data: dict[str, Any], *, code: str | None) -> Any:
        def put(conn: Connection) -> dict[str, Any]:
            hours = whole_number("sla_hours", data["sla_hours"])
            assert hours is not None
            return catalogue.put_category(
                conn,
                code=code or data["code"] or "",
                name_th=data["name_th"] or "",
                name_en=data["name_en"] or "",
                sla_hours=hours,
                active=bool(data["active"]),
                create_only=code is None,
            )

        await self.write(request, put)

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        """A new category; a code in use is refused, not replaced."""
        await self._put(request, data, code=None)
        found = await self.find_by_code(request, data["code"])
        self.audit("created", found.id)
        return found

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        """New names, SLA or offer for the category; its code stays."""
        category = await self.stored(int(pk))
        if (data["code"] or "").strip() != category.code:
            raise refuse(InvalidInputError("code", CANNOT_CHANGE))
        await self._put(request, data, code=category.code)
        self.audit("changed", category.id)
        return await self.stored(category.id)

    async def find_by_code(self, request: Request, code: str) -> Any:
        """The category ``code`` as SQLAdmin shows it."""
        rows = await self._run_query(select(Category).where(Category.code == code.strip()))
        return rows[0]


def route_form(
    categories: Sequence[str], teams: Sequence[str], zones: Sequence[str]
) -> type[AdminForm]:
    """A category route's form: a category, a team, and everywhere or one current zone."""
    everywhere = translate(page_language(), N_("(everywhere)"))

    class RouteForm(AdminForm):
        category = select_field("Category", choices(categories))
        team = select_field("Team", choices(teams))
        zone = select_field("Zone", choices(zones, blank=everywhere))

    return RouteForm


class RouteView(IssuemapView, model=CategoryRoute):
    """Category routes, through ``catalogue.add_category_route``; a retired zone is refused."""

    name = label("Category route")
    name_plural = label("Category routes")
    icon = "fa-solid fa-route"
    can_delete = True
    column_list: ClassVar[list[Any]] = [
        CategoryRoute.id,
        CategoryRoute.category_id,
        CategoryRoute.team_id,
        CategoryRoute.zone_code,
    ]
    column_labels: ClassVar[dict[Any, str]] = {
        CategoryRoute.category_id: label("Category"),
        CategoryRoute.team_id: label("Team"),
        CategoryRoute.zone_code: label("Zone"),
    }
    column_formatters: ClassVar[dict[Any, Any]] = {
        CategoryRoute.category_id: looked_up("categories"),
        CategoryRoute.team_id: looked_up("teams"),
        CategoryRoute.zone_code: lambda m, a: m.zone_code or "*",
    }
    column_formatters_detail: ClassVar[dict[Any, Any]] = column_formatters
    refused_fields: ClassVar[Mapping[str, str]] = {
        catalogue.NO_CATEGORY: "category",
        catalogue.NO_TEAM: "team",
        catalogue.NO_CURRENT_ZONE: "zone",
        catalogue.ROUTE_EXISTS: "zone",
    }

    async def lookups(self, request: Request) -> Mapping[str, Mapping[Any, Any]]:
        """Category and team codes, by id."""
        categories = await self.read(request, catalogue.category_codes)
        return {"categories": categories, "teams": await team_codes(self, request)}

    async def scaffold_form(self, rules: list[str] | None = None) -> type[Form]:
        """The form, with today's categories, teams and current zones to choose from."""
        request = current().request
        teams = await self.read(request, catalogue.list_teams)
        categories = await self.read(request, catalogue.active_categories)
        zones = sorted(z for t in teams for z in t["zones"])
        return route_form([c.code for c in categories], [t["code"] for t in teams], zones)

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        """Add the route; an unknown or retired zone is refused on the zone field."""
        route_id = await self.write(
            request,
            lambda conn: catalogue.add_category_route(
                conn,
                category=data["category"] or "",
                team=data["team"] or "",
                zone=data["zone"] or None,
            ),
        )
        return await self.created(route_id)

    async def delete_model(self, request: Request, pk: Any) -> None:
        """Stop routing by this rule; stored reports keep their team."""
        await self.write(request, lambda conn: catalogue.delete_category_route(conn, int(pk)))
        self.audit("deleted", pk)


VIEWS: tuple[type[IssuemapView], ...] = (
    TeamView,
    UserView,
    KeyView,
    WebhookView,
    CategoryView,
    RouteView,
)
"""The catalogue and access views, in the menu's order."""
